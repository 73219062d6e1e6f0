/* Dense kernels of the CUDA backend: sgemm through cuBLAS, convolutions
 * through cuDNN.
 *
 * sgemm: flash is row-major, cuBLAS column-major. A row-major (m, n)
 * matrix is the column-major (n, m) matrix with the same leading
 * dimension, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T:
 * the operands swap places and m, n swap roles; no data moves.
 *
 * Convolutions: a plan per geometry (flash_conv_geom) holds the tensor,
 * filter and convolution descriptors and the three algorithms (forward,
 * backward data, backward filter) with their workspace sizes. Algorithms
 * come from cuDNN's heuristics (cudnnGet*Algorithm_v7) once per geometry,
 * taking the first one that is deterministic, runs in plain float32 FMA
 * math and needs at most FLASH_CU_CONV_WS bytes of workspace; the choice
 * depends on the geometry and the device alone, so runs are reproducible.
 * FLASH_CUDA_CONV_FIND=1 times the candidates instead (cudnnFind*, once
 * per geometry, same restrictions): often faster, but the choice may then
 * differ between processes, and with it the last bits of the results.
 * The transient workspace is the backend's own grow-only buffer, and
 * nothing is saved between the forward and the backward. Gradients accumulate
 * through cuDNN's beta = 1; the bias gradient is a deterministic reduction
 * of our own (cuDNN's may use atomics).
 *
 * FLASH_CUDA_TF32=1 in the environment lets cuBLAS and cuDNN use TF32
 * tensor cores (10-bit mantissa products, as PyTorch does for cuDNN
 * convolutions by default): faster, but outside the float32 parity
 * tolerances, so off by default.
 */
#include <cublas_v2.h>
#include <cudnn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_common.h"

#define FLASH_CU_CONV_WS ((size_t)1 << 30)

