/* Vectorisable float math shared by the CPU kernels (backend_cpu*.c):
 * loops over these inline functions vectorise, where libm calls do not. */
#ifndef FLASH_CPU_MATH_H
#define FLASH_CPU_MATH_H

#include <stdint.h>
#include <string.h>

/* exp in plain C that the compiler vectorises (glibc's expf is a scalar
 * call, ~10x slower in these loops). Cephes' expf: x = n ln2 + r with
 * |r| <= ln2/2, a degree-6 polynomial for e^r, 2^n by building the exponent
 * bits. Inputs are clamped to [-87, 88] so 2^n stays a normal float: exp of
 * anything below -87 returns e^-87 (1.6e-38) instead of a denormal or 0.
 * Relative error about 2e-7 (a couple of ulp). */
static inline float flash_cpu_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* round x / ln2 to the nearest integer with the 1.5 * 2^23 trick */
    const float shift = 12582912.0f;
    const float n = (x * 1.44269504088896341f + shift) - shift;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* NaN in x keeps p NaN; the exponent only needs a defined cast */
    const float nn = n == n ? n : 0.0f;
    const uint32_t bits = (uint32_t)((int32_t)nn + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float flash_cpu_sigmoid(float x) { return 1.0f / (1.0f + flash_cpu_expf(-x)); }

#endif
