/* Elementwise ops: binary with broadcasting of b over a, scalar ops,
 * per-sample axpby, unary activations and where.
 *
 * Broadcast backward: a's gradient has a's shape; b's gradient sums the
 * output gradient over the dims b was broadcast along (bcast_reduce).
 */
#include "tensor/tensor_internal.h"

/* ---- binary ------------------------------------------------------------- */

static void binary_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *a = e->in[0], *b = e->in[1], *y = e->out;
    const flash_binop op = (flash_binop)e->iarg[0];
    const flash_backend *be = c->be;
    flash_bcast bc;
    flash_bcast_make(&bc, a, b);
    const float *gy = y->grad;
    bool acc;
    float *ga = flash_grad_write(c, a, &acc);
    if (ga) {
        switch (op) {
        case FLASH_BIN_ADD:
        case FLASH_BIN_SUB: be->unary_backward(FLASH_UN_AFFINE, ga, gy, NULL, NULL, a->numel, 1.0f, acc); break;
        case FLASH_BIN_MUL: be->binary(FLASH_BIN_MUL, ga, gy, b->data, &bc, acc); break;
        case FLASH_BIN_DIV: be->binary(FLASH_BIN_DIV, ga, gy, b->data, &bc, acc); break;
        }
    }
    float *gb = flash_grad_write(c, b, &acc);
    if (!gb) return;
    double *scratch = flash_arena_alloc(c, bc.outer * sizeof(double));
    if (!scratch) return;
    switch (op) {
    case FLASH_BIN_ADD: be->bcast_reduce(gb, gy, NULL, &bc, 1.0f, scratch, acc); break;
    case FLASH_BIN_SUB: be->bcast_reduce(gb, gy, NULL, &bc, -1.0f, scratch, acc); break;
    case FLASH_BIN_MUL: be->bcast_reduce(gb, gy, a->data, &bc, 1.0f, scratch, acc); break;
    case FLASH_BIN_DIV: {
        /* d(a/b)/db = -a/b^2 = -(y/b): reduce -(gy/b) * y */
        float *t = flash_arena_alloc(c, a->numel * sizeof(float));
        if (!t) return;
        be->binary(FLASH_BIN_DIV, t, gy, b->data, &bc, false);
        be->bcast_reduce(gb, t, y->data, &bc, -1.0f, scratch, acc);
        break;
    }
    }
}

static flash_tensor *binary(flash_ctx *c, const char *name, flash_binop op, flash_tensor *a, flash_tensor *b) {
    if (!c || !a || !b) return NULL;
    if (!flash_check_broadcast(c, name, a, b)) return NULL;
    flash_tensor *y = flash_tensor_like(c, a);
    if (!y) return NULL;
    flash_bcast bc;
    flash_bcast_make(&bc, a, b);
    c->be->binary(op, y->data, a->data, b->data, &bc, false);
    flash_tensor *in[2] = {a, b};
    flash_tape_entry *e = flash_tape_record(c, name, binary_backward, y, 2, in);
    if (e) e->iarg[0] = (int)op;
    return y;
}

flash_tensor *flash_add(flash_ctx *c, flash_tensor *a, flash_tensor *b) {
    return binary(c, "add", FLASH_BIN_ADD, a, b);
}
flash_tensor *flash_sub(flash_ctx *c, flash_tensor *a, flash_tensor *b) {
    return binary(c, "sub", FLASH_BIN_SUB, a, b);
}
flash_tensor *flash_mul(flash_ctx *c, flash_tensor *a, flash_tensor *b) {
    return binary(c, "mul", FLASH_BIN_MUL, a, b);
}
flash_tensor *flash_div(flash_ctx *c, flash_tensor *a, flash_tensor *b) {
    return binary(c, "div", FLASH_BIN_DIV, a, b);
}

/* ---- unary ---------------------------------------------------------------- */

static void unary_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0], *y = e->out;
    bool acc;
    float *gx = flash_grad_write(c, x, &acc);
    if (gx)
        c->be->unary_backward((flash_unop)e->iarg[0], gx, y->grad, x->data, y->data, x->numel, e->farg[0], acc);
}

static flash_tensor *unary(flash_ctx *c, const char *name, flash_unop op, flash_tensor *x, float a, float b) {
    if (!c || !x) return NULL;
    flash_tensor *y = flash_tensor_like(c, x);
    if (!y) return NULL;
    c->be->unary(op, y->data, x->data, x->numel, a, b);
    flash_tape_entry *e = flash_tape_record(c, name, unary_backward, y, 1, &x);
    if (e) {
        e->iarg[0] = (int)op;
        e->farg[0] = a;
    }
    return y;
}

