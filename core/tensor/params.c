/* Parameters in one contiguous block; grad, Adam moments and EMA share its
 * layout (parameter i occupies [offset_i, offset_i + numel_i) in every
 * block), so each update is one flat loop. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flash/comm.h"
#include "tensor/backend_load.h"
#include "tensor/tensor_internal.h"

typedef struct flash_param_entry {
    char *name;
    flash_tensor *t;
    size_t offset;
    float lr_scale; /* Adam's rate for this tensor: lr times this (1 by default) */
} flash_param_entry;

struct flash_params {
    flash_param_entry *e;
    size_t n, cap;
    size_t count;
    bool finalized;
    float *data, *grad, *m, *v, *ema;
    const flash_backend *be; /* where the blocks live; NULL: the CPU */
};

static const flash_backend *be_of_p(const flash_params *p) {
    return p && p->be ? p->be : &flash_cpu_backend;
}
#define be_of() be_of_p(p)

flash_params *flash_params_create(void) { return calloc(1, sizeof(flash_params)); }

void flash_params_destroy(flash_params *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->e[i].name);
        free(p->e[i].t);
    }
    free(p->e);
    const flash_backend *be = be_of();
    be->free(p->data);
    be->free(p->grad);
    be->free(p->m);
    be->free(p->v);
    be->free(p->ema);
    free(p);
}

flash_tensor *flash_params_add(flash_params *p, const char *name, int ndim, const int *shape) {
    if (!p || !name || !shape || p->finalized || ndim < 1 || ndim > FLASH_MAX_DIMS) return NULL;
    if (flash_params_find(p, name)) return NULL;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) return NULL;
        numel *= (size_t)shape[i];
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        flash_param_entry *e = realloc(p->e, cap * sizeof *e);
        if (!e) return NULL;
        p->e = e;
        p->cap = cap;
    }
    flash_tensor *t = calloc(1, sizeof *t);
    char *nm = strdup(name);
    if (!t || !nm) {
        free(t);
        free(nm);
        return NULL;
    }
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    t->flags = FLASH_TENSOR_PARAM | FLASH_TENSOR_REQUIRES_GRAD;
    p->e[p->n].name = nm;
    p->e[p->n].t = t;
    p->e[p->n].offset = p->count;
    p->e[p->n].lr_scale = 1.0f;
    p->n++;
    p->count += numel;
    return t;
}

static void point_views(flash_params *p) {
    for (size_t i = 0; i < p->n; i++) {
        p->e[i].t->data = p->data + p->e[i].offset;
        p->e[i].t->grad = p->grad + p->e[i].offset;
    }
}

/* A zeroed block of count floats (at least one, so an empty model is valid). */
static float *block_new(const flash_params *p) {
    const flash_backend *be = be_of();
    size_t n = p->count ? p->count : 1;
    float *b = be->alloc(n * sizeof(float));
    if (b) be->zero(b, n);
    return b;
}

flash_status flash_params_finalize(flash_params *p, flash_error *err) {
    if (!p) return flash_error_set(err, FLASH_ERR_RUNTIME, "params: NULL");
    if (p->finalized) return flash_error_set(err, FLASH_ERR_RUNTIME, "params: finalized twice");
    p->data = block_new(p);
    p->grad = block_new(p);
    if (!p->data || !p->grad) {
        be_of()->free(p->data);
        be_of()->free(p->grad);
        p->data = p->grad = NULL;
        return flash_error_set(err, FLASH_ERR_NOMEM, "params: cannot allocate %zu parameters", p->count);
    }
    point_views(p);
    p->finalized = true;
    return FLASH_OK;
}

size_t flash_params_count(const flash_params *p) { return p ? p->count : 0; }
size_t flash_params_n(const flash_params *p) { return p ? p->n : 0; }
flash_tensor *flash_params_at(flash_params *p, size_t i) { return p && i < p->n ? p->e[i].t : NULL; }
const char *flash_params_name(const flash_params *p, size_t i) { return p && i < p->n ? p->e[i].name : NULL; }

