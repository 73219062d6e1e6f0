/* The CUDA backend: the flash_backend table on one NVIDIA GPU.
 *
 * Built as libflash_cuda.so when FLASH_CUDA=ON and loaded by libflash at
 * run time (core/tensor/backend_load.c) the first time a context asks for
 * "cuda"; libflash never links CUDA itself. This file holds memory,
 * elementwise, reduction, gather, normalisation, resampling and optimiser
 * kernels; cuda_dnn.cu holds sgemm (cuBLAS) and convolutions (cuDNN).
 *
 * Numerics follow the CPU backend (core/backend_cpu*.c) operation by
 * operation so that the two agree to float rounding: sums accumulate in
 * double; where the CPU adds contributions into a float in a fixed order
 * (broadcast reductions, scatter-add, parameter gradients of group norm),
 * one GPU thread per output element does the same additions in the same
 * order.
 *
 * Determinism: no atomics. Every reduction has a fixed partition (chunks
 * of FLASH_CU_CHUNK elements, block sizes chosen from the length alone)
 * and a fixed combination tree, so results are bit-identical run to run.
 *
 * Host arrays the ops pass in (axpby coefficients, embedding indices) go to
 * the kernels as by-value parameters when small, else through a device
 * staging buffer; both are ordered on the one stream.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cuda_common.h"
#include "runtime/local_rank.h"

namespace flash_cuda {

cudaStream_t g_stream;
static char g_err[512];
static bool g_failed;

void fail(const char *what, const char *detail, const char *file, int line) {
    if (g_failed) return;
    const char *base = strrchr(file, '/');
    snprintf(g_err, sizeof g_err, "%s: %s (%s:%d)", what, detail, base ? base + 1 : file, line);
    g_failed = true;
}

bool failed() { return g_failed; }

/* Grow-only device buffers, one per purpose. */
enum { BUF_PARTIAL, BUF_OUT, BUF_STAGING, BUF_WS, BUF_N };
static void *g_buf[BUF_N];
static size_t g_buf_size[BUF_N];

static void *dev_buf(int slot, size_t bytes) {
    if (bytes <= g_buf_size[slot]) return g_buf[slot];
    size_t want = bytes < 4096 ? 4096 : bytes * 2;
    FLASH_CU_CHECK(cudaFree(g_buf[slot])); /* waits for the work that used it */
    g_buf[slot] = NULL;
    g_buf_size[slot] = 0;
    if (cudaMalloc(&g_buf[slot], want) != cudaSuccess) {
        (void)cudaGetLastError();
        fail("cudaMalloc (scratch)", "out of device memory", __FILE__, __LINE__);
        return NULL;
    }
    g_buf_size[slot] = want;
    return g_buf[slot];
}

double *partials(size_t n) { return (double *)dev_buf(BUF_OUT, n * sizeof(double)); }
void *staging(size_t bytes) { return dev_buf(BUF_STAGING, bytes); }
void *workspace(size_t bytes) { return dev_buf(BUF_WS, bytes); }

static void *g_pinned;
static size_t g_pinned_size;
void *host_pinned(size_t bytes) {
    if (bytes <= g_pinned_size) return g_pinned;
    FLASH_CU_CHECK(cudaFreeHost(g_pinned));
    g_pinned = NULL;
    g_pinned_size = 0;
    size_t want = bytes < 4096 ? 4096 : bytes * 2;
    if (cudaMallocHost(&g_pinned, want) != cudaSuccess) {
        (void)cudaGetLastError();
        fail("cudaMallocHost", "out of pinned host memory", __FILE__, __LINE__);
        return NULL;
    }
    g_pinned_size = want;
    return g_pinned;
}

} // namespace flash_cuda

using namespace flash_cuda;

#define THREADS 256
#define FLASH_CU_CHUNK 16384

