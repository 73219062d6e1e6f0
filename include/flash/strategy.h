/* Strategies (kind FLASH_KIND_STRATEGY): what one training iteration
 * computes. Distillation strategies (backward, forward, progressive, LCM,
 * ADD) decide how a training input x_t is made and which target the student
 * is compared with; the distillation context is defined with them.
 * Training strategies (`denoise` for a teacher, `classify` for the
 * evaluator) implement train_step: the loop in trainer.h hands them a batch
 * of real data and a random stream, and owns everything else (optimizer,
 * EMA, checkpoints, resume).
 *
 * `flash distill` (core/train/distill.c) builds a flash_distill from the
 * pipeline's YAML and calls the strategy's step once per iteration; the
 * step returns the student's scalar loss on the tape, and the loop owns the
 * rest (Adam, EMA, checkpoints, resume, the losses' own updates):
 *
 *   flash_tensor *step(void *self, flash_ctx *c, flash_distill *d, int64_t iter)
 *   {
 *       ... make x_t at the student timestep t, labels ...
 *       flash_denoised s;
 *       flash_denoise(d->student, c, x_t, NULL, t, labels, 1.0f, NULL, &s);   // student x0-hat, with grad
 *       flash_loss_in in = {.size = sizeof in, .pred = s.x0, .x_t = x_t, .distill = d, ...};
 *       in.target = flash_distill_target(d, c, x_t, t, labels);              // eq. (7), no grad
 *       return flash_distill_losses(d, c, &in);                              // weighted sum of the losses
 *   }
 *
 * The shared target operator (Imagine Flash eq. 7 and eq. 8) is one
 * implementation used by every strategy and loss that asks the teacher for a
 * target: k time-uniform teacher DDIM steps with classifier-free guidance,
 * started from the student's input x_t (flash_distill_target), or from the
 * student's stop-gradient x0-hat re-noised with fresh noise to gamma(t)
 * (flash_distill_srl_target, the shifted reconstruction loss). Its YAML:
 *
 *   target:
 *     k: 8                       # teacher DDIM steps (paper: 8)
 *     guidance_scale: 1.0        # the teacher's CFG scale w
 *     gamma: paper               # or [[900, 990], [500, 950], [-1, 200]]:
 *                                # rows [above, value]: t > above -> value,
 *                                # the first matching row wins
 */
#ifndef FLASH_STRATEGY_H
#define FLASH_STRATEGY_H

