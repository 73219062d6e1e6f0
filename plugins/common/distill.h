/* The distillation kit: what the in-tree distillation strategies and
 * losses share, built on the core's strategy interface (flash/strategy.h).
 * Not part of the core: the core trains whatever a strategy hands it; this
 * kit is how these strategies build a teacher, a student, its sampler and
 * the losses, and the teacher's target operator (Imagine Flash eq. 7).
 *
 * A distillation strategy's state begins with a `distill`; the kit's
 * trained/step/after_step entries then serve every strategy, and the
 * method is one function:
 *
 *   typedef struct mine { distill d; ... } mine;
 *   static flash_tensor *my_step(void *self, flash_ctx *c, distill *d, int64_t iter)
 *   {
 *       ... x_t at the student timestep t, labels (distill_noise, distill_labels) ...
 *       flash_denoised s;
 *       flash_denoise(d->student, c, x_t, NULL, t, labels, 1.0f, NULL, &s);   // x0-hat, with grad
 *       flash_loss_in in = {.size = sizeof in, .pred = s.x0, .x_t = x_t, .distill = d, ...};
 *       in.target = distill_target(d, c, x_t, t, labels);                    // eq. (7), no grad
 *       return distill_losses(d, c, &in);                                   // the weighted losses
 *   }
 *   static flash_status my_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
 *   {
 *       mine *m = calloc(1, sizeof *m);
 *       ... its own keys ...
 *       return distill_open(&m->d, cfg, env, my_step, self, m, err);
 *   }
 *   DISTILL_STRATEGY(mine_api, "mine", "one line", keys, my_create, my_destroy)
 *
 * The pipeline's slots that the kit reads:
 *
 *   teacher:   {plugin: gmm | unet, ...}        the model Phi
 *   teacher_checkpoint: runs/teacher/checkpoint.safetensors   (EMA weights unless teacher_weights: raw)
 *   student:   {plugin: mlp | unet, ...}        the model Theta, initialised from the teacher where
 *                                               names and shapes allow (Imagine Flash section 5.1)
 *   sampler:   {plugin: ddim, timesteps: [999, 750, 500], noise_correction: true}
 *   losses:    [{plugin: reconstruction, weight: 1.0}, {plugin: adversarial, ...}]
 *   strategy:  {plugin: NAME, target: {k: 8, guidance_scale: 1.0}, ...}
 *
 * The strategy's `target:` map sets the target operator: k time-uniform
 * teacher DDIM steps (paper: 8) with classifier-free guidance scale w
 * (`solver: {plugin: dpmpp_2m}`: that sampler on the same timesteps), or,
 * for a guidance-conditioned student (`student: {..., guidance_embed:
 * true}`), `guidance_range: [lo, hi]`: w drawn per sample, the student
 * taking it as an input.
 */
#ifndef FLASH_PLUGINS_DISTILL_H
#define FLASH_PLUGINS_DISTILL_H

#include "flash/diffusion.h"
#include "folder.h"

#define DISTILL_MAX_STEPS 64
#define DISTILL_MAX_LOSSES 16
#define DISTILL_MAX_CLONES 4

/* The keys the kit reads from a strategy's slot; a strategy lists them
 * with its own. */
#define DISTILL_KEYS "target"

/* ---- random draws --------------------------------------------------------
 * Every draw of a distillation comes from a stream of its purpose, derived
 * at each iteration from the run's seed, the purpose and the iteration (in
 * evaluation: from the loop's evaluation stream). So two runs that differ
 * in one part (a loss added or at weight 0, noise correction off, forward
 * instead of backward inputs) draw the same x_T, labels, timesteps and real
 * batches everywhere else, and a resume needs no stream state. */
