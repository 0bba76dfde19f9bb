// Where each differentiable op of ir/ops.def has its finite-difference
// gradient test. One line per op whose NONDIFF column is not ITR_NONDIFF_ALL;
// tests/test_gradcheck.c fails when an op is missing here, when a line names
// an op that is not differentiable (a stale line), and when an op mapped to
// a test file was not covered by a passing gc_check in that file's run (the
// check below, which each listed file calls at its end).
//
// Adding an op with a gradient rule: add its line here and a case to the
// file it names (docs/autodiff.md, "How to add a gradient rule").
#ifndef ITR_TESTS_GRADCHECK_CASES_H
#define ITR_TESTS_GRADCHECK_CASES_H

#include "gradcheck.h"

struct gc_case_entry {
    const char *op;      // the op's name in the .ir format
    const char *file;    // the test file that checks it
    const char *test;    // the TEST in that file
};

#define GC_MATH "tests/test_gradcheck.c"
#define GC_INDEX "tests/test_gradcheck_index.c"

static const struct gc_case_entry gc_cases[] = {
    { "neg", GC_MATH, "unary_ops" },
    { "abs", GC_MATH, "unary_ops" },
    { "exp", GC_MATH, "unary_ops" },
    { "log", GC_MATH, "unary_ops" },
    { "sqrt", GC_MATH, "unary_ops" },
    { "rsqrt", GC_MATH, "unary_ops" },
    { "reciprocal", GC_MATH, "unary_ops" },
    { "relu", GC_MATH, "unary_ops" },
    { "leaky_relu", GC_MATH, "unary_ops" },
    { "sigmoid", GC_MATH, "unary_ops" },
    { "tanh", GC_MATH, "unary_ops" },
    { "gelu", GC_MATH, "unary_ops" },
    { "erf", GC_MATH, "unary_ops" },
    { "sin", GC_MATH, "unary_ops" },
    { "cos", GC_MATH, "unary_ops" },
    { "acos", GC_MATH, "unary_ops" },
    { "identity", GC_MATH, "unary_ops" },
    { "cast", GC_MATH, "unary_ops" },
    { "add", GC_MATH, "binary_ops_broadcast" },
    { "sub", GC_MATH, "binary_ops_broadcast" },
    { "mul", GC_MATH, "binary_ops_broadcast" },
    { "div", GC_MATH, "binary_ops_broadcast" },
    { "pow", GC_MATH, "binary_ops_broadcast" },
    { "maximum", GC_MATH, "binary_ops_broadcast" },
    { "minimum", GC_MATH, "binary_ops_broadcast" },
    { "where", GC_MATH, "binary_ops_broadcast" },
    { "sum", GC_MATH, "reductions" },
    { "mean", GC_MATH, "reductions" },
    { "max", GC_MATH, "reductions" },
    { "min", GC_MATH, "reductions" },
    { "matmul", GC_MATH, "matmul_batch_broadcast" },
    { "reshape", GC_MATH, "movement" },
    { "transpose", GC_MATH, "movement" },
    { "expand", GC_MATH, "movement" },
    { "squeeze", GC_MATH, "movement" },
    { "unsqueeze", GC_MATH, "movement" },
    { "slice", GC_MATH, "movement" },
    { "concat", GC_MATH, "movement" },
    { "pad", GC_MATH, "movement" },
    { "gather", GC_INDEX, "gather" },
    { "scatter_add", GC_INDEX, "scatter_add" },
    { "take_along_axis", GC_INDEX, "take_along_axis" },
    { "scatter_add_along_axis", GC_INDEX, "scatter_add_along_axis" },
    { "sort", GC_INDEX, "sort" },
    { "topk", GC_INDEX, "topk" },
    { "scan", GC_INDEX, "scan" },
};

#define GC_N_CASES ((int)(sizeof gc_cases / sizeof gc_cases[0]))

// Checks the table against the op table, and that every op mapped to
// `this_file` was covered by a passing gc_check in this process. Writes
// every problem to msg (one per line); true when there is none.
GC_API bool gc_cases_check(const char *this_file, char *msg, size_t n) {
    size_t w = 0;
    bool ok = true;
    msg[0] = 0;
#define GC_PROBLEM(...)                                                                        \
    do {                                                                                       \
        ok = false;                                                                            \
        if (w < n) w += (size_t)snprintf(msg + w, n - w, __VA_ARGS__);                         \
    } while (0)
    for (int op = 0; op < ITR_OP_COUNT; op++) {
        const struct itr_op_info *info = itr_op_info((enum itr_op)op);
        int hits = 0;
        for (int k = 0; k < GC_N_CASES; k++) hits += strcmp(gc_cases[k].op, info->name) == 0;
        bool diff = info->nondiff != ITR_NONDIFF_ALL;
        if (diff && hits == 0)
            GC_PROBLEM("op '%s' is differentiable but has no gradient test in tests/gradcheck_cases.h\n", info->name);
        if (!diff && hits)
            GC_PROBLEM("op '%s' carries no gradient (ITR_NONDIFF_ALL) but tests/gradcheck_cases.h lists it\n",
                       info->name);
        if (hits > 1) GC_PROBLEM("op '%s' is listed %d times in tests/gradcheck_cases.h\n", info->name, hits);
    }
    for (int k = 0; k < GC_N_CASES; k++) {
        enum itr_op op;
        if (!itr_op_lookup(gc_cases[k].op, &op)) {
            GC_PROBLEM("tests/gradcheck_cases.h lists '%s', which is no op\n", gc_cases[k].op);
            continue;
        }
        if (strcmp(gc_cases[k].file, this_file) == 0 && !gc_op_covered(op))
            GC_PROBLEM("op '%s' is mapped to %s (test %s), but no passing gradient check there covered it\n",
                       gc_cases[k].op, gc_cases[k].file, gc_cases[k].test);
    }
#undef GC_PROBLEM
    return ok;
}

#endif
