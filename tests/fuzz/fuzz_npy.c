/* The NPY reader on arbitrary bytes. */
#include <flash/flash.h>

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    fuzz_stage(data, size, path, sizeof path);
    flash_array a = {0};
    flash_error err = {0};
    if (flash_npy_read(path, &a, &err) == FLASH_OK) {
        /* a read array is as large as it says */
        volatile unsigned char sink = 0;
        const size_t bytes = flash_array_numel(&a) * flash_dtype_size(a.dtype);
        for (size_t i = 0; i < bytes; i++) sink ^= ((const unsigned char *)a.data)[i];
        (void)sink;
        flash_array_free(&a);
    }
    return 0;
}
