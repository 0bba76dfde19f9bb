// ONNX import (docs/onnx.md): an ONNX model (.onnx, a protobuf ModelProto of
// Debian's onnx.proto) becomes an itr_program with one entry point, whose
// nodes are our primitives. Each ONNX op is one row of a frontend op table
// (frontends/onnx/ops.c) with the opset range it covers and a lowering
// function; recurrent ops (GRU, LSTM, RNN) become `scan` nodes whose body is
// the cell (frontends/onnx/rnn.c), and ONNX Scan a `scan` whose body is its
// body graph (frontends/onnx/scan.c). If and Loop are imported where they
// fold (frontends/onnx/control.c): a known condition inlines its branch, a
// run-time one selects between both with `where`, and a Loop of a known
// trip count whose condition stays true is a `scan`.
//
// Values the graph IR wants at compile time — Reshape's shape, Slice's
// bounds, TopK's k, reduction axes — must be constants: initializers,
// Constant nodes, or what Shape/Gather/Concat/arithmetic compute from the
// (possibly symbolic) dims of other values, which the importer folds into
// dim expressions. A dynamic input dim becomes a named dim (its dim_param,
// or INPUT_AXIS when it has none).
//
// Errors (an unsupported op, dtype or attribute value; a malformed file)
// go to diags naming the file, the node, its op and the opset; the import
// then returns NULL. Nothing here prints.
#ifndef ITR_FRONTENDS_ONNX_IMPORT_H
#define ITR_FRONTENDS_ONNX_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"
#include "ir/tensor_set.h"

struct itr_onnx_options {
    const char *model_name;   // NULL: the ONNX graph's name, made an identifier
    const char *entry_name;   // NULL: "forward"
    // true: float initializers become parameters, their values go to the
    // weights set; false: every initializer becomes a constant of the graph,
    // so the program needs no weights file.
    bool params;
    // Values for graph inputs that a lowering needs at compile time (the
    // node tests feed Reshape's shape as an input). Such an input, when only
    // its value is needed, is no input of the entry. May be NULL.
    const struct itr_tensor_set *input_values;
};

void itr_onnx_options_init(struct itr_onnx_options *o);

// What the importer made of the graph's inputs and outputs: ONNX name ->
// the IR name of the entry's input/output (names are made identifiers;
// inputs folded to constants are absent). Arrays parallel, malloc'd.
struct itr_onnx_import_info {
    int n_inputs;  char **input_onnx, **input_ir;
    int n_outputs; char **output_onnx, **output_ir;
    int64_t opset;            // the model's default-domain opset
};
void itr_onnx_import_info_free(struct itr_onnx_import_info *info);

// Imports the model at path. weights (may be NULL when !o->params) receives
// the parameters' values by parameter name; info (may be NULL) is filled.
// Returns a verified program (caller frees), or NULL with errors in d.
struct itr_program *itr_onnx_import_file(const char *path, const struct itr_onnx_options *o,
                                         struct itr_tensor_set *weights, struct itr_onnx_import_info *info,
                                         struct itr_diags *d);
// The same from memory; what names the model in messages.
struct itr_program *itr_onnx_import_bytes(const char *what, const uint8_t *buf, size_t len,
                                          const struct itr_onnx_options *o, struct itr_tensor_set *weights,
                                          struct itr_onnx_import_info *info, struct itr_diags *d);

// True when path names an ONNX model (ends in ".onnx").
bool itr_onnx_is_model_path(const char *path);

// A serialized TensorProto (the node tests' input_N.pb / output_N.pb) as a
// tensor; *name (may be NULL) gets the tensor's name (malloc'd, or NULL).
// Only our dtypes (f32 f64 i32 i64 bool) are read; others are errors that
// name the ONNX type.
struct itr_tensor *itr_onnx_tensor_parse(const char *what, const uint8_t *buf, size_t len, char **name,
                                         struct itr_diags *d);
struct itr_tensor *itr_onnx_tensor_read_file(const char *path, char **name, struct itr_diags *d);

// Writes a tensor set as safetensors, atomically. (runtime/ has the full
// reader and writer; itrc links without runtime/, so the importer carries
// this small writer of its own.)
bool itr_onnx_write_safetensors(const char *path, const struct itr_tensor_set *s, struct itr_diags *d);

// The frontend op table, for docs and tests: row i's ONNX op name and the
// opset range it covers; false past the end.
bool itr_onnx_op_row(int i, const char **name, int *since, int *until);
// True when op_type (default domain) at opset has a lowering.
bool itr_onnx_op_supported(const char *op_type, int64_t opset);

// `itrc import` (compiler/itrc.c hands it argv after the command name).
struct itr_cli;
int itr_onnx_cmd_import(const struct itr_cli *cli, int argc, char **argv);

#endif
