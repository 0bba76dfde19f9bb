// The LLVM JIT driver (llvm_jit.h): verify, render, optimise, emit, cache,
// load. See anchors-style.md §5.1 for the LLVM 14 C API pitfalls this
// follows (host target machine for vectorisation, process symbols for libm,
// matching data layout).
//
// Every module goes through our own target machine to an object file that
// LLJIT loads with LLVMOrcLLJITAddObjectFile, whether it came from the cache
// or was just compiled; so a cache hit runs exactly the code a miss would,
// and LLJIT's IR layer (and thread-safe-module ownership) is never involved.
#include "backends/llvm/llvm_jit.h"

#include <stdlib.h>
#include <string.h>

#ifndef ITR_HAVE_LLVM

bool itr_llvm_available(void) { return false; }

struct itr_llvm_jit *itr_llvm_jit_new(struct itr_diags *d) {
    itr_diag_error(d, ITR_NOLOC, "the LLVM backend is not available: itrc was built without LLVM");
    return NULL;
}

void itr_llvm_jit_free(struct itr_llvm_jit *j) { (void)j; }

bool itr_llvm_compile(struct itr_llvm_jit *j, struct kir_kernel *const *kernels, int n, itr_kernel_fn *fns_out,
                      struct itr_diags *d) {
    (void)j, (void)kernels, (void)n, (void)fns_out;
    itr_diag_error(d, ITR_NOLOC, "the LLVM backend is not available: itrc was built without LLVM");
    return false;
}

char *itr_llvm_render_ir(struct kir_kernel *const *kernels, int n, struct itr_diags *d) {
    (void)kernels, (void)n;
    itr_diag_error(d, ITR_NOLOC, "the LLVM backend is not available: itrc was built without LLVM");
    return NULL;
}

bool itr_llvm_last_was_cache_hit(const struct itr_llvm_jit *j) { (void)j; return false; }

#else

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <llvm/Config/llvm-config.h>
#include <xxhash.h>

#include "backends/llvm/render.h"
#include "ir/env.h"

// Part of the cache key: bump when the rendering of any construct changes.
#define ITR_LLVM_RENDER_VERSION "itrc-llvm-render-5"

// A kernel body whose code is in the JIT, under symbol sym.
struct jit_body { uint64_t key; char *sym; };

struct itr_llvm_jit {
    LLVMOrcLLJITRef jit;
    LLVMTargetMachineRef tm;      // ours: optimisation and object emission
    char *triple, *cpu, *features, *layout;
    int dump;                     // ITRC_DUMP_LLVM
    char *cache_dir;              // NULL: no cache
    // Every body already in the JIT, an open-addressing table on key (0:
    // empty; body_key never returns 0), so that a body an earlier compile
    // added (another entry, a scan body) is neither compiled nor defined twice.
    struct jit_body *bodies; int n_bodies, cap_bodies;
    bool last_hit;
};

bool itr_llvm_available(void) { return true; }

// Consumes e and reports it.
static bool llvm_error(struct itr_diags *d, LLVMErrorRef e, const char *what) {
    char *msg = LLVMGetErrorMessage(e);
    itr_diag_error(d, ITR_NOLOC, "internal error: LLVM: %s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return false;
}

static char *xstrdup_llvm(char *s) {   // an LLVM-owned message to a malloc'd string
    char *r = strdup(s ? s : "");
    LLVMDisposeMessage(s);
    return r;
}


static int mkdir_p(const char *path) {
    char *p = strdup(path);
    if (!p) return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) { free(p); return -1; }
        *s = '/';
    }
    int rc = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

// $XDG_CACHE_HOME/itrc or ~/.cache/itrc, created if missing; NULL when
// disabled or not creatable (the cache only saves time, so that is silent).
static char *cache_dir(void) {
    if (itr_env_flag("ITRC_NO_CACHE")) return NULL;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char buf[4096];
    if (xdg && *xdg) snprintf(buf, sizeof buf, "%s/itrc", xdg);
    else if (home && *home) snprintf(buf, sizeof buf, "%s/.cache/itrc", home);
    else return NULL;
    return mkdir_p(buf) == 0 ? strdup(buf) : NULL;
}

