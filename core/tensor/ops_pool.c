/* Resampling: nearest-neighbour 2x upsampling and k x k average pooling
 * (stride k): the ops, their backward passes and the plain references
 * (ops_ref.h). Both work on any tensor of 3 or more dims, treating the
 * leading dims as a stack of H x W planes.
 */
#include <string.h>

#include "tensor/ops_ref.h"
#include "tensor/tensor_internal.h"

/* ---- references ------------------------------------------------------- */

void flash_ref_upsample2x_forward(float *y, const float *x, int nc, int h, int w) {
    for (int p = 0; p < nc; p++)
        for (int i = 0; i < 2 * h; i++)
            for (int j = 0; j < 2 * w; j++)
                y[((size_t)p * 2 * h + i) * 2 * w + j] = x[((size_t)p * h + i / 2) * w + j / 2];
}

void flash_ref_upsample2x_backward(float *gx, const float *gy, int nc, int h, int w) {
    for (int p = 0; p < nc; p++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                double acc = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) acc += gy[((size_t)p * 2 * h + 2 * i + a) * 2 * w + 2 * j + b];
                gx[((size_t)p * h + i) * w + j] += (float)acc;
            }
}

void flash_ref_avg_pool2d_forward(float *y, const float *x, int nc, int h, int w, int k) {
    const int ho = h / k, wo = w / k;
    for (int p = 0; p < nc; p++)
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                double acc = 0;
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) acc += x[((size_t)p * h + i * k + a) * w + j * k + b];
                y[((size_t)p * ho + i) * wo + j] = (float)(acc / (k * k));
            }
}

void flash_ref_avg_pool2d_backward(float *gx, const float *gy, int nc, int h, int w, int k) {
    const int ho = h / k, wo = w / k;
    for (int p = 0; p < nc; p++)
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                double g = gy[((size_t)p * ho + i) * wo + j] / (double)(k * k);
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) gx[((size_t)p * h + i * k + a) * w + j * k + b] += (float)g;
            }
}

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
