/* target_ceiling: how close the distillation target gets to the teacher's
 * own ODE solution, and what each target costs.
 *
 * The target of Imagine Flash eq. (7) is x0-hat after k time-uniform DDIM
 * steps of the teacher with classifier-free guidance from x_t (the kit's
 * distill_target, plugins/common/distill.h). A student regressed onto it can
 * be no better than it: its error against the teacher's converged solution
 * from the same x_t is the target's ceiling. For each t in a list this
 * program draws x_t = alpha_t x0 + sigma_t eps (eq. 1) from real examples of
 * the pipeline's `dataset:` and reports, for DDIM with k = 4, 8, 16 (the
 * kit's operator itself) and DPM-Solver++(2M) on the same k timesteps (the
 * `dpmpp_2m` sampler plugin), the RMS error of x0 against a REF-step DDIM
 * solution from the same x_t (the `ddim` sampler plugin, same guidance scale,
 * same labels), with the teacher's NFEs and the seconds per target.
 * --samples N also writes each solver's samples from N draws of pure noise
 * at t = T-1 (the target at the first step of backward distillation), for
 * `flash eval` (FD, sliced Wasserstein) in tools/repro/target_ceiling.sh.
 *
 *   target_ceiling configs/quickstart.yaml
 *   target_ceiling configs/distill/base.yaml --n 64 --format md
 *
 * The teacher is the `teacher:` slot (with `teacher_checkpoint:`), else the
 * `model:` slot (with `model_checkpoint:`); the guidance scale is the
 * strategy's `target.guidance_scale` unless --guidance (an unconditional
 * teacher is never guided, as in the kit).
 *
 * Exit codes: 0 success, 2 bad usage, config or input, 1 any other failure. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "flash/diffusion.h"
#include "flash/flash.h"
#include "flash/pipeline.h"
#include "flash/trainer.h"

#include "distill.h"

#define TOOL "target_ceiling"
#define MAX_LIST 16
#define MAX_SETS 64
/* values of x per batch by default: one activation of a batch near this
 * size, as `flash sample` does (4096 2-D points, 83 images of 28x28) */
#define BATCH_BUDGET 65536
#define BATCH_MAX 4096

enum { SOLVER_DDIM = 0, SOLVER_DPMPP, N_SOLVERS };
static const char *const solver_names[N_SOLVERS] = {"ddim", "dpmpp_2m"};

typedef struct args {
    const char *config, *out, *format;
    const char *sets[MAX_SETS];
    int n_sets;
    int t[MAX_LIST], n_t;
    int k[MAX_LIST], n_k;
    bool solver[N_SOLVERS];
    long ref_k, n, batch, seed, samples;
    double guidance; /* < 0: the config's */
} args;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " CONFIG [--set KEY=VALUE]... [--t 999,750,500] [--k 4,8,16] [--ref-k 100]\n"
            "       [--solvers ddim,dpmpp_2m] [--n N] [--batch B] [--seed S] [--guidance W]\n"
            "       [--format tsv|md] [--out DIR] [--samples N]\n"
            "\n"
            "The RMS error of the teacher's k-step x0 (Imagine Flash eq. 7: k time-uniform\n"
            "DDIM steps with guidance from x_t; or DPM-Solver++(2M) on the same timesteps)\n"
            "against a REF-step DDIM solution from the same x_t, x_t = alpha_t x0 +\n"
            "sigma_t eps from N examples of the config's dataset, with the teacher's NFEs\n"
            "and the seconds per target. A table on stdout.\n"
            "\n"
            "  --set KEY=VALUE  override a config key (repeatable, applied in order)\n"
            "  --t LIST         timesteps x_t is drawn at (default 999,750,500)\n"
            "  --k LIST         solver steps (default 4,8,16)\n"
            "  --ref-k N        steps of the DDIM reference (default 100)\n"
            "  --solvers LIST   ddim (the kit's operator) and/or dpmpp_2m (default both)\n"
            "  --n N            examples (default 4096 for points, 64 for images)\n"
            "  --batch B        examples per call (default from the sample size)\n"
            "  --seed S         seed of the examples, noise and labels (default: the config's)\n"
            "  --guidance W     guidance scale (default: strategy.target.guidance_scale, else 1)\n"
            "  --format F       tsv (default) or md\n"
            "  --out DIR        also write the arrays as NPY: x0, labels, and per t the\n"
            "                   x_t, the reference and each solver's x0 (t<T>_<solver><k>.npy)\n"
            "  --samples N      with --out: each solver's x0 from N draws of pure noise at\n"
            "                   t = T-1 (noise_<solver><k>.npy, noise_ref.npy, noise_labels.npy)\n"
            "\n"
            "Exit codes: 0 success, 2 bad usage, config or input, 1 any other failure.\n");
}

