/* Models (kind FLASH_KIND_MODEL): denoisers, analytic teachers, evaluators
 * and discriminators.
 *
 * A denoiser maps (x_t, t) to its prediction type's output. The condition
 * carries, per sample, the timestep t and the schedule's alpha_t and sigma_t
 * (analytic models need them; networks use t) and the class label (the null
 * class, index num_classes, stands for "unconditional").
 */
#ifndef FLASH_MODEL_H
#define FLASH_MODEL_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum flash_prediction {
    FLASH_PRED_EPSILON = 0,
    FLASH_PRED_V,
    FLASH_PRED_SAMPLE, /* x0 */
} flash_prediction;

typedef struct flash_cond {
    int n;
    const float *t;      /* (n) timesteps in [0, T-1]; may be NULL for evaluators */
    const float *alpha;  /* (n) alpha_t, may be NULL */
    const float *sigma;  /* (n) sigma_t, may be NULL */
    const int *labels;   /* (n) class labels, NULL = unconditional (null class) */
} flash_cond;

typedef struct flash_model_info {
    int ndim;            /* sample dims without the batch: 1 for (D), 3 for (C, H, W) */
    int shape[3];
    int num_classes;     /* 0: unconditional; null class index = num_classes */
    flash_prediction prediction;
    int out_dim;         /* outputs per sample for classifiers/discriminators (0 for denoisers) */
} flash_model_info;

typedef struct flash_model_api {
    flash_component head;
    void (*info)(void *self, flash_model_info *out);
    /* optional: NULL (or returning NULL) for models with nothing to train */
    flash_params *(*params)(void *self);
    /* x (N, shape...) -> (N, shape...) for denoisers, (N, out_dim) otherwise.
     * Errors go to the context's sticky error. */
    flash_tensor *(*forward)(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond);
    /* optional: penultimate features (N, F) of an evaluator */
    flash_tensor *(*features)(void *self, flash_ctx *c, flash_tensor *x);
    /* optional: the exact log-density of the data distribution at one clean
     * sample x (shape...), for class `label` (num_classes or -1: all); only
     * analytic models have it (plots of the true density, exact metrics) */
    double (*log_density)(void *self, const float *x, int label);
    /* optional: a denoiser's encoder feature maps at (x, cond), finest
     * first, the deepest (the bottleneck) last; up to max into out, returns
     * their count, or -1 with the context's error set. Discriminators built
     * on a frozen teacher read them (check head.size before calling). */
    int (*encode)(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond, flash_tensor **out, int max);
    /* optional, appended in ABI 1.2 (check head.size): a guidance-conditioned
     * denoiser takes the classifier-free guidance scale w as one more input,
     * embedded like the timestep (LCM, Luo et al. 2023, sec. 4.2; Meng et
     * al. 2023, guidance distillation), so one evaluation stands for the
     * two of guidance. takes_guidance says whether this instance was built
     * so (the models' `guidance_embed` key); forward_guided is forward with
     * w (n, host memory; 1 is the unguided conditional model). Parameters
     * such a model adds are named "guidance.*": a student initialised from a
     * teacher without them keeps them as initialised. flash_denoise calls
     * it in place of the two halves of guidance. */
    bool (*takes_guidance)(void *self);
    flash_tensor *(*forward_guided)(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond, const float *w);
} flash_model_api;

/* True when the model instance takes the guidance scale as an input. */
FLASH_EXPORT bool flash_model_takes_guidance(const flash_instance *model);

FLASH_EXPORT const char *flash_prediction_name(flash_prediction p);

#ifdef __cplusplus
}
#endif
#endif