struct itr_llvm_jit *itr_llvm_jit_new(struct itr_diags *d) {
    if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
        itr_diag_error(d, ITR_NOLOC, "internal error: LLVM has no native target for this machine");
        return NULL;
    }
    struct itr_llvm_jit *j = calloc(1, sizeof *j);
    if (!j) {
        itr_diag_error(d, ITR_NOLOC, "out of memory");
        return NULL;
    }
    char *def = LLVMGetDefaultTargetTriple();
    j->triple = xstrdup_llvm(LLVMNormalizeTargetTriple(def));
    LLVMDisposeMessage(def);
    j->cpu = xstrdup_llvm(LLVMGetHostCPUName());
    j->features = xstrdup_llvm(LLVMGetHostCPUFeatures());
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(j->triple, &target, &err)) {
        itr_diag_error(d, ITR_NOLOC, "internal error: LLVM: no target for %s: %s", j->triple, err ? err : "");
        LLVMDisposeMessage(err);
        itr_llvm_jit_free(j);
        return NULL;
    }
    // The host CPU and its features: without them the vectoriser's cost model
    // assumes no vector units and leaves every loop scalar.
    j->tm = LLVMCreateTargetMachine(target, j->triple, j->cpu, j->features, LLVMCodeGenLevelAggressive,
                                    LLVMRelocDefault, LLVMCodeModelJITDefault);
    LLVMTargetMachineRef jit_tm = LLVMCreateTargetMachine(target, j->triple, j->cpu, j->features,
                                                          LLVMCodeGenLevelAggressive, LLVMRelocDefault,
                                                          LLVMCodeModelJITDefault);
    if (!j->tm || !jit_tm) {
        itr_diag_error(d, ITR_NOLOC, "internal error: LLVM: cannot create a target machine for %s (%s)", j->triple, j->cpu);
        if (jit_tm) LLVMDisposeTargetMachine(jit_tm);
        itr_llvm_jit_free(j);
        return NULL;
    }
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(j->tm);
    j->layout = xstrdup_llvm(LLVMCopyStringRepOfTargetData(td));
    LLVMDisposeTargetData(td);

    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    // The builder takes the JIT target machine builder, which takes jit_tm.
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jit_tm));
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->jit, builder);   // consumes builder
    if (e) {
        j->jit = NULL;
        llvm_error(d, e, "cannot create the JIT");
        itr_llvm_jit_free(j);
        return NULL;
    }
    // Kernels call libm (expf, tanhf, erff, ...); LLVM 14's LLJIT does not
    // search the process's symbols unless asked.
    LLVMOrcDefinitionGeneratorRef gen;
    e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL);
    if (e) {
        llvm_error(d, e, "cannot make process symbols visible to the JIT");
        itr_llvm_jit_free(j);
        return NULL;
    }
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j->jit), gen);
    const char *dump = getenv("ITRC_DUMP_LLVM");
    j->dump = dump ? atoi(dump) : 0;
    j->cache_dir = cache_dir();
    return j;
}

void itr_llvm_jit_free(struct itr_llvm_jit *j) {
    if (!j) return;
    if (j->jit) {
        LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->jit);   // frees all JIT'd code
        if (e) LLVMConsumeError(e);
    }
    if (j->tm) LLVMDisposeTargetMachine(j->tm);
    for (int i = 0; i < j->cap_bodies; i++) free(j->bodies[i].sym);
    free(j->triple), free(j->cpu), free(j->features), free(j->layout), free(j->cache_dir), free(j->bodies);
    free(j);
}

bool itr_llvm_last_was_cache_hit(const struct itr_llvm_jit *j) { return j && j->last_hit; }

// ---- keys: every field the rendering reads, so equal keys mean equal code

static void hash_bytes(XXH3_state_t *h, const void *p, size_t n) { XXH3_64bits_update(h, p, n); }
static void hash_i64(XXH3_state_t *h, int64_t v) { hash_bytes(h, &v, sizeof v); }
static void hash_str(XXH3_state_t *h, const char *s) {
    s = s ? s : "";
    hash_bytes(h, s, strlen(s) + 1);
}

// names: whether the kernel's, buffers', dims' and variables' names count.
// They only name LLVM values, so a body key leaves them out and the body is
// rendered with canonical names (canonical_copy): the object is then a
// function of the key alone.
static void hash_kernel(XXH3_state_t *h, const struct kir_kernel *k, bool names) {
    if (names) hash_str(h, k->name);
    hash_i64(h, k->n_bufs);
    for (int i = 0; i < k->n_bufs; i++) {
        if (names) hash_str(h, k->bufs[i].name);
        hash_i64(h, k->bufs[i].dtype * 4 + k->bufs[i].written * 2 + k->bufs[i].noalias);
    }
    hash_i64(h, k->n_dims);
    for (int i = 0; i < k->n_dims && names; i++) hash_str(h, k->dims[i].name);
    hash_i64(h, k->n_vars);
    for (int i = 0; i < k->n_vars; i++) {
        const struct kir_var *v = &k->vars[i];
        if (names) hash_str(h, v->name);
        int64_t f[4] = { v->kind, v->type, v->lanes, v->combine };
        hash_bytes(h, f, sizeof f);
    }
    hash_i64(h, k->n_exprs);
    for (int i = 0; i < k->n_exprs; i++) {
        const struct kir_expr *e = &k->exprs[i];
        int64_t f[10] = { e->kind, e->type, e->op, e->a, e->b, e->c, e->buf, e->var, e->dim, e->ival };
        hash_bytes(h, f, sizeof f);
        hash_bytes(h, &e->fval, sizeof e->fval);
    }
    hash_i64(h, k->n_stmts);
    for (int i = 0; i < k->n_stmts; i++) {
        const struct kir_stmt *s = &k->stmts[i];
        int64_t f[11] = { s->kind, s->loop, s->var, s->lo, s->hi, s->buf, s->index, s->value, s->cond, s->n_body, 0 };
        hash_bytes(h, f, sizeof f);
        hash_bytes(h, s->body, (size_t)s->n_body * sizeof *s->body);
    }
    hash_i64(h, k->body);
    hash_i64(h, k->parallel_hi);
}

