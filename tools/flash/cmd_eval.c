/* flash eval CONFIG (--samples x.npy [--labels y.npy] | --real N) [--device D] [--out metrics.json]
 *            [--grid grid.png]
 *
 * Runs the config's `metrics:` list on a sample set: generated samples from
 * an NPY file (with their class labels for the class-conditional metrics),
 * or, with --real N, N images of the training split of the config's
 * `dataset:` (a seeded random subset, with their labels): the floor of the
 * metrics, what real data scores against the reference. Writes the values
 * as JSON atomically and prints one summary line. */
#include "cli.h"
#include "flash/comm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct eval_args {
    const char *config, *samples, *labels, *out, *grid;
    long real, seed; /* seed -1: not given */
    bool check_finite, no_check_finite;
    flash_options_sets sets;
} eval_args;

static const flash_opt eval_opts[] = {
    FLASH_OPT_SETS(eval_args, sets),
    FLASH_STRING("--samples", "FILE", eval_args, samples, "samples to evaluate (NPY, float32/float64, (N, shape...))"),
    FLASH_STRING("--labels", "FILE", eval_args, labels,
        "their class labels (NPY, int64/int32, (N)); class_acc needs them"),
    FLASH_INT("--real", "N", eval_args, real, 2, 100000000, "evaluate N real training images of the config's dataset\n"
                                                            "(a random subset drawn from --seed) instead: the floor"),
    FLASH_INT("--seed", "S", eval_args, seed, 0, LONG_MAX,
        "seed of the --real subset (default: the config's seed, else 0)"),
    FLASH_OPT_DEVICE_OF(eval_args, sets,
                        "The\n"
                        "metrics' networks (the evaluator) run there; samples stay in host\n"
                        "memory and go to the device batch by batch"),
    FLASH_STRING("--out", "FILE", eval_args, out, "metrics as JSON (written atomically)"),
    FLASH_STRING("--grid", "FILE", eval_args, grid, "PNG of image samples: a row of 10 per class (10 classes),\n"
                                                    "or the first 100 without labels"),
    FLASH_FLAG("--check-finite", eval_args, check_finite,
        "refuse metric values that are NaN or infinite (the default):\n"
        "exit 1 naming the metric"),
    FLASH_FLAG("--no-check-finite", eval_args, no_check_finite, "report non-finite metric values as they are"),
    FLASH_OPT_FORCE_ENTRY,
    {0},
};

static const flash_command eval_cmd = {
    .name = "eval",
    .positional = "CONFIG",
    .positional_offset = offsetof(eval_args, config),
    .opts = eval_opts,
    .about = "Computes the config's metrics (fd, class_acc, precision_recall,\n"
             "sliced_wasserstein, ...) on a sample set (--samples FILE, or --real N)\n"
             "and prints one summary line. Samples holding NaN or infinity are refused\n"
             "(exit 2). With --out, the resolved config goes next to it\n"
             "(metrics.json: metrics.config.yaml).\n",
    .epilogue = "Exit codes: 0 success, 2 bad usage or config, 1 any other failure.\n",
};

/* Samples from an NPY: float32 or float64, (N, shape...) -> a host tensor. */
static flash_status read_samples(const char *path, flash_tensor **out, flash_error *err)
{
    flash_array a;
    flash_status st = flash_npy_read(path, &a, err);
    if (st) return st;
    if ((a.dtype != FLASH_F32 && a.dtype != FLASH_F64) || a.ndim < 2 || a.ndim > FLASH_MAX_DIMS ||
        a.shape[0] < 2) {
        flash_array_free(&a);
        return flash_error_set(err, FLASH_ERR_USAGE, "%s: expected float samples of shape (N >= 2, shape...)", path);
    }
    const int64_t bad = flash_array_first_nonfinite(&a);
    if (bad >= 0) {
        const size_t per = flash_array_numel(&a) / (size_t)a.shape[0];
        const double v = a.dtype == FLASH_F32 ? ((const float *)a.data)[bad] : ((const double *)a.data)[bad];
        flash_array_free(&a);
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: sample %lld holds %s (value %lld of it): refused", path,
                               (long long)((size_t)bad / per), flash_nonfinite_name(v), (long long)((size_t)bad % per));
    }
    int shape[FLASH_MAX_DIMS];
    for (int j = 0; j < a.ndim; j++) {
        if (a.shape[j] > 1000000000) {
            flash_array_free(&a);
            return flash_error_set(err, FLASH_ERR_USAGE, "%s: dimension %d is too large", path, j);
        }
        shape[j] = (int)a.shape[j];
    }
    flash_tensor *t = flash_tensor_alloc(a.ndim, shape);
    if (!t) {
        flash_array_free(&a);
        return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory for the samples of %s", path);
    }
    for (size_t i = 0; i < t->numel; i++)
        t->data[i] = a.dtype == FLASH_F32 ? ((const float *)a.data)[i] : (float)((const double *)a.data)[i];
    flash_array_free(&a);
    *out = t;
    return FLASH_OK;
}

