/* flash_run_pipeline (pipeline.h): a whole comparison. The teacher
 * (trained first, loaded, or analytic), each distilled variant
 * (flash_distill_run into DIR/<variant>/, skipped when its checkpoint is
 * complete), sampling every variant on one fixed noise bank, the config's
 * metrics, DIR/results.json, DIR/samples/<variant>.npy (with .labels.npy
 * for class-conditional models), plots and a table. */
#include "flash/pipeline.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "flash/comm.h"
#include "flash/diffusion.h"
#include "flash/schema.h"
#include "flash/trainer.h"
#include "pipeline/provenance.h"

#define MAX_VARIANTS 64
#define MAX_VARIANT_SETS 32


typedef struct result {
    char name[64];
    char model[16];   /* "teacher" or "student" */
    char sampler[32];
    char run[64];   /* the variant whose distillation it samples (its folder), "" for a teacher */
    char from[64];  /* its `from:`, or "" */
    long iterations; /* the student's training iterations (train.steps or its snapshot), 0 for a teacher */
    bool snapshot;   /* sampled from RUN_DIR/snapshot_<iterations>.safetensors */
    int steps;
    double nfe, seconds, distill_seconds;
    flash_metric_result metrics;
    int done;
} result;

typedef struct run_ctx {
    const char *out;
    const char *device; /* the pipeline's top-level device */
    const flash_cfg *root;
    flash_registry *registry;
    FILE *log;
    long n, batch;
    long noise_seed;
    bool plots;
    float *xT;
    int *labels;
    float *xs;
    size_t per;
    flash_model_info mi;
    flash_plugin_files plugins; /* of the pipeline as given, for results.json */
    result res[MAX_VARIANTS];
    int n_res;
    /* data parallel (comm.h): flash_sample_bank shares the noise bank out
     * over the ranks; rank 0 alone writes and reports */
    int rank;
} run_ctx;

/* Does this process write the run folder? Rank 0 of several, or the only one. */
static bool writes(const run_ctx *R) { return R->rank == 0; }

/* A progress line on the log stream, as "flash run: ...". */
static void say(const run_ctx *R, const char *fmt, ...) FLASH_PRINTF(2, 3);
static void say(const run_ctx *R, const char *fmt, ...)
{
    if (!R->log || R->rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("flash run: ", R->log);
    vfprintf(R->log, fmt, ap);
    fputc('\n', R->log);
    va_end(ap);
}

/* The variant's config: a copy of the pipeline with its `set:` applied. */
static flash_status variant_config(const run_ctx *R, const flash_cfg *v, flash_cfg **out, flash_error *err)
{
    flash_cfg *cfg = flash_cfg_clone(R->root);
    if (!cfg) return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: out of memory");
    const flash_cfg *sets = flash_cfg_get(v, "set");
    if (sets) {
        if (flash_cfg_kind(sets) != FLASH_CFG_SEQ) {
            flash_cfg_free(cfg);
            return flash_cfg_error(sets, err, "set: expected a list of \"key=value\" strings");
        }
        for (size_t i = 0; i < flash_cfg_len(sets); i++) {
            const char *a = flash_cfg_scalar(flash_cfg_at(sets, i));
            flash_status st = a ? flash_cfg_set(cfg, a, err)
                                : flash_cfg_error(flash_cfg_at(sets, i), err, "expected a \"key=value\" string");
            if (st) {
                char where[128];
                flash_error_prefix(err, "%s", flash_cfg_where(flash_cfg_at(sets, i), where, sizeof where));
                flash_cfg_free(cfg);
                return st;
            }
        }
    }
    *out = cfg;
    return FLASH_OK;
}

/* cfg.key := the YAML of node (a copy of another part of the config). */
static flash_status put_node(flash_cfg *cfg, const char *key, const flash_cfg *node, flash_error *err)
{
    char *yaml = flash_cfg_to_yaml(node);
    size_t n = yaml ? strlen(key) + strlen(yaml) + 2 : 0;
    char *a = yaml ? malloc(n) : NULL;
    if (!a) {
        free(yaml);
        return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: out of memory");
    }
    snprintf(a, n, "%s=%s", key, yaml);
    flash_status st = flash_cfg_set(cfg, a, err);
    free(a);
    free(yaml);
    return st;
}

/* The teacher stage: with `teacher_train: {strategy: ..., train: ...}` and
 * no checkpoint at `teacher_checkpoint` yet, trains the `teacher` model on
 * the pipeline's dataset and schedule with flash train's loop (trainer.h),
 * writing the checkpoint there (its directory is the training run's; an
 * interrupted training resumes). Without `teacher_train` the checkpoint is
 * only loaded, by each variant. */
static flash_status teacher_stage(run_ctx *R, flash_error *err)
{
    const flash_cfg *root = R->root, *tt = flash_cfg_get(root, "teacher_train");
    if (!tt) return FLASH_OK;
    flash_status st = flash_cfg_check_keys(tt, "teacher_train", flash_schema_keys("teacher_train"), err);
    if (st) return st;
    const char *ck = NULL;
    if ((st = flash_cfg_str(root, "teacher_checkpoint", NULL, &ck, err))) return st;
    if (!ck) return flash_cfg_error(tt, err, "teacher_train: needs `teacher_checkpoint:`, where the teacher is written");
    const char *slash = strrchr(ck, '/');
    const char *base = slash ? slash + 1 : ck;
    if (strcmp(base, FLASH_RUN_CHECKPOINT) != 0)
        return flash_cfg_error(flash_cfg_get(root, "teacher_checkpoint"), err,
                               "teacher_train: the checkpoint must be named %s (it is the training run's)",
                               FLASH_RUN_CHECKPOINT);
    if (!flash_cfg_get(tt, "strategy"))
        return flash_cfg_error(tt, err, "teacher_train: needs a `strategy:` (e.g. {plugin: denoise})");
    struct stat sb;
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - ck) : 1, slash ? ck : ".");
    char state[4200];
    snprintf(state, sizeof state, "%s/%s", dir, FLASH_RUN_METRICS);
    const bool have = stat(ck, &sb) == 0;
    if (have && stat(state, &sb) != 0) return FLASH_OK; /* a teacher from elsewhere: load it */
    flash_cfg *tc = flash_cfg_clone(root);
    if (!tc) return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: out of memory");
    if (!(st = put_node(tc, "model", flash_cfg_get(root, "teacher"), err)) &&
        !(st = put_node(tc, "strategy", flash_cfg_get(tt, "strategy"), err)) &&
        !(st = (flash_cfg_get(tt, "train") ? put_node(tc, "train", flash_cfg_get(tt, "train"), err) : FLASH_OK))) {
        flash_train_opts o = {.size = sizeof o, .root = tc, .registry = R->registry, .run_dir = dir, .resume = have,
                              .progress = true};
        say(R, "training the teacher into %s", dir);
        char record[4200];
        snprintf(record, sizeof record, "%s/%s", dir, FLASH_RUN_CONFIG);
        if (!(st = flash_mkdirs(dir, err)) &&
            !(st = writes(R) ? flash_pipeline_write_config(record, tc, R->registry, err) : FLASH_OK))
            st = flash_train_run(&o, err);
        if (st) flash_error_prefix(err, "teacher_train");
    }
    flash_cfg_free(tc);
    return st;
}

