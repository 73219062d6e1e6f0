/* flash sweep SWEEP.yaml [--out DIR] [--jobs N] [--resume] [--dry-run]
 *                        [--emit slurm] [--run ID]
 *
 * A sweep is a grid of `flash run` pipelines. Each run is one child process
 * `flash run DIR/runs/<id>/config.yaml --out DIR/runs/<id>` on a resolved
 * config (the base config or the variant's config file, the sweep's and the
 * variant's overrides, the seed, the guidance scale, the step count and the
 * list of `flash run` variants), so a sweep adds no second pipeline: what a
 * run computes is exactly what `flash run` computes. Stages are shared the
 * way `flash run` shares them: a teacher is analytic or one checkpoint every
 * run loads, and a student is distilled once per run and sampled at every
 * step count of a `share_steps` variant (`from:` variants). Every run uses
 * the same run.samples and run.noise_seed, so the noise bank and labels are
 * identical; the first finished run's bank is kept as DIR/noise_bank.npy and
 * every later one is checked against it byte for byte.
 *
 * A run is complete when DIR/runs/<id>/DONE exists (written atomically after
 * the child exited 0 and its bank matched), failed when FAILED holds its
 * error. --resume skips complete runs and restarts the others, which
 * continue their distillations from their checkpoints (`flash run` resumes
 * by itself). Children die with the sweep (PR_SET_PDEATHSIG), so a killed
 * sweep leaves only complete runs and resumable checkpoints. */
#include "cli.h"
#include "report.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

static const char help[] =
    "usage: flash sweep SWEEP.yaml [--out DIR] [--jobs N] [--resume] [--dry-run]\n"
    "                  [--emit slurm] [--run ID]\n"
    "\n"
    "Runs the grid of pipelines a sweep file describes (a base config and\n"
    "axes: variants, step counts, seeds, guidance scales) on a shared noise\n"
    "bank, one `flash run` child process per run in DIR/runs/<id>/ (resolved\n"
    "config.yaml, logs, checkpoints, samples, results.json), and writes\n"
    "DIR/results.csv, DIR/results.json, DIR/table.md and DIR/report.html.\n"
    "\n"
    "  base: ../quickstart.yaml        # relative to the sweep file\n"
    "  set: [\"run.samples=2000\"]       # overrides for every run\n"
    "  seeds: [0, 1]                   # training seeds (top-level `seed:`)\n"
    "  steps: [1, 2, 3]                # substituted into per_step as {steps}\n"
    "  timesteps: {1: [999], 2: [999, 666], 3: [999, 750, 500]}  # {timesteps}\n"
    "  guidance: [1.0, 3.0]            # sets guidance_key (default\n"
    "  guidance_key: target.guidance_scale  #   target.guidance_scale)\n"
    "  baseline: teacher_dpmpp_25      # 100% in the report's relative columns\n"
    "  variants:\n"
    "    - name: teacher_dpmpp          # a method; runs are <name>_s<steps>_seed<seed>\n"
    "      model: teacher               # teacher variants are not seeded\n"
    "      share_steps: true            # one run samples every step count\n"
    "      per_step: [\"sampler={plugin: dpmpp_2m, steps: {steps}}\"]\n"
    "    - name: imagine_flash\n"
    "      set: [\"strategy.plugin=backward\"]\n"
    "      per_step: [\"sampler.timesteps={timesteps}\"]\n"
    "      resample: [{name: no_nc, set: [\"sampler.noise_correction=false\"]}]\n"
    "    - {name: lcm, config: ../distill/lcm.yaml}   # its own run.variants\n"
    "  runs: [{variant: imagine_flash, steps: 3, seed: 0}]  # instead of the grid\n"
    "\n"
    "  --out DIR        output directory (default: the sweep's `out:`, else\n"
    "                   runs/sweep-<name>)\n"
    "  --jobs N         runs at once (default 1); the CPUs are split between\n"
    "                   them, each run using at most its config's `threads:`\n"
    "  --resume         skip completed runs, continue interrupted ones from\n"
    "                   their checkpoints, retry failed ones\n"
    "  --dry-run        resolve every run's config, check it (`flash check`)\n"
    "                   and print the plan\n"
    "  --emit slurm     prepare the run folders and write DIR/slurm/sweep.sbatch\n"
    "                   (a job array) and DIR/slurm/commands.txt (one line per\n"
    "                   run); collect afterwards with `flash report DIR`\n"
    "  --run ID         run only this run (what each array task does)\n"
    "  -h, --help       this text\n"
    "\n"
    "Exit codes: 0 every run complete, 1 a run failed or the sweep was\n"
    "interrupted, 2 bad usage or sweep file.\n";

#define MAX_LIST 32
#define MAX_VARIANTS 64
#define MAX_RUNS 4096
#define MAX_ENTRIES 64

static const char *const sweep_keys[] = {"base", "set", "out", "jobs", "seeds", "steps", "timesteps", "guidance",
                                         "guidance_key", "baseline", "variants", "runs", NULL};
static const char *const variant_keys[] = {"name", "config", "model", "set", "per_step", "share_steps", "seeded",
                                           "steps", "resample", NULL};
static const char *const resample_keys[] = {"name", "set", NULL};
static const char *const run_keys[] = {"variant", "steps", "seed", "guidance", NULL};

typedef struct sw_variant {
    const flash_cfg *node;
    const char *name, *model;
    char *config; /* resolved path */
    const flash_cfg *set, *per_step, *resample;
    bool share_steps, seeded, is_teacher;
    long steps[MAX_LIST];
    int n_steps; /* -1: the sweep's axis */
} sw_variant;

typedef struct sw_run {
    char id[160];
    int variant;
    long steps[MAX_LIST];
    int n_steps; /* 0: the config's own run.variants */
    bool seeded, guided;
    long seed;
    double guidance;
    pid_t pid;
    int state; /* 0 planned, 1 running, 2 done, 3 failed, 4 skipped (complete) */
    /* the teacher checkpoint `flash run` trains first (teacher_train:), or "" */
    char stage[512];
} sw_run;

