/* A stand-in for libflash_cuda.so on machines without a GPU: the CPU
 * kernels under the name "cuda". Loaded through FLASH_CUDA_LIB by the
 * unit.test_cuda_parity_fake test, it makes CI run every device code path
 * outside the kernels themselves (separate host arena for headers and tape,
 * parameters moved between backends, host copies through to_host /
 * from_host, the backend's entry symbol and loader) and the parity harness,
 * with the CPU as both sides (all errors must be zero or rounding-small).
 */
#include <stddef.h>

#include "tensor/backend.h"

static flash_backend g_fake;

__attribute__((visibility("default"))) const flash_backend *flash_backend_entry(char *msg, size_t msg_size) {
    (void)msg;
    (void)msg_size;
    g_fake = flash_cpu_backend;
    g_fake.name = "cuda";
    return &g_fake;
}