typedef enum distill_draw {
    DISTILL_DRAW_NOISE,    /* x_T and the method's other per-sample noise (forward noising, DMD's eps) */
    DISTILL_DRAW_LABELS,   /* classes */
    DISTILL_DRAW_TIME,     /* student step indices and timesteps */
    DISTILL_DRAW_REAL,     /* real-data indices (and bank picks) */
    DISTILL_DRAW_ROLLOUT,  /* the student's sampler noise in a rollout (a stochastic sampler's) */
    DISTILL_DRAW_GUIDANCE, /* guidance scales of a guidance-conditioned student */
    DISTILL_DRAW_COUNT
} distill_draw;

typedef struct distill distill;
typedef flash_tensor *(*distill_step_fn)(void *self, flash_ctx *c, distill *d, int64_t iter);

/* The target operator's settings (the strategy's `target:` map). */
typedef struct distill_target_spec {
    int k;                 /* teacher DDIM steps, >= 1 */
    float guidance_scale;  /* teacher CFG scale (1: none) */
    /* guidance_range: [lo, hi]: a guidance-conditioned student (model.h)
     * trained at a scale drawn per sample, uniform in [lo, hi] (LCM's
     * w ~ U[w_min, w_max]); the teacher guides each sample at its scale */
    bool guidance_range;
    float guidance_lo, guidance_hi;
    /* solver: {plugin: dpmpp_2m}: a sampler plugin takes the k steps from
     * x_t to clean data in place of eq. 7's DDIM (NULL: DDIM, the paper's) */
    const flash_cfg *solver;
} distill_target_spec;

struct distill {
    flash_env *env;
    flash_run *run;                  /* the loop's, from trained() on */
    /* teacher Phi and student Theta on the pipeline's schedule; the
     * denoisers count NFEs (teacher NFEs are what targets cost) */
    flash_denoiser *teacher;
    flash_denoiser *student;
    flash_params *student_params;
    /* the student's sampler (its timesteps and noise correction): backward
     * distillation rolls the student out with it */
    flash_instance *sampler;
    flash_instance *target_solver;   /* target.solver's sampler, NULL for the paper's DDIM */
    int n_steps;                     /* the student's timesteps tau_0 > tau_1 > ... */
    double timesteps[DISTILL_MAX_STEPS];
    distill_target_spec target;
    flash_instance *losses;          /* summed by distill_losses */
    int n_losses;
    int batch_size;
    int num_classes;                 /* the teacher's (0: unconditional) */
    int ndim, shape[3];              /* sample shape without the batch */
    /* this iteration's streams, one per purpose (distill_stream) */
    flash_rng streams[DISTILL_DRAW_COUNT];
    uint64_t draw_base;              /* what the streams derive from: the iteration, or an evaluation draw */
    int64_t steps;                   /* total iterations of the run */
    int64_t iter;                    /* the current iteration, from 1 */
    flash_metric_result *stats;      /* extra scalars logged for this iteration, may be NULL */
    /* this iteration's guidance scale per sample (distill_guidance), for a
     * guidance-conditioned student; NULL for any other */
    const float *w;
    /* set by a strategy that draws w and gives it to its networks (lcm,
     * dmd2): only those train a guidance-conditioned student */
    bool trains_guidance;
    const char *strategy_name; /* for messages; the pipeline's, borrowed */
    /* the inputs of the last distill_losses call: after_step hands them to
     * the losses' update (a discriminator step) */
    flash_loss_in last;
    flash_cond last_cond;
    /* owned */
    distill_step_fn method_step;
    void *method;                    /* the strategy's state, handed to method_step */
    flash_instance teacher_inst, student_inst, sampler_inst, solver_inst, loss_inst[DISTILL_MAX_LOSSES];
    flash_denoiser tden, sden;
    flash_instance *clones[DISTILL_MAX_CLONES];
    flash_denoiser clone_dens[DISTILL_MAX_CLONES]; /* distill_clone_denoiser's, on clones[i] */
    flash_cfg *clone_cfgs[DISTILL_MAX_CLONES];      /* a copy's own slot (the teacher's + guidance_embed), or NULL */
    int n_clones;
};