typedef struct sweep {
    const char *path, *out;
    flash_cfg *root;
    char *base;
    const flash_cfg *set;
    long seeds[MAX_LIST], steps[MAX_LIST];
    int n_seeds, n_steps;
    double guidance[MAX_LIST];
    int n_guidance;
    const char *guidance_key, *baseline;
    sw_variant v[MAX_VARIANTS];
    int n_v;
    sw_run *runs;
    int n_runs;
    int threads_per_job;
    char self[4096];
} sweep;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int usage(const char *msg, const char *arg)
{
    fprintf(stderr, "flash sweep: ");
    fprintf(stderr, msg, arg);
    fprintf(stderr, " (see 'flash sweep --help')\n");
    return FLASH_EXIT_USAGE;
}

/* path relative to the directory of file (absolute paths unchanged) */
static char *relative_to(const char *file, const char *path)
{
    if (path[0] == '/') return strdup(path);
    const char *slash = strrchr(file, '/');
    size_t d = slash ? (size_t)(slash - file) + 1 : 0;
    char *s = malloc(d + strlen(path) + 1);
    if (!s) return NULL;
    memcpy(s, file, d);
    strcpy(s + d, path);
    return s;
}

static bool plain_name(const char *s)
{
    if (!s || !s[0] || strlen(s) > 48) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-'))
            return false;
    return true;
}

static flash_status check_strings(const flash_cfg *seq, const char *what, flash_error *err)
{
    if (!seq) return FLASH_OK;
    if (flash_cfg_kind(seq) != FLASH_CFG_SEQ) return flash_cfg_error(seq, err, "%s: expected a list of strings", what);
    for (size_t i = 0; i < flash_cfg_len(seq); i++)
        if (!flash_cfg_scalar(flash_cfg_at(seq, i)))
            return flash_cfg_error(flash_cfg_at(seq, i), err, "%s: expected a \"key=value\" string", what);
    return FLASH_OK;
}

static flash_status read_longs(const flash_cfg *map, const char *key, long *out, int *n, flash_error *err)
{
    size_t k = 0;
    flash_status st = flash_cfg_ints(map, key, out, MAX_LIST, &k, err);
    *n = (int)k;
    return st;
}

static flash_status parse_sweep(sweep *S, flash_error *err)
{
    flash_status st;
    const flash_cfg *r = S->root;
    const char *base = NULL;
    if ((st = flash_cfg_check_keys(r, "sweep", sweep_keys, err)) || (st = flash_cfg_str(r, "base", NULL, &base, err)) ||
        (st = flash_cfg_str(r, "guidance_key", "target.guidance_scale", &S->guidance_key, err)) ||
        (st = flash_cfg_str(r, "baseline", NULL, &S->baseline, err)))
        return st;
    if (base && !(S->base = relative_to(S->path, base))) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    S->set = flash_cfg_get(r, "set");
    if ((st = check_strings(S->set, "set", err))) return st;
    if (flash_cfg_get(r, "seeds")) {
        if ((st = read_longs(r, "seeds", S->seeds, &S->n_seeds, err))) return st;
    }
    if (flash_cfg_get(r, "steps") && (st = read_longs(r, "steps", S->steps, &S->n_steps, err))) return st;
    if (flash_cfg_get(r, "guidance")) {
        size_t k = 0;
        if ((st = flash_cfg_doubles(r, "guidance", S->guidance, MAX_LIST, &k, err))) return st;
        S->n_guidance = (int)k;
    }
    const flash_cfg *vs = flash_cfg_get(r, "variants");
    if (!vs || flash_cfg_kind(vs) != FLASH_CFG_SEQ || flash_cfg_len(vs) < 1)
        return flash_cfg_error(vs ? vs : r, err, "variants: expected a list of variants");
    if (flash_cfg_len(vs) > MAX_VARIANTS) return flash_cfg_error(vs, err, "at most %d variants", MAX_VARIANTS);
    for (size_t i = 0; i < flash_cfg_len(vs); i++) {
        const flash_cfg *n = flash_cfg_at(vs, i);
        sw_variant *v = &S->v[S->n_v];
        const char *config = NULL;
        v->node = n;
        v->n_steps = -1;
        if ((st = flash_cfg_check_keys(n, "variant", variant_keys, err)) ||
            (st = flash_cfg_str(n, "name", NULL, &v->name, err)) ||
            (st = flash_cfg_str(n, "config", NULL, &config, err)) ||
            (st = flash_cfg_str(n, "model", "student", &v->model, err)) ||
            (st = flash_cfg_bool(n, "share_steps", false, &v->share_steps, err)))
            return st;
        if (!plain_name(v->name))
            return flash_cfg_error(n, err, "a variant needs a `name:` of letters, digits, '_' or '-' (48 at most)");
        for (int j = 0; j < S->n_v; j++)
            if (strcmp(S->v[j].name, v->name) == 0)
                return flash_cfg_error(flash_cfg_get(n, "name"), err, "variant '%s' appears twice", v->name);
        if (strcmp(v->model, "teacher") && strcmp(v->model, "student"))
            return flash_cfg_error(flash_cfg_get(n, "model"), err, "model: 'teacher' or 'student', got '%s'", v->model);
        v->is_teacher = strcmp(v->model, "teacher") == 0;
        /* a teacher variant trains nothing: seeds would repeat it */
        if ((st = flash_cfg_bool(n, "seeded", !v->is_teacher, &v->seeded, err))) return st;
        v->set = flash_cfg_get(n, "set");
        v->per_step = flash_cfg_get(n, "per_step");
        v->resample = flash_cfg_get(n, "resample");
        if ((st = check_strings(v->set, "set", err)) || (st = check_strings(v->per_step, "per_step", err))) return st;
        if (flash_cfg_get(n, "steps") && (st = read_longs(n, "steps", v->steps, &v->n_steps, err))) return st;
        if (v->resample) {
            if (flash_cfg_kind(v->resample) != FLASH_CFG_SEQ)
                return flash_cfg_error(v->resample, err, "resample: expected a list of {name, set}");
            if (v->is_teacher) return flash_cfg_error(v->resample, err, "resample: a teacher variant has no student");
            for (size_t k = 0; k < flash_cfg_len(v->resample); k++) {
                const flash_cfg *rs = flash_cfg_at(v->resample, k);
                const char *rn = NULL;
                if ((st = flash_cfg_check_keys(rs, "resample", resample_keys, err)) ||
                    (st = flash_cfg_str(rs, "name", NULL, &rn, err)) ||
                    (st = check_strings(flash_cfg_get(rs, "set"), "set", err)))
                    return st;
                if (!plain_name(rn)) return flash_cfg_error(rs, err, "resample: a `name:` of letters, digits, '_', '-'");
            }
            if (!v->per_step) return flash_cfg_error(v->resample, err, "resample needs per_step (the variants it names)");
        }
        if (config && !(v->config = relative_to(S->path, config)))
            return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
        if (!config && !S->base) return flash_cfg_error(n, err, "variant '%s' has no `config:` and the sweep no `base:`", v->name);
        if (v->per_step && (v->n_steps >= 0 ? v->n_steps : S->n_steps) < 1)
            return flash_cfg_error(n, err, "variant '%s' has per_step but no step counts (`steps:`)", v->name);
        S->n_v++;
    }
    return FLASH_OK;
}

