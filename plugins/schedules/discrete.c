/* `discrete`: the discrete variance-preserving schedule of DDPM and its
 * descendants (Imagine Flash eq. 1 with alpha_t^2 = prod_{s<=t} (1 - beta_s)),
 * with diffusers' beta schedules and the zero-terminal-SNR rescaling of Lin
 * et al. 2024 ("Common diffusion noise schedules and sample steps are
 * flawed", Algorithm 1).
 *
 * Same conventions as diffusers' schedulers: integer t in [0, T-1] indexes
 * alphas_cumprod. The table is computed in float64 (diffusers uses float32;
 * the two agree to about 1e-6 relative). Fractional t interpolates the VE
 * sigma = sigma_t / alpha_t linearly between neighbours, as diffusers'
 * EulerDiscreteScheduler does with np.interp; in the last interval of a
 * zero-terminal-SNR schedule (VE sigma infinite) alphas_cumprod is
 * interpolated instead. t outside [0, T-1] is clamped. */
#include <math.h>
#include <stdlib.h>

#include "flash/diffusion.h"
#include "folder.h"

typedef struct discrete {
    int T;
    double *acp; /* alphas_cumprod (T) */
} discrete;

enum { BETA_LINEAR = 0, BETA_SCALED_LINEAR, BETA_SQUAREDCOS };
static const char *const beta_names[] = {"linear", "scaled_linear", "squaredcos_cap_v2", NULL};
static const char *const keys[] = {"num_train_timesteps", "beta_schedule", "beta_start", "beta_end",
                                   "rescale_betas_zero_snr", "zero_snr_floor", NULL};

/* numpy.linspace(a, b, n)[i] */
static double lin(double a, double b, int n, int i) {
    if (n == 1) return a;
    if (i == n - 1) return b;
    return a + i * ((b - a) / (n - 1));
}

static double cos_alpha_bar(double t) {
    double c = cos((t + 0.008) / 1.008 * M_PI / 2.0);
    return c * c;
}

/* Lin et al. 2024, Algorithm 1: shift sqrt(alphas_cumprod) so the last is 0,
 * scale so the first keeps its value, and return the implied betas. */
static bool rescale_zero_snr(double *betas, int T) {
    double *ab = malloc((size_t)T * sizeof *ab);
    if (!ab) return false;
    double cp = 1.0;
    for (int i = 0; i < T; i++) {
        cp *= 1.0 - betas[i];
        ab[i] = sqrt(cp);
    }
    double a0 = ab[0], aT = ab[T - 1];
    for (int i = 0; i < T; i++) {
        ab[i] = (ab[i] - aT) * (a0 / (a0 - aT));
        ab[i] *= ab[i];
    }
    betas[0] = 1.0 - ab[0];
    for (int i = 1; i < T; i++) betas[i] = 1.0 - ab[i] / ab[i - 1];
    free(ab);
    return true;
}

static void discrete_destroy(void *self) {
    discrete *s = self;
    if (!s) return;
    free(s->acp);
    free(s);
}

