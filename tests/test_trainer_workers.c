// `itr-run train --workers N` (runtime/trainer.h, itr_trainer_options.workers):
// batches built ahead on worker threads give bitwise the same run as batches
// built in place, for any N, with and without extra_* negatives; a batch that
// cannot be built stops the run at that batch with the same message; a run
// killed and resumed with workers equals the uninterrupted one.
#include <dirent.h>

#include "tests/modeltest.h"

#define VSEPP_IR ITR_SOURCE_DIR "/models/vsepp.ir"

// VSE++ with a second hinge over the extra_* captions (random train
// captions drawn per step), weighted by the epoch: every random draw and the
// epoch input reach the parameters, so a batch built with the wrong step or
// epoch would change them.
static const char EXTRA_IR[] =
    "import \"modules/nn.ir\"\n"
    "import \"modules/rnn.ir\"\n"
    "import \"modules/losses.ir\"\n"
    "model vsepp_extra(D: int = 16, W: int = 8, img_dim: int = 16) {\n"
    "  dim N, B, L, R = 4, V = 100\n"
    "  let img_fc = linear(img_dim, D)\n"
    "  let embed  = embedding(V, W)\n"
    "  let rnn    = gru(W, D, init=0.25)\n"
    "  def image(regions) { return l2norm(img_fc(mean(regions, axes=[1])), eps=0.0) }\n"
    "  def text(words, lengths) { return l2norm(rnn.last(embed(words), lengths), eps=0.0) }\n"
    "  entry encode_image(regions: f32[N, R, img_dim]) -> (img_emb) { return image(regions) }\n"
    "  entry encode_text(words: i32[B, L], lengths: i32[B]) -> (cap_emb) { return text(words, lengths) }\n"
    "  entry score(v: f32[N, D], u: f32[B, D]) -> (sims) { return v @ transpose(u) }\n"
    "  train(regions: f32[B, R, img_dim], words: i32[B, L], lengths: i32[B], extra_regions: f32[B, R, img_dim],\n"
    "        extra_words: i32[B, L], extra_lengths: i32[B], epoch: i64[]) -> (loss) {\n"
    "    s = image(regions) @ transpose(text(words, lengths))\n"
    "    x = image(extra_regions) @ transpose(text(extra_words, extra_lengths))\n"
    "    return hinge(s, margin=0.2, max_violation=true) +\n"
    "           (cast(epoch, dtype=f32) + 1.0) * hinge(x, margin=0.2, max_violation=false)\n"
    "  }\n"
    "  optimizer adam(lr=0.002, clip_grad_norm=2.0)\n"
    "}\n";

static bool fixture_make(struct mt_run_fixture *f, const char *name, bool extra) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s", tmp_path(name));
    struct itr_synth_options so;
    itr_synth_defaults(&so);
    so.n_train = 20;   // 100 captions: 7 batches of 16 per epoch, the last one of 4
    so.n_dev = 10;
    so.n_test = 10;
    so.regions = 4;
    so.dim = 16;
    so.seed = 3;
    int n_vocab = 0;
    if (!mt_synth(f->dir, &so, &n_vocab)) return false;
    char v[32];
    snprintf(v, sizeof v, "V=%d", n_vocab);
    if (extra) {
        const char *ov[] = { v };
        f->p = mt_parse_text(ITR_SOURCE_DIR "/models/vsepp_extra.ir", EXTRA_IR, ov, 1, true);
    } else {
        const char *ov[] = { "D=16", "W=8", "gru_init=0.25", "R=4", "img_dim=16", v };
        f->p = mt_parse_model(VSEPP_IR, ov, 6, true);
    }
    snprintf(f->fingerprint, sizeof f->fingerprint, "%016" PRIx64, f->p ? itr_program_hash(f->p) : 0);
    return f->p != NULL;
}

static void options(struct itr_trainer_options *o, const struct mt_run_fixture *f, const char *run, int workers) {
    mt_loop_options(o, f, run);
    o->workers = workers;
}

static bool g_expect_different;   // quiet about differences