static int bad_usage(const char *fmt, const char *what)
{
    fprintf(stderr, TOOL ": ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(see '" TOOL " --help')\n");
    return 2;
}

static int exit_code(flash_status st)
{
    return st == FLASH_ERR_CONFIG || st == FLASH_ERR_USAGE || st == FLASH_ERR_INPUT || st == FLASH_ERR_PLUGIN ? 2 : 1;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* "999,750,500" into at most MAX_LIST integers in [lo, hi]. */
static bool parse_list(const char *s, long lo, long hi, int *out, int *n)
{
    char buf[256];
    if (strlen(s) >= sizeof buf) return false;
    strcpy(buf, s);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long v;
        if (*n == MAX_LIST || !parse_long(tok, lo, hi, &v)) return false;
        out[(*n)++] = (int)v;
    }
    return *n > 0;
}

/* Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, args *a)
{
    *a = (args){.ref_k = 100, .n = -1, .batch = -1, .seed = -1, .guidance = -1.0, .format = "tsv",
                .t = {999, 750, 500}, .n_t = 3, .k = {4, 8, 16}, .n_k = 3, .solver = {true, true}};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 0;
        }
        if (o[0] != '-') {
            if (a->config) return bad_usage("unexpected argument '%s'", o);
            a->config = o;
            continue;
        }
        if (i + 1 == argc) return bad_usage("%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--set")) {
            if (a->n_sets == MAX_SETS) return bad_usage("%s: too many", o);
            a->sets[a->n_sets++] = v;
        } else if (!strcmp(o, "--t")) {
            if (!parse_list(v, 1, FLASH_MAX_STEPS - 1, a->t, &a->n_t))
                return bad_usage("--t: expected up to 16 timesteps in [1, 999] separated by commas, not '%s'", v);
        } else if (!strcmp(o, "--k")) {
            if (!parse_list(v, 1, FLASH_MAX_STEPS, a->k, &a->n_k))
                return bad_usage("--k: expected up to 16 step counts in [1, 1000] separated by commas, not '%s'", v);
        } else if (!strcmp(o, "--solvers")) {
            char buf[64];
            if (strlen(v) >= sizeof buf) return bad_usage("--solvers: '%s' is not ddim and/or dpmpp_2m", v);
            strcpy(buf, v);
            a->solver[SOLVER_DDIM] = a->solver[SOLVER_DPMPP] = false;
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int j = 0;
                while (j < N_SOLVERS && strcmp(tok, solver_names[j])) j++;
                if (j == N_SOLVERS) return bad_usage("--solvers: '%s' is not ddim and/or dpmpp_2m", v);
                a->solver[j] = true;
            }
            if (!a->solver[SOLVER_DDIM] && !a->solver[SOLVER_DPMPP])
                return bad_usage("--solvers: '%s' is not ddim and/or dpmpp_2m", v);
        } else if (!strcmp(o, "--ref-k")) {
            if (!parse_long(v, 1, FLASH_MAX_STEPS, &a->ref_k)) return bad_usage("--ref-k: not in [1, 1000]: '%s'", v);
        } else if (!strcmp(o, "--n")) {
            if (!parse_long(v, 1, 100000000, &a->n)) return bad_usage("--n: not a count >= 1: '%s'", v);
        } else if (!strcmp(o, "--batch")) {
            if (!parse_long(v, 1, 1000000, &a->batch)) return bad_usage("--batch: not a count >= 1: '%s'", v);
        } else if (!strcmp(o, "--seed")) {
            if (!parse_long(v, 0, LONG_MAX, &a->seed)) return bad_usage("--seed: not an integer >= 0: '%s'", v);
        } else if (!strcmp(o, "--samples")) {
            if (!parse_long(v, 1, 100000000, &a->samples)) return bad_usage("--samples: not a count >= 1: '%s'", v);
        } else if (!strcmp(o, "--guidance")) {
            char *end;
            a->guidance = strtod(v, &end);
            if (end == v || *end || !(a->guidance >= 0.0 && a->guidance <= 100.0))
                return bad_usage("--guidance: not a scale in [0, 100]: '%s'", v);
        } else if (!strcmp(o, "--format")) {
            if (strcmp(v, "tsv") && strcmp(v, "md")) return bad_usage("--format: tsv or md, not '%s'", v);
            a->format = v;
        } else if (!strcmp(o, "--out")) {
            a->out = v;
        } else {
            return bad_usage("unknown option '%s'", o);
        }
    }
    if (!a->config) return bad_usage("%s", "missing CONFIG");
    if (a->samples > 0 && !a->out) return bad_usage("%s", "--samples writes its samples into --out DIR: give it");
    return -1;
}

/* ---- the measurement --------------------------------------------------- */

