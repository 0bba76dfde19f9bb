// sort and topk along an axis. Both order each line by value and break ties
// by the original index (lower first), in ascending and descending order
// alike, so results never depend on the sorting algorithm. NaN sorts as
// larger than every number (last ascending, first descending), as in numpy.
#include "backends/ref/kernels.h"
#include "ir/env.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct sort_item {
    double f;      // float key
    int64_t i;     // integer key
    int64_t pos;   // original index along the axis
};

static int cmp_f(double a, double b) {
    bool na = a != a, nb = b != b;
    if (na || nb) return na - nb;
    return (a > b) - (a < b);
}

static int by_pos(const struct sort_item *a, const struct sort_item *b) { return (a->pos > b->pos) - (a->pos < b->pos); }

static int asc_f(const void *x, const void *y) {
    const struct sort_item *a = x, *b = y;
    int c = cmp_f(a->f, b->f);
    return c ? c : by_pos(a, b);
}
static int desc_f(const void *x, const void *y) {
    const struct sort_item *a = x, *b = y;
    int c = cmp_f(b->f, a->f);
    return c ? c : by_pos(a, b);
}
static int asc_i(const void *x, const void *y) {
    const struct sort_item *a = x, *b = y;
    int c = (a->i > b->i) - (a->i < b->i);
    return c ? c : by_pos(a, b);
}
static int desc_i(const void *x, const void *y) {
    const struct sort_item *a = x, *b = y;
    int c = (b->i > a->i) - (b->i < a->i);
    return c ? c : by_pos(a, b);
}

// Whether a goes before b in the order the comparators above define.
static inline bool goes_before(const struct sort_item *a, const struct sort_item *b, bool is_float, bool descending) {
    int c = is_float ? cmp_f(a->f, b->f) : (a->i > b->i) - (a->i < b->i);
    if (descending) c = -c;
    return c < 0 || (c == 0 && a->pos < b->pos);
}

// Short lines (GPO sorts 36 regions per feature, 131 K lines a batch) by
// insertion with the comparison inlined: several times faster than qsort's
// indirect calls there. The order is the same strict total order, so the
// result is too.
#define SHORT_LINE 64
static void sort_short(struct sort_item *items, int64_t len, bool is_float, bool descending) {
    for (int64_t p = 1; p < len; p++) {
        struct sort_item x = items[p];
        int64_t q = p;
        while (q > 0 && goes_before(&x, &items[q - 1], is_float, descending)) {
            items[q] = items[q - 1];
            q--;
        }
        items[q] = x;
    }
}

// Sorts every line of x along ax and writes the first k of each into vals
// and idx (shaped like x with k along ax).
static bool sort_lines(struct itr_ref_exec *ex, const struct itr_node *n, const struct itr_tensor *x, int ax,
                       bool descending, int64_t k, struct itr_tensor *vals, struct itr_tensor *idx) {
    int64_t outer = 1, inner = 1, len = x->shape[ax];
    for (int i = 0; i < ax; i++) outer *= x->shape[i];
    for (int i = ax + 1; i < x->rank; i++) inner *= x->shape[i];
    bool shape_ok = vals->rank == x->rank && idx->rank == x->rank && vals->dtype == x->dtype && idx->dtype == ITR_I64;
    for (int i = 0; shape_ok && i < x->rank; i++) {
        int64_t want = i == ax ? k : x->shape[i];
        shape_ok = vals->shape[i] == want && idx->shape[i] == want;
    }
    if (!shape_ok || k > len)
        return ref_error(ex, n, "results %s do not fit the operand %s (k = %lld)", ref_shape_str(vals).s,
                         ref_shape_str(x).s, (long long)k);
    if (len == 0 || outer * inner == 0) return true;
    if (!itr_ref_sort_lines(x, ax, descending, k, 0, outer * inner, vals, idx)) return ref_error(ex, n, "out of memory");
    return true;
}

// ---- short lines across columns: a sorting network on 16 lines at once
//
// GPO sorts [B, 36, 1024] along the regions: 131 K lines of 36 values, each
// strided by the features. Sixteen neighbouring lines (columns) go through
// one sorting network side by side. Each element becomes one 64-bit key:
// the value's order in the high half (a monotonic map of its bits, -0 as
// +0, every NaN above +inf, complemented for a descending sort) and its
// index in the low half, so the keys order exactly as goes_before does and
// a compare-exchange is a min and a max of integers, which vectorise.

