// The LLVM executor's arena (docs/memplan.md, "Schedule plans";
// backends/llvm/llvm_exec.h): the schedule-level memory plan of every
// entry of every model gives no two values live at the same step a shared
// byte and covers every step that touches a value (checked here
// independently of itr_memplan_verify, which must agree); a planted overlap
// is caught; and runs that reuse the arena give the same bits as the first
// run and as runs without the arena (ITRC_NO_EXEC_ARENA=1), allocating the
// arena once per binding size and never again for a repeated binding.
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm/llvm_exec.h"
#include "backends/llvm/llvm_jit.h"
#include "compiler/pipeline.h"
#include "ir/bind.h"
#include "ir/kir.h"
#include "ir/memplan.h"
#include "ir/rng.h"
#include "test.h"
#include "entryrun.h"
#include "testutil.h"

static struct itr_program *compile_small(const char *path, struct kir_plan_kernels *made) {
    struct itr_program *p = tu_compile_small(path, NULL);
    struct itr_diags d;
    itr_diags_init(&d);
    if (p && !itr_compile_kernels(p, made, &d)) {
        itr_diags_print(&d, stderr);
        itr_program_free(p);
        p = NULL;
    } else if (p) {
        p->kernels = made;
    }
    itr_diags_free(&d);
    return p;
}

static void release_program(struct itr_program *p, struct kir_plan_kernels *made) {
    if (p) {
        p->kernels = NULL;
        itr_program_free(p);
    }
    kir_plan_kernels_free(made);
}

// Every value step si of schedule s (of graph g) reads or writes, in vs; their number.
static int touched(const struct itr_graph *g, const struct kir_schedule *s, int si, int32_t *vs) {
    const struct kir_step *st = &s->steps[si];
    const struct itr_node *n = &g->nodes[st->node];
    int k = 0;
    if (st->kind == KIR_STEP_KERNEL) {
        for (int b = 0; b < st->n_bufs; b++) vs[k++] = st->bufs[b];
        if (st->guard_count >= 0) {
            const struct itr_node *gn = &g->nodes[st->guard_node >= 0 ? st->guard_node : st->node];
            // run as a node, it reads these; what it writes the reference allocates
            for (int j = 0; j < gn->n_inputs; j++) vs[k++] = gn->inputs[j];
        }
    } else if (st->kind == KIR_STEP_GEMM) {
        vs[k++] = st->gemm_a;
        vs[k++] = st->gemm_b;
        vs[k++] = n->outputs[0];
    } else {
        for (int j = 0; j < n->n_inputs; j++) vs[k++] = n->inputs[j];
        for (int j = 0; j < n->n_outputs; j++) vs[k++] = n->outputs[j];
    }
    return k;
}

static int planned_values;

// Independent of itr_memplan_verify: offsets aligned and inside the arena,
// no two buffers live at one step sharing a byte, every step that touches a
// planned value inside its interval, no input, parameter or output of the
// graph planned; the same for every scan body's workspace plan.
static bool check_schedule_plan(const struct itr_memplan *m, const char *what) {
    const struct itr_graph *g = m->graph;
    const struct kir_schedule *s = m->schedule;
    if (!s || !m->bound) FAIL_AT("%s: not a bound schedule plan", what);
    if (!s || !m->bound) return false;
    for (int i = 0; i < m->n_buffers; i++) {
        const struct itr_memplan_buffer *a = &m->buffers[i];
        if (a->offset % 64 || a->bytes % 64 || a->offset < 0 || a->offset + a->bytes > m->arena_bytes) {
            FAIL_AT("%s: buffer %d at %lld (+%lld) outside the arena of %lld", what, i, (long long)a->offset,
                    (long long)a->bytes, (long long)m->arena_bytes);
            return false;
        }
        if (a->value >= 0) {
            planned_values++;
            const struct itr_value *v = &g->values[a->value];
            bool out = false;
            for (int k = 0; k < g->n_outputs; k++) out |= g->outputs[k] == a->value;
            if (v->kind != ITR_VALUE_NODE || out) {
                FAIL_AT("%s: '%s' (an input, parameter or output) is planned", what, v->name);
                return false;
            }
            if (a->bytes < 64) {
                FAIL_AT("%s: '%s' planned with %lld bytes, under the 64-byte floor", what, v->name,
                        (long long)a->bytes);
                return false;
            }
        } else if (a->body) {
            if (a->first != a->last || a->bytes < a->body->arena_bytes) {
                FAIL_AT("%s: the workspace of step %d spans %d..%d with %lld bytes for a body arena of %lld", what,
                        a->node, a->first, a->last, (long long)a->bytes, (long long)a->body->arena_bytes);
                return false;
            }
            char sub[256];
            snprintf(sub, sizeof sub, "%s, body of step %d", what, a->node);
            if (!check_schedule_plan(a->body, sub)) return false;
        }
        for (int j = i + 1; j < m->n_buffers; j++) {
            const struct itr_memplan_buffer *b = &m->buffers[j];
            if (!a->bytes || !b->bytes) continue;
            bool together = a->first <= b->last && b->first <= a->last;
            bool share = a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
            if (together && share) {
                FAIL_AT("%s: buffers %d and %d live together and overlap", what, i, j);
                return false;
            }
        }
    }
    int32_t *slot = calloc((size_t)g->n_values, sizeof *slot);
    for (int v = 0; v < g->n_values; v++) slot[v] = -1;
    for (int i = 0; i < m->n_buffers; i++)
        if (m->buffers[i].value >= 0) slot[m->buffers[i].value] = i;
    bool ok = true;
    int32_t vs[1024];
    for (int si = 0; si < s->n_steps && ok; si++) {
        int k = touched(g, s, si, vs);
        for (int j = 0; j < k && ok; j++) {
            if (slot[vs[j]] < 0) continue;
            const struct itr_memplan_buffer *b = &m->buffers[slot[vs[j]]];
            if (si < b->first || si > b->last) {
                FAIL_AT("%s: step %d touches '%s', planned live only at steps %d..%d", what, si,
                        g->values[vs[j]].name, b->first, b->last);
                ok = false;
            }
        }
    }
    free(slot);
    char why[512];
    if (ok && !itr_memplan_verify(m, why, sizeof why)) {
        FAIL_AT("%s: itr_memplan_verify disagrees: %s", what, why);
        ok = false;
    }
    return ok;
}