/* ---- reductions: a fixed tree --------------------------------------------- */

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the total. sh: 32 doubles of shared memory. */
__device__ static double block_sum(double v, double *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static float block_max(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block size for reducing len elements: a function of len alone. */
static unsigned reduce_threads(size_t len) { return len <= 64 ? 32 : len <= 2048 ? 128 : 256; }

enum { RS_SUM, RS_DOT, RS_SQDIFF };

/* One block per (row, chunk): out (or part) gets the chunk's double sum. */
__global__ static void k_row_partial(double *part, const float *x, const float *w, int mode, size_t len,
                                     size_t nch) {
    __shared__ double sh[32];
    const size_t blk = blockIdx.x, r = blk / nch, ch = blk % nch;
    const size_t lo = ch * FLASH_CU_CHUNK, hi = lo + FLASH_CU_CHUNK < len ? lo + FLASH_CU_CHUNK : len;
    const float *xr = x + r * len;
    const float *wr = w ? w + r * len : NULL;
    double acc = 0;
    for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
        if (mode == RS_SUM)
            acc += (double)xr[j];
        else if (mode == RS_DOT)
            acc += (double)xr[j] * (double)wr[j];
        else {
            double d = (double)xr[j] - (double)wr[j];
            acc += d * d;
        }
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) part[blk] = acc;
}

__global__ static void k_row_final(double *out, const double *part, size_t rows, size_t nch) {
    for (size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x; r < rows; r += (size_t)gridDim.x * blockDim.x) {
        double s = 0;
        for (size_t c = 0; c < nch; c++) s += part[r * nch + c];
        out[r] = s;
    }
}

namespace flash_cuda {
void row_sums(double *out, const float *x, const float *w, bool sq_diff, size_t rows, size_t len) {
    if (rows == 0) return;
    const int mode = sq_diff ? RS_SQDIFF : (w ? RS_DOT : RS_SUM);
    const size_t nch = len ? (len + FLASH_CU_CHUNK - 1) / FLASH_CU_CHUNK : 1;
    double *part = out;
    if (nch > 1) {
        part = (double *)dev_buf(BUF_PARTIAL, rows * nch * sizeof(double));
        if (!part) return;
    }
    k_row_partial<<<(unsigned)(rows * nch), reduce_threads(len), 0, g_stream>>>(part, x, w, mode, len, nch);
    FLASH_CU_LAUNCHED(k_row_partial);
    if (nch > 1) {
        k_row_final<<<flash_cu_blocks(rows, THREADS), THREADS, 0, g_stream>>>(out, part, rows, nch);
        FLASH_CU_LAUNCHED(k_row_final);
    }
}
} // namespace flash_cuda

/* ---- memory ------------------------------------------------------------------ */

static void *cu_alloc(size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 64) != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory is reported by the caller (arena exhausted) */
        return NULL;
    }
    return p;
}

static void cu_free(void *p) {
    if (p) FLASH_CU_CHECK(cudaFree(p));
}

static void cu_zero(float *p, size_t n) {
    if (n) FLASH_CU_CHECK(cudaMemsetAsync(p, 0, n * sizeof(float), g_stream));
}

static void cu_copy(float *dst, const float *src, size_t n) {
    if (n && dst != src)
        FLASH_CU_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, g_stream));
}

__global__ static void k_fill(float *p, size_t n, float v) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) p[i] = v;
}

static void cu_fill(float *p, size_t n, float v) {
    if (!n) return;
    k_fill<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>(p, n, v);
    FLASH_CU_LAUNCHED(k_fill);
}

__global__ static void k_copy2d(float *dst, size_t dst_ld, const float *src, size_t src_ld, size_t rows, size_t cols,
                                int acc) {
    const size_t n = rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / cols, j = i % cols;
        const float v = src[r * src_ld + j];
        if (acc)
            dst[r * dst_ld + j] += v;
        else
            dst[r * dst_ld + j] = v;
    }
}

static void cu_copy2d(float *dst, size_t dst_ld, const float *src, size_t src_ld, size_t rows, size_t cols, bool acc) {
    const size_t n = rows * cols;
    if (!n) return;
    k_copy2d<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>(dst, dst_ld, src, src_ld, rows, cols, acc);
    FLASH_CU_LAUNCHED(k_copy2d);
}

static void cu_to_host(float *host, const float *dev, size_t n) {
    if (!n) return;
    FLASH_CU_CHECK(cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, g_stream));
    FLASH_CU_CHECK(cudaStreamSynchronize(g_stream));
}

static void cu_from_host(float *dev, const float *host, size_t n) {
    if (!n) return;
    /* pageable source: the call returns once the data is staged, so the
     * caller may reuse `host` at once */
    FLASH_CU_CHECK(cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, g_stream));
}

/* ---- broadcasting ----------------------------------------------------------- */

__device__ static size_t row_offset(const flash_bcast &bc, size_t r) {
    size_t off = 0;
    for (int g = bc.n_outer - 1; g >= 0; g--) {
        off += (r % bc.osize[g]) * bc.ostride[g];
        r /= bc.osize[g];
    }
    return off;
}

/* b's index for a's flat index i */
__device__ static size_t b_index(const flash_bcast &bc, size_t i) {
    if (bc.same) return i;
    const size_t r = i / bc.inner, j = i % bc.inner;
    return row_offset(bc, r) + (bc.inner_scalar ? 0 : j);
}

__device__ static float binop(int op, float a, float b) {
    switch (op) {
    case FLASH_BIN_ADD: return a + b;
    case FLASH_BIN_SUB: return a - b;
    case FLASH_BIN_MUL: return a * b;
    default: return a / b;
    }
}

__global__ static void k_binary(int op, float *y, const float *a, const float *b, flash_bcast bc, int acc) {
    const size_t n = bc.a_numel;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = binop(op, a[i], b[b_index(bc, i)]);
        y[i] = acc ? y[i] + v : v;
    }
}

