/* CPU kernels for group norm (optionally fused with SiLU), nearest 2x
 * upsampling and average pooling.
 *
 * Group norm: one task per (sample, group), OpenMP across tasks. Statistics
 * are sums of deviations from a first estimate of the mean (the group's
 * first element), so the variance does not cancel under a large common
 * offset. The
 * backward uses the closed form
 *   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
 *   dxhat = dy * gamma,
 * with both means accumulated in double. Per-(sample, channel) partial sums
 * for dgamma and dbeta go to scratch and are reduced over samples in index
 * order: deterministic for any thread count. Fused with SiLU, the backward
 * recomputes the pre-activation z from x and the statistics (in chunks that
 * stay in L1) instead of storing it.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor/backend_cpu_nn.h"
#include "tensor/cpu_math.h"
#include "tensor/tensor_internal.h"


/* Sums over a group go through chunks of GN_CHUNK elements: 64 float lanes
 * inside a chunk (four independent vector accumulators, so the loop is not
 * bound by the add latency; exact enough for 256 terms), the chunk totals
 * added in double, everything in a fixed order (deterministic). */
#define GN_CHUNK 256
#define GN_LANES 64

static inline float lanes_total(float a[GN_LANES]) {
    for (int l = 0; l < 16; l++) a[l] = (a[l] + a[l + 32]) + (a[l + 16] + a[l + 48]);
    for (int l = 0; l < 8; l++) a[l] += a[l + 8];
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* sum of d = x - m and of d^2 over x[0, len) */
static void sum_dev(const float *x, size_t len, float m, double *s1, double *s2) {
    double t1 = 0, t2 = 0;
    for (size_t j0 = 0; j0 < len; j0 += GN_CHUNK) {
        const size_t cl = len - j0 < GN_CHUNK ? len - j0 : GN_CHUNK;
        const float *xj = x + j0;
        float a[GN_LANES] = {0}, b[GN_LANES] = {0};
        size_t j = 0;
        for (; j + GN_LANES <= cl; j += GN_LANES)
            for (int l = 0; l < GN_LANES; l++) {
                const float d = xj[j + l] - m;
                a[l] += d;
                b[l] += d * d;
            }
        for (; j < cl; j++) {
            const float d = xj[j] - m;
            a[0] += d;
            b[0] += d * d;
        }
        t1 += lanes_total(a);
        t2 += lanes_total(b);
    }
    *s1 = t1;
    *s2 = t2;
}

/* sum of dz (x - m) and of dz over [0, len), len <= GN_CHUNK */
static void sum_dz(const float *dz, const float *x, int len, float m, double *sa, double *sb) {
    float a[GN_LANES] = {0}, b[GN_LANES] = {0};
    int j = 0;
    for (; j + GN_LANES <= len; j += GN_LANES)
        for (int l = 0; l < GN_LANES; l++) {
            a[l] += dz[j + l] * (x[j + l] - m);
            b[l] += dz[j + l];
        }
    for (; j < len; j++) {
        a[0] += dz[j] * (x[j] - m);
        b[0] += dz[j];
    }
    *sa += lanes_total(a);
    *sb += lanes_total(b);
}

/* Statistics of one group: the mean estimate m = the first element is
 * refined by the mean deviation from it, so the variance of data with a
 * large common offset does not cancel (both sums are of small deviations). */
static void group_stats(const float *xg, size_t gsize, float eps, double *mean, double *rstd) {
    const float m0 = xg[0];
    double s1, s2;
    sum_dev(xg, gsize, m0, &s1, &s2);
    const double dm = s1 / (double)gsize;
    double var = s2 / (double)gsize - dm * dm;
    if (var < 0) var = 0;
    *mean = (double)m0 + dm;
    *rstd = 1.0 / sqrt(var + (double)eps);
}

/* z = (x - m) sc + sh: the affine map of the forward, written around
 * m = (float)mean so that it stays accurate with a large common offset;
 * forward and backward compute it identically. */
typedef struct gn_affine {
    float m, sc, sh;
} gn_affine;

static inline gn_affine gn_affine_of(double mean, double rstd, const float *gamma, const float *beta, int cc) {
    gn_affine a;
    a.m = (float)mean;
    const double sc = rstd * (gamma ? gamma[cc] : 1.0f);
    a.sc = (float)sc;
    a.sh = (float)((beta ? beta[cc] : 0.0f) - (mean - (double)a.m) * sc);
    return a;
}

void flash_cpu_group_norm_forward(float *y, double *stats, const float *x, const float *gamma, const float *beta,
                                  int n, int c, int hw, int groups, float eps, bool silu) {
    const int cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw;
    const long long tasks = (long long)n * groups;
#pragma omp parallel for schedule(static) if ((size_t)tasks * gsize > FLASH_PAR_THRESHOLD && tasks > 1)
    for (long long t = 0; t < tasks; t++) {
        const int g = (int)(t % groups);
        const size_t base = ((size_t)(t / groups) * c + (size_t)g * cpg) * hw;
        double mean, rstd;
        group_stats(x + base, gsize, eps, &mean, &rstd);
        stats[2 * t] = mean;
        stats[2 * t + 1] = rstd;
        for (int ch = 0; ch < cpg; ch++) {
            const gn_affine a = gn_affine_of(mean, rstd, gamma, beta, g * cpg + ch);
            const float *xc = x + base + (size_t)ch * hw;
            float *yc = y + base + (size_t)ch * hw;
            if (silu)
                for (int j = 0; j < hw; j++) {
                    const float z = (xc[j] - a.m) * a.sc + a.sh;
                    yc[j] = z * flash_cpu_sigmoid(z);
                }
            else
                for (int j = 0; j < hw; j++) yc[j] = (xc[j] - a.m) * a.sc + a.sh;
        }
    }
}

/* dz = d silu(z) / dz * gy with z recomputed as in the forward */
static inline void silu_grad(float *dz, const float *gy, const float *x, gn_affine a, int len) {
    for (int j = 0; j < len; j++) {
        const float z = (x[j] - a.m) * a.sc + a.sh, s = flash_cpu_sigmoid(z);
        dz[j] = gy[j] * s * (1.0f + z * (1.0f - s));
    }
}

/* Each thread's buffer for one channel's dz (the SiLU backward), kept so
 * that the second pass reads it instead of recomputing exp; grows to the
 * largest H x W seen. */
static _Thread_local struct {
    float *p;
    size_t cap;
} t_dz;

static float *dz_buffer(size_t n) {
    if (t_dz.p && t_dz.cap >= n) return t_dz.p;
    float *q = flash_cpu_backend.alloc(n * sizeof(float));
    if (!q) return NULL;
    flash_cpu_backend.free(t_dz.p);
    t_dz.p = q;
    t_dz.cap = n;
    return q;
}

void flash_cpu_group_norm_backward(float *gx, float *ggamma, float *gbeta, const float *gy, const float *x,
                                   const double *stats, const float *gamma, const float *beta, int n, int c, int hw,
                                   int groups, bool silu, double *scratch) {
    const int cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw;
    const long long tasks = (long long)n * groups;
    /* scratch: per (sample, channel) sum(dz * xhat) and sum(dz), dz being
     * the gradient at the norm's output (gy itself without silu) */
    double *pg = scratch, *pb = scratch + (size_t)n * c;
#pragma omp parallel for schedule(static) if ((size_t)tasks * gsize > FLASH_PAR_THRESHOLD && tasks > 1)
    for (long long t = 0; t < tasks; t++) {
        const int s = (int)(t / groups), g = (int)(t % groups);
        const size_t base = ((size_t)s * c + (size_t)g * cpg) * hw;
        const double mean = stats[2 * t], rstd = stats[2 * t + 1];
        /* the group's dz, when it fits the thread's buffer; else recomputed */
        float *dzg = silu ? dz_buffer(gsize) : NULL;
        float buf[GN_CHUNK];
        double sum_dxhat = 0, sum_dxhat_xhat = 0;
        gn_affine af[64];
        for (int ch = 0; ch < cpg; ch++) {
            const int cc = g * cpg + ch;
            const float *xc = x + base + (size_t)ch * hw, *gc = gy + base + (size_t)ch * hw;
            const gn_affine a = gn_affine_of(mean, rstd, gamma, beta, cc);
            if (ch < 64) af[ch] = a;
            /* sum(dz xhat) = rstd (sum(dz (x - m)) - (mean - m) sum(dz)) */
            double sa = 0, sb = 0;
            for (int j0 = 0; j0 < hw; j0 += GN_CHUNK) {
                const int len = hw - j0 < GN_CHUNK ? hw - j0 : GN_CHUNK;
                const float *dz = gc + j0;
                if (silu) {
                    float *dst = dzg ? dzg + (size_t)ch * hw + j0 : buf;
                    silu_grad(dst, gc + j0, xc + j0, a, len);
                    dz = dst;
                }
                sum_dz(dz, xc + j0, len, a.m, &sa, &sb);
            }
            const double dyxhat = rstd * (sa - (mean - (double)a.m) * sb);
            pg[(size_t)s * c + cc] = dyxhat;
            pb[(size_t)s * c + cc] = sb;
            const double gm = gamma ? gamma[cc] : 1.0;
            sum_dxhat += gm * sb;
            sum_dxhat_xhat += gm * dyxhat;
        }
        if (!gx) continue;
        const double m1 = sum_dxhat / (double)gsize, m2 = sum_dxhat_xhat / (double)gsize;
        for (int ch = 0; ch < cpg; ch++) {
            const int cc = g * cpg + ch;
            const float *xc = x + base + (size_t)ch * hw, *gc = gy + base + (size_t)ch * hw;
            float *dc = gx + base + (size_t)ch * hw;
            const gn_affine a = ch < 64 ? af[ch] : gn_affine_of(mean, rstd, gamma, beta, cc);
            /* dx = rstd (gamma dz - m1 - (x - mean) rstd m2)
             *    = ka dz + kb (x - m) + kc,  x - mean = (x - m) - (mean - m) */
            const float ka = (float)(rstd * (gamma ? gamma[cc] : 1.0));
            const float kb = (float)(-rstd * rstd * m2);
            const float kc = (float)(rstd * ((mean - (double)a.m) * rstd * m2 - m1));
            for (int j0 = 0; j0 < hw; j0 += GN_CHUNK) {
                const int len = hw - j0 < GN_CHUNK ? hw - j0 : GN_CHUNK;
                const float *dz = gc + j0, *xj = xc + j0;
                if (silu) {
                    if (dzg) {
                        dz = dzg + (size_t)ch * hw + j0;
                    } else {
                        silu_grad(buf, gc + j0, xj, a, len);
                        dz = buf;
                    }
                }
                float *dj = dc + j0;
                for (int j = 0; j < len; j++) dj[j] += ka * dz[j] + kb * (xj[j] - a.m) + kc;
            }
        }
    }
    if (ggamma || gbeta)
        for (int cc = 0; cc < c; cc++) {
            double sg = 0, sb = 0;
            for (int s = 0; s < n; s++) {
                sg += pg[(size_t)s * c + cc];
                sb += pb[(size_t)s * c + cc];
            }
            if (ggamma) ggamma[cc] += (float)sg;
            if (gbeta) gbeta[cc] += (float)sb;
        }
}

void flash_cpu_upsample2x(float *y, const float *x, int nc, int h, int w) {
    const int wo = 2 * w;
#pragma omp parallel for schedule(static) if ((size_t)nc * h * w > FLASH_PAR_THRESHOLD / 4)
    for (int p = 0; p < nc; p++) {
        const float *xp = x + (size_t)p * h * w;
        float *yp = y + (size_t)p * 4 * h * w;
        for (int i = 0; i < h; i++) {
            float *r0 = yp + (size_t)(2 * i) * wo;
            for (int j = 0; j < w; j++) r0[2 * j] = r0[2 * j + 1] = xp[(size_t)i * w + j];
            memcpy(r0 + wo, r0, sizeof(float) * (size_t)wo);
        }
    }
}

void flash_cpu_upsample2x_backward(float *gx, const float *gy, int nc, int h, int w) {
    const int wo = 2 * w;
#pragma omp parallel for schedule(static) if ((size_t)nc * h * w > FLASH_PAR_THRESHOLD / 4)
    for (int p = 0; p < nc; p++) {
        float *gp = gx + (size_t)p * h * w;
        const float *yp = gy + (size_t)p * 4 * h * w;
        for (int i = 0; i < h; i++) {
            const float *r0 = yp + (size_t)(2 * i) * wo, *r1 = r0 + wo;
            for (int j = 0; j < w; j++) gp[(size_t)i * w + j] += (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
        }
    }
}

/* k x k windows with stride k; h and w are multiples of k. */
void flash_cpu_avg_pool2d(float *y, const float *x, int nc, int h, int w, int k) {
    const int ho = h / k, wo = w / k;
    const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static) if ((size_t)nc * h * w > FLASH_PAR_THRESHOLD)
    for (int p = 0; p < nc; p++) {
        const float *xp = x + (size_t)p * h * w;
        float *yp = y + (size_t)p * ho * wo;
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                double acc = 0;
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) acc += xp[(size_t)(i * k + a) * w + j * k + b];
                yp[(size_t)i * wo + j] = (float)acc * inv;
            }
    }
}

void flash_cpu_avg_pool2d_backward(float *gx, const float *gy, int nc, int h, int w, int k) {
    const int ho = h / k, wo = w / k;
    const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static) if ((size_t)nc * h * w > FLASH_PAR_THRESHOLD)
    for (int p = 0; p < nc; p++) {
        float *gp = gx + (size_t)p * h * w;
        const float *yp = gy + (size_t)p * ho * wo;
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) gp[(size_t)i * w + j] += yp[(size_t)(i / k) * wo + j / k] * inv;
    }
}
