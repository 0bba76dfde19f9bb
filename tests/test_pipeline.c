// The compile pipeline as a library call (compiler/pipeline.h): what itrc
// check and compile run, without the command line.
#include <stdlib.h>
#include <string.h>

#include "compiler/pipeline.h"
#include "test.h"

// A model with a train entry (the training step adds optimizer state) and a
// constant expression that -O1 folds.
static const char model_src[] =
    "model m {\n"
    "  dim B\n"
    "  param w: f32[4, 3] = uniform(-0.1, 0.1)\n"
    "  entry encode(x: f32[B, 4]) -> (y) {\n"
    "    k = sqrt(2.0) * 3.0\n"
    "    return (x @ w) * k\n"
    "  }\n"
    "  train(x: f32[B, 4]) -> (loss) {\n"
    "    return sum((x @ w) * (x @ w))\n"
    "  }\n"
    "  optimizer adam(lr=0.001)\n"
    "}\n";

static struct itr_program *compile(int opt_level, const char *target, struct itr_compile_report *rep,
                                   struct itr_diags *d) {
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    co.opt_level = opt_level;
    co.target = target;
    struct itr_program *p = (struct itr_program *)1;   // must be reset on failure
    bool ok = itr_compile_source("m.ir", model_src, strlen(model_src), &co, &p, rep, d);
    CHECK(ok == (p != NULL));
    CHECK(ok == (rep->status == ITR_COMPILE_OK));
    return p;
}

TEST(compiles_at_both_levels) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_compile_report r0, r1;
    struct itr_program *p0 = compile(0, NULL, &r0, &d);
    struct itr_program *p1 = compile(1, "ref", &r1, &d);
    CHECK_MSG(p0 && p1, "the model does not compile");
    if (!p0 || !p1) itr_diags_print(&d, stderr);
    if (p0 && p1) {
        CHECK(p0->train_compiled && p1->train_compiled);
        CHECK(r0.model_params == 1);               // w, before the optimizer's moments
        CHECK(p0->n_params > r0.model_params);     // the moments come after it
        CHECK(r0.nodes_before == r0.nodes_after);  // -O0: no simplification
        CHECK(r0.simplify.iterations == 0);
        CHECK(r1.nodes_after < r1.nodes_before);   // -O1 folded the constant expression
        CHECK(r1.simplify.folded > 0);
        CHECK(r1.nodes_after == itr_program_node_count(p1));
    }
    itr_program_free(p0);
    itr_program_free(p1);
    itr_diags_free(&d);
}

TEST(user_errors) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    struct itr_compile_report rep;
    struct itr_program *p;
    static const char bad[] = "model m {\n  entry f(x: f32[2]) -> (y) {\n    return nosuchop(x)\n  }\n}\n";
    CHECK(!itr_compile_source("bad.ir", bad, strlen(bad), &co, &p, &rep, &d));
    CHECK(p == NULL && rep.status == ITR_COMPILE_USER_ERROR && rep.internal == NULL);
    char *sum = itr_diags_summary(&d);
    CHECK_STR_CONTAINS(sum, "3:12: unknown function or op 'nosuchop'");
    free(sum);
    itr_diags_free(&d);

    itr_diags_init(&d);
    CHECK(!itr_compile_file(ITR_SOURCE_DIR "/tests/ir/no_such_file.ir", &co, &p, &rep, &d));
    CHECK(p == NULL && rep.status == ITR_COMPILE_USER_ERROR && itr_diags_has_errors(&d));
    itr_diags_free(&d);

    // An unknown target is refused by the library too, not only by itrc.
    itr_diags_init(&d);
    char why[160];
    CHECK(itr_compile_target_error("ref", why, sizeof why) == NULL);
    CHECK(itr_compile_target_error("tpu", why, sizeof why) != NULL);
    CHECK_STR_CONTAINS(why, "unknown target 'tpu'");
    co.target = "tpu";
    CHECK(!itr_compile_source("m.ir", model_src, strlen(model_src), &co, &p, &rep, &d));
    CHECK(p == NULL && rep.status == ITR_COMPILE_USER_ERROR);
    sum = itr_diags_summary(&d);
    CHECK_STR_CONTAINS(sum, "unknown target 'tpu'");
    free(sum);
    itr_diags_free(&d);
}

int main(void) {
    RUN(compiles_at_both_levels);
    RUN(user_errors);
    return test_summary();
}