namespace flash_cuda {

static cublasHandle_t g_blas;
static cudnnHandle_t g_dnn;
static bool g_tf32;
static bool g_find; /* FLASH_CUDA_CONV_FIND=1: choose algorithms by timing them */

bool dnn_init(char *msg, size_t msg_size) {
    const char *tf = getenv("FLASH_CUDA_TF32");
    g_tf32 = tf && strcmp(tf, "1") == 0;
    const char *fd = getenv("FLASH_CUDA_CONV_FIND");
    g_find = fd && strcmp(fd, "1") == 0;
    cublasStatus_t bs = cublasCreate(&g_blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(g_blas, g_stream);
    if (bs == CUBLAS_STATUS_SUCCESS)
        bs = cublasSetMathMode(g_blas, g_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        snprintf(msg, msg_size, "cuBLAS initialisation failed: %s", cublasGetStatusString(bs));
        return false;
    }
    cudnnStatus_t ds = cudnnCreate(&g_dnn);
    if (ds == CUDNN_STATUS_SUCCESS) ds = cudnnSetStream(g_dnn, g_stream);
    if (ds != CUDNN_STATUS_SUCCESS) {
        snprintf(msg, msg_size, "cuDNN initialisation failed: %s", cudnnGetErrorString(ds));
        return false;
    }
    return true;
}

/* ---- sgemm ------------------------------------------------------------------ */

__global__ static void k_scale_c(float *c, int m, int n, int ldc, float beta) {
    const size_t total = (size_t)m * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        float *p = c + (i / n) * ldc + i % n;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

int sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
          float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0) {
        k_scale_c<<<flash_cu_blocks((size_t)m * n, 256), 256, 0, g_stream>>>(c, m, n, ldc, beta);
        FLASH_CU_LAUNCHED(k_scale_c);
        return failed() ? 1 : 0;
    }
    cublasStatus_t st = cublasSgemm(g_blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                                    &alpha, b, ldb, a, lda, &beta, c, ldc);
    if (st != CUBLAS_STATUS_SUCCESS) {
        fail("cublasSgemm", cublasGetStatusString(st), __FILE__, __LINE__);
        return (int)st;
    }
    return 0;
}

/* ---- convolution plans ---------------------------------------------------------- */

typedef struct conv_plan {
    flash_conv_geom g;
    cudnnTensorDescriptor_t x, y, b;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t fwd_math, data_math, filter_math;
    size_t fwd_ws, data_ws, filter_ws;
    struct conv_plan *next;
} conv_plan;

static conv_plan *g_plans;
static pthread_mutex_t g_plans_lock = PTHREAD_MUTEX_INITIALIZER;

static bool same_geom(const flash_conv_geom *a, const flash_conv_geom *b) {
    return a->n == b->n && a->cin == b->cin && a->h == b->h && a->w == b->w && a->cout == b->cout && a->k == b->k &&
           a->stride == b->stride && a->pad == b->pad && a->bias == b->bias;
}

static void plan_free(conv_plan *p) {
    if (!p) return;
    if (p->x) cudnnDestroyTensorDescriptor(p->x);
    if (p->y) cudnnDestroyTensorDescriptor(p->y);
    if (p->b) cudnnDestroyTensorDescriptor(p->b);
    if (p->w) cudnnDestroyFilterDescriptor(p->w);
    if (p->conv) cudnnDestroyConvolutionDescriptor(p->conv);
    free(p);
}

/* The rank of an algorithm from the heuristics (lower is better; -1:
 * unusable): plain float32 FMA math and determinism first, then
 * cuDNN's default math, then anything that runs, so that a device or
 * cuDNN version without the preferred kind still works (the parity tests
 * then show the loss of precision or determinism). */
static int rank_of(cudnnStatus_t st, size_t mem, cudnnDeterminism_t det, cudnnMathType_t math) {
    if (st != CUDNN_STATUS_SUCCESS || mem > FLASH_CU_CONV_WS) return -1;
    const bool exact = g_tf32 || math == CUDNN_FMA_MATH;
    const bool dflt = math == CUDNN_DEFAULT_MATH;
    const bool d = det == CUDNN_DETERMINISTIC;
    return exact && d ? 0 : dflt && d ? 1 : d ? 2 : 3;
}

/* Picks the best-ranked entry, in the heuristics' order within a rank. */
template <typename Perf> static int pick(const Perf *perf, int got) {
    int best = -1, best_rank = 4;
    for (int i = 0; i < got; i++) {
        int r = rank_of(perf[i].status, perf[i].memory, perf[i].determinism, perf[i].mathType);
        if (r >= 0 && r < best_rank) {
            best = i;
            best_rank = r;
        }
    }
    return best;
}

#define ALGO_MAX 16

static conv_plan *plan_make(const flash_conv_geom *g, char *msg, size_t msg_size) {
    conv_plan *p = (conv_plan *)calloc(1, sizeof *p);
    if (!p) {
        snprintf(msg, msg_size, "cannot allocate a convolution plan");
        return NULL;
    }
    p->g = *g;
    cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
    const char *what = "descriptors";
#define DNN_TRY(call)                                                                                                \
    do {                                                                                                           \
        if (st == CUDNN_STATUS_SUCCESS) st = (call);                                                               \
    } while (0)
    DNN_TRY(cudnnCreateTensorDescriptor(&p->x));
    DNN_TRY(cudnnCreateTensorDescriptor(&p->y));
    DNN_TRY(cudnnCreateTensorDescriptor(&p->b));
    DNN_TRY(cudnnCreateFilterDescriptor(&p->w));
    DNN_TRY(cudnnCreateConvolutionDescriptor(&p->conv));
    DNN_TRY(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g->n, g->cin, g->h, g->w));
    DNN_TRY(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g->n, g->cout, g->ho, g->wo));
    DNN_TRY(cudnnSetTensor4dDescriptor(p->b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, g->cout, 1, 1));
    DNN_TRY(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g->cout, g->cin, g->k, g->k));
    DNN_TRY(cudnnSetConvolution2dDescriptor(p->conv, g->pad, g->pad, g->stride, g->stride, 1, 1,
                                            CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    const cudnnMathType_t pref = g_tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    DNN_TRY(cudnnSetConvolutionMathType(p->conv, pref));
    if (st == CUDNN_STATUS_SUCCESS) {
        /* cuDNN's output size must be the op's (same formula, checked) */
        int on, oc, oh, ow;
        st = cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &on, &oc, &oh, &ow);
        if (st == CUDNN_STATUS_SUCCESS && (oh != g->ho || ow != g->wo)) {
            snprintf(msg, msg_size, "cuDNN output %dx%d differs from %dx%d", oh, ow, g->ho, g->wo);
            plan_free(p);
            return NULL;
        }
    }
    int got = 0;
    bool found = false;
    if (st == CUDNN_STATUS_SUCCESS) {
        what = "forward algorithm";
        cudnnConvolutionFwdAlgoPerf_t perf[ALGO_MAX];
        st = cudnnSetConvolutionMathType(p->conv, pref);
        if (st == CUDNN_STATUS_SUCCESS)
            st = g_find ? cudnnFindConvolutionForwardAlgorithm(g_dnn, p->x, p->w, p->conv, p->y, ALGO_MAX, &got, perf)
                        : cudnnGetConvolutionForwardAlgorithm_v7(g_dnn, p->x, p->w, p->conv, p->y, ALGO_MAX, &got, perf);
        const int at = st == CUDNN_STATUS_SUCCESS ? pick(perf, got) : -1;
        if (at >= 0) {
            p->fwd = perf[at].algo;
            p->fwd_math = perf[at].mathType;
            found = true;
        }
        if (st == CUDNN_STATUS_SUCCESS && !found) st = CUDNN_STATUS_NOT_SUPPORTED;
        if (st == CUDNN_STATUS_SUCCESS) {
            /* the heuristics' memory estimate is per math type: ask for the chosen one */
            st = cudnnSetConvolutionMathType(p->conv, p->fwd_math);
            if (st == CUDNN_STATUS_SUCCESS)
                st = cudnnGetConvolutionForwardWorkspaceSize(g_dnn, p->x, p->w, p->conv, p->y, p->fwd, &p->fwd_ws);
        }
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        what = "backward-data algorithm";
        found = false;
        cudnnConvolutionBwdDataAlgoPerf_t perf[ALGO_MAX];
        st = cudnnSetConvolutionMathType(p->conv, pref);
        if (st == CUDNN_STATUS_SUCCESS)
            st = g_find
                     ? cudnnFindConvolutionBackwardDataAlgorithm(g_dnn, p->w, p->y, p->conv, p->x, ALGO_MAX, &got, perf)
                     : cudnnGetConvolutionBackwardDataAlgorithm_v7(g_dnn, p->w, p->y, p->conv, p->x, ALGO_MAX, &got,
                                                                   perf);
        const int at = st == CUDNN_STATUS_SUCCESS ? pick(perf, got) : -1;
        if (at >= 0) {
            p->bwd_data = perf[at].algo;
            p->data_math = perf[at].mathType;
            found = true;
        }
        if (st == CUDNN_STATUS_SUCCESS && !found) st = CUDNN_STATUS_NOT_SUPPORTED;
        if (st == CUDNN_STATUS_SUCCESS) {
            st = cudnnSetConvolutionMathType(p->conv, p->data_math);
            if (st == CUDNN_STATUS_SUCCESS)
                st = cudnnGetConvolutionBackwardDataWorkspaceSize(g_dnn, p->w, p->y, p->conv, p->x, p->bwd_data,
                                                                  &p->data_ws);
        }
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        what = "backward-filter algorithm";
        found = false;
        cudnnConvolutionBwdFilterAlgoPerf_t perf[ALGO_MAX];
        st = cudnnSetConvolutionMathType(p->conv, pref);
        if (st == CUDNN_STATUS_SUCCESS)
            st = g_find ? cudnnFindConvolutionBackwardFilterAlgorithm(g_dnn, p->x, p->y, p->conv, p->w, ALGO_MAX, &got,
                                                                      perf)
                        : cudnnGetConvolutionBackwardFilterAlgorithm_v7(g_dnn, p->x, p->y, p->conv, p->w, ALGO_MAX, &got,
                                                                        perf);
        const int at = st == CUDNN_STATUS_SUCCESS ? pick(perf, got) : -1;
        if (at >= 0) {
            p->bwd_filter = perf[at].algo;
            p->filter_math = perf[at].mathType;
            found = true;
        }
        if (st == CUDNN_STATUS_SUCCESS && !found) st = CUDNN_STATUS_NOT_SUPPORTED;
        if (st == CUDNN_STATUS_SUCCESS) {
            st = cudnnSetConvolutionMathType(p->conv, p->filter_math);
            if (st == CUDNN_STATUS_SUCCESS)
                st = cudnnGetConvolutionBackwardFilterWorkspaceSize(g_dnn, p->x, p->y, p->conv, p->w, p->bwd_filter,
                                                                    &p->filter_ws);
        }
    }
#undef DNN_TRY
    if (st != CUDNN_STATUS_SUCCESS) {
        snprintf(msg, msg_size, "cuDNN %s for x (%d, %d, %d, %d), w (%d, %d, %d, %d), stride %d, pad %d: %s", what,
                 g->n, g->cin, g->h, g->w, g->cout, g->cin, g->k, g->k, g->stride, g->pad,
                 st == CUDNN_STATUS_NOT_SUPPORTED ? "no deterministic float32 algorithm" : cudnnGetErrorString(st));
        plan_free(p);
        return NULL;
    }
    return p;
}

