/* classifier: the small CNN used only as the evaluator of generated images.
 *
 * Its predictions give the class accuracy of conditional samples (the
 * stand-in for the paper's CLIP score) and its penultimate features the
 * Fréchet distance (the stand-in for FID, Heusel et al. 2017).
 *
 *   stage s (channels c_s, default 32, 64, 128):
 *     conv3x3 -> GroupNorm -> SiLU -> conv3x3 -> GroupNorm -> SiLU,
 *     then 2x2 average pooling between stages (28 -> 14 -> 7)
 *   global average pooling -> Linear(c_last, feature_dim) -> SiLU = features
 *   Linear(feature_dim, num_classes) = logits
 *
 * GroupNorm instead of BatchNorm keeps evaluation independent of the batch
 * (features of a sample do not depend on what it is batched with).
 */
#include "folder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLS_MAX_STAGES 5
#define CLS_RNG_STREAM 0x636c6173ull /* "clas" */

typedef struct cls_stage {
    flash_tensor *w1, *b1, *g1, *be1, *w2, *b2, *g2, *be2;
    int cin, cout;
} cls_stage;

typedef struct classifier {
    int in_ch, size, n_stages, ch[CLS_MAX_STAGES], groups, feature_dim, num_classes;
    flash_params *P;
    cls_stage st[CLS_MAX_STAGES];
    flash_tensor *fc_w, *fc_b, *out_w, *out_b;
} classifier;

static void cls_destroy(void *self)
{
    classifier *m = self;
    if (!m) return;
    flash_params_destroy(m->P);
    free(m);
}

static flash_tensor *add_param(flash_params *P, int *ok, int ndim, const int *shape, const char *name)
{
    flash_tensor *t = *ok ? flash_params_add(P, name, ndim, shape) : NULL;
    if (!t) *ok = 0;
    return t;
}

static flash_status cls_build(classifier *m, flash_error *err)
{
    int ok = 1;
    char nm[64];
    for (int s = 0; s < m->n_stages; s++) {
        cls_stage *S = &m->st[s];
        S->cin = s ? m->ch[s - 1] : m->in_ch;
        S->cout = m->ch[s];
        int w1[4] = {S->cout, S->cin, 3, 3}, w2[4] = {S->cout, S->cout, 3, 3}, v[1] = {S->cout};
        snprintf(nm, sizeof nm, "stage.%d.conv1.weight", s);
        S->w1 = add_param(m->P, &ok, 4, w1, nm);
        snprintf(nm, sizeof nm, "stage.%d.conv1.bias", s);
        S->b1 = add_param(m->P, &ok, 1, v, nm);
        snprintf(nm, sizeof nm, "stage.%d.norm1.weight", s);
        S->g1 = add_param(m->P, &ok, 1, v, nm);
        snprintf(nm, sizeof nm, "stage.%d.norm1.bias", s);
        S->be1 = add_param(m->P, &ok, 1, v, nm);
        snprintf(nm, sizeof nm, "stage.%d.conv2.weight", s);
        S->w2 = add_param(m->P, &ok, 4, w2, nm);
        snprintf(nm, sizeof nm, "stage.%d.conv2.bias", s);
        S->b2 = add_param(m->P, &ok, 1, v, nm);
        snprintf(nm, sizeof nm, "stage.%d.norm2.weight", s);
        S->g2 = add_param(m->P, &ok, 1, v, nm);
        snprintf(nm, sizeof nm, "stage.%d.norm2.bias", s);
        S->be2 = add_param(m->P, &ok, 1, v, nm);
    }
    int last = m->ch[m->n_stages - 1];
    int fw[2] = {m->feature_dim, last}, fb[1] = {m->feature_dim};
    int ow[2] = {m->num_classes, m->feature_dim}, ob[1] = {m->num_classes};
    m->fc_w = add_param(m->P, &ok, 2, fw, "head.fc.weight");
    m->fc_b = add_param(m->P, &ok, 1, fb, "head.fc.bias");
    m->out_w = add_param(m->P, &ok, 2, ow, "head.out.weight");
    m->out_b = add_param(m->P, &ok, 1, ob, "head.out.bias");
    if (!ok) return flash_error_set(err, FLASH_ERR_NOMEM, "classifier: cannot declare parameters");
    return flash_params_finalize(m->P, err);
}

static void cls_init(classifier *m, uint64_t seed)
{
    flash_rng r;
    flash_rng_seed_stream(&r, seed, CLS_RNG_STREAM);
    for (int s = 0; s < m->n_stages; s++) {
        cls_stage *S = &m->st[s];
        flash_init_fan_in(S->w1, &r, S->cin * 9);
        flash_init_fan_in(S->b1, &r, S->cin * 9);
        flash_init_const(S->g1, 1.0f);
        flash_init_const(S->be1, 0.0f);
        flash_init_fan_in(S->w2, &r, S->cout * 9);
        flash_init_fan_in(S->b2, &r, S->cout * 9);
        flash_init_const(S->g2, 1.0f);
        flash_init_const(S->be2, 0.0f);
    }
    int last = m->ch[m->n_stages - 1];
    flash_init_fan_in(m->fc_w, &r, last);
    flash_init_fan_in(m->fc_b, &r, last);
    flash_init_fan_in(m->out_w, &r, m->feature_dim);
    flash_init_fan_in(m->out_b, &r, m->feature_dim);
}