// Everything besides the kernel that decides the object: renderer, LLVM,
// target and pipeline.
static void hash_salt(XXH3_state_t *h, const struct itr_llvm_jit *j) {
    hash_str(h, ITR_LLVM_RENDER_VERSION);
    hash_str(h, LLVM_VERSION_STRING);
    hash_str(h, j ? j->triple : "");
    hash_str(h, j ? j->cpu : "");
    hash_str(h, j ? j->features : "");
    const char *passes = getenv("ITRC_LLVM_PASSES");   // objects of another pipeline are other objects
    hash_str(h, passes ? passes : "");
    hash_str(h, itr_env_flag("ITRC_LLVM_UNROLL") ? "unroll" : "");
}

// The key of a whole module, for itr_llvm_render_ir's symbol names.
static uint64_t module_key(const struct itr_llvm_jit *j, struct kir_kernel *const *kernels, int n) {
    XXH3_state_t *h = XXH3_createState();
    if (!h) return 0;
    XXH3_64bits_reset(h);
    hash_salt(h, j);
    hash_i64(h, n);
    for (int i = 0; i < n; i++) hash_kernel(h, kernels[i], true);
    uint64_t r = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return r;
}

// The key of one kernel body, names left out; 0 only when out of memory.
static uint64_t body_key(const struct itr_llvm_jit *j, const struct kir_kernel *k) {
    XXH3_state_t *h = XXH3_createState();
    if (!h) return 0;
    XXH3_64bits_reset(h);
    hash_str(h, "itrc-body");
    hash_salt(h, j);
    hash_kernel(h, k, false);
    uint64_t r = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return r ? r : 1;
}

// ---- the bodies already in the JIT

static struct jit_body *body_find(const struct itr_llvm_jit *j, uint64_t key) {
    if (!j->cap_bodies) return NULL;
    for (size_t i = (size_t)(key % (uint64_t)j->cap_bodies);; i = (i + 1) % (size_t)j->cap_bodies) {
        if (j->bodies[i].key == key) return &j->bodies[i];
        if (!j->bodies[i].key) return NULL;
    }
}

// Takes sym (freed on failure).
static bool body_insert(struct itr_llvm_jit *j, uint64_t key, char *sym) {
    if (2 * (j->n_bodies + 1) > j->cap_bodies) {   // at most half full
        int cap = j->cap_bodies ? 2 * j->cap_bodies : 256;
        struct jit_body *old = j->bodies, *nb = calloc((size_t)cap, sizeof *nb);
        if (!nb) { free(sym); return false; }
        int old_cap = j->cap_bodies;
        j->bodies = nb, j->cap_bodies = cap, j->n_bodies = 0;
        for (int i = 0; i < old_cap; i++)
            if (old[i].key) {
                size_t s = (size_t)(old[i].key % (uint64_t)cap);
                while (nb[s].key) s = (s + 1) % (size_t)cap;
                nb[s] = old[i];
                j->n_bodies++;
            }
        free(old);
    }
    size_t s = (size_t)(key % (uint64_t)j->cap_bodies);
    while (j->bodies[s].key && j->bodies[s].key != key) s = (s + 1) % (size_t)j->cap_bodies;
    if (j->bodies[s].key) { free(sym); return true; }
    j->bodies[s].key = key, j->bodies[s].sym = sym;
    j->n_bodies++;
    return true;
}

// ---- rendering

static char *kernel_text(const struct kir_kernel *k) {
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) return NULL;
    kir_print(k, f);
    fclose(f);
    return s;
}

static bool internal_kernel_error(struct itr_diags *d, const struct kir_kernel *k, const char *what, const char *why) {
    char *text = kernel_text(k);
    itr_diag_error(d, ITR_NOLOC, "internal error: kernel '%s' %s: %s\n%s", k->name, what, why, text ? text : "");
    free(text);
    return false;
}