#define NET_MAX 64      // longest line sorted by a network
#define NET_LANES 16

struct net { int n; int16_t (*cx)[2]; };   // compare-exchanges (i < j), in order

// Batcher's odd-even merge sort on the next power of two, keeping only the
// compare-exchanges among the first len positions: the padding keys are
// the largest there are, so every position from len on holds padding
// throughout and a compare-exchange that reaches one changes nothing.
static bool net_build(struct net *nt, int len) {
    int N = 1;
    while (N < len) N *= 2;
    nt->n = 0;
    nt->cx = malloc((size_t)(N * 12 + 1) * sizeof *nt->cx);   // N log2(N)^2 / 4 bounds it for N <= 64
    if (!nt->cx) return false;
    for (int p = 1; p < N; p *= 2)
        for (int k = p; k >= 1; k /= 2)
            for (int j = k % p; j + k < N; j += 2 * k)
                for (int i = 0; i < k && i + j + k < N; i++) {
                    int a = i + j, b = i + j + k;
                    if (a / (2 * p) != b / (2 * p) || b >= len) continue;
                    nt->cx[nt->n][0] = (int16_t)a;
                    nt->cx[nt->n][1] = (int16_t)b;
                    nt->n++;
                }
    return true;
}

// Branch-free, so that a row of sixteen keys is a few vector instructions.
static inline uint64_t key_f32(uint32_t u, uint64_t pos, uint32_t flip) {
    u = (u & 0x7fffffffu) > 0x7f800000u ? 0x7fc00000u : u;   // every NaN: above +inf
    u = u == 0x80000000u ? 0 : u;                              // -0 ties with +0
    uint32_t o = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (uint64_t)(o ^ flip) << 32 | pos;
}

