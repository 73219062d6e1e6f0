/* Tensors, the per-iteration context, and the differentiable ops.
 *
 * A flash_tensor is float32, contiguous, up to 4-D, row-major (N, C, H, W);
 * 2-D tensors are (N, D). Tensors made by ops live in the context's arena,
 * which flash_ctx_reset() empties while keeping its memory, so a steady-state
 * training loop does not call malloc. Persistent tensors (noise banks,
 * datasets, parameters) come from flash_tensor_alloc or flash_params.
 *
 * Autograd: when grad mode is on and an input requires grad, an op records a
 * tape entry. flash_backward(ctx, loss) walks the tape in reverse and
 * accumulates into .grad (parameters' grads live in their flash_params block).
 * flash_grad_set(ctx, false) opens a no-grad scope; flash_detach cuts the tape.
 *
 * Errors: a shape mismatch or an exhausted arena sets a sticky error in the
 * context and the op returns NULL; every op returns NULL when given a NULL
 * input, so a forward pass can be written without checks and tested once
 * with flash_ctx_ok() at the end.
 *
 * Broadcasting (add, sub, mul, div, where): b's shape, right-aligned with
 * a's, must have each dim equal to a's or 1. Per-sample scalars are (N,1,1,1)
 * (or (N,1) for 2-D data): see flash_tensor_per_sample.
 */
#ifndef FLASH_TENSOR_H
#define FLASH_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLASH_MAX_DIMS 4

enum {
    FLASH_TENSOR_REQUIRES_GRAD = 1u << 0, /* a leaf whose grad is wanted, or an op output on the tape */
    FLASH_TENSOR_OWNS_DATA = 1u << 1,     /* heap-allocated by flash_tensor_alloc */
    FLASH_TENSOR_PARAM = 1u << 2,         /* a view into a flash_params block */
};

struct flash_tape_entry;

typedef struct flash_tensor {
    float *data;  /* numel floats, on the context's device */
    float *grad;  /* same layout; NULL until needed */
    int ndim;
    int shape[FLASH_MAX_DIMS];
    size_t numel;
    uint32_t flags;
    struct flash_tape_entry *op; /* the tape entry that produced it; NULL for leaves */
} flash_tensor;

typedef struct flash_ctx flash_ctx;

/* ---- context ---------------------------------------------------------- */

/* arena_bytes is a first chunk size; the arena grows by chunks when needed. */
FLASH_EXPORT flash_ctx *flash_ctx_create(size_t arena_bytes);
FLASH_EXPORT void flash_ctx_destroy(flash_ctx *c);
/* A context whose arena and kernels live on `device`: "cpu" (the same as
 * flash_ctx_create) or "cuda" (the first GPU, through libflash_cuda.so,
 * loaded on first use; an error names what is missing when no GPU or no
 * CUDA build is there). Tensor data of such a context is device memory:
 * read and write it only through flash_tensor_to_host/_from_host (and
 * flash_tensor_from, flash_tensor_per_sample, which copy host data in). */
FLASH_EXPORT flash_ctx *flash_ctx_create_on(const char *device, size_t arena_bytes, flash_error *err);
/* "cpu" or "cuda". */
FLASH_EXPORT const char *flash_ctx_device(const flash_ctx *c);
/* True when a context can be created on `device` (loads the backend). */
FLASH_EXPORT bool flash_device_available(const char *device);
/* Copies t's numel floats to / from host memory. */
FLASH_EXPORT flash_status flash_tensor_to_host(flash_ctx *c, const flash_tensor *t, float *host, flash_error *err);
FLASH_EXPORT flash_status flash_tensor_from_host(flash_ctx *c, flash_tensor *t, const float *host, flash_error *err);
/* Waits for the device's queued work (for timing); 0, or nonzero after a
 * device error. A no-op on the CPU. */
