/* What every harness shares: the input bytes as a file the readers can
 * open by path, kept in memory (memfd) so a run writes nothing to disk. */
#ifndef FLASH_FUZZ_INPUT_H
#define FLASH_FUZZ_INPUT_H

#include <flash/flash.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Replaces the memfd's contents with data; path gets "/proc/self/fd/N".
 * Aborts on failure: a harness that cannot stage its input tests nothing. */
static inline void fuzz_stage(const uint8_t *data, size_t size, char *path, size_t cap)
{
    static int fd = -1;
    if (fd < 0 && (fd = memfd_create("flash_fuzz", 0)) < 0) abort();
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    snprintf(path, cap, "/proc/self/fd/%d", fd);
}

/* Reads every byte of an array a reader accepted (ASan checks it is as
 * large as it says), then frees it. */
static inline void fuzz_touch_array(flash_array *a)
{
    volatile unsigned char sink = 0;
    const size_t bytes = flash_array_numel(a) * flash_dtype_size(a->dtype);
    for (size_t i = 0; i < bytes; i++) sink ^= ((const unsigned char *)a->data)[i];
    (void)sink;
    flash_array_free(a);
}

#endif
