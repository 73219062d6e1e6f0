/* Metric `gmm_nll`: the exact negative log-likelihood of samples under a
 * Gaussian mixture given in the metric's config (weights, means, stds and
 * optionally classes, the same keys as the `gmm` model), in nats per sample:
 *   nll = -(1/N) sum_i log p(x_i)
 * With class labels and `classes`, each sample is scored under its class's
 * mixture (the null class: the whole mixture); `conditional: false` scores
 * every sample under the whole mixture. Also reports the data's own
 * expected NLL (its differential entropy, estimated from `reference_samples`
 * draws with `seed`) so the gap is readable: a perfect sampler's nll matches
 * it up to sampling noise. */
#include "folder.h"

#include <stdlib.h>

#include "gmm_math.h"

typedef struct gmm_nll {
    gmm_params g;
    bool conditional;
    double entropy; /* -E_p log p, Monte Carlo */
} gmm_nll;

static const char *const nll_keys[] = {"weights", "means", "stds", "classes", "conditional",
                                       "reference_samples", "seed", NULL};

static void nll_destroy(void *self) {
    gmm_nll *m = self;
    if (!m) return;
    gmm_free(&m->g);
    free(m);
}

/* -E log p(x) over n draws from the whole mixture. */
static double mc_entropy(const gmm_params *g, long n, uint64_t seed, double *lr, double *x) {
    flash_rng r;
    flash_rng_seed(&r, seed);
    double acc = 0;
    for (long i = 0; i < n; i++) {
        double u = flash_rng_uniform(&r), cum = 0;
        int k = g->K - 1;
        for (int j = 0; j < g->K; j++) {
            cum += g->w[j];
            if (u < cum) {
                k = j;
                break;
            }
        }
        for (int d = 0; d < g->D; d++) x[d] = g->mu[k * g->D + d] + g->s[k] * flash_rng_normal(&r);
        acc -= gmm_log_resp(g, x, 1.0, 0.0, -1, lr);
    }
    return acc / (double)n;
}

static flash_status nll_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    (void)env;
    gmm_nll *m = calloc(1, sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'gmm_nll': out of memory");
    long nref = 20000, seed = 0;
    flash_status st;
    if ((st = flash_cfg_bool(cfg, "conditional", true, &m->conditional, err)) ||
        (st = flash_cfg_int(cfg, "reference_samples", 20000, &nref, err)) ||
        (st = flash_cfg_int(cfg, "seed", 0, &seed, err))) {
        free(m);
        return st;
    }
    if (nref < 1) {
        free(m);
        return flash_cfg_error(flash_cfg_get(cfg, "reference_samples"), err,
                               "metric 'gmm_nll': reference_samples must be >= 1");
    }
    if ((st = gmm_parse(cfg, "metric 'gmm_nll'", &m->g, err))) {
        free(m);
        return st;
    }
    double *buf = malloc((size_t)(m->g.K + m->g.D) * sizeof *buf);
    if (!buf) {
        nll_destroy(m);
        return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'gmm_nll': out of memory");
    }
    m->entropy = mc_entropy(&m->g, nref, (uint64_t)seed, buf, buf + m->g.K);
    free(buf);
    *self = m;
    return FLASH_OK;
}

static flash_status nll_compute(void *self, flash_ctx *c, const flash_tensor *samples, const int *labels,
                                flash_metric_result *out, flash_error *err) {
    (void)c;
    const gmm_nll *m = self;
    if (!samples || samples->ndim < 1 || samples->shape[0] < 1)
        return flash_error_set(err, FLASH_ERR_USAGE, "metric 'gmm_nll': no samples");
    const int64_t n = samples->shape[0];
    if ((int64_t)samples->numel != n * m->g.D)
        return flash_error_set(err, FLASH_ERR_USAGE, "metric 'gmm_nll': samples have %lld values each, the mixture %d",
                               (long long)(samples->numel / (size_t)n), m->g.D);
    double *buf = malloc((size_t)(m->g.K + m->g.D) * sizeof *buf);
    if (!buf) return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'gmm_nll': out of memory");
    double *lr = buf, *x = buf + m->g.K, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int d = 0; d < m->g.D; d++) x[d] = samples->data[i * m->g.D + d];
        int label = (m->conditional && labels && m->g.cls) ? labels[i] : -1;
        acc -= gmm_log_resp(&m->g, x, 1.0, 0.0, label, lr);
    }
    free(buf);
    flash_metric_result_add(out, "gmm_nll", acc / (double)n);
    flash_metric_result_add(out, "gmm_entropy", m->entropy);
    return FLASH_OK;
}

FLASH_COMPONENT_TABLE(flash_metric_api, gmm_nll_metric, FLASH_KIND_METRIC, "gmm_nll",
                      "exact negative log-likelihood (nats/sample) under a Gaussian mixture given in the config",
                      nll_keys, nll_create, nll_destroy, .compute = nll_compute)
