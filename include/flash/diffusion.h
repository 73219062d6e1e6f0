/* The diffusion core: what every sampler, strategy and loss shares.
 *
 *   prediction types   x0-hat and eps-hat from an epsilon, v or sample model
 *                      output (Imagine Flash eq. 5), and the inverse
 *   flash_denoiser     model + schedule: one call evaluates the model at
 *                      (x_t, t), applies classifier-free guidance with the
 *                      conditional and null-class inputs in ONE batched model
 *                      call (w = 1: a single evaluation), converts to
 *                      (x0-hat, eps-hat) and counts NFEs
 *   noise correction   Imagine Flash eq. (9): at the first step from the
 *                      starting noise x_T the update uses x_T in place of the
 *                      predicted eps. Implemented once, in flash_plan_denoise,
 *                      for every sampler (samplers write their updates in
 *                      terms of (x0-hat, eps-hat), so substituting eps-hat is
 *                      the whole rule)
 *   timesteps          leading / trailing / linspace with steps_offset, or an
 *                      explicit list, with diffusers' conventions
 *   flash_plan         a sampler's trajectory: evaluation timesteps, the end
 *                      point (clean data, or a stop timestep), and alpha/sigma
 *                      at each point
 *
 * A sampler's create reads the shared keys with flash_sampler_opts_parse, its
 * sample() builds a plan and loops:
 *
 *   flash_plan *p = malloc(sizeof *p);   // large: FLASH_MAX_STEPS entries
 *   if (flash_plan_make(p, req, &self->opts, FLASH_GRID_DDIM, 1.0, 0.0, c)) ...
 *   flash_tensor *x = req->x;
 *   for (int i = 0; i < p->n; i++) {
 *       flash_denoised d;
 *       if (flash_plan_denoise(p, c, i, x, &d)) ...
 *       x = flash_lincomb(c, p->alpha[i + 1], d.x0, p->sigma[i + 1], d.eps);   // eq. (4)
 *   }
 *
 * Conventions: t is a training timestep in [0, T-1] (fractional allowed),
 * alpha_t = sqrt(alphas_cumprod[t]), sigma_t = sqrt(1 - alphas_cumprod[t]),
 * the VE sigma is sigma_t / alpha_t and log-SNR lambda_t = log(alpha_t / sigma_t).
 * Samplers always work on the variance-preserving x_t = alpha_t x0 + sigma_t eps.
 */
#ifndef FLASH_DIFFUSION_H
#define FLASH_DIFFUSION_H

#include "flash/flash.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most timesteps a sampler plan holds (one per training timestep). */
#define FLASH_MAX_STEPS 1000

/* ---- schedules ----------------------------------------------------------- */

/* alpha_t, sigma_t of a schedule instance (kind FLASH_KIND_SCHEDULE). */
FLASH_EXPORT void flash_schedule_eval(const flash_instance *sched, double t, double *alpha, double *sigma);
FLASH_EXPORT int flash_schedule_T(const flash_instance *sched);
/* log-SNR lambda_t = log(alpha_t) - log(sigma_t); -inf where alpha_t = 0,
 * +inf where sigma_t = 0. */
FLASH_EXPORT double flash_schedule_log_snr(const flash_instance *sched, double t);

/* ---- prediction types (Imagine Flash eq. 5) ------------------------------ */

/* "epsilon", "v_prediction", "sample" -> flash_prediction; -1 when unknown. */
FLASH_EXPORT int flash_prediction_parse(const char *name);
/* Accepted names for flash_cfg_enum, NULL-terminated, in enum order. */
FLASH_EXPORT extern const char *const flash_prediction_names[];

/* x0-hat from the model output `out` of type p at x (N, ...), with per-sample
 * alpha, sigma (host arrays of length N):
 *   epsilon: (x - sigma out) / alpha      (eq. 5)
 *   v:       alpha x - sigma out
 *   sample:  out
 * Differentiable. An epsilon output at alpha = 0 (zero terminal SNR) has no
 * x0-hat: the context's error says so and NULL is returned. */
