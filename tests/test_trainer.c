// The training loop (runtime/trainer.h) on tiny synthetic sets and a tiny
// VSE++: exact resumption after a kill, refused checkpoints, a NaN stop that
// keeps the last good state, learning well above chance, and the schedule.
#include "tests/modeltest.h"

#define VSEPP_IR ITR_SOURCE_DIR "/models/vsepp.ir"

static struct itr_program *compile_vsepp(int regions, int dim, int vocab) {
    char r[32], i[32], v[32];
    snprintf(r, sizeof r, "R=%d", regions);
    snprintf(i, sizeof i, "img_dim=%d", dim);
    snprintf(v, sizeof v, "V=%d", vocab);
    const char *ov[] = { "D=16", "W=8", "gru_init=0.25", r, i, v };
    return mt_parse_model(VSEPP_IR, ov, 6, true);
}

static int g_dim = 16;
static bool fixture_make(struct mt_run_fixture *f, const char *name, int64_t n_train, int64_t n_dev, int64_t n_test,
                         uint64_t seed) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s", tmp_path(name));
    struct itr_synth_options o;
    itr_synth_defaults(&o);
    o.n_train = n_train;
    o.n_dev = n_dev;
    o.n_test = n_test;
    o.regions = 4;
    o.dim = g_dim;
    o.seed = seed;
    int n_vocab = 0;
    if (!mt_synth(f->dir, &o, &n_vocab)) return false;
    f->p = compile_vsepp(o.regions, o.dim, n_vocab);
    snprintf(f->fingerprint, sizeof f->fingerprint, "%016" PRIx64, f->p ? itr_program_hash(f->p) : 0);
    return f->p != NULL;
}

static bool train(const struct mt_run_fixture *f, const struct itr_trainer_options *o, struct itr_trainer_result *r,
                  struct itr_diags *d) {
    bool ok = itr_trainer_run(f->p, o, r, d);
    return ok;
}

// Every tensor of a is in b with the same bytes, and they hold as many.
static bool same_tensors(const char *pa, const char *pb) {
    struct itr_tensor_set a, b;
    bool ok = mt_read_checkpoint(pa, &a) && mt_read_checkpoint(pb, &b);
    if (!ok) return false;
    ok = a.n == b.n && a.n > 0;
    for (int k = 0; ok && k < a.n; k++) {
        if (same_tensor(a.items[k].tensor, itr_tensor_set_get(&b, a.items[k].name))) continue;
        fprintf(stderr, "  tensor %s differs between %s and %s\n", a.items[k].name, pa, pb);
        ok = false;
    }
    itr_tensor_set_free(&a);
    itr_tensor_set_free(&b);
    return ok;
}

static struct mt_run_fixture small;   // 20 train images: 100 captions, 7 batches of 16 (the last one of 4)

// ---------------------------------------------------------------- resume

TEST(resume_after_kill_is_bitwise_exact) {
    struct itr_trainer_options o;
    struct itr_trainer_result straight, killed, resumed;
    struct itr_diags d;
    itr_diags_init(&d);
    mt_loop_options(&o, &small, "straight");
    CHECK(train(&small, &o, &straight, &d));
    CHECK(straight.steps == 14 && straight.epochs_done == 2);

    // Killed after 4 steps of epoch 2: the last checkpoint is step 9 (every 3).
    mt_loop_options(&o, &small, "killed");
    o.max_steps = 11;
    o.kill_at_max_steps = true;
    CHECK(train(&small, &o, &killed, &d));
    CHECK(killed.stopped_early && killed.steps == 11);
    struct itr_tensor_set s;
    if (mt_read_checkpoint(mt_path_in(o.run_dir, "last.safetensors"), &s)) {
        CHECK_STR_CONTAINS(itr_tensor_set_get_meta(&s, "itr.step"), "9");
        CHECK_STR_CONTAINS(itr_tensor_set_get_meta(&s, "itr.batch"), "2");
        itr_tensor_set_free(&s);
    }
    o.max_steps = 0;
    o.kill_at_max_steps = false;
    o.resume = true;
    o.seed = 99;   // ignored on resume: the checkpoint's seed rules
    o.batch_size = 3;
    CHECK(train(&small, &o, &resumed, &d));
    if (itr_diags_has_errors(&d)) diags_report("", &d);
    CHECK(resumed.steps == 14 && resumed.epochs_done == 2);
    CHECK(same_tensors(mt_path_in(tmp_path("straight"), "last.safetensors"), mt_path_in(o.run_dir, "last.safetensors")));
    CHECK(same_tensors(mt_path_in(tmp_path("straight"), "best.safetensors"), mt_path_in(o.run_dir, "best.safetensors")));
    CHECK(resumed.last_loss == straight.last_loss);
    CHECK(resumed.last_rsum == straight.last_rsum);
    // Each epoch is logged once, however the run was interrupted.
    size_t n;
    uint8_t *log = slurp(mt_path_in(o.run_dir, "log.jsonl"), &n);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += log[i] == '\n';
    CHECK(lines == 2);
    free(log);
    itr_diags_free(&d);
}