// Both files hold the same tensors, bitwise, and the same cursor.
static bool same_checkpoint(const char *pa, const char *pb) {
    struct itr_tensor_set a, b;
    if (!mt_read_checkpoint(pa, &a)) return false;
    if (!mt_read_checkpoint(pb, &b)) {
        itr_tensor_set_free(&a);
        return false;
    }
    bool ok = a.n == b.n && a.n > 0;
    for (int k = 0; ok && k < a.n; k++) {
        if (same_tensor(a.items[k].tensor, itr_tensor_set_get(&b, a.items[k].name))) continue;
        if (!g_expect_different) fprintf(stderr, "  tensor %s differs between %s and %s\n", a.items[k].name, pa, pb);
        ok = false;
    }
    const char *keys[] = { "itr.step", "itr.epoch", "itr.batch", "itr.epoch_loss_sum", "itr.best_rsum" };
    for (int k = 0; ok && k < 5; k++) {
        const char *ma = itr_tensor_set_get_meta(&a, keys[k]), *mb = itr_tensor_set_get_meta(&b, keys[k]);
        ok = ma && mb && !strcmp(ma, mb);
        if (!ok && !g_expect_different)
            fprintf(stderr, "  %s: %s in %s, %s in %s\n", keys[k], ma ? ma : "-", pa, mb ? mb : "-", pb);
    }
    itr_tensor_set_free(&a);
    itr_tensor_set_free(&b);
    return ok;
}

// log.jsonl without its timings ("seconds" and "pairs_per_s" vary run to
// run; the loss, lr and dev recalls must not).
static char *log_without_times(const char *run_dir) {
    size_t n;
    uint8_t *buf = slurp(mt_path_in(run_dir, "log.jsonl"), &n);
    if (!buf) return NULL;
    char *out = calloc(n + 1, 1), *w = out;
    const char *s = (const char *)buf, *end = s + n;
    while (s < end) {
        const char *a = strstr(s, "\"seconds\":"), *b = a ? strstr(a, "\"dev_protocol\"") : NULL;
        if (!a || !b || a >= end) {
            memcpy(w, s, (size_t)(end - s));
            w += end - s;
            break;
        }
        memcpy(w, s, (size_t)(a - s));
        w += a - s;
        s = b;
    }
    free(buf);
    return out;
}

static bool same_logs(const char *ra, const char *rb) {
    char *a = log_without_times(ra), *b = log_without_times(rb);
    bool ok = a && b && *a && !strcmp(a, b);
    if (!ok) fprintf(stderr, "  log.jsonl of %s:\n%s\n  of %s:\n%s\n", ra, a ? a : "-", rb, b ? b : "-");
    free(a);
    free(b);
    return ok;
}

// Leftovers of a write that did not finish (the atomic writes' NAME.tmp.XXXXXX).
static int temp_files(const char *dir) {
    DIR *dp = opendir(dir);
    int n = 0;
    for (struct dirent *e; dp && (e = readdir(dp));) n += strstr(e->d_name, ".tmp.") != NULL;
    if (dp) closedir(dp);
    return n;
}

static struct mt_run_fixture plain, extra;

// Trains f with `workers` into run; the result in *r, false (reported) on failure.
static bool train(const struct mt_run_fixture *f, const struct itr_trainer_options *o, struct itr_trainer_result *r) {
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_trainer_run(f->p, o, r, &d);
    if (!ok || itr_diags_has_errors(&d)) diags_report("training: ", &d);
    itr_diags_free(&d);
    return ok;
}

static void check_same_for_workers(const struct mt_run_fixture *f, const char *tag, const int *workers, int n) {
    char base[64];
    snprintf(base, sizeof base, "%s_w%d", tag, workers[0]);
    struct itr_trainer_options o;
    struct itr_trainer_result r0, r;
    options(&o, f, base, workers[0]);
    CHECK(train(f, &o, &r0));
    CHECK(r0.steps == 14 && r0.epochs_done == 2);
    CHECK(r0.batches_ahead == (workers[0] > 1 ? 14 : 0));
    for (int i = 1; i < n; i++) {
        char run[64];
        snprintf(run, sizeof run, "%s_w%d", tag, workers[i]);
        options(&o, f, run, workers[i]);
        CHECK(train(f, &o, &r));
        CHECK_MSG(r.steps == r0.steps && r.epochs_done == r0.epochs_done, "workers %d: %" PRId64 " steps", workers[i],
                  r.steps);
        // Every batch came from a worker: the threads ran, nothing fell back.
        CHECK_MSG(r.batches_ahead == (workers[i] > 1 ? 14 : 0), "workers %d: %" PRId64 " batches built ahead",
                  workers[i], r.batches_ahead);
        CHECK_MSG(r.last_loss == r0.last_loss, "workers %d: last loss %.17g vs %.17g", workers[i], r.last_loss,
                  r0.last_loss);
        CHECK_MSG(r.best_rsum == r0.best_rsum, "workers %d: best rsum %.17g vs %.17g", workers[i], r.best_rsum,
                  r0.best_rsum);
        CHECK_MSG(same_checkpoint(mt_path_in(tmp_path(base), "last.safetensors"), mt_path_in(o.run_dir, "last.safetensors")),
                  "workers %d: last.safetensors differs", workers[i]);
        CHECK_MSG(same_checkpoint(mt_path_in(tmp_path(base), "best.safetensors"), mt_path_in(o.run_dir, "best.safetensors")),
                  "workers %d: best.safetensors differs", workers[i]);
        CHECK_MSG(same_logs(tmp_path(base), o.run_dir), "workers %d: log.jsonl differs", workers[i]);
    }
}

