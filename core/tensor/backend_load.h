/* Backends by device name (backend_load.c): the CPU table built in, device
 * backends loaded from their shared objects on first use. Only what makes
 * contexts and moves parameters (tensor.c, params.c) needs it; the ops see
 * the table through their context. */
#ifndef FLASH_BACKEND_LOAD_H
#define FLASH_BACKEND_LOAD_H

#include <stddef.h>

#include "tensor/backend.h"

/* The backend of a device name: "cpu" (or NULL), or "cuda" (core/tensor/cuda/,
 * loaded from libflash_cuda.so on first use; FLASH_CUDA_LIB names another
 * file). NULL with a message in msg when the name is unknown, the device
 * unusable or its table of an ABI this libflash cannot read. */
const flash_backend *flash_backend_for(const char *device, char *msg, size_t msg_size);

#endif
