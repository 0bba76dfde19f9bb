// Philox-4x32-10 and the draws built on it (rng.h documents the mapping).
#include "rng.h"

#include "ir.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u   // golden ratio
#define PHILOX_W1 0xBB67AE85u   // sqrt(3) - 1

static inline void philox(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
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

void itr_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) { philox(ctr, key, out); }

void itr_rng_words(uint64_t seed, uint64_t salt, uint64_t i, uint32_t out[4]) {
    const uint32_t key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
    const uint32_t ctr[4] = { (uint32_t)i, (uint32_t)(i >> 32), (uint32_t)salt, (uint32_t)(salt >> 32) };
    philox(ctr, key, out);
}

static double u24(uint32_t w) { return (double)(w >> 8) * 0x1p-24; }
static double u53(uint32_t hi, uint32_t lo) { return (double)((((uint64_t)hi << 32) | lo) >> 11) * 0x1p-53; }

static double box_muller(double u1, double u2) {
    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

// The draws of one block of words, shared by the per-element functions and
// the range fill so that both give the same values.
static inline double draw_uniform(const uint32_t *w, bool f32) { return f32 ? (double)(float)u24(w[0]) : u53(w[0], w[1]); }

static inline double draw_normal(const uint32_t *w, bool f32) {
    return f32 ? (double)(float)box_muller(1.0 - u24(w[0]), u24(w[1]))
               : box_muller(1.0 - u53(w[0], w[1]), u53(w[2], w[3]));
}

float itr_rng_uniform_f32(uint64_t seed, uint64_t salt, uint64_t i) {
    uint32_t w[4];
    itr_rng_words(seed, salt, i, w);
    return (float)draw_uniform(w, true);
}

double itr_rng_uniform_f64(uint64_t seed, uint64_t salt, uint64_t i) {
    uint32_t w[4];
    itr_rng_words(seed, salt, i, w);
    return draw_uniform(w, false);
}

float itr_rng_normal_f32(uint64_t seed, uint64_t salt, uint64_t i) {
    uint32_t w[4];
    itr_rng_words(seed, salt, i, w);
    return (float)draw_normal(w, true);
}

double itr_rng_normal_f64(uint64_t seed, uint64_t salt, uint64_t i) {
    uint32_t w[4];
    itr_rng_words(seed, salt, i, w);
    return draw_normal(w, false);
}

// Philox on RNG_LANES consecutive counters at once, written lane by lane so
// that the compiler runs the lanes in vector registers (the multiplies are
// 32 x 32 -> 64 bits, one vector instruction per 4 to 8 lanes).
#define RNG_LANES 16

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define RNG_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RNG_CLONES
#endif

RNG_CLONES
static void philox_lanes(uint64_t first, const uint32_t key[2], uint32_t salt_lo, uint32_t salt_hi,
                         uint32_t w[4][RNG_LANES]) {
    uint32_t c0[RNG_LANES], c1[RNG_LANES], c2[RNG_LANES], c3[RNG_LANES];
    for (int l = 0; l < RNG_LANES; l++) {
        uint64_t i = first + (uint64_t)l;
        c0[l] = (uint32_t)i;
        c1[l] = (uint32_t)(i >> 32);
        c2[l] = salt_lo;
        c3[l] = salt_hi;
    }
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        for (int l = 0; l < RNG_LANES; l++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * c0[l], p1 = (uint64_t)PHILOX_M1 * c2[l];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[l] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[l] ^ k1;
            c0[l] = n0;
            c1[l] = (uint32_t)p1;
            c2[l] = n2;
            c3[l] = (uint32_t)p0;
        }
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    for (int l = 0; l < RNG_LANES; l++) {
        w[0][l] = c0[l];
        w[1][l] = c1[l];
        w[2][l] = c2[l];
        w[3][l] = c3[l];
    }
}

void itr_rng_fill_range(const struct itr_rng_fill *f, void *out, bool out_f64, int64_t lo, int64_t hi) {
    const uint32_t key[2] = { (uint32_t)f->seed, (uint32_t)(f->seed >> 32) };
    uint32_t salt_lo = (uint32_t)f->salt, salt_hi = (uint32_t)(f->salt >> 32);
    float *o32 = out;
    double *o64 = out;
    for (int64_t i0 = lo; i0 < hi; i0 += RNG_LANES) {
        uint32_t lanes[4][RNG_LANES];
        philox_lanes((uint64_t)i0, key, salt_lo, salt_hi, lanes);
        int64_t n = hi - i0 < RNG_LANES ? hi - i0 : RNG_LANES;
        for (int64_t l = 0; l < n; l++) {
            const uint32_t w[4] = { lanes[0][l], lanes[1][l], lanes[2][l], lanes[3][l] };
            double v;
            switch (f->dist) {
            case ITR_RNG_UNIFORM: v = f->a + (f->b - f->a) * draw_uniform(w, f->f32_draw); break;
            case ITR_RNG_NORMAL: v = f->a + f->b * draw_normal(w, f->f32_draw); break;
            default: v = draw_uniform(w, f->f32_draw) < f->a ? 1.0 : 0.0; break;
            }
            if (out_f64) o64[i0 - lo + l] = v;
            else o32[i0 - lo + l] = (float)v;
        }
    }
}

void itr_rng_fill_of_node(const struct itr_node *n, int declared, uint64_t seed, struct itr_rng_fill *f) {
    f->seed = seed;
    f->salt = (uint64_t)itr_node_attr_int(n, "salt");
    f->f32_draw = declared == ITR_F32;
    f->b = 0;
    switch (n->op) {
    case ITR_OP_RANDOM_UNIFORM:
        f->dist = ITR_RNG_UNIFORM;
        f->a = itr_node_attr_float(n, "low");
        f->b = itr_node_attr_float(n, "high");
        break;
    case ITR_OP_RANDOM_NORMAL:
        f->dist = ITR_RNG_NORMAL;
        f->a = itr_node_attr_float(n, "mean");
        f->b = itr_node_attr_float(n, "std");
        break;
    default:
        f->dist = ITR_RNG_BERNOULLI;
        f->a = itr_node_attr_float(n, "p");
        break;
    }
}

uint64_t itr_rng_salt_of_name(const char *name) {
    uint64_t h = 14695981039346656037ull;   // FNV-1a 64-bit offset basis
    for (const unsigned char *s = (const unsigned char *)name; *s; s++) {
        h ^= *s;
        h *= 1099511628211ull;
    }
    return h;
}
