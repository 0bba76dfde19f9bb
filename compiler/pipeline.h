// The compile pipeline as a library call (design.md: the CLIs stay thin).
//
//   .ir text --parse + elaborate + verify--> program
//            --training step (compiler/train.c), verify--> program
//            --simplify at -O1 (compiler/simplify.c), verify--> program
//
// `itrc check` runs it at -O0 and `itrc compile` at the requested level;
// tests and other programs call the same functions, so what a plan contains
// does not depend on who asked for it. Writing the plan (ir/plan.h) stays
// with the caller: the pipeline makes a program, the caller decides where it
// goes.
//
// Nothing here prints. Errors and warnings go to the diags; a failure that is
// the compiler's fault (a pass or the training transform breaking a valid
// program) is told apart from the user's in the report, with the sentence a
// CLI prints after "internal error: ".
#ifndef ITR_COMPILER_PIPELINE_H
#define ITR_COMPILER_PIPELINE_H

#include "compiler/passes.h"
#include "ir/ir.h"

struct itr_compile_options {
    const char *const *include_dirs; int n_include_dirs;   // -I: searched after the importing file's folder
    const char *const *defines; int n_defines;             // -D NAME=VALUE: config parameters, dim defaults
    // NAME=VALUE from a data set (itrc --data, ir/dataset.h): applied only to
    // names the model declares and not set by defines; data_used (NULL or
    // n_data_defines entries) is set for each one applied (ir/text.h).
    const char *const *data_defines; int n_data_defines;
    bool *data_used;
    bool no_default_models_dir;                            // do not search the installed models/
    int opt_level;          // 0: no graph simplification; 1: itr_simplify (exact); 2: 1 + the
                            // contraction rewrites (the default; compiler/passes.h)
    unsigned no_rewrites;   // ITR_REWRITE_* bits turned off at -O2 (itrc --no-rewrite NAME)
    const char *target;     // code generation target; NULL means "ref"
};

enum itr_compile_status {
    ITR_COMPILE_OK,
    ITR_COMPILE_USER_ERROR,       // the input is wrong: exit ITR_EXIT_USER
    ITR_COMPILE_INTERNAL_ERROR,   // the compiler broke a valid program: exit ITR_EXIT_INTERNAL
};

struct itr_compile_report {
    enum itr_compile_status status;
    // INTERNAL_ERROR: what broke, e.g. "the training step is an invalid
    // program; please report it". NULL otherwise.
    const char *internal;
    // Parameters of the model itself, before the training step appended its
    // optimizer state (those come after them in p->params).
    int model_params;
    int nodes_before, nodes_after;        // nodes over all graphs before / after simplification
    struct itr_simplify_stats simplify;   // all zero at -O0
    struct itr_rewrite_stats rewrites;    // all zero below -O2
};

// Defaults: -O2, target "ref", no includes or defines.
void itr_compile_options_init(struct itr_compile_options *o);

// NULL when this build can compile for target; otherwise the reason, written
// to buf ("unknown target 'x' (known targets: ...)", "target 'cuda' needs
// NVRTC, which this build lacks ...") and returned. Target cuda: the
// caller also compiles the kernels (backends/cuda/cuda_plan.h).
const char *itr_compile_target_error(const char *target, char *buf, size_t n);

// Parses, elaborates and compiles the file at path. On success *out is the
// compiled program (caller frees with itr_program_free) and true is returned;
// on failure *out is NULL, every error is in d and rep->status says whose
// fault it was. Warnings are left in d in both cases. rep may be NULL.
bool itr_compile_file(const char *path, const struct itr_compile_options *opt, struct itr_program **out,
                      struct itr_compile_report *rep, struct itr_diags *d);

// The same from memory; name is used in locations and to resolve relative
// imports.
bool itr_compile_source(const char *name, const char *text, size_t len, const struct itr_compile_options *opt,
                        struct itr_program **out, struct itr_compile_report *rep, struct itr_diags *d);

// The front end alone (what `itrc print` shows): parse, elaborate, verify.
// NULL, with the errors in d, unless the program is clean.
struct itr_program *itr_elaborate_file(const char *path, const struct itr_compile_options *opt, struct itr_diags *d);

// The passes alone, on an elaborated and verified program (p is modified in
// place; on failure it is unusable and the caller frees it).
bool itr_compile_program(struct itr_program *p, const struct itr_compile_options *opt,
                         struct itr_compile_report *rep, struct itr_diags *d);

// The target `itrc compile` uses when none is given: "llvm" where this
// build found LLVM 14, else "ref".
const char *itr_compile_default_target(void);

// Fusion and lowering (compiler/lower.h) of every entry of a compiled
// program, in f32 and in f64, for a kernel target's plan. Appends to *out
// (zero-initialised by the caller); false only on an internal error.
struct kir_plan_kernels;
bool itr_compile_kernels(const struct itr_program *p, struct kir_plan_kernels *out, struct itr_diags *d);

// Total nodes over every graph of p (entries and scan bodies).
int itr_program_node_count(const struct itr_program *p);

#endif
