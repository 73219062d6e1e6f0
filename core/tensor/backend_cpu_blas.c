/* CPU dense kernels on OpenBLAS alone (FLASH_BLAS=openblas): sgemm, and
 * convolution as im2col + sgemm. For machines without oneDNN; on the
 * reference machine it is 2.4-3x slower on the unet-s convolutions (see
 * tools/bench/blas_choice.c), which is why oneDNN is the default.
 *
 * Samples are processed in groups wide enough that the GEMM's N dimension
 * is at least CONV_MIN_N (small images otherwise give thin GEMMs), one
 * group after another with OpenBLAS's own threads inside each GEMM: calling
 * it from OpenMP threads would oversubscribe the cores. Gradients of the
 * weights accumulate group by group in index order: deterministic for a
 * fixed thread count. Nothing is saved between forward and backward (the
 * backward redoes the im2col); transient buffers are per thread and reused.
 */
#if defined(FLASH_BLAS_OPENBLAS)

#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "tensor/backend_cpu_nn.h"
#include "tensor/tensor_internal.h"

#define CONV_MIN_N 512

int flash_cpu_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                    int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
        return 0;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
                b, ldb, beta, c, ldc);
    return 0;
}

static _Thread_local struct {
    void *p;
    size_t cap;
} t_scratch;

static float *transient(size_t floats, char *msg, size_t msg_size) {
    size_t bytes = floats * sizeof(float);
    if (t_scratch.p && bytes <= t_scratch.cap) return t_scratch.p;
    void *q = flash_cpu_backend.alloc(bytes);
    if (!q) {
        if (msg && msg_size) snprintf(msg, msg_size, "out of memory for a %zu-byte convolution workspace", bytes);
        return NULL;
    }
    flash_cpu_backend.free(t_scratch.p);
    t_scratch.p = q;
    t_scratch.cap = bytes;
    return q;
}

static int group_size(const flash_conv_geom *g) {
    int hw = g->ho * g->wo, gs = (CONV_MIN_N + hw - 1) / hw;
    return gs < 1 ? 1 : (gs > g->n ? g->n : gs);
}

/* col[(c k + p) k + q][s hw + i wo + j] for the nb samples of x (row length ld) */
static void im2col(const flash_conv_geom *g, const float *x, int nb, float *col, int ld) {
    const int hw = g->ho * g->wo;
    for (int s = 0; s < nb; s++)
        for (int c = 0; c < g->cin; c++)
            for (int p = 0; p < g->k; p++)
                for (int q = 0; q < g->k; q++) {
                    float *row = col + (size_t)((c * g->k + p) * g->k + q) * ld + (size_t)s * hw;
                    const float *xc = x + ((size_t)s * g->cin + c) * g->h * g->w;
                    for (int i = 0; i < g->ho; i++) {
                        const int yi = i * g->stride - g->pad + p;
                        float *r = row + (size_t)i * g->wo;
                        if (yi < 0 || yi >= g->h) {
                            memset(r, 0, sizeof(float) * (size_t)g->wo);
                            continue;
                        }
                        const float *xr = xc + (size_t)yi * g->w;
                        for (int j = 0; j < g->wo; j++) {
                            const int xj = j * g->stride - g->pad + q;
                            r[j] = (xj >= 0 && xj < g->w) ? xr[xj] : 0.0f;
                        }
                    }
                }
}

/* dx (nb samples) += the adjoint of im2col */
static void col2im(const flash_conv_geom *g, const float *col, int ld, int nb, float *dx) {
    const int hw = g->ho * g->wo;
    for (int s = 0; s < nb; s++)
        for (int c = 0; c < g->cin; c++)
            for (int p = 0; p < g->k; p++)
                for (int q = 0; q < g->k; q++) {
                    const float *row = col + (size_t)((c * g->k + p) * g->k + q) * ld + (size_t)s * hw;
                    float *xc = dx + ((size_t)s * g->cin + c) * g->h * g->w;
                    for (int i = 0; i < g->ho; i++) {
                        const int yi = i * g->stride - g->pad + p;
                        if (yi < 0 || yi >= g->h) continue;
                        const float *r = row + (size_t)i * g->wo;
                        float *xr = xc + (size_t)yi * g->w;
                        for (int j = 0; j < g->wo; j++) {
                            const int xj = j * g->stride - g->pad + q;
                            if (xj >= 0 && xj < g->w) xr[xj] += r[j];
                        }
                    }
                }
}

