/* Model `mlp_discriminator`: the discriminator of the adversarial loss for
 * low-dimensional data (the 2-D quickstart): an MLP with LeakyReLU(0.2)
 * (the usual GAN discriminator activation, Radford et al. 2016) mapping a
 * clean sample x (N, dim) to one logit (N, 1). With num_classes > 0 it is
 * a projection discriminator (Miyato & Koyama 2018):
 * logit = psi(h) + <E[y], h>, so real and generated samples are judged per
 * class. Keys: dim (2), hidden (128), layers (3), num_classes (0), seed. */
#include "folder.h"

#include <stdio.h>
#include <stdlib.h>

#define MD_MAX_LAYERS 8

typedef struct mdisc {
    int dim, hidden, layers, num_classes;
    flash_params *p;
    flash_tensor *w[MD_MAX_LAYERS], *b[MD_MAX_LAYERS], *w_out, *b_out, *emb;
} mdisc;

static const char *const keys[] = {"dim", "hidden", "layers", "num_classes", "seed", NULL};

static void md_destroy(void *self)
{
    mdisc *m = self;
    if (!m) return;
    flash_params_destroy(m->p);
    free(m);
}

static flash_status md_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long dim, hidden, layers, ncls, seed;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "dim", 2, &dim, err)) || (st = flash_cfg_int(cfg, "hidden", 128, &hidden, err)) ||
        (st = flash_cfg_int(cfg, "layers", 3, &layers, err)) ||
        (st = flash_cfg_int(cfg, "num_classes", 0, &ncls, err)) ||
        (st = flash_cfg_int(cfg, "seed", env ? (long)env->seed : 0, &seed, err)))
        return st;
    if (dim < 1 || dim > 4096 || hidden < 1 || hidden > 65536 || layers < 1 || layers > MD_MAX_LAYERS || ncls < 0)
        return flash_cfg_error(cfg, err, "model 'mlp_discriminator': need dim in [1, 4096], hidden in [1, 65536], "
                                         "layers in [1, %d], num_classes >= 0", MD_MAX_LAYERS);
    mdisc *m = calloc(1, sizeof *m);
    if (!m || !(m->p = flash_params_create())) {
        free(m);
        return flash_error_set(err, FLASH_ERR_NOMEM, "model 'mlp_discriminator': out of memory");
    }
    m->dim = (int)dim, m->hidden = (int)hidden, m->layers = (int)layers, m->num_classes = (int)ncls;
    int ok = 1;
    for (int k = 0; k < m->layers && ok; k++) {
        char name[64];
        int fin = k == 0 ? m->dim : m->hidden;
        snprintf(name, sizeof name, "layer%d.weight", k);
        m->w[k] = flash_params_add(m->p, name, 2, (int[]){m->hidden, fin});
        snprintf(name, sizeof name, "layer%d.bias", k);
        m->b[k] = flash_params_add(m->p, name, 1, (int[]){m->hidden});
        ok = m->w[k] && m->b[k];
    }
    if (ok) {
        m->w_out = flash_params_add(m->p, "out.weight", 2, (int[]){1, m->hidden});
        m->b_out = flash_params_add(m->p, "out.bias", 1, (int[]){1});
        if (m->num_classes > 0) m->emb = flash_params_add(m->p, "class.embedding", 2, (int[]){m->num_classes + 1, m->hidden});
        ok = m->w_out && m->b_out && (m->num_classes == 0 || m->emb);
    }
    if (!ok) {
        md_destroy(m);
        return flash_error_set(err, FLASH_ERR_NOMEM, "model 'mlp_discriminator': out of memory");
    }
    if ((st = flash_params_finalize(m->p, err))) {
        md_destroy(m);
        return st;
    }
    flash_rng r;
    flash_rng_seed_stream(&r, (uint64_t)seed, 0xd15c);
    for (int k = 0; k < m->layers; k++) {
        int fin = k == 0 ? m->dim : m->hidden;
        flash_init_fan_in(m->w[k], &r, fin);
        flash_init_fan_in(m->b[k], &r, fin);
    }
    flash_init_fan_in(m->w_out, &r, m->hidden);
    flash_init_fan_in(m->b_out, &r, m->hidden);
    if (m->emb) flash_init_normal(m->emb, &r, 0.02f);
    *self = m;
    return FLASH_OK;
}

static void md_info(void *self, flash_model_info *out)
{
    const mdisc *m = self;
    *out = (flash_model_info){.ndim = 1, .shape = {m->dim, 0, 0}, .num_classes = m->num_classes,
                              .prediction = FLASH_PRED_SAMPLE, .out_dim = 1};
}

static flash_params *md_params(void *self) { return ((mdisc *)self)->p; }

static flash_tensor *md_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond)
{
    mdisc *m = self;
    if (!x) return NULL;
    if (x->ndim != 2 || x->shape[1] != m->dim) {
        char b[64];
        flash_ctx_fail(c, "model 'mlp_discriminator': input %s is not (N, %d)", flash_tensor_shape_str(x, b, sizeof b),
                       m->dim);
        return NULL;
    }
    flash_tensor *h = x;
    for (int k = 0; k < m->layers; k++) h = flash_leaky_relu(c, flash_linear(c, h, m->w[k], m->b[k]), 0.2f);
    flash_tensor *logit = flash_linear(c, h, m->w_out, m->b_out);
    if (m->num_classes > 0 && cond && cond->labels) {
        const int n = x->shape[0];
        for (int i = 0; i < n; i++)
            if (cond->labels[i] < 0 || cond->labels[i] > m->num_classes) {
                flash_ctx_fail(c, "model 'mlp_discriminator': label %d outside [0, %d]", cond->labels[i],
                               m->num_classes);
                return NULL;
            }
        /* projection term <E[y], h> */
        flash_tensor *proj = flash_sum_per_sample(c, flash_mul(c, flash_embedding(c, m->emb, cond->labels, n), h));
        logit = flash_add(c, logit, flash_reshape(c, proj, 2, (int[]){n, 1}));
    }
    return logit;
}

FLASH_COMPONENT_TABLE(flash_model_api, md_api, FLASH_KIND_MODEL, "mlp_discriminator",
                      "GAN discriminator for low-dimensional data: LeakyReLU MLP, optional class projection", keys,
                      md_create, md_destroy, .info = md_info, .params = md_params, .forward = md_forward)
