/* A Gaussian mixture with isotropic components, shared by the `gmm` model
 * and the `gmm_nll` metric (header-only: plugins/common builds no library).
 *
 *   p(x0 | c) = sum_{k in c} w_k N(x0; mu_k, s_k^2 I) / sum_{k in c} w_k
 *
 * where the class c selects the components whose `classes` entry is c, and
 * the null class (c = num_classes, or no labels) selects them all. Diffused
 * to time t (x_t = alpha x0 + sigma eps, Imagine Flash eq. 1) each component
 * stays Gaussian: N(alpha mu_k, (alpha^2 s_k^2 + sigma^2) I), so the exact
 * posterior means are closed-form. Everything is in double. */
#ifndef FLASH_PLUGIN_GMM_MATH_H
#define FLASH_PLUGIN_GMM_MATH_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"

#define GMM_MAX_COMPONENTS 256
#define GMM_MAX_VALUES 65536

typedef struct gmm_params {
    int K, D;
    int num_classes;      /* 0 without `classes` */
    double *w;            /* (K) weights, normalised to sum 1 */
    double *mu;           /* (K, D) */
    double *s;            /* (K) stds */
    int *cls;             /* (K) class of each component, or NULL */
} gmm_params;

static inline void gmm_free(gmm_params *g) {
    if (!g) return;
    free(g->w);
    free(g->mu);
    free(g->s);
    free(g->cls);
    memset(g, 0, sizeof *g);
}

/* Reads weights, means, stds and classes from a config map. `what` names the
 * component in messages. */
static inline flash_status gmm_parse(const flash_cfg *cfg, const char *what, gmm_params *g, flash_error *err) {
    memset(g, 0, sizeof *g);
    double *w = malloc(GMM_MAX_COMPONENTS * sizeof *w), *s = malloc(GMM_MAX_COMPONENTS * sizeof *s);
    double *mu = malloc(GMM_MAX_VALUES * sizeof *mu);
    long *cls = malloc(GMM_MAX_COMPONENTS * sizeof *cls);
    size_t nw = 0, ns = 0, rows = 0, cols = 0, nc = 0;
    flash_status st = FLASH_OK;
    if (!w || !s || !mu || !cls) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", what);
        goto fail;
    }
    if ((st = flash_cfg_doubles(cfg, "weights", w, GMM_MAX_COMPONENTS, &nw, err)) ||
        (st = flash_cfg_matrix(cfg, "means", mu, GMM_MAX_VALUES, &rows, &cols, err)) ||
        (st = flash_cfg_doubles(cfg, "stds", s, GMM_MAX_COMPONENTS, &ns, err)) ||
        (st = flash_cfg_ints(cfg, "classes", cls, GMM_MAX_COMPONENTS, &nc, err)))
        goto fail;
    if (!flash_cfg_get(cfg, "means") || rows == 0 || cols == 0) {
        st = flash_cfg_error(cfg, err, "%s: needs `means`, a list of K points ([[x, y], ...])", what);
        goto fail;
    }
    if (nw == 0) { /* equal weights */
        nw = rows;
        for (size_t k = 0; k < nw; k++) w[k] = 1.0;
    }
    if (nw != rows || ns != rows || (nc && nc != rows)) {
        st = flash_cfg_error(cfg, err, "%s: %zu means but %zu weights, %zu stds%s", what, rows, nw, ns,
                             nc ? " and a different number of classes" : "");
        goto fail;
    }
    double sum = 0.0;
    for (size_t k = 0; k < rows; k++) {
        if (!(w[k] > 0.0) || !(s[k] > 0.0)) {
            st = flash_cfg_error(cfg, err, "%s: weights and stds must be > 0 (component %zu)", what, k);
            goto fail;
        }
        sum += w[k];
    }
    g->K = (int)rows;
    g->D = (int)cols;
    g->w = malloc(rows * sizeof *g->w);
    g->s = malloc(rows * sizeof *g->s);
    g->mu = malloc(rows * cols * sizeof *g->mu);
    if (nc) g->cls = malloc(rows * sizeof *g->cls);
    if (!g->w || !g->s || !g->mu || (nc && !g->cls)) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", what);
        goto fail;
    }
    for (size_t k = 0; k < rows; k++) {
        g->w[k] = w[k] / sum;
        g->s[k] = s[k];
        if (nc) {
            if (cls[k] < 0 || cls[k] >= GMM_MAX_COMPONENTS) {
                st = flash_cfg_error(flash_cfg_get(cfg, "classes"), err, "%s: class %ld of component %zu is not in "
                                     "[0, %d)", what, cls[k], k, GMM_MAX_COMPONENTS);
                goto fail;
            }
            g->cls[k] = (int)cls[k];
            if (g->cls[k] + 1 > g->num_classes) g->num_classes = g->cls[k] + 1;
        }
    }
    memcpy(g->mu, mu, rows * cols * sizeof *mu);
    for (int c = 0; c < g->num_classes; c++) {
        int any = 0;
        for (int k = 0; k < g->K; k++) any |= g->cls[k] == c;
        if (!any) {
            st = flash_cfg_error(flash_cfg_get(cfg, "classes"), err, "%s: class %d has no component", what, c);
            goto fail;
        }
    }
    free(w);
    free(s);
    free(mu);
    free(cls);
    return FLASH_OK;
