// Internal to backends/llvm: kernel IR -> LLVM IR (render.c).
#ifndef ITR_LLVM_RENDER_H
#define ITR_LLVM_RENDER_H

#include <stddef.h>

#include <llvm-c/Core.h>

#include "ir/kir.h"

// Renders kernel k into module m as an external function named `symbol`
// with the itr_kernel_fn convention, plus an internal always-inline body
// function. Returns false with the reason in why[0..n) when the kernel uses
// an operation the renderer cannot express (kir_verify has already passed).
bool itr_llvm_render_kernel(LLVMModuleRef m, const struct kir_kernel *k, const char *symbol, char *why, size_t n);

#endif
