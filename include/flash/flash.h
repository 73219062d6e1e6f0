/* flash — a C framework for few-step diffusion distillation.
 *
 * This is the umbrella header: a plugin or a program includes only this.
 *
 *   flash_ctx     an iteration's workspace: arena, autograd tape, grad mode
 *   flash_tensor  float32, up to 4-D (N, C, H, W), contiguous
 *   flash_params  a model's parameters in one block (data, grad, Adam m/v, EMA)
 *   flash_cfg     a YAML node that remembers file:line:col
 *   plugin.h      the versioned ABI for shared-object components
 *
 * Example (a training step):
 *
 *   flash_ctx_reset(ctx);
 *   flash_tensor *pred = model->forward(self, ctx, x, &cond);
 *   flash_tensor *loss = flash_mse(ctx, pred, target);
 *   flash_params_zero_grad(P);
 *   if (flash_backward(ctx, loss, &err)) goto fail;
 *   flash_adam_step(P, &adam, step);
 *
 * Conventions: functions return flash_status and fill a caller-owned
 * flash_error; library code never exits or prints to stdout. Tensor ops
 * return NULL after recording a sticky error in the context (see tensor.h).
 */
#ifndef FLASH_FLASH_H
#define FLASH_FLASH_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLASH_VERSION_STRING "0.1.0"

#if defined(_WIN32)
#define FLASH_EXPORT __declspec(dllexport)
#else
#define FLASH_EXPORT __attribute__((visibility("default")))
#endif

#if defined(__GNUC__)
#define FLASH_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FLASH_PRINTF(a, b)
#endif

/* Status codes. Tools map FLASH_ERR_CONFIG, FLASH_ERR_USAGE and
 * FLASH_ERR_INPUT (bad input of any kind) to exit code 2, every other
 * failure to exit code 1. Values only grow at the end. */
typedef enum flash_status {
    FLASH_OK = 0,
    FLASH_ERR_RUNTIME = 1, /* numerical failure, bad state */
    FLASH_ERR_CONFIG = 2,  /* bad YAML, unknown key, wrong type, unknown plugin */
    FLASH_ERR_USAGE = 3,   /* bad command-line use */
    FLASH_ERR_IO = 4,      /* a write or another file operation failed */
    FLASH_ERR_NOMEM = 5,
    FLASH_ERR_PLUGIN = 6, /* a shared object that cannot be loaded or is malformed */
    FLASH_ERR_INPUT = 7,  /* an input file missing, unreadable, malformed or truncated (the readers) */
} flash_status;

/* Caller-owned error: the first failure fills it; message names file, line,
 * key or component where one is known. */
typedef struct flash_error {
    flash_status status;
    char msg[1024];
} flash_error;

/* Sets err (if not NULL) and returns st, so `return flash_error_set(...)` reads well. */
FLASH_EXPORT flash_status flash_error_set(flash_error *err, flash_status st, const char *fmt, ...)
    FLASH_PRINTF(3, 4);
FLASH_EXPORT flash_status flash_error_setv(flash_error *err, flash_status st, const char *fmt, va_list ap);
/* Prepends "prefix: " to an existing message (adds context on the way up). */
FLASH_EXPORT void flash_error_prefix(flash_error *err, const char *fmt, ...) FLASH_PRINTF(2, 3);
FLASH_EXPORT const char *flash_status_name(flash_status st);

/* Threads used by flash's own kernels and by the BLAS library. Results are
 * bit-for-bit reproducible for a fixed seed and thread count. */
FLASH_EXPORT void flash_set_threads(int n);
FLASH_EXPORT int flash_get_threads(void);

#ifdef __cplusplus
}
#endif

#include "flash/rng.h"
#include "flash/tensor.h"
#include "flash/params.h"
#include "flash/config.h"
#include "flash/io.h"
#include "flash/log.h"
#include "flash/plugin.h"

#endif