static int find_variant(const sweep *S, const char *name)
{
    for (int i = 0; i < S->n_v; i++)
        if (strcmp(S->v[i].name, name) == 0) return i;
    return -1;
}

static flash_status add_run(sweep *S, int vi, const long *steps, int n_steps, bool seeded, long seed, bool guided,
                            double g, flash_error *err)
{
    if (S->n_runs == MAX_RUNS) return flash_error_set(err, FLASH_ERR_CONFIG, "%s: more than %d runs", S->path, MAX_RUNS);
    sw_run *r = &S->runs[S->n_runs];
    memset(r, 0, sizeof *r);
    r->variant = vi;
    if (n_steps) memcpy(r->steps, steps, (size_t)n_steps * sizeof *steps);
    r->n_steps = n_steps;
    r->seeded = seeded;
    r->seed = seed;
    r->guided = guided;
    r->guidance = g;
    int k = snprintf(r->id, sizeof r->id, "%s", S->v[vi].name);
    if (n_steps == 1 && !S->v[vi].share_steps) k += snprintf(r->id + k, sizeof r->id - (size_t)k, "_s%ld", steps[0]);
    if (seeded) k += snprintf(r->id + k, sizeof r->id - (size_t)k, "_seed%ld", seed);
    if (guided) {
        char gs[32];
        snprintf(gs, sizeof gs, "%g", g);
        for (char *c = gs; *c; c++)
            if (*c == '.') *c = 'p';
        snprintf(r->id + k, sizeof r->id - (size_t)k, "_g%s", gs);
    }
    for (int i = 0; i < S->n_runs; i++)
        if (strcmp(S->runs[i].id, r->id) == 0) return flash_error_set(err, FLASH_ERR_CONFIG, "%s: run '%s' appears twice", S->path, r->id);
    S->n_runs++;
    return FLASH_OK;
}

static flash_status plan(sweep *S, flash_error *err)
{
    flash_status st;
    if (!(S->runs = calloc(MAX_RUNS, sizeof *S->runs))) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    const flash_cfg *runs = flash_cfg_get(S->root, "runs");
    if (runs) {
        if (flash_cfg_kind(runs) != FLASH_CFG_SEQ) return flash_cfg_error(runs, err, "runs: expected a list of runs");
        for (size_t i = 0; i < flash_cfg_len(runs); i++) {
            const flash_cfg *n = flash_cfg_at(runs, i);
            const char *vn = NULL;
            long steps, seed;
            double g;
            if ((st = flash_cfg_check_keys(n, "run", run_keys, err)) || (st = flash_cfg_str(n, "variant", NULL, &vn, err)) ||
                (st = flash_cfg_int(n, "steps", -1, &steps, err)) || (st = flash_cfg_int(n, "seed", 0, &seed, err)) ||
                (st = flash_cfg_double(n, "guidance", NAN, &g, err)))
                return st;
            int vi = vn ? find_variant(S, vn) : -1;
            if (vi < 0) return flash_cfg_error(n, err, "runs: `variant: %s` names no variant", vn ? vn : "(missing)");
            const sw_variant *v = &S->v[vi];
            if (v->per_step && steps < 1) return flash_cfg_error(n, err, "runs: variant '%s' needs `steps:`", vn);
            if (!v->per_step && steps >= 1) return flash_cfg_error(n, err, "runs: variant '%s' has no per_step", vn);
            if ((st = add_run(S, vi, &steps, v->per_step ? 1 : 0, v->seeded && flash_cfg_get(n, "seed"), seed,
                              !isnan(g), g, err)))
                return st;
        }
        return FLASH_OK;
    }
    for (int vi = 0; vi < S->n_v; vi++) {
        const sw_variant *v = &S->v[vi];
        const long *steps = v->n_steps >= 0 ? v->steps : S->steps;
        int n_steps = v->n_steps >= 0 ? v->n_steps : S->n_steps;
        int n_groups = !v->per_step ? 1 : v->share_steps ? 1 : n_steps;
        int n_seeds = v->seeded && S->n_seeds ? S->n_seeds : 1;
        int n_g = S->n_guidance ? S->n_guidance : 1;
        for (int gi = 0; gi < n_groups; gi++)
            for (int si = 0; si < n_seeds; si++)
                for (int k = 0; k < n_g; k++) {
                    const long *st0 = v->per_step ? (v->share_steps ? steps : steps + gi) : NULL;
                    int ns = !v->per_step ? 0 : v->share_steps ? n_steps : 1;
                    if ((st = add_run(S, vi, st0, ns, v->seeded && S->n_seeds > 0, S->n_seeds ? S->seeds[si] : 0,
                                      S->n_guidance > 0, S->n_guidance ? S->guidance[k] : 0, err)))
                        return st;
                }
    }
    return FLASH_OK;
}

