/* The CPU backend: plain loops the compiler vectorises, OpenMP across cores
 * above FLASH_PAR_THRESHOLD elements.
 *
 * Determinism: elementwise kernels are trivially deterministic. Reductions
 * split the input into fixed blocks of FLASH_SUM_BLOCK elements whatever the
 * thread count, sum each block in double with a fixed lane order, and add
 * the block sums in index order, so the result does not even depend on the
 * number of threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/backend_cpu_nn.h"
#include "tensor/cpu_math.h"
#include "tensor/tensor_internal.h"

#define FLASH_SUM_BLOCK 16384
#define FLASH_SUM_MAX_BLOCKS 4096

static void *cpu_alloc(size_t bytes) {
    /* aligned_alloc needs a size that is a multiple of the alignment */
    size_t sz = (bytes + FLASH_ARENA_ALIGN - 1) / FLASH_ARENA_ALIGN * FLASH_ARENA_ALIGN;
    if (sz == 0) sz = FLASH_ARENA_ALIGN;
    return aligned_alloc(FLASH_ARENA_ALIGN, sz);
}

static void cpu_free(void *p) { free(p); }

static void cpu_zero(float *p, size_t n) {
    if (n) memset(p, 0, n * sizeof(float));
}

static void cpu_copy(float *dst, const float *src, size_t n) {
    if (n && dst != src) memmove(dst, src, n * sizeof(float));
}

static void cpu_fill(float *p, size_t n, float v) {
    for (size_t i = 0; i < n; i++) p[i] = v;
}

static void cpu_copy2d(float *dst, size_t dst_ld, const float *src, size_t src_ld, size_t rows, size_t cols,
                       bool acc) {
    const long long R = (long long)rows;
#pragma omp parallel for schedule(static) if (rows * cols > FLASH_PAR_THRESHOLD && rows > 1)
    for (long long r = 0; r < R; r++) {
        float *d = dst + (size_t)r * dst_ld;
        const float *s = src + (size_t)r * src_ld;
        if (acc)
            for (size_t j = 0; j < cols; j++) d[j] += s[j];
        else
            memcpy(d, s, cols * sizeof(float));
    }
}

static void cpu_to_host(float *host, const float *dev, size_t n) { cpu_copy(host, dev, n); }
static void cpu_from_host(float *dev, const float *host, size_t n) { cpu_copy(dev, host, n); }

/* ---- deterministic sums ---------------------------------------------- */

/* Eight double lanes, combined in a fixed order: vectorisable without
 * reassociation flags, and more accurate than a float accumulator. */
static double sum_block(const float *x, const float *w, size_t n) {
    double acc[8] = {0};
    size_t i = 0;
    if (w) {
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * (double)w[i + l];
        for (; i < n; i++) acc[0] += (double)x[i] * (double)w[i];
    } else {
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l];
        for (; i < n; i++) acc[0] += (double)x[i];
    }
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

static double sq_diff_block(const float *a, const float *b, size_t n) {
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            double d = (double)a[i + l] - (double)b[i + l];
            acc[l] += d * d;
        }
    for (; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        acc[0] += d * d;
    }
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* Block size for n elements: FLASH_SUM_BLOCK, grown so that the partial sums
 * fit the stack array. */
static size_t sum_block_size(size_t n) {
    size_t bs = FLASH_SUM_BLOCK;
    while ((n + bs - 1) / bs > FLASH_SUM_MAX_BLOCKS) bs *= 2;
    return bs;
}

static double cpu_sum(const float *x, const float *w, size_t n) {
    if (n <= FLASH_SUM_BLOCK) return sum_block(x, w, n);
    size_t bs = sum_block_size(n), nb = (n + bs - 1) / bs;
    double part[FLASH_SUM_MAX_BLOCKS];
    const long long NB = (long long)nb;
#pragma omp parallel for schedule(static)
    for (long long k = 0; k < NB; k++) {
        size_t lo = (size_t)k * bs, len = n - lo < bs ? n - lo : bs;
        part[k] = sum_block(x + lo, w ? w + lo : NULL, len);
    }
    double s = 0;
    for (size_t k = 0; k < nb; k++) s += part[k];
    return s;
}

