/* Reductions and losses. Sums accumulate in double over fixed partitions
 * (see backend_cpu.c), so results are reproducible run to run. */
#include <math.h>
#include <string.h>

#include "tensor/tensor_internal.h"

static flash_tensor *scalar_out(flash_ctx *c, double v) {
    flash_tensor *y = flash_tensor_1d(c, 1);
    if (!y) return NULL;
    const float f = (float)v;
    c->be->from_host(y->data, &f, 1);
    return y;
}

static float host_scalar(flash_ctx *c, const float *dev) {
    float v;
    c->be->to_host(&v, dev, 1);
    return v;
}

/* ---- sum / mean over everything ------------------------------------------- */

/* farg[0]: the scale applied in forward (1 for sum, 1/n for mean) */
static void sum_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0];
    bool acc;
    float *gx = flash_grad_write(c, x, &acc);
    if (!gx) return;
    const float g = host_scalar(c, e->out->grad) * e->farg[0];
    if (acc)
        c->be->unary(FLASH_UN_AFFINE, gx, gx, x->numel, 1.0f, g);
    else
        c->be->fill(gx, x->numel, g);
}

static flash_tensor *reduce_all(flash_ctx *c, const char *name, flash_tensor *x, bool mean) {
    if (!c || !x) return NULL;
    const double scale = mean ? 1.0 / (double)x->numel : 1.0;
    flash_tensor *y = scalar_out(c, c->be->sum(x->data, NULL, x->numel) * scale);
    if (!y) return NULL;
    flash_tape_entry *e = flash_tape_record(c, name, sum_backward, y, 1, &x);
    if (e) e->farg[0] = (float)scale;
    return y;
}

flash_tensor *flash_sum(flash_ctx *c, flash_tensor *x) { return reduce_all(c, "sum", x, false); }
flash_tensor *flash_mean(flash_ctx *c, flash_tensor *x) { return reduce_all(c, "mean", x, true); }

/* ---- per sample -------------------------------------------------------------- */

static void per_sample_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0], *y = e->out;
    float *gx = flash_grad_of(c, x);
    if (!gx) return;
    const size_t rows = (size_t)x->shape[0], inner = x->numel / rows;
    float *gs = flash_host_alloc(c, rows * sizeof(float));
    if (!gs) return;
    c->be->to_host(gs, y->grad, rows);
    for (size_t r = 0; r < rows; r++) gs[r] *= e->farg[0];
    if (c->host != c) { /* binary reads backend memory */
        float *d = flash_arena_alloc(c, rows * sizeof(float));
        if (!d) return;
        c->be->from_host(d, gs, rows);
        gs = d;
    }
    flash_bcast bc;
    flash_bcast_rows(&bc, rows, inner);
    c->be->binary(FLASH_BIN_ADD, gx, gx, gs, &bc, false);
}

static flash_tensor *reduce_rows(flash_ctx *c, const char *name, flash_tensor *x, bool mean) {
    if (!c || !x) return NULL;
    const size_t rows = (size_t)x->shape[0], inner = x->numel / rows;
    double *s = flash_host_alloc(c, rows * sizeof(double));
    float *h = flash_host_alloc(c, rows * sizeof(float));
    flash_tensor *y = flash_tensor_1d(c, x->shape[0]);
    if (!s || !h || !y) return NULL;
    c->be->sum_rows(s, x->data, rows, inner);
    const double scale = mean ? 1.0 / (double)inner : 1.0;
    for (size_t r = 0; r < rows; r++) h[r] = (float)(s[r] * scale);
    c->be->from_host(y->data, h, rows);
    flash_tape_entry *e = flash_tape_record(c, name, per_sample_backward, y, 1, &x);
    if (e) e->farg[0] = (float)scale;
    return y;
}

flash_tensor *flash_sum_per_sample(flash_ctx *c, flash_tensor *x) { return reduce_rows(c, "sum_per_sample", x, false); }
flash_tensor *flash_mean_per_sample(flash_ctx *c, flash_tensor *x) {
    return reduce_rows(c, "mean_per_sample", x, true);
}

/* ---- mse ------------------------------------------------------------------------ */

static void mse_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *a = e->in[0], *b = e->in[1];
    /* d/da mean((a-b)^2) = 2 (a - b) / n */
    const float k = 2.0f * host_scalar(c, e->out->grad) / (float)a->numel, mk = -k;
    bool acc;
    float *ga = flash_grad_write(c, a, &acc);
    if (ga) c->be->axpby(ga, &k, a->data, &mk, b->data, 1, a->numel, acc);
    float *gb = flash_grad_write(c, b, &acc);
    if (gb) c->be->axpby(gb, &mk, a->data, &k, b->data, 1, a->numel, acc);
}

