/* unet: a class-conditional U-Net denoiser for images (the teacher).
 *
 * The default configuration is unet-s, the architecture the benchmark peer
 * (tools/bench/unet_torch.py) builds with identical parameter names:
 *
 *   emb = Linear(128,128)(SiLU(Linear(64,128)(sinusoidal_64(t)))) + Embedding(11,128)[y]
 *   conv_in 3x3 1->32
 *   down.0: ResBlock(32->32) @28 -> skip a;   downsample 3x3/2 32->32
 *   down.1: ResBlock(32->64) @14 -> skip b;   downsample 3x3/2 64->64
 *   mid:    ResBlock(64->64) x2 @7
 *   up.1:   nearest x2 + 3x3 64->64; concat b; ResBlock(128->64) @14
 *   up.0:   nearest x2 + 3x3 64->64; concat a; ResBlock(96->32) @28
 *   out:    GroupNorm8, SiLU, 3x3 32->1                      (572,449 parameters)
 *
 *   ResBlock(cin->cout): h = conv1(SiLU(GN(x))); h += emb_proj(SiLU(emb)) per
 *   channel; h = conv2(SiLU(GN(h))); out = h + (skip1x1(x) if cin != cout else x)
 *
 * Generalisation: level l has base_channels * channel_mult[l] channels and
 * num_res_blocks ResBlocks on each side; the last down block's output of a
 * level is that level's skip; each level ends with a stride-2 downsample, so
 * the image side must be divisible by 2^levels. The null class for
 * classifier-free guidance is index num_classes (Ho & Salimans 2022).
 *
 * Initialisation follows PyTorch's defaults (U(+-1/sqrt(fan_in)) for conv and
 * linear weights and biases, N(0,1) for the embedding, ones/zeros for
 * GroupNorm) from the run's seed.
 *
 * guidance_embed: true makes a guidance-conditioned student (model.h): the
 * guidance scale w enters beside t, sinusoidal_64(t) + G sinusoidal_64(1000 w)
 * with G (64x64, "guidance.weight") zero at first (guidance_input.h).
 */
#include "folder.h"
#include "guidance_input.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNET_MAX_LEVELS 6
#define UNET_RNG_STREAM 0x756e6574ull /* "unet": the init stream of the run's seed */

typedef struct lin_p {
    flash_tensor *w, *b;
} lin_p;

typedef struct conv_p {
    flash_tensor *w, *b;
    int cin, cout, k;
} conv_p;

typedef struct norm_p {
    flash_tensor *g, *b;
} norm_p;

typedef struct resblock {
    norm_p norm1, norm2;
    conv_p conv1, conv2, skip;
    lin_p emb;
    int cin, cout, emb_dim, has_skip;
} resblock;

typedef struct unet {
    int in_ch, size, base, levels, mult[UNET_MAX_LEVELS], blocks, mid_blocks, groups;
    int time_dim, emb_dim, num_classes;
    float max_period;
    bool guidance_embed;
    flash_prediction pred;
    flash_params *P;
    lin_p time1, time2;
    flash_tensor *label;
    conv_p conv_in;
    resblock *down; /* levels * blocks, level-major */
    conv_p downsample[UNET_MAX_LEVELS];
    resblock *mid; /* mid_blocks */
    conv_p upsample[UNET_MAX_LEVELS];
    resblock *up; /* levels * blocks, level-major */
    norm_p out_norm;
    conv_p out_conv;
    int *lab_buf; /* null-class labels when the condition has none */
    int lab_cap;
    guidance_input guidance; /* guidance_embed: true (guidance_input.h) */
} unet;

/* ---- declaring parameters ------------------------------------------------ */

/* Declaration state: the first failure is kept, later calls do nothing. */
typedef struct decl {
    flash_params *P;
    flash_error *err;
    flash_status st;
} decl;

static flash_tensor *decl_add(decl *d, int ndim, const int *shape, const char *fmt, ...) FLASH_PRINTF(4, 5);

static flash_tensor *decl_add(decl *d, int ndim, const int *shape, const char *fmt, ...)
{
    if (d->st != FLASH_OK) return NULL;
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    flash_tensor *t = flash_params_add(d->P, name, ndim, shape);
    if (!t) d->st = flash_error_set(d->err, FLASH_ERR_NOMEM, "unet: cannot declare parameter '%s'", name);
    return t;
}

