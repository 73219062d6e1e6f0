/* Views (reshape, narrow, detach), copy, concat, embeddings, channel bias,
 * random tensors.
 *
 * A view shares its source's data but has its own gradient buffer; its tape
 * entry adds the view's gradient into the matching part of the source's
 * gradient, so gradients flow through views like through any op.
 */
#include <math.h>
#include <string.h>

#include "tensor/tensor_internal.h"

/* ---- views ------------------------------------------------------------------ */

/* iarg[0]: offset of the view in the source (elements) */
static void view_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0], *y = e->out;
    if (y->numel == x->numel) { /* reshape, copy: the whole gradient */
        bool acc;
        float *gx = flash_grad_write(c, x, &acc);
        if (gx) c->be->copy2d(gx, 0, y->grad, 0, 1, y->numel, acc);
        return;
    }
    float *gx = flash_grad_of(c, x);
    if (gx) c->be->copy2d(gx + (size_t)e->iarg[0], 0, y->grad, 0, 1, y->numel, true);
}

static flash_tensor *view(flash_ctx *c, const char *name, flash_tensor *x, size_t offset, int ndim, const int *shape) {
    flash_tensor *y = flash_tensor_view_of(c, x->data + offset, ndim, shape);
    if (!y) return NULL;
    flash_tape_entry *e = flash_tape_record(c, name, view_backward, y, 1, &x);
    if (e) e->iarg[0] = (int)offset;
    return y;
}

flash_tensor *flash_reshape(flash_ctx *c, flash_tensor *x, int ndim, const int *shape) {
    if (!c || !x || !shape) return NULL;
    if (ndim < 1 || ndim > FLASH_MAX_DIMS) return flash_op_fail(c, "reshape", "ndim %d is not in [1, 4]", ndim);
    /* one dim may be -1: inferred from the others */
    int s[FLASH_MAX_DIMS], infer = -1;
    size_t known = 1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0)
            infer = i;
        else if (s[i] < 1)
            return flash_op_fail(c, "reshape", "bad dim %d at position %d", s[i], i);
        else
            known *= (size_t)s[i];
    }
    if (infer >= 0 && known > 0 && x->numel % known == 0) s[infer] = (int)(x->numel / known);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= s[i] > 0 ? (size_t)s[i] : 0;
    if (n != x->numel) {
        char sx[64];
        return flash_op_fail(c, "reshape", "cannot reshape %s (%zu elements) to %d dims with %zu elements",
                             flash_tensor_shape_str(x, sx, sizeof sx), x->numel, ndim, n);
    }
    return view(c, "reshape", x, 0, ndim, s);
}

flash_tensor *flash_narrow(flash_ctx *c, flash_tensor *x, int start, int len) {
    if (!c || !x) return NULL;
    if (start < 0 || len < 1 || start + len > x->shape[0])
        return flash_op_fail(c, "narrow", "range [%d, %d) outside dim 0 of size %d", start, start + len,
                             x->shape[0]);
    int s[FLASH_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) s[i] = x->shape[i];
    s[0] = len;
    const size_t inner = x->numel / (size_t)x->shape[0];
    return view(c, "narrow", x, (size_t)start * inner, x->ndim, s);
}

flash_tensor *flash_detach(flash_ctx *c, flash_tensor *x) {
    if (!c || !x) return NULL;
    return flash_tensor_view_of(c, x->data, x->ndim, x->shape);
}

flash_tensor *flash_copy(flash_ctx *c, flash_tensor *x) {
    if (!c || !x) return NULL;
    flash_tensor *y = flash_tensor_like(c, x);
    if (!y) return NULL;
    c->be->copy(y->data, x->data, x->numel);
    flash_tape_entry *e = flash_tape_record(c, "copy", view_backward, y, 1, &x);
    if (e) e->iarg[0] = 0;
    return y;
}

/* ---- concat along dim 1 ------------------------------------------------------- */

static void concat_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *a = e->in[0], *b = e->in[1], *y = e->out;
    const size_t rows = (size_t)y->shape[0], ia = a->numel / rows, ib = b->numel / rows;
    bool acc;
    float *ga = flash_grad_write(c, a, &acc);
    if (ga) c->be->copy2d(ga, ia, y->grad, ia + ib, rows, ia, acc);
    float *gb = flash_grad_write(c, b, &acc);
    if (gb) c->be->copy2d(gb, ib, y->grad + ia, ia + ib, rows, ib, acc);
}