static void cu_binary(flash_binop op, float *y, const float *a, const float *b, const flash_bcast *bc, bool acc) {
    if (!bc->a_numel) return;
    k_binary<<<flash_cu_blocks(bc->a_numel, THREADS), THREADS, 0, g_stream>>>((int)op, y, a, b, *bc, acc);
    FLASH_CU_LAUNCHED(k_binary);
}

__global__ static void k_axpy_same(float *gb, const float *x, const float *w, float scale, size_t n, int acc) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = scale * (w ? x[i] * w[i] : x[i]);
        gb[i] = acc ? gb[i] + v : v;
    }
}

/* One thread per element q of b: visits the rows of a that map to q in
 * increasing order and adds their contributions into a float, exactly as
 * the CPU's loop does. With inner_scalar the contributions are the row
 * sums in `rowsum`, else x[r, j] (* w[r, j]) for q's column j. */
__global__ static void k_bcast_gather(float *gb, const float *x, const float *w, const double *rowsum,
                                      flash_bcast bc, float scale, int accumulate) {
    const size_t L = bc.inner_scalar ? 1 : bc.inner;
    const size_t nb = bc.b_numel;
    for (size_t q = blockIdx.x * (size_t)blockDim.x + threadIdx.x; q < nb; q += (size_t)gridDim.x * blockDim.x) {
        const size_t j = q % L, off = q - j;
        /* digits of q's row along the groups where b is full; count of rows
         * sharing them (the product of the broadcast groups) */
        size_t digit[4], nbc = 1;
        for (int g = 0; g < bc.n_outer; g++) {
            if (bc.ostride[g])
                digit[g] = (off / bc.ostride[g]) % bc.osize[g];
            else {
                digit[g] = 0;
                nbc *= bc.osize[g];
            }
        }
        float acc = accumulate ? gb[q] : 0.0f;
        for (size_t k = 0; k < nbc; k++) {
            /* k's digits fill the broadcast groups, outermost first, so r grows with k */
            size_t rem = k;
            for (int g = bc.n_outer - 1; g >= 0; g--)
                if (!bc.ostride[g]) {
                    digit[g] = rem % bc.osize[g];
                    rem /= bc.osize[g];
                }
            size_t r = 0;
            for (int g = 0; g < bc.n_outer; g++) r = r * bc.osize[g] + digit[g];
            if (rowsum)
                acc += (float)(scale * rowsum[r]);
            else {
                const size_t i = r * bc.inner + j;
                acc += w ? scale * x[i] * w[i] : scale * x[i];
            }
        }
        gb[q] = acc;
    }
}

static void cu_bcast_reduce(float *gb, const float *x, const float *w, const flash_bcast *bc, float scale,
                            double *scratch, bool acc) {
    if (bc->same) {
        k_axpy_same<<<flash_cu_blocks(bc->a_numel, THREADS), THREADS, 0, g_stream>>>(gb, x, w, scale, bc->a_numel,
                                                                                     acc);
        FLASH_CU_LAUNCHED(k_axpy_same);
        return;
    }
    if (bc->inner_scalar) row_sums(scratch, x, w, false, bc->outer, bc->inner);
    k_bcast_gather<<<flash_cu_blocks(bc->b_numel, THREADS), THREADS, 0, g_stream>>>(
        gb, x, w, bc->inner_scalar ? scratch : NULL, *bc, scale, acc);
    FLASH_CU_LAUNCHED(k_bcast_gather);
}

/* ---- unary ----------------------------------------------------------------------- */

__device__ static float softplus_f(float x) { return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x)); }

__device__ static float sigmoid_f(float x) {
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

__global__ static void k_unary(int op, float *y, const float *x, size_t n, float a, float b) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = x[i];
        float r;
        switch (op) {
        case FLASH_UN_AFFINE: r = a * v + b; break;
        case FLASH_UN_NEG: r = -v; break;
        case FLASH_UN_EXP: r = expf(v); break;
        case FLASH_UN_LOG: r = logf(v); break;
        case FLASH_UN_SQRT: r = sqrtf(v); break;
        case FLASH_UN_SQUARE: r = v * v; break;
        case FLASH_UN_ABS: r = fabsf(v); break;
        case FLASH_UN_SILU: r = v * sigmoid_f(v); break;
        case FLASH_UN_RELU: r = v > 0 ? v : 0.0f; break;
        case FLASH_UN_LEAKY_RELU: r = v > 0 ? v : a * v; break;
        case FLASH_UN_SOFTPLUS: r = softplus_f(v); break;
        default: r = tanhf(v); break;
        }
        y[i] = r;
    }
}