flash_tensor *flash_affine(flash_ctx *c, flash_tensor *x, float s, float b) {
    return unary(c, "affine", FLASH_UN_AFFINE, x, s, b);
}
flash_tensor *flash_scale(flash_ctx *c, flash_tensor *x, float s) { return unary(c, "scale", FLASH_UN_AFFINE, x, s, 0); }
flash_tensor *flash_add_scalar(flash_ctx *c, flash_tensor *x, float s) {
    return unary(c, "add_scalar", FLASH_UN_AFFINE, x, 1.0f, s);
}
flash_tensor *flash_neg(flash_ctx *c, flash_tensor *x) { return unary(c, "neg", FLASH_UN_NEG, x, 0, 0); }
flash_tensor *flash_exp(flash_ctx *c, flash_tensor *x) { return unary(c, "exp", FLASH_UN_EXP, x, 0, 0); }
flash_tensor *flash_log(flash_ctx *c, flash_tensor *x) { return unary(c, "log", FLASH_UN_LOG, x, 0, 0); }
flash_tensor *flash_sqrt(flash_ctx *c, flash_tensor *x) { return unary(c, "sqrt", FLASH_UN_SQRT, x, 0, 0); }
flash_tensor *flash_square(flash_ctx *c, flash_tensor *x) { return unary(c, "square", FLASH_UN_SQUARE, x, 0, 0); }
flash_tensor *flash_abs(flash_ctx *c, flash_tensor *x) { return unary(c, "abs", FLASH_UN_ABS, x, 0, 0); }
flash_tensor *flash_silu(flash_ctx *c, flash_tensor *x) { return unary(c, "silu", FLASH_UN_SILU, x, 0, 0); }
flash_tensor *flash_relu(flash_ctx *c, flash_tensor *x) { return unary(c, "relu", FLASH_UN_RELU, x, 0, 0); }
flash_tensor *flash_leaky_relu(flash_ctx *c, flash_tensor *x, float slope) {
    return unary(c, "leaky_relu", FLASH_UN_LEAKY_RELU, x, slope, 0);
}
flash_tensor *flash_softplus(flash_ctx *c, flash_tensor *x) {
    return unary(c, "softplus", FLASH_UN_SOFTPLUS, x, 0, 0);
}
flash_tensor *flash_tanh(flash_ctx *c, flash_tensor *x) { return unary(c, "tanh", FLASH_UN_TANH, x, 0, 0); }

/* ---- axpby ------------------------------------------------------------------ */

/* saved: the 2N per-sample coefficients (a then b) */
static void axpby_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0], *y = e->in[1], *out = e->out;
    const float *coef = e->saved;
    const size_t rows = (size_t)out->shape[0], inner = out->numel / rows;
    bool acc;
    float *gx = flash_grad_write(c, x, &acc);
    if (gx) c->be->axpby(gx, coef, out->grad, NULL, NULL, rows, inner, acc);
    float *gy = y ? flash_grad_write(c, y, &acc) : NULL;
    if (gy) c->be->axpby(gy, coef + rows, out->grad, NULL, NULL, rows, inner, acc);
}

flash_tensor *flash_axpby(flash_ctx *c, const float *a, flash_tensor *x, const float *b, flash_tensor *y) {
    if (!c || !a || !x) return NULL;
    if (y && !flash_check_same_shape(c, "axpby", x, y)) return NULL;
    if (y && !b) return flash_op_fail(c, "axpby", "y given without coefficients b");
    const size_t rows = (size_t)x->shape[0], inner = x->numel / rows;
    flash_tensor *out = flash_tensor_like(c, x);
    if (!out) return NULL;
    c->be->axpby(out->data, a, x->data, y ? b : NULL, y ? y->data : NULL, rows, inner, false);
    flash_tensor *in[2] = {x, y};
    flash_tape_entry *e = flash_tape_record(c, "axpby", axpby_backward, out, 2, in);
    if (e) {
        float *coef = flash_host_alloc(c, 2 * rows * sizeof(float));
        if (!coef) return NULL;
        for (size_t r = 0; r < rows; r++) {
            coef[r] = a[r];
            coef[rows + r] = y ? b[r] : 0.0f;
        }
        e->saved = coef;
    }
    return out;
}

/* ---- where ------------------------------------------------------------------ */

static void where_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *mask = e->in[0], *a = e->in[1], *b = e->in[2];
    flash_bcast bc;
    flash_bcast_make(&bc, a, mask);
    float *ga = flash_grad_of(c, a), *gb = flash_grad_of(c, b);
    if (ga || gb) c->be->where_backward(ga, gb, mask->data, e->out->grad, &bc);
}

flash_tensor *flash_where(flash_ctx *c, flash_tensor *mask, flash_tensor *a, flash_tensor *b) {
    if (!c || !mask || !a || !b) return NULL;
    if (!flash_check_same_shape(c, "where", a, b) || !flash_check_broadcast(c, "where", a, mask)) return NULL;
    flash_tensor *y = flash_tensor_like(c, a);
    if (!y) return NULL;
    flash_bcast bc;
    flash_bcast_make(&bc, a, mask);
    c->be->where(y->data, mask->data, a->data, b->data, &bc);
    /* the mask gets no gradient: it is recorded only to be read */
    flash_tensor *in[3] = {mask, a, b};
    flash_tensor *din[2] = {a, b};
    if (flash_needs_grad(a) || flash_needs_grad(b)) {
        flash_tape_entry *e = flash_tape_record(c, "where", where_backward, y, 2, din);
        if (e) {
            e->n_in = 3;
            for (int i = 0; i < 3; i++) e->in[i] = in[i];
        }
    }
    return y;
}
