/* Strategy `progressive`: progressive distillation (Salimans & Ho 2022,
 * "Progressive Distillation for Fast Sampling of Diffusion Models",
 * Algorithm 2) with the guidance folded in (Meng et al. 2023, "On
 * Distillation of Guided Diffusion Models": the first round's teacher is
 * the guided teacher), the paper's "Step Distillation" baseline (Imagine
 * Flash Table 1).
 *
 * Rounds halve the step count from `teacher_steps` down to `final_steps`:
 * in a round the student takes N steps on the trailing grid
 * t_j = round(T - j T / N) - 1 and its one DDIM step from t_j to t_{j+1}
 * (clean data after the last) is trained to land where two DDIM steps of
 * the round's teacher (2N steps: t_j -> the midpoint -> t_{j+1}) land:
 *   z'' = DDIM_teacher^2(z_t),   target x~ = (z'' - (s''/s) z_t) / (a'' - (s''/s) a)
 * (S&H eq. 8 and Algorithm 2; at clean data x~ = z''). Round 0's teacher is
 * the pipeline's teacher with CFG (target.guidance_scale); each later
 * round's teacher is a frozen copy of the student at the round's start. The
 * input z_t = a x + s eps comes from real data (a `dataset:`) at a uniformly
 * drawn grid point. The loss is `reconstruction` against the target
 * (passed as flash_loss_in.target), weighted per sample by the truncated
 * SNR max(a^2 / s^2, 1) of S&H (`snr_weight: true`,
 * flash_loss_in.sample_weight).
 *
 * Keys: teacher_steps (64), final_steps (4; the student's sampler should be
 * {plugin: ddim, steps: final_steps, timestep_spacing: trailing}),
 * snr_weight (true). Iterations are split evenly between the rounds. */
#include "distill_common.h"

#include <math.h>
#include <stdlib.h>

typedef struct progressive {
    distill d;
    long teacher_steps, final_steps;
    bool snr_weight;
    int rounds, round; /* the round the frozen copy belongs to */
    flash_instance *frozen;
    flash_denoiser *fden; /* on frozen */
} progressive;

static const char *const keys[] = {"teacher_steps", "final_steps", "snr_weight", DISTILL_KEYS, NULL};

static flash_tensor *pg_step(void *self, flash_ctx *c, distill *d, int64_t iter);

static flash_status pg_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long ts, fs;
    bool snr;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "teacher_steps", 64, &ts, err)) ||
        (st = flash_cfg_int(cfg, "final_steps", 4, &fs, err)) || (st = flash_cfg_bool(cfg, "snr_weight", true, &snr, err)))
        return st;
    int rounds = 0;
    long n = ts;
    while (n > fs && n % 2 == 0) {
        n /= 2;
        rounds++;
    }
    if (fs < 1 || ts > FLASH_MAX_STEPS || n != fs || rounds < 1)
        return flash_cfg_error(cfg, err,
                               "strategy 'progressive': teacher_steps (%ld) must be final_steps (%ld) times a power "
                               "of two, at most %d",
                               ts, fs, FLASH_MAX_STEPS);
    progressive *p = calloc(1, sizeof *p);
    if (!p) return flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'progressive': out of memory");
    p->teacher_steps = ts;
    p->final_steps = fs;
    p->snr_weight = snr;
    p->rounds = rounds;
    p->round = -1;
    if ((st = distill_open(&p->d, cfg, env, pg_step, self, p, err))) distill_destroy(p);
    return st;
}

/* t_j of the trailing N-step grid; j == N is clean data (-1). Computed as
 * (j T) / N so that the 2N grid's even points are exactly the N grid's. */
static double grid(int T, long N, double j)
{
    if (j >= N) return -1.0;
    return floor((double)T - (j * T) / (double)N + 0.5) - 1.0;
}

static void ab(distill *d, double t, double *a, double *s)
{
    if (t < 0) {
        *a = 1.0;
        *s = 0.0;
    } else {
        flash_schedule_eval(d->student->schedule, t, a, s);
    }
}

/* The round that iteration iter (from 1; 0 counts as 1) belongs to. */
static int round_of(const progressive *p, const distill *d, int64_t iter)
{
    if (iter < 1) iter = 1;
    int r = (int)((iter - 1) * p->rounds / (d->steps > 0 ? d->steps : 1));
    return r < p->rounds ? r : p->rounds - 1;
}

