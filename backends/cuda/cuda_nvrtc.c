// NVRTC compilation (backends/cuda/cuda_nvrtc.h).
#include "backends/cuda/cuda_nvrtc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void itr_nvrtc_output_free(struct itr_nvrtc_output *o) {
    if (!o) return;
    free(o->cubin);
    free(o->ptx);
    free(o->log);
    memset(o, 0, sizeof *o);
}

bool itr_cubin_is_elf(const void *image, size_t size) {
    return image && size >= 52 && memcmp(image, "\x7f" "ELF", 4) == 0;
}

#ifdef ITR_HAVE_NVRTC

#include <nvrtc.h>

// The file name NVRTC's log uses for the unit's lines.
#define UNIT_FILE "itrc_kernels.cu"

bool itr_nvrtc_available(void) { return true; }

void itr_nvrtc_version(int *major, int *minor) {
    if (nvrtcVersion(major, minor) != NVRTC_SUCCESS) *major = *minor = 0;
}

// The kernel a line of the unit belongs to (-1: the prelude).
static int kernel_at(const struct itr_nvrtc_kernels *ks, int line) {
    int k = -1;
    for (int i = 0; i < ks->n; i++)
        if (ks->first_line[i] <= line) k = i;
    return k;
}

// "kernel 'a', kernel 'b'" for the kernels the log's errors point at.
static void failing_kernels(const struct itr_nvrtc_kernels *ks, const char *log, char *buf, size_t n) {
    size_t w = 0;
    buf[0] = 0;
    if (!ks || !log) return;
    int last = -2, shown = 0;
    for (const char *p = strstr(log, UNIT_FILE "("); p; p = strstr(p + 1, UNIT_FILE "(")) {
        int line = atoi(p + strlen(UNIT_FILE "("));
        const char *close = strchr(p, ')');
        if (!close || strncmp(close, "): error", 8) != 0) continue;
        int k = kernel_at(ks, line);
        if (k == last) continue;
        last = k;
        if (shown++ == 8) { w += (size_t)snprintf(buf + w, w < n ? n - w : 0, ", ..."); break; }
        int c = snprintf(buf + w, w < n ? n - w : 0, "%s%s%s%s", shown > 1 ? ", " : "", k >= 0 ? "kernel '" : "the prelude",
                         k >= 0 ? ks->names[k] : "", k >= 0 ? "'" : "");
        if (c > 0) w += (size_t)c;
        if (w >= n) break;
    }
}

static char *program_log(nvrtcProgram prog) {
    size_t n = 0;
    if (nvrtcGetProgramLogSize(prog, &n) != NVRTC_SUCCESS || n <= 1) return NULL;
    char *log = malloc(n);
    if (log && nvrtcGetProgramLog(prog, log) != NVRTC_SUCCESS) {
        free(log);
        return NULL;
    }
    return log;
}

bool itr_nvrtc_compile(const char *src, const char *unit, const char *arch, const struct itr_nvrtc_kernels *ks,
                       struct itr_nvrtc_output *out, struct itr_diags *d) {
    memset(out, 0, sizeof *out);
    bool real = strncmp(arch, "sm_", 3) == 0;
    if (!real && strncmp(arch, "compute_", 8) != 0) {
        itr_diag_error(d, ITR_NOLOC, "NVRTC: '%s' is not a GPU architecture (sm_XX or compute_XX)", arch);
        return false;
    }
    nvrtcProgram prog;
    nvrtcResult r = nvrtcCreateProgram(&prog, src, UNIT_FILE, 0, NULL, NULL);
    if (r != NVRTC_SUCCESS) {
        itr_diag_error(d, ITR_NOLOC, "NVRTC cannot create a program for %s: %s", unit, nvrtcGetErrorString(r));
        return false;
    }
    char archopt[64];
    snprintf(archopt, sizeof archopt, "--gpu-architecture=%s", arch);
    const char *opts[] = { archopt, "--fmad=false", "--minimal" };
    r = nvrtcCompileProgram(prog, (int)(sizeof opts / sizeof *opts), opts);
    out->log = program_log(prog);
    bool ok = r == NVRTC_SUCCESS;
    if (!ok) {
        char which[512];
        failing_kernels(ks, out->log, which, sizeof which);
        itr_diag_error(d, ITR_NOLOC, "NVRTC cannot compile %s%s%s for %s (%s); its log:\n%s", unit, which[0] ? ", " : "",
                       which, arch, nvrtcGetErrorString(r), out->log ? out->log : "(empty)");
    }
    size_t n = 0;
    if (ok && real) {
        ok = nvrtcGetCUBINSize(prog, &n) == NVRTC_SUCCESS && n > 0 && (out->cubin = malloc(n)) != NULL &&
             nvrtcGetCUBIN(prog, out->cubin) == NVRTC_SUCCESS;
        out->cubin_size = n;
        if (!ok) itr_diag_error(d, ITR_NOLOC, "NVRTC produced no cubin for %s (%s)", unit, arch);
    }
    if (ok) {
        ok = nvrtcGetPTXSize(prog, &n) == NVRTC_SUCCESS && n > 0 && (out->ptx = malloc(n)) != NULL &&
             nvrtcGetPTX(prog, out->ptx) == NVRTC_SUCCESS;
        out->ptx_size = n;
        if (!ok) itr_diag_error(d, ITR_NOLOC, "NVRTC produced no PTX for %s (%s)", unit, arch);
    }
    nvrtcDestroyProgram(&prog);
    if (!ok) {
        char *log = out->log;
        out->log = NULL;
        itr_nvrtc_output_free(out);
        free(log);
    }
    return ok;
}

#else

bool itr_nvrtc_available(void) { return false; }

void itr_nvrtc_version(int *major, int *minor) { *major = *minor = 0; }

bool itr_nvrtc_compile(const char *src, const char *unit, const char *arch, const struct itr_nvrtc_kernels *ks,
                       struct itr_nvrtc_output *out, struct itr_diags *d) {
    (void)src, (void)ks;
    memset(out, 0, sizeof *out);
    itr_diag_error(d, ITR_NOLOC, "cannot compile %s for %s: this build has no NVRTC (the CUDA toolkit was not found "
                   "when it was configured)", unit, arch);
    return false;
}

#endif
