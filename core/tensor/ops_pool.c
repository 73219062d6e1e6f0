/* Resampling: nearest-neighbour 2x upsampling and k x k average pooling
 * (stride k): the ops and their backward passes (the tests' plain
 * references are tests/ops_ref/). Both work on any tensor of 3 or more
 * dims, treating the leading dims as a stack of H x W planes.
 */
#include <string.h>

#include "tensor/tensor_internal.h"

/* ---- ops -------------------------------------------------------------- */

/* x as nc planes of h x w */
static void planes(const flash_tensor *x, int *nc, int *h, int *w) {
    *h = x->shape[x->ndim - 2];
    *w = x->shape[x->ndim - 1];
    *nc = (int)(x->numel / ((size_t)*h * *w));
}

static void upsample_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0];
    float *gx = flash_grad_of(c, x);
    if (!gx) return;
    int nc, h, w;
    planes(x, &nc, &h, &w);
    c->be->upsample2x_backward(gx, e->out->grad, nc, h, w);
}

flash_tensor *flash_upsample_nearest2x(flash_ctx *c, flash_tensor *x) {
    if (!c || !x) return NULL;
    if (c->failed) return NULL;
    char sx[64];
    if (x->ndim < 3)
        return flash_op_fail(c, "upsample_nearest2x", "expects x (N, C, H, W), got %s",
                             flash_tensor_shape_str(x, sx, sizeof sx));
    int nc, h, w;
    planes(x, &nc, &h, &w);
    int shape[FLASH_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 2] = 2 * h;
    shape[x->ndim - 1] = 2 * w;
    flash_tensor *y = flash_tensor_new(c, x->ndim, shape);
    if (!y) return NULL;
    c->be->upsample2x(y->data, x->data, nc, h, w);
    flash_tape_record(c, "upsample_nearest2x", upsample_backward, y, 1, &x);
    return y;
}

static void avg_pool_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0];
    float *gx = flash_grad_of(c, x);
    if (!gx) return;
    int nc, h, w;
    planes(x, &nc, &h, &w);
    c->be->avg_pool2d_backward(gx, e->out->grad, nc, h, w, e->iarg[0]);
}

flash_tensor *flash_avg_pool2d(flash_ctx *c, flash_tensor *x, int k) {
    if (!c || !x) return NULL;
    if (c->failed) return NULL;
    char sx[64];
    if (x->ndim < 3)
        return flash_op_fail(c, "avg_pool2d", "expects x (N, C, H, W), got %s", flash_tensor_shape_str(x, sx, sizeof sx));
    int nc, h, w;
    planes(x, &nc, &h, &w);
    if (k < 1 || h % k || w % k)
        return flash_op_fail(c, "avg_pool2d", "window %d must divide H and W of x %s", k,
                             flash_tensor_shape_str(x, sx, sizeof sx));
    int shape[FLASH_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 2] = h / k;
    shape[x->ndim - 1] = w / k;
    flash_tensor *y = flash_tensor_new(c, x->ndim, shape);
    if (!y) return NULL;
    c->be->avg_pool2d(y->data, x->data, nc, h, w, k);
    flash_tape_entry *e = flash_tape_record(c, "avg_pool2d", avg_pool_backward, y, 1, &x);
    if (e) e->iarg[0] = k;
    return y;
}