flash_tensor *flash_mse(flash_ctx *c, flash_tensor *a, flash_tensor *b) {
    if (!c || !a || !b) return NULL;
    if (!flash_check_same_shape(c, "mse", a, b)) return NULL;
    flash_tensor *y = scalar_out(c, c->be->sq_diff_sum(a->data, b->data, a->numel) / (double)a->numel);
    if (!y) return NULL;
    flash_tensor *in[2] = {a, b};
    flash_tape_record(c, "mse", mse_backward, y, 2, in);
    return y;
}

/* ---- softmax and cross-entropy ------------------------------------------------------ */

static bool check_logits(flash_ctx *c, const char *op, const flash_tensor *x) {
    if (x->ndim == 2) return true;
    char s[64];
    flash_op_fail(c, op, "logits must be (N, K), got %s", flash_tensor_shape_str(x, s, sizeof s));
    return false;
}

flash_tensor *flash_softmax(flash_ctx *c, flash_tensor *logits) {
    if (!c || !logits) return NULL;
    if (!check_logits(c, "softmax", logits)) return NULL;
    flash_tensor *p = flash_tensor_like(c, logits);
    if (!p) return NULL;
    c->be->softmax_rows(p->data, NULL, logits->data, (size_t)logits->shape[0], (size_t)logits->shape[1]);
    return p;
}

/* saved: softmax probabilities (N, K); saved2: labels copy (N) */
static void cross_entropy_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0];
    float *gx = flash_grad_of(c, x);
    if (!gx) return;
    const size_t n = (size_t)x->shape[0], k = (size_t)x->shape[1];
    const float *p = e->saved; /* host copy */
    const int *lab = e->saved2;
    const float g = host_scalar(c, e->out->grad) / (float)n;
    /* d/dx_j of -log softmax(x)_label = p_j - [j == label], formed on the
     * host and added by the backend */
    float *d = flash_host_alloc(c, n * k * sizeof(float));
    if (!d) return;
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < k; j++) d[r * k + j] = g * (p[r * k + j] - ((int)j == lab[r] ? 1.0f : 0.0f));
    if (c->host != c) {
        float *dd = flash_arena_alloc(c, n * k * sizeof(float));
        if (!dd) return;
        c->be->from_host(dd, d, n * k);
        d = dd;
    }
    const float one = 1.0f;
    c->be->axpby(gx, &one, d, NULL, NULL, 1, n * k, true);
}

flash_tensor *flash_cross_entropy(flash_ctx *c, flash_tensor *logits, const int *labels) {
    if (!c || !logits || !labels) return NULL;
    if (!check_logits(c, "cross_entropy", logits)) return NULL;
    const int n = logits->shape[0], k = logits->shape[1];
    for (int r = 0; r < n; r++)
        if (labels[r] < 0 || labels[r] >= k)
            return flash_op_fail(c, "cross_entropy", "label %d of sample %d is outside [0, %d)", labels[r], r, k);
    float *p = flash_arena_alloc(c, logits->numel * sizeof(float));
    double *lse = flash_host_alloc(c, (size_t)n * sizeof(double));
    if (!p || !lse) return NULL;
    c->be->softmax_rows(p, lse, logits->data, (size_t)n, (size_t)k);
    /* the backward and the picked logits are read on the host */
    const float *hx = logits->data;
    if (c->host != c) {
        float *hp = flash_host_alloc(c, logits->numel * sizeof(float));
        float *hl = flash_host_alloc(c, logits->numel * sizeof(float));
        if (!hp || !hl) return NULL;
        c->be->to_host(hp, p, logits->numel);
        c->be->to_host(hl, logits->data, logits->numel);
        p = hp;
        hx = hl;
    }
    double nll = 0;
    for (int r = 0; r < n; r++) nll += lse[r] - (double)hx[(size_t)r * (size_t)k + (size_t)labels[r]];
    flash_tensor *y = scalar_out(c, nll / n);
    if (!y) return NULL;
    flash_tape_entry *e = flash_tape_record(c, "cross_entropy", cross_entropy_backward, y, 1, &logits);
    if (e) {
        int *lab = flash_host_alloc(c, (size_t)n * sizeof(int));
        if (!lab) return NULL;
        memcpy(lab, labels, (size_t)n * sizeof(int));
        e->saved = p;
        e->saved2 = lab;
    }
    return y;
}