TEST(resume_after_max_steps_is_bitwise_exact) {
    struct itr_trainer_options o;
    struct itr_trainer_result r;
    struct itr_diags d;
    itr_diags_init(&d);
    mt_loop_options(&o, &small, "maxsteps");
    o.max_steps = 4;   // mid-epoch 1, off the checkpoint cadence: the stop writes one
    CHECK(train(&small, &o, &r, &d));
    CHECK(r.stopped_early && r.steps == 4 && r.epochs_done == 0);
    o.max_steps = 0;
    o.resume = true;
    CHECK(train(&small, &o, &r, &d));
    if (itr_diags_has_errors(&d)) diags_report("", &d);
    CHECK(same_tensors(mt_path_in(tmp_path("straight"), "last.safetensors"), mt_path_in(o.run_dir, "last.safetensors")));
    itr_diags_free(&d);
}

TEST(refuses_foreign_and_corrupt_checkpoints) {
    struct itr_trainer_options o;
    struct itr_trainer_result r;
    struct itr_diags d;
    itr_diags_init(&d);
    mt_loop_options(&o, &small, "straight");
    o.resume = true;
    o.fingerprint = "0123456789abcdef";
    CHECK(!train(&small, &o, &r, &d));
    CHECK_DIAGS_CONTAIN(&d, "0123456789abcdef");
    CHECK_DIAGS_CONTAIN(&d, small.fingerprint);
    CHECK_DIAGS_CONTAIN(&d, "fingerprint");

    // A fresh run into a directory that holds one is refused too.
    diags_reset(&d);
    mt_loop_options(&o, &small, "straight");
    CHECK(!train(&small, &o, &r, &d));
    CHECK_DIAGS_CONTAIN(&d, "--resume");

    // Truncated: the safetensors reader's error, naming the file.
    diags_reset(&d);
    size_t n;
    uint8_t *buf = slurp(mt_path_in(tmp_path("straight"), "last.safetensors"), &n);
    mt_loop_options(&o, &small, "corrupt");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", o.run_dir);
    CHECK(system(cmd) == 0);
    write_bytes(mt_path_in(o.run_dir, "last.safetensors"), buf, n / 2);
    free(buf);
    o.resume = true;
    CHECK(!train(&small, &o, &r, &d));
    CHECK_DIAGS_CONTAIN(&d, "last.safetensors");

    // Nothing to resume.
    diags_reset(&d);
    mt_loop_options(&o, &small, "never_ran");
    o.resume = true;
    CHECK(!train(&small, &o, &r, &d));
    CHECK_DIAGS_CONTAIN(&d, "nothing to resume");
    itr_diags_free(&d);
}