static inline uint64_t key_i32(uint32_t u, uint64_t pos, uint32_t flip) {
    return (uint64_t)((u ^ 0x80000000u) ^ flip) << 32 | pos;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define NET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NET_CLONES
#endif

// Row p of the keys from the sixteen values at row (NET_LANES of them read;
// lanes from w on are padding).
NET_CLONES
static void net_keys(uint64_t *key, const uint32_t *row, int w, uint64_t p, bool is_f32, uint32_t flip) {
    if (w == NET_LANES && is_f32)
        for (int l = 0; l < NET_LANES; l++) key[l] = key_f32(row[l], p, flip);
    else if (w == NET_LANES)
        for (int l = 0; l < NET_LANES; l++) key[l] = key_i32(row[l], p, flip);
    else
        for (int l = 0; l < NET_LANES; l++)
            key[l] = l >= w ? UINT64_MAX : is_f32 ? key_f32(row[l], p, flip) : key_i32(row[l], p, flip);
}

// Sixteen lanes as two vectors of eight: GCC's vector extensions give the
// unsigned compare and the blend directly (plain loops stayed scalar cmovs).
typedef uint64_t net_vec __attribute__((vector_size(64), aligned(64)));

NET_CLONES
static void net_run(const struct net *nt, uint64_t (*key)[NET_LANES]) {
    for (int c = 0; c < nt->n; c++) {
        net_vec *a = (net_vec *)key[nt->cx[c][0]], *b = (net_vec *)key[nt->cx[c][1]];
        for (int h = 0; h < NET_LANES / 8; h++) {
            net_vec x = a[h], y = b[h];
            net_vec lt = (net_vec)(x < y);   // all ones where x < y
            a[h] = (x & lt) | (y & ~lt);
            b[h] = (y & lt) | (x & ~lt);
        }
    }
}

// Lines [lo, hi) (line = o * inner + in) of an f32 or i32 x along an axis
// of length len <= NET_MAX, sixteen neighbouring columns at a time.
static bool sort_columns(const struct itr_tensor *x, int64_t len, int64_t inner, bool descending, int64_t k,
                         int64_t lo, int64_t hi, struct itr_tensor *vals, struct itr_tensor *idx) {
    struct net nt;
    if (!net_build(&nt, (int)len)) return false;
    uint64_t (*key)[NET_LANES] = aligned_alloc(64, NET_MAX * sizeof *key);
    if (!key) {
        free(nt.cx);
        return false;
    }
    bool f32 = x->dtype == ITR_F32;
    uint32_t flip = descending ? UINT32_MAX : 0;
    const uint32_t *xu = x->data;   // f32 and i32 alike: the bits
    uint32_t *vu = vals->data;
    int64_t *pi = idx->data;
    for (int64_t line = lo; line < hi;) {
        int64_t o = line / inner, in = line % inner;
        int w = (int)(inner - in < NET_LANES ? inner - in : NET_LANES);
        if (hi - line < w) w = (int)(hi - line);
        int64_t base = o * len * inner + in;
        // A short last block reads its row into a padded copy: no read
        // past the tensor.
        uint32_t row[NET_LANES];
        for (int64_t p = 0; p < len; p++) {
            const uint32_t *src = xu + base + p * inner;
            if (w < NET_LANES) {
                memcpy(row, src, (size_t)w * sizeof *row);
                src = row;
            }
            net_keys(key[p], src, w, (uint64_t)p, f32, flip);
        }
        net_run(&nt, key);
        int64_t obase = o * k * inner + in;
        for (int64_t p = 0; p < k; p++)
            for (int l = 0; l < w; l++) {
                int64_t pos = (int64_t)(key[p][l] & 0xffffffffu), at = obase + p * inner + l;
                vu[at] = xu[base + pos * inner + l];
                pi[at] = pos;
            }
        line += w;
    }
    free(key);
    free(nt.cx);
    return true;
}

bool itr_ref_sort_lines(const struct itr_tensor *x, int ax, bool descending, int64_t k, int64_t lo, int64_t hi,
                        struct itr_tensor *vals, struct itr_tensor *idx) {
    int64_t inner = 1, len = x->shape[ax];
    for (int i = ax + 1; i < x->rank; i++) inner *= x->shape[i];
    if (len == 0 || lo >= hi) return true;
    if ((x->dtype == ITR_F32 || x->dtype == ITR_I32) && len >= 2 && len <= NET_MAX && inner >= NET_LANES / 2 &&
        !itr_env_flag("ITRC_NO_SORT_NETWORK"))
        return sort_columns(x, len, inner, descending, k, lo, hi, vals, idx);
    struct sort_item *items = malloc((size_t)len * sizeof *items);
    if (!items) return false;
    bool is_float = itr_dtype_is_float(x->dtype);
    int (*cmp)(const void *, const void *) = is_float ? (descending ? desc_f : asc_f) : (descending ? desc_i : asc_i);
    int64_t *pi = idx->data;
    for (int64_t line = lo; line < hi; line++) {
        int64_t o = line / inner, in = line % inner;
        int64_t base = o * len * inner + in;
        for (int64_t p = 0; p < len; p++) {
            items[p].pos = p;
            if (is_float) items[p].f = ld_f(x, base + p * inner);
            else items[p].i = ld_i(x, base + p * inner);
        }
        if (len <= SHORT_LINE) sort_short(items, len, is_float, descending);
        else qsort(items, (size_t)len, sizeof *items, cmp);
        int64_t obase = o * k * inner + in;
        for (int64_t p = 0; p < k; p++) {
            cp_elem(vals, obase + p * inner, x, base + items[p].pos * inner);
            pi[obase + p * inner] = items[p].pos;
        }
    }
    free(items);
    return true;
}

bool ref_sort(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
              struct itr_tensor **out) {
    int ax = ref_axis(itr_node_attr_int(n, "axis"), in[0]->rank);
    return sort_lines(ex, n, in[0], ax, itr_node_attr_int(n, "descending") != 0, in[0]->shape[ax], out[0], out[1]);
}

bool ref_topk(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
              struct itr_tensor **out) {
    int ax = ref_axis(itr_node_attr_int(n, "axis"), in[0]->rank);
    int64_t k = itr_node_attr_int(n, "k");
    if (k > in[0]->shape[ax])
        return ref_error(ex, n, "k = %lld exceeds the size %lld of axis %d", (long long)k, (long long)in[0]->shape[ax],
                         ax);
    return sort_lines(ex, n, in[0], ax, itr_node_attr_int(n, "largest") != 0, k, out[0], out[1]);
}