/* One row of the table: a solver and k at one t. */
typedef struct row {
    int t, solver, k; /* solver -1: the reference against the data's x0 */
    double sse, nfe, seconds;
} row;

typedef struct ceiling {
    const args *a;
    flash_cfg *root;
    flash_registry *reg;
    flash_env env;
    flash_instance sched, model, data, sampler[N_SOLVERS];
    flash_denoiser den;
    flash_ctx *c;
    distill *kit;     /* the kit's target operator on the teacher */
    float w;          /* guidance scale (1 without labels) */
    int T, ndim, shape[3], num_classes;
    size_t per;       /* values per example */
    long n, batch, seed;
    float *x0, *eps;  /* (n, per) the data and the noise */
    int *labels;      /* (n) or NULL: unconditional */
    double ref_ss;    /* sum of squares of the references over every t */
} ceiling;

static flash_status make_dir(const char *path, flash_error *err)
{
    if (mkdir(path, 0777) != 0) {
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return flash_error_set(err, FLASH_ERR_IO, "%s: cannot create the directory", path);
    }
    return FLASH_OK;
}

static flash_status write_npy(const ceiling *e, const char *name, const float *x, long n, flash_error *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", e->a->out, name) >= (int)sizeof path)
        return flash_error_set(err, FLASH_ERR_USAGE, "--out: path too long");
    int64_t shape[4] = {n, e->shape[0], e->shape[1], e->shape[2]};
    return flash_npy_write(path, FLASH_F32, 1 + e->ndim, shape, x, err);
}

static flash_status write_labels(const ceiling *e, const char *name, const int *y, long n, flash_error *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", e->a->out, name) >= (int)sizeof path)
        return flash_error_set(err, FLASH_ERR_USAGE, "--out: path too long");
    int64_t *v = malloc((size_t)n * sizeof *v);
    if (!v) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory for %ld labels", n);
    for (long i = 0; i < n; i++) v[i] = y[i];
    int64_t shape[1] = {n};
    flash_status st = flash_npy_write(path, FLASH_I64, 1, shape, v, err);
    free(v);
    return st;
}

/* x0 of one solver from x (rows, per) at t, into out (host): the reference
 * (solver -1: k-step DDIM, the `ddim` sampler plugin), the kit's operator
 * (DDIM) or the `dpmpp_2m` plugin on the kit's timesteps. *nfe gets the
 * teacher's NFEs per example. */
