// Converting an original repository's checkpoint to a model's parameters
// (itr-convert, docs/user-guide.md "Bringing original checkpoints").
//
// The checkpoint arrives as a tensor set named by path in the checkpoint
// ("1.rnn.weight_ih_l0": checkpoint['model'][1]['rnn.weight_ih_l0'];
// tools/itr_convert_read.py makes it). A name map, kept next to the model
// (models/NAME.ckpt-map, format in docs/models.md "Checkpoint maps"), says
// which checkpoint tensor each parameter comes from. Conversion checks every
// parameter's dtype and shape against the program (binding its symbolic dims
// from the checkpoint, consistently across parameters), folds weight_norm
// pairs, and reports the checkpoint tensors no parameter used.
//
// Map lines, one rule each ('#' starts a comment):
//     OURS  THEIRS  [transpose] [reshape]
// OURS ending in '.' is a prefix rule: every parameter under it maps to THEIRS
// followed by the same remainder. "{k}" (any name in braces) matches a run of
// digits in OURS and is substituted into THEIRS. An exact rule wins over a
// prefix rule; among rules of one kind the first in the file wins. A rule
// whose OURS matches no parameter of the compiled model is inactive, so one
// map serves every configuration (sgr_step, layer counts, text branches).
#ifndef ITR_RUNTIME_CKPT_CONVERT_H
#define ITR_RUNTIME_CKPT_CONVERT_H

#include "ir/diag.h"
#include "ir/ir.h"
#include "ir/tensor_set.h"

enum { ITR_CKPT_TRANSPOSE = 1, ITR_CKPT_RESHAPE = 2 };

struct itr_ckpt_rule {
    char *ours, *theirs;
    bool prefix;          // ours ends in '.'
    unsigned flags;       // ITR_CKPT_*
    int line;
};

struct itr_ckpt_map {
    struct itr_ckpt_rule *rules; int n, cap;
    char *path;           // for messages
};

void itr_ckpt_map_init(struct itr_ckpt_map *m);
void itr_ckpt_map_free(struct itr_ckpt_map *m);
// Parses map text; errors name path:line:col. On failure m holds nothing.
bool itr_ckpt_map_parse(const char *path, const char *text, size_t len, struct itr_ckpt_map *m,
                        struct itr_diags *d);
bool itr_ckpt_map_read(const char *path, struct itr_ckpt_map *m, struct itr_diags *d);

// What a conversion did, for the report itr-convert prints. Strings owned.
struct itr_ckpt_report {
    char **lines; int n_lines, cap_lines;   // "img_fc.weight <- 0.fc.weight_g, 0.fc.weight_v (weight_norm)"
    char **ignored; int n_ignored, cap_ignored;   // checkpoint tensors no parameter used
    int n_params;
};

void itr_ckpt_report_free(struct itr_ckpt_report *r);

// The parameters a weights file holds: every parameter of p except the
// optimizer state the training transform added (ITR_UPDATE_OPTIMIZER).
bool itr_ckpt_is_weight(const struct itr_program *p, int param);

// Fills out (initialised by the caller, left empty on failure) with one
// tensor per weight parameter of p, named as the parameter. Every problem is
// reported before returning false: a parameter no rule maps, a rule whose
// checkpoint tensor is missing, a dtype or shape that does not fit (the
// parameter, the checkpoint tensor and both shapes), a bad weight_norm pair.
// f64 checkpoint tensors are rounded to f32 parameters (noted in the report).
bool itr_ckpt_convert(const struct itr_program *p, const struct itr_ckpt_map *m, const struct itr_tensor_set *ckpt,
                      struct itr_tensor_set *out, struct itr_ckpt_report *rep, struct itr_diags *d);

// w = g · v / ‖v‖ (torch.nn.utils.weight_norm): the norm runs over every dim
// of v except the one where g is not 1 (g of one element: the whole tensor,
// weight_norm(dim=None)). Returns a new f32 tensor (f64 if v is), or NULL with
// an error naming what (e.g. "0.fc.weight").
struct itr_tensor *itr_ckpt_fold_weight_norm(const struct itr_tensor *g, const struct itr_tensor *v, const char *what,
                                             struct itr_diags *d);

#endif