#ifdef __cplusplus
extern "C" {
#endif

struct flash_distill;
struct flash_denoiser;
struct flash_metric_result;

/* One iteration of `flash train` (trainer.h). Everything is borrowed for
 * the call. */
typedef struct flash_train_batch {
    uint32_t size;                       /* sizeof(flash_train_batch) of the caller */
    flash_instance *model;               /* the model being trained */
    flash_instance *schedule;            /* the pipeline's schedule, NULL when none is configured */
    flash_tensor *x;                     /* (N, shape...) real examples, in the context's arena */
    const int *labels;                   /* (N) labels, NULL for unlabelled data */
    int num_classes;                     /* the dataset's classes (0: unlabelled) */
    flash_rng *rng;                      /* the strategy's stream; checkpoints save and restore it */
    struct flash_metric_result *stats;   /* optional extra scalars to log (accuracy, ...), may be NULL */
    int eval;                            /* 1: held-out evaluation, grad off: no augmentation, no dropout */
} flash_train_batch;

typedef struct flash_strategy_api {
    flash_component head;
    /* One training iteration: returns the scalar loss on the tape. */
    flash_tensor *(*step)(void *self, flash_ctx *c, struct flash_distill *d, int64_t iter);
    /* optional: one iteration of `flash train` on a batch of real data;
     * returns the scalar loss on the tape (NULL with the context's error set). */
    flash_tensor *(*train_step)(void *self, flash_ctx *c, const flash_train_batch *b, int64_t iter);
} flash_strategy_api;

/* ---- the shared target operator ----------------------------------------- */

#define FLASH_GAMMA_MAX 16
#define FLASH_DISTILL_MAX_STEPS 64

/* The target operator's settings (the `target:` map). */
typedef struct flash_target_spec {
    int k;                                /* teacher DDIM steps, >= 1 */
    float guidance_scale;                 /* teacher CFG scale (1: none) */
    int n_gamma;                          /* rows of the shift map */
    double gamma_above[FLASH_GAMMA_MAX];  /* t > above -> value; first match wins */
    double gamma_value[FLASH_GAMMA_MAX];
} flash_target_spec;

/* Reads a `target:` map (NULL: defaults k = 8, guidance 1, the paper's
 * gamma). `gamma: paper` names the paper's map (section 5.1). Unknown keys
 * are errors. */
FLASH_EXPORT flash_status flash_target_spec_read(const flash_cfg *map, flash_target_spec *out, flash_error *err);
/* gamma(t) of the shift map; a t no row matches keeps t. */
FLASH_EXPORT double flash_target_gamma(const flash_target_spec *s, double t);
/* The k time-uniform teacher timesteps from t (descending, rounded to
 * integers, duplicates dropped): t, t (k-1)/k, ..., t/k. Returns their
 * count. */
FLASH_EXPORT int flash_target_timesteps(const flash_target_spec *s, double t, double *out);

/* ---- the distillation context ------------------------------------------- */

typedef struct flash_distill {
    uint32_t size;                   /* sizeof(flash_distill) of the host */
    flash_env *env;                  /* registry, seed, root config, schedule, teacher */
    /* teacher Phi and student Theta on the pipeline's schedule; the
     * denoisers count NFEs (teacher NFEs are what targets cost) */
    struct flash_denoiser *teacher;
    struct flash_denoiser *student;
    flash_params *student_params;
    /* the student's sampler (its timesteps and noise correction): backward
     * distillation rolls the student out with it */
    flash_instance *sampler;
    int n_steps;                               /* the student's timesteps tau_0 > tau_1 > ... */
    double timesteps[FLASH_DISTILL_MAX_STEPS];
    flash_target_spec target;
    flash_instance *losses;                    /* summed by flash_distill_losses */
    int n_losses;
    int batch_size;
    int num_classes;                           /* the teacher's (0: unconditional) */
    int ndim, shape[3];                        /* sample shape without the batch */
    flash_rng *rng;                            /* the strategies' and losses' stream (checkpointed) */
    int64_t steps;                             /* total iterations of the run */
    int64_t iter;                              /* the current iteration, from 1 */
    struct flash_metric_result *stats;         /* extra scalars logged for this iteration, may be NULL */
    /* the inputs of the last flash_distill_losses call: the loop hands them
     * to the losses' update (a discriminator step) after the student step */
    flash_loss_in last;
    void *priv;                                /* the loop's */
} flash_distill;

/* Real data: n examples (and labels, NULL when the data is unlabelled) from
 * the pipeline's `dataset:` in the context's arena, drawn with the run's
 * batcher. Fails (context error) when the pipeline has no dataset. */
FLASH_EXPORT flash_status flash_distill_real(flash_distill *d, flash_ctx *c, int n, flash_tensor **x,
                                             const int **labels);
/* n labels for a batch: uniform over the teacher's classes, NULL when it is
 * unconditional. Arena memory. */
FLASH_EXPORT const int *flash_distill_labels(flash_distill *d, flash_ctx *c, int n);
/* n samples of N(0, I) in the sample shape. */
FLASH_EXPORT flash_tensor *flash_distill_noise(flash_distill *d, flash_ctx *c, int n);

/* Imagine Flash eq. (7): x0-hat of the teacher after k time-uniform DDIM
 * steps with CFG from x_t at timestep t (no gradient; the teacher NFEs are
 * counted in d->teacher). */
FLASH_EXPORT flash_tensor *flash_distill_target(flash_distill *d, flash_ctx *c, flash_tensor *x_t, double t,
                                                const int *labels);
/* Imagine Flash eq. (8), SRL: the same from stopgrad(x0_hat) re-noised with
 * fresh noise from rng to t_phi = gamma(t): q(x0_hat, eps, gamma(t)). */
FLASH_EXPORT flash_tensor *flash_distill_srl_target(flash_distill *d, flash_ctx *c, flash_tensor *x0_hat, double t,
                                                    const int *labels, flash_rng *rng);
/* The weighted sum of the configured losses on in (each loss applies its
 * own `weight`); records each loss's value in d->stats as loss_<name> and
 * keeps in as d->last for the losses' updates. */
FLASH_EXPORT flash_tensor *flash_distill_losses(flash_distill *d, flash_ctx *c, const flash_loss_in *in);
/* A second instance of the student model (from the `student:` slot) with
 * the student's current weights: progressive distillation's frozen
 * teacher, LCM's EMA target network. The loop owns it, saves it in
 * checkpoints and restores it on resume; it lives as long as d. */
FLASH_EXPORT flash_status flash_distill_clone_student(flash_distill *d, flash_instance **out, flash_error *err);
/* The consistency function of latent consistency models (Luo et al. 2023,
 * Song et al. 2023): f(x, t) = c_skip(t) x + c_out(t) x0-hat(x, t) with the
 * boundary scalings of flash_lcm_boundary, so f(x, 0) = x. */
FLASH_EXPORT flash_tensor *flash_consistency_fn(struct flash_denoiser *den, flash_ctx *c, flash_tensor *x, double t,
                                                const int *labels, float guidance_scale);

#ifdef __cplusplus
}
#endif
#endif
