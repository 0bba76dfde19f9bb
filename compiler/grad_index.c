// Gradient rules: indexing, sorting, scan (placeholders until the rules land).
#include "compiler/autodiff.h"

static bool not_yet(struct itr_grad_ctx *c, const struct itr_node *n) {
    itr_diag_error(c->d, n->loc, "gradient rule of op '%s' is not implemented yet", itr_op_name(n->op));
    return false;
}

bool grad_gather(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_scatter_add(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_take_along_axis(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_scatter_add_along_axis(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_sort(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_topk(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
bool grad_scan(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) { (void)dy; (void)dx; return not_yet(c, n); }