/* s with {steps} and {timesteps} replaced, into a malloc'd string */
static flash_status substitute(const sweep *S, const flash_cfg *where, const char *s, long steps, char **out,
                               flash_error *err)
{
    char ts[512] = "";
    if (strstr(s, "{timesteps}")) {
        const flash_cfg *map = flash_cfg_get(S->root, "timesteps");
        char key[32];
        snprintf(key, sizeof key, "%ld", steps);
        const flash_cfg *list = map ? flash_cfg_get(map, key) : NULL;
        if (!list || flash_cfg_kind(list) != FLASH_CFG_SEQ)
            return flash_cfg_error(where, err, "{timesteps}: the sweep's `timesteps:` has no list for %ld steps", steps);
        size_t k = 0;
        k += (size_t)snprintf(ts + k, sizeof ts - k, "[");
        for (size_t i = 0; i < flash_cfg_len(list) && k < sizeof ts - 16; i++) {
            const char *t = flash_cfg_scalar(flash_cfg_at(list, i));
            if (!t) return flash_cfg_error(list, err, "timesteps: expected numbers");
            k += (size_t)snprintf(ts + k, sizeof ts - k, "%s%s", i ? ", " : "", t);
        }
        snprintf(ts + k, sizeof ts - k, "]");
    }
    char sn[32];
    snprintf(sn, sizeof sn, "%ld", steps);
    size_t cap = strlen(s) * 2 + strlen(ts) * 4 + 64;
    char *o = malloc(cap);
    if (!o) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    size_t k = 0;
    while (*s) {
        const char *rep = NULL;
        size_t skip = 0;
        if (strncmp(s, "{steps}", 7) == 0) rep = sn, skip = 7;
        else if (strncmp(s, "{timesteps}", 11) == 0) rep = ts, skip = 11;
        size_t add = rep ? strlen(rep) : 1;
        if (k + add + 1 > cap) {
            char *g = realloc(o, cap = 2 * cap + add);
            if (!g) {
                free(o);
                return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
            }
            o = g;
        }
        if (rep) {
            memcpy(o + k, rep, add);
            s += skip;
        } else {
            o[k] = *s++;
        }
        k += add;
    }
    o[k] = 0;
    *out = o;
    return FLASH_OK;
}

static flash_status apply_list(flash_cfg *cfg, const flash_cfg *seq, flash_error *err)
{
    for (size_t i = 0; seq && i < flash_cfg_len(seq); i++) {
        flash_status st = flash_cfg_set(cfg, flash_cfg_scalar(flash_cfg_at(seq, i)), err);
        if (st) {
            char where[256];
            flash_error_prefix(err, "%s", flash_cfg_where(flash_cfg_at(seq, i), where, sizeof where));
            return st;
        }
    }
    return FLASH_OK;
}