FLASH_EXPORT int flash_ctx_sync(flash_ctx *c);
/* ---- precision of the dense kernels ------------------------------------
 * Mixed precision: with FLASH_PRECISION_BF16 a context's convolutions
 * (forward, backward data, backward weights) take their operands rounded
 * to bfloat16 and accumulate in float32 into float32 outputs. Everything
 * else stays float32: tensors, weights (the master copy), gradients, the
 * optimiser's state, normalisations, elementwise ops, reductions and the
 * matrix products of linear layers. A backend that cannot compute in a
 * precision at a useful speed refuses it (the CPU needs AVX-512 with
 * oneDNN; the reason is in the error). */
typedef enum flash_precision { FLASH_PRECISION_FP32 = 0, FLASH_PRECISION_BF16 = 1 } flash_precision;
FLASH_EXPORT flash_status flash_ctx_set_precision(flash_ctx *c, flash_precision p, flash_error *err);
FLASH_EXPORT flash_precision flash_ctx_precision(const flash_ctx *c);
/* The precision of the contexts flash_ctx_create_on creates from now on in
 * this process (float32 until set; flash_ctx_create's stay float32), once
 * `device` is known to support it: how `dtype:` of a pipeline reaches every
 * network's context, plugins' included (flash_pipeline_precision, which
 * the `flash` commands call when they load a pipeline). A context that must
 * stay float32 (an evaluator: its features define the metric) sets that
 * itself. */
FLASH_EXPORT flash_status flash_set_default_precision(const char *device, flash_precision p, flash_error *err);
FLASH_EXPORT flash_precision flash_default_precision(void);
/* "fp32", "bf16" */
FLASH_EXPORT const char *flash_precision_name(flash_precision p);
/* ---- profiling (flash bench --profile; core/tensor/profile.c) ----------
 * Every kernel of the context's backend counted, timed (wall time of each
 * call: meaningful on the CPU, whose kernels are done when they return)
 * and, for matrix products and convolutions, its floating-point
 * operations counted from the shapes (2 per multiply-add). The counters
 * are the process's: one profiled context at a time. */
typedef struct flash_profile_row {
    const char *kernel; /* the backend entry: "conv2d_forward", "sgemm", "group_norm_backward", ... */
    int64_t calls;
    double seconds;
    double flops;
} flash_profile_row;
FLASH_EXPORT flash_status flash_ctx_profile_start(flash_ctx *c, flash_error *err); /* zeroes the counters */
FLASH_EXPORT void flash_ctx_profile_stop(flash_ctx *c);
FLASH_EXPORT void flash_ctx_profile_zero(void);
/* The kernels called since the last zero, up to max; returns their count. */
FLASH_EXPORT int flash_ctx_profile_read(flash_profile_row *rows, int max);
/* Every CPU context created while enabled is profiled too (a training
 * loop's, a discriminator's): flash bench --distill. */
FLASH_EXPORT void flash_profile_enable(bool on);
FLASH_EXPORT bool flash_profile_active(void);
/* Phases: the wall time from one call to the next is the previous
 * phase's, and the operations of the kernels meanwhile; name must outlive
 * the profile (a string literal). Returns the phase it ends, so a caller
 * can restore it: prev = flash_profile_phase("teacher"); ...;
 * flash_profile_phase(prev). NULL: no phase. A no-op returning NULL when
 * nothing is profiled. */
FLASH_EXPORT const char *flash_profile_phase(const char *name);
/* Per phase: name in .kernel, entries in .calls, seconds, flops. */
FLASH_EXPORT int flash_profile_read_phases(flash_profile_row *rows, int max);
/* Drops every arena tensor and the tape; clears the sticky error. */
FLASH_EXPORT void flash_ctx_reset(flash_ctx *c);
FLASH_EXPORT bool flash_ctx_ok(const flash_ctx *c);
/* A position in the arena, and a rewind to it that keeps chosen tensors:
 * everything allocated after the mark is dropped except `keep`, whose
 * entries are replaced by contiguous copies at the mark (entries made
 * before the mark stay as they are). It lets a long no-grad loop (a
 * sampler's steps, a teacher's k-step target) hold one step's
 * activations at a time instead of all of them. Refused, with the sticky
 * error, when a tape entry was recorded after the mark. Returns false on
 * failure (sticky error set). */