FLASH_EXPORT flash_tensor *flash_pred_x0(flash_ctx *c, flash_prediction p, flash_tensor *x, flash_tensor *out,
                                         const float *alpha, const float *sigma);
/* eps-hat: epsilon: out; v: sigma x + alpha out; sample: (x - alpha out) / sigma
 * (undefined at sigma = 0: error). */
FLASH_EXPORT flash_tensor *flash_pred_eps(flash_ctx *c, flash_prediction p, flash_tensor *x, flash_tensor *out,
                                          const float *alpha, const float *sigma);
/* The inverse: the output a perfect model of type p gives for (x0, eps), i.e.
 * the regression target (epsilon: eps; v: alpha eps - sigma x0; sample: x0). */
FLASH_EXPORT flash_tensor *flash_pred_target(flash_ctx *c, flash_prediction p, flash_tensor *x0, flash_tensor *eps,
                                             const float *alpha, const float *sigma);

/* ---- the denoiser -------------------------------------------------------- */

typedef struct flash_denoiser {
    const flash_instance *model;    /* kind FLASH_KIND_MODEL, a denoiser */
    const flash_instance *schedule; /* kind FLASH_KIND_SCHEDULE */
    flash_model_info info;          /* the model's, read at init */
    /* Counters, summed over every call since init (reset them freely):
     * nfe counts network evaluations per sample (a guided step counts 2),
     * calls counts batched forward calls. */
    int64_t nfe;
    int64_t calls;
    /* host scratch for the per-sample condition arrays */
    float *scratch;
    int *scratch_labels;
    size_t scratch_cap;
} flash_denoiser;

/* model and schedule are borrowed and must outlive the denoiser. */
FLASH_EXPORT flash_status flash_denoiser_init(flash_denoiser *d, const flash_instance *model,
                                              const flash_instance *schedule, flash_error *err);
FLASH_EXPORT void flash_denoiser_release(flash_denoiser *d); /* NULL-safe; frees scratch only */
/* The network's role in a pipeline ("teacher", "student", "fake_score"): a
 * profile (flash bench --distill) counts the time of its evaluations under
 * it. role must outlive the denoiser (a string literal); NULL forgets it. */
FLASH_EXPORT void flash_denoiser_set_role(const flash_denoiser *d, const char *role);

typedef struct flash_denoised {
    flash_tensor *x0;  /* x0-hat (eq. 5) of the guided output */
    flash_tensor *eps; /* eps-hat; x_T itself under noise correction (eq. 9) */
    flash_tensor *out; /* the guided model output, in the model's prediction type */
} flash_denoised;

/* One denoiser evaluation at timestep t[i] for sample i (t == NULL: t_all for
 * every sample). labels (N) or NULL (unconditional: the null class).
 * Classifier-free guidance with scale w: out = out_null + w (out_cond -
 * out_null), both halves from one model call on a batch of 2N; w = 1 (or
 * labels == NULL) evaluates once, and so does a guidance-conditioned model
 * (w its input). x_T non-NULL applies noise correction
 * (eq. 9): eps-hat := x_T, x0-hat stays the model's. On failure returns
 * FLASH_ERR_RUNTIME with the context's error set (message names the
 * timestep). */
FLASH_EXPORT flash_status flash_denoise(flash_denoiser *d, flash_ctx *c, flash_tensor *x, const double *t,
                                        double t_all, const int *labels, float w, flash_tensor *x_T,
                                        flash_denoised *out);
/* The same with a guidance scale per sample, w (N, host memory; NULL: all
 * 1): a teacher guided at a scale drawn per sample, or a
 * guidance-conditioned student (flash_model_api.takes_guidance) trained
 * over a range of scales. A guidance-conditioned model is evaluated once
 * with w as its input, here and in flash_denoise; any other model is
 * guided as flash_denoise describes. */
FLASH_EXPORT flash_status flash_denoise_each(flash_denoiser *d, flash_ctx *c, flash_tensor *x, const double *t,
                                             double t_all, const int *labels, const float *w, flash_tensor *x_T,
                                             flash_denoised *out);

/* ---- timesteps ----------------------------------------------------------- */