static void decl_lin(decl *d, lin_p *l, int in, int out, const char *name)
{
    int ws[2] = {out, in}, bs[1] = {out};
    l->w = decl_add(d, 2, ws, "%s.weight", name);
    l->b = decl_add(d, 1, bs, "%s.bias", name);
}

static void decl_conv(decl *d, conv_p *c, int cin, int cout, int k, const char *name)
{
    int ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    c->cin = cin;
    c->cout = cout;
    c->k = k;
    c->w = decl_add(d, 4, ws, "%s.weight", name);
    c->b = decl_add(d, 1, bs, "%s.bias", name);
}

static void decl_norm(decl *d, norm_p *n, int ch, const char *name)
{
    int s[1] = {ch};
    n->g = decl_add(d, 1, s, "%s.weight", name);
    n->b = decl_add(d, 1, s, "%s.bias", name);
}

static void decl_res(decl *d, resblock *r, int cin, int cout, int emb_dim, const char *prefix)
{
    char nm[112];
    r->cin = cin;
    r->cout = cout;
    r->emb_dim = emb_dim;
    r->has_skip = cin != cout;
    snprintf(nm, sizeof nm, "%s.norm1", prefix);
    decl_norm(d, &r->norm1, cin, nm);
    snprintf(nm, sizeof nm, "%s.conv1", prefix);
    decl_conv(d, &r->conv1, cin, cout, 3, nm);
    snprintf(nm, sizeof nm, "%s.emb", prefix);
    decl_lin(d, &r->emb, emb_dim, cout, nm);
    snprintf(nm, sizeof nm, "%s.norm2", prefix);
    decl_norm(d, &r->norm2, cout, nm);
    snprintf(nm, sizeof nm, "%s.conv2", prefix);
    decl_conv(d, &r->conv2, cout, cout, 3, nm);
    if (r->has_skip) {
        snprintf(nm, sizeof nm, "%s.skip", prefix);
        decl_conv(d, &r->skip, cin, cout, 1, nm);
    }
}

/* ---- initialisation ------------------------------------------------------ */

static void init_lin(lin_p *l, flash_rng *r, int in)
{
    flash_init_fan_in(l->w, r, in);
    flash_init_fan_in(l->b, r, in);
}

static void init_conv(conv_p *c, flash_rng *r)
{
    flash_init_fan_in(c->w, r, c->cin * c->k * c->k);
    flash_init_fan_in(c->b, r, c->cin * c->k * c->k);
}

static void init_norm(norm_p *n)
{
    flash_init_const(n->g, 1.0f);
    flash_init_const(n->b, 0.0f);
}

static void init_res(resblock *b, flash_rng *r)
{
    init_norm(&b->norm1);
    init_conv(&b->conv1, r);
    init_lin(&b->emb, r, b->emb_dim);
    init_norm(&b->norm2);
    init_conv(&b->conv2, r);
    if (b->has_skip) init_conv(&b->skip, r);
}

/* ---- forward ------------------------------------------------------------- */

static flash_tensor *conv_fwd(flash_ctx *c, const conv_p *p, flash_tensor *x, int stride)
{
    return flash_conv2d(c, x, p->w, p->b, stride, p->k / 2);
}

static flash_tensor *norm_act(flash_ctx *c, const norm_p *n, flash_tensor *x, int groups)
{
    return flash_group_norm_silu(c, x, groups, n->g, n->b, 1e-5f);
}

/* emb_act = SiLU(emb), shared by every block. */
static flash_tensor *res_fwd(flash_ctx *c, const resblock *b, flash_tensor *x, flash_tensor *emb_act, int groups)
{
    flash_tensor *h = conv_fwd(c, &b->conv1, norm_act(c, &b->norm1, x, groups), 1);
    h = flash_add_channel_bias(c, h, flash_linear(c, emb_act, b->emb.w, b->emb.b));
    h = conv_fwd(c, &b->conv2, norm_act(c, &b->norm2, h, groups), 1);
    return flash_add(c, h, b->has_skip ? conv_fwd(c, &b->skip, x, 1) : x);
}

/* The embedding, the down path and the middle blocks: skips[l] per level
 * and the bottleneck (returned); *emb_out gets SiLU(emb) for the up path. */
