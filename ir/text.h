// The .ir text format: parse + elaborate (modules inlined, imports resolved,
// shapes inferred) into an itr_program, and print a program in canonical
// form. The language is documented in docs/ir.md.
#ifndef ITR_TEXT_H
#define ITR_TEXT_H

#include "ir.h"

struct itr_parse_options {
    const char *const *include_dirs; int n_include_dirs;   // searched after the importing file's folder
    const char *const *overrides; int n_overrides;          // "NAME=VALUE": model config params / dim defaults
    bool no_default_models_dir;                             // do not search ITR_MODELS_DIR
};

// Parses and elaborates a file; NULL (with every error in d) on failure.
struct itr_program *itr_parse_file(const char *path, const struct itr_parse_options *opt, struct itr_diags *d);
// Same from memory; name is used in locations and to resolve relative imports.
struct itr_program *itr_parse_string(const char *name, const char *text, size_t len,
                                     const struct itr_parse_options *opt, struct itr_diags *d);

// Canonical text of a program (malloc'd, caller frees). Parsing it yields a
// program equal (itr_program_equal) to p.
char *itr_print_program(const struct itr_program *p);

#endif