flash_tensor *flash_params_find(flash_params *p, const char *name) {
    if (!p || !name) return NULL;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->e[i].name, name) == 0) return p->e[i].t;
    return NULL;
}

float *flash_params_data(flash_params *p) { return p ? p->data : NULL; }
float *flash_params_grad(flash_params *p) { return p ? p->grad : NULL; }
float *flash_params_adam_m(flash_params *p) { return p ? p->m : NULL; }
float *flash_params_adam_v(flash_params *p) { return p ? p->v : NULL; }
float *flash_params_ema(flash_params *p) { return p ? p->ema : NULL; }

/* ---- initialisers ------------------------------------------------------------ */

void flash_init_uniform(flash_tensor *t, flash_rng *r, float bound) {
    if (t && t->data && r) flash_rng_fill_uniform(r, t->data, t->numel, -bound, bound);
}

void flash_init_normal(flash_tensor *t, flash_rng *r, float std) {
    if (!t || !t->data || !r) return;
    flash_rng_fill_normal(r, t->data, t->numel);
    for (size_t i = 0; i < t->numel; i++) t->data[i] *= std;
}

void flash_init_const(flash_tensor *t, float v) {
    if (t && t->data) flash_cpu_backend.fill(t->data, t->numel, v);
}

void flash_init_fan_in(flash_tensor *t, flash_rng *r, int fan_in) {
    flash_init_uniform(t, r, fan_in > 0 ? (float)(1.0 / sqrt((double)fan_in)) : 0.0f);
}

/* ---- gradients ---------------------------------------------------------------- */

void flash_params_zero_grad(flash_params *p) {
    if (p && p->grad) be_of()->zero(p->grad, p->count);
}

double flash_params_clip_grad(flash_params *p, double max_norm) {
    if (!p || !p->grad) return 0.0;
    const double norm = sqrt(be_of()->sum(p->grad, p->grad, p->count));
    /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when < 1 */
    if (max_norm > 0) {
        const double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0) be_of()->unary(FLASH_UN_AFFINE, p->grad, p->grad, p->count, (float)coef, 0.0f);
    }
    return norm;
}

bool flash_params_grad_finite(const flash_params *p) {
    if (!p || !p->grad) return true;
    if (p->be && p->be != &flash_cpu_backend) /* on a device: the sum of squares is finite iff every element is */
        return isfinite(p->be->sum(p->grad, p->grad, p->count));
    for (size_t i = 0; i < p->count; i++)
        if (!isfinite(p->grad[i])) return false;
    return true;
}

/* ---- optimiser and EMA ---------------------------------------------------------- */

size_t flash_params_set_lr_scale(flash_params *p, const char *prefix, float scale) {
    if (!p || !prefix || !(scale >= 0.0f)) return 0;
    size_t hits = 0, len = strlen(prefix);
    for (size_t i = 0; i < p->n; i++)
        if (strncmp(p->e[i].name, prefix, len) == 0) {
            p->e[i].lr_scale = scale;
            hits++;
        }
    return hits;
}

