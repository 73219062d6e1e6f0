/* The CPU backend's dense kernels (backend_cpu_dnnl.c, backend_cpu_nn.c),
 * declared for the backend table in backend_cpu.c. Semantics: backend.h. */
#ifndef FLASH_BACKEND_CPU_NN_H
#define FLASH_BACKEND_CPU_NN_H

#include "tensor/backend.h"

int flash_cpu_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                    int ldb, float beta, float *c, int ldc);
int flash_cpu_conv2d_saved_bytes(const flash_conv_geom *g, size_t *saved_bytes, char *msg, size_t msg_size);
int flash_cpu_conv2d_forward(const flash_conv_geom *g, float *y, const float *x, const float *w, const float *b,
                             void *saved, char *msg, size_t msg_size);
int flash_cpu_conv2d_backward(const flash_conv_geom *g, float *gx, float *gw, float *gb, const float *gy,
                              const float *x, const float *w, const void *saved, char *msg, size_t msg_size);
/* 0 where the convolutions compute in `precision` (flash_precision) */
int flash_cpu_conv2d_precision(int precision, char *msg, size_t msg_size);
void flash_cpu_group_norm_forward(float *y, double *stats, const float *x, const float *gamma, const float *beta,
                                  int n, int c, int hw, int groups, float eps, bool silu);
void flash_cpu_group_norm_backward(float *gx, float *ggamma, float *gbeta, const float *gy, const float *x,
                                   const double *stats, const float *gamma, const float *beta, int n, int c, int hw,
                                   int groups, bool silu, double *scratch);
void flash_cpu_upsample2x(float *y, const float *x, int nc, int h, int w);
void flash_cpu_upsample2x_backward(float *gx, const float *gy, int nc, int h, int w);
void flash_cpu_avg_pool2d(float *y, const float *x, int nc, int h, int w, int k);
void flash_cpu_avg_pool2d_backward(float *gx, const float *gy, int nc, int h, int w, int k);

#endif