TEST(nan_loss_stops_and_keeps_the_last_good_checkpoint) {
    struct itr_trainer_options o;
    struct itr_trainer_result r;
    struct itr_diags d;
    itr_diags_init(&d);
    mt_loop_options(&o, &small, "nan");
    o.lr_given = true;
    // An infinite lr makes step 1's parameters infinite, so step 2's loss is NaN.
    o.lr.lr = INFINITY;
    o.lr.warmup_steps = 0;
    o.checkpoint_every = 1;
    CHECK(!train(&small, &o, &r, &d));
    CHECK_DIAGS_CONTAIN(&d, "training stopped at epoch");
    CHECK_DIAGS_CONTAIN(&d, "not finite");
    struct itr_tensor_set s;
    if (mt_read_checkpoint(mt_path_in(o.run_dir, "last.safetensors"), &s)) {
        int64_t step = -1;
        const char *m = itr_tensor_set_get_meta(&s, "itr.step");
        if (m) step = strtoll(m, NULL, 10);
        CHECK_MSG(step >= 0 && step < r.steps + 1, "last good step %" PRId64 ", stopped at %" PRId64, step, r.steps);
        bool finite = true;
        for (int k = 0; k < s.n; k++)
            for (int64_t i = 0; i < itr_tensor_numel(s.items[k].tensor); i++)
                finite &= isfinite(itr_tensor_get(s.items[k].tensor, i)) != 0;
        CHECK(finite);
        itr_tensor_set_free(&s);
    }
    itr_diags_free(&d);
}

// NaN features poison the very first step (a hinge of NaN similarities can
// still be finite, the updated parameters are not): the run stops there and
// the step-0 checkpoint is the last good state.
TEST(nan_loss_names_epoch_and_step) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", small.dir, tmp_path("nan_data"));
    CHECK(system(cmd) == 0);
    char ims[700];
    snprintf(ims, sizeof ims, "%s/train_ims.npy", tmp_path("nan_data"));
    size_t n;
    uint8_t *buf = slurp(ims, &n);
    size_t data = 10 + (size_t)(buf[8] | buf[9] << 8);   // .npy 1.0: magic, version, header length, header
    const uint8_t nan_f32[4] = { 0x00, 0x00, 0xc0, 0x7f };
    for (size_t i = data; i + 4 <= n; i += 4) memcpy(buf + i, nan_f32, 4);
    write_bytes(ims, buf, n);
    free(buf);
    struct mt_run_fixture f = small;
    snprintf(f.dir, sizeof f.dir, "%s", tmp_path("nan_data"));
    struct itr_trainer_options o;
    struct itr_trainer_result r;
    struct itr_diags d;
    itr_diags_init(&d);
    mt_loop_options(&o, &f, "nan_loss");
    CHECK(!train(&f, &o, &r, &d));
    CHECK_DIAGS_CONTAIN(&d, "training stopped at epoch 1, step 1");
    CHECK_DIAGS_CONTAIN(&d, "not finite");
    struct itr_tensor_set s;
    if (mt_read_checkpoint(mt_path_in(o.run_dir, "last.safetensors"), &s)) {
        CHECK_STR_CONTAINS(itr_tensor_set_get_meta(&s, "itr.step"), "0");
        itr_tensor_set_free(&s);
    }
    itr_diags_free(&d);
}

TEST(feature_dim_mismatch_names_both) {
    struct itr_program *p = compile_vsepp(4, 24, 200);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_trainer_options o;
    struct itr_trainer_result r;
    struct itr_diags d;
    itr_diags_init(&d);
    mt_loop_options(&o, &small, "dims");
    CHECK(!itr_trainer_run(p, &o, &r, &d));
    CHECK_DIAGS_CONTAIN(&d, "feature dim 16");
    CHECK_DIAGS_CONTAIN(&d, "feature dim 24");
    itr_diags_free(&d);
    itr_program_free(p);
}

// ---------------------------------------------------------------- learning

TEST(learns_well_above_chance) {
    struct mt_run_fixture f;
    // 32-dim features: at 16 the synthetic concepts are too noisy for a
    // 16-dim VSE++ to separate within the test's budget.
    g_dim = 32;
    CHECK(fixture_make(&f, "learn", 500, 40, 100, 11));
    if (!f.p) return;
    struct itr_trainer_options o;
    struct itr_trainer_result r;
    struct itr_diags d;
    itr_diags_init(&d);
    mt_loop_options(&o, &f, "learn_run");
    // Small batches: the max-violation hinge collapses to a constant
    // embedding from scratch at B = 64 (VSE++'s known need for warm-up);
    // at B = 16 it gets past that plateau in a few epochs.
    o.epochs = 12;
    o.batch_size = 16;
    o.lr_given = true;
    o.lr.lr = 0.01;
    o.lr.kind = ITR_LR_CONSTANT;
    o.lr.warmup_steps = 0;
    o.checkpoint_every = -1;
    // The step-0 state is the untrained model: best.safetensors is written
    // only after an epoch, so mt_train_eval inits it separately from the
    // same seed (a run killed at step 1 writes only the step-0 checkpoint).
    char run0[700];
    snprintf(run0, sizeof run0, "%s", tmp_path("learn_init"));
    double secs, chance, trained;
    mt_train_eval(f.p, &o, run0, "", &r, &secs, &chance, &trained, &d);
    fprintf(stderr, "learning: test rsum %.2f untrained, %.2f after %" PRId64 " steps (%.1f s CPU)\n", chance,
            trained, r.steps, secs);
    CHECK_MSG(trained >= 5 * chance, "test rsum %.2f trained vs %.2f untrained: less than 5x", trained, chance);
    itr_diags_free(&d);
    itr_program_free(f.p);
}

