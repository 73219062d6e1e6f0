/* Internals shared by the I/O files of libflash (not part of the public API). */
#ifndef FLASH_IO_INTERNAL_H
#define FLASH_IO_INTERNAL_H

#include "flash/flash.h"

#include <stdio.h>

/* The data section of an open safetensors file: every tensor's bytes, in
 * file order, exactly tiled (the reader checks this). */
const unsigned char *flash_safetensors_data_section(const flash_safetensors *st, size_t *size);

/* FNV-1a 64-bit hash, continued from h (start with FLASH_FNV1A64_INIT). */
#define FLASH_FNV1A64_INIT 0xcbf29ce484222325ull
uint64_t flash_fnv1a64(uint64_t h, const void *data, size_t n);

/* Opens an input file for reading: only a regular file (a FIFO, device,
 * socket or directory is refused with FLASH_ERR_INPUT, without blocking on
 * it); a missing or unreadable one is FLASH_ERR_INPUT too. Returns the
 * descriptor, or -1 with err set. */
int flash_open_input(const char *path, flash_error *err);
/* The same as a stream for fread; NULL with err set. */
FILE *flash_fopen_input(const char *path, flash_error *err);

#endif