/* The run's device, checked once with a context so an unusable device
 * stops the run before anything is trained. */
static flash_status run_device(run_ctx *R, flash_error *err)
{
    flash_ctx *probe = NULL;
    flash_status st = flash_pipeline_device(R->root, (size_t)1 << 16, &R->device, &probe, err);
    if (st) return st;
    flash_ctx_destroy(probe);
    return FLASH_OK;
}

static flash_status make_bank(run_ctx *R, flash_error *err)
{
    const flash_cfg *root = R->root;
    long seed;
    flash_status st = flash_cfg_int(root, "seed", 0, &seed, err);
    if (st) return st;
    flash_env env = {.size = sizeof env, .registry = R->registry, .seed = (uint64_t)seed, .root = root};
    flash_instance teacher = {0};
    const flash_cfg *slot = flash_cfg_get(root, "teacher");
    if (!slot) return flash_cfg_error(root, err, "flash run: the pipeline needs a 'teacher:' slot");
    if ((st = flash_instance_create(&env, FLASH_KIND_MODEL, slot, &teacher, err))) return st;
    FLASH_API(&teacher, flash_model_api)->info(teacher.self, &R->mi);
    flash_instance_destroy(&teacher);
    R->per = 1;
    for (int j = 0; j < R->mi.ndim; j++) R->per *= (size_t)R->mi.shape[j];
    R->xT = malloc((size_t)R->n * R->per * sizeof *R->xT);
    R->xs = malloc((size_t)R->n * R->per * sizeof *R->xs);
    if (!R->xT || !R->xs) return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: out of memory for the noise bank");
    flash_rng rng;
    flash_rng_seed_stream(&rng, (uint64_t)R->noise_seed, 1);
    flash_rng_fill_normal(&rng, R->xT, (size_t)R->n * R->per);
    if (R->mi.num_classes > 0) {
        if (!(R->labels = malloc((size_t)R->n * sizeof *R->labels)))
            return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: out of memory for the labels");
        flash_rng_seed_stream(&rng, (uint64_t)R->noise_seed, 2);
        for (long i = 0; i < R->n; i++) R->labels[i] = (int)flash_rng_below(&rng, (uint64_t)R->mi.num_classes);
    }
    if (!writes(R)) return FLASH_OK;
    char path[4200];
    int64_t shape[4] = {R->n, R->mi.shape[0], R->mi.shape[1], R->mi.shape[2]};
    snprintf(path, sizeof path, "%s/noise_bank.npy", R->out);
    if ((st = flash_npy_write(path, FLASH_F32, 1 + R->mi.ndim, shape, R->xT, err))) return st;
    if (R->labels) {
        int64_t *l64 = malloc((size_t)R->n * sizeof *l64);
        if (!l64) return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: out of memory");
        for (long i = 0; i < R->n; i++) l64[i] = R->labels[i];
        snprintf(path, sizeof path, "%s/noise_bank.labels.npy", R->out);
        st = flash_npy_write(path, FLASH_I64, 1, shape, l64, err);
        free(l64);
    }
    return st;
}

