// The compile pipeline (compiler/pipeline.h).
#include "compiler/pipeline.h"

#include <stdio.h>
#include <string.h>

#include "backends/cuda/cuda_nvrtc.h"
#include "compiler/lower.h"
#include "ir/text.h"

struct target { const char *name; bool (*available)(void); };
static bool always(void) { return true; }
static const struct target targets[] = {
    { "ref", always },    // the reference interpreter runs the graphs as they are
    { "llvm", always },   // fused kernels (ir/kir.h) for the CPU, JIT-compiled by itr-run
    { "cuda", itr_nvrtc_available },   // the same kernels, also compiled for the GPU (backends/cuda/cuda_plan.h)
};

// The best target this build can run: llvm where CMake found LLVM 14
// (ITR_DEFAULT_TARGET), ref otherwise. A plan for llvm also runs on ref.
#ifndef ITR_DEFAULT_TARGET
#define ITR_DEFAULT_TARGET "ref"
#endif

const char *itr_compile_default_target(void) { return ITR_DEFAULT_TARGET; }

void itr_compile_options_init(struct itr_compile_options *o) {
    memset(o, 0, sizeof *o);
    o->opt_level = 2;
    o->target = "ref";
}

bool itr_compile_kernels(const struct itr_program *p, struct kir_plan_kernels *out, struct itr_diags *d) {
    for (int gi = 0; gi < p->n_graphs; gi++) {
        if (p->graphs[gi]->kind != ITR_GRAPH_ENTRY) continue;
        for (int prec = 0; prec < 2; prec++) {
            struct kir_schedule *s = itr_lower_graph(p->graphs[gi], prec == 1, d);
            if (!s) {
                kir_plan_kernels_free(out);
                return false;
            }
            kir_plan_kernels_add(out, gi, prec == 1, s);
        }
    }
    return true;
}

const char *itr_compile_target_error(const char *target, char *buf, size_t n) {
    const struct target *t = NULL;
    for (size_t k = 0; k < sizeof targets / sizeof *targets; k++)
        if (strcmp(targets[k].name, target) == 0) t = &targets[k];
    if (!t) {
        snprintf(buf, n, "unknown target '%s' (known targets: ref, llvm, cuda)", target);
        return buf;
    }
    if (!t->available()) {
        snprintf(buf, n, "target '%s' needs NVRTC, which this build lacks (the CUDA toolkit was not found when it "
                 "was configured); available: ref, llvm", target);
        return buf;
    }
    return NULL;
}

int itr_program_node_count(const struct itr_program *p) {
    int n = 0;
    for (int i = 0; i < p->n_graphs; i++) n += p->graphs[i]->n_nodes;
    return n;
}

static void fail(struct itr_compile_report *rep, enum itr_compile_status st, const char *internal) {
    rep->status = st;
    rep->internal = internal;
}

bool itr_compile_program(struct itr_program *p, const struct itr_compile_options *opt,
                         struct itr_compile_report *rep, struct itr_diags *d) {
    struct itr_compile_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    rep->model_params = p->n_params;
    rep->nodes_before = rep->nodes_after = itr_program_node_count(p);
    char why[160];
    const char *target = opt && opt->target ? opt->target : "ref";
    if (itr_compile_target_error(target, why, sizeof why)) {
        itr_diag_error(d, ITR_NOLOC, "%s", why);
        fail(rep, ITR_COMPILE_USER_ERROR, NULL);
        return false;
    }
    // The training step is built before simplification so that the passes
    // see (and fold, merge, remove) forward, backward and optimizer together.
    // Its errors are the user's (a loss that is not a scalar, an op without
    // a gradient rule); an invalid result is ours.
    // The rewrites come first so that the training step differentiates the
    // rewritten forward graph: its backward never forms the context either.
    int level = opt ? opt->opt_level : 2;
    unsigned rewrites = ITR_REWRITE_ALL & ~(opt ? opt->no_rewrites : 0u);
    if (level >= 2 && rewrites && !itr_rewrite_contractions(p, rewrites, &rep->rewrites, d)) {
        fail(rep, ITR_COMPILE_INTERNAL_ERROR, "a contraction rewrite produced an invalid program; please report it "
                                              "(compiling with --no-rewrite all avoids them)");
        return false;
    }
    if (!itr_compile_training_step(p, d)) {
        fail(rep, ITR_COMPILE_USER_ERROR, NULL);
        return false;
    }
    if (itr_program_train_graph(p) && !itr_program_verify(p, d)) {
        fail(rep, ITR_COMPILE_INTERNAL_ERROR, "the training step is an invalid program; please report it");
        return false;
    }
    rep->nodes_before = rep->nodes_after = itr_program_node_count(p);
    if (level >= 1) {
        // A pass or the verifier failing here means the compiler broke a
        // valid program: an internal error, not the user's.
        if (!itr_simplify(p, &rep->simplify, d) || !itr_program_verify(p, d)) {
            fail(rep, ITR_COMPILE_INTERNAL_ERROR, "simplification produced an invalid program; please report it "
                                                  "(compiling with -O0 avoids the passes)");
            return false;
        }
        rep->nodes_after = itr_program_node_count(p);
    }
    rep->status = ITR_COMPILE_OK;
    return true;
}

static void parse_options(const struct itr_compile_options *opt, struct itr_parse_options *po) {
    memset(po, 0, sizeof *po);
    if (!opt) return;
    po->include_dirs = opt->include_dirs;
    po->n_include_dirs = opt->n_include_dirs;
    po->overrides = opt->defines;
    po->n_overrides = opt->n_defines;
    po->data_overrides = opt->data_defines;
    po->n_data_overrides = opt->n_data_defines;
    po->data_used = opt->data_used;
    po->no_default_models_dir = opt->no_default_models_dir;
}

// The parser may return a program with errors recorded (it keeps going to
// report more); only a clean, verified one goes on.
static struct itr_program *clean(struct itr_program *p, struct itr_diags *d) {
    if (p && !itr_diags_has_errors(d) && itr_program_verify(p, d)) return p;
    itr_program_free(p);
    return NULL;
}

struct itr_program *itr_elaborate_file(const char *path, const struct itr_compile_options *opt, struct itr_diags *d) {
    struct itr_parse_options po;
    parse_options(opt, &po);
    return clean(itr_parse_file(path, &po, d), d);
}

// Shared tail of the two front doors: p is what the parser returned.
static bool compile_parsed(struct itr_program *p, const struct itr_compile_options *opt, struct itr_program **out,
                           struct itr_compile_report *rep, struct itr_diags *d) {
    struct itr_compile_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    *out = NULL;
    if (!(p = clean(p, d))) {
        fail(rep, ITR_COMPILE_USER_ERROR, NULL);
        return false;
    }
    if (!itr_compile_program(p, opt, rep, d)) {
        itr_program_free(p);
        return false;
    }
    *out = p;
    return true;
}

bool itr_compile_file(const char *path, const struct itr_compile_options *opt, struct itr_program **out,
                      struct itr_compile_report *rep, struct itr_diags *d) {
    struct itr_parse_options po;
    parse_options(opt, &po);
    return compile_parsed(itr_parse_file(path, &po, d), opt, out, rep, d);
}

bool itr_compile_source(const char *name, const char *text, size_t len, const struct itr_compile_options *opt,
                        struct itr_program **out, struct itr_compile_report *rep, struct itr_diags *d) {
    struct itr_parse_options po;
    parse_options(opt, &po);
    return compile_parsed(itr_parse_string(name, text, len, &po, d), opt, out, rep, d);
}