static int planned_entries, workspaces;

static void count_workspaces(const struct itr_memplan *m) {
    for (int i = 0; i < m->n_buffers; i++)
        if (m->buffers[i].body) {
            workspaces += m->buffers[i].bytes > 0;
            count_workspaces(m->buffers[i].body);
        }
}

static void plan_model(const char *path) {
    struct kir_plan_kernels made = { 0 };
    struct itr_program *p = compile_small(path, &made);
    if (!p) {
        FAIL_AT("cannot compile %s", path);
        return;
    }
    const char *file = strrchr(path, '/') + 1;
    struct itr_diags d;
    itr_diags_init(&d);
    for (int bi = 0; bi < 2; bi++) {
        struct itr_dim_bindings b;
        itr_bindings_init(&b, p);
        for (int i = 0; i < p->n_symbols; i++) {
            b.bound[i] = true;
            b.value[i] = bi == 0 ? 3 : 7 + i % 3;
        }
        for (int k = 0; k < made.n; k++) {
            const struct itr_graph *g = p->graphs[made.items[k].graph];
            struct itr_memplan *m = itr_memplan_build_schedule(p, g, made.items[k].s, &d);
            char what[256];
            snprintf(what, sizeof what, "%s '%s' (%s, binding %d)", file, g->name, made.items[k].f64 ? "f64" : "f32",
                     bi);
            CHECK_MSG(m && itr_memplan_bind(m, &b, NULL, &d), "%s: no plan", what);
            if (m && m->bound) {
                CHECK_MSG(m->n_unsized == 0, "%s: %d values unsized with every dim bound", what, m->n_unsized);
                check_schedule_plan(m, what);
                count_workspaces(m);
                planned_entries++;
            }
            itr_memplan_free(m);
        }
        itr_bindings_free(&b);
    }
    if (itr_diags_has_errors(&d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    release_program(p, &made);
}

TEST(every_model_schedule_plan_is_sound) {
    DIR *dir = opendir(ITR_SOURCE_DIR "/models");
    CHECK(dir != NULL);
    int models = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".ir") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/models/%s", ITR_SOURCE_DIR, e->d_name);
        plan_model(path);
        models++;
    }
    if (dir) closedir(dir);
    printf("  %d models, %d schedule plans (%d values placed, %d scan workspaces)\n", models, planned_entries,
           planned_values, workspaces);
    CHECK(models >= 8);
    CHECK(planned_entries >= 2 * 2 * 3 * models);
    CHECK(planned_values > 1000);
    CHECK(workspaces > 0);   // SCAN's GRU, among others, runs a compiled scan body
}