/* Samples the whole bank with (model, sampler) into R->xs. */
static flash_status sample_bank(run_ctx *R, flash_instance *sched, flash_instance *model, flash_instance *sampler,
                                const char *device, result *res, flash_error *err)
{
    flash_denoiser den = {0};
    flash_status st = flash_denoiser_init(&den, model, sched, err);
    if (st) return st;
    /* the model's weights are on `device` already: noise goes in and
     * samples come out batch by batch */
    flash_ctx *c = flash_ctx_create_on(device, (size_t)64 << 20, err);
    if (!c) {
        flash_denoiser_release(&den);
        flash_error_prefix(err, "variant '%s'", res->name);
        return err->status ? err->status : FLASH_ERR_NOMEM;
    }
    const flash_sampler_api *sapi = FLASH_API(sampler, flash_sampler_api);
    double ts[FLASH_MAX_STEPS];
    res->steps = sapi->timesteps(sampler->self, flash_schedule_T(sched), ts, FLASH_MAX_STEPS);
    if (res->steps < 1) {
        flash_ctx_destroy(c);
        flash_denoiser_release(&den);
        return flash_error_set(err, FLASH_ERR_CONFIG,
                               "variant '%s': sampler '%s' lays out no valid timesteps on the schedule's %d training "
                               "steps (steps, timestep_spacing, steps_offset or timesteps)",
                               res->name, sampler->comp->name, flash_schedule_T(sched));
    }
    long batches = 0;
    double t0 = flash_now();
    st = flash_sample_bank(&den, sampler, c, R->xT, R->labels, R->n, R->batch, (uint64_t)R->noise_seed, R->xs,
                           &batches, err);
    if (st) flash_error_prefix(err, "variant '%s'", res->name);
    res->seconds = flash_now() - t0;
    res->nfe = batches ? (double)den.nfe / (double)batches : 0;
    flash_ctx_destroy(c);
    flash_denoiser_release(&den);
    return st;
}

