// Loading the CUDA driver (backends/cuda/cuda_driver.h).
#include "backends/cuda/cuda_driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct itr_cuda_api api;
static struct itr_cuda_device device;
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
static bool opened;
static char open_error[512];   // the first failure, repeated to every later caller
static int selected = -1;      // itr_cuda_select_device's ordinal; -1: ITRC_CUDA_DEVICE or 0

// Names of the results a user meets before the driver can name them itself
// (the stub library and a driver without GPUs answer here), from cuda.h.
static const struct { int code; const char *name, *hint; } known[] = {
    { 1, "CUDA_ERROR_INVALID_VALUE", NULL },
    { 2, "CUDA_ERROR_OUT_OF_MEMORY", NULL },
    { 3, "CUDA_ERROR_NOT_INITIALIZED", NULL },
    { 34, "CUDA_ERROR_STUB_LIBRARY", "the library is the toolkit's stub, not a driver" },
    { 35, "CUDA_ERROR_INSUFFICIENT_DRIVER", "the NVIDIA driver is older than this CUDA runtime needs" },
    { 100, "CUDA_ERROR_NO_DEVICE", "no NVIDIA GPU is visible" },
    { 101, "CUDA_ERROR_INVALID_DEVICE", NULL },
    { 209, "CUDA_ERROR_NO_BINARY_FOR_GPU", NULL },
    { 218, "CUDA_ERROR_INVALID_PTX", NULL },
    { 222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "the driver is older than the NVRTC that compiled the kernels" },
    { 999, "CUDA_ERROR_UNKNOWN", NULL },
};

const char *itr_cuda_error_name(itr_cu_result r, char *buf, size_t n) {
    const char *name = NULL;
    if (api.cuGetErrorName && api.cuGetErrorName(r, &name) != 0) name = NULL;
    for (size_t i = 0; !name && i < sizeof known / sizeof *known; i++)
        if (known[i].code == r) name = known[i].name;
    if (name) snprintf(buf, n, "%s (%d)", name, r);
    else snprintf(buf, n, "CUDA error %d", r);
    return buf;
}

static const char *hint_of(itr_cu_result r) {
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (known[i].code == r) return known[i].hint;
    return NULL;
}

#define SYM(name) { #name, (void **)&api.name }

static bool load(struct itr_diags *d) {
    (void)d;
    const char *lib = getenv("ITRC_LIBCUDA");
    if (!lib || !lib[0]) lib = "libcuda.so.1";
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        if (strcmp(lib, "libcuda.so.1") == 0)
            snprintf(open_error, sizeof open_error, "cuda backend: cannot load libcuda.so.1 (no NVIDIA driver on this machine)");
        else
            snprintf(open_error, sizeof open_error, "cuda backend: cannot load %s (ITRC_LIBCUDA): %s", lib, dlerror());
        return false;
    }
    const struct { const char *name; void **slot; } syms[] = {
        SYM(cuInit), SYM(cuDriverGetVersion), SYM(cuDeviceGetCount), SYM(cuDeviceGet), SYM(cuDeviceGetName),
        SYM(cuDeviceGetAttribute), SYM(cuDevicePrimaryCtxRetain), SYM(cuDevicePrimaryCtxRelease_v2),
        SYM(cuCtxSetCurrent), SYM(cuCtxSynchronize), SYM(cuStreamCreate), SYM(cuStreamDestroy_v2),
        SYM(cuStreamSynchronize), SYM(cuModuleLoadDataEx), SYM(cuModuleUnload), SYM(cuModuleGetFunction),
        SYM(cuLaunchKernel), SYM(cuMemAlloc_v2), SYM(cuMemFree_v2), SYM(cuMemAllocHost_v2), SYM(cuMemFreeHost),
        SYM(cuMemcpyHtoD_v2), SYM(cuMemcpyDtoH_v2), SYM(cuMemcpyDtoD_v2), SYM(cuMemsetD8_v2), SYM(cuGetErrorName),
    };
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
        *syms[i].slot = dlsym(h, syms[i].name);
        if (!*syms[i].slot) {
            snprintf(open_error, sizeof open_error, "cuda backend: %s lacks %s (the NVIDIA driver is too old)", lib,
                     syms[i].name);
            memset(&api, 0, sizeof api);
            dlclose(h);
            return false;
        }
    }
    // The handle stays open for the life of the process: the function
    // pointers and the context point into it.
    return true;
}