// ---------------------------------------------------------------- schedule and order

TEST(lr_schedules) {
    struct itr_lr_options o = { .kind = ITR_LR_STEP, .lr = 2e-4, .step_epochs = 15, .gamma = 0.1 };
    CHECK_NEAR(itr_lr_at(&o, 1, 0, 100), 2e-4, 1e-18);
    CHECK_NEAR(itr_lr_at(&o, 50, 14, 100), 2e-4, 1e-18);
    CHECK_NEAR(itr_lr_at(&o, 51, 15, 100), 2e-5, 1e-18);
    CHECK_NEAR(itr_lr_at(&o, 99, 30, 100), 2e-6, 1e-18);
    o.warmup_steps = 4;
    CHECK_NEAR(itr_lr_at(&o, 1, 0, 100), 0.5e-4, 1e-18);
    CHECK_NEAR(itr_lr_at(&o, 4, 0, 100), 2e-4, 1e-18);
    struct itr_lr_options c = { .kind = ITR_LR_COSINE, .lr = 1.0 };
    CHECK_NEAR(itr_lr_at(&c, 1, 0, 10), 1.0, 1e-15);
    CHECK_NEAR(itr_lr_at(&c, 6, 0, 10), 0.5, 1e-15);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_lr_options p = { 0 };
    CHECK(itr_lr_parse("step:10:0.5", &p, &d) && p.kind == ITR_LR_STEP && p.step_epochs == 10 && p.gamma == 0.5);
    CHECK(itr_lr_parse("step:3", &p, &d) && p.gamma == 0.1);
    char buf[64];
    itr_lr_format(&p, buf, sizeof buf);
    struct itr_lr_options q = { 0 };
    CHECK(itr_lr_parse(buf, &q, &d) && q.step_epochs == 3 && q.gamma == 0.1);
    CHECK(!itr_lr_parse("step:0", &p, &d));
    CHECK(!itr_lr_parse("linear", &p, &d));
    CHECK_DIAGS_CONTAIN(&d, "accepted: constant");
    itr_diags_free(&d);
}

TEST(epoch_order_is_a_seeded_permutation) {
    int64_t a[50], b[50], c[50];
    itr_epoch_permutation(3, 0, 50, a);
    itr_epoch_permutation(3, 0, 50, b);
    itr_epoch_permutation(3, 1, 50, c);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    int seen[50] = { 0 };
    for (int i = 0; i < 50; i++) if (a[i] >= 0 && a[i] < 50) seen[a[i]]++;
    bool perm = true;
    for (int i = 0; i < 50; i++) perm &= seen[i] == 1;
    CHECK(perm);
}

int main(void) {
    if (!tmpdir_create("trainer")) return 1;
    RUN(lr_schedules);
    RUN(epoch_order_is_a_seeded_permutation);
    if (fixture_make(&small, "small", 20, 10, 10, 3)) {
        RUN(resume_after_kill_is_bitwise_exact);
        RUN(resume_after_max_steps_is_bitwise_exact);
        RUN(refuses_foreign_and_corrupt_checkpoints);
        RUN(nan_loss_stops_and_keeps_the_last_good_checkpoint);
        RUN(nan_loss_names_epoch_and_step);
        RUN(feature_dim_mismatch_names_both);
        itr_program_free(small.p);
    } else {
        FAIL_AT("cannot make the small synthetic set");
    }
    RUN(learns_well_above_chance);
    tmpdir_remove();
    return test_summary();
}