/* a YAML double-quoted scalar */
static void yq(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

typedef struct entry_meta {
    char name[128], method[128];
    int nc; /* -1 unknown, 0 off, 1 on */
} entry_meta;

/* Writes the per_step strings for `steps` (plus extra) as a YAML flow list. */
static flash_status flow_sets(const sweep *S, const sw_variant *v, long steps, const flash_cfg *extra, FILE *f,
                              flash_error *err)
{
    fputc('[', f);
    int first = 1;
    for (size_t i = 0; i < flash_cfg_len(v->per_step); i++) {
        char *s = NULL;
        flash_status st = substitute(S, flash_cfg_at(v->per_step, i), flash_cfg_scalar(flash_cfg_at(v->per_step, i)),
                                     steps, &s, err);
        if (st) return st;
        if (!first) fputs(", ", f);
        yq(f, s);
        free(s);
        first = 0;
    }
    for (size_t i = 0; extra && i < flash_cfg_len(extra); i++) {
        if (!first) fputs(", ", f);
        yq(f, flash_cfg_scalar(flash_cfg_at(extra, i)));
        first = 0;
    }
    fputc(']', f);
    return FLASH_OK;
}

/* The run's resolved config and its entries' methods. */
static flash_status resolve(const sweep *S, const sw_run *r, flash_cfg **out, entry_meta *em, int *n_em,
                            flash_error *err)
{
    const sw_variant *v = &S->v[r->variant];
    flash_cfg *cfg = NULL;
    flash_status st = flash_cfg_load(v->config ? v->config : S->base, &cfg, err);
    if (st) return st;
    char buf[256];
    if ((st = apply_list(cfg, S->set, err)) || (st = apply_list(cfg, v->set, err))) goto fail;
    if (r->seeded) {
        snprintf(buf, sizeof buf, "seed=%ld", r->seed);
        if ((st = flash_cfg_set(cfg, buf, err))) goto fail;
    }
    if (r->guided) {
        snprintf(buf, sizeof buf, "%s=%.17g", S->guidance_key, r->guidance);
        if ((st = flash_cfg_set(cfg, buf, err))) goto fail;
    }
    long threads;
    if ((st = flash_cfg_int(cfg, "threads", 2, &threads, err))) goto fail;
    if (threads > S->threads_per_job) threads = S->threads_per_job;
    snprintf(buf, sizeof buf, "threads=%ld", threads < 1 ? 1 : threads);
    if ((st = flash_cfg_set(cfg, buf, err))) goto fail;
    *n_em = 0;
    if (r->n_steps > 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f) {
            st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
            goto fail;
        }
        fputs("run.variants=[", f);
        char first[128];
        snprintf(first, sizeof first, "%s_%ld", v->name, r->steps[0]);
        for (int i = 0; i < r->n_steps && !st; i++) {
            const int main_entry = *n_em;
            entry_meta *e = &em[(*n_em)++];
            snprintf(e->name, sizeof e->name, "%s_%ld", v->name, r->steps[i]);
            snprintf(e->method, sizeof e->method, "%s", v->name);
            fprintf(f, "%s{name: %s, model: %s", i ? ", " : "", e->name, v->model);
            if (i > 0 && !v->is_teacher) fprintf(f, ", from: %s", first);
            fputs(", set: ", f);
            st = flow_sets(S, v, r->steps[i], NULL, f, err);
            fputc('}', f);
            for (size_t k = 0; v->resample && k < flash_cfg_len(v->resample) && !st; k++) {
                const flash_cfg *rs = flash_cfg_at(v->resample, k);
                const char *rn = flash_cfg_scalar(flash_cfg_get(rs, "name"));
                e = &em[(*n_em)++];
                snprintf(e->method, sizeof e->method, "%s_%s", v->name, rn);
                snprintf(e->name, sizeof e->name, "%s_%s_%ld", v->name, rn, r->steps[i]);
                fprintf(f, ", {name: %s, from: %s, set: ", e->name, i > 0 ? first : em[main_entry].name);
                st = flow_sets(S, v, r->steps[i], flash_cfg_get(rs, "set"), f, err);
                fputc('}', f);
            }
        }
        fputc(']', f);
        fclose(f);
        if (!text) {
            st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (!st) {
            st = flash_cfg_set(cfg, text, err);
            if (st) flash_error_prefix(err, "run '%s'", r->id);
        }
        free(text);
        if (st) goto fail;
    }
    /* the entries (ours or the config's own) and their noise-correction flags */
    const flash_cfg *vars = flash_cfg_path(cfg, "run.variants");
    if (!vars || flash_cfg_kind(vars) != FLASH_CFG_SEQ) {
        st = flash_error_set(err, FLASH_ERR_CONFIG, "run '%s': the config has no run.variants (give the variant per_step)",
                             r->id);
        goto fail;
    }
    if (r->n_steps == 0) *n_em = 0;
    for (size_t i = 0; i < flash_cfg_len(vars) && i < MAX_ENTRIES; i++) {
        const flash_cfg *e = flash_cfg_at(vars, i);
        const char *name = flash_cfg_scalar(flash_cfg_get(e, "name"));
        if (!name) continue;
        entry_meta *m = NULL;
        for (int k = 0; k < *n_em; k++)
            if (strcmp(em[k].name, name) == 0) m = &em[k];
        if (!m) {
            if (*n_em == MAX_ENTRIES) break;
            m = &em[(*n_em)++];
            snprintf(m->name, sizeof m->name, "%s", name);
            snprintf(m->method, sizeof m->method, "%s", v->name);
        }
        flash_cfg *c = flash_cfg_clone(cfg);
        flash_error e2 = {0};
        m->nc = -1;
        if (c && apply_list(c, flash_cfg_get(e, "set"), &e2) == FLASH_OK) {
            const char *nc = flash_cfg_scalar(flash_cfg_path(c, "sampler.noise_correction"));
            if (nc) m->nc = strcmp(nc, "true") == 0;
        }
        flash_cfg_free(c);
    }
    *out = cfg;
    return FLASH_OK;
fail:
    flash_cfg_free(cfg);
    return st;
}

/* True when the checkpoint at ck holds a teacher trained for all of
 * teacher_train.train.steps: nothing is left to train, nobody waits. */
static bool teacher_trained(const flash_cfg *cfg, const char *ck)
{
    long want = 0;
    flash_error e = {0};
    if (flash_cfg_int(flash_cfg_get(flash_cfg_get(cfg, "teacher_train"), "train"), "steps", 0, &want, &e) || want <= 0)
        return false;
    flash_safetensors *st = NULL;
    if (flash_safetensors_open(ck, &st, &e)) return false;
    const char *step = flash_safetensors_meta(st, "step");
    const bool done = step && strtoll(step, NULL, 10) >= want;
    flash_safetensors_close(st);
    return done;
}

/* The run's shared teacher stage: the checkpoint its `flash run` trains
 * when the config has teacher_train and the teacher is not trained yet. */
static void stage_key(const flash_cfg *cfg, sw_run *r)
{
    const char *ck = flash_cfg_scalar(flash_cfg_get(cfg, "teacher_train") ? flash_cfg_get(cfg, "teacher_checkpoint") : NULL);
    snprintf(r->stage, sizeof r->stage, "%s", ck && !teacher_trained(cfg, ck) ? ck : "");
}

static flash_status write_meta(const sweep *S, const sw_run *r, int index, const entry_meta *em, int n_em,
                               const char *dir, flash_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_META);
    flash_atomic_file af;
    flash_status st = flash_atomic_open(&af, path, err);
    if (st) return st;
    FILE *f = af.f;
    fputs("{\"id\": ", f);
    flash_cli_json_str(f, r->id);
    fprintf(f, ", \"index\": %d", index);
    flash_cli_json_field_str(f, "method", S->v[r->variant].name);
    flash_cli_json_field_str(f, "model", S->v[r->variant].model);
    fputs(", \"seed\": ", f);
    if (r->seeded)
        fprintf(f, "%ld", r->seed);
    else
        fputs("null", f);
    fputs(", \"guidance\": ", f);
    if (r->guided)
        fprintf(f, "%.17g", r->guidance);
    else
        fputs("null", f);
    fputs(", \"entries\": [", f);
    for (int i = 0; i < n_em; i++) {
        fputs(i ? ", {\"name\": " : "{\"name\": ", f);
        flash_cli_json_str(f, em[i].name);
        flash_cli_json_field_str(f, "method", em[i].method);
        fprintf(f, ", \"noise_correction\": %s}", em[i].nc < 0 ? "null" : em[i].nc ? "true" : "false");
    }
    fputs("]}\n", f);
    return flash_cli_atomic_close(&af, err);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void run_dir(const sweep *S, const sw_run *r, char *buf, size_t n)
{
    snprintf(buf, n, "%s/runs/%s", S->out, r->id);
}

/* Writes the run's folder: config.yaml (kept when resuming, so an
 * interrupted distillation continues on the config it started with) and
 * run.json. */
static flash_status prepare(sweep *S, int i, bool resume, flash_error *err)
{
    sw_run *r = &S->runs[i];
    char dir[4300], path[4400];
    run_dir(S, r, dir, sizeof dir);
    flash_cfg *cfg = NULL;
    entry_meta *em = calloc(MAX_ENTRIES + MAX_LIST * 8, sizeof *em);
    if (!em) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    int n_em = 0;
    flash_status st = resolve(S, r, &cfg, em, &n_em, err);
    if (!st) stage_key(cfg, r);
    if (!st && r->state != 0) goto out; /* complete: only its stage matters */
    if (!st) st = flash_mkdirs(dir, err);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    if (!st && !(resume && exists(path))) st = flash_cfg_write(cfg, path, err);
    if (!st) st = write_meta(S, r, i, em, n_em, dir, err);
    snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_FAILED);
    if (!st) unlink(path);
out:
    flash_cfg_free(cfg);
    free(em);
    return st;
}

