// safetensors files: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {str: str}}, then the tensor bytes. Used for weights and
// checkpoints. Reading validates every offset against the file size and the
// dtype x shape; writing is atomic (temporary file + rename).
//
// Why ir/: the runtime reads weights with it, and so does `itrc export`
// (frontends/onnx/), which may not depend on runtime/ (docs/contributing.md:
// what both need goes down to ir/, as the .npy header parser did).
// runtime/safetensors.h includes this header for the runtime's users.
#ifndef ITR_IR_SAFETENSORS_H
#define ITR_IR_SAFETENSORS_H

#include "ir/ir.h"
#include "ir/tensor_set.h"   // struct itr_tensor_set and its functions

// Both readers initialise *out themselves (they do not free what it held) and
// leave it empty on failure. Tensors come out in data-offset order.
bool itr_safetensors_read(const char *path, struct itr_tensor_set *out, struct itr_diags *d);
bool itr_safetensors_parse(const uint8_t *buf, size_t len, const char *what, struct itr_tensor_set *out,
                           struct itr_diags *d);
// Tensors are laid out sorted by name, the header padded to 8 bytes.
bool itr_safetensors_write(const char *path, const struct itr_tensor_set *s, struct itr_diags *d);

#endif