static flash_status solve(ceiling *e, int solver, int k, double t, const float *x, const int *labels, long rows,
                          float *out, double *nfe, flash_error *err)
{
    flash_ctx_reset(e->c);
    flash_grad_set(e->c, false);
    int shape[4] = {(int)rows, e->shape[0], e->shape[1], e->shape[2]};
    flash_tensor *xt = flash_tensor_from(e->c, 1 + e->ndim, shape, x);
    const int64_t nfe0 = e->den.nfe;
    flash_tensor *y = NULL;
    if (solver == SOLVER_DDIM) {
        e->kit->target.k = k;
        y = distill_target(e->kit, e->c, xt, t, labels);
    } else {
        /* the kit's time-uniform grid t, t (k-1)/k, ..., t/k */
        distill_target_spec spec = {.k = k};
        double ts[FLASH_MAX_STEPS];
        const int n = distill_target_timesteps(&spec, t, ts);
        const flash_instance *s = &e->sampler[solver < 0 ? SOLVER_DDIM : solver];
        flash_sample_request rq = {.size = sizeof rq, .den = &e->den, .x = xt, .labels = labels, .stop_at = -1.0,
                                   .timesteps = ts, .n_timesteps = n, .mid_trajectory = true};
        y = FLASH_API(s, flash_sampler_api)->sample(s->self, e->c, &rq);
    }
    flash_status st = flash_ctx_status(e->c, err);
    if (st == FLASH_OK && !y) st = flash_error_set(err, FLASH_ERR_RUNTIME, "%s from t = %g gave nothing",
                                                   solver < 0 ? "the reference" : solver_names[solver], t);
    if (st == FLASH_OK) st = flash_tensor_to_host(e->c, y, out, err);
    *nfe = (double)(e->den.nfe - nfe0);
    return st;
}

static double sq_diff(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return s;
}

/* The rows of one t: the reference against the data, then every solver and k. */
static flash_status measure_t(ceiling *e, int t, row *rows, int *n_rows, flash_error *err)
{
    const args *a = e->a;
    row *data = &rows[(*n_rows)++];
    *data = (row){.t = t, .solver = -1, .k = (int)a->ref_k};
    const int first = *n_rows;
    for (int s = 0; s < N_SOLVERS; s++)
        for (int j = 0; j < a->n_k && a->solver[s]; j++) rows[(*n_rows)++] = (row){.t = t, .solver = s, .k = a->k[j]};
    const int n_kept = *n_rows - first + 1;
    const size_t bvals = (size_t)e->batch * e->per, all = (size_t)e->n * e->per;
    float *xt = malloc(bvals * sizeof *xt), *ref = malloc(bvals * sizeof *ref), *y = malloc(bvals * sizeof *y);
    float *keep = a->out ? malloc(all * sizeof *keep) : NULL;    /* x_t, written with --out */
    float **kept = calloc((size_t)n_kept, sizeof *kept);         /* the reference and each solver's x0, with --out */
    flash_status st = FLASH_OK;
    bool ok = xt && ref && y && kept && (!a->out || keep);
    for (int r = 0; ok && a->out && r < n_kept; r++) ok = (kept[r] = malloc(all * sizeof *kept[r])) != NULL;
    if (!ok) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory for %ld examples", e->n);
        goto done;
    }
    double alpha, sigma;
    flash_schedule_eval(&e->sched, (double)t, &alpha, &sigma);
    for (long b0 = 0; st == FLASH_OK && b0 < e->n; b0 += e->batch) {
        const long m = e->n - b0 < e->batch ? e->n - b0 : e->batch;
        const size_t mv = (size_t)m * e->per, off = (size_t)b0 * e->per;
        const int *lab = e->labels ? e->labels + b0 : NULL;
        for (size_t i = 0; i < mv; i++) xt[i] = (float)(alpha * e->x0[off + i] + sigma * e->eps[off + i]); /* eq. 1 */
        double nfe, t0 = flash_now();
        if ((st = solve(e, -1, (int)a->ref_k, t, xt, lab, m, ref, &nfe, err))) break;
        data->seconds += flash_now() - t0;
        data->nfe = nfe;
        data->sse += sq_diff(ref, e->x0 + off, mv);
        for (size_t i = 0; i < mv; i++) e->ref_ss += (double)ref[i] * ref[i];
        if (keep) memcpy(keep + off, xt, mv * sizeof *xt);
        if (kept[0]) memcpy(kept[0] + off, ref, mv * sizeof *ref);
        for (int r = first; r < *n_rows; r++) {
            row *w = &rows[r];
            t0 = flash_now();
            if ((st = solve(e, w->solver, w->k, t, xt, lab, m, y, &nfe, err))) break;
            w->seconds += flash_now() - t0;
            w->nfe = nfe;
            w->sse += sq_diff(y, ref, mv);
            if (kept[r - first + 1]) memcpy(kept[r - first + 1] + off, y, mv * sizeof *y);
        }
    }
    if (st == FLASH_OK && a->out) {
        char name[64];
        snprintf(name, sizeof name, "t%d_xt.npy", t);
        st = write_npy(e, name, keep, e->n, err);
        snprintf(name, sizeof name, "t%d_ref.npy", t);
        if (st == FLASH_OK) st = write_npy(e, name, kept[0], e->n, err);
        for (int r = first; st == FLASH_OK && r < *n_rows; r++) {
            snprintf(name, sizeof name, "t%d_%s%d.npy", t, solver_names[rows[r].solver], rows[r].k);
            st = write_npy(e, name, kept[r - first + 1], e->n, err);
        }
    }
