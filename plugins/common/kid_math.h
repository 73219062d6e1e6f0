/* Kernel inception distance and per-class diversity, in a trained
 * evaluator's feature space (header-only, like fd_math.h; the unit tests
 * include it directly).
 *
 * KID (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018, section 4 and
 * appendix D): the unbiased estimate of the squared maximum mean
 * discrepancy with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
 *
 *   MMD^2 = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
 *           - 2/m^2 sum_{i,j} k(x_i, y_j),
 *
 * averaged over `subsets` random subsets of m samples of each set. Unlike
 * the Fréchet distance it has no bias that depends on the sample count, so
 * small sets can be compared with large ones.
 *
 * Per-class diversity: for each class, the spread of its samples' features
 * (the trace of their covariance, the mean squared distance to their mean)
 * over the same spread of the real examples of that class. 1 is real
 * data's diversity; a student that collapses modes within a class scores
 * below 1 even where its class-level statistics look right. */
#ifndef FLASH_PLUGIN_KID_MATH_H
#define FLASH_PLUGIN_KID_MATH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"

/* The unbiased MMD^2 of the rows ix[0..m) of x against the rows iy[0..m)
 * of y, both (., d), with the three kernel matrices from sgemm
 * (flash_linear on a CPU context c with room for them). Rows are gathered
 * into xs, ys (m, d); NaN when c fails. tests/unit/test_metrics_kid.c
 * checks it against plain loops. */
static inline double kid_mmd2_gemm(flash_ctx *c, const float *x, const long *ix, const float *y, const long *iy,
                                   long m, int d)
{
    flash_ctx_reset(c);
    flash_tensor *xs = flash_tensor_2d(c, (int)m, d), *ys = flash_tensor_2d(c, (int)m, d);
    if (!xs || !ys) return NAN;
    for (long i = 0; i < m; i++) {
        memcpy(xs->data + (size_t)i * d, x + (size_t)ix[i] * d, (size_t)d * sizeof(float));
        memcpy(ys->data + (size_t)i * d, y + (size_t)iy[i] * d, (size_t)d * sizeof(float));
    }
    flash_tensor *kxx = flash_linear(c, xs, xs, NULL), *kyy = flash_linear(c, ys, ys, NULL),
                 *kxy = flash_linear(c, xs, ys, NULL);
    if (!kxx || !kyy || !kxy || !flash_ctx_ok(c)) return NAN;
    double sxx = 0, syy = 0, sxy = 0;
    for (long i = 0; i < m; i++)
        for (long j = 0; j < m; j++) {
            const size_t k = (size_t)i * m + j;
            const double a = kxx->data[k] / (double)d + 1, b = kyy->data[k] / (double)d + 1,
                         e = kxy->data[k] / (double)d + 1;
            if (i != j) {
                sxx += a * a * a;
                syy += b * b * b;
            }
            sxy += e * e * e;
        }
    const double mm = (double)m;
    return (sxx + syy) / (mm * (mm - 1)) - 2.0 * sxy / (mm * mm);
}

/* A small deterministic generator for the subsets (splitmix64): the metric
 * is a function of its inputs and seed alone. */
static inline uint64_t kid_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* m distinct indices of [0, n) (a partial Fisher-Yates shuffle of perm,
 * which holds a permutation of [0, n) and stays one). */
static inline void kid_subset(long *perm, long n, long m, uint64_t *s)
{
    for (long i = 0; i < m; i++) {
        long j = i + (long)(kid_next(s) % (uint64_t)(n - i));
        long t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* KID of x (n, d) against y (r, d): the mean and standard deviation of the
 * MMD^2 over `subsets` subsets of m = min(subset_size, n, r) rows each.
 * Returns 0, or -1 when out of memory or m < 2. */
static inline int kid_compute(const float *x, long n, const float *y, long r, int d, int subsets, long subset_size,
                              uint64_t seed, double *mean, double *sd)
{
    /* sgemm for the kernel matrices: 3 m^2 floats and the two subsets */
    long m = subset_size;
    if (m > n) m = n;
    if (m > r) m = r;
    if (m < 2 || subsets < 1) return -1;
    long *px = malloc((size_t)n * sizeof *px), *py = malloc((size_t)r * sizeof *py);
    if (!px || !py) {
        free(px);
        free(py);
        return -1;
    }
    flash_ctx *c = flash_ctx_create((3 * (size_t)m * (size_t)m + 2 * (size_t)m * (size_t)d) * sizeof(float) +
                                    ((size_t)1 << 20));
    if (!c) {
        free(px);
        free(py);
        return -1;
    }
    flash_grad_set(c, false);
    for (long i = 0; i < n; i++) px[i] = i;
    for (long i = 0; i < r; i++) py[i] = i;
    uint64_t s = seed;
    double sum = 0, sq = 0;
    for (int k = 0; k < subsets; k++) {
        kid_subset(px, n, m, &s);
        kid_subset(py, r, m, &s);
        const double v = kid_mmd2_gemm(c, x, px, y, py, m, d);
        sum += v;
        sq += v * v;
    }
    flash_ctx_destroy(c);
    free(px);
    free(py);
    if (isnan(sum)) return -1;
    *mean = sum / subsets;
    *sd = subsets > 1 ? sqrt(fmax(0.0, (sq - sum * sum / subsets) / (subsets - 1))) : 0.0;
    return 0;
}

/* The trace of the covariance of the rows of x (., d) whose label is c:
 * the mean squared distance to their mean; *count gets their number. */
static inline double class_spread(const float *x, const int *labels, long n, int d, int c, long *count)
{
    double *mu = calloc((size_t)d, sizeof *mu);
    if (!mu) return NAN;
    long k = 0;
    for (long i = 0; i < n; i++)
        if (labels[i] == c) {
            for (int j = 0; j < d; j++) mu[j] += x[(size_t)i * d + j];
            k++;
        }
    *count = k;
    if (k < 2) {
        free(mu);
        return NAN;
    }
    for (int j = 0; j < d; j++) mu[j] /= (double)k;
    double s = 0;
    for (long i = 0; i < n; i++)
        if (labels[i] == c)
            for (int j = 0; j < d; j++) {
                const double e = x[(size_t)i * d + j] - mu[j];
                s += e * e;
            }
    free(mu);
    return s / (double)(k - 1);
}

#endif