static pid_t spawn(const sweep *S, const sw_run *r)
{
    char dir[4300], cfg[4400], log[4400];
    run_dir(S, r, dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/config.yaml", dir);
    snprintf(log, sizeof log, "%s/run.log", dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* the child dies with the sweep, so a killed sweep leaves no run writing */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execl(S->self, "flash", "run", cfg, "--out", dir, (char *)NULL);
    fprintf(stderr, "flash sweep: cannot execute %s: %s\n", S->self, strerror(errno));
    _exit(127);
}

/* The last line of the run's log that reads as an error. */
static void last_error(const char *dir, char *msg, size_t n)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/run.log", dir);
    snprintf(msg, n, "see %.900s", path);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "flash run: ") == line && !strstr(line, "distilling") && !strstr(line, "wrote") &&
            !strstr(line, " NFE, ")) {
            line[strcspn(line, "\n")] = 0;
            snprintf(msg, n, "%s", line);
        }
    }
    fclose(f);
}

static flash_status same_bytes(const char *a, const char *b, bool *same, flash_error *err)
{
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    flash_status st = flash_read_file(a, &x, &nx, err);
    if (!st) st = flash_read_file(b, &y, &ny, err);
    *same = !st && nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return st;
}

/* Keeps the first bank as DIR/noise_bank*.npy, checks the others against it
 * and removes the run's copy. */
static flash_status check_bank(const sweep *S, const char *dir, flash_error *err)
{
    static const char *const names[] = {"noise_bank.npy", "noise_bank.labels.npy"};
    for (int i = 0; i < 2; i++) {
        char mine[4400], shared[4400];
        snprintf(mine, sizeof mine, "%s/%s", dir, names[i]);
        snprintf(shared, sizeof shared, "%s/%s", S->out, names[i]);
        if (!exists(mine)) continue;
        flash_status st;
        if (!exists(shared)) {
            char *b = NULL;
            size_t n = 0;
            if ((st = flash_read_file(mine, &b, &n, err))) return st;
            st = flash_write_file_atomic(shared, b, n, err);
            free(b);
            if (st) return st;
        } else {
            bool same;
            if ((st = same_bytes(mine, shared, &same, err))) return st;
            if (!same)
                return flash_error_set(err, FLASH_ERR_RUNTIME,
                                       "%s differs from the sweep's %s: a variant changed run.samples or run.noise_seed",
                                       mine, shared);
        }
        unlink(mine);
    }
    return FLASH_OK;
}

static void finish(sweep *S, sw_run *r, int status)
{
    char dir[4300], path[4400], msg[1200];
    run_dir(S, r, dir, sizeof dir);
    flash_error err = {0};
    flash_status st = FLASH_OK;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        if (!(st = check_bank(S, dir, &err))) {
            snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_DONE);
            snprintf(msg, sizeof msg, "%s\n", r->id);
            st = flash_write_file_atomic(path, msg, strlen(msg), &err);
        }
        if (!st) {
            r->state = 2;
            fprintf(stderr, "flash sweep: %s done\n", r->id);
            return;
        }
        snprintf(msg, sizeof msg, "%s", err.msg);
    } else if (WIFSIGNALED(status)) {
        snprintf(msg, sizeof msg, "killed by signal %d", WTERMSIG(status));
    } else {
        last_error(dir, msg, sizeof msg);
    }
    r->state = 3;
    fprintf(stderr, "flash sweep: %s failed: %s\n", r->id, msg);
    size_t n = strlen(msg);
    msg[n] = '\n';
    snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_FAILED);
    flash_error e2 = {0};
    if (flash_write_file_atomic(path, msg, n + 1, &e2)) fprintf(stderr, "flash sweep: %s\n", e2.msg);
}

/* A run whose `flash run` trains a teacher waits while another run of the
 * same teacher runs and none has finished: the first one trains it, the
 * others then find it complete. */
static bool stage_free(const sweep *S, const sw_run *r)
{
    if (!r->stage[0]) return true;
    bool busy = false;
    for (int i = 0; i < S->n_runs; i++) {
        const sw_run *o = &S->runs[i];
        if (o == r || strcmp(o->stage, r->stage)) continue;
        if (o->state == 2 || o->state == 4) return true;
        if (o->state == 1) busy = true;
    }
    return !busy;
}