done:
    for (int r = 0; kept && r < n_kept; r++) free(kept[r]);
    free(kept);
    free(xt);
    free(ref);
    free(y);
    free(keep);
    return st;
}

/* --samples: each solver's x0 from pure noise at t = T-1, written to --out. */
static flash_status noise_samples(ceiling *e, flash_error *err)
{
    const args *a = e->a;
    const long n = a->samples;
    const size_t vals = (size_t)n * e->per;
    const double t = (double)(e->T - 1);
    float *xT = malloc(vals * sizeof *xT), *y = malloc(vals * sizeof *y);
    int *lab = e->num_classes > 0 ? malloc((size_t)n * sizeof *lab) : NULL;
    flash_status st = FLASH_OK;
    if (!xT || !y || (e->num_classes > 0 && !lab)) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory for %ld samples", n);
        goto done;
    }
    flash_rng r;
    flash_rng_seed_stream(&r, (uint64_t)e->seed, 0x6e6f697365ull /* "noise" */);
    flash_rng_fill_normal(&r, xT, vals);
    for (long i = 0; lab && i < n; i++) lab[i] = (int)flash_rng_below(&r, (uint64_t)e->num_classes);
    if (lab && (st = write_labels(e, "noise_labels.npy", lab, n, err))) goto done;
    for (int s = -1; s < N_SOLVERS && st == FLASH_OK; s++) {
        for (int j = 0; j < (s < 0 ? 1 : a->n_k) && st == FLASH_OK; j++) {
            if (s >= 0 && !a->solver[s]) break;
            const int k = s < 0 ? (int)a->ref_k : a->k[j];
            for (long b0 = 0; st == FLASH_OK && b0 < n; b0 += e->batch) {
                const long m = n - b0 < e->batch ? n - b0 : e->batch;
                double nfe;
                st = solve(e, s, k, t, xT + (size_t)b0 * e->per, lab ? lab + b0 : NULL, m, y + (size_t)b0 * e->per,
                           &nfe, err);
            }
            char name[64];
            if (s < 0) snprintf(name, sizeof name, "noise_ref.npy");
            else snprintf(name, sizeof name, "noise_%s%d.npy", solver_names[s], k);
            if (st == FLASH_OK && flash_first_nonfinite(y, vals) >= 0)
                st = flash_error_set(err, FLASH_ERR_RUNTIME, "%s: the teacher's samples came out non-finite", name);
            if (st == FLASH_OK) st = write_npy(e, name, y, n, err);
        }
    }
