/* The plain references of ops_ref.h: loops in double, written from the
 * definitions in the ops' comments (core/tensor/ops_*.c), independent of
 * the backend kernels they check. */
#include "ops_ref/ops_ref.h"

#include <math.h>
#include <string.h>

void flash_ref_linear_forward(float *y, const float *x, const float *w, const float *b, int n, int in, int out) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int k = 0; k < in; k++) acc += (double)x[(size_t)i * in + k] * w[(size_t)o * in + k];
            y[(size_t)i * out + o] = (float)acc;
        }
}

void flash_ref_linear_backward(float *gx, float *gw, float *gb, const float *gy, const float *x, const float *w, int n,
                               int in, int out) {
    if (gx)
        for (int i = 0; i < n; i++)
            for (int k = 0; k < in; k++) {
                double acc = 0;
                for (int o = 0; o < out; o++) acc += (double)gy[(size_t)i * out + o] * w[(size_t)o * in + k];
                gx[(size_t)i * in + k] += (float)acc;
            }
    if (gw)
        for (int o = 0; o < out; o++)
            for (int k = 0; k < in; k++) {
                double acc = 0;
                for (int i = 0; i < n; i++) acc += (double)gy[(size_t)i * out + o] * x[(size_t)i * in + k];
                gw[(size_t)o * in + k] += (float)acc;
            }
    if (gb)
        for (int o = 0; o < out; o++) {
            double acc = 0;
            for (int i = 0; i < n; i++) acc += gy[(size_t)i * out + o];
            gb[o] += (float)acc;
        }
}

void flash_ref_matmul_forward(float *c, const float *a, const float *b, int m, int k, int n) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int p = 0; p < k; p++) acc += (double)a[(size_t)i * k + p] * b[(size_t)p * n + j];
            c[(size_t)i * n + j] = (float)acc;
        }
}

void flash_ref_matmul_backward(float *ga, float *gb, const float *gc, const float *a, const float *b, int m, int k,
                               int n) {
    if (ga)
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++) {
                double acc = 0;
                for (int j = 0; j < n; j++) acc += (double)gc[(size_t)i * n + j] * b[(size_t)p * n + j];
                ga[(size_t)i * k + p] += (float)acc;
            }
    if (gb)
        for (int p = 0; p < k; p++)
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int i = 0; i < m; i++) acc += (double)a[(size_t)i * k + p] * gc[(size_t)i * n + j];
                gb[(size_t)p * n + j] += (float)acc;
            }
}

void flash_ref_conv2d_forward(float *y, const float *x, const float *w, const float *b, const flash_conv_geom *g) {
    for (int n = 0; n < g->n; n++)
        for (int o = 0; o < g->cout; o++)
            for (int i = 0; i < g->ho; i++)
                for (int j = 0; j < g->wo; j++) {
                    double acc = b ? b[o] : 0.0;
                    for (int c = 0; c < g->cin; c++)
                        for (int p = 0; p < g->k; p++) {
                            int yi = i * g->stride - g->pad + p;
                            if (yi < 0 || yi >= g->h) continue;
                            for (int q = 0; q < g->k; q++) {
                                int xj = j * g->stride - g->pad + q;
                                if (xj < 0 || xj >= g->w) continue;
                                acc += (double)w[(((size_t)o * g->cin + c) * g->k + p) * g->k + q] *
                                       x[(((size_t)n * g->cin + c) * g->h + yi) * g->w + xj];
                            }
                        }
                    y[(((size_t)n * g->cout + o) * g->ho + i) * g->wo + j] = (float)acc;
                }
}

/* Each gradient is written as its own gather (a sum over the outputs that
 * touch the element), not as a scatter, so it shares no code path with the
 * forward loop above. */