/* One Adam(W) update of the n scalars from off, at rate lr. */
static void adam_range(flash_params *p, size_t off, size_t n, const flash_adam *opt, float lr, double bc1,
                       double bc2) {
    const float b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps;
    const float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    const float decay = opt->weight_decay > 0 ? 1.0f - lr * opt->weight_decay : 1.0f;
    if (be_of()->adam) {
        be_of()->adam(p->data + off, p->grad + off, p->m + off, p->v + off, n, b1, b2, eps, step_size, inv_sqrt_bc2,
                      decay);
        return;
    }
    float *restrict w = p->data + off, *restrict g = p->grad + off, *restrict m = p->m + off, *restrict v = p->v + off;
    const long long cnt = (long long)n;
#pragma omp parallel for schedule(static) if (cnt > FLASH_PAR_THRESHOLD)
    for (long long i = 0; i < cnt; i++) {
        const float gi = g[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        const float denom = sqrtf(v[i]) * inv_sqrt_bc2 + eps;
        w[i] = w[i] * decay - step_size * m[i] / denom;
    }
}

flash_status flash_adam_step(flash_params *p, const flash_adam *opt, int64_t step, flash_error *err) {
    if (!p || !opt || !p->finalized) return flash_error_set(err, FLASH_ERR_RUNTIME, "adam: parameters not finalized");
    if (step < 1) return flash_error_set(err, FLASH_ERR_RUNTIME, "adam: step counts from 1, got %lld", (long long)step);
    if (!p->m) p->m = block_new(p);
    if (!p->v) p->v = block_new(p);
    if (!p->m || !p->v)
        return flash_error_set(err, FLASH_ERR_NOMEM, "adam: cannot allocate moments for %zu parameters", p->count);
    /* torch.optim.Adam/AdamW: decoupled decay first, then
     * p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps); a tensor with an
     * lr_scale is a parameter group of its own (lr and decay scaled, as
     * torch's per-group lr) */
    const double bc1 = 1.0 - pow((double)opt->beta1, (double)step), bc2 = 1.0 - pow((double)opt->beta2, (double)step);
    size_t i = 0;
    while (i < p->n) {
        size_t j = i + 1;
        while (j < p->n && p->e[j].lr_scale == p->e[i].lr_scale) j++;
        const size_t end = j < p->n ? p->e[j].offset : p->count;
        adam_range(p, p->e[i].offset, end - p->e[i].offset, opt, opt->lr * p->e[i].lr_scale, bc1, bc2);
        i = j;
    }
    return FLASH_OK;
}

flash_status flash_params_ema_update(flash_params *p, float decay, flash_error *err) {
    if (!p || !p->finalized) return flash_error_set(err, FLASH_ERR_RUNTIME, "ema: parameters not finalized");
    if (!p->ema) {
        p->ema = block_new(p);
        if (!p->ema) return flash_error_set(err, FLASH_ERR_NOMEM, "ema: cannot allocate %zu parameters", p->count);
        be_of()->copy(p->ema, p->data, p->count);
        return FLASH_OK;
    }
    if (be_of()->ema) {
        be_of()->ema(p->ema, p->data, p->count, decay);
        return FLASH_OK;
    }
    float *restrict e = p->ema;
    const float *restrict w = p->data;
    const float k = 1.0f - decay;
    const long long n = (long long)p->count;
#pragma omp parallel for schedule(static) if (n > FLASH_PAR_THRESHOLD)
    for (long long i = 0; i < n; i++) e[i] = decay * e[i] + k * w[i];
    return FLASH_OK;
}

flash_status flash_params_lerp(flash_params *dst, const flash_params *src, float mu, flash_error *err) {
    if (!dst || !src || !dst->finalized || !src->finalized)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "params lerp: parameters not finalized");
    if (dst->count != src->count || dst->n != src->n)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "params lerp: %zu parameters in %zu tensors vs %zu in %zu",
                               dst->count, dst->n, src->count, src->n);
    const flash_backend *be = be_of_p(dst);
    if (be != be_of_p(src))
        return flash_error_set(err, FLASH_ERR_RUNTIME, "params lerp: the blocks live on %s and %s", be->name,
                               be_of_p(src)->name);
    /* the EMA kernel computes exactly this (e = decay e + (1 - decay) w) */
    if (be->ema) {
        be->ema(dst->data, src->data, dst->count, mu);
        const char *m = be->last_error ? be->last_error() : NULL;
        return m ? flash_error_set(err, FLASH_ERR_RUNTIME, "params lerp: %s", m) : FLASH_OK;
    }
    float *restrict d = dst->data;
    const float *restrict w = src->data;
    const float k = 1.0f - mu;
    const long long n = (long long)dst->count;