static double cpu_sq_diff_sum(const float *a, const float *b, size_t n) {
    if (n <= FLASH_SUM_BLOCK) return sq_diff_block(a, b, n);
    size_t bs = sum_block_size(n), nb = (n + bs - 1) / bs;
    double part[FLASH_SUM_MAX_BLOCKS];
    const long long NB = (long long)nb;
#pragma omp parallel for schedule(static)
    for (long long k = 0; k < NB; k++) {
        size_t lo = (size_t)k * bs, len = n - lo < bs ? n - lo : bs;
        part[k] = sq_diff_block(a + lo, b + lo, len);
    }
    double s = 0;
    for (size_t k = 0; k < nb; k++) s += part[k];
    return s;
}

static void cpu_sum_rows(double *out, const float *x, size_t rows, size_t len) {
    if (rows == 1) {
        out[0] = cpu_sum(x, NULL, len);
        return;
    }
    const long long R = (long long)rows;
#pragma omp parallel for schedule(static) if (rows * len > FLASH_PAR_THRESHOLD)
    for (long long r = 0; r < R; r++) out[r] = sum_block(x + (size_t)r * len, NULL, len);
}

/* ---- elementwise ----------------------------------------------------- */

/* One row: the switch is hoisted so each loop is a plain vectorisable one.
 * No restrict: y may alias a (in-place accumulation). */
static void binary_row(flash_binop op, float *y, const float *a, const float *b, size_t n,
                       bool scalar, bool acc) {
#define FLASH_BIN_LOOP(EXPR)                                                                        \
    do {                                                                                            \
        if (scalar) {                                                                               \
            const float bv = b[0];                                                                  \
            if (acc)                                                                                \
                for (size_t i = 0; i < n; i++) { const float av = a[i], bb = bv; y[i] += (EXPR); } \
            else                                                                                    \
                for (size_t i = 0; i < n; i++) { const float av = a[i], bb = bv; y[i] = (EXPR); }  \
        } else {                                                                                    \
            if (acc)                                                                                \
                for (size_t i = 0; i < n; i++) { const float av = a[i], bb = b[i]; y[i] += (EXPR); } \
            else                                                                                    \
                for (size_t i = 0; i < n; i++) { const float av = a[i], bb = b[i]; y[i] = (EXPR); } \
        }                                                                                           \
    } while (0)
    switch (op) {
    case FLASH_BIN_ADD: FLASH_BIN_LOOP(av + bb); break;
    case FLASH_BIN_SUB: FLASH_BIN_LOOP(av - bb); break;
    case FLASH_BIN_MUL: FLASH_BIN_LOOP(av * bb); break;
    case FLASH_BIN_DIV: FLASH_BIN_LOOP(av / bb); break;
    }
#undef FLASH_BIN_LOOP
}

/* Work items are (row, chunk of the row) pairs, so both many short rows and
 * one long row spread over the threads. */
#define FLASH_CHUNK 16384

static void cpu_binary(flash_binop op, float *y, const float *a, const float *b, const flash_bcast *bc, bool acc) {
    const size_t L = bc->inner, nch = (L + FLASH_CHUNK - 1) / FLASH_CHUNK;
    const long long NW = (long long)(bc->outer * nch);
#pragma omp parallel for schedule(static) if (bc->a_numel > FLASH_PAR_THRESHOLD && NW > 1)
    for (long long k = 0; k < NW; k++) {
        const size_t r = (size_t)k / nch, lo = ((size_t)k % nch) * FLASH_CHUNK;
        const size_t len = L - lo < FLASH_CHUNK ? L - lo : FLASH_CHUNK;
        const float *br = b + flash_bcast_row_offset(bc, r);
        const size_t o = r * L + lo;
        binary_row(op, y + o, a + o, bc->inner_scalar ? br : br + lo, len, bc->inner_scalar, acc);
    }
}