static flash_tensor *unet_encoder(unet *u, flash_ctx *c, flash_tensor *x, const flash_cond *cond, const float *w,
                                  flash_tensor **skips, flash_tensor **emb_out)
{
    if (!x) return NULL;
    if (!cond || !cond->t) {
        flash_ctx_fail(c, "unet: forward needs timesteps (cond->t)");
        return NULL;
    }
    const int n = x->shape[0];
    const int div = 1 << u->levels;
    if (x->ndim != 4 || x->shape[1] != u->in_ch || x->shape[2] % div || x->shape[3] % div || cond->n != n) {
        char buf[64];
        flash_ctx_fail(c, "unet: input %s with %d conditions; expected (%d, %d, H, W), H and W divisible by %d",
                       flash_tensor_shape_str(x, buf, sizeof buf), cond->n, n, u->in_ch, div);
        return NULL;
    }

    flash_tensor *temb = flash_timestep_embedding(c, cond->t, n, u->time_dim, u->max_period);
    temb = guidance_input_add(&u->guidance, c, temb, w, n, u->time_dim, u->max_period);
    flash_tensor *emb = flash_linear(c, temb, u->time1.w, u->time1.b);
    emb = flash_linear(c, flash_silu(c, emb), u->time2.w, u->time2.b);
    if (u->num_classes > 0) {
        const int *lab = cond->labels;
        if (!lab) {
            if (n > u->lab_cap) {
                int *nb = realloc(u->lab_buf, (size_t)n * sizeof *nb);
                if (!nb) {
                    flash_ctx_fail(c, "unet: out of memory for %d labels", n);
                    return NULL;
                }
                u->lab_buf = nb;
                u->lab_cap = n;
            }
            for (int i = 0; i < n; i++) u->lab_buf[i] = u->num_classes;
            lab = u->lab_buf;
        } else {
            for (int i = 0; i < n; i++)
                if (lab[i] < 0 || lab[i] > u->num_classes) {
                    flash_ctx_fail(c, "unet: label %d of sample %d outside [0, %d] (%d = null class)", lab[i], i,
                                   u->num_classes, u->num_classes);
                    return NULL;
                }
        }
        emb = flash_add(c, emb, flash_embedding(c, u->label, lab, n));
    }
    flash_tensor *emb_act = flash_silu(c, emb);
    *emb_out = emb_act;

    flash_tensor *h = conv_fwd(c, &u->conv_in, x, 1);
    for (int l = 0; l < u->levels; l++) {
        for (int b = 0; b < u->blocks; b++) h = res_fwd(c, &u->down[l * u->blocks + b], h, emb_act, u->groups);
        skips[l] = h;
        h = conv_fwd(c, &u->downsample[l], h, 2);
    }
    for (int b = 0; b < u->mid_blocks; b++) h = res_fwd(c, &u->mid[b], h, emb_act, u->groups);
    return h;
}

static flash_tensor *unet_forward_guided(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond,
                                         const float *w)
{
    unet *u = self;
    flash_tensor *skips[UNET_MAX_LEVELS], *emb_act = NULL;
    flash_tensor *h = unet_encoder(u, c, x, cond, w, skips, &emb_act);
    if (!h) return NULL;
    for (int l = u->levels - 1; l >= 0; l--) {
        h = conv_fwd(c, &u->upsample[l], flash_upsample_nearest2x(c, h), 1);
        h = flash_concat(c, h, skips[l]);
        for (int b = 0; b < u->blocks; b++) h = res_fwd(c, &u->up[l * u->blocks + b], h, emb_act, u->groups);
    }
    return conv_fwd(c, &u->out_conv, norm_act(c, &u->out_norm, h, u->groups), 1);
}

static flash_tensor *unet_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond)
{
    return unet_forward_guided(self, c, x, cond, NULL);
}

static bool unet_takes_guidance(void *self) { return ((unet *)self)->guidance.weight != NULL; }

/* The encoder's feature maps: each level's skip, then the bottleneck. */
static int unet_encode(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond, flash_tensor **out, int max)
{
    unet *u = self;
    flash_tensor *skips[UNET_MAX_LEVELS], *emb_act = NULL;
    if (max < u->levels + 1) {
        flash_ctx_fail(c, "unet: encode needs room for %d feature maps, got %d", u->levels + 1, max);
        return -1;
    }
    flash_tensor *h = unet_encoder(u, c, x, cond, NULL, skips, &emb_act);
    if (!h) return -1;
    for (int l = 0; l < u->levels; l++) out[l] = skips[l];
    out[u->levels] = h;
    return u->levels + 1;
}

/* ---- component ----------------------------------------------------------- */