typedef enum flash_spacing {
    FLASH_SPACING_LEADING = 0,
    FLASH_SPACING_TRAILING,
    FLASH_SPACING_LINSPACE,
    FLASH_SPACING_LIST, /* the explicit `timesteps:` list */
} flash_spacing;

/* diffusers' schedulers lay N steps on [0, T) differently; each sampler names
 * the one it reproduces. */
typedef enum flash_grid {
    FLASH_GRID_DDIM = 0, /* DDIMScheduler: leading (0..N-1)*(T//N)+offset; linspace round(linspace(0,T-1,N)) */
    FLASH_GRID_DPM,      /* DPMSolverMultistep: N+1 points, the last (t = 0 side) dropped */
    FLASH_GRID_EULER,    /* EulerDiscrete: as DDIM, but linspace is not rounded */
} flash_grid;

/* Settings every sampler accepts (FLASH_SAMPLER_KEYS). */
typedef struct flash_sampler_opts {
    int steps;              /* `steps` (default 25) */
    flash_spacing spacing;  /* `timestep_spacing` (default leading) */
    int steps_offset;       /* `steps_offset` (default 0) */
    int n_list;             /* `timesteps: [999, 750, 500]`: spacing = LIST */
    double list[FLASH_MAX_STEPS];
    float guidance_scale;   /* `guidance_scale` (default 1: no guidance) */
    bool noise_correction;  /* `noise_correction` (default false): eq. (9) */
} flash_sampler_opts;

#define FLASH_SAMPLER_KEYS \
    "steps", "timestep_spacing", "steps_offset", "timesteps", "guidance_scale", "noise_correction"

FLASH_EXPORT flash_status flash_sampler_opts_parse(const flash_cfg *cfg, const char *sampler,
                                                   flash_sampler_opts *o, flash_error *err);

/* The evaluation timesteps (descending) for the options on a schedule of T
 * training steps; *n gets their count. A list must be strictly decreasing
 * within [0, T-1]. */
FLASH_EXPORT flash_status flash_timesteps_select(const flash_sampler_opts *o, flash_grid grid, int T,
                                                 double *out, int *n, flash_error *err);

/* ---- a sampler's trajectory ---------------------------------------------- */

typedef struct flash_plan {
    const flash_sample_request *req;
    const flash_sampler_opts *opts;
    int n;                         /* steps taken: evaluations at t[0..n-1] */
    double t[FLASH_MAX_STEPS + 1]; /* t[n] is the end: a stop timestep, or -1 for clean data */
    double alpha[FLASH_MAX_STEPS + 1];
    double sigma[FLASH_MAX_STEPS + 1];
    bool to_clean;                 /* the last step ends at the sampler's final point, not a stop */
} flash_plan;

/* Builds the trajectory for a request: the request's timesteps if given,
 * else the options' on `grid`; end_alpha/end_sigma are the sampler's final
 * point after the last timestep (DDIM: sqrt of final_alpha_cumprod; the
 * others (1, 0)). With req->stop_at >= 0 the trajectory keeps the
 * timesteps above stop_at and its last step ends at stop_at. Fails (context
 * error) on an empty or invalid trajectory. */
FLASH_EXPORT flash_status flash_plan_make(flash_plan *p, const flash_sample_request *req,
                                          const flash_sampler_opts *o, flash_grid grid, double end_alpha,
                                          double end_sigma, flash_ctx *c);

/* The denoiser at step i of the plan, with the options' guidance scale and,
 * at step 0 of a trajectory that starts from noise, noise correction when
 * the options ask for it (Imagine Flash eq. 9): the one place the rule
 * lives. */
FLASH_EXPORT flash_status flash_plan_denoise(const flash_plan *p, flash_ctx *c, int i, flash_tensor *x,
                                             flash_denoised *out);

/* x' = a x + b y with the same scalars for every sample (sampler updates). */
FLASH_EXPORT flash_tensor *flash_lincomb(flash_ctx *c, double a, flash_tensor *x, double b, flash_tensor *y);

#ifdef __cplusplus
}
#endif
#endif
