// sort and topk along an axis. Both order each line by value and break ties
// by the original index (lower first), in ascending and descending order
// alike, so results never depend on the sorting algorithm. NaN sorts as
// larger than every number (last ascending, first descending), as in numpy.
#include "backends/ref/kernels.h"

#include <stdlib.h>

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

bool itr_ref_sort_lines(const struct itr_tensor *x, int ax, bool descending, int64_t k, int64_t lo, int64_t hi,
                        struct itr_tensor *vals, struct itr_tensor *idx) {
    int64_t inner = 1, len = x->shape[ax];
    for (int i = ax + 1; i < x->rank; i++) inner *= x->shape[i];
    if (len == 0 || lo >= hi) return true;
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