typedef struct flash_arena_mark {
    const void *chunk, *host_chunk, *tape;
    size_t used, host_used;
} flash_arena_mark;
FLASH_EXPORT flash_arena_mark flash_ctx_mark(const flash_ctx *c);
FLASH_EXPORT bool flash_ctx_rewind(flash_ctx *c, const flash_arena_mark *m, flash_tensor **keep, int n_keep);
FLASH_EXPORT const char *flash_ctx_error(const flash_ctx *c);
/* Records a sticky error (the first one wins). Plugins use it too. */
FLASH_EXPORT void flash_ctx_fail(flash_ctx *c, const char *fmt, ...) FLASH_PRINTF(2, 3);
/* Host memory valid until flash_ctx_reset (the arena itself on the CPU):
 * for what the CPU reads or writes beside a step's tensors (labels, a
 * condition's per-sample timesteps), on every device. On failure records
 * the sticky error and returns NULL. */
FLASH_EXPORT void *flash_host_alloc(flash_ctx *c, size_t bytes);
/* Copies the sticky error into err and returns FLASH_ERR_RUNTIME, or FLASH_OK. */
FLASH_EXPORT flash_status flash_ctx_status(const flash_ctx *c, flash_error *err);
/* Bytes currently reserved by the arena (for tests of the no-malloc rule). */
FLASH_EXPORT size_t flash_ctx_arena_capacity(const flash_ctx *c);
FLASH_EXPORT size_t flash_ctx_arena_chunks(const flash_ctx *c);

/* Grad mode: returns the previous mode, so scopes nest:
 *   bool was = flash_grad_set(c, false); ...; flash_grad_set(c, was); */
FLASH_EXPORT bool flash_grad_set(flash_ctx *c, bool on);
FLASH_EXPORT bool flash_grad_enabled(const flash_ctx *c);

/* Reverse pass from a scalar (numel == 1) loss: d loss / d loss = 1. */
FLASH_EXPORT flash_status flash_backward(flash_ctx *c, flash_tensor *loss, flash_error *err);
/* Reverse pass from any output, seeded with d(something)/d(out) = seed
 * (out->numel host floats): a vector-Jacobian product, for gradients of a
 * weighted sum of a non-scalar output without building the sum on the tape
 * (gradient checks, per-sample weights). */
FLASH_EXPORT flash_status flash_backward_from(flash_ctx *c, flash_tensor *out, const float *seed, flash_error *err);

/* ---- making tensors --------------------------------------------------- */

/* Arena tensors (uninitialised, zeros, filled). */
FLASH_EXPORT flash_tensor *flash_tensor_new(flash_ctx *c, int ndim, const int *shape);
FLASH_EXPORT flash_tensor *flash_tensor_4d(flash_ctx *c, int n, int ch, int h, int w);
FLASH_EXPORT flash_tensor *flash_tensor_2d(flash_ctx *c, int n, int d);
FLASH_EXPORT flash_tensor *flash_tensor_1d(flash_ctx *c, int n);
FLASH_EXPORT flash_tensor *flash_zeros(flash_ctx *c, int ndim, const int *shape);
FLASH_EXPORT flash_tensor *flash_full(flash_ctx *c, int ndim, const int *shape, float value);
/* Arena tensor of shape (n,1,1,1) (or (n,1) when like->ndim == 2) holding v[i];
 * broadcasts as a per-sample scalar against `like`. */
FLASH_EXPORT flash_tensor *flash_tensor_per_sample(flash_ctx *c, const flash_tensor *like, const float *v);
/* Arena tensor wrapping a copy of host data. */
FLASH_EXPORT flash_tensor *flash_tensor_from(flash_ctx *c, int ndim, const int *shape, const float *src);
FLASH_EXPORT flash_tensor *flash_randn(flash_ctx *c, flash_rng *r, int ndim, const int *shape);