/* Runs the planned runs, `jobs` at a time. Returns 1 when interrupted. */
static int execute(sweep *S, int jobs, int skipped)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int next = 0, running = 0, stopping = 0;
    double t0 = flash_now();
    for (;;) {
        while (!g_stop && running < jobs) {
            sw_run *r = NULL;
            for (int i = 0; i < S->n_runs && !r; i++)
                if (S->runs[i].state == 0 && stage_free(S, &S->runs[i])) r = &S->runs[i];
            if (!r) break;
            next++;
            if ((r->pid = spawn(S, r)) < 0) {
                r->state = 3;
                fprintf(stderr, "flash sweep: %s: fork failed: %s\n", r->id, strerror(errno));
                continue;
            }
            r->state = 1;
            running++;
            fprintf(stderr, "flash sweep: %s started (%d/%d)\n", r->id, next + skipped, S->n_runs);
        }
        if (running == 0) break;
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        const int werr = errno;
        if (g_stop && !stopping) {
            stopping = 1;
            for (int i = 0; i < S->n_runs; i++)
                if (S->runs[i].state == 1) kill(S->runs[i].pid, SIGTERM);
        }
        if (pid < 0) {
            if (werr == ECHILD) break;
            continue;
        }
        for (int i = 0; i < S->n_runs; i++) {
            sw_run *r = &S->runs[i];
            if (r->state == 1 && r->pid == pid) {
                running--;
                if (g_stop && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                    r->state = 0; /* interrupted: resumable, not failed */
                else
                    finish(S, r, status);
            }
        }
    }
    fprintf(stderr, "flash sweep: %.1f s\n", flash_now() - t0);
    return g_stop ? 1 : 0;
}

/* `flash check` on the resolved config (every component created once), as
 * a child process with the config in a temporary file. A component that
 * needs the teacher's weights cannot be checked before a teacher stage
 * (teacher_train) has written them: that is a note, not a failure. */
static int check_config(const sweep *S, const flash_cfg *cfg, const char *id)
{
    const char *tmpdir = getenv("TMPDIR");
    char path[4096], log[4200];
    snprintf(path, sizeof path, "%s/flash-sweep-XXXXXX.yaml", tmpdir && tmpdir[0] ? tmpdir : "/tmp");
    int fd = mkstemps(path, 5);
    snprintf(log, sizeof log, "%s.log", path);
    char *yaml = fd >= 0 ? flash_cfg_to_yaml(cfg) : NULL;
    int ok = 0;
    if (yaml && write(fd, yaml, strlen(yaml)) == (ssize_t)strlen(yaml)) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", O_WRONLY), e = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (null >= 0) dup2(null, 1);
            if (e >= 0) dup2(e, 2);
            execl(S->self, "flash", "check", path, (char *)NULL);
            _exit(127);
        }
        int status = 0;
        ok = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        char *msg = NULL;
        size_t n = 0;
        flash_error e2 = {0};
        if (!ok && flash_read_file(log, &msg, &n, &e2) == FLASH_OK) {
            const char *ck = flash_cfg_scalar(flash_cfg_get(cfg, "teacher_checkpoint"));
            if (flash_cfg_get(cfg, "teacher_train") && ck && !exists(ck) && strstr(msg, "no teacher checkpoint")) {
                fprintf(stderr, "flash sweep: run '%s': checked up to the teacher's weights (%s: written by its "
                                "teacher_train stage)\n", id, ck);
                ok = 1;
            } else {
                fprintf(stderr, "%sflash sweep: run '%s': its resolved config does not check\n", msg, id);
            }
        }
        free(msg);
    } else {
        fprintf(stderr, "flash sweep: cannot write a temporary config in %s: %s\n", path, strerror(errno));
    }
    free(yaml);
    if (fd >= 0) {
        close(fd);
        unlink(path);
        unlink(log);
    }
    return ok;
}

/* shell single quotes */
static void sq(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++)
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    fputc('\'', f);
}

static flash_status emit_slurm(const sweep *S, flash_error *err)
{
    char dir[4300], path[4400], cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return flash_error_set(err, FLASH_ERR_IO, "getcwd: %s", strerror(errno));
    snprintf(dir, sizeof dir, "%s/slurm", S->out);
    flash_status st = flash_mkdirs(dir, err);
    if (st) return st;
    snprintf(path, sizeof path, "%s/commands.txt", dir);
    flash_atomic_file af;
    if ((st = flash_atomic_open(&af, path, err))) return st;
    for (int i = 0; i < S->n_runs; i++) {
        fputs("cd ", af.f);
        sq(af.f, cwd);
        fputs(" && ", af.f);
        sq(af.f, S->self);
        fputs(" sweep ", af.f);
        sq(af.f, S->path);
        fputs(" --out ", af.f);
        sq(af.f, S->out);
        fprintf(af.f, " --resume --run %s\n", S->runs[i].id);
    }
    if ((st = flash_atomic_commit(&af, err))) return st;
    snprintf(path, sizeof path, "%s/sweep.sbatch", dir);
    if ((st = flash_atomic_open(&af, path, err))) return st;
    fprintf(af.f,
            "#!/bin/bash\n"
            "# One array task per run of %s; each runs `flash sweep --run ID`, which\n"
            "# writes that run's folder only. Collect with: flash report %s\n"
            "#SBATCH --job-name=flash-sweep\n"
            "#SBATCH --array=0-%d\n"
            "#SBATCH --cpus-per-task=%d\n"
            "#SBATCH --output=%s/slurm/%%A_%%a.log\n"
            "set -euo pipefail\n"
            "line=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" ",
            S->path, S->out, S->n_runs - 1, S->threads_per_job, S->out);
    snprintf(path, sizeof path, "%s/commands.txt", dir);
    sq(af.f, path);
    fputs(")\neval \"$line\"\n", af.f);
    return flash_atomic_commit(&af, err);
}