static void cu_unary(flash_unop op, float *y, const float *x, size_t n, float a, float b) {
    if (!n) return;
    k_unary<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>((int)op, y, x, n, a, b);
    FLASH_CU_LAUNCHED(k_unary);
}

__global__ static void k_unary_backward(int op, float *gx, const float *gy, const float *x, const float *y, size_t n,
                                        float a, int acc) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float g = gy[i];
        float d;
        switch (op) {
        case FLASH_UN_AFFINE: d = a * g; break;
        case FLASH_UN_NEG: d = -g; break;
        case FLASH_UN_EXP: d = g * y[i]; break;
        case FLASH_UN_LOG: d = g / x[i]; break;
        case FLASH_UN_SQRT: d = g * 0.5f / y[i]; break;
        case FLASH_UN_SQUARE: d = 2.0f * x[i] * g; break;
        case FLASH_UN_ABS: d = x[i] > 0 ? g : (x[i] < 0 ? -g : 0.0f); break;
        case FLASH_UN_SILU: {
            const float s = sigmoid_f(x[i]);
            d = g * s * (1.0f + x[i] * (1.0f - s));
            break;
        }
        case FLASH_UN_RELU: d = x[i] > 0 ? g : 0.0f; break;
        case FLASH_UN_LEAKY_RELU: d = x[i] > 0 ? g : a * g; break;
        case FLASH_UN_SOFTPLUS: d = g * sigmoid_f(x[i]); break;
        default: d = g * (1.0f - y[i] * y[i]); break;
        }
        gx[i] = acc ? gx[i] + d : d;
    }
}

static void cu_unary_backward(flash_unop op, float *gx, const float *gy, const float *x, const float *y, size_t n,
                              float a, bool acc) {
    if (!n) return;
    k_unary_backward<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>((int)op, gx, gy, x, y, n, a, acc);
    FLASH_CU_LAUNCHED(k_unary_backward);
}

/* ---- axpby, where ------------------------------------------------------------------ */

/* Per-row coefficients by value (kernel parameters stay under 4 KiB). */
#define AXPBY_MAXR 480
struct axpby_coef {
    float a[AXPBY_MAXR], b[AXPBY_MAXR];
};

__global__ static void k_axpby(float *out, axpby_coef cf, const float *da, const float *db, const float *x,
                               const float *y, size_t rows, size_t inner, int acc) {
    const size_t n = rows * inner;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / inner;
        const float av = da ? da[r] : cf.a[r];
        float v = av * x[i];
        if (y) v = av * x[i] + (db ? db[r] : cf.b[r]) * y[i];
        out[i] = acc ? out[i] + v : v;
    }
}

static void cu_axpby(float *out, const float *a, const float *x, const float *b, const float *y, size_t rows,
                     size_t inner, bool acc) {
    const size_t n = rows * inner;
    if (!n) return;
    axpby_coef cf;
    const float *da = NULL, *db = NULL;
    if (rows <= AXPBY_MAXR) {
        memcpy(cf.a, a, rows * sizeof(float));
        if (y) memcpy(cf.b, b, rows * sizeof(float));
    } else {
        float *st = (float *)staging(2 * rows * sizeof(float));
        if (!st) return;
        FLASH_CU_CHECK(cudaMemcpyAsync(st, a, rows * sizeof(float), cudaMemcpyHostToDevice, g_stream));
        if (y) FLASH_CU_CHECK(cudaMemcpyAsync(st + rows, b, rows * sizeof(float), cudaMemcpyHostToDevice, g_stream));
        da = st;
        db = st + rows;
    }
    k_axpby<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>(out, cf, da, db, x, y, rows, inner, acc);
    FLASH_CU_LAUNCHED(k_axpby);
}

__global__ static void k_where(float *out, const float *mask, const float *a, const float *b, flash_bcast bc) {
    const size_t n = bc.a_numel;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = mask[b_index(bc, i)] != 0.0f ? a[i] : b[i];
}

static void cu_where(float *out, const float *mask, const float *a, const float *b, const flash_bcast *bc) {
    if (!bc->a_numel) return;
    k_where<<<flash_cu_blocks(bc->a_numel, THREADS), THREADS, 0, g_stream>>>(out, mask, a, b, *bc);
    FLASH_CU_LAUNCHED(k_where);
}

__global__ static void k_where_backward(float *ga, float *gb, const float *mask, const float *g, flash_bcast bc) {
    const size_t n = bc.a_numel;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const bool on = mask[b_index(bc, i)] != 0.0f;
        if (on && ga) ga[i] += g[i];
        if (!on && gb) gb[i] += g[i];
    }
}

static void cu_where_backward(float *ga, float *gb, const float *mask, const float *g, const flash_bcast *bc) {
    if (!bc->a_numel) return;
    k_where_backward<<<flash_cu_blocks(bc->a_numel, THREADS), THREADS, 0, g_stream>>>(ga, gb, mask, g, *bc);
    FLASH_CU_LAUNCHED(k_where_backward);
}