done:
    free(xT);
    free(y);
    free(lab);
    return st;
}

static void print_table(const ceiling *e, const row *rows, int n_rows, const char *teacher)
{
    const args *a = e->a;
    const bool md = !strcmp(a->format, "md");
    const char *lead = md ? "" : "# ";
    const double ref_rms = sqrt(e->ref_ss / ((double)e->n * (double)e->per * a->n_t));
    printf("%s%s: teacher '%s' of %s, %ld examples of the dataset (batches of %ld), seed %ld\n", lead, TOOL, teacher,
           a->config, e->n, e->batch, e->seed);
    if (e->labels) printf("%sguidance scale w = %g, labels from the dataset\n", lead, (double)e->w);
    else printf("%sunconditional teacher: no guidance\n", lead);
    printf("%srms_err: RMS over examples and values of x0 against the %ld-step DDIM reference from the same x_t "
           "(RMS of the references: %.4g); rel_err = rms_err / that; row ref_vs_data: the reference itself "
           "against the x0 x_t was made from. nfe: teacher evaluations per target (guidance: 2 per step).\n",
           lead, a->ref_k, ref_rms);
    if (md) printf("\n| t | solver | k | nfe | rms_err | rel_err | ms_per_target |\n|---|---|---|---|---|---|---|\n");
    else printf("t\tsolver\tk\tnfe\trms_err\trel_err\tms_per_target\n");
    for (int r = 0; r < n_rows; r++) {
        const row *w = &rows[r];
        const double rms = sqrt(w->sse / ((double)e->n * (double)e->per));
        const char *name = w->solver < 0 ? "ref_vs_data" : solver_names[w->solver];
        const double ms = 1e3 * w->seconds / (double)e->n;
        if (md)
            printf("| %d | %s | %d | %g | %.4g | %.4g | %.4g |\n", w->t, name, w->k, w->nfe, rms, rms / ref_rms, ms);
        else
            printf("%d\t%s\t%d\t%g\t%.6g\t%.6g\t%.4g\n", w->t, name, w->k, w->nfe, rms, rms / ref_rms, ms);
    }
}

/* The teacher: `teacher:` else `model:`, with its checkpoint. */
static flash_status open_teacher(ceiling *e, const char **slot_name, flash_error *err)
{
    *slot_name = flash_cfg_get(e->root, "teacher") ? "teacher" : "model";
    const flash_cfg *slot = flash_cfg_get(e->root, *slot_name);
    if (!slot) return flash_cfg_error(e->root, err, "the pipeline has no `teacher:` (or `model:`) slot to measure");
    flash_status st;
    if ((st = flash_instance_create(&e->env, FLASH_KIND_MODEL, slot, &e->model, err)) ||
        (st = flash_slot_load(e->root, *slot_name, &e->model, err)))
        return st;
    const flash_model_api *api = FLASH_API(&e->model, flash_model_api);
    flash_params *p = api->params ? api->params(e->model.self) : NULL;
    if (p && (st = flash_params_to_device(p, flash_env_device(&e->env), err))) return st;
    return flash_denoiser_init(&e->den, &e->model, &e->sched, err);
}

/* The examples x0 (and labels) drawn from the dataset's training split, and
 * the noise. */
