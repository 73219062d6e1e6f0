/* Group normalisation (Wu & He 2018): the op and its backward pass (the
 * tests' plain reference is tests/ops_ref/).
 *
 *   y = (x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c]
 *
 * with mean and (biased) variance over each sample's group of C/G channels
 * and all spatial positions. The forward keeps (mean, 1/std) per (sample,
 * group) in double for the backward. flash_group_norm_silu applies
 * silu(y) = y sigmoid(y) in the same pass (the U-Net's norm-activation
 * pair), saving a tensor and two passes over memory.
 */
#include <math.h>
#include <string.h>

#include "tensor/tensor_internal.h"

/* ---- ops -------------------------------------------------------------- */

static void group_norm_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0], *gamma = e->in[1], *beta = e->in[2], *y = e->out;
    const int n = x->shape[0], ch = x->shape[1], groups = e->iarg[0];
    const bool silu = e->iarg[1];
    const int hw = (int)(x->numel / ((size_t)n * ch));
    float *gx = flash_grad_of(c, x), *gg = flash_grad_of(c, gamma), *gb = flash_grad_of(c, beta);
    if (c->failed || (!gx && !gg && !gb)) return;
    double *scratch = flash_arena_alloc(c, 2 * (size_t)n * ch * sizeof(double));
    if (!scratch) return;
    c->be->group_norm_backward(gx, gg, gb, y->grad, x->data, e->saved, gamma ? gamma->data : NULL,
                               beta ? beta->data : NULL, n, ch, hw, groups, silu, scratch);
}

static flash_tensor *group_norm(flash_ctx *c, const char *op, flash_tensor *x, int groups, flash_tensor *gamma,
                                flash_tensor *beta, float eps, bool silu) {
    if (!c || !x) return NULL;
    if (c->failed) return NULL;
    char sx[64];
    if (x->ndim < 2)
        return flash_op_fail(c, op, "expects x (N, C, ...), got %s", flash_tensor_shape_str(x, sx, sizeof sx));
    const int n = x->shape[0], ch = x->shape[1];
    if (groups < 1 || ch % groups)
        return flash_op_fail(c, op, "%d groups do not divide the %d channels of x %s", groups, ch,
                             flash_tensor_shape_str(x, sx, sizeof sx));
    if ((gamma && gamma->numel != (size_t)ch) || (beta && beta->numel != (size_t)ch))
        return flash_op_fail(c, op, "gamma and beta must have %d elements (got %zu and %zu)", ch,
                             gamma ? gamma->numel : (size_t)ch, beta ? beta->numel : (size_t)ch);
    if (!(eps >= 0.0f)) return flash_op_fail(c, op, "eps must be >= 0, got %g", (double)eps);
    const int hw = (int)(x->numel / ((size_t)n * ch));
    flash_tensor *y = flash_tensor_like(c, x);
    double *stats = flash_arena_alloc(c, 2 * (size_t)n * groups * sizeof(double));
    if (!y || !stats) return NULL;
    c->be->group_norm_forward(y->data, stats, x->data, gamma ? gamma->data : NULL, beta ? beta->data : NULL, n, ch, hw,
                              groups, eps, silu);
    flash_tensor *ins[3] = {x, gamma, beta};
    flash_tape_entry *e = flash_tape_record(c, op, group_norm_backward, y, 3, ins);
    if (e) {
        e->iarg[0] = groups;
        e->iarg[1] = silu;
        e->farg[0] = eps;
        e->saved = stats;
    }
    return y;
}

flash_tensor *flash_group_norm(flash_ctx *c, flash_tensor *x, int groups, flash_tensor *gamma, flash_tensor *beta,
                               float eps) {
    return group_norm(c, "group_norm", x, groups, gamma, beta, eps, false);
}

flash_tensor *flash_group_norm_silu(flash_ctx *c, flash_tensor *x, int groups, flash_tensor *gamma,
                                    flash_tensor *beta, float eps) {
    return group_norm(c, "group_norm_silu", x, groups, gamma, beta, eps, true);
}