static flash_status evaluate(run_ctx *R, const flash_instance *density_model, const char *device, result *res,
                             flash_error *err)
{
    char path[4200];
    int64_t shape[4] = {R->n, R->mi.shape[0], R->mi.shape[1], R->mi.shape[2]};
    snprintf(path, sizeof path, "%s/samples/%s.npy", R->out, res->name);
    flash_status st = writes(R) ? flash_npy_write(path, FLASH_F32, 1 + R->mi.ndim, shape, R->xs, err) : FLASH_OK;
    if (st) return st;
    if (R->labels && writes(R)) {
        int64_t *l64 = malloc((size_t)R->n * sizeof *l64);
        if (!l64) return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: out of memory");
        for (long i = 0; i < R->n; i++) l64[i] = R->labels[i];
        snprintf(path, sizeof path, "%s/samples/%s.labels.npy", R->out, res->name);
        st = flash_npy_write(path, FLASH_I64, 1, shape, l64, err);
        free(l64);
        if (st) return st;
    }
    if (!writes(R)) {
        /* no files; the metrics below are every rank's to compute alike */
    } else if (R->plots && R->mi.ndim == 1 && R->mi.shape[0] == 2) {
        snprintf(path, sizeof path, "%s/plots/%s.png", R->out, res->name);
        if ((st = flash_png_scatter(path, R->xs, R->n, density_model, err))) return st;
    } else if (R->plots && R->mi.ndim == 3) {
        /* the first 100 images, 10 per row (with 10 classes: a row per
         * class position of the noise bank) */
        const int k = R->n < 100 ? (int)R->n : 100;
        snprintf(path, sizeof path, "%s/plots/%s.png", R->out, res->name);
        if ((st = flash_png_grid(path, R->xs, k, R->mi.shape[0], R->mi.shape[1], R->mi.shape[2], 10, err))) return st;
    }
    const flash_cfg *metrics = flash_cfg_get(R->root, "metrics");
    if (!metrics) return FLASH_OK;
    if (flash_cfg_kind(metrics) != FLASH_CFG_SEQ)
        return flash_cfg_error(metrics, err, "metrics: expected a list of metric slots");
    long seed;
    if ((st = flash_cfg_int(R->root, "seed", 0, &seed, err))) return st;
    /* samples stay on the host (the metric API); networks the metrics run
     * (an evaluator) live on the variant's device */
    flash_env env = {.size = sizeof env, .registry = R->registry, .seed = (uint64_t)seed, .root = R->root,
                     .device = device};
    int tshape[FLASH_MAX_DIMS] = {(int)R->n};
    for (int j = 0; j < R->mi.ndim; j++) tshape[1 + j] = R->mi.shape[j];
    flash_tensor *t = flash_tensor_alloc(1 + R->mi.ndim, tshape);
    if (!t) return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: out of memory");
    flash_ctx *c = flash_ctx_create_on(device, (size_t)16 << 20, err);
    if (!c) {
        flash_tensor_free(t);
        return err->status ? err->status : FLASH_ERR_NOMEM;
    }
    memcpy(t->data, R->xs, (size_t)R->n * R->per * sizeof(float));
    for (size_t i = 0; i < flash_cfg_len(metrics) && !st; i++) {
        flash_instance m = {0};
        if ((st = flash_instance_create(&env, FLASH_KIND_METRIC, flash_cfg_at(metrics, i), &m, err))) break;
        st = FLASH_API(&m, flash_metric_api)->compute(m.self, c, t, R->labels, &res->metrics, err);
        if (st) flash_error_prefix(err, "variant '%s': metric '%s'", res->name, m.comp->name);
        flash_instance_destroy(&m);
    }
    flash_ctx_destroy(c);
    flash_tensor_free(t);
    return st;
}

static result *find_result(run_ctx *R, const char *name)
{
    for (int i = 0; i < R->n_res; i++)
        if (strcmp(R->res[i].name, name) == 0) return &R->res[i];
    return NULL;
}

/* The "# plugin HASH PATH" line of a config record that names path (from
 * its hash on), or NULL. */
static const char *plugin_line(const char *text, const char *path)
{
    const size_t pl = strlen(FLASH_CONFIG_RECORD_PLUGIN), n = strlen(path);
    for (const char *l = text; l && l[0] == '#'; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, FLASH_CONFIG_RECORD_PLUGIN, pl) == 0 && strlen(l + pl) > 17 &&
            strncmp(l + pl + 17, path, n) == 0 && (l[pl + 17 + n] == '\n' || l[pl + 17 + n] == '\0'))
            return l + pl;
    return NULL;
}

/* Why a variant's recorded plugin files (old, a config record) differ from
 * the present ones (pf), into why; false when they are the same files with
 * the same bytes. */
static bool plugins_differ(const char *old, const flash_plugin_files *pf, char *why, size_t size)
{
    size_t n_old = 0;
    const size_t pl = strlen(FLASH_CONFIG_RECORD_PLUGIN);
    for (const char *l = old; l && l[0] == '#'; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        n_old += strncmp(l, FLASH_CONFIG_RECORD_PLUGIN, pl) == 0;
    if (n_old == 0 && pf->n > 0) {
        snprintf(why, size, "records no plugin files (it was written before flash recorded them)");
        return true;
    }
    for (size_t i = 0; i < pf->n; i++) {
        char hash[17];
        snprintf(hash, sizeof hash, "%016" PRIx64, pf->hash[i]);
        const char *l = plugin_line(old, pf->path[i]);
        if (!l) {
            snprintf(why, size, "was distilled without plugin file %s", pf->path[i]);
            return true;
        }
        if (strncmp(l, hash, 16) != 0) {
            snprintf(why, size, "was distilled by another build of plugin %s (FNV-1a %.16s then, %s now: rebuilt)",
                     pf->path[i], l, hash);
            return true;
        }
    }
    if (n_old != pf->n) {
        snprintf(why, size, "was distilled with plugin files this run does not use");
        return true;
    }
    return false;
}

/* A variant's run directory belongs to one config and one build of its
 * plugins: DIR/<variant>/config.yaml records both (the resolved config and
 * the content hash of each plugin file its components come from), and a
 * later run with a different config or a rebuilt plugin stops instead of
 * reusing (or resuming) a student distilled otherwise. */
static flash_status same_config(const run_ctx *R, const flash_cfg *cfg, const char *dir, const char *name,
                                flash_error *err)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, FLASH_RUN_CONFIG);
    /* the comparison's own settings (samples, variants) are not the student's */
    flash_cfg *copy = flash_cfg_clone(cfg);
    flash_error e2 = {0};
    if (!copy || flash_cfg_set(copy, "run=null", &e2) != FLASH_OK) {
        flash_cfg_free(copy);
        return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: cannot serialise the config");
    }
    flash_plugin_files pf;
    flash_status st = flash_plugin_files_of(copy, R->registry, &pf, err);
    if (st) {
        flash_cfg_free(copy);
        return st;
    }
    char *record = flash_config_record(copy, &pf);
    flash_cfg_free(copy);
    if (!record) {
        flash_plugin_files_free(&pf);
        return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: cannot serialise the config");
    }
    struct stat sb;
    if (stat(path, &sb) == 0) {
        char *old = NULL, why[4500];
        size_t n = 0;
        if ((st = flash_read_file(path, &old, &n, err)) == FLASH_OK) {
            if (strcmp(flash_config_record_body(old), flash_config_record_body(record)) != 0)
                st = flash_error_set(err, FLASH_ERR_USAGE,
                                     "variant '%s': %s was distilled with a different config (%s); remove the "
                                     "directory or choose another --out",
                                     name, dir, path);
            else if (plugins_differ(old, &pf, why, sizeof why))
                st = flash_error_set(err, FLASH_ERR_USAGE,
                                     "variant '%s': the student in %s %s (%s); it is not reused: remove the "
                                     "directory or choose another --out",
                                     name, dir, why, path);
        }
        free(old);
    } else if ((st = flash_mkdirs(dir, err)) == FLASH_OK && writes(R)) {
        st = flash_write_file_atomic(path, record, strlen(record), err);
    }
    flash_plugin_files_free(&pf);
    free(record);
    return st;
}

