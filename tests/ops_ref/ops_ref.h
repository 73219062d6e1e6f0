/* Plain reference implementations of the dense ops (linear, matmul, conv2d,
 * group norm, upsample, average pooling): straightforward loops with double
 * accumulators, no blocking, no threads. The tests check the fast backend
 * kernels against these by normalised error; the backward references are
 * derived independently of the fast kernels' closed forms.
 *
 * Shapes as in the ops (tensor.h); backward functions accumulate (+=) into
 * every gradient that is not NULL. Test-only: built into the static library
 * flash_ref (tests/CMakeLists.txt), never into libflash.
 */
#ifndef FLASH_OPS_REF_H
#define FLASH_OPS_REF_H

#include "tensor/backend.h" /* flash_conv_geom */

/* y (n, out) = x (n, in) @ w (out, in)^T + b (out, or NULL) */
void flash_ref_linear_forward(float *y, const float *x, const float *w, const float *b, int n, int in, int out);
void flash_ref_linear_backward(float *gx, float *gw, float *gb, const float *gy, const float *x, const float *w, int n,
                               int in, int out);
/* c (m, n) = a (m, k) @ b (k, n) */
void flash_ref_matmul_forward(float *c, const float *a, const float *b, int m, int k, int n);
void flash_ref_matmul_backward(float *ga, float *gb, const float *gc, const float *a, const float *b, int m, int k,
                               int n);
void flash_ref_conv2d_forward(float *y, const float *x, const float *w, const float *b, const flash_conv_geom *g);
void flash_ref_conv2d_backward(float *gx, float *gw, float *gb, const float *gy, const float *x, const float *w,
                               const flash_conv_geom *g);
void flash_ref_group_norm_forward(float *y, const float *x, const float *gamma, const float *beta, int n, int c,
                                  int hw, int groups, float eps);
void flash_ref_group_norm_backward(float *gx, float *ggamma, float *gbeta, const float *gy, const float *x,
                                   const float *gamma, int n, int c, int hw, int groups, float eps);
void flash_ref_upsample2x_forward(float *y, const float *x, int nc, int h, int w);
void flash_ref_upsample2x_backward(float *gx, const float *gy, int nc, int h, int w);
void flash_ref_avg_pool2d_forward(float *y, const float *x, int nc, int h, int w, int k);
void flash_ref_avg_pool2d_backward(float *gx, const float *gy, int nc, int h, int w, int k);

#endif
