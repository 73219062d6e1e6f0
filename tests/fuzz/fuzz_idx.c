/* The IDX (MNIST) reader on arbitrary bytes, plain and gzip. */
#include <flash/flash.h>

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    fuzz_stage(data, size, path, sizeof path);
    flash_array a = {0};
    flash_error err = {0};
    if (flash_idx_read(path, &a, &err) == FLASH_OK) fuzz_touch_array(&a);
    return 0;
}
