// The CUDA driver API, loaded at run time with dlopen (anchors-style §5.2):
// nothing links libcuda, so one binary runs on machines with and without an
// NVIDIA driver, and the cuda backend says clearly why it cannot run.
//
// Entry points are looked up by their versioned names (cuMemAlloc_v2,
// cuMemcpyHtoD_v2, cuDevicePrimaryCtxRelease_v2, ...): the unversioned
// symbols are the legacy 32-bit-size ABI that cuda.h's macros hide. The
// device's primary context is used (stable across CUDA versions; CUDA 13
// changed cuCtxCreate's signature).
//
// Environment:
//   ITRC_LIBCUDA        the driver library to open instead of libcuda.so.1
//                       (tests point it at the toolkit's stub library)
//   ITRC_CUDA_DEVICE    the device ordinal to use (default 0) when
//                       itr_cuda_select_device (itr-run --device N) was not called
#ifndef ITR_CUDA_DRIVER_H
#define ITR_CUDA_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/diag.h"

// The driver's handle types, declared here so that no CUDA header is needed.
typedef int itr_cu_result;                 // CUresult: 0 is success
typedef int itr_cu_device;                 // CUdevice
typedef struct itr_cu_ctx *itr_cu_context;
typedef struct itr_cu_mod *itr_cu_module;
typedef struct itr_cu_func *itr_cu_function;
typedef struct itr_cu_stream *itr_cu_stream;
typedef unsigned long long itr_cu_deviceptr;

struct itr_cuda_api {
    itr_cu_result (*cuInit)(unsigned flags);
    itr_cu_result (*cuDriverGetVersion)(int *version);
    itr_cu_result (*cuDeviceGetCount)(int *count);
    itr_cu_result (*cuDeviceGet)(itr_cu_device *dev, int ordinal);
    itr_cu_result (*cuDeviceGetName)(char *name, int len, itr_cu_device dev);
    itr_cu_result (*cuDeviceGetAttribute)(int *value, int attrib, itr_cu_device dev);
    itr_cu_result (*cuDevicePrimaryCtxRetain)(itr_cu_context *ctx, itr_cu_device dev);
    itr_cu_result (*cuDevicePrimaryCtxRelease_v2)(itr_cu_device dev);
    itr_cu_result (*cuCtxSetCurrent)(itr_cu_context ctx);
    itr_cu_result (*cuCtxSynchronize)(void);
    itr_cu_result (*cuStreamCreate)(itr_cu_stream *s, unsigned flags);
    itr_cu_result (*cuStreamDestroy_v2)(itr_cu_stream s);
    itr_cu_result (*cuStreamSynchronize)(itr_cu_stream s);
    itr_cu_result (*cuModuleLoadDataEx)(itr_cu_module *m, const void *image, unsigned n_options, int *options,
                                        void **values);
    itr_cu_result (*cuModuleUnload)(itr_cu_module m);
    itr_cu_result (*cuModuleGetFunction)(itr_cu_function *f, itr_cu_module m, const char *name);
    itr_cu_result (*cuLaunchKernel)(itr_cu_function f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                    unsigned bz, unsigned shared_bytes, itr_cu_stream s, void **params, void **extra);
    itr_cu_result (*cuMemAlloc_v2)(itr_cu_deviceptr *p, size_t bytes);
    itr_cu_result (*cuMemFree_v2)(itr_cu_deviceptr p);
    itr_cu_result (*cuMemAllocHost_v2)(void **p, size_t bytes);
    itr_cu_result (*cuMemFreeHost)(void *p);
    itr_cu_result (*cuMemcpyHtoD_v2)(itr_cu_deviceptr dst, const void *src, size_t bytes);
    itr_cu_result (*cuMemcpyDtoH_v2)(void *dst, itr_cu_deviceptr src, size_t bytes);
    itr_cu_result (*cuMemcpyDtoD_v2)(itr_cu_deviceptr dst, itr_cu_deviceptr src, size_t bytes);
    itr_cu_result (*cuMemsetD8_v2)(itr_cu_deviceptr dst, unsigned char v, size_t n);
    itr_cu_result (*cuGetErrorName)(itr_cu_result r, const char **name);
};

// CUdevice_attribute values used here (cuda.h).
#define ITR_CU_ATTR_CC_MAJOR 75
#define ITR_CU_ATTR_CC_MINOR 76

// The opened device, after itr_cuda_open succeeds.
struct itr_cuda_device {
    const struct itr_cuda_api *api;
    itr_cu_device dev;
    itr_cu_context ctx;
    int ordinal;
    int cc_major, cc_minor;     // compute capability: sm_<major><minor>
    int driver_version;         // 13000 = CUDA 13.0
    char name[128];
};

// Loads the driver, initialises it and retains the primary context of the
// device (ITRC_CUDA_DEVICE, default 0), once per process; later calls return
// the same device. NULL with one error in d when it cannot:
//   "cuda backend: cannot load libcuda.so.1 (no NVIDIA driver on this machine)"
//   "cuda backend: libcuda.so.1 lacks cuMemAlloc_v2 (driver too old?)"
//   "cuda backend: cuInit failed: CUDA_ERROR_NO_DEVICE (no NVIDIA GPU is visible)"
//   "cuda backend: no device 3 (this machine has 1)"
const struct itr_cuda_device *itr_cuda_open(struct itr_diags *d);

// The device the first itr_cuda_open opens (it wins over ITRC_CUDA_DEVICE).
// False with an error in d when the driver is already open on another one.
bool itr_cuda_select_device(int ordinal, struct itr_diags *d);

// "CUDA_ERROR_OUT_OF_MEMORY (2)": the driver's name for r when it can give
// one, else the number. buf has at least 64 bytes.
const char *itr_cuda_error_name(itr_cu_result r, char *buf, size_t n);

#endif
