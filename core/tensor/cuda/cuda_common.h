/* Shared state and helpers of the CUDA backend (the .cu files in core/tensor/cuda/).
 *
 * One stream carries all work, so kernels, cuBLAS and cuDNN calls and the
 * copies are ordered without events. Kernels return nothing: every launch
 * and library call is checked, and the first failure is kept as the
 * backend's sticky error (flash_backend.last_error), which the context
 * reports through flash_ctx_ok / flash_ctx_status.
 */
#ifndef FLASH_CUDA_COMMON_H
#define FLASH_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <stddef.h>

#include "tensor/backend.h"

namespace flash_cuda {

extern cudaStream_t g_stream;

/* Records "what: detail (file:line)" unless an error is already kept. */
void fail(const char *what, const char *detail, const char *file, int line);
bool failed();

/* Grow-only device scratch for partial sums (doubles) and small uploads;
 * NULL (with the error recorded) on failure. Growing synchronises, which
 * happens only while a run warms up. */
double *partials(size_t n);
void *staging(size_t bytes);
/* The convolutions' transient workspace (grow-only, like the above). */
void *workspace(size_t bytes);
/* Pinned host buffer for small downloads. */
void *host_pinned(size_t bytes);

/* Deterministic row sums in double: out[r] = sum_j x[r, j] (* w[r, j]),
 * or of (x - w)^2 when sq_diff; fixed chunking and a fixed reduction tree,
 * so results do not depend on timing. out is device memory. */
void row_sums(double *out, const float *x, const float *w, bool sq_diff, size_t rows, size_t len);

/* The dense kernels (cuda_dnn.cu). */
int sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
          float beta, float *c, int ldc);
int conv2d_saved_bytes(const flash_conv_geom *g, size_t *saved_bytes, char *msg, size_t msg_size);
int conv2d_forward(const flash_conv_geom *g, float *y, const float *x, const float *w, const float *b, void *saved,
                   char *msg, size_t msg_size);
int conv2d_backward(const flash_conv_geom *g, float *gx, float *gw, float *gb, const float *gy, const float *x,
                    const float *w, const void *saved, char *msg, size_t msg_size);
/* Creates the cuBLAS and cuDNN handles on g_stream; false with msg set. */
bool dnn_init(char *msg, size_t msg_size);

} // namespace flash_cuda

#define FLASH_CU_CHECK(call)                                                                  \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) flash_cuda::fail(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

/* After every kernel launch: a bad configuration shows up here. */
#define FLASH_CU_LAUNCHED(name) FLASH_CU_CHECK(cudaGetLastError())

static inline unsigned flash_cu_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    if (b > 1u << 20) b = 1u << 20; /* kernels use grid-stride loops */
    return b ? (unsigned)b : 1u;
}

#endif