static flash_status run_variant(run_ctx *R, const flash_cfg *v, flash_error *err)
{
    flash_status st;
    const char *name = NULL, *model = NULL, *from = NULL;
    long snapshot = 0;
    if ((st = flash_cfg_check_keys(v, "run variant", flash_schema_keys("run.variants"), err)) ||
        (st = flash_cfg_str(v, "name", NULL, &name, err)) || (st = flash_cfg_str(v, "model", "student", &model, err)) ||
        (st = flash_cfg_str(v, "from", NULL, &from, err)) || (st = flash_cfg_int(v, "snapshot", 0, &snapshot, err)))
        return st;
    if (!name || !name[0] || strlen(name) >= sizeof R->res[0].name || strpbrk(name, "/ \\."))
        return flash_cfg_error(v, err, "a variant needs a `name:` (a file name: no '/', ' ', '.'; under 64 characters)");
    if (find_result(R, name)) return flash_cfg_error(flash_cfg_get(v, "name"), err, "variant '%s' appears twice", name);
    if (strcmp(model, "teacher") != 0 && strcmp(model, "student") != 0)
        return flash_cfg_error(flash_cfg_get(v, "model"), err, "model: 'teacher' or 'student', got '%s'", model);
    const bool is_teacher = strcmp(model, "teacher") == 0;
    if (is_teacher && from) return flash_cfg_error(flash_cfg_get(v, "from"), err, "a teacher variant has no `from:`");
    if (is_teacher && flash_cfg_get(v, "snapshot"))
        return flash_cfg_error(flash_cfg_get(v, "snapshot"), err, "a teacher variant has no `snapshot:`");
    if (flash_cfg_get(v, "snapshot") && snapshot < 1)
        return flash_cfg_error(flash_cfg_get(v, "snapshot"), err, "snapshot: a training step >= 1 of train.snapshots, got %ld",
                               snapshot);
    const result *src = NULL;
    if (from && !(src = find_result(R, from)))
        return flash_cfg_error(flash_cfg_get(v, "from"), err, "`from: %s` names no earlier variant", from);
    if (src && strcmp(src->model, "student") != 0)
        return flash_cfg_error(flash_cfg_get(v, "from"), err, "`from: %s` is a teacher variant", from);
    if (R->n_res == MAX_VARIANTS) return flash_cfg_error(v, err, "at most %d variants", MAX_VARIANTS);
    result *res = &R->res[R->n_res];
    memset(res, 0, sizeof *res);
    snprintf(res->name, sizeof res->name, "%s", name);
    snprintf(res->model, sizeof res->model, "%s", model);
    if (src) snprintf(res->from, sizeof res->from, "%s", src->name);

    flash_cfg *cfg = NULL;
    if ((st = variant_config(R, v, &cfg, err))) return st;
    long seed;
    flash_instance sched = {0}, teacher = {0}, student = {0}, sampler = {0};
    char dir[4200], ckpt[4300];
    const char *device = R->device;
    if ((st = flash_cfg_int(cfg, "seed", 0, &seed, err))) goto done;
    /* the variant's device (the run's unless its `set:` moves it) */
    if ((st = flash_pipeline_device(cfg, 0, &device, NULL, err))) goto done;
    flash_env env = {.size = sizeof env, .registry = R->registry, .seed = (uint64_t)seed, .root = cfg,
                     .device = device};
    const flash_cfg *slot;
    if (!(slot = flash_cfg_get(cfg, "schedule"))) {
        st = flash_cfg_error(cfg, err, "flash run: the pipeline needs a 'schedule:' slot");
        goto done;
    }
    if ((st = flash_instance_create(&env, FLASH_KIND_SCHEDULE, slot, &sched, err))) goto done;
    env.schedule = &sched;
    if ((st = flash_instance_create(&env, FLASH_KIND_MODEL, flash_cfg_get(cfg, "teacher"), &teacher, err)) ||
        (st = flash_teacher_load(cfg, &teacher, err)))
        goto done;
    const flash_model_api *tapi = FLASH_API(&teacher, flash_model_api);
    flash_params *TP = tapi->params ? tapi->params(teacher.self) : NULL;
    if (TP && (st = flash_params_to_device(TP, device, err))) goto done;
    env.teacher = &teacher;
    if (!(slot = flash_cfg_get(cfg, "sampler"))) {
        st = flash_cfg_error(cfg, err, "variant '%s': no 'sampler:' slot", name);
        goto done;
    }
    if ((st = flash_instance_create(&env, FLASH_KIND_SAMPLER, slot, &sampler, err))) goto done;
    snprintf(res->sampler, sizeof res->sampler, "%s", sampler.comp->name);

    flash_instance *m = &teacher;
    if (!is_teacher) {
        /* a `from:` variant samples its source's student, which may itself
         * come from another's folder */
        snprintf(res->run, sizeof res->run, "%s", src ? src->run : name);
        snprintf(dir, sizeof dir, "%s/%s", R->out, res->run);
        snprintf(ckpt, sizeof ckpt, "%s/%s", dir, FLASH_RUN_CHECKPOINT);
        if (src) {
            res->iterations = src->iterations;
            res->snapshot = src->snapshot;
        } else {
            flash_train_config tc;
            if ((st = flash_train_config_read(flash_cfg_get(cfg, "train"), &tc, err))) goto done;
            res->iterations = (long)tc.steps;
            /* a step the distillation does not keep is found out before it runs */
            bool listed = false;
            for (int i = 0; i < tc.n_snapshots; i++) listed |= tc.snapshots[i] == snapshot;
            if (snapshot && !listed) {
                st = flash_cfg_error(flash_cfg_get(v, "snapshot"), err,
                                     "variant '%s': snapshot %ld is not one of its train.snapshots", name, snapshot);
                goto done;
            }
        }
        if (snapshot) {
            res->iterations = snapshot;
            res->snapshot = true;
        }
        if (!src) {
            if ((st = same_config(R, cfg, dir, name, err))) goto done;
            struct stat sb, sa;
            const bool had = stat(ckpt, &sb) == 0;
            flash_distill_opts o = {.size = sizeof o, .root = cfg, .registry = R->registry, .run_dir = dir,
                                    .resume = had, .progress = true};
            say(R, "distilling '%s'", name);
            double t0 = flash_now();
            if ((st = flash_distill_run(&o, err))) {
                flash_error_prefix(err, "variant '%s'", name);
                goto done;
            }
            res->distill_seconds = flash_now() - t0;
            /* a finished student reused from an earlier run: its distillation
             * time is not this run's to report (null in results.json) */
            if (had && stat(ckpt, &sa) == 0 && sa.st_mtim.tv_sec == sb.st_mtim.tv_sec &&
                sa.st_mtim.tv_nsec == sb.st_mtim.tv_nsec)
                res->distill_seconds = NAN;
        } else {
            res->distill_seconds = 0;
        }
        if ((st = flash_instance_create(&env, FLASH_KIND_MODEL, flash_cfg_get(cfg, "student"), &student, err)))
            goto done;
        const flash_model_api *sapi = FLASH_API(&student, flash_model_api);
        flash_params *P = sapi->params ? sapi->params(student.self) : NULL;
        if (!P) {
            st = flash_error_set(err, FLASH_ERR_CONFIG, "variant '%s': the student has no parameters", name);
            goto done;
        }
        /* the final checkpoint, or the snapshot the variant names */
        if (res->snapshot) {
            char file[128];
            struct stat sb;
            snprintf(file, sizeof file, FLASH_RUN_SNAPSHOT, (long long)res->iterations);
            snprintf(ckpt, sizeof ckpt, "%.4100s/%s", dir, file);
            if (stat(ckpt, &sb) != 0) {
                st = flash_error_set(err, FLASH_ERR_CONFIG,
                                     "variant '%s': no snapshot of step %ld in %s: list the step in the "
                                     "train.snapshots of variant '%s' before it is distilled",
                                     name, res->iterations, dir, res->run);
                goto done;
            }
        }
        if ((st = flash_checkpoint_load(ckpt, P, NULL, err))) goto done;
        if (flash_params_ema(P) && (st = flash_params_swap_ema(P, err))) goto done;
        if ((st = flash_params_to_device(P, device, err))) goto done;
        m = &student;
    }
    if ((st = sample_bank(R, &sched, m, &sampler, device, res, err))) goto done;
    /* a diverged model or sampler must not pass for a result */
    const int64_t bad = flash_first_nonfinite(R->xs, (size_t)R->n * R->per);
    if (bad >= 0) {
        st = flash_error_set(err, FLASH_ERR_RUNTIME,
                             "variant '%s': sample %lld of the noise bank came out non-finite (%s at value %lld); "
                             "the model or the sampler '%s' diverged",
                             name, (long long)((size_t)bad / R->per), flash_nonfinite_name(R->xs[bad]),
                             (long long)((size_t)bad % R->per), sampler.comp->name);
        goto done;
    }
    if ((st = evaluate(R, &teacher, device, res, err))) goto done;
    res->done = 1;
    R->n_res++;
    if (R->log) {
        fprintf(R->log, "flash run: %s: %d steps, %.4g NFE, %.3f s", name, res->steps, res->nfe, res->seconds);
        for (int k = 0; k < res->metrics.n; k++)
            fprintf(R->log, ", %s %.5g", res->metrics.name[k], res->metrics.value[k]);
        fputc('\n', R->log);
    }
done:
    flash_instance_destroy(&sampler);
    flash_instance_destroy(&student);
    flash_instance_destroy(&teacher);
    flash_instance_destroy(&sched);
    flash_cfg_free(cfg);
    return st;
}

