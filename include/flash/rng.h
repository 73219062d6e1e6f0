/* Deterministic random numbers: xoshiro256** with a splitmix64 seeder.
 * The state is plain data so checkpoints can store and restore it exactly. */
#ifndef FLASH_RNG_H
#define FLASH_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct flash_rng {
    uint64_t s[4];
    /* Box-Muller produces pairs; the second value is kept for the next call. */
    uint32_t has_spare;
    float spare;
} flash_rng;

FLASH_EXPORT void flash_rng_seed(flash_rng *r, uint64_t seed);
/* An independent stream derived from (seed, stream): used to give each
 * purpose (data order, noise, dropout) its own reproducible sequence. */
FLASH_EXPORT void flash_rng_seed_stream(flash_rng *r, uint64_t seed, uint64_t stream);
FLASH_EXPORT uint64_t flash_rng_u64(flash_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
FLASH_EXPORT double flash_rng_uniform(flash_rng *r);
/* Uniform integer in [0, n). */
FLASH_EXPORT uint64_t flash_rng_below(flash_rng *r, uint64_t n);
FLASH_EXPORT float flash_rng_normal(flash_rng *r);
FLASH_EXPORT void flash_rng_fill_normal(flash_rng *r, float *out, size_t n);
FLASH_EXPORT void flash_rng_fill_uniform(flash_rng *r, float *out, size_t n, float lo, float hi);
/* Fisher-Yates shuffle of an index array. */
FLASH_EXPORT void flash_rng_shuffle(flash_rng *r, int64_t *idx, size_t n);

#ifdef __cplusplus
}
#endif
#endif
