/* Model `teacher_discriminator`: a discriminator built on the frozen
 * teacher's encoder with trainable heads, the kind Imagine Flash uses for
 * its 1-step model (section 5.1, after UFOGen and SDXL-Lightning): the
 * pipeline's `teacher` (weights from `teacher_checkpoint`) encodes the
 * judged image at timestep `t` with its label (the teacher's encode(): each
 * level's feature map and the bottleneck); each map gets a head
 *   1x1 conv C_l -> width, LReLU(0.2), global average pool, linear -> 1
 * and the logits are summed, plus a class projection <E[y], pooled> on the
 * bottleneck (Miyato & Koyama 2018). Only the heads are parameters of the
 * discriminator (what its Adam updates and checkpoints save); the teacher
 * copy is frozen (its weights take no gradient), while gradients still
 * reach the judged image. Keys: t (0), width (64), seed.
 *
 * Device: the teacher copy is this model's own, so it moves it to the
 * pipeline's device (flash_env_device) after loading; the heads are its
 * params(), moved by whoever owns the discriminator (the adversarial loss). */
#include "folder.h"

#include <stdio.h>
#include <stdlib.h>

#include "flash/diffusion.h"
#include "flash/trainer.h"

#define TD_MAX_FEATS 8

typedef struct tdisc {
    flash_instance teacher;
    flash_model_info ti;
    int n_feats, width;
    float t;
    int ch[TD_MAX_FEATS], hw[TD_MAX_FEATS];
    flash_params *p;
    flash_tensor *cw[TD_MAX_FEATS], *cb[TD_MAX_FEATS], *lw[TD_MAX_FEATS], *lb[TD_MAX_FEATS], *emb;
    float *tbuf;
    int tcap;
} tdisc;

static const char *const keys[] = {"t", "width", "seed", NULL};

static void td_destroy(void *self)
{
    tdisc *m = self;
    if (!m) return;
    flash_params_destroy(m->p);
    flash_instance_destroy(&m->teacher);
    free(m->tbuf);
    free(m);
}

static const flash_model_api *teacher_api(const tdisc *m) { return FLASH_API(&m->teacher, flash_model_api); }

static bool has_encode(const flash_instance *inst)
{
    const flash_model_api *a = FLASH_API(inst, flash_model_api);
    return inst->comp->size >= offsetof(flash_model_api, encode) + sizeof a->encode && a->encode;
}

static flash_status td_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    double t;
    long width, seed;
    flash_status st;
    if ((st = flash_cfg_double(cfg, "t", 0.0, &t, err)) || (st = flash_cfg_int(cfg, "width", 64, &width, err)) ||
        (st = flash_cfg_int(cfg, "seed", env ? (long)env->seed : 0, &seed, err)))
        return st;
    if (!(t >= 0 && t < FLASH_MAX_STEPS) || width < 1 || width > 4096)
        return flash_cfg_error(cfg, err, "model 'teacher_discriminator': t must be in [0, %d), width in [1, 4096]",
                               FLASH_MAX_STEPS);
    const flash_cfg *ts = env && env->root ? flash_cfg_get(env->root, "teacher") : NULL;
    if (!ts) return flash_cfg_error(cfg, err, "model 'teacher_discriminator': the pipeline has no `teacher:`");
    tdisc *m = calloc(1, sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "model 'teacher_discriminator': out of memory");
    m->t = (float)t;
    m->width = (int)width;
    /* its own copy of the teacher, so the heads' graph never touches the
     * pipeline's teacher instance */
    if ((st = flash_instance_create(env, FLASH_KIND_MODEL, ts, &m->teacher, err)) ||
        (st = flash_teacher_load(env->root, &m->teacher, err)))
        goto fail;
    flash_params *tp = teacher_api(m)->params ? teacher_api(m)->params(m->teacher.self) : NULL;
    for (size_t i = 0; tp && i < flash_params_n(tp); i++) flash_tensor_requires_grad(flash_params_at(tp, i), false);
    if (tp && (st = flash_params_to_device(tp, flash_env_device(env), err))) {
        flash_error_prefix(err, "model 'teacher_discriminator'");
        goto fail;
    }
    if (!has_encode(&m->teacher)) {
        st = flash_cfg_error(cfg, err, "model 'teacher_discriminator': the teacher '%s' has no encoder (encode)",
                             m->teacher.comp->name);
        goto fail;
    }
    teacher_api(m)->info(m->teacher.self, &m->ti);
    if (m->ti.ndim != 3) {
        st = flash_cfg_error(cfg, err, "model 'teacher_discriminator': the teacher does not take images");
        goto fail;
    }
    /* the feature maps' channels and sizes, from one probe */
    flash_ctx *c = flash_ctx_create_on(flash_env_device(env), (size_t)8 << 20, err);
    if (!c) {
        st = err->status ? err->status : FLASH_ERR_NOMEM;
        flash_error_prefix(err, "model 'teacher_discriminator'");
        goto fail;
    }
    flash_grad_set(c, false);
    flash_tensor *x = flash_zeros(c, 4, (int[]){1, m->ti.shape[0], m->ti.shape[1], m->ti.shape[2]});
    flash_cond cond = {.n = 1, .t = &m->t};
    flash_tensor *f[TD_MAX_FEATS];
    m->n_feats = x ? teacher_api(m)->encode(m->teacher.self, c, x, &cond, f, TD_MAX_FEATS) : -1;
    for (int i = 0; i < m->n_feats; i++) {
        m->ch[i] = f[i]->shape[1];
        m->hw[i] = f[i]->shape[2];
        if (f[i]->ndim != 4 || f[i]->shape[2] != f[i]->shape[3]) m->n_feats = -1;
    }
    if (m->n_feats < 1) {
        st = flash_error_set(err, FLASH_ERR_CONFIG, "model 'teacher_discriminator': the teacher's encoder gave no square "
                                                    "feature maps (%s)", flash_ctx_ok(c) ? "none" : flash_ctx_error(c));
        flash_ctx_destroy(c);
        goto fail;
    }
    flash_ctx_destroy(c);
    if (!(m->p = flash_params_create())) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "model 'teacher_discriminator': out of memory");
        goto fail;
    }
    int ok = 1;
    for (int i = 0; i < m->n_feats && ok; i++) {
        char name[64];
        snprintf(name, sizeof name, "head%d.conv.weight", i);
        m->cw[i] = flash_params_add(m->p, name, 4, (int[]){m->width, m->ch[i], 1, 1});
        snprintf(name, sizeof name, "head%d.conv.bias", i);
        m->cb[i] = flash_params_add(m->p, name, 1, (int[]){m->width});
        snprintf(name, sizeof name, "head%d.out.weight", i);
        m->lw[i] = flash_params_add(m->p, name, 2, (int[]){1, m->width});
        snprintf(name, sizeof name, "head%d.out.bias", i);
        m->lb[i] = flash_params_add(m->p, name, 1, (int[]){1});
        ok = m->cw[i] && m->cb[i] && m->lw[i] && m->lb[i];
    }
    if (ok && m->ti.num_classes > 0)
        ok = (m->emb = flash_params_add(m->p, "class.embedding", 2, (int[]){m->ti.num_classes + 1, m->width})) != NULL;
    if (!ok) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "model 'teacher_discriminator': out of memory");
        goto fail;
    }
    if ((st = flash_params_finalize(m->p, err))) goto fail;
    flash_rng r;
    flash_rng_seed_stream(&r, (uint64_t)seed, 0x7d15);
    for (int i = 0; i < m->n_feats; i++) {
        flash_init_fan_in(m->cw[i], &r, m->ch[i]);
        flash_init_fan_in(m->cb[i], &r, m->ch[i]);
        flash_init_fan_in(m->lw[i], &r, m->width);
        flash_init_fan_in(m->lb[i], &r, m->width);
    }
    if (m->emb) flash_init_normal(m->emb, &r, 0.02f);
    *self = m;
    return FLASH_OK;
