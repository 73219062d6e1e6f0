/* Sweep planning: the sweep file read and checked, expanded into runs (the
 * grid of its axes or its explicit `runs:`), and each run's resolved
 * config (see sweep_internal.h). */
#include "pipeline/sweep_internal.h"
#include "flash/pipeline.h"
#include "flash/schema.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sweep_say(const sweep *S, const char *fmt, ...)
{
    if (!S->log) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("flash sweep: ", S->log);
    vfprintf(S->log, fmt, ap);
    va_end(ap);
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

/* A sweep's axes (seeds, steps) are counts and seeds: never negative. */
static flash_status read_longs(const flash_cfg *map, const char *key, long *out, int *n, flash_error *err)
{
    size_t k = 0;
    flash_status st = flash_cfg_ints(map, key, out, MAX_LIST, &k, err);
    *n = (int)k;
    for (size_t i = 0; !st && i < k; i++)
        if (out[i] < 0 || (!strcmp(key, "steps") && out[i] < 1))
            st = flash_cfg_error(flash_cfg_get(map, key), err, "%s[%zu] is %ld: expected %s", key, i, out[i],
                                 !strcmp(key, "steps") ? "a step count >= 1" : "a seed >= 0");
    return st;
}

/* snapshots: training steps, increasing (train.snapshots checks them
 * against each run's train.steps) */
static flash_status read_snapshots(const flash_cfg *map, long *out, int *n, flash_error *err)
{
    size_t k = 0;
    flash_status st = flash_cfg_ints(map, "snapshots", out, MAX_LIST, &k, err);
    *n = (int)k;
    for (size_t i = 0; !st && i < k; i++)
        if (out[i] < 1 || (i > 0 && out[i] <= out[i - 1]))
            st = flash_cfg_error(flash_cfg_at(flash_cfg_get(map, "snapshots"), i), err,
                                 "snapshots[%zu] is %ld: expected increasing training steps >= 1", i, out[i]);
    return st;
}

static flash_status parse_sweep(sweep *S, flash_error *err)
{
    flash_status st;
    const flash_cfg *r = S->root;
    const char *base = NULL;
    if ((st = flash_cfg_check_keys(r, "sweep", flash_schema_keys("sweep"), err)) || (st = flash_cfg_str(r, "base", NULL, &base, err)) ||
        (st = flash_cfg_str(r, "guidance_key", "strategy.target.guidance_scale", &S->guidance_key, err)) ||
        (st = flash_cfg_str(r, "baseline", NULL, &S->baseline, err)))
        return st;
    if (base && !(S->base = relative_to(S->path, base))) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    S->set = flash_cfg_get(r, "set");
    if ((st = check_strings(S->set, "set", err))) return st;
    if (flash_cfg_get(r, "seeds")) {
        if ((st = read_longs(r, "seeds", S->seeds, &S->n_seeds, err))) return st;
    }
    if (flash_cfg_get(r, "steps") && (st = read_longs(r, "steps", S->steps, &S->n_steps, err))) return st;
    if ((st = read_snapshots(r, S->snapshots, &S->n_snapshots, err))) return st;
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
        v->n_snapshots = -1;
        v->n_seeds = -1;
        if ((st = flash_cfg_check_keys(n, "variant", flash_schema_keys("sweep.variants"), err)) ||
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
        /* a variant's own training seeds: the rows that decide an ordering
         * at 3 seeds, the rest of a table at the sweep's */
        if (flash_cfg_get(n, "seeds")) {
            if (!v->seeded)
                return flash_cfg_error(flash_cfg_get(n, "seeds"), err, "seeds: variant '%s' is not seeded", v->name);
            if ((st = read_longs(n, "seeds", v->seeds, &v->n_seeds, err))) return st;
            if (v->n_seeds < 1) return flash_cfg_error(flash_cfg_get(n, "seeds"), err, "seeds: an empty list");
        }
        if (flash_cfg_get(n, "snapshots")) {
            if ((st = read_snapshots(n, v->snapshots, &v->n_snapshots, err))) return st;
            if (v->is_teacher && v->n_snapshots > 0)
                return flash_cfg_error(flash_cfg_get(n, "snapshots"), err, "snapshots: a teacher variant trains nothing");
        }
        if (v->resample) {
            if (flash_cfg_kind(v->resample) != FLASH_CFG_SEQ)
                return flash_cfg_error(v->resample, err, "resample: expected a list of {name, set}");
            if (v->is_teacher) return flash_cfg_error(v->resample, err, "resample: a teacher variant has no student");
            for (size_t k = 0; k < flash_cfg_len(v->resample); k++) {
                const flash_cfg *rs = flash_cfg_at(v->resample, k);
                const char *rn = NULL;
                if ((st = flash_cfg_check_keys(rs, "resample", flash_schema_keys("sweep.resample"), err)) ||
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
            if ((st = flash_cfg_check_keys(n, "run", flash_schema_keys("sweep.runs"), err)) || (st = flash_cfg_str(n, "variant", NULL, &vn, err)) ||
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
        const long *seeds = v->n_seeds >= 0 ? v->seeds : S->seeds;
        int n_seeds_v = v->n_seeds >= 0 ? v->n_seeds : S->n_seeds;
        int n_seeds = v->seeded && n_seeds_v ? n_seeds_v : 1;
        int n_g = S->n_guidance ? S->n_guidance : 1;
        for (int gi = 0; gi < n_groups; gi++)
            for (int si = 0; si < n_seeds; si++)
                for (int k = 0; k < n_g; k++) {
                    const long *st0 = v->per_step ? (v->share_steps ? steps : steps + gi) : NULL;
                    int ns = !v->per_step ? 0 : v->share_steps ? n_steps : 1;
                    if ((st = add_run(S, vi, st0, ns, v->seeded && n_seeds_v > 0, n_seeds_v ? seeds[si] : 0,
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
        /* located at the sweep file's line: a relative path in the value
         * names a file beside the sweep file, as in a config */
        const flash_cfg *item = flash_cfg_at(seq, i);
        flash_status st = flash_cfg_set_from(cfg, flash_cfg_scalar(item), item, err);
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

/* Appends YAML text (a block node) to f as an item of a block sequence. */
static void seq_item(FILE *f, const char *yaml)
{
    fputs("- ", f);
    for (const char *p = yaml; *p; p++) {
        fputc(*p, f);
        if (*p == '\n' && p[1]) fputs("  ", f);
    }
    if (!*yaml || yaml[strlen(yaml) - 1] != '\n') fputc('\n', f);
}

/* The training budgets of a student variant's run: train.snapshots set to
 * the variant's (else the sweep's) snapshots, and each entry that distils
 * a student (no `from:`) followed in run.variants by `<entry>_it<N>`, the
 * same entry (its `set:`, so its sampler) on the student of step N. */
static flash_status add_snapshots(const sweep *S, const sw_variant *v, const sw_run *r, flash_cfg *cfg,
                                  flash_error *err)
{
    const long *snaps = v->n_snapshots >= 0 ? v->snapshots : S->snapshots;
    const int n = v->n_snapshots >= 0 ? v->n_snapshots : S->n_snapshots;
    if (n < 1) return FLASH_OK;
    const flash_cfg *vars = flash_cfg_path(cfg, "run.variants");
    if (!vars || flash_cfg_kind(vars) != FLASH_CFG_SEQ) return FLASH_OK; /* said below */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    flash_status st = FLASH_OK;
    fputs("train.snapshots=[", f);
    for (int i = 0; i < n; i++) fprintf(f, "%s%ld", i ? ", " : "", snaps[i]);
    fputs("]", f);
    fclose(f);
    if (!text) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    st = flash_cfg_set(cfg, text, err);
    free(text);
    text = NULL;
    if (st) {
        flash_error_prefix(err, "run '%s'", r->id);
        return st;
    }
    vars = flash_cfg_path(cfg, "run.variants");
    if (!(f = open_memstream(&text, &len))) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    fputs("run.variants=\n", f);
    for (size_t i = 0; i < flash_cfg_len(vars) && !st; i++) {
        char *y = flash_cfg_to_yaml(flash_cfg_at(vars, i));
        if (!y) {
            st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
            break;
        }
        seq_item(f, y);
        free(y);
    }
    for (size_t i = 0; i < flash_cfg_len(vars) && !st; i++) {
        const flash_cfg *e = flash_cfg_at(vars, i);
        const char *name = flash_cfg_scalar(flash_cfg_get(e, "name"));
        const char *model = flash_cfg_scalar(flash_cfg_get(e, "model"));
        if (!name || (model && strcmp(model, "student")) || flash_cfg_get(e, "from") || flash_cfg_get(e, "snapshot"))
            continue;
        for (int k = 0; k < n && !st; k++) {
            flash_cfg *c = flash_cfg_clone(e);
            char a[200];
            snprintf(a, sizeof a, "name=%s_it%ld", name, snaps[k]);
            if (!c || (st = flash_cfg_set(c, a, err))) {
                if (!c) st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
                flash_cfg_free(c);
                break;
            }
            snprintf(a, sizeof a, "from=%s", name);
            if (!(st = flash_cfg_set(c, a, err))) {
                snprintf(a, sizeof a, "snapshot=%ld", snaps[k]);
                st = flash_cfg_set(c, a, err);
            }
            char *y = st ? NULL : flash_cfg_to_yaml(c);
            flash_cfg_free(c);
            if (!st && !y) st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
            if (st) break;
            seq_item(f, y);
            free(y);
        }
    }
    fclose(f);
    if (!st && !text) st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    if (!st) st = flash_cfg_set(cfg, text, err);
    free(text);
    if (st) flash_error_prefix(err, "run '%s': snapshots", r->id);
    return st;
}

/* The run's resolved config and its entries' methods. */
flash_status sweep_resolve(const sweep *S, const sw_run *r, flash_cfg **out, entry_meta *em, int *n_em,
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
    /* a relative path names a file beside the config that says it (the
     * reference checkpoints of configs/distill/base.yaml): made absolute
     * here, since the run's config is written elsewhere */
    if ((st = flash_cfg_absolute_paths(cfg, err))) goto fail;
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
    if (!v->is_teacher && (st = add_snapshots(S, v, r, cfg, err))) goto fail;
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
        const char *model = flash_cfg_scalar(flash_cfg_get(e, "model"));
        m->trains = (!model || strcmp(model, "student") == 0) && !flash_cfg_get(e, "from");
        flash_cfg *c = flash_cfg_clone(cfg);
        flash_error e2 = {0};
        m->nc = -1;
        m->batch = 0;
        if (c && apply_list(c, flash_cfg_get(e, "set"), &e2) == FLASH_OK) {
            const char *nc = flash_cfg_scalar(flash_cfg_path(c, "sampler.noise_correction"));
            if (nc) m->nc = strcmp(nc, "true") == 0;
            /* 64: the training loop's default (loop.c) */
            if (flash_cfg_int(flash_cfg_get(c, "train"), "batch_size", 64, &m->batch, &e2)) m->batch = 0;
        }
        flash_cfg_free(c);
    }
    *out = cfg;
    return FLASH_OK;
fail:
    flash_cfg_free(cfg);
    return st;
}


/* The tasks a launcher started this process as, and which one it is: the
 * variables comm.c reads, less SLURM_NTASKS, which a batch script has
 * before srun started anything. The sweep never joins their world (see
 * flash_sweep_execute): its `flash run` children do. */
static void launcher_task(int *tasks, int *task)
{
    static const char *const vars[][2] = {{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
                                          {"PMI_SIZE", "PMI_RANK"},
                                          {"MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"},
                                          {"SLURM_STEP_NUM_TASKS", "SLURM_PROCID"}};
    *tasks = 1;
    *task = 0;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *n = getenv(vars[i][0]), *r = getenv(vars[i][1]);
        if (n && *n) {
            *tasks = atoi(n) > 1 ? atoi(n) : 1;
            *task = r && atoi(r) > 0 ? atoi(r) : 0;
            return;
        }
    }
}

flash_status flash_sweep_plan(const flash_sweep_opts *o, flash_sweep **out, flash_error *err)
{
    *out = NULL;
    /* the fields after `log` came later: a shorter struct has none */
    if (!o || o->size < offsetof(flash_sweep_opts, ranks) || !o->path || !o->flash_exe || o->jobs < 1)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_sweep_plan: incomplete options");
    const bool slurm_opts = o->size >= sizeof *o;
    if (slurm_opts && (o->ranks < 0 || o->gpus_per_rank < 0))
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_sweep_plan: ranks %d, gpus_per_rank %d", o->ranks,
                               o->gpus_per_rank);
    sweep *S = calloc(1, sizeof *S);
    if (!S) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    S->path = o->path;
    S->out = o->out_dir;
    S->jobs = o->jobs;
    S->resume = o->resume;
    S->log = o->log;
    S->only = -1;
    S->ranks = slurm_opts && o->ranks > 1 ? o->ranks : 1;
    S->gpus_per_rank = slurm_opts ? o->gpus_per_rank : 0;
    launcher_task(&S->tasks, &S->task);
    /* task 0 speaks for the run; the others' errors still come back */
    if (S->task > 0) S->log = NULL;
    snprintf(S->self, sizeof S->self, "%s", o->flash_exe);
    flash_status st = flash_cfg_load(S->path, &S->root, err);
    if (!st) st = parse_sweep(S, err);
    if (!st && !S->out) {
        const char *dir = NULL;
        if (!(st = flash_cfg_str(S->root, "out", NULL, &dir, err))) {
            if (!dir) {
                const char *b = strrchr(S->path, '/');
                b = b ? b + 1 : S->path;
                snprintf(S->outbuf, sizeof S->outbuf, "runs/sweep-%.*s", (int)strcspn(b, "."), b);
                dir = S->outbuf;
            }
            S->out = dir;
        }
    }
    if (!st) st = plan(S, err);
    if (st) {
        flash_sweep_free(S);
        return st;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    S->threads_per_job = (int)(ncpu > S->jobs ? ncpu / S->jobs : 1);
    if (o->only) {
        for (int i = 0; i < S->n_runs; i++)
            if (strcmp(S->runs[i].id, o->only) == 0) S->only = i;
        if (S->only < 0) {
            flash_sweep_free(S);
            return flash_error_set(err, FLASH_ERR_USAGE, "--run: no run named '%s' (see --dry-run)", o->only);
        }
    }
    *out = S;
    return FLASH_OK;
}

const char *flash_sweep_out_dir(const flash_sweep *s)
{
    return s->out;
}

void flash_sweep_free(flash_sweep *S)
{
    if (!S) return;
    for (int i = 0; i < S->n_v; i++) free(S->v[i].config);
    free(S->base);
    free(S->runs);
    flash_cfg_free(S->root);
    free(S);
}
