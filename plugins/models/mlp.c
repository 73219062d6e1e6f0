/* Model `mlp`: a small trainable denoiser for low-dimensional data (the 2-D
 * toy problems), used as a teacher trained from data and as a distillation
 * student. Its output is the prediction type's target (epsilon, v or
 * sample; Imagine Flash eq. 5 converts between them).
 *
 *   temb = SiLU(W_t sinusoid(t))                         (DDPM's timestep embedding)
 *   h    = W_in x + temb [+ E[label]]                    (E has num_classes + 1 rows; the last is the null class)
 *   h    = SiLU(W_k h + b_k), k = 1..layers
 *   out  = W_out h + b_out
 *
 * Keys: dim (2), hidden (128), layers (3), time_dim (64), num_classes (0),
 * prediction_type (epsilon), seed (the run's seed) for the initialisation
 * (PyTorch's default, U(+-1/sqrt(fan_in))), guidance_embed (false): a
 * guidance-conditioned student (model.h), whose sinusoid(t) gains
 * G sinusoid(1000 w), G zero at first (guidance_input.h). */
#include "folder.h"
#include "guidance_input.h"

#include <stdio.h>
#include <stdlib.h>

#include "flash/diffusion.h"

#define MLP_MAX_LAYERS 16

typedef struct mlp {
    int dim, hidden, layers, time_dim, num_classes;
    flash_prediction pred;
    flash_params *p;
    flash_tensor *w_t, *b_t, *w_in, *b_in, *emb;
    flash_tensor *w[MLP_MAX_LAYERS], *b[MLP_MAX_LAYERS];
    flash_tensor *w_out, *b_out;
    int *null_labels; /* num_classes repeated, for unconditional calls */
    int null_cap;
    guidance_input guidance;
} mlp;

static const char *const mlp_keys[] = {"dim", "hidden", "layers", "time_dim", "num_classes", "prediction_type",
                                       "seed", "guidance_embed", NULL};

static void mlp_destroy(void *self) {
    mlp *m = self;
    if (!m) return;
    flash_params_destroy(m->p);
    free(m->null_labels);
    guidance_input_free(&m->guidance);
    free(m);
}

static flash_status int_key(const flash_cfg *cfg, const char *key, long def, long lo, long hi, long *out,
                            flash_error *err) {
    flash_status st = flash_cfg_int(cfg, key, def, out, err);
    if (st) return st;
    if (*out < lo || *out > hi)
        return flash_cfg_error(flash_cfg_get(cfg, key), err, "model 'mlp': %s must be in [%ld, %ld]", key, lo, hi);
    return FLASH_OK;
}

static flash_status mlp_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    long dim, hidden, layers, tdim, ncls, seed;
    int pred = FLASH_PRED_EPSILON;
    flash_status st;
    if ((st = int_key(cfg, "dim", 2, 1, 4096, &dim, err)) || (st = int_key(cfg, "hidden", 128, 1, 65536, &hidden, err)) ||
        (st = int_key(cfg, "layers", 3, 1, MLP_MAX_LAYERS, &layers, err)) ||
        (st = int_key(cfg, "time_dim", 64, 2, 4096, &tdim, err)) ||
        (st = int_key(cfg, "num_classes", 0, 0, 100000, &ncls, err)) ||
        (st = flash_cfg_enum(cfg, "prediction_type", flash_prediction_names, FLASH_PRED_EPSILON, &pred, err)) ||
        (st = flash_cfg_int(cfg, "seed", env ? (long)env->seed : 0, &seed, err)))
        return st;
    bool guided = false;
    if ((st = flash_cfg_bool(cfg, "guidance_embed", false, &guided, err))) return st;
    if (tdim % 2)
        return flash_cfg_error(flash_cfg_get(cfg, "time_dim"), err, "model 'mlp': time_dim must be even");
    mlp *m = calloc(1, sizeof *m);
    if (!m || !(m->p = flash_params_create())) {
        free(m);
        return flash_error_set(err, FLASH_ERR_NOMEM, "model 'mlp': out of memory");
    }
    m->dim = (int)dim;
    m->hidden = (int)hidden;
    m->layers = (int)layers;
    m->time_dim = (int)tdim;
    m->num_classes = (int)ncls;
    m->pred = (flash_prediction)pred;
    const int H = m->hidden;
    m->w_t = flash_params_add(m->p, "time.weight", 2, (int[]){H, m->time_dim});
    m->b_t = flash_params_add(m->p, "time.bias", 1, (int[]){H});
    m->w_in = flash_params_add(m->p, "in.weight", 2, (int[]){H, m->dim});
    m->b_in = flash_params_add(m->p, "in.bias", 1, (int[]){H});
    if (m->num_classes > 0) m->emb = flash_params_add(m->p, "class.embedding", 2, (int[]){m->num_classes + 1, H});
    int ok = m->w_t && m->b_t && m->w_in && m->b_in && (m->num_classes == 0 || m->emb);
    for (int k = 0; k < m->layers && ok; k++) {
        char name[64];
        snprintf(name, sizeof name, "hidden%d.weight", k);
        m->w[k] = flash_params_add(m->p, name, 2, (int[]){H, H});
        snprintf(name, sizeof name, "hidden%d.bias", k);
        m->b[k] = flash_params_add(m->p, name, 1, (int[]){H});
        ok = m->w[k] && m->b[k];
    }
    if (ok) {
        m->w_out = flash_params_add(m->p, "out.weight", 2, (int[]){m->dim, H});
        m->b_out = flash_params_add(m->p, "out.bias", 1, (int[]){m->dim});
        ok = m->w_out && m->b_out;
    }
    if (ok && guided) ok = guidance_input_declare(&m->guidance, m->p, m->time_dim);
    if (!ok) {
        mlp_destroy(m);
        return flash_error_set(err, FLASH_ERR_NOMEM, "model 'mlp': out of memory declaring parameters");
    }
    if ((st = flash_params_finalize(m->p, err))) {
        mlp_destroy(m);
        return st;
    }
    flash_rng r;
    flash_rng_seed_stream(&r, (uint64_t)seed, 0x31f);
    flash_init_fan_in(m->w_t, &r, m->time_dim);
    flash_init_fan_in(m->b_t, &r, m->time_dim);
    flash_init_fan_in(m->w_in, &r, m->dim);
    flash_init_fan_in(m->b_in, &r, m->dim);
    if (m->emb) flash_init_normal(m->emb, &r, 1.0f);
    for (int k = 0; k < m->layers; k++) {
        flash_init_fan_in(m->w[k], &r, H);
        flash_init_fan_in(m->b[k], &r, H);
    }
    flash_init_fan_in(m->w_out, &r, H);
    flash_init_fan_in(m->b_out, &r, H);
    guidance_input_init(&m->guidance);
    *self = m;
    return FLASH_OK;
}

