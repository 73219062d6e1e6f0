/* Model `gmm`: the exact denoiser of a Gaussian-mixture data distribution in
 * D dimensions (weights, means, isotropic stds), the oracle teacher of the
 * fast tests and the quickstart. Under x_t = alpha_t x0 + sigma_t eps
 * (Imagine Flash eq. 1) the ideal predictions are the posterior means
 *   eps*(x, t) = sigma_t sum_k r_k(x) (x - alpha_t mu_k) / (alpha_t^2 s_k^2 + sigma_t^2)
 *   x0*(x, t)  = sum_k r_k(x) (mu_k + alpha_t s_k^2 (x - alpha_t mu_k) / (alpha_t^2 s_k^2 + sigma_t^2))
 * with r_k the responsibilities of the diffused components, and
 * v* = alpha_t eps* - sigma_t x0*; `prediction_type` picks which one the
 * model outputs. `classes: [c_0, ..., c_{K-1}]` assigns each component to a
 * class: label c conditions on the components of class c, the null class
 * (num_classes) on the whole mixture, so classifier-free guidance acts on
 * exact conditional and unconditional scores. `shape: [C, H, W]` presents
 * the D = C*H*W values of each point as an image, so image pipelines can be
 * tested against an exact teacher. Needs alpha_t and sigma_t in the
 * condition (the denoiser fills them). Host loops in double; on a device
 * the input is copied to the host and the output back through the tensor
 * API (the analytic teacher is small next to any network). */
#include "folder.h"

#include <stdlib.h>

#include "flash/diffusion.h"
#include "gmm_math.h"

typedef struct gmm_model {
    gmm_params g;
    flash_prediction pred;
    int ndim, shape[3]; /* (D) or (C, H, W) */
} gmm_model;

static const char *const gmm_keys[] = {"weights", "means", "stds", "classes", "prediction_type", "shape", NULL};

static void gmm_destroy(void *self) {
    gmm_model *m = self;
    if (!m) return;
    gmm_free(&m->g);
    free(m);
}

static flash_status gmm_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    (void)env;
    gmm_model *m = calloc(1, sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "model 'gmm': out of memory");
    int pred = FLASH_PRED_EPSILON;
    flash_status st = flash_cfg_enum(cfg, "prediction_type", flash_prediction_names, FLASH_PRED_EPSILON, &pred, err);
    if (!st) st = gmm_parse(cfg, "model 'gmm'", &m->g, err);
    if (st) {
        free(m);
        return st;
    }
    m->pred = (flash_prediction)pred;
    long shape[4];
    size_t ns = 0;
    if ((st = flash_cfg_ints(cfg, "shape", shape, 4, &ns, err))) {
        gmm_destroy(m);
        return st;
    }
    if (ns == 0) {
        m->ndim = 1;
        m->shape[0] = m->g.D;
    } else if (ns == 3 && shape[0] > 0 && shape[1] > 0 && shape[2] > 0 && shape[0] * shape[1] * shape[2] == m->g.D) {
        m->ndim = 3;
        for (int j = 0; j < 3; j++) m->shape[j] = (int)shape[j];
    } else {
        int d = m->g.D;
        gmm_destroy(m);
        return flash_cfg_error(flash_cfg_get(cfg, "shape"), err,
                               "model 'gmm': shape must be [C, H, W] with C*H*W = %d, the length of each mean", d);
    }
    *self = m;
    return FLASH_OK;
}

static void gmm_info(void *self, flash_model_info *out) {
    const gmm_model *m = self;
    *out = (flash_model_info){.ndim = m->ndim, .shape = {m->shape[0], m->shape[1], m->shape[2]},
                              .num_classes = m->g.num_classes, .prediction = m->pred, .out_dim = 0};
}

static flash_tensor *gmm_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond) {
    const gmm_model *m = self;
    if (!x) return NULL;
    const int D = m->g.D, K = m->g.K;
    int same = x->ndim == 1 + m->ndim;
    for (int j = 0; same && j < m->ndim; j++) same = x->shape[1 + j] == m->shape[j];
    if (!same) {
        char b[64];
        if (m->ndim == 1)
            flash_ctx_fail(c, "model 'gmm': input %s is not (N, %d)", flash_tensor_shape_str(x, b, sizeof b), D);
        else
            flash_ctx_fail(c, "model 'gmm': input %s is not (N, %d, %d, %d)", flash_tensor_shape_str(x, b, sizeof b),
                           m->shape[0], m->shape[1], m->shape[2]);
        return NULL;
    }
    const int n = x->shape[0];
    if (!cond || cond->n != n || !cond->alpha || !cond->sigma) {
        flash_ctx_fail(c, "model 'gmm': needs alpha_t and sigma_t for each of the %d samples", n);
        return NULL;
    }
    double *buf = malloc((size_t)(K + 3 * D) * sizeof *buf);
    float *xh = malloc(2 * x->numel * sizeof *xh), *yh = xh ? xh + x->numel : NULL;
    flash_error e = {0};
    if (!buf || !xh) {
        free(buf);
        free(xh);
        flash_ctx_fail(c, "model 'gmm': out of memory");
        return NULL;
    }
    if (flash_tensor_to_host(c, x, xh, &e)) {
        free(buf);
        free(xh);
        flash_ctx_fail(c, "model 'gmm': %s", e.msg);
        return NULL;
    }
    double *lr = buf, *xi = buf + K, *eps = xi + D, *x0 = eps + D;
    for (int i = 0; i < n; i++) {
        const double a = cond->alpha[i], s = cond->sigma[i];
        const int label = cond->labels ? cond->labels[i] : -1;
        for (int j = 0; j < D; j++) xi[j] = xh[(size_t)i * D + j];
        gmm_posterior(&m->g, xi, a, s, label, lr, eps, x0);
        float *o = yh + (size_t)i * D;
        for (int j = 0; j < D; j++) {
            switch (m->pred) {
            case FLASH_PRED_EPSILON:
                o[j] = (float)eps[j];
                break;
            case FLASH_PRED_V:
                o[j] = (float)(a * eps[j] - s * x0[j]);
                break;
            case FLASH_PRED_SAMPLE:
                o[j] = (float)x0[j];
                break;
            }
        }
    }
    free(buf);
    flash_tensor *y = flash_tensor_from(c, x->ndim, x->shape, yh);
    free(xh);
    return y;
}

static double gmm_log_density(void *self, const float *x, int label) {
    const gmm_model *m = self;
    double *buf = malloc((size_t)(m->g.K + m->g.D) * sizeof *buf);
    if (!buf) return NAN;
    double *lr = buf, *xi = buf + m->g.K;
    for (int j = 0; j < m->g.D; j++) xi[j] = x[j];
    double lp = gmm_log_resp(&m->g, xi, 1.0, 0.0, label, lr);
    free(buf);
    return lp;
}

FLASH_COMPONENT_TABLE(flash_model_api, gmm_model_api, FLASH_KIND_MODEL, "gmm",
                      "exact denoiser of a Gaussian mixture (weights, means, stds; classes for guidance)", gmm_keys,
                      gmm_create, gmm_destroy, .info = gmm_info, .forward = gmm_forward,
                      .log_density = gmm_log_density)