// LLVM's default handler exits the process on an error diagnostic and prints
// optimisation remarks ("loop not vectorized") to stderr; we keep the first
// error for the report and drop the rest (vectorisation is a hint).
struct diag_sink { char msg[1024]; };

static void diag_handler(LLVMDiagnosticInfoRef di, void *ctx) {
    struct diag_sink *sink = ctx;
    if (LLVMGetDiagInfoSeverity(di) != LLVMDSError || sink->msg[0]) return;
    char *s = LLVMGetDiagInfoDescription(di);
    snprintf(sink->msg, sizeof sink->msg, "%s", s ? s : "");
    LLVMDisposeMessage(s);
}

static char *symbol_name(const char *prefix, uint64_t key) {
    size_t n = strlen(prefix) + 20;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s.%016" PRIx64, prefix, key);
    return s;
}

static void free_symbols(char **syms, int n) {
    for (int i = 0; i < n && syms; i++) free(syms[i]);
    free(syms);
}

// k with its kernel, buffer, dim and variable names replaced by b0, d0, v0,
// ...: what a body key identifies. The copy shares k's arrays except those
// three; free it with free_canonical.
struct canonical { struct kir_kernel k; char *names; };

static bool canonical_copy(const struct kir_kernel *k, struct canonical *c) {
    c->k = *k;
    c->k.name = "kernel";
    size_t nn = (size_t)k->n_bufs + (size_t)k->n_dims + (size_t)k->n_vars;
    c->names = malloc(nn * 16 + 1);
    c->k.bufs = malloc(((size_t)k->n_bufs + 1) * sizeof *k->bufs);
    c->k.dims = malloc(((size_t)k->n_dims + 1) * sizeof *k->dims);
    c->k.vars = malloc(((size_t)k->n_vars + 1) * sizeof *k->vars);
    if (!c->names || !c->k.bufs || !c->k.dims || !c->k.vars) {
        free(c->names), free(c->k.bufs), free(c->k.dims), free(c->k.vars);
        return false;
    }
    char *p = c->names;
    for (int i = 0; i < k->n_bufs; i++, p += 16) {
        c->k.bufs[i] = k->bufs[i];
        snprintf(p, 16, "b%d", i);
        c->k.bufs[i].name = p;
    }
    for (int i = 0; i < k->n_dims; i++, p += 16) {
        c->k.dims[i] = k->dims[i];
        snprintf(p, 16, "d%d", i);
        c->k.dims[i].name = p;
    }
    for (int i = 0; i < k->n_vars; i++, p += 16) {
        c->k.vars[i] = k->vars[i];
        snprintf(p, 16, "v%d", i);
        c->k.vars[i].name = p;
    }
    return true;
}

static void free_canonical(struct canonical *c) {
    free(c->names), free(c->k.bufs), free(c->k.dims), free(c->k.vars);
}

// Renders kernels (already verified by kir_verify) into a new module of
// context c, kernel i as symbol syms[i], with canonical names when
// `canonical`; NULL with an error in d.
static LLVMModuleRef render_module(LLVMContextRef c, const struct itr_llvm_jit *j, struct kir_kernel *const *kernels,
                                   int n, char **syms, bool canonical, struct itr_diags *d) {
    char why[512];
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext("itrc_kernels", c);
    if (j) {
        // The optimiser must see the real layout; the JIT rejects a different one.
        LLVMSetTarget(m, j->triple);
        LLVMSetDataLayout(m, j->layout);
    }
    for (int i = 0; i < n; i++) {
        struct canonical cc;
        if (canonical && !canonical_copy(kernels[i], &cc)) {
            LLVMDisposeModule(m);
            itr_diag_error(d, ITR_NOLOC, "out of memory");
            return NULL;
        }
        bool rendered = itr_llvm_render_kernel(m, canonical ? &cc.k : kernels[i], syms[i], why, sizeof why);
        if (canonical) free_canonical(&cc);
        if (!rendered) {
            LLVMDisposeModule(m);
            return internal_kernel_error(d, kernels[i], "cannot be rendered to LLVM IR", why), NULL;
        }
        // Verify kernel by kernel, so that a failure names its kernel.
        size_t sl = strlen(syms[i]);
        char inner[sl + 6];
        memcpy(inner, syms[i], sl);
        memcpy(inner + sl, ".body", 6);
        LLVMValueRef fo = LLVMGetNamedFunction(m, syms[i]), fi = LLVMGetNamedFunction(m, inner);
        if ((fi && LLVMVerifyFunction(fi, LLVMReturnStatusAction)) || (fo && LLVMVerifyFunction(fo, LLVMReturnStatusAction))) {
            char *msg = NULL;
            LLVMVerifyModule(m, LLVMReturnStatusAction, &msg);
            internal_kernel_error(d, kernels[i], "renders to LLVM IR that does not verify", msg ? msg : "");
            LLVMDisposeMessage(msg);
            LLVMDisposeModule(m);
            return NULL;
        }
    }
    char *msg = NULL;
    if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
        itr_diag_error(d, ITR_NOLOC, "internal error: the LLVM module of %d kernels does not verify: %s", n, msg ? msg : "");
        LLVMDisposeMessage(msg);
        LLVMDisposeModule(m);
        return NULL;
    }
    LLVMDisposeMessage(msg);
    return m;
}

