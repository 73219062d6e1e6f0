/* Internals shared by the I/O files of libflash (not part of the public API). */
#ifndef FLASH_IO_INTERNAL_H
#define FLASH_IO_INTERNAL_H

#include "flash/flash.h"

/* The data section of an open safetensors file: every tensor's bytes, in
 * file order, exactly tiled (the reader checks this). */
const unsigned char *flash_safetensors_data_section(const flash_safetensors *st, size_t *size);

/* FNV-1a 64-bit hash, continued from h (start with FLASH_FNV1A64_INIT). */
#define FLASH_FNV1A64_INIT 0xcbf29ce484222325ull
uint64_t flash_fnv1a64(uint64_t h, const void *data, size_t n);

#endif
