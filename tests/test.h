// A small test harness: CHECK-style assertions that count and keep going,
// and a closing "N passed, N failed" line (the form CI reads).
//
//   TEST(add_broadcasts) { CHECK(x == 1); CHECK_NEAR(y, 2.0, 1e-6); }
//   int main(void) { RUN(add_broadcasts); return test_summary(); }
#ifndef ITR_TEST_H
#define ITR_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_passed_, test_failed_, test_current_failed_;
static const char *test_current_ = "";

#define TEST(name) static void test_##name(void)
#define RUN(name)                                                                   \
    do {                                                                            \
        test_current_ = #name;                                                      \
        test_current_failed_ = 0;                                                   \
        test_##name();                                                              \
        if (test_current_failed_) test_failed_++; else test_passed_++;              \
    } while (0)

#define FAIL_AT(...)                                                                \
    do {                                                                            \
        fprintf(stderr, "%s:%d: [%s] ", __FILE__, __LINE__, test_current_);         \
        fprintf(stderr, __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                        \
        test_current_failed_ = 1;                                                   \
    } while (0)

#define CHECK(cond) do { if (!(cond)) FAIL_AT("CHECK failed: %s", #cond); } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) FAIL_AT(__VA_ARGS__); } while (0)
#define CHECK_NEAR(a, b, tol)                                                       \
    do {                                                                            \
        double a_ = (double)(a), b_ = (double)(b);                                  \
        if (!(fabs(a_ - b_) <= (tol))) FAIL_AT("%s = %.10g, expected %.10g (tol %g)", #a, a_, b_, (double)(tol)); \
    } while (0)
#define CHECK_STR_CONTAINS(hay, needle)                                             \
    do {                                                                            \
        const char *h_ = (hay);                                                     \
        if (!h_ || !strstr(h_, (needle))) FAIL_AT("expected \"%s\" in \"%s\"", (needle), h_ ? h_ : "(null)"); \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", test_passed_, test_failed_);
    return test_failed_ ? 1 : 0;
}

#endif
