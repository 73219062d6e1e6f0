/* The YAML config loader: parse, then the properties a parsed config keeps.
 * The input is split at its first NUL byte: before it the YAML, after it
 * one `--set KEY=VALUE` applied to the result. A parsed config prints, and
 * printing is idempotent (print, parse, print gives the same bytes). An
 * `extends:` inside the text names files relative to the working directory
 * (tools/fuzz.sh runs from tests/data/config, where the seed corpus's bases
 * are). */
#include <flash/flash.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    const size_t yaml_len = strlen(text);
    const char *set = yaml_len < size ? text + yaml_len + 1 : NULL;
    flash_cfg *root = NULL;
    flash_error err = {0};
    if (flash_cfg_parse_string(text, "fuzz.yaml", &root, &err) == FLASH_OK) {
        if (set && *set) (void)flash_cfg_set(root, set, &err);
        char *once = flash_cfg_to_yaml(root);
        if (once) {
            flash_cfg *again = NULL;
            flash_error e2 = {0};
            /* what flash prints, flash reads back to the same text */
            if (flash_cfg_parse_string(once, "printed.yaml", &again, &e2) != FLASH_OK) abort();
            char *twice = flash_cfg_to_yaml(again);
            if (!twice || strcmp(once, twice) != 0) abort();
            free(twice);
            flash_cfg_free(again);
            free(once);
        }
        flash_cfg_free(root);
    }
    free(text);
    return 0;
}