static flash_tensor *pg_step(void *self, flash_ctx *c, distill *d, int64_t iter)
{
    progressive *p = self;
    flash_error e = {0};
    const int round = round_of(p, d, iter);
    if (!p->fden) {
        /* the frozen teacher of rounds > 0: a copy of the student now, or
         * on resume the copy the loop saved */
        if (distill_clone_denoiser(d, &p->frozen, &p->fden, &e)) {
            flash_ctx_fail(c, "strategy 'progressive': %s", e.msg);
            return NULL;
        }
        p->round = round_of(p, d, iter - 1);
    }
    if (round != p->round) {
        /* a new round: the student as it is now becomes the teacher */
        if (flash_params_copy(FLASH_API(p->frozen, flash_model_api)->params(p->frozen->self), d->student_params, &e)) {
            flash_ctx_fail(c, "strategy 'progressive': %s", e.msg);
            return NULL;
        }
        p->round = round;
    }
    const long N = p->teacher_steps >> (round + 1); /* the student's steps this round */
    const int T = flash_schedule_T(d->student->schedule);
    flash_denoiser *tden = round == 0 ? d->teacher : p->fden;
    const float w = round == 0 ? d->target.guidance_scale : 1.0f;

    const int n = d->batch_size;
    flash_tensor *x0;
    const int *labels;
    if (distill_real_batch(d, c, n, &x0, &labels)) return NULL;
    const long j = (long)flash_rng_below(distill_stream(d, DISTILL_DRAW_TIME), (uint64_t)N);
    const double t = grid(T, N, (double)j), tm = grid(T, 2 * N, 2.0 * j + 1), t2 = grid(T, N, (double)(j + 1));
    double a, s, am, sm, a2, s2;
    ab(d, t, &a, &s);
    ab(d, tm, &am, &sm);
    ab(d, t2, &a2, &s2);
    flash_tensor *z = distill_forward_noise(d, c, x0, t);

    /* two DDIM steps (eq. 4) of the round's teacher, without gradients */
    bool was = flash_grad_set(c, false);
    flash_denoised o;
    flash_tensor *zz = NULL;
    if (!flash_denoise(tden, c, z, NULL, t, labels, labels ? w : 1.0f, NULL, &o)) {
        flash_tensor *zm = flash_lincomb(c, am, o.x0, sm, o.eps);
        if (!flash_denoise(tden, c, zm, NULL, tm, labels, labels ? w : 1.0f, NULL, &o))
            zz = flash_lincomb(c, a2, o.x0, s2, o.eps);
    }
    /* the x0 whose one student DDIM step from z lands on zz */
    flash_tensor *target = NULL;
    if (zz) {
        const double r = s2 / s;
        target = flash_lincomb(c, 1.0 / (a2 - r * a), zz, -r / (a2 - r * a), z);
    }
    flash_grad_set(c, was);
    if (!target) return NULL;

    flash_denoised st;
    if (flash_denoise(d->student, c, z, NULL, t, labels, 1.0f, NULL, &st)) return NULL;
    flash_cond cond = distill_cond(d, c, n, t, labels);
    flash_loss_in in = {.size = sizeof in, .pred = st.x0, .target = target, .x_t = z, .cond = &cond, .distill = d};
    if (p->snr_weight) {
        /* truncated SNR weighting max(a^2/s^2, 1) of S&H section 4 */
        const double snr = (a * a) / (s * s);
        in.sample_weight = flash_full(c, 1, (int[]){n}, (float)(snr > 1.0 ? snr : 1.0));
    }
    if (d->stats) {
        flash_metric_result_add(d->stats, "round", round);
        flash_metric_result_add(d->stats, "student_steps", (double)N);
        flash_metric_result_add(d->stats, "t", t);
    }
    return distill_losses(d, c, &in);
}

DISTILL_STRATEGY(progressive_api, "progressive",
                 "progressive distillation with guidance (Salimans & Ho 2022; Meng et al. 2023): halving rounds, 1 "
                 "student step = 2 teacher DDIM steps",
                 keys, pg_create, distill_destroy)