static flash_status cls_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    classifier *m = calloc(1, sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "classifier: out of memory");
    long v, ch[CLS_MAX_STAGES];
    size_t n = 0;
    flash_status st = FLASH_OK;
    const char *bad = NULL;
    if ((st = flash_cfg_int(cfg, "in_channels", 1, &v, err))) goto fail;
    m->in_ch = (int)v;
    if (v < 1 || v > 64) bad = "in_channels";
    if ((st = flash_cfg_int(cfg, "image_size", 28, &v, err))) goto fail;
    m->size = (int)v;
    if (v < 1 || v > 4096) bad = "image_size";
    if ((st = flash_cfg_int(cfg, "groups", 8, &v, err))) goto fail;
    m->groups = (int)v;
    if (v < 1) bad = "groups";
    if ((st = flash_cfg_int(cfg, "feature_dim", 128, &v, err))) goto fail;
    m->feature_dim = (int)v;
    if (v < 1 || v > 65536) bad = "feature_dim";
    if ((st = flash_cfg_int(cfg, "num_classes", 10, &v, err))) goto fail;
    m->num_classes = (int)v;
    if (v < 2 || v > 65536) bad = "num_classes";
    if (bad) {
        st = flash_cfg_error(flash_cfg_get(cfg, bad), err, "value out of range");
        goto fail;
    }
    if ((st = flash_cfg_ints(cfg, "channels", ch, CLS_MAX_STAGES, &n, err))) goto fail;
    if (n == 0) {
        ch[0] = 32;
        ch[1] = 64;
        ch[2] = 128;
        n = 3;
    }
    m->n_stages = (int)n;
    for (size_t i = 0; i < n; i++) {
        if (ch[i] < 1 || ch[i] > 4096 || ch[i] % m->groups) {
            st = flash_cfg_error(flash_cfg_get(cfg, "channels"), err,
                                 "each entry must be in [1, 4096] and divisible by groups = %d", m->groups);
            goto fail;
        }
        m->ch[i] = (int)ch[i];
    }
    if (m->size % (1 << (m->n_stages - 1))) {
        st = flash_cfg_error(flash_cfg_get(cfg, "image_size"), err,
                             "image_size %d is not divisible by 2^%d (pooling between stages)", m->size,
                             m->n_stages - 1);
        goto fail;
    }
    m->P = flash_params_create();
    if (!m->P) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "classifier: out of memory");
        goto fail;
    }
    if ((st = cls_build(m, err))) goto fail;
    cls_init(m, env ? env->seed : 0);
    *self = m;
    return FLASH_OK;
fail:
    cls_destroy(m);
    return st;
}

static flash_tensor *cls_features(void *self, flash_ctx *c, flash_tensor *x)
{
    classifier *m = self;
    if (!x) return NULL;
    if (x->ndim != 4 || x->shape[1] != m->in_ch || x->shape[2] != m->size || x->shape[3] != m->size) {
        char buf[64];
        flash_ctx_fail(c, "classifier: input %s, expected (N, %d, %d, %d)", flash_tensor_shape_str(x, buf, sizeof buf),
                       m->in_ch, m->size, m->size);
        return NULL;
    }
    flash_tensor *h = x;
    for (int s = 0; s < m->n_stages; s++) {
        const cls_stage *S = &m->st[s];
        if (s) h = flash_avg_pool2d(c, h, 2);
        h = flash_conv2d(c, h, S->w1, S->b1, 1, 1);
        h = flash_silu(c, flash_group_norm(c, h, m->groups, S->g1, S->be1, 1e-5f));
        h = flash_conv2d(c, h, S->w2, S->b2, 1, 1);
        h = flash_silu(c, flash_group_norm(c, h, m->groups, S->g2, S->be2, 1e-5f));
    }
    if (!h) return NULL;
    h = flash_avg_pool2d(c, h, h->shape[2]);
    if (!h) return NULL;
    int shp[2] = {h->shape[0], h->shape[1]};
    h = flash_reshape(c, h, 2, shp);
    return flash_silu(c, flash_linear(c, h, m->fc_w, m->fc_b));
}

static flash_tensor *cls_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond)
{
    classifier *m = self;
    (void)cond;
    return flash_linear(c, cls_features(self, c, x), m->out_w, m->out_b);
}

static void cls_info(void *self, flash_model_info *out)
{
    const classifier *m = self;
    memset(out, 0, sizeof *out);
    out->ndim = 3;
    out->shape[0] = m->in_ch;
    out->shape[1] = m->size;
    out->shape[2] = m->size;
    out->num_classes = m->num_classes;
    out->out_dim = m->num_classes;
}

static flash_params *cls_params(void *self)
{
    return ((classifier *)self)->P;
}

static const char *const cls_keys[] = {"in_channels", "image_size", "channels", "groups", "feature_dim",
                                       "num_classes", NULL};

FLASH_COMPONENT_TABLE(flash_model_api, classifier_model, FLASH_KIND_MODEL, "classifier",
                      "small CNN evaluator: class predictions and penultimate features", cls_keys, cls_create,
                      cls_destroy, .info = cls_info, .params = cls_params, .forward = cls_forward,
                      .features = cls_features)