// 1 is the in-place path; 9 is more workers than an epoch has batches.
TEST(same_run_for_any_workers) {
    const int w[] = { 1, 2, 4, 9 };
    check_same_for_workers(&plain, "plain", w, 4);
}

// The extra captions are drawn from (seed, step): a worker must draw those
// of the step its batch will run at, not the step running now.
TEST(extra_negatives_same_for_any_workers) {
    const int w[] = { 1, 3 };
    check_same_for_workers(&extra, "extra", w, 2);
    // And the draws matter: another seed's run ends elsewhere.
    struct itr_trainer_options o;
    struct itr_trainer_result r;
    options(&o, &extra, "extra_seed6", 3);
    o.seed = 6;
    CHECK(train(&extra, &o, &r));
    g_expect_different = true;
    CHECK(!same_checkpoint(mt_path_in(tmp_path("extra_w1"), "last.safetensors"), mt_path_in(o.run_dir, "last.safetensors")));
    g_expect_different = false;
}

// A batch that cannot be built (fail_batch_at_step: as a data file that
// cannot be read would) stops the run at that step with the in-place run's
// message, its last checkpoint and nothing half-written; later batches the
// workers already built are dropped.
TEST(batch_error_stops_at_its_batch) {
    const int64_t steps[] = { 1, 5, 8, 14 };   // the first; mid-epoch; epoch 2's first; the very last
    for (int k = 0; k < 4; k++) {
        char *msgs[2] = { NULL, NULL };
        char runs[2][64];
        for (int i = 0; i < 2; i++) {
            int workers = i ? 3 : 1;
            snprintf(runs[i], sizeof runs[i], "fail%" PRId64 "_w%d", steps[k], workers);
            struct itr_trainer_options o;
            struct itr_trainer_result r;
            options(&o, &plain, runs[i], workers);
            o.fail_batch_at_step = steps[k];
            struct itr_diags d;
            itr_diags_init(&d);
            CHECK_MSG(!itr_trainer_run(plain.p, &o, &r, &d), "fail at step %" PRId64 ", workers %d: no error",
                      steps[k], workers);
            CHECK_MSG(r.steps == steps[k] - 1, "fail at step %" PRId64 ", workers %d: stopped after %" PRId64
                      " steps", steps[k], workers, r.steps);
            CHECK_DIAGS_CONTAIN(&d, "cannot build the batch's 'regions' from ");
            CHECK_DIAGS_CONTAIN(&d, plain.dir);
            CHECK(d.n_errors == 1);
            msgs[i] = itr_diags_summary(&d);
            itr_diags_free(&d);
            CHECK(temp_files(o.run_dir) == 0);
        }
        CHECK_MSG(msgs[0] && msgs[1] && !strcmp(msgs[0], msgs[1]), "the messages differ:\n%s\n%s",
                  msgs[0] ? msgs[0] : "-", msgs[1] ? msgs[1] : "-");
        CHECK(same_checkpoint(mt_path_in(tmp_path(runs[0]), "last.safetensors"),
                              mt_path_in(tmp_path(runs[1]), "last.safetensors")));
        free(msgs[0]);
        free(msgs[1]);
    }
}

