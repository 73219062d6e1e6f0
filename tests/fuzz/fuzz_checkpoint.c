/* The checkpoint loader on arbitrary bytes, into a small declared
 * parameter block: it loads only a file that matches it by name and shape
 * and whose checksums hold, and never writes outside the block. */
#include <flash/flash.h>
#include <stdlib.h>

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static flash_params *p;
    if (!p) {
        flash_error e = {0};
        p = flash_params_create();
        if (!p || !flash_params_add(p, "w", 2, (const int[]){3, 4}) || !flash_params_add(p, "b", 1, (const int[]){4}) ||
            flash_params_finalize(p, &e) != FLASH_OK)
            abort();
    }
    char path[64];
    fuzz_stage(data, size, path, sizeof path);
    flash_ckpt_info info = {0};
    flash_error err = {0};
    if (flash_checkpoint_load(path, p, &info, &err) == FLASH_OK) free(info.config_yaml);
    return 0;
}
