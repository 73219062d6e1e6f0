/* Group normalisation (Wu & He 2018): the op, its backward pass and the
 * plain reference (ops_ref.h).
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

#include "tensor/ops_ref.h"
#include "tensor/tensor_internal.h"

/* ---- reference -------------------------------------------------------- */

void flash_ref_group_norm_forward(float *y, const float *x, const float *gamma, const float *beta, int n, int c,
                                  int hw, int groups, float eps) {
    const int cpg = c / groups;
    const size_t m = (size_t)cpg * hw;
    for (int s = 0; s < n; s++)
        for (int g = 0; g < groups; g++) {
            const size_t base = ((size_t)s * c + (size_t)g * cpg) * hw;
            double mean = 0, var = 0;
            for (size_t i = 0; i < m; i++) mean += x[base + i];
            mean /= (double)m;
            for (size_t i = 0; i < m; i++) var += (x[base + i] - mean) * (x[base + i] - mean);
            var /= (double)m;
            for (int ch = 0; ch < cpg; ch++) {
                int cc = g * cpg + ch;
                for (int j = 0; j < hw; j++) {
                    size_t i = base + (size_t)ch * hw + j;
                    double v = (x[i] - mean) / sqrt(var + eps);
                    y[i] = (float)(v * (gamma ? gamma[cc] : 1.0) + (beta ? beta[cc] : 0.0));
                }
            }
        }
}

/* The textbook chain rule through mean and variance (dvar, then dmean),
 * rather than the fused closed form of the fast kernel. */
void flash_ref_group_norm_backward(float *gx, float *ggamma, float *gbeta, const float *gy, const float *x,
                                   const float *gamma, int n, int c, int hw, int groups, float eps) {
    const int cpg = c / groups;
    const size_t m = (size_t)cpg * hw;
    for (int s = 0; s < n; s++)
        for (int g = 0; g < groups; g++) {
            const size_t base = ((size_t)s * c + (size_t)g * cpg) * hw;
            double mean = 0, var = 0;
            for (size_t i = 0; i < m; i++) mean += x[base + i];
            mean /= (double)m;
            for (size_t i = 0; i < m; i++) var += (x[base + i] - mean) * (x[base + i] - mean);
            var /= (double)m;
            const double sd = sqrt(var + eps);
            double dvar = 0, dmean = 0, sum_xm = 0;
            for (int ch = 0; ch < cpg; ch++) {
                int cc = g * cpg + ch;
                double gm = gamma ? gamma[cc] : 1.0;
                for (int j = 0; j < hw; j++) {
                    size_t i = base + (size_t)ch * hw + j;
                    double dxhat = gy[i] * gm;
                    dvar += dxhat * (x[i] - mean) * -0.5 / (sd * sd * sd);
                    dmean += -dxhat / sd;
                    sum_xm += -2.0 * (x[i] - mean);
                    if (ggamma) ggamma[cc] += (float)(gy[i] * (x[i] - mean) / sd);
                    if (gbeta) gbeta[cc] += gy[i];
                }
            }
            dmean += dvar * sum_xm / (double)m;
            if (!gx) continue;
            for (int ch = 0; ch < cpg; ch++) {
                int cc = g * cpg + ch;
                double gm = gamma ? gamma[cc] : 1.0;
                for (int j = 0; j < hw; j++) {
                    size_t i = base + (size_t)ch * hw + j;
                    gx[i] += (float)(gy[i] * gm / sd + dvar * 2.0 * (x[i] - mean) / (double)m + dmean / (double)m);
                }
            }
        }
}

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