/* Persistent heap tensors (outside the arena). */
FLASH_EXPORT flash_tensor *flash_tensor_alloc(int ndim, const int *shape);
FLASH_EXPORT void flash_tensor_free(flash_tensor *t);

FLASH_EXPORT bool flash_tensor_same_shape(const flash_tensor *a, const flash_tensor *b);
/* "(64, 32, 28, 28)" into buf; returns buf. */
FLASH_EXPORT const char *flash_tensor_shape_str(const flash_tensor *t, char *buf, size_t n);
/* Marks a leaf as requiring grad (its .grad is allocated in the arena on demand). */
FLASH_EXPORT void flash_tensor_requires_grad(flash_tensor *t, bool on);

/* ---- views (share data; cheap) ---------------------------------------- */
FLASH_EXPORT flash_tensor *flash_reshape(flash_ctx *c, flash_tensor *x, int ndim, const int *shape);
/* Samples [start, start+len) along dim 0. */
FLASH_EXPORT flash_tensor *flash_narrow(flash_ctx *c, flash_tensor *x, int start, int len);
/* Same data, no tape: the stop-gradient of the distillation rollouts. */
FLASH_EXPORT flash_tensor *flash_detach(flash_ctx *c, flash_tensor *x);
/* A deep copy into the arena (differentiable). */
FLASH_EXPORT flash_tensor *flash_copy(flash_ctx *c, flash_tensor *x);

/* ---- elementwise ------------------------------------------------------ */
FLASH_EXPORT flash_tensor *flash_add(flash_ctx *c, flash_tensor *a, flash_tensor *b);
FLASH_EXPORT flash_tensor *flash_sub(flash_ctx *c, flash_tensor *a, flash_tensor *b);
FLASH_EXPORT flash_tensor *flash_mul(flash_ctx *c, flash_tensor *a, flash_tensor *b);
FLASH_EXPORT flash_tensor *flash_div(flash_ctx *c, flash_tensor *a, flash_tensor *b);
/* y = s * x + b (scalars) */
FLASH_EXPORT flash_tensor *flash_affine(flash_ctx *c, flash_tensor *x, float s, float b);
FLASH_EXPORT flash_tensor *flash_scale(flash_ctx *c, flash_tensor *x, float s);
FLASH_EXPORT flash_tensor *flash_add_scalar(flash_ctx *c, flash_tensor *x, float s);
/* y = a*x + b*y elementwise with per-sample scalars a, b given on the host
 * (length N). The workhorse of samplers: x_{t-1} = alpha x0hat + sigma eps. */
FLASH_EXPORT flash_tensor *flash_axpby(flash_ctx *c, const float *a, flash_tensor *x, const float *b,
                                       flash_tensor *y);
FLASH_EXPORT flash_tensor *flash_neg(flash_ctx *c, flash_tensor *x);
FLASH_EXPORT flash_tensor *flash_exp(flash_ctx *c, flash_tensor *x);
FLASH_EXPORT flash_tensor *flash_log(flash_ctx *c, flash_tensor *x);
FLASH_EXPORT flash_tensor *flash_sqrt(flash_ctx *c, flash_tensor *x);
FLASH_EXPORT flash_tensor *flash_square(flash_ctx *c, flash_tensor *x);
FLASH_EXPORT flash_tensor *flash_abs(flash_ctx *c, flash_tensor *x);
FLASH_EXPORT flash_tensor *flash_silu(flash_ctx *c, flash_tensor *x);
FLASH_EXPORT flash_tensor *flash_relu(flash_ctx *c, flash_tensor *x);
FLASH_EXPORT flash_tensor *flash_leaky_relu(flash_ctx *c, flash_tensor *x, float slope);
FLASH_EXPORT flash_tensor *flash_softplus(flash_ctx *c, flash_tensor *x);
FLASH_EXPORT flash_tensor *flash_tanh(flash_ctx *c, flash_tensor *x);
/* out = mask ? a : b, mask broadcast like b in flash_add (nonzero = true);
 * no gradient flows to mask. Used for classifier-free-guidance dropout. */