int flash_cmd_sweep(int argc, char **argv)
{
    if (flash_cli_wants_help(argc, argv)) {
        fputs(help, stdout);
        return FLASH_EXIT_OK;
    }
    sweep *S = calloc(1, sizeof *S);
    if (!S) return FLASH_EXIT_FAIL;
    const char *emit = NULL, *only = NULL;
    long jobs = 1;
    bool resume = false, dry = false;
    int rc = FLASH_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--resume") == 0) {
            resume = true;
        } else if (strcmp(o, "--dry-run") == 0) {
            dry = true;
        } else if (!strcmp(o, "--out") || !strcmp(o, "--jobs") || !strcmp(o, "--emit") || !strcmp(o, "--run")) {
            if (i + 1 >= argc) {
                rc = usage("%s needs a value", o);
                goto out;
            }
            const char *a = argv[++i];
            if (o[2] == 'o') S->out = a;
            if (o[2] == 'e') emit = a;
            if (o[2] == 'r') only = a;
            if (o[2] == 'j') {
                char *end;
                jobs = strtol(a, &end, 10);
                if (*end || jobs < 1 || jobs > 256) {
                    rc = usage("--jobs: expected 1..256, got '%s'", a);
                    goto out;
                }
            }
        } else if (o[0] == '-' && o[1]) {
            rc = usage("unknown option '%s'", o);
            goto out;
        } else if (S->path) {
            rc = usage("unexpected argument '%s'", o);
            goto out;
        } else {
            S->path = o;
        }
    }
    if (!S->path) {
        rc = usage("missing SWEEP.yaml%s", "");
        goto out;
    }
    if (emit && strcmp(emit, "slurm") != 0) {
        rc = usage("--emit: only 'slurm' is known, got '%s'", emit);
        goto out;
    }
    flash_error err = {0};
    flash_status st = flash_cfg_load(S->path, &S->root, &err);
    char outbuf[4200];
    if (!st) st = parse_sweep(S, &err);
    if (!st && !S->out) {
        const char *o = NULL;
        if (!(st = flash_cfg_str(S->root, "out", NULL, &o, &err))) {
            if (!o) {
                const char *b = strrchr(S->path, '/');
                b = b ? b + 1 : S->path;
                snprintf(outbuf, sizeof outbuf, "runs/sweep-%.*s", (int)strcspn(b, "."), b);
                o = outbuf;
            }
            S->out = o;
        }
    }
    if (!st) st = plan(S, &err);
    if (st) {
        rc = flash_cli_fail("sweep", &err);
        goto out;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    S->threads_per_job = (int)(ncpu > jobs ? ncpu / jobs : 1);
    ssize_t n = readlink("/proc/self/exe", S->self, sizeof S->self - 1);
    if (n <= 0) {
        fprintf(stderr, "flash sweep: cannot find the flash executable (/proc/self/exe)\n");
        rc = FLASH_EXIT_FAIL;
        goto out;
    }
    S->self[n] = 0;
    int sel = -1;
    if (only) {
        for (int i = 0; i < S->n_runs; i++)
            if (strcmp(S->runs[i].id, only) == 0) sel = i;
        if (sel < 0) {
            rc = usage("--run: no run named '%s' (see --dry-run)", only);
            goto out;
        }
    }
    if (dry) {
        for (int i = 0; i < S->n_runs; i++) {
            if (sel >= 0 && i != sel) continue;
            const sw_run *r = &S->runs[i];
            flash_cfg *cfg = NULL;
            entry_meta em[MAX_ENTRIES + MAX_LIST * 8];
            int n_em = 0;
            if ((st = resolve(S, r, &cfg, em, &n_em, &err))) {
                rc = flash_cli_fail("sweep", &err);
                goto out;
            }
            int ok = check_config(S, cfg, r->id);
            flash_cfg_free(cfg);
            if (!ok) {
                rc = FLASH_EXIT_USAGE;
                goto out;
            }
            printf("%-40s %s/runs/%s  config %s", r->id, S->out, r->id,
                   S->v[r->variant].config ? S->v[r->variant].config : S->base);
            if (r->seeded) printf("  seed %ld", r->seed);
            if (r->guided) printf("  guidance %g", r->guidance);
            printf("  variants:");
            for (int k = 0; k < n_em; k++) printf(" %s", em[k].name);
            putchar('\n');
        }
        printf("%d runs, %ld at once, %d threads each\n", S->n_runs, jobs, S->threads_per_job);
        goto out;
    }
    /* existing folders are only reused on request */
    int skipped = 0;
    for (int i = 0; i < S->n_runs; i++) {
        if (sel >= 0 && i != sel) {
            S->runs[i].state = 4;
            continue;
        }
        char dir[4300], path[4400];
        run_dir(S, &S->runs[i], dir, sizeof dir);
        snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_DONE);
        if (!resume && exists(dir)) {
            fprintf(stderr, "flash sweep: %s exists: pass --resume to continue the sweep, or choose another --out\n", dir);
            rc = FLASH_EXIT_USAGE;
            goto out;
        }
        if (resume && exists(path)) {
            S->runs[i].state = 4;
            skipped++;
        }
    }
    for (int i = 0; i < S->n_runs; i++)
        if ((sel < 0 || S->runs[i].state == 0) && (st = prepare(S, i, resume || emit, &err))) {
            rc = flash_cli_fail("sweep", &err);
            goto out;
        }
    if (emit) {
        if ((st = emit_slurm(S, &err))) {
            rc = flash_cli_fail("sweep", &err);
            goto out;
        }
        fprintf(stderr, "flash sweep: wrote %s/slurm/sweep.sbatch and commands.txt (%d runs); afterwards: flash report %s\n",
                S->out, S->n_runs, S->out);
        goto out;
    }
    if (skipped) fprintf(stderr, "flash sweep: %d of %d runs already complete\n", skipped, S->n_runs);
    int interrupted = execute(S, (int)jobs, skipped);
    int failed = 0;
    for (int i = 0; i < S->n_runs; i++) failed += S->runs[i].state == 3;
    if (interrupted) {
        fprintf(stderr, "flash sweep: interrupted; continue with --resume\n");
        rc = FLASH_EXIT_FAIL;
        goto out;
    }
    if (sel < 0 && (st = flash_report_write(S->out, S->baseline, NULL, 1, &err))) {
        rc = flash_cli_fail("sweep", &err);
        goto out;
    }
    if (failed) {
        fprintf(stderr, "flash sweep: %d run(s) failed (see their FAILED files)\n", failed);
        rc = FLASH_EXIT_FAIL;
    }
out:
    for (int i = 0; i < S->n_v; i++) free(S->v[i].config);
    free(S->base);
    free(S->runs);
    flash_cfg_free(S->root);
    free(S);
    return rc;
}
