// The GRAD column of the op table, as a lookup by op.
#include "compiler/autodiff.h"

#define ITR_NOGRAD itr_no_grad_rule
bool itr_no_grad_rule(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx);

#define OP(id, name, cls, min_in, max_in, n_out, attrs, shape, ref, grad, nondiff, doc) \
    bool grad(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx);
#include "ir/ops.def"
#undef OP

static const itr_grad_rule grad_rules[ITR_OP_COUNT] = {
#define OP(id, name, cls, min_in, max_in, n_out, attrs, shape, ref, grad, nondiff, doc) [ITR_OP_##id] = grad,
#include "ir/ops.def"
#undef OP
};

// Only its address is used: it marks ops without a rule.
bool itr_no_grad_rule(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    (void)dy; (void)dx;
    itr_diag_error(c->d, n->loc, "op '%s' has no gradient rule", itr_op_name(n->op));
    return false;
}

itr_grad_rule itr_grad_rule_of(enum itr_op op) {
    if ((unsigned)op >= ITR_OP_COUNT || grad_rules[op] == itr_no_grad_rule) return NULL;
    return grad_rules[op];
}