static conv_plan *plan_get(const flash_conv_geom *g, char *msg, size_t msg_size) {
    pthread_mutex_lock(&g_plans_lock);
    conv_plan *p = g_plans;
    while (p && !same_geom(&p->g, g)) p = p->next;
    if (!p) {
        p = plan_make(g, msg, msg_size);
        if (p) {
            p->next = g_plans;
            g_plans = p;
        }
    }
    pthread_mutex_unlock(&g_plans_lock);
    return p;
}

static void set_msg(char *msg, size_t n, const char *what, cudnnStatus_t st) {
    if (msg && n) snprintf(msg, n, "cuDNN %s: %s", what, cudnnGetErrorString(st));
}

/* cuDNN keeps nothing between the forward and the backward. */
int conv2d_saved_bytes(const flash_conv_geom *g, size_t *saved_bytes, char *msg, size_t msg_size) {
    conv_plan *p = plan_get(g, msg, msg_size);
    if (!p) return 1;
    if (saved_bytes) *saved_bytes = 0;
    return 0;
}

int conv2d_forward(const flash_conv_geom *g, float *y, const float *x, const float *w, const float *b, void *saved,
                   char *msg, size_t msg_size) {
    (void)saved;
    conv_plan *p = plan_get(g, msg, msg_size);
    if (!p) return 1;
    void *fwd_ws = p->fwd_ws ? workspace(p->fwd_ws) : NULL;
    if (p->fwd_ws && !fwd_ws) {
        snprintf(msg, msg_size, "cannot allocate %zu bytes of convolution workspace", p->fwd_ws);
        return 1;
    }
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t st = cudnnSetConvolutionMathType(p->conv, p->fwd_math);
    if (st == CUDNN_STATUS_SUCCESS)
        st = cudnnConvolutionForward(g_dnn, &one, p->x, x, p->w, w, p->conv, p->fwd, fwd_ws, p->fwd_ws, &zero, p->y,
                                     y);
    if (st == CUDNN_STATUS_SUCCESS && g->bias && b) st = cudnnAddTensor(g_dnn, &one, p->b, b, &one, p->y, y);
    if (st != CUDNN_STATUS_SUCCESS) {
        set_msg(msg, msg_size, "convolution forward", st);
        fail("cudnnConvolutionForward", cudnnGetErrorString(st), __FILE__, __LINE__);
        return 1;
    }
    return failed() ? 1 : 0;
}

