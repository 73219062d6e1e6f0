/* xoshiro256** (Blackman and Vigna, 2018) seeded through splitmix64, and
 * Box-Muller normals. Plain state, so checkpoints restore it exactly. */
#include <math.h>

#include "flash/flash.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void flash_rng_seed(flash_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_spare = 0;
    r->spare = 0.0f;
}

void flash_rng_seed_stream(flash_rng *r, uint64_t seed, uint64_t stream) {
    /* hash the pair so that neighbouring seeds and streams give unrelated states */
    uint64_t x = stream;
    uint64_t h = splitmix64(&x);
    x = seed ^ h;
    uint64_t mixed = splitmix64(&x) ^ rotl(h, 23);
    flash_rng_seed(r, mixed);
}

uint64_t flash_rng_u64(flash_rng *r) {
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double flash_rng_uniform(flash_rng *r) { return (double)(flash_rng_u64(r) >> 11) * 0x1.0p-53; }

uint64_t flash_rng_below(flash_rng *r, uint64_t n) {
    if (n == 0) return 0;
    /* rejection keeps the draw unbiased: discard the short top range */
    const uint64_t lim = (0 - n) % n;
    uint64_t x;
    do x = flash_rng_u64(r);
    while (x < lim);
    return x % n;
}

float flash_rng_normal(flash_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    /* u1 in (0, 1] keeps the log finite */
    double u1 = 1.0 - flash_rng_uniform(r), u2 = flash_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
    r->spare = (float)(rad * sin(th));
    r->has_spare = 1;
    return (float)(rad * cos(th));
}

void flash_rng_fill_normal(flash_rng *r, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = flash_rng_normal(r);
}

void flash_rng_fill_uniform(flash_rng *r, float *out, size_t n, float lo, float hi) {
    const double w = (double)hi - (double)lo;
    for (size_t i = 0; i < n; i++) out[i] = (float)((double)lo + w * flash_rng_uniform(r));
}

void flash_rng_shuffle(flash_rng *r, int64_t *idx, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)flash_rng_below(r, i);
        int64_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