void flash_ref_conv2d_backward(float *gx, float *gw, float *gb, const float *gy, const float *x, const float *w,
                               const flash_conv_geom *g) {
    if (gx)
        for (int n = 0; n < g->n; n++)
            for (int c = 0; c < g->cin; c++)
                for (int yi = 0; yi < g->h; yi++)
                    for (int xj = 0; xj < g->w; xj++) {
                        double acc = 0;
                        for (int p = 0; p < g->k; p++) {
                            int t = yi + g->pad - p; /* = i * stride */
                            if (t < 0 || t % g->stride) continue;
                            int i = t / g->stride;
                            if (i >= g->ho) continue;
                            for (int q = 0; q < g->k; q++) {
                                int u = xj + g->pad - q;
                                if (u < 0 || u % g->stride) continue;
                                int j = u / g->stride;
                                if (j >= g->wo) continue;
                                for (int o = 0; o < g->cout; o++)
                                    acc += (double)w[(((size_t)o * g->cin + c) * g->k + p) * g->k + q] *
                                           gy[(((size_t)n * g->cout + o) * g->ho + i) * g->wo + j];
                            }
                        }
                        gx[(((size_t)n * g->cin + c) * g->h + yi) * g->w + xj] += (float)acc;
                    }
    if (gw)
        for (int o = 0; o < g->cout; o++)
            for (int c = 0; c < g->cin; c++)
                for (int p = 0; p < g->k; p++)
                    for (int q = 0; q < g->k; q++) {
                        double acc = 0;
                        for (int n = 0; n < g->n; n++)
                            for (int i = 0; i < g->ho; i++) {
                                int yi = i * g->stride - g->pad + p;
                                if (yi < 0 || yi >= g->h) continue;
                                for (int j = 0; j < g->wo; j++) {
                                    int xj = j * g->stride - g->pad + q;
                                    if (xj < 0 || xj >= g->w) continue;
                                    acc += (double)gy[(((size_t)n * g->cout + o) * g->ho + i) * g->wo + j] *
                                           x[(((size_t)n * g->cin + c) * g->h + yi) * g->w + xj];
                                }
                            }
                        gw[(((size_t)o * g->cin + c) * g->k + p) * g->k + q] += (float)acc;
                    }
    if (gb)
        for (int o = 0; o < g->cout; o++) {
            double acc = 0;
            for (int n = 0; n < g->n; n++)
                for (size_t i = 0; i < (size_t)g->ho * g->wo; i++)
                    acc += gy[((size_t)n * g->cout + o) * g->ho * g->wo + i];
            gb[o] += (float)acc;
        }
}

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

void flash_ref_upsample2x_forward(float *y, const float *x, int nc, int h, int w) {
    for (int p = 0; p < nc; p++)
        for (int i = 0; i < 2 * h; i++)
            for (int j = 0; j < 2 * w; j++)
                y[((size_t)p * 2 * h + i) * 2 * w + j] = x[((size_t)p * h + i / 2) * w + j / 2];
}

void flash_ref_upsample2x_backward(float *gx, const float *gy, int nc, int h, int w) {
    for (int p = 0; p < nc; p++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                double acc = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) acc += gy[((size_t)p * 2 * h + 2 * i + a) * 2 * w + 2 * j + b];
                gx[((size_t)p * h + i) * w + j] += (float)acc;
            }
}

void flash_ref_avg_pool2d_forward(float *y, const float *x, int nc, int h, int w, int k) {
    const int ho = h / k, wo = w / k;
    for (int p = 0; p < nc; p++)
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                double acc = 0;
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) acc += x[((size_t)p * h + i * k + a) * w + j * k + b];
                y[((size_t)p * ho + i) * wo + j] = (float)(acc / (k * k));
            }
}

void flash_ref_avg_pool2d_backward(float *gx, const float *gy, int nc, int h, int w, int k) {
    const int ho = h / k, wo = w / k;
    for (int p = 0; p < nc; p++)
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                double g = gy[((size_t)p * ho + i) * wo + j] / (double)(k * k);
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) gx[((size_t)p * h + i * k + a) * w + j * k + b] += (float)g;
            }
}
