// ONNX export (docs/onnx.md "Export"): one inference entry of a compiled
// program becomes an ONNX model (opset 17, IR version 8). Each primitive op
// maps to ONNX nodes through one export table (frontends/onnx/export.c, one
// row per op of ir/ops.def: a function emitting the nodes, or the reason the
// op cannot be exported); a `scan` becomes an ONNX Scan whose body is the
// scan's body graph. Parameters become initializers holding the given
// weights; symbols the weights do not fix and the entry's inputs carry
// become dynamic dims (dim_param, the symbol's name); dims needed as values
// at run time (reshape targets, fill shapes) are computed from the inputs'
// shapes with Shape.
//
// Errors (an op without an ONNX form, a missing or misshapen weight, a dim
// nothing determines) go to diags naming the entry, the node and its op;
// nothing is written then. Nothing here prints.
#ifndef ITR_FRONTENDS_ONNX_EXPORT_H
#define ITR_FRONTENDS_ONNX_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"
#include "ir/tensor_set.h"

#define ITR_ONNX_EXPORT_OPSET 17
#define ITR_ONNX_EXPORT_IR_VERSION 8

struct itr_onnx_export_options {
    const char *entry;                      // the entry point to export (required)
    // The parameters' values by name; may be NULL when the entry uses none.
    const struct itr_tensor_set *weights;
};

// The model as a serialized ModelProto in *buf (malloc'd, caller frees).
// p is a verified (compiled) program, e.g. from a plan.
bool itr_onnx_export(const struct itr_program *p, const struct itr_onnx_export_options *o, uint8_t **buf,
                     size_t *len, struct itr_diags *d);
// The same written to path, atomically (temporary file + rename).
bool itr_onnx_export_file(const struct itr_program *p, const struct itr_onnx_export_options *o, const char *path,
                          struct itr_diags *d);

// The export table, for docs and tests: the ONNX ops op maps to ("Add",
// "Sqrt, Reciprocal", ...) or NULL, and when NULL the reason it has none.
// Every op has exactly one of the two.
const char *itr_onnx_export_mapping(enum itr_op op, const char **unsupported_reason);

// `itrc export` (compiler/itrc.c hands it argv after the command name, and
// load: reads a plan or compiles a .ir with the -D/-I options given).
struct itr_cli;
typedef struct itr_program *(*itr_onnx_export_loader)(const char *path, const char *const *defines, int n_defines,
                                                      const char *const *includes, int n_includes,
                                                      struct itr_diags *d);
int itr_onnx_cmd_export(const struct itr_cli *cli, int argc, char **argv, itr_onnx_export_loader load);

#endif