/* gb[o] += sum over samples and positions of gy[n, o, :]: one block per
 * channel, a fixed partition and tree (deterministic). */
__global__ static void k_bias_grad(float *gb, const float *gy, int n, int cout, int hw) {
    __shared__ double sh[32];
    const int o = blockIdx.x;
    const size_t per = (size_t)n * hw;
    double acc = 0;
    for (size_t i = threadIdx.x; i < per; i += blockDim.x) acc += gy[((i / hw) * cout + o) * hw + i % hw];
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sh[wid] = acc;
    __syncthreads();
    if (wid == 0) {
        acc = lane < nw ? sh[lane] : 0.0;
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (lane == 0) gb[o] += (float)acc;
    }
}

int conv2d_backward(const flash_conv_geom *g, float *gx, float *gw, float *gb, const float *gy, const float *x,
                    const float *w, const void *saved, char *msg, size_t msg_size) {
    (void)saved;
    conv_plan *p = plan_get(g, msg, msg_size);
    if (!p) return 1;
    const size_t bwd_bytes = p->data_ws > p->filter_ws ? p->data_ws : p->filter_ws;
    void *bwd_ws = bwd_bytes ? workspace(bwd_bytes) : NULL;
    if (bwd_bytes && !bwd_ws) {
        snprintf(msg, msg_size, "cannot allocate %zu bytes of convolution workspace", bwd_bytes);
        return 1;
    }
    const float one = 1.0f;
    cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
    const char *what = "convolution backward-data";
    if (gx) {
        st = cudnnSetConvolutionMathType(p->conv, p->data_math);
        if (st == CUDNN_STATUS_SUCCESS)
            st = cudnnConvolutionBackwardData(g_dnn, &one, p->w, w, p->y, gy, p->conv, p->bwd_data, bwd_ws,
                                              p->data_ws, &one, p->x, gx);
    }
    if (st == CUDNN_STATUS_SUCCESS && gw) {
        what = "convolution backward-filter";
        st = cudnnSetConvolutionMathType(p->conv, p->filter_math);
        if (st == CUDNN_STATUS_SUCCESS)
            st = cudnnConvolutionBackwardFilter(g_dnn, &one, p->x, x, p->y, gy, p->conv, p->bwd_filter, bwd_ws,
                                                p->filter_ws, &one, p->w, gw);
    }
    if (st != CUDNN_STATUS_SUCCESS) {
        set_msg(msg, msg_size, what, st);
        fail(what, cudnnGetErrorString(st), __FILE__, __LINE__);
        return 1;
    }
    if (gb && g->bias) {
        const size_t per = (size_t)g->n * g->ho * g->wo;
        k_bias_grad<<<g->cout, per <= 2048 ? 128 : 256, 0, g_stream>>>(gb, gy, g->n, g->cout, g->ho * g->wo);
        FLASH_CU_LAUNCHED(k_bias_grad);
    }
    return failed() ? 1 : 0;
}

} // namespace flash_cuda