static void unet_destroy(void *self)
{
    unet *u = self;
    if (!u) return;
    flash_params_destroy(u->P);
    free(u->down);
    free(u->mid);
    free(u->up);
    free(u->lab_buf);
    guidance_input_free(&u->guidance);
    free(u);
}

static const char *const unet_pred_names[] = {"epsilon", "v", "sample", NULL};

static flash_status unet_read_cfg(unet *u, const flash_cfg *cfg, flash_error *err)
{
    long v;
    size_t nm = 0;
    long mult[UNET_MAX_LEVELS + 1];
    int pred = 0;
    flash_status st;
#define GET_INT(key, def, field, lo)                                                                   \
    do {                                                                                               \
        if ((st = flash_cfg_int(cfg, key, def, &v, err))) return st;                                   \
        if (v < (lo) || v > 4096)                                                                      \
            return flash_cfg_error(flash_cfg_get(cfg, key), err, "must be in [%d, 4096], got %ld", lo, v); \
        u->field = (int)v;                                                                             \
    } while (0)
    GET_INT("in_channels", 1, in_ch, 1);
    GET_INT("image_size", 28, size, 1);
    GET_INT("base_channels", 32, base, 1);
    GET_INT("num_res_blocks", 1, blocks, 1);
    GET_INT("mid_blocks", 2, mid_blocks, 0);
    GET_INT("groups", 8, groups, 1);
    GET_INT("num_classes", 10, num_classes, 0);
    GET_INT("time_dim", 2 * u->base, time_dim, 2);
    GET_INT("emb_dim", 4 * u->base, emb_dim, 1);
#undef GET_INT
    if (u->time_dim % 2) return flash_cfg_error(flash_cfg_get(cfg, "time_dim"), err, "must be even");
    if ((st = flash_cfg_float(cfg, "max_period", 10000.0f, &u->max_period, err))) return st;
    if ((st = flash_cfg_bool(cfg, "guidance_embed", false, &u->guidance_embed, err))) return st;
    if ((st = flash_cfg_ints(cfg, "channel_mult", mult, UNET_MAX_LEVELS, &nm, err))) return st;
    if (nm == 0) {
        mult[0] = 1;
        mult[1] = 2;
        nm = 2;
    }
    u->levels = (int)nm;
    for (size_t i = 0; i < nm; i++) {
        if (mult[i] < 1 || mult[i] > 64)
            return flash_cfg_error(flash_cfg_get(cfg, "channel_mult"), err, "multipliers must be in [1, 64]");
        u->mult[i] = (int)mult[i];
        if ((u->base * u->mult[i]) % u->groups)
            return flash_cfg_error(flash_cfg_get(cfg, "channel_mult"), err,
                                   "level %zu has %d channels, not divisible by groups = %d", i,
                                   u->base * u->mult[i], u->groups);
    }
    if (u->size % (1 << u->levels))
        return flash_cfg_error(flash_cfg_get(cfg, "image_size"), err,
                               "image_size %d is not divisible by 2^%d (one downsample per level)", u->size,
                               u->levels);
    if ((st = flash_cfg_enum(cfg, "prediction", unet_pred_names, 0, &pred, err))) return st;
    u->pred = (flash_prediction)pred;
    return FLASH_OK;
}

