// A set of named tensors with string metadata: a model's parameters and
// optimizer state by name, the contents of a safetensors file. It is a plain
// container of itr_tensor, so it lives in ir/ beside it: backends, compiler
// and runtime can all hold tensors by name without the lower layers
// depending on runtime/ (design.md's layers). runtime/safetensors.h reads and
// writes it and includes this header, so its users need nothing else.
#ifndef ITR_TENSOR_SET_H
#define ITR_TENSOR_SET_H

#include "ir/ir.h"

struct itr_named_tensor {
    char *name;
    struct itr_tensor *tensor;
};

struct itr_tensor_set {
    struct itr_named_tensor *items; int n, cap;
    char **meta_keys, **meta_values; int n_meta, cap_meta;   // __metadata__ of a safetensors file
};

void itr_tensor_set_init(struct itr_tensor_set *s);
void itr_tensor_set_free(struct itr_tensor_set *s);      // frees names and tensors
// Takes ownership of t. Replaces an existing tensor of the same name.
void itr_tensor_set_put(struct itr_tensor_set *s, const char *name, struct itr_tensor *t);
struct itr_tensor *itr_tensor_set_get(const struct itr_tensor_set *s, const char *name);
void itr_tensor_set_meta(struct itr_tensor_set *s, const char *key, const char *value);
const char *itr_tensor_set_get_meta(const struct itr_tensor_set *s, const char *key);

#endif