#pragma omp parallel for schedule(static) if (n > FLASH_PAR_THRESHOLD)
    for (long long i = 0; i < n; i++) d[i] = mu * d[i] + k * w[i];
    return FLASH_OK;
}

flash_status flash_params_swap_ema(flash_params *p, flash_error *err) {
    if (!p || !p->finalized) return flash_error_set(err, FLASH_ERR_RUNTIME, "ema: parameters not finalized");
    if (!p->ema) return flash_error_set(err, FLASH_ERR_RUNTIME, "ema: no EMA weights yet (call flash_params_ema_update first)");
    float *t = p->data;
    p->data = p->ema;
    p->ema = t;
    point_views(p);
    return FLASH_OK;
}

flash_status flash_params_copy(flash_params *dst, const flash_params *src, flash_error *err) {
    return flash_params_copy_keeping(dst, src, NULL, err);
}

flash_status flash_params_copy_keeping(flash_params *dst, const flash_params *src, const char *keep,
                                       flash_error *err) {
    if (!dst || !src || !dst->finalized || !src->finalized)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "params copy: parameters not finalized");
    const size_t keep_len = keep ? strlen(keep) : 0;
    for (size_t i = 0; i < dst->n; i++) {
        const flash_param_entry *d = &dst->e[i];
        const flash_param_entry *s = NULL;
        for (size_t j = 0; j < src->n && !s; j++)
            if (strcmp(src->e[j].name, d->name) == 0) s = &src->e[j];
        if (!s && keep_len && strncmp(d->name, keep, keep_len) == 0) continue; /* kept as it is */
        if (!s) return flash_error_set(err, FLASH_ERR_RUNTIME, "params copy: source has no parameter '%s'", d->name);
        if (!flash_tensor_same_shape(d->t, s->t)) {
            char a[64], b[64];
            return flash_error_set(err, FLASH_ERR_RUNTIME, "params copy: '%s' has shape %s, source has %s", d->name,
                                   flash_tensor_shape_str(d->t, a, sizeof a), flash_tensor_shape_str(s->t, b, sizeof b));
        }
    }
    /* blocks on different backends (a teacher on the CPU, a student on a
     * device) copy through host memory */
    const flash_backend *bd = be_of_p(dst), *bs = be_of_p(src);
    float *host = NULL;
    if (bd != bs && !(host = malloc((src->count ? src->count : 1) * sizeof *host)))
        return flash_error_set(err, FLASH_ERR_NOMEM, "params copy: out of memory for %zu parameters", src->count);
    for (size_t i = 0; i < dst->n; i++) {
        flash_param_entry *d = &dst->e[i];
        for (size_t j = 0; j < src->n; j++)
            if (strcmp(src->e[j].name, d->name) == 0) {
                if (host) {
                    bs->to_host(host, src->e[j].t->data, d->t->numel);
                    bd->from_host(d->t->data, host, d->t->numel);
                } else {
                    bd->copy(d->t->data, src->e[j].t->data, d->t->numel);
                }
                break;
            }
    }
    free(host);
    const char *m = bd->last_error ? bd->last_error() : bs->last_error ? bs->last_error() : NULL;
    if (m) return flash_error_set(err, FLASH_ERR_RUNTIME, "params copy: %s", m);
    return FLASH_OK;
}

/* ---- devices ------------------------------------------------------------------ */

/* Copies one block to `to` (through host memory when neither side is the CPU's). */
static float *block_move(const flash_backend *from, const flash_backend *to, const float *src, size_t n,
                         float *host) {
    float *dst = to->alloc(n * sizeof(float));
    if (!dst) return NULL;
    from->to_host(host, src, n);
    to->from_host(dst, host, n);
    return dst;
}