static bool verify_kernels(struct kir_kernel *const *kernels, int n, struct itr_diags *d) {
    char why[512];
    for (int i = 0; i < n; i++)
        if (!kir_verify(kernels[i], why, sizeof why)) return internal_kernel_error(d, kernels[i], "is not valid kernel IR", why);
    return true;
}

char *itr_llvm_render_ir(struct kir_kernel *const *kernels, int n, struct itr_diags *d) {
    if (!verify_kernels(kernels, n, d)) return NULL;
    uint64_t key = module_key(NULL, kernels, n);
    char **syms = calloc((size_t)n + 1, sizeof *syms);
    for (int i = 0; syms && i < n; i++)
        if (!(syms[i] = symbol_name(kernels[i]->name, key))) {
            free_symbols(syms, i);
            syms = NULL;
        }
    if (!syms) {
        itr_diag_error(d, ITR_NOLOC, "out of memory");
        return NULL;
    }
    LLVMContextRef c = LLVMContextCreate();
    LLVMModuleRef m = render_module(c, NULL, kernels, n, syms, false, d);
    char *r = NULL;
    if (m) {
        r = xstrdup_llvm(LLVMPrintModuleToString(m));
        LLVMDisposeModule(m);
    }
    LLVMContextDispose(c);
    free_symbols(syms, n);
    return r;
}

// ---- the object cache

static char *cache_path(const struct itr_llvm_jit *j, uint64_t key, const char *suffix) {
    size_t n = strlen(j->cache_dir) + 64;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%016" PRIx64 ".o%s", j->cache_dir, key, suffix);
    return p;
}

// Writes the object to a temporary name and renames it, so that a reader
// (another process) sees either no file or a complete one.
static void cache_store(const struct itr_llvm_jit *j, uint64_t key, LLVMMemoryBufferRef obj) {
    char suffix[32];
    snprintf(suffix, sizeof suffix, ".tmp%ld", (long)getpid());
    char *tmp = cache_path(j, key, suffix), *dst = cache_path(j, key, "");
    FILE *f = tmp && dst ? fopen(tmp, "wb") : NULL;
    if (f) {
        size_t size = LLVMGetBufferSize(obj);
        bool ok = fwrite(LLVMGetBufferStart(obj), 1, size, f) == size;
        ok = fclose(f) == 0 && ok;
        if (!ok || rename(tmp, dst) != 0) remove(tmp);
    }
    free(tmp), free(dst);
}

static LLVMMemoryBufferRef cache_load(const struct itr_llvm_jit *j, uint64_t key) {
    char *p = cache_path(j, key, "");
    LLVMMemoryBufferRef buf = NULL;
    char *msg = NULL;
    if (p && access(p, R_OK) == 0 && LLVMCreateMemoryBufferWithContentsOfFile(p, &buf, &msg)) buf = NULL;
    LLVMDisposeMessage(msg);
    free(p);
    return buf;
}

// ---- compile

// ITRC_JIT_TIMES=1: thread CPU seconds per phase, summed over the compile's
// threads, printed per itr_llvm_compile (where a cold load goes).
enum { T_RENDER, T_OPT, T_EMIT, T_LINK, T_N };
static const char *const phase_name[T_N] = { "render+verify", "optimise", "codegen", "load+link" };

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void dump_module(const char *when, LLVMModuleRef m) {
    char *s = LLVMPrintModuleToString(m);
    fprintf(stderr, "; ---- itrc LLVM module (%s)\n%s", when, s);
    LLVMDisposeMessage(s);
}