/* (cout, nb hw) <-> nb samples of (cout, hw) */
static void gather_rows(float *dst, int ld, const float *src, int nb, int rows, int hw) {
    for (int s = 0; s < nb; s++)
        for (int r = 0; r < rows; r++)
            memcpy(dst + (size_t)r * ld + (size_t)s * hw, src + ((size_t)s * rows + r) * hw, sizeof(float) * (size_t)hw);
}

static void scatter_rows(float *dst, const float *src, int ld, int nb, int rows, int hw) {
    for (int s = 0; s < nb; s++)
        for (int r = 0; r < rows; r++)
            memcpy(dst + ((size_t)s * rows + r) * hw, src + (size_t)r * ld + (size_t)s * hw, sizeof(float) * (size_t)hw);
}

int flash_cpu_conv2d_precision(int precision, char *msg, size_t msg_size) {
    if (precision == FLASH_PRECISION_FP32) return 0;
    if (msg && msg_size) snprintf(msg, msg_size, "built with FLASH_BLAS=openblas: float32 only (oneDNN has bfloat16)");
    return 1;
}

int flash_cpu_conv2d_saved_bytes(const flash_conv_geom *g, size_t *saved_bytes, char *msg, size_t msg_size) {
    (void)g, (void)msg, (void)msg_size;
    *saved_bytes = 0;
    return 0;
}

int flash_cpu_conv2d_forward(const flash_conv_geom *g, float *y, const float *x, const float *w, const float *b,
                             void *saved, char *msg, size_t msg_size) {
    (void)saved;
    const int hw = g->ho * g->wo, kk = g->cin * g->k * g->k, gs = group_size(g);
    float *col = transient((size_t)gs * hw * (size_t)(kk + g->cout), msg, msg_size);
    if (!col) return 1;
    float *tmp = col + (size_t)gs * hw * kk;
    for (int n0 = 0; n0 < g->n; n0 += gs) {
        const int nb = g->n - n0 < gs ? g->n - n0 : gs, ld = nb * hw;
        im2col(g, x + (size_t)n0 * g->cin * g->h * g->w, nb, col, ld);
        float *out = nb == 1 ? y + (size_t)n0 * g->cout * hw : tmp;
        if (b)
            for (int o = 0; o < g->cout; o++)
                for (int i = 0; i < ld; i++) out[(size_t)o * ld + i] = b[o];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, ld, kk, 1.0f, w, kk, col, ld, b ? 1.0f : 0.0f,
                    out, ld);
        if (nb > 1) scatter_rows(y + (size_t)n0 * g->cout * hw, tmp, ld, nb, g->cout, hw);
    }
    return 0;
}

int flash_cpu_conv2d_backward(const flash_conv_geom *g, float *gx, float *gw, float *gb, const float *gy,
                              const float *x, const float *w, const void *saved, char *msg, size_t msg_size) {
    (void)saved;
    const int hw = g->ho * g->wo, kk = g->cin * g->k * g->k, gs = group_size(g);
    float *col = transient((size_t)gs * hw * (size_t)(kk + g->cout), msg, msg_size);
    if (!col) return 1;
    float *dyg = col + (size_t)gs * hw * kk;
    for (int n0 = 0; n0 < g->n; n0 += gs) {
        const int nb = g->n - n0 < gs ? g->n - n0 : gs, ld = nb * hw;
        gather_rows(dyg, ld, gy + (size_t)n0 * g->cout * hw, nb, g->cout, hw);
        if (gw) {
            im2col(g, x + (size_t)n0 * g->cin * g->h * g->w, nb, col, ld);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->cout, kk, ld, 1.0f, dyg, ld, col, ld, 1.0f, gw, kk);
        }
        if (gb)
            for (int o = 0; o < g->cout; o++) {
                double acc = 0;
                for (int i = 0; i < ld; i++) acc += dyg[(size_t)o * ld + i];
                gb[o] += (float)acc;
            }
        if (gx) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, ld, g->cout, 1.0f, w, kk, dyg, ld, 0.0f, col, ld);
            col2im(g, col, ld, nb, gx + (size_t)n0 * g->cin * g->h * g->w);
        }
    }
    return 0;
}

#endif