static flash_status unet_build(unet *u, flash_error *err)
{
    decl d = {u->P, err, FLASH_OK};
    char nm[96];
    size_t nres = (size_t)u->levels * (size_t)u->blocks;
    u->down = calloc(nres, sizeof *u->down);
    u->up = calloc(nres, sizeof *u->up);
    u->mid = calloc(u->mid_blocks ? (size_t)u->mid_blocks : 1, sizeof *u->mid);
    if (!u->down || !u->up || !u->mid) return flash_error_set(err, FLASH_ERR_NOMEM, "unet: out of memory");

    decl_lin(&d, &u->time1, u->time_dim, u->emb_dim, "time.lin1");
    decl_lin(&d, &u->time2, u->emb_dim, u->emb_dim, "time.lin2");
    if (u->num_classes > 0) {
        int s[2] = {u->num_classes + 1, u->emb_dim};
        u->label = decl_add(&d, 2, s, "label.weight");
    }
    decl_conv(&d, &u->conv_in, u->in_ch, u->base, 3, "conv_in");
    int ch = u->base;
    for (int l = 0; l < u->levels; l++) {
        int cl = u->base * u->mult[l];
        for (int b = 0; b < u->blocks; b++) {
            snprintf(nm, sizeof nm, "down.%d.res.%d", l, b);
            decl_res(&d, &u->down[l * u->blocks + b], ch, cl, u->emb_dim, nm);
            ch = cl;
        }
        snprintf(nm, sizeof nm, "down.%d.downsample", l);
        decl_conv(&d, &u->downsample[l], ch, ch, 3, nm);
    }
    for (int b = 0; b < u->mid_blocks; b++) {
        snprintf(nm, sizeof nm, "mid.res.%d", b);
        decl_res(&d, &u->mid[b], ch, ch, u->emb_dim, nm);
    }
    for (int l = u->levels - 1; l >= 0; l--) {
        int cl = u->base * u->mult[l];
        snprintf(nm, sizeof nm, "up.%d.upsample", l);
        decl_conv(&d, &u->upsample[l], ch, ch, 3, nm);
        for (int b = 0; b < u->blocks; b++) {
            snprintf(nm, sizeof nm, "up.%d.res.%d", l, b);
            decl_res(&d, &u->up[l * u->blocks + b], b == 0 ? ch + cl : cl, cl, u->emb_dim, nm);
        }
        ch = cl;
    }
    decl_norm(&d, &u->out_norm, ch, "out.norm");
    decl_conv(&d, &u->out_conv, ch, u->in_ch, 3, "out.conv");
    if (d.st) return d.st;
    if (u->guidance_embed && !guidance_input_declare(&u->guidance, u->P, u->time_dim))
        return flash_error_set(err, FLASH_ERR_NOMEM, "unet: out of memory");
    return flash_params_finalize(u->P, err);
}

static void unet_init(unet *u, uint64_t seed)
{
    flash_rng r;
    flash_rng_seed_stream(&r, seed, UNET_RNG_STREAM);
    init_lin(&u->time1, &r, u->time_dim);
    init_lin(&u->time2, &r, u->emb_dim);
    if (u->label) flash_init_normal(u->label, &r, 1.0f);
    init_conv(&u->conv_in, &r);
    for (int l = 0; l < u->levels; l++) {
        for (int b = 0; b < u->blocks; b++) init_res(&u->down[l * u->blocks + b], &r);
        init_conv(&u->downsample[l], &r);
    }
    for (int b = 0; b < u->mid_blocks; b++) init_res(&u->mid[b], &r);
    for (int l = u->levels - 1; l >= 0; l--) {
        init_conv(&u->upsample[l], &r);
        for (int b = 0; b < u->blocks; b++) init_res(&u->up[l * u->blocks + b], &r);
    }
    init_norm(&u->out_norm);
    init_conv(&u->out_conv, &r);
    guidance_input_init(&u->guidance);
}

static flash_status unet_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    unet *u = calloc(1, sizeof *u);
    if (!u) return flash_error_set(err, FLASH_ERR_NOMEM, "unet: out of memory");
    flash_status st = unet_read_cfg(u, cfg, err);
    if (st == FLASH_OK) {
        u->P = flash_params_create();
        st = u->P ? unet_build(u, err) : flash_error_set(err, FLASH_ERR_NOMEM, "unet: out of memory");
    }
    if (st != FLASH_OK) {
        unet_destroy(u);
        return st;
    }
    unet_init(u, env ? env->seed : 0);
    *self = u;
    return FLASH_OK;
}

static void unet_info(void *self, flash_model_info *out)
{
    const unet *u = self;
    memset(out, 0, sizeof *out);
    out->ndim = 3;
    out->shape[0] = u->in_ch;
    out->shape[1] = u->size;
    out->shape[2] = u->size;
    out->num_classes = u->num_classes;
    out->prediction = u->pred;
}

static flash_params *unet_params(void *self)
{
    return ((unet *)self)->P;
}

static const char *const unet_keys[] = {"in_channels", "image_size", "base_channels", "channel_mult",
                                        "num_res_blocks", "mid_blocks", "groups", "num_classes",
                                        "time_dim", "emb_dim", "max_period", "prediction", "guidance_embed",
                                        NULL};

FLASH_COMPONENT_TABLE(flash_model_api, unet_model, FLASH_KIND_MODEL, "unet",
                      "class-conditional U-Net denoiser (default unet-s: 572,449 parameters)", unet_keys,
                      unet_create, unet_destroy, .info = unet_info, .params = unet_params, .forward = unet_forward,
                      .features = NULL, .encode = unet_encode, .takes_guidance = unet_takes_guidance,
                      .forward_guided = unet_forward_guided)