static void mlp_info(void *self, flash_model_info *out) {
    const mlp *m = self;
    *out = (flash_model_info){.ndim = 1, .shape = {m->dim, 0, 0}, .num_classes = m->num_classes,
                              .prediction = m->pred, .out_dim = 0};
}

static flash_params *mlp_params(void *self) { return ((mlp *)self)->p; }

static flash_tensor *mlp_forward_guided(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond,
                                        const float *w) {
    mlp *m = self;
    if (!x) return NULL;
    if (x->ndim != 2 || x->shape[1] != m->dim) {
        char b[64];
        flash_ctx_fail(c, "model 'mlp': input %s is not (N, %d)", flash_tensor_shape_str(x, b, sizeof b), m->dim);
        return NULL;
    }
    const int n = x->shape[0];
    if (!cond || cond->n != n || !cond->t) {
        flash_ctx_fail(c, "model 'mlp': needs a timestep for each of the %d samples", n);
        return NULL;
    }
    flash_tensor *tsin = flash_timestep_embedding(c, cond->t, n, m->time_dim, 10000.0f);
    tsin = guidance_input_add(&m->guidance, c, tsin, w, n, m->time_dim, 10000.0f);
    flash_tensor *temb = flash_silu(c, flash_linear(c, tsin, m->w_t, m->b_t));
    flash_tensor *h = flash_add(c, flash_linear(c, x, m->w_in, m->b_in), temb);
    if (m->num_classes > 0) {
        const int *labels = cond->labels;
        if (!labels) {
            if (n > m->null_cap) {
                int *nl = realloc(m->null_labels, (size_t)n * sizeof *nl);
                if (!nl) {
                    flash_ctx_fail(c, "model 'mlp': out of memory");
                    return NULL;
                }
                m->null_labels = nl;
                m->null_cap = n;
            }
            for (int i = 0; i < n; i++) m->null_labels[i] = m->num_classes;
            labels = m->null_labels;
        }
        for (int i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] > m->num_classes) {
                flash_ctx_fail(c, "model 'mlp': label %d of sample %d is outside [0, %d]", labels[i], i,
                               m->num_classes);
                return NULL;
            }
        h = flash_add(c, h, flash_embedding(c, m->emb, labels, n));
    } else if (cond->labels) {
        flash_ctx_fail(c, "model 'mlp': class labels given to an unconditional model (num_classes: 0)");
        return NULL;
    }
    for (int k = 0; k < m->layers; k++) h = flash_silu(c, flash_linear(c, h, m->w[k], m->b[k]));
    return flash_linear(c, h, m->w_out, m->b_out);
}

static flash_tensor *mlp_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond) {
    return mlp_forward_guided(self, c, x, cond, NULL);
}

static bool mlp_takes_guidance(void *self) { return ((mlp *)self)->guidance.weight != NULL; }

FLASH_COMPONENT_TABLE(flash_model_api, mlp_model_api, FLASH_KIND_MODEL, "mlp",
                      "small trainable denoiser for 2-D data (time and class embeddings)", mlp_keys, mlp_create,
                      mlp_destroy, .info = mlp_info, .params = mlp_params, .forward = mlp_forward,
                      .takes_guidance = mlp_takes_guidance, .forward_guided = mlp_forward_guided)
