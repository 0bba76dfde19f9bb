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

// Part of the cache key: bump when the rendering of any construct changes.
#define ITR_LLVM_RENDER_VERSION "itrc-llvm-render-5"

struct itr_llvm_jit {
    LLVMOrcLLJITRef jit;
    LLVMTargetMachineRef tm;      // ours: optimisation and object emission
    char *triple, *cpu, *features, *layout;
    int dump;                     // ITRC_DUMP_LLVM
    char *cache_dir;              // NULL: no cache
    uint64_t *added; int n_added, cap_added;   // module keys already in the JIT
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

static bool env_on(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
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
    if (env_on("ITRC_NO_CACHE")) return NULL;
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
    free(j->triple), free(j->cpu), free(j->features), free(j->layout), free(j->cache_dir), free(j->added);
    free(j);
}

bool itr_llvm_last_was_cache_hit(const struct itr_llvm_jit *j) { return j && j->last_hit; }

// ---- module key: every field the rendering reads, so equal keys mean equal code

static void hash_bytes(XXH3_state_t *h, const void *p, size_t n) { XXH3_64bits_update(h, p, n); }
static void hash_i64(XXH3_state_t *h, int64_t v) { hash_bytes(h, &v, sizeof v); }
static void hash_str(XXH3_state_t *h, const char *s) {
    s = s ? s : "";
    hash_bytes(h, s, strlen(s) + 1);
}

static void hash_kernel(XXH3_state_t *h, const struct kir_kernel *k) {
    hash_str(h, k->name);
    hash_i64(h, k->n_bufs);
    for (int i = 0; i < k->n_bufs; i++) {
        hash_str(h, k->bufs[i].name);
        hash_i64(h, k->bufs[i].dtype * 4 + k->bufs[i].written * 2 + k->bufs[i].noalias);
    }
    hash_i64(h, k->n_dims);
    for (int i = 0; i < k->n_dims; i++) hash_str(h, k->dims[i].name);
    hash_i64(h, k->n_vars);
    for (int i = 0; i < k->n_vars; i++) {
        const struct kir_var *v = &k->vars[i];
        hash_str(h, v->name);
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

static uint64_t module_key(const struct itr_llvm_jit *j, struct kir_kernel *const *kernels, int n) {
    XXH3_state_t *h = XXH3_createState();
    if (!h) return 0;
    XXH3_64bits_reset(h);
    hash_str(h, ITR_LLVM_RENDER_VERSION);
    hash_str(h, LLVM_VERSION_STRING);
    hash_str(h, j ? j->triple : "");
    hash_str(h, j ? j->cpu : "");
    hash_str(h, j ? j->features : "");
    const char *passes = getenv("ITRC_LLVM_PASSES");   // objects of another pipeline are other objects
    hash_str(h, passes ? passes : "");
    hash_i64(h, n);
    for (int i = 0; i < n; i++) hash_kernel(h, kernels[i]);
    uint64_t r = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return r;
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

static char *symbol_name(const struct kir_kernel *k, uint64_t key) {
    size_t n = strlen(k->name) + 20;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s.%016" PRIx64, k->name, key);
    return s;
}

static void free_symbols(char **syms, int n) {
    for (int i = 0; i < n && syms; i++) free(syms[i]);
    free(syms);
}

// Renders kernels into a new module of context c; NULL with an error in d.
static LLVMModuleRef render_module(LLVMContextRef c, const struct itr_llvm_jit *j, struct kir_kernel *const *kernels,
                                   int n, char **syms, struct itr_diags *d) {
    char why[512];
    for (int i = 0; i < n; i++)
        if (!kir_verify(kernels[i], why, sizeof why))
            return internal_kernel_error(d, kernels[i], "is not valid kernel IR", why), NULL;
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext("itrc_kernels", c);
    if (j) {
        // The optimiser must see the real layout; the JIT rejects a different one.
        LLVMSetTarget(m, j->triple);
        LLVMSetDataLayout(m, j->layout);
    }
    for (int i = 0; i < n; i++) {
        if (!itr_llvm_render_kernel(m, kernels[i], syms[i], why, sizeof why)) {
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

static char **make_symbols(struct kir_kernel *const *kernels, int n, uint64_t key) {
    char **syms = calloc((size_t)n + 1, sizeof *syms);
    for (int i = 0; syms && i < n; i++)
        if (!(syms[i] = symbol_name(kernels[i], key))) {
            free_symbols(syms, i);
            return NULL;
        }
    return syms;
}

char *itr_llvm_render_ir(struct kir_kernel *const *kernels, int n, struct itr_diags *d) {
    uint64_t key = module_key(NULL, kernels, n);
    char **syms = make_symbols(kernels, n, key);
    if (!syms) {
        itr_diag_error(d, ITR_NOLOC, "out of memory");
        return NULL;
    }
    LLVMContextRef c = LLVMContextCreate();
    LLVMModuleRef m = render_module(c, NULL, kernels, n, syms, d);
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

static void dump_module(const char *when, LLVMModuleRef m) {
    char *s = LLVMPrintModuleToString(m);
    fprintf(stderr, "; ---- itrc LLVM module (%s)\n%s", when, s);
    LLVMDisposeMessage(s);
}

// Renders, optimises and emits an object; NULL with an error in d.
static LLVMMemoryBufferRef compile_object(struct itr_llvm_jit *j, LLVMTargetMachineRef tm,
                                          struct kir_kernel *const *kernels, int n, char **syms, struct itr_diags *d) {
    LLVMContextRef c = LLVMContextCreate();
    struct diag_sink sink = { { 0 } };
    LLVMContextSetDiagnosticHandler(c, diag_handler, &sink);
    LLVMMemoryBufferRef obj = NULL;
    LLVMModuleRef m = render_module(c, j, kernels, n, syms, d);
    if (m) {
        if (j->dump >= 2) dump_module("as rendered", m);
        LLVMPassBuilderOptionsRef o = LLVMCreatePassBuilderOptions();
        LLVMPassBuilderOptionsSetLoopVectorization(o, 1);
        LLVMPassBuilderOptionsSetSLPVectorization(o, 1);
        LLVMPassBuilderOptionsSetLoopUnrolling(o, 1);
        // default<O2>: the kernels run as fast as at O3 (loop and SLP
        // vectorisation are on at both) and compile about a third faster
        // (docs/performance.md). ITRC_LLVM_PASSES overrides it, for
        // experiments with the pipeline.
        const char *passes = getenv("ITRC_LLVM_PASSES");
        LLVMErrorRef e = LLVMRunPasses(m, passes && passes[0] ? passes : "default<O2>", tm, o);
        LLVMDisposePassBuilderOptions(o);
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
        }
        LLVMDisposeModule(m);
    }
    LLVMContextDispose(c);
    return obj;
}

// ---- compiling in parts, in parallel

// A cold compile of a large entry (hundreds of kernels) is spent almost all
// in LLVM's optimiser and code generator, one kernel after another. The
// kernels are independent functions, so they are dealt round-robin into
// parts, each compiled in its own LLVM context with its own target machine
// on its own thread, and cached as its own object. The number of parts
// depends only on the number of kernels, so cached objects serve any
// machine; more parts than cores only queue.
#define JIT_KERNELS_PER_PART 24
#define JIT_MAX_PARTS 4

static int jit_parts(int n) {
    const char *env = getenv("ITRC_JIT_PARTS");   // 1: one module, for comparisons
    int p = env && *env ? atoi(env) : n / JIT_KERNELS_PER_PART;
    if (p > n) p = n;
    return p < 1 ? 1 : p > JIT_MAX_PARTS ? JIT_MAX_PARTS : p;
}

static uint64_t part_key(uint64_t key, int part, int parts) {
    if (parts == 1) return key;   // the key a one-part module always had
    uint64_t x = key ^ (0x9E3779B97F4A7C15ull * (uint64_t)(part + 1)) ^ ((uint64_t)parts << 56);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 29);
}

struct part_job {
    struct itr_llvm_jit *j;
    LLVMTargetMachineRef tm;
    struct kir_kernel **kernels;
    char **syms;
    int n;
    struct itr_diags d;
    LLVMMemoryBufferRef obj;
};

static void *part_main(void *arg) {
    struct part_job *pj = arg;
    pj->obj = compile_object(pj->j, pj->tm, pj->kernels, pj->n, pj->syms, &pj->d);
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

// Objects for the parts not in the cache (objs[p] NULL), compiled
// concurrently; false with the parts' errors in d.
static bool compile_parts(struct itr_llvm_jit *j, struct part_job *jobs, int parts, LLVMMemoryBufferRef *objs,
                          struct itr_diags *d) {
    pthread_t tid[JIT_MAX_PARTS];
    bool started[JIT_MAX_PARTS] = { false };
    int todo = 0;
    for (int p = 0; p < parts; p++) todo += objs[p] == NULL;
    for (int p = 0; p < parts; p++) {
        if (objs[p]) continue;
        itr_diags_init(&jobs[p].d);
        jobs[p].j = j;
        // One part compiles on this thread with the JIT's own target machine.
        jobs[p].tm = todo == 1 ? j->tm : own_target_machine(j);
        if (!jobs[p].tm) jobs[p].tm = j->tm, todo = 1;   // cannot make one: compile serially
        if (todo > 1 && jobs[p].tm != j->tm && pthread_create(&tid[p], NULL, part_main, &jobs[p]) == 0)
            started[p] = true;
        else
            part_main(&jobs[p]);
    }
    bool ok = true;
    for (int p = 0; p < parts; p++) {
        if (objs[p]) continue;
        if (started[p]) pthread_join(tid[p], NULL);
        if (jobs[p].tm != j->tm) LLVMDisposeTargetMachine(jobs[p].tm);
        for (int i = 0; i < jobs[p].d.n; i++)
            if (jobs[p].d.items[i].sev == ITR_SEV_ERROR) itr_diag_error(d, jobs[p].d.items[i].loc, "%s", jobs[p].d.items[i].msg);
        itr_diags_free(&jobs[p].d);
        objs[p] = jobs[p].obj;
        ok = ok && objs[p] != NULL;
    }
    return ok;
}

static bool lookup_all(struct itr_llvm_jit *j, struct kir_kernel *const *kernels, int n, char **syms,
                       itr_kernel_fn *fns_out, struct itr_diags *d) {
    for (int i = 0; i < n; i++) {
        LLVMOrcExecutorAddress addr = 0;
        LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &addr, syms[i]);
        if (e) {
            char what[300];
            snprintf(what, sizeof what, "looking up kernel '%s'", kernels[i]->name);
            return llvm_error(d, e, what);
        }
        fns_out[i] = (itr_kernel_fn)(uintptr_t)addr;
    }
    return true;
}

bool itr_llvm_compile(struct itr_llvm_jit *j, struct kir_kernel *const *kernels, int n, itr_kernel_fn *fns_out,
                      struct itr_diags *d) {
    if (n <= 0) return true;
    j->last_hit = false;
    uint64_t key = module_key(j, kernels, n);
    char **syms = make_symbols(kernels, n, key);
    if (!syms) {
        itr_diag_error(d, ITR_NOLOC, "out of memory");
        return false;
    }
    bool ok = false;
    for (int i = 0; i < j->n_added; i++)
        if (j->added[i] == key) {   // the same kernels again: their code is already here
            ok = lookup_all(j, kernels, n, syms, fns_out, d);
            free_symbols(syms, n);
            return ok;
        }
    if (j->n_added == j->cap_added) {
        int cap = j->cap_added ? 2 * j->cap_added : 8;
        uint64_t *a = realloc(j->added, (size_t)cap * sizeof *a);
        if (!a) {
            free_symbols(syms, n);
            itr_diag_error(d, ITR_NOLOC, "out of memory");
            return false;
        }
        j->added = a, j->cap_added = cap;
    }
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
    // Still check the kernels, so a cache hit reports what a miss would.
    char why[512];
    for (int i = 0; i < n; i++)
        if (!kir_verify(kernels[i], why, sizeof why)) {
            internal_kernel_error(d, kernels[i], "is not valid kernel IR", why);
            free_symbols(syms, n);
            return false;
        }
    // A dump asks to see the IR of one module, which only a compile produces:
    // one part, and no cache reads then.
    int parts = j->dump ? 1 : jit_parts(n);
    struct part_job jobs[JIT_MAX_PARTS];
    LLVMMemoryBufferRef objs[JIT_MAX_PARTS] = { NULL };
    memset(jobs, 0, sizeof jobs);
    for (int p = 0; p < parts; p++) {
        jobs[p].kernels = calloc((size_t)n, sizeof *jobs[p].kernels);
        jobs[p].syms = calloc((size_t)n, sizeof *jobs[p].syms);
        if (!jobs[p].kernels || !jobs[p].syms) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    }
    for (int i = 0; i < n; i++) {
        struct part_job *pj = &jobs[i % parts];
        pj->kernels[pj->n] = kernels[i];
        pj->syms[pj->n++] = syms[i];
    }
    int hits = 0;
    for (int p = 0; p < parts && j->cache_dir && !j->dump; p++) hits += (objs[p] = cache_load(j, part_key(key, p, parts))) != NULL;
    bool ok_parts = compile_parts(j, jobs, parts, objs, d);
    for (int p = 0; p < parts && ok_parts; p++)
        if (j->cache_dir && p < parts && !(hits && objs[p] && jobs[p].obj == NULL)) cache_store(j, part_key(key, p, parts), objs[p]);
    for (int p = 0; p < parts; p++) {
        if (!ok_parts) {
            if (objs[p]) LLVMDisposeMemoryBuffer(objs[p]);
            continue;
        }
        LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(j->jit, jd, objs[p]);   // takes the object
        if (e && ok_parts) {
            llvm_error(d, e, "adding the kernel object to the JIT");
            ok_parts = false;
            for (int q = p + 1; q < parts; q++) LLVMDisposeMemoryBuffer(objs[q]);
            break;
        }
    }
    for (int p = 0; p < parts; p++) {
        free(jobs[p].kernels);
        free(jobs[p].syms);
    }
    if (!ok_parts) {
        free_symbols(syms, n);
        return false;
    }
    j->last_hit = hits == parts;
    j->added[j->n_added++] = key;
    ok = lookup_all(j, kernels, n, syms, fns_out, d);
    free_symbols(syms, n);
    return ok;
}

#endif
