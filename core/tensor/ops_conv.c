/* 2-D convolution (cross-correlation, as in PyTorch's Conv2d): the op, its
 * backward pass (the plain reference the tests check it against is
 * tests/ops_ref/).
 *
 *   y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] x[n, c, i s - pad + p, j s - pad + q]
 *
 * with zeros outside x. The fast path is the backend's conv2d kernels. When
 * the op goes on the tape, the forward keeps data for the backward (x in the
 * backend's layout) in arena memory held by the tape entry.
 */
#include <string.h>

#include "tensor/tensor_internal.h"

/* ---- op --------------------------------------------------------------- */

static void geom_from(flash_conv_geom *g, const flash_ctx *c, const flash_tensor *x, const flash_tensor *w,
                      const flash_tensor *b, int stride, int pad) {
    g->precision = c->precision;
    g->n = x->shape[0];
    g->cin = x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->cout = w->shape[0];
    g->k = w->shape[2];
    g->stride = stride;
    g->pad = pad;
    g->ho = (g->h + 2 * pad - g->k) / stride + 1;
    g->wo = (g->w + 2 * pad - g->k) / stride + 1;
    g->bias = b != NULL;
}

static void conv2d_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0], *w = e->in[1], *b = e->in[2], *y = e->out;
    flash_conv_geom g;
    geom_from(&g, c, x, w, b, e->iarg[0], e->iarg[1]);
    g.precision = e->iarg[2]; /* the forward's: its saved data is in that layout */
    float *gx = flash_grad_of(c, x), *gw = flash_grad_of(c, w), *gb = flash_grad_of(c, b);
    if (c->failed || (!gx && !gw && !gb)) return;
    char msg[256] = "";
    if (c->be->conv2d_backward(&g, gx, gw, gb, y->grad, x->data, w->data, e->saved, msg, sizeof msg))
        flash_op_fail(c, "conv2d", "backward: %s", msg);
}

flash_tensor *flash_conv2d(flash_ctx *c, flash_tensor *x, flash_tensor *w, flash_tensor *b, int stride, int pad) {
    if (!c || !x || !w) return NULL;
    if (c->failed) return NULL;
    char sx[64], sw[64], sb[64];
    bool ok = x->ndim == 4 && w->ndim == 4 && w->shape[1] == x->shape[1] && w->shape[2] == w->shape[3] &&
              (!b || (b->ndim == 1 && b->numel == (size_t)w->shape[0]));
    if (!ok)
        return flash_op_fail(c, "conv2d", "expects x (N, Cin, H, W), w (Cout, Cin, k, k), b (Cout): got x %s, w %s, b %s",
                             flash_tensor_shape_str(x, sx, sizeof sx), flash_tensor_shape_str(w, sw, sizeof sw),
                             b ? flash_tensor_shape_str(b, sb, sizeof sb) : "none");
    if (stride < 1 || pad < 0 || pad >= w->shape[2] || x->shape[2] + 2 * pad < w->shape[2] ||
        x->shape[3] + 2 * pad < w->shape[3])
        return flash_op_fail(c, "conv2d", "invalid stride %d / pad %d for x %s and a %dx%d kernel", stride, pad,
                             flash_tensor_shape_str(x, sx, sizeof sx), w->shape[2], w->shape[3]);
    flash_conv_geom g;
    geom_from(&g, c, x, w, b, stride, pad);
    flash_tensor *y = flash_tensor_4d(c, g.n, g.cout, g.ho, g.wo);
    if (!y) return NULL;
    char msg[256] = "";
    /* memory for the backward only when there will be one */
    const bool taped = c->grad_on && (flash_needs_grad(x) || flash_needs_grad(w) || flash_needs_grad(b));
    void *saved = NULL;
    if (taped) {
        size_t saved_bytes = 0;
        if (c->be->conv2d_saved_bytes(&g, &saved_bytes, msg, sizeof msg))
            return flash_op_fail(c, "conv2d", "x %s, w %s: %s", flash_tensor_shape_str(x, sx, sizeof sx),
                                 flash_tensor_shape_str(w, sw, sizeof sw), msg);
        saved = flash_arena_alloc(c, saved_bytes);
        if (!saved) return NULL;
    }
    if (c->be->conv2d_forward(&g, y->data, x->data, w->data, b ? b->data : NULL, saved, msg, sizeof msg))
        return flash_op_fail(c, "conv2d", "x %s, w %s: %s", flash_tensor_shape_str(x, sx, sizeof sx),
                             flash_tensor_shape_str(w, sw, sizeof sw), msg);
    flash_tensor *ins[3] = {x, w, b};
    flash_tape_entry *e = flash_tape_record(c, "conv2d", conv2d_backward, y, 3, ins);
    if (e) {
        e->iarg[0] = stride;
        e->iarg[1] = pad;
        e->iarg[2] = g.precision;
        e->saved = saved;
    }
    return y;
}
