/* Model `conv_discriminator`: a small convolutional GAN discriminator for
 * images (the adversarial loss on Fashion-MNIST; a scaled-down stand-in for
 * the StyleGAN-T discriminator ADD and Imagine Flash use, section 5.1):
 *
 *   conv3x3 C->w, LReLU; conv4x4/2 w->2w, LReLU; conv4x4/2 2w->4w, LReLU;
 *   global average pool; linear 4w->1 [+ <E[y], h> projection, Miyato & Koyama 2018]
 *
 * LeakyReLU(0.2) as in DCGAN (Radford et al. 2016). Keys: channels (1),
 * size (28; divisible by 4), width (32), num_classes (0), seed. */
#include "folder.h"

#include <stdlib.h>

typedef struct cdisc {
    int ch, size, width, num_classes;
    flash_params *p;
    flash_tensor *w1, *b1, *w2, *b2, *w3, *b3, *wo, *bo, *emb;
} cdisc;

static const char *const keys[] = {"channels", "size", "width", "num_classes", "seed", NULL};

static void cd_destroy(void *self)
{
    cdisc *m = self;
    if (!m) return;
    flash_params_destroy(m->p);
    free(m);
}

static flash_status cd_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long ch, size, width, ncls, seed;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "channels", 1, &ch, err)) || (st = flash_cfg_int(cfg, "size", 28, &size, err)) ||
        (st = flash_cfg_int(cfg, "width", 32, &width, err)) || (st = flash_cfg_int(cfg, "num_classes", 0, &ncls, err)) ||
        (st = flash_cfg_int(cfg, "seed", env ? (long)env->seed : 0, &seed, err)))
        return st;
    if (ch < 1 || ch > 64 || size < 4 || size > 1024 || size % 4 || width < 1 || width > 1024 || ncls < 0)
        return flash_cfg_error(cfg, err, "model 'conv_discriminator': need channels in [1, 64], size in [4, 1024] "
                                         "divisible by 4, width in [1, 1024], num_classes >= 0");
    cdisc *m = calloc(1, sizeof *m);
    if (!m || !(m->p = flash_params_create())) {
        free(m);
        return flash_error_set(err, FLASH_ERR_NOMEM, "model 'conv_discriminator': out of memory");
    }
    m->ch = (int)ch, m->size = (int)size, m->width = (int)width, m->num_classes = (int)ncls;
    const int w = m->width;
    m->w1 = flash_params_add(m->p, "conv1.weight", 4, (int[]){w, m->ch, 3, 3});
    m->b1 = flash_params_add(m->p, "conv1.bias", 1, (int[]){w});
    m->w2 = flash_params_add(m->p, "conv2.weight", 4, (int[]){2 * w, w, 4, 4});
    m->b2 = flash_params_add(m->p, "conv2.bias", 1, (int[]){2 * w});
    m->w3 = flash_params_add(m->p, "conv3.weight", 4, (int[]){4 * w, 2 * w, 4, 4});
    m->b3 = flash_params_add(m->p, "conv3.bias", 1, (int[]){4 * w});
    m->wo = flash_params_add(m->p, "out.weight", 2, (int[]){1, 4 * w});
    m->bo = flash_params_add(m->p, "out.bias", 1, (int[]){1});
    if (m->num_classes > 0) m->emb = flash_params_add(m->p, "class.embedding", 2, (int[]){m->num_classes + 1, 4 * w});
    if (!m->w1 || !m->b1 || !m->w2 || !m->b2 || !m->w3 || !m->b3 || !m->wo || !m->bo || (m->num_classes && !m->emb)) {
        cd_destroy(m);
        return flash_error_set(err, FLASH_ERR_NOMEM, "model 'conv_discriminator': out of memory");
    }
    if ((st = flash_params_finalize(m->p, err))) {
        cd_destroy(m);
        return st;
    }
    flash_rng r;
    flash_rng_seed_stream(&r, (uint64_t)seed, 0xcd15);
    flash_init_fan_in(m->w1, &r, m->ch * 9);
    flash_init_fan_in(m->b1, &r, m->ch * 9);
    flash_init_fan_in(m->w2, &r, w * 16);
    flash_init_fan_in(m->b2, &r, w * 16);
    flash_init_fan_in(m->w3, &r, 2 * w * 16);
    flash_init_fan_in(m->b3, &r, 2 * w * 16);
    flash_init_fan_in(m->wo, &r, 4 * w);
    flash_init_fan_in(m->bo, &r, 4 * w);
    if (m->emb) flash_init_normal(m->emb, &r, 0.02f);
    *self = m;
    return FLASH_OK;
}

static void cd_info(void *self, flash_model_info *out)
{
    const cdisc *m = self;
    *out = (flash_model_info){.ndim = 3, .shape = {m->ch, m->size, m->size}, .num_classes = m->num_classes,
                              .prediction = FLASH_PRED_SAMPLE, .out_dim = 1};
}

static flash_params *cd_params(void *self) { return ((cdisc *)self)->p; }

static flash_tensor *cd_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond)
{
    cdisc *m = self;
    if (!x) return NULL;
    if (x->ndim != 4 || x->shape[1] != m->ch || x->shape[2] != m->size || x->shape[3] != m->size) {
        char b[64];
        flash_ctx_fail(c, "model 'conv_discriminator': input %s is not (N, %d, %d, %d)",
                       flash_tensor_shape_str(x, b, sizeof b), m->ch, m->size, m->size);
        return NULL;
    }
    const int n = x->shape[0], w = m->width;
    flash_tensor *h = flash_leaky_relu(c, flash_conv2d(c, x, m->w1, m->b1, 1, 1), 0.2f);
    h = flash_leaky_relu(c, flash_conv2d(c, h, m->w2, m->b2, 2, 1), 0.2f);
    h = flash_leaky_relu(c, flash_conv2d(c, h, m->w3, m->b3, 2, 1), 0.2f);
    h = flash_reshape(c, flash_avg_pool2d(c, h, m->size / 4), 2, (int[]){n, 4 * w});
    flash_tensor *logit = flash_linear(c, h, m->wo, m->bo);
    if (m->num_classes > 0 && cond && cond->labels) {
        for (int i = 0; i < n; i++)
            if (cond->labels[i] < 0 || cond->labels[i] > m->num_classes) {
                flash_ctx_fail(c, "model 'conv_discriminator': label %d outside [0, %d]", cond->labels[i],
                               m->num_classes);
                return NULL;
            }
        flash_tensor *proj = flash_sum_per_sample(c, flash_mul(c, flash_embedding(c, m->emb, cond->labels, n), h));
        logit = flash_add(c, logit, flash_reshape(c, proj, 2, (int[]){n, 1}));
    }
    return logit;
}

FLASH_COMPONENT_TABLE(flash_model_api, cd_api, FLASH_KIND_MODEL, "conv_discriminator",
                      "small conv GAN discriminator for images (3 convs, pooled linear head, optional class "
                      "projection)",
                      keys, cd_create, cd_destroy, .info = cd_info, .params = cd_params, .forward = cd_forward)