/* ---- reductions ---------------------------------------------------------------------- */

static double download_one(const double *dev) {
    double *h = (double *)host_pinned(sizeof(double));
    if (!h) return NAN;
    FLASH_CU_CHECK(cudaMemcpyAsync(h, dev, sizeof(double), cudaMemcpyDeviceToHost, g_stream));
    FLASH_CU_CHECK(cudaStreamSynchronize(g_stream));
    return failed() ? NAN : *h;
}

static double cu_sum(const float *x, const float *w, size_t n) {
    double *out = partials(1);
    if (!out) return NAN;
    row_sums(out, x, w, false, 1, n);
    return download_one(out);
}

static double cu_sq_diff_sum(const float *a, const float *b, size_t n) {
    double *out = partials(1);
    if (!out) return NAN;
    row_sums(out, a, b, true, 1, n);
    return download_one(out);
}

static void cu_sum_rows(double *out, const float *x, size_t rows, size_t len) {
    double *d = partials(rows);
    if (!d) return;
    row_sums(d, x, NULL, false, rows, len);
    FLASH_CU_CHECK(cudaMemcpyAsync(out, d, rows * sizeof(double), cudaMemcpyDeviceToHost, g_stream));
    FLASH_CU_CHECK(cudaStreamSynchronize(g_stream));
}

__global__ static void k_softmax(float *p, double *lse, const float *x, size_t k) {
    __shared__ double shd[32];
    __shared__ float shf[32];
    const size_t r = blockIdx.x;
    const float *xr = x + r * k;
    float *pr = p + r * k;
    float mx = -INFINITY;
    for (size_t j = threadIdx.x; j < k; j += blockDim.x) mx = fmaxf(mx, xr[j]);
    mx = block_max(mx, shf);
    double s = 0;
    for (size_t j = threadIdx.x; j < k; j += blockDim.x) {
        const float e = expf(xr[j] - mx);
        pr[j] = e;
        s += e;
    }
    s = block_sum(s, shd);
    const float inv = (float)(1.0 / s);
    for (size_t j = threadIdx.x; j < k; j += blockDim.x) pr[j] *= inv;
    if (lse && threadIdx.x == 0) lse[r] = (double)mx + log(s);
}

static void cu_softmax_rows(float *p, double *lse, const float *x, size_t rows, size_t k) {
    if (!rows) return;
    double *dl = NULL;
    if (lse && !(dl = partials(rows))) return;
    k_softmax<<<(unsigned)rows, reduce_threads(k), 0, g_stream>>>(p, dl, x, k);
    FLASH_CU_LAUNCHED(k_softmax);
    if (lse) {
        FLASH_CU_CHECK(cudaMemcpyAsync(lse, dl, rows * sizeof(double), cudaMemcpyDeviceToHost, g_stream));
        FLASH_CU_CHECK(cudaStreamSynchronize(g_stream));
    }
}

/* ---- gathers ---------------------------------------------------------------------- */

#define IDX_MAX 960
struct idx_list {
    int v[IDX_MAX];
};

/* The host index list on the device: by value when short, else staged. */
static const int *stage_idx(const int *idx, size_t n, idx_list *by_value) {
    if (n <= IDX_MAX) {
        memcpy(by_value->v, idx, n * sizeof(int));
        return NULL;
    }
    int *st = (int *)staging(n * sizeof(int));
    if (st) FLASH_CU_CHECK(cudaMemcpyAsync(st, idx, n * sizeof(int), cudaMemcpyHostToDevice, g_stream));
    return st;
}

__global__ static void k_gather(float *out, const float *table, idx_list il, const int *didx, size_t n, size_t d) {
    const size_t total = n * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / d, j = i % d;
        const int row = didx ? didx[r] : il.v[r];
        out[i] = table[(size_t)row * d + j];
    }
}

static void cu_gather_rows(float *out, const float *table, const int *idx, size_t n, size_t d) {
    if (!n || !d) return;
    idx_list il;
    const int *didx = stage_idx(idx, n, &il);
    if (n > IDX_MAX && !didx) return;
    k_gather<<<flash_cu_blocks(n * d, THREADS), THREADS, 0, g_stream>>>(out, table, il, didx, n, d);
    FLASH_CU_LAUNCHED(k_gather);
}

/* One thread per column: rows added in index order (deterministic, the
 * CPU's order). */
__global__ static void k_scatter_add(float *gtable, const float *g, idx_list il, const int *didx, size_t n,
                                     size_t d) {
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < d; j += (size_t)gridDim.x * blockDim.x)
        for (size_t i = 0; i < n; i++) {
            const int row = didx ? didx[i] : il.v[i];
            gtable[(size_t)row * d + j] += g[i * d + j];
        }
}