fail:
    free(w);
    free(s);
    free(mu);
    free(cls);
    gmm_free(g);
    return st;
}

static inline int gmm_active(const gmm_params *g, int k, int label) {
    return !g->cls || label < 0 || label >= g->num_classes || g->cls[k] == label;
}

/* Log-responsibilities (unnormalised, into lr (K)) of x (D) at (a, sig) for
 * class label (-1: all); returns their log-sum-exp, the log-density of x_t. */
static inline double gmm_log_resp(const gmm_params *g, const double *x, double a, double sig, int label,
                                  double *lr) {
    double m = -INFINITY;
    double wsum = 0.0;
    for (int k = 0; k < g->K; k++)
        if (gmm_active(g, k, label)) wsum += g->w[k];
    for (int k = 0; k < g->K; k++) {
        if (!gmm_active(g, k, label)) {
            lr[k] = -INFINITY;
            continue;
        }
        double var = a * a * g->s[k] * g->s[k] + sig * sig, d2 = 0.0;
        for (int j = 0; j < g->D; j++) {
            double e = x[j] - a * g->mu[k * g->D + j];
            d2 += e * e;
        }
        lr[k] = log(g->w[k] / wsum) - 0.5 * g->D * log(2.0 * M_PI * var) - 0.5 * d2 / var;
        if (lr[k] > m) m = lr[k];
    }
    double z = 0.0;
    for (int k = 0; k < g->K; k++)
        if (lr[k] > -INFINITY) z += exp(lr[k] - m);
    return m + log(z);
}

/* Exact posterior means at x_t: eps* = E[eps | x_t] and x0* = E[x0 | x_t]:
 *   eps* = sigma sum_k r_k (x - alpha mu_k) / (alpha^2 s_k^2 + sigma^2)
 *   x0*  = sum_k r_k (mu_k + alpha s_k^2 (x - alpha mu_k) / (alpha^2 s_k^2 + sigma^2))
 * lr is scratch (K). */
static inline void gmm_posterior(const gmm_params *g, const double *x, double a, double sig, int label, double *lr,
                                 double *eps, double *x0) {
    double lz = gmm_log_resp(g, x, a, sig, label, lr);
    for (int j = 0; j < g->D; j++) eps[j] = x0[j] = 0.0;
    for (int k = 0; k < g->K; k++) {
        if (lr[k] == -INFINITY) continue;
        double r = exp(lr[k] - lz);
        double var = a * a * g->s[k] * g->s[k] + sig * sig;
        for (int j = 0; j < g->D; j++) {
            double e = x[j] - a * g->mu[k * g->D + j];
            eps[j] += r * sig * e / var;
            x0[j] += r * (g->mu[k * g->D + j] + a * g->s[k] * g->s[k] * e / var);
        }
    }
}

#endif
