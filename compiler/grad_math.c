// Gradient rules: elementwise, reductions, contraction, movement (placeholders until the rules land).
#include "compiler/autodiff.h"

static bool not_yet(struct itr_grad_ctx *c, const struct itr_node *n) {
    itr_diag_error(c->d, n->loc, "gradient rule of op '%s' is not implemented yet", itr_op_name(n->op));
    return false;
}

bool grad_neg(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_abs(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_exp(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_log(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_sqrt(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_rsqrt(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_reciprocal(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_relu(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_leaky_relu(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_sigmoid(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_tanh(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_gelu(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_erf(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_sin(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_cos(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_identity(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_cast(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_add(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_sub(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_mul(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_div(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_pow(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_maximum(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_minimum(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_where(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_sum(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_mean(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_max(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_min(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_matmul(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_reshape(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_transpose(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_expand(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_squeeze(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_unsqueeze(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_slice(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_concat(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_pad(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
