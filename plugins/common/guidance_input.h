/* The guidance-scale input of a guidance-conditioned denoiser (model.h,
 * takes_guidance): the scale w goes in as the timestep does, a sinusoid of
 * 1000 w through a time_dim x time_dim matrix added to the timestep's
 * sinusoid before the model's time MLP (as diffusers' LCM students embed
 * w * 1000 and add it through cond_proj). The matrix, "guidance.weight",
 * starts at zero, so a student copied from its teacher starts as the
 * teacher's conditional model, whatever w. */
#ifndef FLASH_KIT_GUIDANCE_INPUT_H
#define FLASH_KIT_GUIDANCE_INPUT_H

#include <stdlib.h>

#include "flash/flash.h"

#define GUIDANCE_INPUT_SCALE 1000.0f

typedef struct guidance_input {
    flash_tensor *weight; /* (time_dim, time_dim); NULL: the model takes no guidance */
    float *buf;           /* 1000 w, host scratch */
    int cap;
} guidance_input;

/* Declares the parameter; call after every other one, so the layout and
 * the initialisation of a model without it do not change. */
static inline bool guidance_input_declare(guidance_input *g, flash_params *p, int time_dim)
{
    g->weight = flash_params_add(p, "guidance.weight", 2, (int[]){time_dim, time_dim});
    return g->weight != NULL;
}

static inline void guidance_input_init(guidance_input *g)
{
    if (g->weight) flash_init_const(g->weight, 0.0f);
}

/* temb (n, time_dim) + W_g sinusoid(1000 w); temb itself when w is NULL. */
static inline flash_tensor *guidance_input_add(guidance_input *g, flash_ctx *c, flash_tensor *temb, const float *w,
                                               int n, int time_dim, float max_period)
{
    if (!w || !g->weight || !temb) return temb;
    if (n > g->cap) {
        float *b = realloc(g->buf, (size_t)n * sizeof *b);
        if (!b) {
            flash_ctx_fail(c, "guidance input: out of memory for %d scales", n);
            return NULL;
        }
        g->buf = b;
        g->cap = n;
    }
    for (int i = 0; i < n; i++) g->buf[i] = GUIDANCE_INPUT_SCALE * w[i];
    flash_tensor *wemb = flash_timestep_embedding(c, g->buf, n, time_dim, max_period);
    return flash_add(c, temb, flash_linear(c, wemb, g->weight, NULL));
}

static inline void guidance_input_free(guidance_input *g)
{
    free(g->buf);
    g->buf = NULL;
    g->cap = 0;
}

#endif