TEST(verify_catches_a_planted_overlap) {
    struct kir_plan_kernels made = { 0 };
    struct itr_program *p = compile_small(ITR_SOURCE_DIR "/models/vsepp.ir", &made);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    for (int i = 0; i < p->n_symbols; i++) {
        b.bound[i] = true;
        b.value[i] = 4;
    }
    struct itr_diags d;
    itr_diags_init(&d);
    const struct kir_schedule *s = NULL;
    const struct itr_graph *g = NULL;
    for (int k = 0; k < made.n && !s; k++)
        if (strcmp(p->graphs[made.items[k].graph]->name, "train") == 0 && !made.items[k].f64) {
            s = made.items[k].s;
            g = p->graphs[made.items[k].graph];
        }
    CHECK(s != NULL);
    struct itr_memplan *m = s ? itr_memplan_build_schedule(p, g, s, &d) : NULL;
    CHECK(m && itr_memplan_bind(m, &b, NULL, &d));
    char why[512];
    CHECK(m && itr_memplan_verify(m, why, sizeof why));
    // Two buffers live at the same step, at different offsets: moving one
    // onto the other must fail the check.
    bool planted = false;
    for (int i = 0; m && i < m->n_buffers && !planted; i++)
        for (int j = 0; j < m->n_buffers && !planted; j++) {
            struct itr_memplan_buffer *x = &m->buffers[i], *y = &m->buffers[j];
            if (i == j || !x->bytes || !y->bytes || x->offset == y->offset) continue;
            if (!(x->first <= y->last && y->first <= x->last) || y->offset + x->bytes > m->arena_bytes) continue;
            int64_t keep = x->offset;
            x->offset = y->offset;
            CHECK(!itr_memplan_verify(m, why, sizeof why));
            CHECK(strstr(why, "overlaps") != NULL);
            x->offset = keep;
            planted = true;
        }
    CHECK(planted);
    CHECK(m && itr_memplan_verify(m, why, sizeof why));
    itr_memplan_free(m);
    itr_bindings_free(&b);
    itr_diags_free(&d);
    release_program(p, &made);
}

