/* The backend table: every kernel the tensor ops call, as function pointers.
 *
 * Ops (core/ops_*.c) check shapes, allocate outputs from the context arena,
 * record tape entries and call these kernels; kernels only compute. A CUDA
 * backend fills the same table with device kernels and slots in without
 * touching the ops or any plugin. Pointers passed to kernels are backend
 * memory (arena or flash_tensor_alloc); `double *scratch` arguments are
 * arena memory of the stated size, so kernels never allocate. Arguments
 * marked "host" are host memory on every backend (a device backend copies
 * them in or out itself).
 *
 * Conventions: outputs first; `acc` true means += into the output instead
 * of overwriting it. Every kernel is deterministic for a fixed thread count
 * (reductions use fixed partitions combined in a fixed order).
 *
 * The table crosses dlopen: a device backend (libflash_cuda.so, the test
 * stand-in tests/fake_device/) is built apart from the libflash that loads
 * it, so the table starts with its size and ABI version. Fields are only
 * ever appended, each addition bumping FLASH_BACKEND_ABI_MINOR; changing or
 * removing one bumps FLASH_BACKEND_ABI_MAJOR. The loader (backend_load.c)
 * refuses a table of another major, or one shorter than the major's first
 * layout (FLASH_BACKEND_MIN_SIZE); it reads an older minor's shorter table
 * with the fields appended since then NULL, and a newer minor's longer one
 * up to the fields it knows.
 */
#ifndef FLASH_BACKEND_H
#define FLASH_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* b broadcast over a's shape, collapsed into rows: a is `outer` rows of
 * `inner` contiguous elements. Along a row b is either constant
 * (inner_scalar) or contiguous. Row r's offset into b is found by writing r
 * in the mixed radix osize[0..n_outer) (outermost first) and summing
 * digit * ostride. Made by flash_bcast_make (tensor.c). */
typedef struct flash_bcast {
    size_t outer, inner;
    bool inner_scalar;
    bool same;  /* b has a's shape: plain elementwise */
    int n_outer;
    size_t osize[4], ostride[4];
    size_t a_numel, b_numel;
} flash_bcast;

static inline size_t flash_bcast_row_offset(const flash_bcast *bc, size_t r) {
    size_t off = 0;
    for (int g = bc->n_outer - 1; g >= 0; g--) {
        off += (r % bc->osize[g]) * bc->ostride[g];
        r /= bc->osize[g];
    }
    return off;
}

/* A 2-D convolution's geometry: x (n, cin, h, w), w (cout, cin, k, k),
 * y (n, cout, ho, wo), symmetric zero padding. */
typedef struct flash_conv_geom {
    int n, cin, h, w;
    int cout, k, stride, pad;
    int ho, wo;
    bool bias;
    /* flash_precision (include/flash/tensor.h): FLASH_PRECISION_BF16 takes
     * x, w and dy rounded to bfloat16 with float32 accumulation and float32
     * outputs; only asked of a backend whose conv2d_precision accepts it */
    int precision;
} flash_conv_geom;

typedef enum flash_binop { FLASH_BIN_ADD, FLASH_BIN_SUB, FLASH_BIN_MUL, FLASH_BIN_DIV } flash_binop;

/* Unary ops; a and b are scalar arguments where the op has them. */
typedef enum flash_unop {
    FLASH_UN_AFFINE,     /* a * x + b */
    FLASH_UN_NEG,
    FLASH_UN_EXP,
    FLASH_UN_LOG,
    FLASH_UN_SQRT,
    FLASH_UN_SQUARE,
    FLASH_UN_ABS,
    FLASH_UN_SILU,
    FLASH_UN_RELU,
    FLASH_UN_LEAKY_RELU, /* slope a */
    FLASH_UN_SOFTPLUS,
    FLASH_UN_TANH,
} flash_unop;

#define FLASH_BACKEND_ABI_MAJOR 1
#define FLASH_BACKEND_ABI_MINOR 1

