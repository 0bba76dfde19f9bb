// Philox-4x32-10 and the draws built on it (rng.h documents the mapping).
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u   // golden ratio
#define PHILOX_W1 0xBB67AE85u   // sqrt(3) - 1

void itr_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void itr_rng_words(uint64_t seed, uint64_t salt, uint64_t i, uint32_t out[4]) {
    const uint32_t key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
    const uint32_t ctr[4] = { (uint32_t)i, (uint32_t)(i >> 32), (uint32_t)salt, (uint32_t)(salt >> 32) };
    itr_philox4x32_10(ctr, key, out);
}

static double u24(uint32_t w) { return (double)(w >> 8) * 0x1p-24; }
static double u53(uint32_t hi, uint32_t lo) { return (double)((((uint64_t)hi << 32) | lo) >> 11) * 0x1p-53; }

float itr_rng_uniform_f32(uint64_t seed, uint64_t salt, uint64_t i) {
    uint32_t w[4];
    itr_rng_words(seed, salt, i, w);
    return (float)u24(w[0]);
}

double itr_rng_uniform_f64(uint64_t seed, uint64_t salt, uint64_t i) {
    uint32_t w[4];
    itr_rng_words(seed, salt, i, w);
    return u53(w[0], w[1]);
}

static double box_muller(double u1, double u2) {
    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

float itr_rng_normal_f32(uint64_t seed, uint64_t salt, uint64_t i) {
    uint32_t w[4];
    itr_rng_words(seed, salt, i, w);
    return (float)box_muller(1.0 - u24(w[0]), u24(w[1]));
}

double itr_rng_normal_f64(uint64_t seed, uint64_t salt, uint64_t i) {
    uint32_t w[4];
    itr_rng_words(seed, salt, i, w);
    return box_muller(1.0 - u53(w[0], w[1]), u53(w[2], w[3]));
}

uint64_t itr_rng_salt_of_name(const char *name) {
    uint64_t h = 14695981039346656037ull;   // FNV-1a 64-bit offset basis
    for (const unsigned char *s = (const unsigned char *)name; *s; s++) {
        h ^= *s;
        h *= 1099511628211ull;
    }
    return h;
}