static flash_status draw_data(ceiling *e, flash_error *err)
{
    const flash_cfg *slot = flash_cfg_get(e->root, "dataset");
    if (!slot)
        return flash_cfg_error(e->root, err, "x_t is drawn from real examples: the pipeline needs a `dataset:` slot");
    flash_status st = flash_instance_create(&e->env, FLASH_KIND_DATASET, slot, &e->data, err);
    if (st) return st;
    const flash_dataset_api *api = FLASH_API(&e->data, flash_dataset_api);
    flash_dataset_info di;
    api->info(e->data.self, &di);
    bool same = di.ndim == e->ndim;
    for (int i = 0; same && i < e->ndim; i++) same = di.shape[i] == e->shape[i];
    if (!same) return flash_cfg_error(slot, err, "the dataset's examples do not have the teacher's shape");
    if (di.n_train < 1) return flash_cfg_error(slot, err, "the dataset's training split is empty");
    const size_t vals = (size_t)e->n * e->per;
    int64_t *idx = malloc((size_t)e->n * sizeof *idx);
    int *dl = malloc((size_t)e->n * sizeof *dl);
    e->x0 = malloc(vals * sizeof *e->x0);
    e->eps = malloc(vals * sizeof *e->eps);
    if (e->num_classes > 0) e->labels = malloc((size_t)e->n * sizeof *e->labels);
    if (!idx || !dl || !e->x0 || !e->eps || (e->num_classes > 0 && !e->labels)) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory for %ld examples", e->n);
        goto done;
    }
    flash_rng r;
    flash_rng_seed_stream(&r, (uint64_t)e->seed, 0x6461746131ull /* "data1" */);
    for (long i = 0; i < e->n; i++) idx[i] = (int64_t)flash_rng_below(&r, (uint64_t)di.n_train);
    if ((st = api->get(e->data.self, FLASH_SPLIT_TRAIN, idx, (int)e->n, e->x0, dl, err))) goto done;
    flash_rng_fill_normal(&r, e->eps, vals);
    /* the examples' own classes when the dataset has the teacher's, else
     * uniform draws, as the distillation draws them without data */
    for (long i = 0; e->labels && i < e->n; i++)
        e->labels[i] = di.num_classes == e->num_classes ? dl[i] : (int)flash_rng_below(&r, (uint64_t)e->num_classes);
done:
    free(idx);
    free(dl);
    return st;
}

