/* Caller-owned errors, status names, and the thread count shared by flash's
 * kernels (OpenMP) and the BLAS library. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <omp.h>

#include "flash/flash.h"

#if defined(FLASH_BLAS_OPENBLAS) || defined(FLASH_BLAS_DNNL)
/* OpenBLAS's own setter; declared here to avoid depending on cblas.h's
 * location, which differs between distributions. */
void openblas_set_num_threads(int num_threads);
#endif

flash_status flash_error_setv(flash_error *err, flash_status st, const char *fmt, va_list ap) {
    if (err) {
        err->status = st;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return st;
}

flash_status flash_error_set(flash_error *err, flash_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    flash_error_setv(err, st, fmt, ap);
    va_end(ap);
    return st;
}

void flash_error_prefix(flash_error *err, const char *fmt, ...) {
    if (!err) return;
    char pre[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    /* shift the old message right and write "prefix: " in front,
     * truncating the tail if the whole does not fit */
    size_t lp = strlen(pre), cap = sizeof err->msg - 1;
    if (lp + 2 > cap) lp = cap - 2;
    size_t lo = strnlen(err->msg, cap);
    if (lp + 2 + lo > cap) lo = cap - lp - 2;
    memmove(err->msg + lp + 2, err->msg, lo);
    memcpy(err->msg, pre, lp);
    err->msg[lp] = ':';
    err->msg[lp + 1] = ' ';
    err->msg[lp + 2 + lo] = '\0';
}

const char *flash_status_name(flash_status st) {
    switch (st) {
    case FLASH_OK: return "ok";
    case FLASH_ERR_RUNTIME: return "runtime error";
    case FLASH_ERR_CONFIG: return "config error";
    case FLASH_ERR_USAGE: return "usage error";
    case FLASH_ERR_IO: return "I/O error";
    case FLASH_ERR_INPUT: return "bad input file";
    case FLASH_ERR_NOMEM: return "out of memory";
    case FLASH_ERR_PLUGIN: return "plugin error";
    }
    return "unknown error";
}

static int flash_threads = 0; /* 0: not set, use OpenMP's default */

void flash_set_threads(int n) {
    if (n < 1) n = 1;
    flash_threads = n;
    omp_set_num_threads(n);
#if defined(FLASH_BLAS_OPENBLAS) || defined(FLASH_BLAS_DNNL)
    openblas_set_num_threads(n);
#endif
}

int flash_get_threads(void) { return flash_threads > 0 ? flash_threads : omp_get_max_threads(); }
