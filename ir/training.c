// The training parts of a program (ir.h, "training"): phases, optimizer
// kinds, the train entry and its state updates.
#include "ir.h"

#include <string.h>

static const char *const phase_names[ITR_PHASE_COUNT] = { "none", "forward", "backward", "optimizer" };

const char *itr_phase_name(enum itr_phase ph) { return (unsigned)ph < ITR_PHASE_COUNT ? phase_names[ph] : "?"; }

static const char *const optimizer_names[ITR_OPT_KIND_COUNT] = { "none", "sgd", "adam", "adamw" };

const char *itr_optimizer_kind_name(enum itr_optimizer_kind k) {
    return (unsigned)k < ITR_OPT_KIND_COUNT ? optimizer_names[k] : "?";
}

bool itr_optimizer_kind_from_name(const char *s, enum itr_optimizer_kind *out) {
    // "none" is the absence of an optimizer, not a name a model can use.
    for (int i = ITR_OPT_SGD; i < ITR_OPT_KIND_COUNT; i++)
        if (strcmp(s, optimizer_names[i]) == 0) { *out = (enum itr_optimizer_kind)i; return true; }
    return false;
}

struct itr_graph *itr_program_train_graph(const struct itr_program *p) {
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i]->train) return p->graphs[i];
    return NULL;
}

void itr_program_add_update(struct itr_program *p, int32_t param, const char *output, enum itr_update_kind kind) {
    if (p->n_updates == p->cap_updates) {
        int ncap = p->cap_updates ? p->cap_updates * 2 : 8;
        struct itr_state_update *u = itr_arena_alloc(p->arena, (size_t)ncap * sizeof *u);
        if (p->n_updates) memcpy(u, p->updates, (size_t)p->n_updates * sizeof *u);
        p->updates = u;
        p->cap_updates = ncap;
    }
    p->updates[p->n_updates++] = (struct itr_state_update){ param, itr_arena_strdup(p->arena, output), kind };
}