static void cu_scatter_add_rows(float *gtable, const float *g, const int *idx, size_t n, size_t d) {
    if (!n || !d) return;
    idx_list il;
    const int *didx = stage_idx(idx, n, &il);
    if (n > IDX_MAX && !didx) return;
    k_scatter_add<<<flash_cu_blocks(d, 128), 128, 0, g_stream>>>(gtable, g, il, didx, n, d);
    FLASH_CU_LAUNCHED(k_scatter_add);
}

/* ---- group norm --------------------------------------------------------------------- */

/* silu and its derivative at z, as the CPU computes them */
__device__ static float silu_grad(float z, float gy) {
    const float s = sigmoid_f(z);
    return gy * s * (1.0f + z * (1.0f - s));
}

/* One block per (sample, group): two-pass statistics in double; then
 * y = x sc + sh (sc = rstd gamma, sh = beta - mean sc), through silu when
 * fused. */
__global__ static void k_gn_forward(float *y, double *stats, const float *x, const float *gamma, const float *beta,
                                    int c, int hw, int groups, float eps, int silu) {
    __shared__ double sh[32];
    const int t = blockIdx.x, s = t / groups, g = t % groups, cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw, base = ((size_t)s * c + (size_t)g * cpg) * hw;
    const float *xg = x + base;
    double acc = 0;
    for (size_t i = threadIdx.x; i < gsize; i += blockDim.x) acc += xg[i];
    const double mean = block_sum(acc, sh) / (double)gsize;
    double sq = 0;
    for (size_t i = threadIdx.x; i < gsize; i += blockDim.x) {
        const double d = xg[i] - mean;
        sq += d * d;
    }
    const double rstd = 1.0 / sqrt(block_sum(sq, sh) / (double)gsize + (double)eps);
    if (threadIdx.x == 0) {
        stats[2 * t] = mean;
        stats[2 * t + 1] = rstd;
    }
    for (size_t i = threadIdx.x; i < gsize; i += blockDim.x) {
        const int cc = g * cpg + (int)(i / hw);
        const float sc = (float)(rstd * (gamma ? gamma[cc] : 1.0f));
        const float shv = (beta ? beta[cc] : 0.0f) - (float)mean * sc;
        const float z = xg[i] * sc + shv;
        y[base + i] = silu ? z * sigmoid_f(z) : z;
    }
}

static void cu_group_norm_forward(float *y, double *stats, const float *x, const float *gamma, const float *beta,
                                  int n, int c, int hw, int groups, float eps, bool silu) {
    if (n <= 0) return;
    k_gn_forward<<<(unsigned)(n * groups), reduce_threads((size_t)(c / groups) * hw), 0, g_stream>>>(
        y, stats, x, gamma, beta, c, hw, groups, eps, silu);
    FLASH_CU_LAUNCHED(k_gn_forward);
}

/* One block per (sample, group): per-channel sums for the parameter
 * gradients (to pg, pb) and the closed-form input gradient
 *   dx = rstd (gamma dz - m1 - xhat m2),
 * dz being the gradient at the norm's output (through silu when fused,
 * recomputing z as the forward did). */
__global__ static void k_gn_backward(float *gx, double *pg, double *pb, const float *gy, const float *x,
                                     const double *stats, const float *gamma, const float *beta, int c, int hw,
                                     int groups, int silu) {
    __shared__ double sh[32];
    const int t = blockIdx.x, s = t / groups, g = t % groups, cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw, base = ((size_t)s * c + (size_t)g * cpg) * hw;
    const double mean = stats[2 * t], rstd = stats[2 * t + 1];
    double sum_dxhat = 0, sum_dxhat_xhat = 0;
    for (int ch = 0; ch < cpg; ch++) {
        const int cc = g * cpg + ch;
        const float *xc = x + base + (size_t)ch * hw, *gc = gy + base + (size_t)ch * hw;
        const float sc = (float)(rstd * (gamma ? gamma[cc] : 1.0f));
        const float shv = (beta ? beta[cc] : 0.0f) - (float)mean * sc;
        double a = 0, b = 0;
        for (int j = threadIdx.x; j < hw; j += blockDim.x) {
            const float dz = silu ? silu_grad(xc[j] * sc + shv, gc[j]) : gc[j];
            a += (double)dz * xc[j];
            b += dz;
        }
        a = block_sum(a, sh);
        b = block_sum(b, sh);
        const double dyxhat = rstd * (a - mean * b);
        if (threadIdx.x == 0) {
            pg[(size_t)s * c + cc] = dyxhat;
            pb[(size_t)s * c + cc] = b;
        }
        const double gm = gamma ? gamma[cc] : 1.0;
        sum_dxhat += gm * b;
        sum_dxhat_xhat += gm * dyxhat;
    }
    if (!gx) return;
    const double m1 = sum_dxhat / (double)gsize, m2 = sum_dxhat_xhat / (double)gsize;
    for (size_t i = threadIdx.x; i < gsize; i += blockDim.x) {
        const int cc = g * cpg + (int)(i / hw);
        const float sc = (float)(rstd * (gamma ? gamma[cc] : 1.0f));
        const float shv = (beta ? beta[cc] : 0.0f) - (float)mean * sc;
        const float dz = silu ? silu_grad(x[base + i] * sc + shv, gy[base + i]) : gy[base + i];
        const float ka = (float)(rstd * (gamma ? gamma[cc] : 1.0));
        const float kb = (float)(-rstd * rstd * m2);
        const float kc = (float)(rstd * (mean * rstd * m2 - m1));
        gx[base + i] += ka * dz + kb * x[base + i] + kc;
    }
}