flash_status flash_params_to_device(flash_params *p, const char *device, flash_error *err) {
    if (!p || !p->finalized) return flash_error_set(err, FLASH_ERR_RUNTIME, "params: not finalized");
    char msg[512] = "";
    const flash_backend *to = flash_backend_for(device, msg, sizeof msg);
    if (!to) return flash_error_set(err, FLASH_ERR_RUNTIME, "params: device '%s': %s", device ? device : "(null)", msg);
    const flash_backend *from = be_of();
    if (to == from) return FLASH_OK;
    const size_t n = p->count ? p->count : 1;
    float *host = malloc(n * sizeof(float));
    float **blocks[5] = {&p->data, &p->grad, &p->m, &p->v, &p->ema};
    float *moved[5] = {0};
    bool ok = host != NULL;
    for (int i = 0; ok && i < 5; i++)
        if (*blocks[i]) ok = (moved[i] = block_move(from, to, *blocks[i], n, host)) != NULL;
    free(host);
    const char *dev_err = to->last_error ? to->last_error() : NULL;
    if (!ok || dev_err) {
        for (int i = 0; i < 5; i++) to->free(moved[i]);
        if (dev_err) return flash_error_set(err, FLASH_ERR_RUNTIME, "params: moving to %s: %s", to->name, dev_err);
        return flash_error_set(err, FLASH_ERR_NOMEM, "params: cannot allocate %zu parameters on %s", p->count, to->name);
    }
    for (int i = 0; i < 5; i++)
        if (*blocks[i]) {
            from->free(*blocks[i]);
            *blocks[i] = moved[i];
        }
    p->be = to;
    point_views(p);
    return FLASH_OK;
}

const char *flash_params_device(const flash_params *p) { return p ? be_of()->name : NULL; }

flash_status flash_params_allreduce_grad(flash_params *p, flash_comm *comm, const char **path, flash_error *err) {
    if (path) *path = flash_comm_name(comm);
    if (!p || !p->finalized) return flash_error_set(err, FLASH_ERR_RUNTIME, "params: not finalized");
    if (flash_comm_size(comm) == 1 || !p->count) return FLASH_OK;
    const flash_backend *be = be_of();
    if (be == &flash_cpu_backend) return flash_comm_allreduce_sum(comm, p->grad, p->count, err);
    /* the backward pass's kernels are queued on the device's stream: the
     * collective must see their results */
    if (be->sync && be->sync() != 0) {
        const char *m = be->last_error ? be->last_error() : NULL;
        return flash_error_set(err, FLASH_ERR_RUNTIME, "params: before the gradient sum: %s", m ? m : "device error");
    }
    bool done = false;
    flash_status st = flash_comm_allreduce_sum_device(comm, be->name, p->grad, p->count, &done, err);
    if (st || done) {
        if (path && done) *path = flash_comm_device_name(comm);
        return st;
    }
    /* no device collective: a round trip through host memory, in a buffer
     * kept from one step to the next (the loop's thread alone sums) */
    if (path) *path = "host";
    static _Thread_local struct {
        float *p;
        size_t cap;
    } stage;
    if (stage.cap < p->count) {
        float *q = realloc(stage.p, p->count * sizeof *q);
        if (!q) return flash_error_set(err, FLASH_ERR_NOMEM, "params: %zu floats for the gradient sum", p->count);
        stage.p = q;
        stage.cap = p->count;
    }
    be->to_host(stage.p, p->grad, p->count);
    st = flash_comm_allreduce_sum(comm, stage.p, p->count, err);
    if (st == FLASH_OK) be->from_host(p->grad, stage.p, p->count);
    const char *m = be->last_error ? be->last_error() : NULL;
    if (st == FLASH_OK && m) st = flash_error_set(err, FLASH_ERR_RUNTIME, "params: gradient sum: %s", m);
    return st;
}

flash_status flash_params_to_host(const flash_params *p, float *host, flash_error *err) {
    if (!p || !p->finalized || !host) return flash_error_set(err, FLASH_ERR_RUNTIME, "params: not finalized");
    be_of()->to_host(host, p->data, p->count);
    const char *m = be_of()->last_error ? be_of()->last_error() : NULL;
    if (m) return flash_error_set(err, FLASH_ERR_RUNTIME, "params: %s", m);
    return FLASH_OK;
}