// Renders, optimises and emits an object; NULL with an error in d. Adds
// each phase's thread CPU time to t[].
static LLVMMemoryBufferRef compile_object(struct itr_llvm_jit *j, LLVMTargetMachineRef tm,
                                          struct kir_kernel *const *kernels, int n, char **syms, bool canonical,
                                          double *t, struct itr_diags *d) {
    double t0 = thread_cpu_s();
    LLVMContextRef c = LLVMContextCreate();
    struct diag_sink sink = { { 0 } };
    LLVMContextSetDiagnosticHandler(c, diag_handler, &sink);
    LLVMMemoryBufferRef obj = NULL;
    LLVMModuleRef m = render_module(c, j, kernels, n, syms, canonical, d);
    double t1 = thread_cpu_s();
    t[T_RENDER] += t1 - t0;
    if (m) {
        if (j->dump >= 2) dump_module("as rendered", m);
        LLVMPassBuilderOptionsRef o = LLVMCreatePassBuilderOptions();
        LLVMPassBuilderOptionsSetLoopVectorization(o, 1);
        LLVMPassBuilderOptionsSetSLPVectorization(o, 1);
        // LLVM's own unrolling is off: the renderer unrolls what pays
        // (accumulator lanes, and loops marked llvm.loop.unroll.full, which
        // the unroll passes still honour), and LLVM's runtime unrolling of
        // the remaining loops tripled code generation time without making a
        // kernel measurably faster (docs/kernels.md, "Cold load time").
        // ITRC_LLVM_UNROLL=1 turns it back on, for experiments.
        LLVMPassBuilderOptionsSetLoopUnrolling(o, itr_env_flag("ITRC_LLVM_UNROLL"));
        // default<O2>: the kernels run as fast as at O3 (loop and SLP
        // vectorisation are on at both) and compile about a third faster
        // (docs/performance.md). ITRC_LLVM_PASSES overrides it, for
        // experiments with the pipeline.
        const char *passes = getenv("ITRC_LLVM_PASSES");
        LLVMErrorRef e = LLVMRunPasses(m, passes && passes[0] ? passes : "default<O2>", tm, o);
        LLVMDisposePassBuilderOptions(o);
        double t2 = thread_cpu_s();
        t[T_OPT] += t2 - t1;
        if (e) {
            llvm_error(d, e, "optimising the kernel module");
        } else {
            if (j->dump >= 1) dump_module("optimised", m);
            char *msg = NULL;
            if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &msg, &obj) || sink.msg[0]) {
                itr_diag_error(d, ITR_NOLOC, "internal error: LLVM: emitting the kernel object: %s",
                               sink.msg[0] ? sink.msg : msg ? msg : "");
                if (obj) LLVMDisposeMemoryBuffer(obj);
                obj = NULL;
            }
            LLVMDisposeMessage(msg);
            t[T_EMIT] += thread_cpu_s() - t2;
        }
        LLVMDisposeModule(m);
    }
    LLVMContextDispose(c);
    return obj;
}

// ---- compiling distinct bodies, in parallel

// A cold compile of a large entry (hundreds of kernels) is spent almost all
// in LLVM's optimiser and code generator, kernel after kernel. Two things cut
// it. Many kernels are the same body under another name (a transformer's
// layers, a parameter's optimizer update), so each distinct body (body_key)
// is compiled once and every kernel with that body is bound to its code.
// And the bodies are independent functions, so each is its own module and
// object, compiled by a pool of threads (each with its own LLVM context per
// module and its own target machine) that take the largest bodies first, and
// cached as its own file. What is compiled, and every object, depends only
// on the bodies (and the salt: renderer, LLVM, CPU, pipeline), never on the
// names, the thread count or the order threads finish in; so a cache serves
// any core count and any plan with the same bodies, and a cache hit loads
// exactly the object a miss would have compiled.
#define JIT_MAX_THREADS 16

static int jit_threads(int todo) {
    const char *env = getenv("ITRC_JIT_THREADS");
    long t = env && *env ? atol(env) : sysconf(_SC_NPROCESSORS_ONLN);
    if (t > todo) t = todo;
    return t < 1 ? 1 : t > JIT_MAX_THREADS ? JIT_MAX_THREADS : (int)t;
}

// One distinct body to compile.
struct body_job {
    struct kir_kernel *k;    // the first kernel with the body (its errors name it)
    char *sym;
    uint64_t key;
    long cost;               // expressions + statements: the order to take them in
    LLVMMemoryBufferRef obj;
    bool cached;             // obj came from the cache
    struct itr_diags d;
};

struct pool {
    struct itr_llvm_jit *j;
    struct body_job *jobs; int n;
    int next;                // the next job to take (atomic)
};

struct worker { struct pool *pool; LLVMTargetMachineRef tm; double t[T_N]; };

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct pool *p = w->pool;
    for (;;) {
        int i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= p->n) break;
        struct body_job *b = &p->jobs[i];
        b->obj = compile_object(p->j, w->tm, &b->k, 1, &b->sym, true, w->t, &b->d);
    }
    return NULL;
}

