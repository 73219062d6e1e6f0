/* The consistency function of latent consistency models (Luo et al. 2023;
 * Song et al. 2023), shared by the `lcm` strategy and the `lcm` sampler. */
#ifndef FLASH_PLUGINS_CONSISTENCY_H
#define FLASH_PLUGINS_CONSISTENCY_H

#include "flash/diffusion.h"

#include <math.h>

/* The boundary scalings as diffusers' LCMScheduler (sigma_data 0.5,
 * timestep_scaling 10): f(x, t) = c_skip(t) x + c_out(t) x0-hat, so that
 * c_skip(0) = 1 and c_out(0) = 0. */
static inline void consistency_boundary(double t, double *c_skip, double *c_out)
{
    const double sigma_data = 0.5, scaled = t * 10.0;
    *c_skip = sigma_data * sigma_data / (scaled * scaled + sigma_data * sigma_data);
    *c_out = scaled / sqrt(scaled * scaled + sigma_data * sigma_data);
}

/* f(x, t) = c_skip(t) x + c_out(t) x0-hat(x, t) of a denoiser, so f(x, 0) = x;
 * w: a guidance scale per sample (NULL: unguided), for a guidance-conditioned
 * denoiser (model.h) that takes it as an input. */
static inline flash_tensor *consistency_fn(flash_denoiser *den, flash_ctx *c, flash_tensor *x, double t,
                                                const int *labels, const float *w)
{
    flash_denoised o;
    if (!x) return NULL;
    if (w && labels ? flash_denoise_each(den, c, x, NULL, t, labels, w, NULL, &o)
                    : flash_denoise(den, c, x, NULL, t, labels, 1.0f, NULL, &o))
        return NULL;
    double cs, co;
    consistency_boundary(t, &cs, &co);
    return flash_lincomb(c, cs, x, co, o.x0);
}

#endif
