/* The safetensors reader on arbitrary bytes: every tensor it accepts lies
 * inside the file and every metadata key reads back. */
#include <flash/flash.h>

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    fuzz_stage(data, size, path, sizeof path);
    flash_safetensors *st = NULL;
    flash_error err = {0};
    if (flash_safetensors_open(path, &st, &err) == FLASH_OK) {
        volatile unsigned char sink = 0;
        for (size_t i = 0; i < flash_safetensors_count(st); i++) {
            const flash_st_tensor *t = flash_safetensors_at(st, i);
            if (flash_safetensors_find(st, t->name) == NULL) abort();
            const unsigned char *p = t->data;
            for (size_t b = 0; b < t->nbytes; b++) sink ^= p[b];
        }
        (void)flash_safetensors_meta(st, "step");
        (void)sink;
        flash_safetensors_close(st);
    }
    return 0;
}