/* One thread per channel: samples in index order. */
__global__ static void k_gn_params(float *ggamma, float *gbeta, const double *pg, const double *pb, int n, int c) {
    for (int cc = blockIdx.x * blockDim.x + threadIdx.x; cc < c; cc += gridDim.x * blockDim.x) {
        double sg = 0, sb = 0;
        for (int s = 0; s < n; s++) {
            sg += pg[(size_t)s * c + cc];
            sb += pb[(size_t)s * c + cc];
        }
        if (ggamma) ggamma[cc] += (float)sg;
        if (gbeta) gbeta[cc] += (float)sb;
    }
}

static void cu_group_norm_backward(float *gx, float *ggamma, float *gbeta, const float *gy, const float *x,
                                   const double *stats, const float *gamma, const float *beta, int n, int c, int hw,
                                   int groups, bool silu, double *scratch) {
    if (n <= 0) return;
    double *pg = scratch, *pb = scratch + (size_t)n * c;
    k_gn_backward<<<(unsigned)(n * groups), reduce_threads((size_t)hw), 0, g_stream>>>(
        gx, pg, pb, gy, x, stats, gamma, beta, c, hw, groups, silu);
    FLASH_CU_LAUNCHED(k_gn_backward);
    if (ggamma || gbeta) {
        k_gn_params<<<flash_cu_blocks((size_t)c, 128), 128, 0, g_stream>>>(ggamma, gbeta, pg, pb, n, c);
        FLASH_CU_LAUNCHED(k_gn_params);
    }
}

/* ---- resampling ---------------------------------------------------------------------- */

__global__ static void k_upsample(float *y, const float *x, size_t n, int h, int w) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t p = i / ((size_t)h * w);
        const int r = (int)(i / w % h), q = (int)(i % w);
        const float v = x[i];
        float *o = y + p * 4 * h * w + (size_t)(2 * r) * 2 * w + 2 * q;
        o[0] = v;
        o[1] = v;
        o[2 * w] = v;
        o[2 * w + 1] = v;
    }
}

static void cu_upsample2x(float *y, const float *x, int nc, int h, int w) {
    const size_t n = (size_t)nc * h * w;
    if (!n) return;
    k_upsample<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>(y, x, n, h, w);
    FLASH_CU_LAUNCHED(k_upsample);
}

__global__ static void k_upsample_backward(float *gx, const float *gy, size_t n, int h, int w) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t p = i / ((size_t)h * w);
        const int r = (int)(i / w % h), q = (int)(i % w);
        const float *r0 = gy + p * 4 * h * w + (size_t)(2 * r) * 2 * w, *r1 = r0 + 2 * w;
        gx[i] += (r0[2 * q] + r0[2 * q + 1]) + (r1[2 * q] + r1[2 * q + 1]);
    }
}

static void cu_upsample2x_backward(float *gx, const float *gy, int nc, int h, int w) {
    const size_t n = (size_t)nc * h * w;
    if (!n) return;
    k_upsample_backward<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>(gx, gy, n, h, w);
    FLASH_CU_LAUNCHED(k_upsample_backward);
}

__global__ static void k_avg_pool(float *y, const float *x, size_t n, int h, int w, int k) {
    const int ho = h / k, wo = w / k;
    const float inv = 1.0f / (float)(k * k);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t p = i / ((size_t)ho * wo);
        const int r = (int)(i / wo % ho), q = (int)(i % wo);
        const float *xp = x + p * h * w;
        double acc = 0;
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++) acc += xp[(size_t)(r * k + a) * w + q * k + b];
        y[i] = (float)acc * inv;
    }
}

static void cu_avg_pool2d(float *y, const float *x, int nc, int h, int w, int k) {
    const size_t n = (size_t)nc * (h / k) * (w / k);
    if (!n) return;
    k_avg_pool<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>(y, x, n, h, w, k);
    FLASH_CU_LAUNCHED(k_avg_pool);
}