typedef struct flash_backend {
    uint32_t size;      /* sizeof(flash_backend) where the backend was built */
    uint16_t abi_major; /* FLASH_BACKEND_ABI_MAJOR / _MINOR where the backend was built */
    uint16_t abi_minor;
    const char *name;

    /* ---- memory ---- */
    void *(*alloc)(size_t bytes); /* 64-byte aligned; NULL on failure */
    void (*free)(void *p);
    void (*zero)(float *p, size_t n);
    void (*copy)(float *dst, const float *src, size_t n);
    void (*fill)(float *p, size_t n, float v);
    /* dst[r * dst_ld + j] (+)= src[r * src_ld + j] for r < rows, j < cols */
    void (*copy2d)(float *dst, size_t dst_ld, const float *src, size_t src_ld, size_t rows, size_t cols, bool acc);
    /* host <-> backend transfers (plain copies on the CPU) */
    void (*to_host)(float *host, const float *dev, size_t n);
    void (*from_host)(float *dev, const float *host, size_t n);

    /* ---- elementwise ---- */
    /* y (+)= a op b, b broadcast per bc */
    void (*binary)(flash_binop op, float *y, const float *a, const float *b, const flash_bcast *bc, bool acc);
    /* gb[j] (+)= scale * sum over a's positions mapping to b's j of x * w (w
     * may be NULL); scratch: bc->outer doubles. */
    void (*bcast_reduce)(float *gb, const float *x, const float *w, const flash_bcast *bc, float scale,
                         double *scratch, bool acc);
    void (*unary)(flash_unop op, float *y, const float *x, size_t n, float a, float b);
    /* gx (+)= dy/dx * gy, given x and the forward output y */
    void (*unary_backward)(flash_unop op, float *gx, const float *gy, const float *x, const float *y, size_t n,
                           float a, bool acc);
    /* out[r, i] (+)= a[r] * x[r, i] + b[r] * y[r, i] over rows x inner;
     * y and b may be NULL (then out (+)= a x). a, b are host arrays. */
    void (*axpby)(float *out, const float *a, const float *x, const float *b, const float *y, size_t rows,
                  size_t inner, bool acc);
    /* out = mask != 0 ? a : b, mask broadcast per bc (a, b have bc's a shape) */
    void (*where)(float *out, const float *mask, const float *a, const float *b, const flash_bcast *bc);
    /* ga (+)= mask ? g : 0, gb (+)= mask ? 0 : g (either output may be NULL) */
    void (*where_backward)(float *ga, float *gb, const float *mask, const float *g, const flash_bcast *bc);

    /* ---- reductions ---- */
    /* sum of x[i] * w[i] (w may be NULL), in double, fixed partitions */
    double (*sum)(const float *x, const float *w, size_t n);
    /* out[r] = sum_j x[r * len + j]; out is host memory */
    void (*sum_rows)(double *out, const float *x, size_t rows, size_t len);
    /* sum of (a - b)^2 */
    double (*sq_diff_sum)(const float *a, const float *b, size_t n);
    /* row-wise softmax of (rows, k); lse (optional, rows host doubles) gets
     * each row's log-sum-exp */
    void (*softmax_rows)(float *p, double *lse, const float *x, size_t rows, size_t k);

    /* ---- gathers ---- */
    /* out[i, :] = table[idx[i], :]; idx is host memory */
    void (*gather_rows)(float *out, const float *table, const int *idx, size_t n, size_t d);
    /* gtable[idx[i], :] += g[i, :] (in index order: deterministic); idx host */
    void (*scatter_add_rows)(float *gtable, const float *g, const int *idx, size_t n, size_t d);

    /* ---- dense layers (linear, conv, norms) ---- */
    /* c = alpha * op(a) @ op(b) + beta * c, row-major; op(a) is (m, k),
     * op(b) (k, n), transposed when ta / tb. Returns 0, or nonzero when the
     * library failed. */
    int (*sgemm)(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                 int ldb, float beta, float *c, int ldc);
    /* Convolutions: the forward may keep data for the backward (x in the
     * layout the backward reuses) in `saved`, saved_bytes of backend memory
     * the caller provides and keeps until the backward; saved == NULL when
     * no backward will follow. Transient buffers are the backend's own
     * (reused between calls: no allocation in steady state). The three calls
     * return 0, or nonzero with a message in msg (msg_size bytes). */
    int (*conv2d_saved_bytes)(const flash_conv_geom *g, size_t *saved_bytes, char *msg, size_t msg_size);
    /* y (n, cout, ho, wo) = conv(x (n, cin, h, w), w (cout, cin, k, k)) + b (cout, or NULL if !g->bias) */
    int (*conv2d_forward)(const flash_conv_geom *g, float *y, const float *x, const float *w, const float *b,
                          void *saved, char *msg, size_t msg_size);
    /* gx, gw, gb (+)= the gradients (each may be NULL), given the forward's
     * `saved` for these same x and w */
    int (*conv2d_backward)(const flash_conv_geom *g, float *gx, float *gw, float *gb, const float *gy,
                           const float *x, const float *w, const void *saved, char *msg, size_t msg_size);
    /* x (n, c, hw) normalised per (sample, group of c/groups channels),
     * then y = silu(that) when `silu` (the norm-activation pair of U-Nets,
     * fused: one pass, no intermediate tensor); stats: 2 * n * groups
     * doubles (mean, 1/std) for the backward. gamma, beta (c) may be NULL. */
    void (*group_norm_forward)(float *y, double *stats, const float *x, const float *gamma, const float *beta, int n,
                               int c, int hw, int groups, float eps, bool silu);
    /* gx, ggamma, gbeta += (each may be NULL), gy being the gradient of the
     * forward's y; scratch: 2 * n * c doubles */
    void (*group_norm_backward)(float *gx, float *ggamma, float *gbeta, const float *gy, const float *x,
                                const double *stats, const float *gamma, const float *beta, int n, int c, int hw,
                                int groups, bool silu, double *scratch);
    /* nc planes of h x w <-> 2h x 2w; the backward accumulates */
    void (*upsample2x)(float *y, const float *x, int nc, int h, int w);
    void (*upsample2x_backward)(float *gx, const float *gy, int nc, int h, int w);
    /* nc planes of h x w -> h/k x w/k means (h, w multiples of k); the backward accumulates */
    void (*avg_pool2d)(float *y, const float *x, int nc, int h, int w, int k);
    void (*avg_pool2d_backward)(float *gx, const float *gy, int nc, int h, int w, int k);

    /* ---- optional: device backends (NULL on the CPU) ---- */
    /* One Adam(W) step over n parameters (params.c states the formula):
     * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * w = w * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps) */
    void (*adam)(float *w, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                 float step_size, float inv_sqrt_bc2, float decay);
    /* e = decay * e + (1 - decay) * w */
    void (*ema)(float *e, const float *w, size_t n, float decay);
    /* The first asynchronous failure (a kernel launch, a library call), or
     * NULL: kernels return void, so a device backend records its errors
     * and the context reports them (flash_ctx_ok, flash_ctx_status). */
    const char *(*last_error)(void);
    /* Waits for queued work (timing); 0, or nonzero on a device error. */
    int (*sync)(void);

    /* ---- appended in ABI 1.1 ---- */
    /* 0 when the conv2d kernels compute in `precision` (a flash_precision)
     * on this machine at a useful speed, else nonzero with the reason in
     * msg. NULL: float32 only. */
    int (*conv2d_precision)(int precision, char *msg, size_t msg_size);
} flash_backend;

/* The size of ABI 1.0's table (its last field is `sync`): the least a
 * loader of major 1 accepts. Stays as it is when fields are appended. */
#define FLASH_BACKEND_MIN_SIZE (offsetof(flash_backend, sync) + sizeof(int (*)(void)))

extern const flash_backend flash_cpu_backend;

/* The entry symbol of a device backend's shared object: fills msg and
 * returns NULL when no device is usable. The table lives as long as the
 * library; the loader copies what it knows of it. */
typedef const flash_backend *(*flash_backend_entry_fn)(char *msg, size_t msg_size);
#define FLASH_BACKEND_ENTRY "flash_backend_entry"

#endif