static void cpu_bcast_reduce(float *gb, const float *x, const float *w, const flash_bcast *bc, float scale,
                             double *scratch, bool acc) {
    const size_t L = bc->inner, R = bc->outer;
    if (bc->same) {
        const long long N = (long long)bc->a_numel;
#pragma omp parallel for schedule(static) if (N > FLASH_PAR_THRESHOLD)
        for (long long i = 0; i < N; i++) {
            const float v = scale * (w ? x[i] * w[i] : x[i]);
            gb[i] = acc ? gb[i] + v : v;
        }
        return;
    }
    /* b is smaller than a here: zeroing it first costs little */
    if (!acc) cpu_zero(gb, bc->b_numel);
    if (bc->inner_scalar) {
        /* each row reduces to one element of b: row sums in parallel, then
         * added to b in row order */
        if (R == 1) {
            scratch[0] = cpu_sum(x, w, L);
        } else {
            const long long RR = (long long)R;
#pragma omp parallel for schedule(static) if (bc->a_numel > FLASH_PAR_THRESHOLD)
            for (long long r = 0; r < RR; r++)
                scratch[r] = sum_block(x + (size_t)r * L, w ? w + (size_t)r * L : NULL, L);
        }
        for (size_t r = 0; r < R; r++) gb[flash_bcast_row_offset(bc, r)] += (float)(scale * scratch[r]);
        return;
    }
    /* rows are contiguous in b: each thread owns a fixed column range and
     * walks all rows in order */
    const size_t chunk = 1024;
    const long long NC = (long long)((L + chunk - 1) / chunk);
    (void)scratch;
#pragma omp parallel for schedule(static) if (bc->a_numel > FLASH_PAR_THRESHOLD && NC > 1)
    for (long long k = 0; k < NC; k++) {
        size_t lo = (size_t)k * chunk, hi = lo + chunk < L ? lo + chunk : L;
        for (size_t r = 0; r < R; r++) {
            float *g = gb + flash_bcast_row_offset(bc, r);
            const float *xr = x + r * L, *wr = w ? w + r * L : NULL;
            if (wr)
                for (size_t j = lo; j < hi; j++) g[j] += scale * xr[j] * wr[j];
            else
                for (size_t j = lo; j < hi; j++) g[j] += scale * xr[j];
        }
    }
}



/* tanh(x) = 1 - 2 / (e^2x + 1) loses relative accuracy near 0, where the
 * odd Taylor series to x^9 is used instead (error < 2e-9 for |x| < 0.3). */
static inline float tanh_f(float x) {
    const float x2 = x * x;
    float p = 62.0f / 2835.0f;
    p = p * x2 - 17.0f / 315.0f;
    p = p * x2 + 2.0f / 15.0f;
    p = p * x2 - 1.0f / 3.0f;
    const float small = x + x * x2 * p;
    const float big = 1.0f - 2.0f / (flash_cpu_expf(2.0f * x) + 1.0f);
    return fabsf(x) < 0.3f ? small : big;
}

static inline float softplus_f(float x) {
    /* log(1 + e^x) without overflow */
    return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

/* y may alias x (in-place) */
static void unary_range(flash_unop op, float *y, const float *x, size_t n, float a, float b) {
    switch (op) {
    case FLASH_UN_AFFINE: for (size_t i = 0; i < n; i++) y[i] = a * x[i] + b; break;
    case FLASH_UN_NEG: for (size_t i = 0; i < n; i++) y[i] = -x[i]; break;
    case FLASH_UN_EXP: for (size_t i = 0; i < n; i++) y[i] = flash_cpu_expf(x[i]); break;
    case FLASH_UN_LOG: for (size_t i = 0; i < n; i++) y[i] = logf(x[i]); break;
    case FLASH_UN_SQRT: for (size_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
    case FLASH_UN_SQUARE: for (size_t i = 0; i < n; i++) y[i] = x[i] * x[i]; break;
    case FLASH_UN_ABS: for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]); break;
    case FLASH_UN_SILU: for (size_t i = 0; i < n; i++) y[i] = x[i] * flash_cpu_sigmoid(x[i]); break;
    case FLASH_UN_RELU: for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f; break;
    case FLASH_UN_LEAKY_RELU: for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : a * x[i]; break;
    case FLASH_UN_SOFTPLUS: for (size_t i = 0; i < n; i++) y[i] = softplus_f(x[i]); break;
    case FLASH_UN_TANH: for (size_t i = 0; i < n; i++) y[i] = tanh_f(x[i]); break;
    }
}

/* gx (+)= d; the switch picks the loop, acc picks store or add-store */
#define FLASH_UB_LOOP(D)                                                          \
    do {                                                                          \
        if (acc)                                                                  \
            for (size_t i = 0; i < n; i++) gx[i] += (D);                          \
        else                                                                      \
            for (size_t i = 0; i < n; i++) gx[i] = (D);                           \
    } while (0)