__global__ static void k_avg_pool_backward(float *gx, const float *gy, size_t n, int h, int w, int k) {
    const int ho = h / k, wo = w / k;
    const float inv = 1.0f / (float)(k * k);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t p = i / ((size_t)h * w);
        const int r = (int)(i / w % h), q = (int)(i % w);
        gx[i] += gy[p * ho * wo + (size_t)(r / k) * wo + q / k] * inv;
    }
}

static void cu_avg_pool2d_backward(float *gx, const float *gy, int nc, int h, int w, int k) {
    const size_t n = (size_t)nc * h * w;
    if (!n) return;
    k_avg_pool_backward<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>(gx, gy, n, h, w, k);
    FLASH_CU_LAUNCHED(k_avg_pool_backward);
}

/* ---- optimiser ------------------------------------------------------------------------ */

__global__ static void k_adam(float *w, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                              float step_size, float inv_sqrt_bc2, float decay) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float gi = g[i];
        const float mi = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float denom = sqrtf(vi) * inv_sqrt_bc2 + eps;
        w[i] = w[i] * decay - step_size * mi / denom;
    }
}

static void cu_adam(float *w, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                    float step_size, float inv_sqrt_bc2, float decay) {
    if (!n) return;
    k_adam<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>(w, g, m, v, n, b1, b2, eps, step_size, inv_sqrt_bc2,
                                                                  decay);
    FLASH_CU_LAUNCHED(k_adam);
}

__global__ static void k_ema(float *e, const float *w, size_t n, float decay) {
    const float k = 1.0f - decay;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        e[i] = decay * e[i] + k * w[i];
}

static void cu_ema(float *e, const float *w, size_t n, float decay) {
    if (!n) return;
    k_ema<<<flash_cu_blocks(n, THREADS), THREADS, 0, g_stream>>>(e, w, n, decay);
    FLASH_CU_LAUNCHED(k_ema);
}

static const char *cu_last_error(void) {
    if (!g_failed) {
        /* a fault inside a kernel surfaces at the next synchronising call; look without waiting */
        cudaError_t e = cudaPeekAtLastError();
        if (e != cudaSuccess) fail("CUDA", cudaGetErrorString(e), __FILE__, __LINE__);
    }
    return g_failed ? g_err : NULL;
}

static int cu_sync(void) {
    FLASH_CU_CHECK(cudaStreamSynchronize(g_stream));
    return g_failed ? 1 : 0;
}

static flash_backend g_table = {};

extern "C" __attribute__((visibility("default"))) const flash_backend *flash_backend_entry(char *msg,
                                                                                          size_t msg_size) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        snprintf(msg, msg_size, "no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "count is 0");
        return NULL;
    }
    /* one GPU per rank of a data-parallel run, the one NCCL uses too */
    const int device = flash_local_rank() % count;
    e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        snprintf(msg, msg_size, "cannot initialise CUDA device %d: %s", device, cudaGetErrorString(e));
        return NULL;
    }
    if (!dnn_init(msg, msg_size)) return NULL;
    flash_backend *t = &g_table;
    t->size = sizeof *t;
    t->abi_major = FLASH_BACKEND_ABI_MAJOR;
    t->abi_minor = FLASH_BACKEND_ABI_MINOR;
    t->name = "cuda";
    t->alloc = cu_alloc;
    t->free = cu_free;
    t->zero = cu_zero;
    t->copy = cu_copy;
    t->fill = cu_fill;
    t->copy2d = cu_copy2d;
    t->to_host = cu_to_host;
    t->from_host = cu_from_host;
    t->binary = cu_binary;
    t->bcast_reduce = cu_bcast_reduce;
    t->unary = cu_unary;
    t->unary_backward = cu_unary_backward;
    t->axpby = cu_axpby;
    t->where = cu_where;
    t->where_backward = cu_where_backward;
    t->sum = cu_sum;
    t->sum_rows = cu_sum_rows;
    t->sq_diff_sum = cu_sq_diff_sum;
    t->softmax_rows = cu_softmax_rows;
    t->gather_rows = cu_gather_rows;
    t->scatter_add_rows = cu_scatter_add_rows;
    t->sgemm = sgemm;
    t->conv2d_saved_bytes = conv2d_saved_bytes;
    t->conv2d_forward = conv2d_forward;
    t->conv2d_backward = conv2d_backward;
    t->group_norm_forward = cu_group_norm_forward;
    t->group_norm_backward = cu_group_norm_backward;
    t->upsample2x = cu_upsample2x;
    t->upsample2x_backward = cu_upsample2x_backward;
    t->avg_pool2d = cu_avg_pool2d;
    t->avg_pool2d_backward = cu_avg_pool2d_backward;
    t->adam = cu_adam;
    t->ema = cu_ema;
    t->last_error = cu_last_error;
    t->sync = cu_sync;
    return t;
}
