// The training loop (`itr-run train`, docs/training.md "Training runs"):
// epochs of shuffled batches through itr_train_step, a learning-rate
// schedule, evaluation on dev after each epoch, checkpoints that resume
// bitwise exactly, and per-epoch logs.
//
// A run directory holds last.safetensors (the latest state and the data
// cursor), best.safetensors (the best dev rsum so far), log.jsonl, log.csv
// and, with plot, curves.svg.
#ifndef ITR_RUNTIME_TRAINER_H
#define ITR_RUNTIME_TRAINER_H

#include <stdio.h>

#include "ir/ir.h"

enum itr_lr_schedule { ITR_LR_CONSTANT, ITR_LR_STEP, ITR_LR_COSINE };

struct itr_lr_options {
    enum itr_lr_schedule kind;
    double lr;                    // base learning rate
    int64_t step_epochs;          // ITR_LR_STEP: decay every K epochs
    double gamma;                 // ITR_LR_STEP: factor (0.1)
    int64_t warmup_steps;         // linear warm-up over the first N steps (0: none)
};

// "constant", "step:K", "step:K:GAMMA", "cosine"; the base lr and warm-up
// are left as they are.
bool itr_lr_parse(const char *text, struct itr_lr_options *o, struct itr_diags *d);
// The text form itr_lr_parse reads back.
void itr_lr_format(const struct itr_lr_options *o, char *buf, size_t n);
// The lr of a global 1-based step in a 0-based epoch, for a run of
// total_steps steps (cosine decays to 0 at total_steps).
double itr_lr_at(const struct itr_lr_options *o, int64_t step, int64_t epoch, int64_t total_steps);

// The permutation of 0..n-1 an epoch visits: Fisher-Yates with Philox draws
// from (seed, epoch), so a resumed run revisits exactly the same order.
void itr_epoch_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm);

struct itr_trainer_options {
    const char *data_dir;
    const char *vocab_path;       // NULL: data_dir/vocab.json
    const char *run_dir;          // created if missing
    const char *fingerprint;      // the plan's; recorded and checked on resume
    int64_t epochs;               // 0: 30
    int64_t batch_size;           // 0: 128
    bool lr_given;                // false: the optimizer's lr
    struct itr_lr_options lr;
    uint64_t seed;
    bool resume;                  // continue from run_dir/last.safetensors
    const char *weights;          // start from these instead of fresh parameters
    int64_t max_steps;            // stop once the global step reaches this (0: no limit)
    bool kill_at_max_steps;       // tests: stop at max_steps writing nothing, as kill -9 would
    int64_t fail_batch_at_step;   // tests: the batch of this global step fails to build, as unreadable data would
    int64_t checkpoint_every;     // steps between mid-epoch checkpoints (0: 200, <0: none)
    const char *eval_split;       // NULL: "dev"
    bool plot;                    // write run_dir/curves.svg
    bool f64;
    const char *backend;          // the session's backend (NULL: the default, ref)
    int threads;                  // its kernel threads (0: the backend's default)
    // Threads that build the next batches (read features, assemble tensors)
    // while the step runs, up to `workers` batches ahead; <= 1: the training
    // thread builds each batch between steps. Every batch is a pure function
    // of (seed, epoch, step), so results are bitwise the same for any value.
    int workers;
    FILE *progress;               // start-up report and progress; NULL: silent
};

struct itr_trainer_result {
    int64_t steps;                // global steps done when the run stopped
    int64_t epochs_done;          // complete epochs
    double last_rsum, best_rsum;  // dev rsum of the last evaluated epoch and the best (NAN: none yet)
    double last_loss;             // mean loss of the last complete epoch
    double seconds;               // wall time of this call's training
    bool stopped_early;           // max_steps reached before the last epoch ended
    int64_t batches_ahead;        // batches of this call that worker threads built (0 for workers <= 1)
};

// Runs (or resumes) training; false with diagnostics on any error, a NaN or
// infinite loss included (the last checkpoint written stays the last good one).
bool itr_trainer_run(const struct itr_program *p, const struct itr_trainer_options *o, struct itr_trainer_result *r,
                     struct itr_diags *d);

#endif