static flash_status discrete_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    (void)env;
    long T = 1000;
    int kind = BETA_LINEAR;
    double b0 = 0.0001, b1 = 0.02;
    bool zsnr = false;
    double floor_acp = 0.0;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "num_train_timesteps", 1000, &T, err)) ||
        (st = flash_cfg_enum(cfg, "beta_schedule", beta_names, BETA_LINEAR, &kind, err)) ||
        (st = flash_cfg_double(cfg, "beta_start", 0.0001, &b0, err)) ||
        (st = flash_cfg_double(cfg, "beta_end", 0.02, &b1, err)) ||
        (st = flash_cfg_bool(cfg, "rescale_betas_zero_snr", false, &zsnr, err)) ||
        (st = flash_cfg_double(cfg, "zero_snr_floor", 0.0, &floor_acp, err)))
        return st;
    if (floor_acp != 0.0 && !zsnr)
        return flash_cfg_error(flash_cfg_get(cfg, "zero_snr_floor"), err,
                               "schedule 'discrete': zero_snr_floor needs rescale_betas_zero_snr: true");
    if (!(floor_acp >= 0.0 && floor_acp < 1e-3))
        return flash_cfg_error(flash_cfg_get(cfg, "zero_snr_floor"), err,
                               "schedule 'discrete': zero_snr_floor must be in [0, 1e-3) (got %g)", floor_acp);
    if (T < 2 || T > FLASH_MAX_STEPS)
        return flash_cfg_error(flash_cfg_get(cfg, "num_train_timesteps"), err,
                               "schedule 'discrete': num_train_timesteps must be in [2, %d]", FLASH_MAX_STEPS);
    if (kind != BETA_SQUAREDCOS && !(b0 > 0 && b1 >= b0 && b1 < 1))
        return flash_cfg_error(flash_cfg_get(cfg, "beta_start") ? flash_cfg_get(cfg, "beta_start") : cfg, err,
                               "schedule 'discrete': need 0 < beta_start <= beta_end < 1 (got %g, %g)", b0, b1);
    discrete *s = calloc(1, sizeof *s);
    double *betas = malloc((size_t)T * sizeof *betas);
    if (s) s->acp = malloc((size_t)T * sizeof *s->acp);
    if (!s || !betas || !s->acp) {
        free(betas);
        discrete_destroy(s);
        return flash_error_set(err, FLASH_ERR_NOMEM, "schedule 'discrete': out of memory");
    }
    s->T = (int)T;
    for (int i = 0; i < s->T; i++) {
        switch (kind) {
        case BETA_LINEAR:
            betas[i] = lin(b0, b1, s->T, i);
            break;
        case BETA_SCALED_LINEAR: {
            double r = lin(sqrt(b0), sqrt(b1), s->T, i);
            betas[i] = r * r;
            break;
        }
        default: { /* Nichol & Dhariwal 2021 cosine, betas capped at 0.999 */
            double t1 = (double)i / s->T, t2 = (double)(i + 1) / s->T;
            betas[i] = fmin(1.0 - cos_alpha_bar(t2) / cos_alpha_bar(t1), 0.999);
            break;
        }
        }
    }
    if (zsnr && !rescale_zero_snr(betas, s->T)) {
        free(betas);
        discrete_destroy(s);
        return flash_error_set(err, FLASH_ERR_NOMEM, "schedule 'discrete': out of memory");
    }
    double cp = 1.0;
    for (int i = 0; i < s->T; i++) {
        cp *= 1.0 - betas[i];
        s->acp[i] = cp;
    }
    free(betas);
    /* The rescaled last beta is exactly 1, so alphas_cumprod[T-1] is exactly 0.
     * By default it stays 0 (samplers here handle alpha_t = 0 themselves, and
     * refuse what is undefined there: an epsilon model's x0-hat). zero_snr_floor
     * lifts it to a tiny positive value instead, as diffusers' Euler and
     * DPM-Solver do with 2^-24: x_T is still pure noise to within alpha_T =
     * 2^-12, but an epsilon-prediction model's x0-hat at T is defined. That
     * is the setting of the paper's noise correction (section 4.3): an
     * epsilon model on a (near) zero-terminal-SNR schedule, whose epsilon at
     * T carries almost nothing about the image. */
    if (zsnr && floor_acp > 0.0) {
        if (!(floor_acp < s->acp[s->T - 2])) {
            flash_status e = flash_cfg_error(flash_cfg_get(cfg, "zero_snr_floor"), err,
                                             "schedule 'discrete': zero_snr_floor %g must be below "
                                             "alphas_cumprod[T-2] = %g",
                                             floor_acp, s->acp[s->T - 2]);
            discrete_destroy(s);
            return e;
        }
        s->acp[s->T - 1] = floor_acp;
    }
    *self = s;
    return FLASH_OK;
}

static int discrete_T(void *self) { return ((discrete *)self)->T; }

static void discrete_alpha_sigma(void *self, double t, double *alpha, double *sigma) {
    const discrete *s = self;
    if (!(t > 0)) t = 0; /* also maps NaN to 0 */
    if (t > s->T - 1) t = s->T - 1;
    int i = (int)floor(t);
    double f = t - i, acp;
    if (f == 0.0 || i + 1 >= s->T) {
        acp = s->acp[i];
    } else if (s->acp[i + 1] > 0.0) {
        double v0 = sqrt((1.0 - s->acp[i]) / s->acp[i]), v1 = sqrt((1.0 - s->acp[i + 1]) / s->acp[i + 1]);
        double v = v0 + f * (v1 - v0);
        acp = 1.0 / (1.0 + v * v);
    } else {
        acp = s->acp[i] + f * (s->acp[i + 1] - s->acp[i]);
    }
    *alpha = sqrt(acp);
    *sigma = sqrt(1.0 - acp);
}

FLASH_COMPONENT_TABLE(flash_schedule_api, flash_schedule_discrete, FLASH_KIND_SCHEDULE, "discrete",
                      "discrete VP schedule (linear, scaled_linear, squaredcos_cap_v2; zero-terminal-SNR rescaling)",
                      keys, discrete_create, discrete_destroy, .num_train_timesteps = discrete_T,
                      .alpha_sigma = discrete_alpha_sigma)
