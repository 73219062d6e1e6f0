/* CPU kernels for group norm, nearest 2x upsampling and average pooling.
 *
 * Group norm: one task per (sample, group), OpenMP across tasks. Statistics
 * are two-pass in double (a group of unet-s is at most 4 x 784 floats, in
 * cache for the second pass), so the variance does not cancel. The
 * backward uses the closed form
 *   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
 *   dxhat = dy * gamma,
 * with both means accumulated in double. Per-(sample, channel) partial sums
 * for dgamma and dbeta go to scratch and are reduced over samples in index
 * order: deterministic for any thread count.
 */
#include <math.h>
#include <string.h>

#include "backend_cpu_nn.h"
#include "tensor_internal.h"

void flash_cpu_group_norm_forward(float *y, double *stats, const float *x, const float *gamma, const float *beta,
                                  int n, int c, int hw, int groups, float eps) {
    const int cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw;
    const long long tasks = (long long)n * groups;
#pragma omp parallel for schedule(static) if ((size_t)tasks * gsize > FLASH_PAR_THRESHOLD && tasks > 1)
    for (long long t = 0; t < tasks; t++) {
        const int s = (int)(t / groups), g = (int)(t % groups);
        const size_t base = ((size_t)s * c + (size_t)g * cpg) * hw;
        const float *xg = x + base;
        double acc[8] = {0};
        size_t i = 0;
        for (; i + 8 <= gsize; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += xg[i + l];
        for (; i < gsize; i++) acc[0] += xg[i];
        double mean = (((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))) / (double)gsize;
        double sq[8] = {0};
        i = 0;
        for (; i + 8 <= gsize; i += 8)
            for (int l = 0; l < 8; l++) {
                double d = xg[i + l] - mean;
                sq[l] += d * d;
            }
        for (; i < gsize; i++) {
            double d = xg[i] - mean;
            sq[0] += d * d;
        }
        double var = (((sq[0] + sq[4]) + (sq[2] + sq[6])) + ((sq[1] + sq[5]) + (sq[3] + sq[7]))) / (double)gsize;
        double rstd = 1.0 / sqrt(var + (double)eps);
        stats[2 * t] = mean;
        stats[2 * t + 1] = rstd;
        const float fm = (float)mean, fr = (float)rstd;
        for (int ch = 0; ch < cpg; ch++) {
            const int cc = g * cpg + ch;
            const float sc = fr * (gamma ? gamma[cc] : 1.0f);
            const float sh = (beta ? beta[cc] : 0.0f) - fm * sc;
            const float *xc = xg + (size_t)ch * hw;
            float *yc = y + base + (size_t)ch * hw;
            for (int j = 0; j < hw; j++) yc[j] = xc[j] * sc + sh;
        }
    }
}

void flash_cpu_group_norm_backward(float *gx, float *ggamma, float *gbeta, const float *gy, const float *x,
                                   const double *stats, const float *gamma, int n, int c, int hw, int groups,
                                   double *scratch) {
    const int cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw;
    const long long tasks = (long long)n * groups;
    /* scratch: per (sample, channel) sum(dy * xhat) and sum(dy) */
    double *pg = scratch, *pb = scratch + (size_t)n * c;
#pragma omp parallel for schedule(static) if ((size_t)tasks * gsize > FLASH_PAR_THRESHOLD && tasks > 1)
    for (long long t = 0; t < tasks; t++) {
        const int s = (int)(t / groups), g = (int)(t % groups);
        const size_t base = ((size_t)s * c + (size_t)g * cpg) * hw;
        const double mean = stats[2 * t], rstd = stats[2 * t + 1];
        /* per channel: a = sum(dy * x), b = sum(dy), giving
         * sum(dy * xhat) = rstd * (a - mean * b) */
        double sum_dxhat = 0, sum_dxhat_xhat = 0;
        for (int ch = 0; ch < cpg; ch++) {
            const int cc = g * cpg + ch;
            const float *xc = x + base + (size_t)ch * hw, *gc = gy + base + (size_t)ch * hw;
            double a[8] = {0}, b[8] = {0};
            int j = 0;
            for (; j + 8 <= hw; j += 8)
                for (int l = 0; l < 8; l++) {
                    a[l] += (double)gc[j + l] * xc[j + l];
                    b[l] += gc[j + l];
                }
            for (; j < hw; j++) {
                a[0] += (double)gc[j] * xc[j];
                b[0] += gc[j];
            }
            double sa = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
            double sb = ((b[0] + b[4]) + (b[2] + b[6])) + ((b[1] + b[5]) + (b[3] + b[7]));
            double dyxhat = rstd * (sa - mean * sb);
            pg[(size_t)s * c + cc] = dyxhat;
            pb[(size_t)s * c + cc] = sb;
            double gm = gamma ? gamma[cc] : 1.0;
            sum_dxhat += gm * sb;
            sum_dxhat_xhat += gm * dyxhat;
        }
        if (!gx) continue;
        const double m1 = sum_dxhat / (double)gsize, m2 = sum_dxhat_xhat / (double)gsize;
        for (int ch = 0; ch < cpg; ch++) {
            const int cc = g * cpg + ch;
            const float *xc = x + base + (size_t)ch * hw, *gc = gy + base + (size_t)ch * hw;
            float *dc = gx + base + (size_t)ch * hw;
            /* dx = rstd * (gamma dy - m1 - (x - mean) rstd m2), as a*dy + b*x + c */
            const float ka = (float)(rstd * (gamma ? gamma[cc] : 1.0));
            const float kb = (float)(-rstd * rstd * m2);
            const float kc = (float)(rstd * (mean * rstd * m2 - m1));
            for (int j = 0; j < hw; j++) dc[j] += ka * gc[j] + kb * xc[j] + kc;
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