static void unary_backward_range(flash_unop op, float *restrict gx, const float *restrict gy, const float *x,
                                 const float *y, size_t n, float a, bool acc) {
    switch (op) {
    case FLASH_UN_AFFINE: FLASH_UB_LOOP(a * gy[i]); break;
    case FLASH_UN_NEG: FLASH_UB_LOOP(-gy[i]); break;
    case FLASH_UN_EXP: FLASH_UB_LOOP(gy[i] * y[i]); break;
    case FLASH_UN_LOG: FLASH_UB_LOOP(gy[i] / x[i]); break;
    case FLASH_UN_SQRT: FLASH_UB_LOOP(gy[i] * 0.5f / y[i]); break;
    case FLASH_UN_SQUARE: FLASH_UB_LOOP(2.0f * x[i] * gy[i]); break;
    case FLASH_UN_ABS: FLASH_UB_LOOP(x[i] > 0 ? gy[i] : (x[i] < 0 ? -gy[i] : 0.0f)); break;
    case FLASH_UN_SILU: FLASH_UB_LOOP(gy[i] * flash_cpu_sigmoid(x[i]) * (1.0f + x[i] * (1.0f - flash_cpu_sigmoid(x[i])))); break;
    case FLASH_UN_RELU: FLASH_UB_LOOP(x[i] > 0 ? gy[i] : 0.0f); break;
    case FLASH_UN_LEAKY_RELU: FLASH_UB_LOOP(x[i] > 0 ? gy[i] : a * gy[i]); break;
    case FLASH_UN_SOFTPLUS: FLASH_UB_LOOP(gy[i] * flash_cpu_sigmoid(x[i])); break;
    case FLASH_UN_TANH: FLASH_UB_LOOP(gy[i] * (1.0f - y[i] * y[i])); break;
    }
}
#undef FLASH_UB_LOOP