/* Reads the target operator from the strategy's slot cfg; step is the
 * method, called with `method` as self. On success *self = method. The
 * teacher, the student, the sampler and the losses are built from the
 * pipeline (env->root) when the run asks for the trained parameters
 * (distill_trained). */
flash_status distill_open(distill *d, const flash_cfg *cfg, flash_env *env, distill_step_fn step, void **self,
                          void *method, flash_error *err);
void distill_close(distill *d); /* NULL-safe; frees what distill_open built, not the strategy's state */
/* A strategy's destroy when its state (starting with the kit) owns nothing
 * else: distill_close, then free. NULL-safe. */
void distill_destroy(void *self);

/* The kit's strategy entries (flash_strategy_api); self starts with a distill. */
flash_params *distill_trained(void *self, flash_run *run, flash_error *err);
flash_tensor *distill_step(void *self, flash_ctx *c, flash_run *run, int64_t iter);
flash_status distill_after_step(void *self, flash_ctx *c, flash_run *run, int64_t iter, flash_error *err);

#define DISTILL_STRATEGY(var, name, summary, keys, create, destroy)                                         \
    static const flash_strategy_api var = {                                                                 \
        .head = {sizeof var, FLASH_KIND_STRATEGY, name, summary, keys, create, destroy},                    \
        .trained = distill_trained,                                                                         \
        .step = distill_step,                                                                               \
        .after_step = distill_after_step,                                                                   \
    };                                                                                                      \
    FLASH_COMPONENT(var)


/* This iteration's stream for purpose: successive calls in one iteration
 * continue it. */
flash_rng *distill_stream(distill *d, distill_draw purpose);
/* A stream of a component's own, named by tag (a loss's fresh noise: "srl"),
 * seeded afresh from this iteration's base at every call: adding that
 * component changes no other draw. */
flash_rng distill_own_stream(const distill *d, const char *tag);

/* n labels for a batch: uniform over the teacher's classes, NULL when it is
 * unconditional. Host arena memory. */
const int *distill_labels(distill *d, flash_ctx *c, int n);
/* The guidance scales of this iteration's n samples, drawn when the
 * student is guidance-conditioned (model.h): uniform in target.guidance_range
 * (the same draws on any rank count), else target.guidance_scale for
 * every sample. Kept in d->w for the calls below; NULL (and d->w NULL) for
 * a student without a guidance input. Host arena memory. */
const float *distill_guidance(distill *d, flash_ctx *c, int n);
/* A denoiser of the distillation (the student, a copy of it) at this
 * iteration's scales d->w when it takes guidance, else unguided (w = 1). */
flash_status distill_denoise(distill *d, flash_denoiser *den, flash_ctx *c, flash_tensor *x, const double *t,
                             double t_all, const int *labels, flash_denoised *out);
/* The teacher with classifier-free guidance: at d->w per sample when set,
 * else at target.guidance_scale (1 without labels). */
flash_status distill_denoise_teacher(distill *d, flash_ctx *c, flash_tensor *x, const double *t, double t_all,
                                     const int *labels, flash_denoised *out);
/* n samples of N(0, I) in the sample shape (the NOISE stream). */
flash_tensor *distill_noise(distill *d, flash_ctx *c, int n);
/* n real examples (and labels) drawn from the pipeline's `dataset:` (the
 * REAL stream). */
flash_status distill_real(distill *d, flash_ctx *c, int n, flash_tensor **x, const int **labels);
/* The same two draws from a component's own stream (flash_run_draw_from). */
flash_status distill_real_from(distill *d, flash_ctx *c, flash_rng *rng, int n, flash_tensor **x, const int **labels);
const int *distill_labels_from(distill *d, flash_ctx *c, flash_rng *rng, int n);

/* The k time-uniform teacher timesteps from t (descending, rounded to
 * integers, duplicates dropped): t, t (k-1)/k, ..., t/k. Returns their
 * count. */