// Killed mid-epoch 2 (as kill -9 would: the last checkpoint is step 9, the
// run had reached 11 with batches built beyond it) and resumed with other
// worker counts: the same as the uninterrupted in-place run. The checkpoint
// cursor is the next batch to run, never one the workers built ahead.
TEST(resume_with_workers_is_exact) {
    struct itr_trainer_options o;
    struct itr_trainer_result r;
    options(&o, &plain, "killed_w2", 2);
    o.max_steps = 11;
    o.kill_at_max_steps = true;
    CHECK(train(&plain, &o, &r));
    CHECK(r.stopped_early && r.steps == 11);
    struct itr_tensor_set s;
    if (mt_read_checkpoint(mt_path_in(o.run_dir, "last.safetensors"), &s)) {
        CHECK_STR_CONTAINS(itr_tensor_set_get_meta(&s, "itr.step"), "9");
        CHECK_STR_CONTAINS(itr_tensor_set_get_meta(&s, "itr.batch"), "2");
        itr_tensor_set_free(&s);
    }
    o.max_steps = 0;
    o.kill_at_max_steps = false;
    o.resume = true;
    o.workers = 3;
    CHECK(train(&plain, &o, &r));
    CHECK(r.steps == 14 && r.epochs_done == 2);
    CHECK(r.batches_ahead == 5);   // the 5 steps after the checkpoint at step 9
    CHECK(same_checkpoint(mt_path_in(tmp_path("plain_w1"), "last.safetensors"), mt_path_in(o.run_dir, "last.safetensors")));
    CHECK(same_checkpoint(mt_path_in(tmp_path("plain_w1"), "best.safetensors"), mt_path_in(o.run_dir, "best.safetensors")));
    CHECK(same_logs(tmp_path("plain_w1"), o.run_dir));

    // --max-steps mid-epoch 1 off the checkpoint cadence: the stop's
    // checkpoint is step 4 (batch 4), not a batch the workers built ahead.
    options(&o, &plain, "maxsteps_w3", 3);
    o.max_steps = 4;
    CHECK(train(&plain, &o, &r));
    CHECK(r.stopped_early && r.steps == 4);
    if (mt_read_checkpoint(mt_path_in(o.run_dir, "last.safetensors"), &s)) {
        CHECK_STR_CONTAINS(itr_tensor_set_get_meta(&s, "itr.step"), "4");
        CHECK_STR_CONTAINS(itr_tensor_set_get_meta(&s, "itr.batch"), "4");
        itr_tensor_set_free(&s);
    }
    o.max_steps = 0;
    o.resume = true;
    CHECK(train(&plain, &o, &r));
    CHECK(same_checkpoint(mt_path_in(tmp_path("plain_w1"), "last.safetensors"), mt_path_in(o.run_dir, "last.safetensors")));
}

// The compiled step runs its own kernel threads; the batch workers beside
// them change nothing.
TEST(same_run_on_the_llvm_backend) {
    struct mt_run_fixture f;
    if (!fixture_make(&f, "llvm_data", false)) { FAIL_AT("cannot make the data"); return; }
    const char *backend = mt_use_fused_kernels(f.p);
    if (strcmp(backend, "llvm")) {
        fprintf(stderr, "  (no LLVM in this build: the ref backend again)\n");
    }
    struct itr_trainer_options o;
    struct itr_trainer_result r0, r;
    options(&o, &f, "llvm_w1", 1);
    o.backend = backend;
    o.threads = 2;
    CHECK(train(&f, &o, &r0));
    options(&o, &f, "llvm_w3", 3);
    o.backend = backend;
    o.threads = 2;
    CHECK(train(&f, &o, &r));
    CHECK(r.steps == 14 && r.last_loss == r0.last_loss);
    CHECK(same_checkpoint(mt_path_in(tmp_path("llvm_w1"), "last.safetensors"), mt_path_in(o.run_dir, "last.safetensors")));
    CHECK(same_logs(tmp_path("llvm_w1"), o.run_dir));
    itr_program_free(f.p);
}

int main(void) {
    if (!tmpdir_create("trainer_workers")) return 1;
    if (fixture_make(&plain, "plain_data", false) && fixture_make(&extra, "extra_data", true)) {
        RUN(same_run_for_any_workers);
        RUN(extra_negatives_same_for_any_workers);
        RUN(batch_error_stops_at_its_batch);
        RUN(resume_with_workers_is_exact);
    } else {
        FAIL_AT("cannot make the synthetic sets and models");
    }
    if (plain.p) itr_program_free(plain.p);
    if (extra.p) itr_program_free(extra.p);
    RUN(same_run_on_the_llvm_backend);
    tmpdir_remove();
    return test_summary();
}
