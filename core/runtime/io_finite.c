/* Finding the first non-finite value of an array (include/flash/io.h): the
 * readers of noise, samples, datasets and checkpoints refuse NaN and
 * infinity, since a single one turns every number computed from it into
 * NaN without any other sign of trouble. */
#include "flash/flash.h"

#include <math.h>

int64_t flash_first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return (int64_t)i;
    return -1;
}

int64_t flash_array_first_nonfinite(const flash_array *a)
{
    if (!a || !a->data) return -1;
    const size_t n = flash_array_numel(a);
    if (a->dtype == FLASH_F32) return flash_first_nonfinite(a->data, n);
    if (a->dtype == FLASH_F64) {
        const double *x = a->data;
        for (size_t i = 0; i < n; i++)
            if (!isfinite(x[i])) return (int64_t)i;
    }
    return -1; /* integers are always finite */
}

const char *flash_nonfinite_name(double v)
{
    if (isnan(v)) return "NaN";
    return v > 0 ? "+inf" : "-inf";
}
