// Human-readable reports that the itrc command prints: the dump of a plan
// and the op reference generated from the op table (docs/cli.md).
#ifndef ITR_COMPILER_DUMP_H
#define ITR_COMPILER_DUMP_H

#include <stdio.h>

#include "ir/bind.h"
#include "ir/ir.h"
#include "ir/plan.h"

// Header, symbols, parameters with their sizes, entry points and scan bodies
// with their signatures, then every graph one node per line:
//   _3 = matmul(_2, img_fc.weight)  : f32[N, 1024]
void itr_dump_plan(FILE *f, const char *path, const struct itr_program *p, const struct itr_plan_info *info);

// The memory plan section: per entry point, the arena bytes one run needs
// (ir/memplan.h) under b, or "unbound: B, L" when b leaves dims the
// sizes need unbound. False when a plan cannot be made (reported in d).
bool itr_dump_memory_plan(FILE *f, const struct itr_program *p, const struct itr_dim_bindings *b,
                          struct itr_diags *d);

// The op reference: plain text, or the Markdown that docs/ops.md embeds
// between its generated-table markers.
void itr_print_op_reference(FILE *f, bool markdown);

// Helpers shared by the reports and the CLIs.
// Shortest decimal form of v that reads back as the same double.
void itr_format_double(double v, char *buf, size_t n);
// "xavier_uniform(1)", "uniform(-0.1, 0.1)", "zeros".
void itr_format_init(const struct itr_init *init, char *buf, size_t n);
// Element count of a type under its symbols' defaults; false (and the
// formatted product, "V*300", in expr) when a symbol has no default.
bool itr_type_numel_default(const struct itr_program *p, const struct itr_type *t, int64_t *numel, char *expr,
                            size_t n);

#endif