/* n images (with labels) of the training split of the config's dataset: a
 * random subset without repetition, drawn from seed. */
static flash_status real_samples(const flash_cli_pipeline *p, long n, uint64_t seed, flash_tensor **xs, int **ys,
                                 flash_error *err)
{
    const flash_cfg *slot = flash_cfg_get(p->root, "dataset");
    if (!slot) return flash_cfg_error(p->root, err, "--real needs the config's 'dataset:' slot");
    flash_env env = {.size = sizeof env, .registry = p->registry, .seed = seed, .root = p->root};
    flash_instance ds;
    flash_status st = flash_instance_create(&env, FLASH_KIND_DATASET, slot, &ds, err);
    if (st) return st;
    const flash_dataset_api *api = FLASH_API(&ds, flash_dataset_api);
    flash_dataset_info info;
    api->info(ds.self, &info);
    if (n > info.n_train) {
        flash_instance_destroy(&ds);
        return flash_error_set(err, FLASH_ERR_USAGE, "--real %ld: the training split holds %lld examples", n,
                               (long long)info.n_train);
    }
    int shape[FLASH_MAX_DIMS] = {(int)n};
    for (int j = 0; j < info.ndim; j++) shape[1 + j] = info.shape[j];
    flash_tensor *t = flash_tensor_alloc(1 + info.ndim, shape);
    int *y = malloc((size_t)n * sizeof *y);
    int64_t *perm = malloc((size_t)info.n_train * sizeof *perm);
    if (!t || !y || !perm) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory for %ld real samples", n);
    } else {
        /* the first n of a Fisher-Yates permutation */
        flash_rng r;
        flash_rng_seed(&r, seed);
        for (int64_t i = 0; i < info.n_train; i++) perm[i] = i;
        for (long i = 0; i < n; i++) {
            int64_t j = i + (int64_t)(flash_rng_uniform(&r) * (double)(info.n_train - i));
            if (j >= info.n_train) j = info.n_train - 1;
            int64_t tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        size_t per = t->numel / (size_t)n;
        for (long i = 0; i < n && !st; i += 1024) {
            int b = (int)(n - i < 1024 ? n - i : 1024);
            st = api->get(ds.self, FLASH_SPLIT_TRAIN, perm + i, b, t->data + (size_t)i * per, y + i, err);
        }
    }
    free(perm);
    flash_instance_destroy(&ds);
    if (st) {
        flash_tensor_free(t);
        free(y);
        return st;
    }
    *xs = t;
    *ys = y;
    return FLASH_OK;
}

/* 10 rows of 10 images: row c holds the first 10 samples labelled c (blank
 * where fewer), or the first 100 samples without labels. */
static flash_status write_grid(const char *path, const flash_tensor *t, const int *labels, flash_error *err)
{
    if (t->ndim != 4) return flash_error_set(err, FLASH_ERR_USAGE, "--grid needs image samples (N, C, H, W)");
    const int n = t->shape[0], ch = t->shape[1], h = t->shape[2], w = t->shape[3];
    const size_t per = (size_t)ch * h * w;
    float *g = malloc(100 * per * sizeof *g);
    if (!g) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory for the grid");
    for (size_t i = 0; i < 100 * per; i++) g[i] = -1;
    if (labels) {
        int filled[10] = {0};
        for (int i = 0; i < n; i++) {
            int c = labels[i];
            if (c < 0 || c >= 10 || filled[c] == 10) continue;
            memcpy(g + (size_t)(c * 10 + filled[c]++) * per, t->data + (size_t)i * per, per * sizeof *g);
        }
    } else {
        memcpy(g, t->data, (size_t)(n < 100 ? n : 100) * per * sizeof *g);
    }
    flash_status st = flash_png_grid(path, g, 100, ch, h, w, 10, err);
    free(g);
    return st;
}

static flash_status write_json(const char *path, const eval_args *a, long n, double seconds,
                               const flash_metric_result *res, flash_error *err)
{
    flash_atomic_file af;
    flash_status st = flash_atomic_open(&af, path, err);
    if (st) return st;
    FILE *f = af.f;
    fputs("{\n  \"config\": ", f);
    flash_json_str(f, a->config);
    fputs(",\n  \"samples\": ", f);
    if (a->samples)
        flash_json_str(f, a->samples);
    else
        fputs("\"real:train\"", f);
    fprintf(f, ",\n  \"n\": %ld,\n  \"seconds\": ", n);
    flash_json_num(f, seconds);
    fputs(",\n  \"metrics\": ", f);
    flash_json_metrics(f, res);
    fputs("\n}\n", f);
    return flash_atomic_finish(&af, err);
}

