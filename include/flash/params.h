/* A model's parameters in one contiguous block.
 *
 * Parameters are declared by name and shape (flash_params_add), then the
 * block is allocated once (flash_params_finalize). data, grad, Adam's m and
 * v, and the EMA copy all share that layout, so one loop updates everything
 * and one write saves it. Each declared parameter is a flash_tensor view
 * into the block (flags has FLASH_TENSOR_PARAM; .grad points into the grad
 * block), so ops on the tape accumulate parameter gradients in place.
 */
#ifndef FLASH_PARAMS_H
#define FLASH_PARAMS_H

#include <stddef.h>
#include <stdint.h>

struct flash_comm; /* comm.h */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct flash_params flash_params;

FLASH_EXPORT flash_params *flash_params_create(void);
FLASH_EXPORT void flash_params_destroy(flash_params *p);
/* Declares a parameter; the returned tensor is valid after finalize (its
 * data pointer is set then). Names are copied. Returns NULL on a duplicate
 * name, after finalize, or out of memory. */
FLASH_EXPORT flash_tensor *flash_params_add(flash_params *p, const char *name, int ndim, const int *shape);
FLASH_EXPORT flash_status flash_params_finalize(flash_params *p, flash_error *err);

FLASH_EXPORT size_t flash_params_count(const flash_params *p); /* total scalars */
FLASH_EXPORT size_t flash_params_n(const flash_params *p);     /* number of tensors */
FLASH_EXPORT flash_tensor *flash_params_at(flash_params *p, size_t i);
FLASH_EXPORT const char *flash_params_name(const flash_params *p, size_t i);
FLASH_EXPORT flash_tensor *flash_params_find(flash_params *p, const char *name);
/* The blocks (count floats each). m, v, ema are NULL until first used. */
FLASH_EXPORT float *flash_params_data(flash_params *p);
FLASH_EXPORT float *flash_params_grad(flash_params *p);
FLASH_EXPORT float *flash_params_adam_m(flash_params *p);
FLASH_EXPORT float *flash_params_adam_v(flash_params *p);
FLASH_EXPORT float *flash_params_ema(flash_params *p);

/* Initialisers (PyTorch's defaults: kaiming-uniform with a = sqrt(5), i.e.
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases alike). */
FLASH_EXPORT void flash_init_uniform(flash_tensor *t, flash_rng *r, float bound);
FLASH_EXPORT void flash_init_normal(flash_tensor *t, flash_rng *r, float std);
FLASH_EXPORT void flash_init_const(flash_tensor *t, float v);
FLASH_EXPORT void flash_init_fan_in(flash_tensor *t, flash_rng *r, int fan_in);

/* Moves every block (data, grad, and m, v, ema when present) to `device`
 * ("cpu" or "cuda", see flash_ctx_create_on) and repoints the parameter
 * views. Parameters start on the CPU: initialise them there, then move;
 * train with a context on the same device; move back (or copy with
 * flash_params_to_host) before reading values on the host. On failure the
 * parameters stay where they were. */
FLASH_EXPORT flash_status flash_params_to_device(flash_params *p, const char *device, flash_error *err);
FLASH_EXPORT const char *flash_params_device(const flash_params *p);
/* Copies the data block (count floats) to host memory, wherever it lives. */
FLASH_EXPORT flash_status flash_params_to_host(const flash_params *p, float *host, flash_error *err);

/* Sums every rank's gradient of a data-parallel run (comm.h), in place:
 * on the CPU with flash_comm_allreduce_sum; on a device with its own
 * collective (NCCL for "cuda") when every rank has it, else through host
 * memory. *path, when given, is what summed: "mpi", "nccl" or "host". */
FLASH_EXPORT flash_status flash_params_allreduce_grad(flash_params *p, struct flash_comm *comm, const char **path,
                                                      flash_error *err);

FLASH_EXPORT void flash_params_zero_grad(flash_params *p);
/* Global L2 norm of the gradient; scales it down to max_norm if above
 * (max_norm <= 0: only measure). Returns the norm before clipping. */
FLASH_EXPORT double flash_params_clip_grad(flash_params *p, double max_norm);
/* true when every gradient is finite */
FLASH_EXPORT bool flash_params_grad_finite(const flash_params *p);

typedef struct flash_adam {
    float lr, beta1, beta2, eps;
    float weight_decay; /* decoupled (AdamW) when > 0 */
} flash_adam;

/* Adam's rate for every tensor whose name starts with prefix: lr times
 * scale (a parameter group of its own, as torch's per-group lr; weight
 * decay scales with it). Returns how many tensors matched. */
FLASH_EXPORT size_t flash_params_set_lr_scale(flash_params *p, const char *prefix, float scale);
/* One Adam(W) step with bias correction; step counts from 1. */
FLASH_EXPORT flash_status flash_adam_step(flash_params *p, const flash_adam *opt, int64_t step, flash_error *err);
/* ema = decay * ema + (1 - decay) * data; the first call copies data. */
FLASH_EXPORT flash_status flash_params_ema_update(flash_params *p, float decay, flash_error *err);
/* dst = mu * dst + (1 - mu) * src over the data blocks (an EMA of another
 * model's weights: LCM's target network). Both must have the same layout
 * (the same model declared twice) and live on the same device. */
FLASH_EXPORT flash_status flash_params_lerp(flash_params *dst, const flash_params *src, float mu, flash_error *err);
/* Swaps data and ema blocks (sample with EMA weights, then swap back). */
FLASH_EXPORT flash_status flash_params_swap_ema(flash_params *p, flash_error *err);
/* Copies values (data only) from src into dst by name; shapes must match.
 * Used to initialise a student from its teacher. The two may live on
 * different devices (the copy then goes through host memory). */
FLASH_EXPORT flash_status flash_params_copy(flash_params *dst, const flash_params *src, flash_error *err);
/* The same, except that parameters of dst whose names start with `keep`
 * and that src lacks keep their values (a guidance-conditioned student's
 * "guidance." input, copied from a teacher without it; model.h). */
FLASH_EXPORT flash_status flash_params_copy_keeping(flash_params *dst, const flash_params *src, const char *keep,
                                                    flash_error *err);

#ifdef __cplusplus
}
#endif
#endif