fail:
    td_destroy(m);
    return st;
}

static void td_info(void *self, flash_model_info *out)
{
    const tdisc *m = self;
    *out = m->ti;
    out->prediction = FLASH_PRED_SAMPLE;
    out->out_dim = 1;
}

static flash_params *td_params(void *self) { return ((tdisc *)self)->p; }

static flash_tensor *td_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond)
{
    tdisc *m = self;
    if (!x) return NULL;
    const int n = x->shape[0];
    if (n > m->tcap) {
        float *tb = realloc(m->tbuf, (size_t)n * sizeof *tb);
        if (!tb) {
            flash_ctx_fail(c, "model 'teacher_discriminator': out of memory");
            return NULL;
        }
        m->tbuf = tb;
        m->tcap = n;
    }
    for (int i = 0; i < n; i++) m->tbuf[i] = m->t;
    const int *labels = cond ? cond->labels : NULL;
    flash_cond tc = {.n = n, .t = m->tbuf, .labels = labels};
    flash_tensor *f[TD_MAX_FEATS];
    if (teacher_api(m)->encode(m->teacher.self, c, x, &tc, f, TD_MAX_FEATS) != m->n_feats) {
        if (flash_ctx_ok(c)) flash_ctx_fail(c, "model 'teacher_discriminator': the teacher's encoder changed");
        return NULL;
    }
    flash_tensor *logit = NULL, *pooled = NULL;
    for (int i = 0; i < m->n_feats; i++) {
        flash_tensor *h = flash_leaky_relu(c, flash_conv2d(c, f[i], m->cw[i], m->cb[i], 1, 0), 0.2f);
        pooled = flash_reshape(c, flash_avg_pool2d(c, h, m->hw[i]), 2, (int[]){n, m->width});
        flash_tensor *l = flash_linear(c, pooled, m->lw[i], m->lb[i]);
        logit = logit ? flash_add(c, logit, l) : l;
    }
    if (m->emb && labels) {
        flash_tensor *proj = flash_sum_per_sample(c, flash_mul(c, flash_embedding(c, m->emb, labels, n), pooled));
        logit = flash_add(c, logit, flash_reshape(c, proj, 2, (int[]){n, 1}));
    }
    return logit;
}

FLASH_COMPONENT_TABLE(flash_model_api, td_api, FLASH_KIND_MODEL, "teacher_discriminator",
                      "discriminator on the frozen teacher's encoder features with trainable heads (Imagine Flash "
                      "5.1, 1 step)",
                      keys, td_create, td_destroy, .info = td_info, .params = td_params, .forward = td_forward)