/* complete: every variant of the config is in; a run stopped part way
 * (or failing at a variant) leaves the ones it measured, marked incomplete */
static flash_status write_results(const run_ctx *R, const char *config, bool complete, flash_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/results.json", R->out);
    flash_atomic_file af;
    flash_status st = flash_atomic_open(&af, path, err);
    if (st) return st;
    FILE *f = af.f;
    fputs("{\n  \"config\": ", f);
    flash_json_str(f, config);
    fputs(",\n  \"config_record\": \"" FLASH_RUN_CONFIG "\",\n  \"plugins\": [", f);
    for (size_t i = 0; i < R->plugins.n; i++) {
        fputs(i ? ", {\"path\": " : "{\"path\": ", f);
        flash_json_str(f, R->plugins.path[i]);
        fprintf(f, ", \"fnv1a64\": \"%016" PRIx64 "\"}", R->plugins.hash[i]);
    }
    fprintf(f, "],\n  \"complete\": %s,\n  \"samples\": %ld,\n  \"noise_seed\": %ld,\n  \"threads\": %d,\n  \"variants\": [",
            complete ? "true" : "false", R->n, R->noise_seed, flash_get_threads());
    for (int i = 0; i < R->n_res; i++) {
        const result *r = &R->res[i];
        fputs(i ? ",\n    {" : "\n    {", f);
        fputs("\"name\": ", f);
        flash_json_str(f, r->name);
        flash_json_field_str(f, "model", r->model);
        flash_json_field_str(f, "sampler", r->sampler);
        fprintf(f, ", \"steps\": %d", r->steps);
        flash_json_field_num(f, "nfe", r->nfe);
        flash_json_field_num(f, "seconds", r->seconds);
        flash_json_field_num(f, "distill_seconds", r->distill_seconds);
        fprintf(f, ", \"samples\": \"samples/%s.npy\"", r->name);
        if (R->labels) fprintf(f, ", \"labels\": \"samples/%s.labels.npy\"", r->name);
        if (r->iterations > 0)
            fprintf(f, ", \"iterations\": %ld, \"snapshot\": %s", r->iterations, r->snapshot ? "true" : "false");
        else
            fputs(", \"iterations\": null, \"snapshot\": false", f);
        if (r->from[0]) flash_json_field_str(f, "from", r->from);
        fputs(", \"metrics\": ", f);
        flash_json_metrics(f, &r->metrics);
        fputc('}', f);
    }
    fputs("\n  ]\n}\n", f);
    return flash_atomic_finish(&af, err);
}

