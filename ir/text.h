// The .ir text format: parse + elaborate (modules inlined, imports resolved,
// shapes inferred) into an itr_program, and print a program in canonical
// form. The language is documented in docs/ir.md.
#ifndef ITR_TEXT_H
#define ITR_TEXT_H

#include "ir.h"

struct itr_parse_options {
    const char *const *include_dirs; int n_include_dirs;   // searched after the importing file's folder
    const char *const *overrides; int n_overrides;          // "NAME=VALUE": model config params / dim defaults
    // Values a data set gives (itrc --data): applied as overrides, but only
    // to names the model declares and only where no override names them, so
    // an explicit -D wins. data_used (NULL, or n_data_overrides entries) says
    // which ones were applied.
    const char *const *data_overrides; int n_data_overrides;
    bool *data_used;
    bool no_default_models_dir;                             // do not search ITR_MODELS_DIR
};

// Parses and elaborates a file; NULL (with every error in d) on failure.
struct itr_program *itr_parse_file(const char *path, const struct itr_parse_options *opt, struct itr_diags *d);
// Same from memory; name is used in locations and to resolve relative imports.
struct itr_program *itr_parse_string(const char *name, const char *text, size_t len,
                                     const struct itr_parse_options *opt, struct itr_diags *d);

// A module library (a file without a model, like models/modules/*.ir), for
// `itrc check`: the file and its imports are parsed and every module it
// defines is instantiated in a model of its own — each int config parameter
// without a default bound to a dim (its name upper-cased, so that `in` and
// `dim` stay legal), the others at their defaults — which elaborates its
// parameters, their types and initialisers, nested instances and
// compile-time ifs. Method and function bodies take their types from a call,
// so they are checked where a model (or tests/ir/modules_harness.ir) calls
// them. Returns -1 when the file has a model (nothing reported: check it as
// one), 0 after reporting errors, 1 when every module elaborated.
struct itr_library_report {
    int n_modules, n_functions;   // defined in the file itself
    int n_skipped;                // modules with a float/bool/str config parameter without a default
    char modules[512];            // "linear, mlp, embedding" (truncated with "...")
};
int itr_check_library(const char *path, const struct itr_parse_options *opt, struct itr_library_report *rep,
                      struct itr_diags *d);

// Canonical text of a program (malloc'd, caller frees). Parsing it yields a
// program equal (itr_program_equal) to p.
char *itr_print_program(const struct itr_program *p);

#endif