FLASH_EXPORT flash_tensor *flash_where(flash_ctx *c, flash_tensor *mask, flash_tensor *a, flash_tensor *b);

/* ---- layers ----------------------------------------------------------- */
/* x (N, in), w (out, in), b (out) or NULL -> (N, out) */
FLASH_EXPORT flash_tensor *flash_linear(flash_ctx *c, flash_tensor *x, flash_tensor *w, flash_tensor *b);
/* a (M, K) @ b (K, N) -> (M, N) */
FLASH_EXPORT flash_tensor *flash_matmul(flash_ctx *c, flash_tensor *a, flash_tensor *b);
/* x (N, Cin, H, W), w (Cout, Cin, k, k), b (Cout) or NULL -> (N, Cout, H', W') */
FLASH_EXPORT flash_tensor *flash_conv2d(flash_ctx *c, flash_tensor *x, flash_tensor *w, flash_tensor *b,
                                        int stride, int pad);
/* x (N, C, H, W), gamma/beta (C) or NULL; statistics per (sample, group). */
FLASH_EXPORT flash_tensor *flash_group_norm(flash_ctx *c, flash_tensor *x, int groups, flash_tensor *gamma,
                                            flash_tensor *beta, float eps);
/* silu(group_norm(x)) in one pass, without the intermediate tensor (the
 * U-Net's norm-activation pair); same arguments as flash_group_norm. */
FLASH_EXPORT flash_tensor *flash_group_norm_silu(flash_ctx *c, flash_tensor *x, int groups, flash_tensor *gamma,
                                                 flash_tensor *beta, float eps);
FLASH_EXPORT flash_tensor *flash_upsample_nearest2x(flash_ctx *c, flash_tensor *x);
/* k x k window, stride k; k == H == W gives global average pooling. */
FLASH_EXPORT flash_tensor *flash_avg_pool2d(flash_ctx *c, flash_tensor *x, int k);
/* along dim 1 (channels for 4-D, features for 2-D) */
FLASH_EXPORT flash_tensor *flash_concat(flash_ctx *c, flash_tensor *a, flash_tensor *b);
/* table (V, D), idx[n] in [0, V) -> (n, D) */
FLASH_EXPORT flash_tensor *flash_embedding(flash_ctx *c, flash_tensor *table, const int *idx, int n);
/* t[n] -> (n, dim): first half sin, second half cos, freq_i = exp(-ln(max_period) i / (dim/2)). No grad. */
FLASH_EXPORT flash_tensor *flash_timestep_embedding(flash_ctx *c, const float *t, int n, int dim,
                                                    float max_period);
/* broadcast (N, C) over (N, C, H, W): returns x + v[:, :, None, None] */
FLASH_EXPORT flash_tensor *flash_add_channel_bias(flash_ctx *c, flash_tensor *x, flash_tensor *v);

/* ---- reductions and losses ------------------------------------------- */
FLASH_EXPORT flash_tensor *flash_sum(flash_ctx *c, flash_tensor *x);  /* -> (1) */
FLASH_EXPORT flash_tensor *flash_mean(flash_ctx *c, flash_tensor *x); /* -> (1) */
FLASH_EXPORT flash_tensor *flash_sum_per_sample(flash_ctx *c, flash_tensor *x);  /* -> (N) */
FLASH_EXPORT flash_tensor *flash_mean_per_sample(flash_ctx *c, flash_tensor *x); /* -> (N) */
/* mean((a - b)^2) -> (1) */
FLASH_EXPORT flash_tensor *flash_mse(flash_ctx *c, flash_tensor *a, flash_tensor *b);
/* logits (N, K), labels[N] -> mean negative log-likelihood (1) */
FLASH_EXPORT flash_tensor *flash_cross_entropy(flash_ctx *c, flash_tensor *logits, const int *labels);
/* row-wise softmax of (N, K); no grad */
FLASH_EXPORT flash_tensor *flash_softmax(flash_ctx *c, flash_tensor *logits);

#ifdef __cplusplus
}
#endif
#endif