static void print_table(const run_ctx *R, FILE *f)
{
    const flash_metric_result *m0 = R->n_res ? &R->res[0].metrics : NULL;
    fprintf(f, "%-20s %5s %6s", "variant", "steps", "NFE");
    for (int k = 0; m0 && k < m0->n; k++) fprintf(f, " %14s", m0->name[k]);
    fprintf(f, " %9s %10s\n", "sample_s", "distill_s");
    for (int i = 0; i < R->n_res; i++) {
        const result *r = &R->res[i];
        fprintf(f, "%-20s %5d %6.4g", r->name, r->steps, r->nfe);
        for (int k = 0; m0 && k < m0->n; k++) {
            double v = NAN;
            for (int j = 0; j < r->metrics.n; j++)
                if (strcmp(r->metrics.name[j], m0->name[k]) == 0) v = r->metrics.value[j];
            fprintf(f, " %14.5g", v);
        }
        if (isfinite(r->distill_seconds))
            fprintf(f, " %9.3f %10.2f\n", r->seconds, r->distill_seconds);
        else
            fprintf(f, " %9.3f %10s\n", r->seconds, "reused");
    }
    fflush(f);
}

flash_status flash_run_pipeline(const flash_run_opts *o, flash_error *err)
{
    if (!o || o->size < sizeof *o || !o->root || !o->registry || !o->out_dir)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_run_pipeline: incomplete options");
    run_ctx *R = calloc(1, sizeof *R);
    if (!R) return flash_error_set(err, FLASH_ERR_NOMEM, "flash run: out of memory");
    R->out = o->out_dir;
    R->root = o->root;
    R->registry = o->registry;
    R->log = o->log;
    const char *out = o->out_dir, *config = o->config_path ? o->config_path : "";
    flash_status st;
    flash_comm *world = flash_comm_world(err);
    if (!world) {
        free(R);
        return err->status ? err->status : FLASH_ERR_RUNTIME;
    }
    R->rank = flash_comm_rank(world);
    const flash_cfg *run = flash_cfg_get(R->root, "run"), *variants = NULL;
    char sub[4200];
    /* every key of the pipeline and of each variant's config first: a
     * misspelt key stops the run before the teacher is trained */
    if ((st = flash_schema_check(R->root, FLASH_FOR_RUN, R->registry, err))) goto done;
    if (!run) {
        st = flash_cfg_error(R->root, err, "flash run: the pipeline needs a 'run:' section with `variants:`");
        goto done;
    }
    if ((st = flash_cfg_check_keys(run, "run", flash_schema_keys("run"), err)) ||
        (st = flash_cfg_int(run, "samples", 10000, &R->n, err)) ||
        (st = flash_cfg_int(run, "noise_seed", 1234, &R->noise_seed, err)) ||
        (st = flash_cfg_int(run, "batch", 4096, &R->batch, err)) || (st = flash_cfg_bool(run, "plots", true, &R->plots, err)))
        goto done;
    if ((st = flash_pipeline_threads(R->root, err))) goto done;
    if ((st = run_device(R, err))) goto done;
    if (R->n < 1 || R->n > 100000000 || R->batch < 1) {
        st = flash_cfg_error(run, err, "run: samples must be in [1, 1e8] and batch >= 1");
        goto done;
    }
    variants = flash_cfg_get(run, "variants");
    if (!variants || flash_cfg_kind(variants) != FLASH_CFG_SEQ || flash_cfg_len(variants) < 1) {
        st = flash_cfg_error(variants ? variants : run, err, "run.variants: expected a list of variants");
        goto done;
    }
    /* the run folder first: a symlink or a file there is refused, not written into */
    if ((st = flash_mkdirs(out, err))) goto done;
    /* the run as it was resolved, with the plugin files it came from */
    snprintf(sub, sizeof sub, "%s/%s", out, FLASH_RUN_CONFIG);
    if ((st = flash_plugin_files_of(R->root, R->registry, &R->plugins, err)) ||
        (writes(R) && (st = flash_pipeline_write_config(sub, R->root, R->registry, err))))
        goto done;
    snprintf(sub, sizeof sub, "%s/samples", out);
    if ((st = flash_mkdirs(sub, err))) goto done;
    snprintf(sub, sizeof sub, "%s/plots", out);
    if (R->plots && (st = flash_mkdirs(sub, err))) goto done;
    if ((st = teacher_stage(R, err)) || (st = make_bank(R, err))) goto done;
    for (size_t i = 0; i < flash_cfg_len(variants); i++) {
        if ((st = run_variant(R, flash_cfg_at(variants, i), err))) goto done;
        /* results.json grows variant by variant, so a stopped run keeps what it measured */
        if (writes(R) && (st = write_results(R, config, i + 1 == flash_cfg_len(variants), err))) goto done;
    }
    if (o->table) print_table(R, o->table);
    say(R, "wrote %s/results.json", out);
done:
    free(R->xT);
    free(R->xs);
    free(R->labels);
    flash_plugin_files_free(&R->plugins);
    free(R);
    return st;
}