static LLVMTargetMachineRef own_target_machine(const struct itr_llvm_jit *j) {
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(j->triple, &target, &err)) {
        LLVMDisposeMessage(err);
        return NULL;
    }
    return LLVMCreateTargetMachine(target, j->triple, j->cpu, j->features, LLVMCodeGenLevelAggressive,
                                   LLVMRelocDefault, LLVMCodeModelJITDefault);
}

static int by_cost(const void *a, const void *b) {
    const struct body_job *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

// Objects for jobs[0..n) (those not loaded from the cache), compiled on
// a pool of threads; the caller reports the jobs' errors. Adds phase times.
static void compile_bodies(struct itr_llvm_jit *j, struct body_job *jobs, int n, double *t) {
    struct body_job **todo = malloc(((size_t)n + 1) * sizeof *todo);
    int n_todo = 0;
    for (int i = 0; todo && i < n; i++)
        if (!jobs[i].obj) todo[n_todo++] = &jobs[i];
    // Contiguous copies, largest first, so that the longest bodies do not
    // start last and leave one thread working alone at the end.
    struct body_job *list = todo ? malloc(((size_t)n_todo + 1) * sizeof *list) : NULL;
    if (!list) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    for (int i = 0; i < n_todo; i++) list[i] = *todo[i];
    qsort(list, (size_t)n_todo, sizeof *list, by_cost);
    struct pool pool = { .j = j, .jobs = list, .n = n_todo, .next = 0 };
    int nt = jit_threads(n_todo);
    struct worker w[JIT_MAX_THREADS];
    pthread_t tid[JIT_MAX_THREADS];
    bool started[JIT_MAX_THREADS] = { false };
    memset(w, 0, sizeof w);
    w[0].pool = &pool, w[0].tm = j->tm;   // this thread, with the JIT's own target machine
    for (int i = 1; i < nt; i++) {
        w[i].pool = &pool;
        w[i].tm = own_target_machine(j);
        started[i] = w[i].tm && pthread_create(&tid[i], NULL, worker_main, &w[i]) == 0;
    }
    worker_main(&w[0]);
    for (int i = 1; i < nt; i++) {
        if (started[i]) pthread_join(tid[i], NULL);
        if (w[i].tm) LLVMDisposeTargetMachine(w[i].tm);
    }
    for (int i = 0; i < nt; i++)
        for (int p = 0; p < T_N; p++) t[p] += w[i].t[p];
    // Back in the caller's order (the largest-first order only served the pool).
    for (int i = 0; i < n_todo; i++)
        for (int k = 0; k < n_todo; k++)
            if (todo[k]->key == list[i].key) { *todo[k] = list[i]; break; }
    free(list), free(todo);
}

bool itr_llvm_compile(struct itr_llvm_jit *j, struct kir_kernel *const *kernels, int n, itr_kernel_fn *fns_out,
                      struct itr_diags *d) {
    if (n <= 0) return true;
    j->last_hit = false;
    // Still check every kernel, so a cache hit reports what a miss would.
    if (!verify_kernels(kernels, n, d)) return false;
    double t[T_N] = { 0 };
    uint64_t *keys = malloc((size_t)n * sizeof *keys);
    int *job_of = malloc((size_t)n * sizeof *job_of);   // kernel -> its new body's job, or -1
    struct body_job *jobs = calloc((size_t)n, sizeof *jobs);
    if (!keys || !job_of || !jobs) {
        free(keys), free(job_of), free(jobs);
        itr_diag_error(d, ITR_NOLOC, "out of memory");
        return false;
    }
    // The distinct bodies not yet in the JIT, in the order they first occur.
    int n_jobs = 0;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        keys[i] = body_key(j, kernels[i]);
        job_of[i] = -1;
        if (!keys[i]) {
            ok = false;
            itr_diag_error(d, ITR_NOLOC, "out of memory");
            break;
        }
        if (body_find(j, keys[i])) continue;
        for (int b = 0; b < n_jobs && job_of[i] < 0; b++)
            if (jobs[b].key == keys[i]) job_of[i] = b;
        if (job_of[i] >= 0) continue;
        struct body_job *b = &jobs[n_jobs];
        b->k = kernels[i], b->key = keys[i];
        b->cost = kernels[i]->n_exprs + kernels[i]->n_stmts;
        // A dump shows the kernels under their own names; its objects are
        // not cached (below), so the symbol need not be a function of the key.
        b->sym = symbol_name(j->dump ? kernels[i]->name : "itrc", keys[i]);
        itr_diags_init(&b->d);
        ok = b->sym != NULL;
        job_of[i] = n_jobs++;
        if (!ok) itr_diag_error(d, ITR_NOLOC, "out of memory");
    }
    int loaded = 0;
    if (ok && j->dump) {
        // A dump asks to see the IR, which only a compile produces: one
        // module of every new body, with the kernels' own names, compiled on
        // this thread and neither read from nor written to the cache.
        struct kir_kernel **ks = malloc(((size_t)n_jobs + 1) * sizeof *ks);
        char **syms = malloc(((size_t)n_jobs + 1) * sizeof *syms);
        LLVMMemoryBufferRef obj = NULL;
        if (ks && syms) {
            for (int b = 0; b < n_jobs; b++) ks[b] = jobs[b].k, syms[b] = jobs[b].sym;
            obj = n_jobs ? compile_object(j, j->tm, ks, n_jobs, syms, false, t, d) : NULL;
        } else {
            itr_diag_error(d, ITR_NOLOC, "out of memory");
        }
        free(ks), free(syms);
        ok = !n_jobs || obj;
        if (obj) {
            LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), obj);
            if (e) ok = llvm_error(d, e, "adding the kernel object to the JIT");
        }
        for (int b = 0; ok && b < n_jobs; b++) {
            ok = body_insert(j, jobs[b].key, jobs[b].sym);
            jobs[b].sym = NULL;
            if (!ok) itr_diag_error(d, ITR_NOLOC, "out of memory");
        }
    } else if (ok) {
        double t0 = thread_cpu_s();
        for (int b = 0; b < n_jobs && j->cache_dir; b++) loaded += jobs[b].cached = (jobs[b].obj = cache_load(j, jobs[b].key)) != NULL;
        t[T_LINK] += thread_cpu_s() - t0;
        if (loaded < n_jobs) compile_bodies(j, jobs, n_jobs, t);
        // Errors in the order of the kernels, whichever thread found them.
        for (int b = 0; b < n_jobs; b++) {
            for (int i = 0; i < jobs[b].d.n; i++)
                if (jobs[b].d.items[i].sev == ITR_SEV_ERROR) itr_diag_error(d, jobs[b].d.items[i].loc, "%s", jobs[b].d.items[i].msg);
            ok = ok && jobs[b].obj;
        }
        t0 = thread_cpu_s();
        for (int b = 0; b < n_jobs && ok && j->cache_dir; b++)
            if (!jobs[b].cached) cache_store(j, jobs[b].key, jobs[b].obj);
        // Every object or none: a failed compile adds nothing.
        LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
        for (int b = 0; b < n_jobs; b++) {
            if (!jobs[b].obj) continue;
            LLVMMemoryBufferRef obj = jobs[b].obj;
            jobs[b].obj = NULL;
            if (!ok) {
                LLVMDisposeMemoryBuffer(obj);
                continue;
            }
            LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(j->jit, jd, obj);   // takes the object
            if (e) {
                ok = llvm_error(d, e, "adding the kernel object to the JIT");
                continue;
            }
            ok = body_insert(j, jobs[b].key, jobs[b].sym);
            jobs[b].sym = NULL;
            if (!ok) itr_diag_error(d, ITR_NOLOC, "out of memory");
        }
        t[T_LINK] += thread_cpu_s() - t0;
    }
    // Every kernel's entry point: one lookup per body (which links its object).
    double t0 = thread_cpu_s();
    for (int i = 0; i < n && ok; i++) {
        int same = -1;
        for (int k = i - 1; k >= 0 && same < 0; k--)
            if (keys[k] == keys[i]) same = k;
        if (same >= 0) {
            fns_out[i] = fns_out[same];
            continue;
        }
        struct jit_body *b = body_find(j, keys[i]);
        LLVMOrcExecutorAddress addr = 0;
        LLVMErrorRef e = b ? LLVMOrcLLJITLookup(j->jit, &addr, b->sym) : NULL;
        if (!b || e) {
            char what[300];
            snprintf(what, sizeof what, "looking up kernel '%s'", kernels[i]->name);
            if (e) ok = llvm_error(d, e, what);
            else ok = false, itr_diag_error(d, ITR_NOLOC, "internal error: %s: its code is not in the JIT", what);
            break;
        }
        fns_out[i] = (itr_kernel_fn)(uintptr_t)addr;
    }
    t[T_LINK] += thread_cpu_s() - t0;
    j->last_hit = ok && loaded > 0 && loaded == n_jobs;
    if (itr_env_flag("ITRC_JIT_TIMES")) {
        fprintf(stderr, "itrc: JIT: %d kernels, %d distinct bodies new here (%d from the cache); CPU s:", n, n_jobs, loaded);
        for (int p = 0; p < T_N; p++) fprintf(stderr, " %s %.3f", phase_name[p], t[p]);
        fprintf(stderr, "\n");
    }
    for (int b = 0; b < n_jobs; b++) {
        free(jobs[b].sym);
        itr_diags_free(&jobs[b].d);
    }
    free(keys), free(job_of), free(jobs);
    return ok;
}

#endif
