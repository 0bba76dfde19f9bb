// The registry of backends (backends/backend.h).
//
// Registration is an explicit table rather than constructor functions: the
// backends live in static libraries, and a linker drops an object file that
// nothing references, constructor and all. A backend that is built only when
// its toolkit is present adds its line under its build flag, e.g.
//     #ifdef ITR_HAVE_LLVM
//         &itr_backend_llvm,
//     #endif
// and links its library into itr_backends (CMakeLists.txt).
#include "backends/backend.h"
#include "backends/llvm/llvm_jit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct itr_backend *const registry[] = {
    &itr_backend_ref,
    &itr_backend_llvm,
    &itr_backend_cuda,
};

#define N_BACKENDS ((int)(sizeof registry / sizeof *registry))

int itr_backend_count(void) { return N_BACKENDS; }

const struct itr_backend *itr_backend_at(int i) { return i >= 0 && i < N_BACKENDS ? registry[i] : NULL; }

// The default without a plan is the reference interpreter.
const char *itr_backend_default_name(void) { return registry[0]->name; }

// With a plan: the fused kernels where they can run (they passed the
// agreement harness, tests/test_agree_*.c).
const char *itr_backend_default_for(const struct itr_program *p) {
    return p && p->kernels && itr_llvm_available() ? itr_backend_llvm.name : itr_backend_ref.name;
}

void itr_backend_list(char *buf, size_t n) {
    size_t w = 0;
    if (n) buf[0] = 0;
    for (int i = 0; i < N_BACKENDS; i++) {
        int k = snprintf(w < n ? buf + w : NULL, w < n ? n - w : 0, "%s%s", i ? ", " : "", registry[i]->name);
        if (k > 0) w += (size_t)k;
    }
}

const struct itr_backend *itr_backend_find(const char *name, struct itr_diags *d) {
    for (int i = 0; name && i < N_BACKENDS; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    if (d) {
        char list[256];
        itr_backend_list(list, sizeof list);
        itr_diag_error(d, ITR_NOLOC, "unknown backend '%s'; available: %s", name ? name : "(none)", list);
    }
    return NULL;
}
