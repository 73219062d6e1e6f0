/* Device backends by name.
 *
 * "cpu" is built into libflash. "cuda" lives in its own shared object,
 * libflash_cuda.so (core/tensor/cuda/, built when FLASH_CUDA=ON), loaded with
 * dlopen the first time a context asks for it, so that libflash itself
 * never links the CUDA runtime, cuBLAS or cuDNN: the CPU-only build and
 * machines without a GPU are unaffected. The object is looked for
 *   1. at $FLASH_CUDA_LIB when set (a full path),
 *   2. beside libflash.so (the build tree's lib/ and the install's libdir),
 *   3. by name through the dynamic loader's search path;
 * its entry symbol (FLASH_BACKEND_ENTRY) initialises the device and returns
 * the backend table, or NULL with the reason. The table's ABI is checked
 * (backend.h) and what this libflash knows of it copied. The result,
 * success or failure, is kept for the life of the process.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"

#include "tensor/backend_load.h"

#define FLASH_CUDA_SONAME "libflash_cuda.so"

static pthread_once_t g_cuda_once = PTHREAD_ONCE_INIT;
static const flash_backend *g_cuda;
static flash_backend g_cuda_table; /* the loaded table, fields it lacks NULL */
static char g_cuda_msg[512];

static void *open_beside_libflash(void) {
    Dl_info info;
    if (!dladdr((void *)&flash_backend_for, &info) || !info.dli_fname) return NULL;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash) return NULL;
    char path[4096];
    int n = snprintf(path, sizeof path, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname, FLASH_CUDA_SONAME);
    if (n < 0 || (size_t)n >= sizeof path) return NULL;
    return dlopen(path, RTLD_NOW | RTLD_LOCAL);
}

/* Can this libflash read the table a backend's entry returned? Another
 * major, or a table shorter than the major's first layout, is refused with
 * both versions named. */
static bool table_readable(const flash_backend *t, const char *path, char *msg, size_t msg_size) {
    if (t->abi_major != FLASH_BACKEND_ABI_MAJOR) {
        snprintf(msg, msg_size,
                 "%s: device backend built for backend ABI %u.%u, this libflash has backend ABI %d.%d "
                 "(the major must match: rebuild the backend against this flash)",
                 path, (unsigned)t->abi_major, (unsigned)t->abi_minor, FLASH_BACKEND_ABI_MAJOR,
                 FLASH_BACKEND_ABI_MINOR);
        return false;
    }
    if (t->size < FLASH_BACKEND_MIN_SIZE) {
        snprintf(msg, msg_size,
                 "%s: device backend table (backend ABI %u.%u) is %u bytes, this libflash (backend ABI %d.%d) "
                 "needs at least %zu",
                 path, (unsigned)t->abi_major, (unsigned)t->abi_minor, (unsigned)t->size, FLASH_BACKEND_ABI_MAJOR,
                 FLASH_BACKEND_ABI_MINOR, (size_t)FLASH_BACKEND_MIN_SIZE);
        return false;
    }
    return true;
}

static void cuda_load(void) {
    const char *env = getenv("FLASH_CUDA_LIB");
    void *h = NULL;
    if (env && *env) {
        h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            snprintf(g_cuda_msg, sizeof g_cuda_msg, "cannot load FLASH_CUDA_LIB=%s: %s", env, dlerror());
            return;
        }
    }
    if (!h) h = open_beside_libflash();
    if (!h) h = dlopen(FLASH_CUDA_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(g_cuda_msg, sizeof g_cuda_msg,
                 "cannot load %s (built only with -DFLASH_CUDA=ON; needs the CUDA runtime, cuBLAS and cuDNN): %s",
                 FLASH_CUDA_SONAME, e ? e : "not found");
        return;
    }
    flash_backend_entry_fn entry;
    void *sym = dlsym(h, FLASH_BACKEND_ENTRY);
    memcpy(&entry, &sym, sizeof entry); /* object pointer to function pointer, without the ISO C warning */
    if (!sym) {
        snprintf(g_cuda_msg, sizeof g_cuda_msg, "%s has no entry symbol %s", FLASH_CUDA_SONAME, FLASH_BACKEND_ENTRY);
        return;
    }
    Dl_info info;
    const char *path = dladdr(sym, &info) && info.dli_fname ? info.dli_fname : FLASH_CUDA_SONAME;
    const flash_backend *t = entry(g_cuda_msg, sizeof g_cuda_msg);
    if (!t) {
        if (!g_cuda_msg[0]) snprintf(g_cuda_msg, sizeof g_cuda_msg, "no usable CUDA device");
        return;
    }
    if (!table_readable(t, path, g_cuda_msg, sizeof g_cuda_msg)) return;
    /* the library stays loaded: the table points into it */
    memcpy(&g_cuda_table, t, t->size < sizeof g_cuda_table ? t->size : sizeof g_cuda_table);
    g_cuda = &g_cuda_table;
}

const flash_backend *flash_backend_for(const char *device, char *msg, size_t msg_size) {
    if (!device || strcmp(device, "cpu") == 0) return &flash_cpu_backend;
    if (strcmp(device, "cuda") == 0) {
        pthread_once(&g_cuda_once, cuda_load);
        if (!g_cuda && msg && msg_size) snprintf(msg, msg_size, "%s", g_cuda_msg);
        return g_cuda;
    }
    if (msg && msg_size) snprintf(msg, msg_size, "unknown device (expected cpu or cuda)");
    return NULL;
}

bool flash_device_available(const char *device) {
    return flash_backend_for(device, NULL, 0) != NULL;
}