static void cpu_unary(flash_unop op, float *y, const float *x, size_t n, float a, float b) {
    const size_t chunk = FLASH_PAR_THRESHOLD;
    const long long NC = (long long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (n > FLASH_PAR_THRESHOLD)
    for (long long k = 0; k < NC; k++) {
        size_t lo = (size_t)k * chunk, len = n - lo < chunk ? n - lo : chunk;
        unary_range(op, y + lo, x + lo, len, a, b);
    }
}

static void cpu_unary_backward(flash_unop op, float *gx, const float *gy, const float *x, const float *y, size_t n,
                               float a, bool acc) {
    const size_t chunk = FLASH_PAR_THRESHOLD;
    const long long NC = (long long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (n > FLASH_PAR_THRESHOLD)
    for (long long k = 0; k < NC; k++) {
        size_t lo = (size_t)k * chunk, len = n - lo < chunk ? n - lo : chunk;
        unary_backward_range(op, gx + lo, gy + lo, x ? x + lo : NULL, y ? y + lo : NULL, len, a, acc);
    }
}

static void cpu_axpby(float *out, const float *a, const float *x, const float *b, const float *y, size_t rows,
                      size_t inner, bool acc) {
    const size_t nch = (inner + FLASH_CHUNK - 1) / FLASH_CHUNK;
    const long long NW = (long long)(rows * nch);
#pragma omp parallel for schedule(static) if (rows * inner > FLASH_PAR_THRESHOLD && NW > 1)
    for (long long k = 0; k < NW; k++) {
        const size_t r = (size_t)k / nch, lo = ((size_t)k % nch) * FLASH_CHUNK;
        const size_t len = inner - lo < FLASH_CHUNK ? inner - lo : FLASH_CHUNK;
        float *o = out + r * inner + lo;
        const float *xr = x + r * inner + lo;
        const float av = a[r];
        if (y) {
            const float *yr = y + r * inner + lo;
            const float bv = b[r];
            if (acc)
                for (size_t i = 0; i < len; i++) o[i] += av * xr[i] + bv * yr[i];
            else
                for (size_t i = 0; i < len; i++) o[i] = av * xr[i] + bv * yr[i];
        } else {
            if (acc)
                for (size_t i = 0; i < len; i++) o[i] += av * xr[i];
            else
                for (size_t i = 0; i < len; i++) o[i] = av * xr[i];
        }
    }
}

static void cpu_where(float *out, const float *mask, const float *a, const float *b, const flash_bcast *bc) {
    const long long R = (long long)bc->outer;
    const size_t L = bc->inner;
#pragma omp parallel for schedule(static) if (bc->a_numel > FLASH_PAR_THRESHOLD && R > 1)
    for (long long r = 0; r < R; r++) {
        const float *m = mask + flash_bcast_row_offset(bc, (size_t)r);
        const size_t o = (size_t)r * L;
        if (bc->inner_scalar) {
            cpu_copy(out + o, m[0] != 0.0f ? a + o : b + o, L);
        } else {
            for (size_t i = 0; i < L; i++) out[o + i] = m[i] != 0.0f ? a[o + i] : b[o + i];
        }
    }
}

static void cpu_where_backward(float *ga, float *gb, const float *mask, const float *g, const flash_bcast *bc) {
    const long long R = (long long)bc->outer;
    const size_t L = bc->inner;
#pragma omp parallel for schedule(static) if (bc->a_numel > FLASH_PAR_THRESHOLD && R > 1)
    for (long long r = 0; r < R; r++) {
        const float *m = mask + flash_bcast_row_offset(bc, (size_t)r);
        const size_t o = (size_t)r * L;
        for (size_t i = 0; i < L; i++) {
            bool on = (bc->inner_scalar ? m[0] : m[i]) != 0.0f;
            if (on && ga) ga[o + i] += g[o + i];
            if (!on && gb) gb[o + i] += g[o + i];
        }
    }
}

static void cpu_softmax_rows(float *p, double *lse, const float *x, size_t rows, size_t k) {
    const long long R = (long long)rows;
#pragma omp parallel for schedule(static) if (rows * k > FLASH_PAR_THRESHOLD)
    for (long long r = 0; r < R; r++) {
        const float *xr = x + (size_t)r * k;
        float *pr = p + (size_t)r * k;
        float mx = xr[0];
        for (size_t j = 1; j < k; j++) mx = xr[j] > mx ? xr[j] : mx;
        double s = 0;
        for (size_t j = 0; j < k; j++) {
            pr[j] = expf(xr[j] - mx);
            s += pr[j];
        }
        const float inv = (float)(1.0 / s);
        for (size_t j = 0; j < k; j++) pr[j] *= inv;
        if (lse) lse[r] = (double)mx + log(s);
    }
}

static void cpu_gather_rows(float *out, const float *table, const int *idx, size_t n, size_t d) {
    for (size_t i = 0; i < n; i++) memcpy(out + i * d, table + (size_t)idx[i] * d, d * sizeof(float));
}

static void cpu_scatter_add_rows(float *gtable, const float *g, const int *idx, size_t n, size_t d) {
    for (size_t i = 0; i < n; i++) {
        float *t = gtable + (size_t)idx[i] * d;
        const float *s = g + i * d;
        for (size_t j = 0; j < d; j++) t[j] += s[j];
    }
}

const flash_backend flash_cpu_backend = {
    .size = sizeof(flash_backend),
    .abi_major = FLASH_BACKEND_ABI_MAJOR,
    .abi_minor = FLASH_BACKEND_ABI_MINOR,
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .copy2d = cpu_copy2d,
    .to_host = cpu_to_host,
    .from_host = cpu_from_host,
    .binary = cpu_binary,
    .bcast_reduce = cpu_bcast_reduce,
    .unary = cpu_unary,
    .unary_backward = cpu_unary_backward,
    .axpby = cpu_axpby,
    .where = cpu_where,
    .where_backward = cpu_where_backward,
    .sum = cpu_sum,
    .sum_rows = cpu_sum_rows,
    .sq_diff_sum = cpu_sq_diff_sum,
    .softmax_rows = cpu_softmax_rows,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    /* dense layers (linear, conv, norms): backend_cpu_dnnl.c, backend_cpu_nn.c */
    .sgemm = flash_cpu_sgemm,
    .conv2d_saved_bytes = flash_cpu_conv2d_saved_bytes,
    .conv2d_forward = flash_cpu_conv2d_forward,
    .conv2d_backward = flash_cpu_conv2d_backward,
    .group_norm_forward = flash_cpu_group_norm_forward,
    .group_norm_backward = flash_cpu_group_norm_backward,
    .upsample2x = flash_cpu_upsample2x,
    .upsample2x_backward = flash_cpu_upsample2x_backward,
    .avg_pool2d = flash_cpu_avg_pool2d,
    .avg_pool2d_backward = flash_cpu_avg_pool2d_backward,
    .conv2d_precision = flash_cpu_conv2d_precision,
};