static bool fail_call(const char *what, itr_cu_result r) {
    char nm[96];
    const char *hint = hint_of(r);
    snprintf(open_error, sizeof open_error, "cuda backend: %s failed: %s%s%s%s", what, itr_cuda_error_name(r, nm, sizeof nm),
             hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
    return false;
}

static bool init_device(void) {
    itr_cu_result r;
    if ((r = api.cuInit(0)) != 0) return fail_call("cuInit", r);
    api.cuDriverGetVersion(&device.driver_version);
    int count = 0;
    if ((r = api.cuDeviceGetCount(&count)) != 0) return fail_call("cuDeviceGetCount", r);
    const char *env = getenv("ITRC_CUDA_DEVICE");
    int ordinal = 0;
    if (selected >= 0) ordinal = selected;
    else if (env && env[0]) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end || v < 0 || v > 1024) {
            snprintf(open_error, sizeof open_error, "cuda backend: ITRC_CUDA_DEVICE='%s' is not a device number", env);
            return false;
        }
        ordinal = (int)v;
    }
    if (ordinal >= count) {
        snprintf(open_error, sizeof open_error, "cuda backend: no device %d (this machine has %d)", ordinal, count);
        return false;
    }
    device.ordinal = ordinal;
    if ((r = api.cuDeviceGet(&device.dev, ordinal)) != 0) return fail_call("cuDeviceGet", r);
    if (api.cuDeviceGetName(device.name, (int)sizeof device.name, device.dev) != 0) strcpy(device.name, "?");
    if ((r = api.cuDeviceGetAttribute(&device.cc_major, ITR_CU_ATTR_CC_MAJOR, device.dev)) != 0 ||
        (r = api.cuDeviceGetAttribute(&device.cc_minor, ITR_CU_ATTR_CC_MINOR, device.dev)) != 0)
        return fail_call("cuDeviceGetAttribute", r);
    if ((r = api.cuDevicePrimaryCtxRetain(&device.ctx, device.dev)) != 0) return fail_call("cuDevicePrimaryCtxRetain", r);
    if ((r = api.cuCtxSetCurrent(device.ctx)) != 0) return fail_call("cuCtxSetCurrent", r);
    device.api = &api;
    return true;
}

bool itr_cuda_select_device(int ordinal, struct itr_diags *d) {
    pthread_mutex_lock(&open_mu);
    // After a failed open the open's own error repeats; only a device that
    // is open and another one is a conflict.
    bool ok = !opened || !device.api || device.ordinal == ordinal;
    int was = device.ordinal;
    if (!opened) selected = ordinal;
    pthread_mutex_unlock(&open_mu);
    if (!ok) itr_diag_error(d, ITR_NOLOC, "cuda backend: cannot use device %d: the driver was already opened for "
                            "device %d in this process", ordinal, was);
    return ok;
}

const struct itr_cuda_device *itr_cuda_open(struct itr_diags *d) {
    pthread_mutex_lock(&open_mu);
    if (!opened) {
        opened = true;
        if (!load(d) || !init_device()) device.api = NULL;
    }
    const struct itr_cuda_device *dev = device.api ? &device : NULL;
    // Every thread that uses the device needs the context current.
    if (dev) api.cuCtxSetCurrent(device.ctx);
    pthread_mutex_unlock(&open_mu);
    if (!dev) itr_diag_error(d, ITR_NOLOC, "%s", open_error);
    return dev;
}