static bool same_bits(const struct itr_tensor *a, const struct itr_tensor *b) {
    if (!a || !b || a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return memcmp(a->data, b->data, itr_tensor_nbytes(a)) == 0;
}

// Runs entry `name` of the model at path: without the arena, then three
// times with it (binding A, A again, a larger binding B, A again), and
// checks the outputs' bits and the arena's allocations.
static void reuse_model(const char *path, const char *name, bool f64) {
    struct kir_plan_kernels made = { 0 };
    struct itr_program *p = compile_small(path, &made);
    CHECK(p != NULL);
    if (!p) return;
    int gi = -1;
    for (int i = 0; i < p->n_graphs; i++)
        if (strcmp(p->graphs[i]->name, name) == 0) gi = i;
    const struct kir_schedule *s = gi >= 0 ? kir_plan_kernels_find(p->kernels, gi, f64) : NULL;
    CHECK_MSG(s != NULL, "%s: no schedule for '%s'", path, name);
    if (!s) {
        release_program(p, &made);
        return;
    }
    const struct itr_graph *g = p->graphs[gi];
    struct itr_dim_bindings bind[2];
    for (int k = 0; k < 2; k++) {
        itr_bindings_init(&bind[k], p);
        for (int i = 0; i < p->n_symbols; i++) {
            bind[k].bound[i] = true;
            bind[k].value[i] = p->symbols[i].has_default && p->symbols[i].default_value <= 64
                                   ? p->symbols[i].default_value
                                   : k == 0 ? 4 : 9;
        }
    }
    struct itr_tensor **in[2], **params[2];
    for (int k = 0; k < 2; k++) {
        in[k] = calloc((size_t)g->n_inputs + 1, sizeof *in[k]);
        for (int i = 0; i < g->n_inputs; i++)
            in[k][i] = tu_model_input(p, &g->values[g->inputs[i]].type, &bind[k], 23, 50 + (uint64_t)i);
        params[k] = tu_model_params(p, &bind[k], 23, 500);
    }
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor **out[5];
    for (int r = 0; r < 5; r++) out[r] = calloc((size_t)g->n_outputs + 1, sizeof *out[r]);
    // Run 0 without the arena: the executable reads the switch when it is made.
    setenv("ITRC_NO_EXEC_ARENA", "1", 1);
    struct itr_llvm_exe *plain = itr_llvm_exe_new(g, s, 2, &d);
    unsetenv("ITRC_NO_EXEC_ARENA");
    struct itr_llvm_exe *e = itr_llvm_exe_new(g, s, 2, &d);
    CHECK(plain && e);
    if (plain && e) {
        CHECK(itr_llvm_exe_plan(plain) == NULL);
        CHECK(itr_llvm_exe_plan(e) != NULL);
        struct itr_llvm_arena_stats st[5];
        struct itr_dim_bindings b;
        // the executor binds inputs into the bindings it is given: a fresh copy per run
#define RUN_ON(exe, k, r)                                                                         \
        do {                                                                                      \
            itr_bindings_init(&b, p);                                                             \
            for (int i_ = 0; i_ < p->n_symbols; i_++) {                                           \
                b.bound[i_] = bind[k].bound[i_];                                                  \
                b.value[i_] = bind[k].value[i_];                                                  \
            }                                                                                     \
            CHECK(itr_llvm_exe_run((exe), in[k], params[k], &b, out[r], &d));                     \
            itr_bindings_free(&b);                                                                \
        } while (0)
        RUN_ON(plain, 0, 0);
        itr_llvm_exe_arena_stats(plain, &st[0]);
        CHECK(st[0].capacity == 0 && st[0].runs == 0);
        RUN_ON(e, 0, 1);
        itr_llvm_exe_arena_stats(e, &st[1]);
        RUN_ON(e, 0, 2);
        itr_llvm_exe_arena_stats(e, &st[2]);
        RUN_ON(e, 1, 3);
        itr_llvm_exe_arena_stats(e, &st[3]);
        const struct itr_memplan *m = itr_llvm_exe_plan(e);
        char what[256];
        snprintf(what, sizeof what, "%s '%s' as run at the larger binding", strrchr(path, '/') + 1, name);
        check_schedule_plan(m, what);
        RUN_ON(e, 0, 4);
        itr_llvm_exe_arena_stats(e, &st[4]);
#undef RUN_ON
        if (itr_diags_has_errors(&d)) itr_diags_print(&d, stderr);
        for (int k = 0; k < g->n_outputs; k++) {
            CHECK_MSG(same_bits(out[0][k], out[1][k]), "%s '%s' output %d: the arena changes the bits", path, name,
                      k);
            CHECK_MSG(same_bits(out[1][k], out[2][k]), "%s '%s' output %d: a second run in the reused arena differs",
                      path, name, k);
            CHECK_MSG(same_bits(out[1][k], out[4][k]), "%s '%s' output %d: binding A after B differs", path, name, k);
        }
        printf("  %s '%s' (%s): arena %lld bytes at binding A, %lld at B; pack buffers %lld bytes\n",
               strrchr(path, '/') + 1, name, f64 ? "f64" : "f32", (long long)st[1].plan_bytes,
               (long long)st[3].plan_bytes, (long long)st[3].scratch_bytes);
        // The first run allocates the arena; the second allocates nothing more.
        CHECK(st[1].plan_bytes > 0 && st[1].capacity == st[1].plan_bytes && st[1].grows == 1 && st[1].runs == 1);
        CHECK(st[2].capacity == st[1].capacity && st[2].grows == 1 && st[2].runs == 2);
        CHECK(st[2].scratch_bytes == st[1].scratch_bytes && st[2].scratch_grows == st[1].scratch_grows);
        // A larger binding grows it once; going back keeps the larger block.
        CHECK(st[3].plan_bytes > st[1].plan_bytes && st[3].capacity == st[3].plan_bytes && st[3].grows == 2);
        CHECK(st[4].plan_bytes == st[1].plan_bytes && st[4].capacity == st[3].capacity && st[4].grows == 2 &&
              st[4].runs == 4 && st[4].scratch_grows == st[3].scratch_grows);
    }
    itr_llvm_exe_free(plain);
    itr_llvm_exe_free(e);
    for (int r = 0; r < 5; r++) {
        for (int k = 0; k < g->n_outputs; k++) itr_tensor_free(out[r][k]);
        free(out[r]);
    }
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < g->n_inputs; i++) itr_tensor_free(in[k][i]);
        for (int j = 0; j < p->n_params; j++) itr_tensor_free(params[k][j]);
        free(in[k]);
        free(params[k]);
        itr_bindings_free(&bind[k]);
    }
    itr_diags_free(&d);
    release_program(p, &made);
}

// SCAN's pairwise scoring (the tile loop of evaluation), its text encoder
// (a GRU: a compiled scan body in its workspace), SGR's scoring, and
// VSE++'s training step (backward pass, optimizer state), f32 and f64.
TEST(runs_reuse_the_arena_bit_for_bit) {
    reuse_model(ITR_SOURCE_DIR "/models/scan_t2i.ir", "score", false);
    reuse_model(ITR_SOURCE_DIR "/models/scan_t2i.ir", "encode_text", false);
    reuse_model(ITR_SOURCE_DIR "/models/sgr.ir", "score", false);
    reuse_model(ITR_SOURCE_DIR "/models/vsepp.ir", "train", false);
    reuse_model(ITR_SOURCE_DIR "/models/vsepp.ir", "train", true);
}

int main(void) {
    RUN(every_model_schedule_plan_is_sound);
    RUN(verify_catches_a_planted_overlap);
    if (!itr_llvm_available()) {
        printf("skipped the runs: built without LLVM (the LLVM backend is not compiled in)\n");
        return test_summary();
    }
    RUN(runs_reuse_the_arena_bit_for_bit);
    return test_summary();
}
