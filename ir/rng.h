// The counter-based random number generator of itrc (design.md principle 9):
// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC'11) with its standard multipliers and Weyl key increments.
//
// Every random value in itrc — random ops, dropout masks, parameter
// initialisation, shuffling — is a pure function of (seed, salt, index), so
// a run is reproducible and the CPU and GPU backends draw identical values.
// The mapping below is the contract; any backend must implement exactly it.
//
//   Element i (0-based, row-major) of a stream with seed s and salt t:
//     key     = (lo32(s), hi32(s))
//     counter = (lo32(i), hi32(i), lo32(t), hi32(t))
//     (w0, w1, w2, w3) = philox4x32_10(counter, key)
//
//   uniform f32 in [0, 1):  (w0 >> 8) * 2^-24                       (exact in f32)
//   uniform f64 in [0, 1):  ((w0 << 32 | w1) >> 11) * 2^-53         (64-bit arithmetic)
//   normal f32 (N(0, 1)):   u1 = 1 - (w0 >> 8) * 2^-24   in (0, 1]
//                           u2 = (w1 >> 8) * 2^-24       in [0, 1)
//                           z  = sqrt(-2 ln u1) * cos(2 pi u2), evaluated in
//                           double precision and rounded to f32
//   normal f64:             as f32 with 53-bit u1 = 1 - ((w0 << 32 | w1) >> 11) * 2^-53
//                           and u2 = ((w2 << 32 | w3) >> 11) * 2^-53
//   bernoulli(p):           1 if uniform < p else 0
//   uniform(low, high):     low + (high - low) * u and mean + std * z are
//   normal(mean, std):      evaluated in double from the draw above (u or z
//                           already rounded to f32 for f32 results), then
//                           rounded to the result dtype
//
// The precision of a draw follows the dtype the IR declares, not the
// precision a backend computes in: the reference interpreter in f64 mode
// draws an f32 op's values with the f32 formulas and widens them, so f32 and
// f64 runs of one graph see the same random numbers (the same dropout mask).
//
// The random ops use the node's 'salt' attribute as t and the element index
// of the result as i. Parameter initialisation uses the run's seed and
// t = itr_rng_salt_of_name(param name), so adding a parameter never changes
// the values drawn for the others.
#ifndef ITR_RNG_H
#define ITR_RNG_H

#include <stdbool.h>
#include <stdint.h>

// One Philox-4x32-10 block: out = bijection of ctr under key.
void itr_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

// The four words for element i of stream (seed, salt).
void itr_rng_words(uint64_t seed, uint64_t salt, uint64_t i, uint32_t out[4]);

// Draws of element i of stream (seed, salt), as documented above.
float  itr_rng_uniform_f32(uint64_t seed, uint64_t salt, uint64_t i);   // [0, 1)
double itr_rng_uniform_f64(uint64_t seed, uint64_t salt, uint64_t i);   // [0, 1)
float  itr_rng_normal_f32(uint64_t seed, uint64_t salt, uint64_t i);    // N(0, 1)
double itr_rng_normal_f64(uint64_t seed, uint64_t salt, uint64_t i);    // N(0, 1)

// A random op's stream, for filling any range of its result: elements
// [lo, hi) of an op drawing `dist` in the IR dtype's formulas (f32_draw),
// the values computed in double as above (uniform: a + (b - a) u; normal:
// a + b z; bernoulli: u < a) and stored as f64 or rounded to f32, out[0]
// being element lo. Any split of the range gives the same values.
enum itr_rng_dist { ITR_RNG_UNIFORM, ITR_RNG_NORMAL, ITR_RNG_BERNOULLI };
struct itr_rng_fill {
    enum itr_rng_dist dist;
    uint64_t seed, salt;
    bool f32_draw;
    double a, b;   // low, high / mean, std / p
};
void itr_rng_fill_range(const struct itr_rng_fill *f, void *out, bool out_f64, int64_t lo, int64_t hi);

// The stream of random op n (random_uniform, random_normal or
// random_bernoulli) whose result the IR declares as `declared`.
struct itr_node;
void itr_rng_fill_of_node(const struct itr_node *n, int declared, uint64_t seed, struct itr_rng_fill *f);

// A stable 64-bit salt for a name (FNV-1a over its bytes): the salt of a
// parameter's initialisation stream.
uint64_t itr_rng_salt_of_name(const char *name);

#endif