int flash_cmd_eval(int argc, char **argv)
{
    eval_args a = {.seed = -1};
    int rc;
    if (!flash_options_parse(&eval_cmd, argc, argv, &a, &rc)) return rc;
    if (!a.samples == !a.real) return flash_cli_usage("eval", "%s", "give either --samples FILE or --real N");
    if (a.real && a.labels) return flash_cli_usage("eval", "%s", "--labels goes with --samples (--real uses the dataset's)");
    flash_error err = {0};
    flash_cli_pipeline p;
    if (flash_cli_pipeline_load(&p, a.config, &a.sets, &err)) return flash_cli_fail("eval", &err);
    flash_status st = FLASH_OK;
    flash_tensor *xs = NULL;
    int *labels = NULL;
    flash_ctx *c = NULL;
    flash_metric_result res = {0};
    long seed = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    const flash_cfg *metrics = flash_cfg_get(p.root, "metrics");
    st = flash_schema_check(p.root, FLASH_FOR_EVAL, p.registry, &err);
    if (!st && (!metrics || flash_cfg_kind(metrics) != FLASH_CFG_SEQ || flash_cfg_len(metrics) == 0))
        st = flash_cfg_error(metrics ? metrics : p.root, &err, "flash eval needs a 'metrics:' list of metric slots");
    if (!st) st = flash_pipeline_threads(p.root, &err);
    const char *device = "cpu";
    if (!st) st = flash_pipeline_device(p.root, (size_t)16 << 20, &device, &c, &err);
    if (!st) st = flash_cfg_int(p.root, "seed", 0, &seed, &err);
    if (!st && a.seed >= 0) seed = a.seed;
    if (!st && a.samples) {
        st = read_samples(a.samples, &xs, &err);
        if (!st && a.labels)
            st = flash_cli_read_labels(a.labels, xs->shape[0], true, 1000000, "is negative or too large", &labels, &err);
    } else if (!st) {
        st = real_samples(&p, a.real, (uint64_t)seed, &xs, &labels, &err);
    }
    /* under mpirun the metrics' networks share the samples out over the
     * ranks (their batches; the values are one process's) and rank 0
     * alone writes */
    const bool writer = flash_comm_rank(flash_comm_world(NULL)) == 0;
    /* every output refused before any is written (the config beside it too) */
    bool through;
    if (!st && writer && a.out) st = flash_output_check(a.out, &through, &err);
    if (!st && writer && a.grid) st = flash_output_check(a.grid, &through, &err);
    if (!st && writer && a.grid) st = write_grid(a.grid, xs, labels, &err);
    flash_env env = {.size = sizeof env, .registry = p.registry, .seed = (uint64_t)seed, .root = p.root,
                     .device = device};
    for (size_t i = 0; !st && i < flash_cfg_len(metrics); i++) {
        flash_instance m = {0};
        if ((st = flash_instance_create(&env, FLASH_KIND_METRIC, flash_cfg_at(metrics, i), &m, &err))) break;
        st = FLASH_API(&m, flash_metric_api)->compute(m.self, c, xs, labels, &res, &err);
        if (st) flash_error_prefix(&err, "metric '%s'", m.comp->name);
        flash_instance_destroy(&m);
    }
    for (int k = 0; !st && !a.no_check_finite && k < res.n; k++)
        if (!isfinite(res.value[k]))
            st = flash_error_set(&err, FLASH_ERR_RUNTIME,
                                 "metric '%s' came out %s (--no-check-finite reports it as it is)", res.name[k],
                                 flash_nonfinite_name(res.value[k]));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (!st && writer && a.out) st = flash_cli_write_config_beside(a.out, &p, &err);
    if (!st && writer && a.out) st = write_json(a.out, &a, xs->shape[0], secs, &res, &err);
    if (!st) {
        printf("flash eval: %s, %d samples", a.samples ? a.samples : "real training images", xs->shape[0]);
        for (int k = 0; k < res.n; k++) printf(", %s %.5g", res.name[k], res.value[k]);
        printf(" (%.1f s)\n", secs);
    }
    flash_ctx_destroy(c);
    flash_tensor_free(xs);
    free(labels);
    flash_cli_pipeline_free(&p);
    return st ? flash_cli_fail("eval", &err) : FLASH_EXIT_OK;
}