flash_tensor *flash_concat(flash_ctx *c, flash_tensor *a, flash_tensor *b) {
    if (!c || !a || !b) return NULL;
    bool ok = a->ndim == b->ndim && a->ndim >= 2;
    for (int i = 0; ok && i < a->ndim; i++) ok = i == 1 || a->shape[i] == b->shape[i];
    if (!ok) {
        char sa[64], sb[64];
        return flash_op_fail(c, "concat", "shapes %s and %s differ outside dim 1",
                             flash_tensor_shape_str(a, sa, sizeof sa), flash_tensor_shape_str(b, sb, sizeof sb));
    }
    int s[FLASH_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) s[i] = a->shape[i];
    s[1] = a->shape[1] + b->shape[1];
    flash_tensor *y = flash_tensor_new(c, a->ndim, s);
    if (!y) return NULL;
    const size_t rows = (size_t)s[0], ia = a->numel / rows, ib = b->numel / rows;
    c->be->copy2d(y->data, ia + ib, a->data, ia, rows, ia, false);
    c->be->copy2d(y->data + ia, ia + ib, b->data, ib, rows, ib, false);
    flash_tensor *in[2] = {a, b};
    flash_tape_record(c, "concat", concat_backward, y, 2, in);
    return y;
}

/* ---- embeddings ----------------------------------------------------------------- */

/* saved: the index array (n ints) */
static void embedding_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *table = e->in[0], *y = e->out;
    float *gt = flash_grad_of(c, table);
    if (gt) c->be->scatter_add_rows(gt, y->grad, e->saved, (size_t)y->shape[0], (size_t)y->shape[1]);
}

flash_tensor *flash_embedding(flash_ctx *c, flash_tensor *table, const int *idx, int n) {
    if (!c || !table || !idx) return NULL;
    if (table->ndim != 2) {
        char s[64];
        return flash_op_fail(c, "embedding", "table must be (V, D), got %s",
                             flash_tensor_shape_str(table, s, sizeof s));
    }
    if (n < 1) return flash_op_fail(c, "embedding", "needs at least one index, got %d", n);
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= table->shape[0])
            return flash_op_fail(c, "embedding", "index %d at position %d is outside [0, %d)", idx[i], i,
                                 table->shape[0]);
    flash_tensor *y = flash_tensor_2d(c, n, table->shape[1]);
    if (!y) return NULL;
    c->be->gather_rows(y->data, table->data, idx, (size_t)n, (size_t)table->shape[1]);
    flash_tape_entry *e = flash_tape_record(c, "embedding", embedding_backward, y, 1, &table);
    if (e) {
        int *saved = flash_host_alloc(c, (size_t)n * sizeof(int));
        if (!saved) return NULL;
        memcpy(saved, idx, (size_t)n * sizeof(int));
        e->saved = saved;
    }
    return y;
}

/* The sinusoidal embedding of DDPM/ADM (guided-diffusion's
 * timestep_embedding): [sin(t f_i), cos(t f_i)], f_i = max_period^(-i/half);
 * an odd dim gets a zero last column. */
flash_tensor *flash_timestep_embedding(flash_ctx *c, const float *t, int n, int dim, float max_period) {
    if (!c || !t) return NULL;
    if (n < 1 || dim < 1) return flash_op_fail(c, "timestep_embedding", "bad size n=%d dim=%d", n, dim);
    if (!(max_period > 0.0f))
        return flash_op_fail(c, "timestep_embedding", "max_period must be positive, got %g", (double)max_period);
    flash_tensor *y = flash_tensor_2d(c, n, dim);
    if (!y) return NULL;
    float *h = flash_host_alloc(c, (size_t)n * (size_t)dim * sizeof(float));
    if (!h) return NULL;
    const int half = dim / 2;
    for (int r = 0; r < n; r++) {
        float *row = h + (size_t)r * (size_t)dim;
        for (int i = 0; i < half; i++) {
            double f = exp(-log((double)max_period) * (double)i / (double)half);
            double a = (double)t[r] * f;
            row[i] = (float)sin(a);
            row[half + i] = (float)cos(a);
        }
        if (dim % 2) row[dim - 1] = 0.0f;
    }
    c->be->from_host(y->data, h, y->numel);
    return y;
}

flash_tensor *flash_add_channel_bias(flash_ctx *c, flash_tensor *x, flash_tensor *v) {
    if (!c || !x || !v) return NULL;
    if (x->ndim != 4 || v->ndim != 2 || v->shape[0] != x->shape[0] || v->shape[1] != x->shape[1]) {
        char sx[64], sv[64];
        return flash_op_fail(c, "add_channel_bias", "needs x (N, C, H, W) and v (N, C), got %s and %s",
                             flash_tensor_shape_str(x, sx, sizeof sx), flash_tensor_shape_str(v, sv, sizeof sv));
    }
    int s[4] = {v->shape[0], v->shape[1], 1, 1};
    return flash_add(c, x, flash_reshape(c, v, 4, s));
}

flash_tensor *flash_randn(flash_ctx *c, flash_rng *r, int ndim, const int *shape) {
    if (!c || !r) return NULL;
    flash_tensor *t = flash_tensor_new(c, ndim, shape);
    if (!t) return NULL;
    if (c->host == c) {
        flash_rng_fill_normal(r, t->data, t->numel);
        return t;
    }
    float *h = flash_host_alloc(c, t->numel * sizeof(float)); /* device memory: draw on the host, copy in */
    if (!h) return NULL;
    flash_rng_fill_normal(r, h, t->numel);
    c->be->from_host(t->data, h, t->numel);
    return t;
}
