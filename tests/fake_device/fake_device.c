/* A stand-in for libflash_cuda.so on machines without a GPU: the CPU
 * kernels under the name "cuda". Loaded through FLASH_CUDA_LIB by the
 * unit.test_cuda_parity_fake test, it makes CI run every device code path
 * outside the kernels themselves (separate host arena for headers and tape,
 * parameters moved between backends, host copies through to_host /
 * from_host, the backend's entry symbol and loader) and the parity harness,
 * with the CPU as both sides (all errors must be zero or rounding-small).
 *
 * Like the real backend it does not link libflash: the CPU kernels are
 * compiled into it (tests/CMakeLists.txt), so it reaches nothing of
 * libflash's that libflash does not export.
 *
 * FLASH_FAKE_DEVICE_TABLE makes it return a table of another ABI, for the
 * loader's checks (tests/unit/test_backend_load.c):
 *   major        backend ABI major + 1 (refused)
 *   short        a table that ends before `sgemm` (refused)
 *   newer_minor  minor + 1 and fields this libflash does not know (loaded)
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/backend.h"

/* Room for fields appended by a newer minor than this build's. */
static struct {
    flash_backend table;
    void (*later[4])(void);
} g_fake;

__attribute__((visibility("default"))) const flash_backend *flash_backend_entry(char *msg, size_t msg_size) {
    (void)msg;
    (void)msg_size;
    g_fake.table = flash_cpu_backend;
    g_fake.table.name = "cuda";
    const char *variant = getenv("FLASH_FAKE_DEVICE_TABLE");
    if (variant && !strcmp(variant, "major")) {
        g_fake.table.abi_major = FLASH_BACKEND_ABI_MAJOR + 1;
    } else if (variant && !strcmp(variant, "short")) {
        g_fake.table.size = (uint32_t)offsetof(flash_backend, sgemm);
    } else if (variant && !strcmp(variant, "newer_minor")) {
        g_fake.table.abi_minor = FLASH_BACKEND_ABI_MINOR + 1;
        g_fake.table.size = (uint32_t)sizeof g_fake;
    }
    return &g_fake.table;
}