static flash_status run(const args *a, ceiling *e, flash_error *err)
{
    flash_status st;
    if ((st = flash_cfg_load(a->config, &e->root, err))) return st;
    for (int i = 0; i < a->n_sets; i++)
        if ((st = flash_cfg_set(e->root, a->sets[i], err))) return st;
    if ((st = flash_cfg_absolute_paths(e->root, err))) return st;
    if (!(e->reg = flash_registry_create())) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    if ((st = flash_registry_load_default(e->reg, e->root, err)) ||
        (st = flash_schema_check(e->root, FLASH_FOR_ANY, e->reg, err)) || (st = flash_pipeline_threads(e->root, err)))
        return st;
    long seed = a->seed;
    if (seed < 0 && (st = flash_cfg_int(e->root, "seed", 0, &seed, err))) return st;
    e->seed = seed;
    const char *device = NULL;
    if ((st = flash_pipeline_device(e->root, (size_t)64 << 20, &device, &e->c, err))) return st;
    e->env = (flash_env){.size = sizeof e->env, .registry = e->reg, .seed = (uint64_t)seed, .root = e->root,
                         .device = device};
    const flash_cfg *sc = flash_cfg_get(e->root, "schedule");
    if (!sc) return flash_cfg_error(e->root, err, "the pipeline needs a `schedule:` slot");
    if ((st = flash_instance_create(&e->env, FLASH_KIND_SCHEDULE, sc, &e->sched, err))) return st;
    e->env.schedule = &e->sched;
    e->T = flash_schedule_T(&e->sched);
    for (int i = 0; i < a->n_t; i++)
        if (a->t[i] > e->T - 1)
            return flash_error_set(err, FLASH_ERR_USAGE, "--t: %d is past the schedule's last timestep %d", a->t[i],
                                   e->T - 1);
    const char *slot_name;
    if ((st = open_teacher(e, &slot_name, err))) return st;
    e->env.teacher = &e->model;
    const flash_model_info *mi = &e->den.info;
    e->ndim = mi->ndim;
    e->per = 1;
    for (int i = 0; i < 3; i++) e->shape[i] = i < mi->ndim ? mi->shape[i] : 0;
    for (int i = 0; i < mi->ndim; i++) e->per *= (size_t)mi->shape[i];
    e->num_classes = mi->num_classes;

    /* the guidance scale: the kit's (strategy.target.guidance_scale) */
    float w = 1.0f;
    const flash_cfg *target = flash_cfg_path(e->root, "strategy.target");
    if (target && flash_cfg_kind(target) == FLASH_CFG_MAP &&
        (st = flash_cfg_float(target, "guidance_scale", 1.0f, &w, err)))
        return st;
    if (a->guidance >= 0.0) w = (float)a->guidance;
    e->w = e->num_classes > 0 ? w : 1.0f;

    e->n = a->n > 0 ? a->n : (e->per <= 16 ? 4096 : 64);
    e->batch = a->batch > 0 ? a->batch : BATCH_BUDGET / (long)e->per;
    if (e->batch < 1) e->batch = 1;
    if (e->batch > BATCH_MAX) e->batch = BATCH_MAX;
    if (e->batch > e->n) e->batch = e->n;
    if ((st = draw_data(e, err))) return st;

    /* The DDIM rows are the kit's operator itself. distill_target reads only
     * the target spec, the teacher denoiser and the per-sample scales d->w
     * (NULL: target.guidance_scale for every sample), so a kit holding just
     * those is the operator a distillation applies; the reference (the
     * `ddim` plugin on the same grid at --ref-k) checks that they agree. */
    if (!(e->kit = calloc(1, sizeof *e->kit))) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    e->kit->teacher = &e->den;
    e->kit->target = (distill_target_spec){.k = 1, .guidance_scale = e->w};
    char text[128];
    for (int s = 0; s < N_SOLVERS; s++) {
        flash_cfg *node = NULL;
        snprintf(text, sizeof text, "{plugin: %s, guidance_scale: %.9g}", solver_names[s], (double)e->w);
        if ((st = flash_cfg_parse_string(text, TOOL, &node, err))) return st;
        st = flash_instance_create(&e->env, FLASH_KIND_SAMPLER, node, &e->sampler[s], err);
        flash_cfg_free(node);
        if (st) return st;
    }

    if (a->out) {
        if ((st = make_dir(a->out, err)) || (st = write_npy(e, "x0.npy", e->x0, e->n, err))) return st;
        if (e->labels && (st = write_labels(e, "labels.npy", e->labels, e->n, err))) return st;
    }
    row *rows = calloc((size_t)a->n_t * (1 + N_SOLVERS * MAX_LIST), sizeof *rows);
    if (!rows) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    int n_rows = 0;
    for (int i = 0; i < a->n_t && st == FLASH_OK; i++) {
        const double t0 = flash_now();
        st = measure_t(e, a->t[i], rows, &n_rows, err);
        fprintf(stderr, TOOL ": t = %d measured in %.1f s\n", a->t[i], flash_now() - t0);
    }
    if (st == FLASH_OK) print_table(e, rows, n_rows, e->model.comp->name);
    free(rows);
    if (st == FLASH_OK && a->samples > 0) {
        const double t0 = flash_now();
        st = noise_samples(e, err);
        if (st == FLASH_OK)
            fprintf(stderr, TOOL ": %ld samples from pure noise per solver in %s/ (%.1f s)\n", a->samples, a->out,
                    flash_now() - t0);
    }
    return st;
}

int main(int argc, char **argv)
{
    args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    ceiling e = {.a = &a};
    flash_error err = {0};
    flash_status st = run(&a, &e, &err);
    if (st) fprintf(stderr, TOOL ": %s\n", err.msg);
    free(e.kit);
    free(e.x0);
    free(e.eps);
    free(e.labels);
    for (int s = 0; s < N_SOLVERS; s++) flash_instance_destroy(&e.sampler[s]);
    flash_denoiser_release(&e.den);
    flash_instance_destroy(&e.data);
    flash_instance_destroy(&e.model);
    flash_instance_destroy(&e.sched);
    flash_ctx_destroy(e.c);
    flash_registry_destroy(e.reg);
    flash_cfg_free(e.root);
    return st ? exit_code(st) : 0;
}