int distill_target_timesteps(const distill_target_spec *s, double t, double *out);
/* Imagine Flash eq. (7): x0-hat of the teacher after k time-uniform DDIM
 * steps with CFG from x_t at timestep t (no gradient; the teacher NFEs are
 * counted in d->teacher). */
flash_tensor *distill_target(distill *d, flash_ctx *c, flash_tensor *x_t, double t, const int *labels);
/* Imagine Flash eq. (1) with a timestep per sample on schedule:
 * alpha_{t_i} x0_i + sigma_{t_i} eps_i (and a DDIM step's re-noising,
 * eq. 4, with x0-hat and eps-hat). */
flash_tensor *distill_q_each(flash_ctx *c, const flash_instance *schedule, const double *t, flash_tensor *x0,
                             flash_tensor *eps);
/* distill_target with a timestep per sample (t[n]): each sample's own k
 * time-uniform steps; distill_target itself when all are equal. */
flash_tensor *distill_target_each(distill *d, flash_ctx *c, flash_tensor *x_t, const double *t, const int *labels);
/* Imagine Flash eq. (8)'s target: the student's stop-gradient x0-hat
 * re-noised with fresh noise from rng to t_phi, X = q(x0-hat, eps, t_phi),
 * then distill_target from there. */
flash_tensor *distill_renoised_target(distill *d, flash_ctx *c, flash_tensor *x0_hat, double t_phi,
                                      const int *labels, flash_rng *rng);
/* distill_renoised_target with t_phi per sample. */
flash_tensor *distill_renoised_target_each(distill *d, flash_ctx *c, flash_tensor *x0_hat, const double *t_phi,
                                           const int *labels, flash_rng *rng);
/* The weighted sum of the configured losses on in (each loss applies its
 * own `weight`); records each loss's value in d->stats as loss_<name> and
 * keeps in as d->last for the losses' updates. */
flash_tensor *distill_losses(distill *d, flash_ctx *c, const flash_loss_in *in);
/* A second instance of the student model (from the `student:` slot) with
 * the student's current weights: a frozen teacher of a later round, an EMA
 * target network. The run keeps it in its checkpoints (clone<i>) and a
 * resumed run restores it; it lives as long as d. */
flash_status distill_clone_student(distill *d, flash_instance **out, flash_error *err);
/* distill_clone_student and a denoiser on the copy with the student's
 * schedule (a round's teacher, a target network); both live as long as d. */
flash_status distill_clone_denoiser(distill *d, flash_instance **inst, flash_denoiser **out, flash_error *err);

/* A trainable denoiser: a second instance of the `teacher:` slot with the
 * teacher's weights when the teacher has weights, else (an analytic
 * teacher) of the `student:` slot with the student's current weights;
 * DMD's fake score network. The run keeps it in its
 * checkpoints as RUN_DIR/<name>.safetensors (weights and Adam moments) and
 * a resumed run restores it; it lives on the pipeline's device as long as
 * d. Call it from the strategy's trained entry, after distill_trained. */
flash_status distill_trainable_denoiser(distill *d, const char *name, flash_instance **inst, flash_denoiser **out,
                                        flash_error *err);

/* The student's stop-gradient rollout from x_T to its timestep index i
 * through its own sampler (Imagine Flash eq. 7's stopgrad(f^{|T-t|}(x_T)));
 * i = 0 is x_T itself. */
flash_tensor *distill_rollout(distill *d, flash_ctx *c, flash_tensor *x_T, const int *labels, int i);
/* a and b stacked along the batch dimension (no copy of the tape's
 * history: differentiable, on every device). */
flash_tensor *distill_stack_rows(flash_ctx *c, flash_tensor *a, flash_tensor *b);
/* Per-sample condition arrays for a batch at one timestep, in the arena. */
flash_cond distill_cond(distill *d, flash_ctx *c, int n, double t, const int *labels);
/* The same at t[i] per sample (t NULL: t_all for all). */
flash_cond distill_cond_each(distill *d, flash_ctx *c, int n, const double *t, double t_all, const int *labels);

#endif
