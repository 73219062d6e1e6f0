/* Metric `sliced_wasserstein`: the sliced Wasserstein-2 distance between
 * generated samples and a reference sample set (Rabin et al., "Wasserstein
 * barycenter and its application to texture mixing", 2011; Bonneel et al.,
 * 2015): the average over random unit directions theta of W2 between the
 * 1-D projections theta.x. In 1-D, W2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du,
 * computed exactly from the two sorted samples (their quantile functions are
 * step functions), so the sample sizes need not match.
 *
 * The reference is either a dataset slot ({plugin: toy2d, kind: gmm, ...},
 * its test split by default) or an NPY file of shape (M, D) (a path as
 * given, else relative to the config file). Directions are drawn once from
 * `seed`, so two evaluations compare on the same projections. */
#include "folder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct sw {
    int dim;
    int n_proj;
    int64_t m;      /* reference points */
    float *ref;     /* (m, dim) */
    double *theta;  /* (n_proj, dim) unit directions */
} sw;

static const char *const sw_keys[] = {"reference", "projections", "seed", "split", NULL};
static const char *const sw_splits[] = {"train", "test", NULL};

static void sw_destroy(void *self)
{
    sw *s = self;
    if (!s) return;
    free(s->ref);
    free(s->theta);
    free(s);
}

static flash_status load_npy_reference(sw *s, const flash_cfg *node, const char *path, flash_error *err)
{
    char full[4096];
    struct stat sb;
    if (!flash_cfg_resolve_path(node, path, full, sizeof full) || stat(full, &sb) != 0) return flash_cfg_error(node, err, "no such reference file '%s'", path);
    flash_array a;
    flash_status st = flash_npy_read(full, &a, err);
    if (st) {
        flash_error_prefix(err, "metric 'sliced_wasserstein' reference");
        return st;
    }
    if (a.dtype != FLASH_F32 || a.ndim != 2 || a.shape[0] < 1 || a.shape[1] < 1) {
        flash_array_free(&a);
        return flash_cfg_error(node, err, "'%s' must hold a float32 array of shape (M, D)", full);
    }
    s->m = a.shape[0];
    s->dim = (int)a.shape[1];
    s->ref = a.data; /* take ownership of the buffer */
    return FLASH_OK;
}

static flash_status load_dataset_reference(sw *s, const flash_cfg *node, flash_env *env, int split,
                                           flash_error *err)
{
    flash_instance ds;
    flash_status st = flash_instance_create(env, FLASH_KIND_DATASET, node, &ds, err);
    if (st) return st;
    const flash_dataset_api *api = FLASH_API(&ds, flash_dataset_api);
    flash_dataset_info info;
    api->info(ds.self, &info);
    int64_t m = split ? info.n_test : info.n_train;
    if (info.ndim != 1 || m < 1) {
        flash_instance_destroy(&ds);
        return flash_cfg_error(node, err, "the reference dataset must hold vectors (N, D), not images");
    }
    s->dim = info.shape[0];
    s->m = m;
    s->ref = malloc((size_t)m * (size_t)s->dim * sizeof(float));
    int64_t *idx = malloc(4096 * sizeof *idx);
    if (!s->ref || !idx) {
        free(idx);
        flash_instance_destroy(&ds);
        return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'sliced_wasserstein': out of memory");
    }
    for (int64_t i = 0; i < m && !st; i += 4096) {
        int n = (int)(m - i < 4096 ? m - i : 4096);
        for (int j = 0; j < n; j++) idx[j] = i + j;
        st = api->get(ds.self, split ? FLASH_SPLIT_TEST : FLASH_SPLIT_TRAIN, idx, n, s->ref + (size_t)i * s->dim,
                      NULL, err);
    }
    free(idx);
    flash_instance_destroy(&ds);
    return st;
}

static flash_status sw_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long n_proj, seed;
    int split;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "projections", 256, &n_proj, err))) return st;
    if ((st = flash_cfg_int(cfg, "seed", 0, &seed, err))) return st;
    if ((st = flash_cfg_enum(cfg, "split", sw_splits, 1, &split, err))) return st;
    if (n_proj < 1 || n_proj > 1000000)
        return flash_cfg_error(flash_cfg_get(cfg, "projections"), err, "projections must be in [1, 1000000]");
    const flash_cfg *ref = flash_cfg_get(cfg, "reference");
    if (!ref)
        return flash_cfg_error(cfg, err,
                               "metric 'sliced_wasserstein' needs 'reference': a dataset slot or an NPY file");

    sw *s = calloc(1, sizeof *s);
    if (!s) return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'sliced_wasserstein': out of memory");
    s->n_proj = (int)n_proj;
    if (flash_cfg_kind(ref) == FLASH_CFG_MAP)
        st = load_dataset_reference(s, ref, env, split, err);
    else if (flash_cfg_scalar(ref) && flash_cfg_scalar(ref)[0])
        st = load_npy_reference(s, ref, flash_cfg_scalar(ref), err);
    else
        st = flash_cfg_error(ref, err, "expected a dataset slot ({plugin: toy2d, ...}) or an NPY file");
    if (st) {
        sw_destroy(s);
        return st;
    }

    /* Uniform directions on the sphere: normalised Gaussian vectors. */
    s->theta = malloc((size_t)s->n_proj * (size_t)s->dim * sizeof(double));
    if (!s->theta) {
        sw_destroy(s);
        return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'sliced_wasserstein': out of memory");
    }
    flash_rng r;
    flash_rng_seed(&r, (uint64_t)seed);
    for (int p = 0; p < s->n_proj; p++) {
        double *th = s->theta + (size_t)p * s->dim, norm = 0;
        do {
            norm = 0;
            for (int d = 0; d < s->dim; d++) {
                th[d] = flash_rng_normal(&r);
                norm += th[d] * th[d];
            }
        } while (norm < 1e-12);
        norm = sqrt(norm);
        for (int d = 0; d < s->dim; d++) th[d] /= norm;
    }
    *self = s;
    return FLASH_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void project(const float *x, int64_t n, int dim, const double *th, double *out)
{
    for (int64_t i = 0; i < n; i++) {
        double v = 0;
        for (int d = 0; d < dim; d++) v += th[d] * x[i * dim + d];
        out[i] = v;
    }
    qsort(out, (size_t)n, sizeof *out, cmp_double);
}

/* W2^2 between the empirical distributions of sorted a (n) and b (m): walk
 * the merged breakpoints i/n and j/m of the two quantile functions. */
static double w2_squared_sorted(const double *a, int64_t n, const double *b, int64_t m)
{
    double u = 0, acc = 0;
    int64_t i = 0, j = 0;
    while (i < n && j < m) {
        double ui = (double)(i + 1) / (double)n, uj = (double)(j + 1) / (double)m;
        double next = ui < uj ? ui : uj;
        double d = a[i] - b[j];
        acc += d * d * (next - u);
        u = next;
        if (ui <= next) i++;
        if (uj <= next) j++;
    }
    return acc;
}

static flash_status sw_compute(void *self, flash_ctx *c, const flash_tensor *samples, const int *labels,
                               flash_metric_result *out, flash_error *err)
{
    (void)c;
    (void)labels;
    const sw *s = self;
    if (!samples || samples->ndim < 1 || samples->shape[0] < 1)
        return flash_error_set(err, FLASH_ERR_USAGE, "metric 'sliced_wasserstein': no samples");
    int64_t n = samples->shape[0];
    if ((int64_t)samples->numel != n * s->dim)
        return flash_error_set(err, FLASH_ERR_USAGE,
                               "metric 'sliced_wasserstein': samples have %lld values each, the reference %d",
                               (long long)(samples->numel / (size_t)n), s->dim);
    double *pa = malloc((size_t)n * sizeof *pa), *pb = malloc((size_t)s->m * sizeof *pb);
    if (!pa || !pb) {
        free(pa);
        free(pb);
        return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'sliced_wasserstein': out of memory");
    }
    double total = 0;
    for (int p = 0; p < s->n_proj; p++) {
        const double *th = s->theta + (size_t)p * s->dim;
        project(samples->data, n, s->dim, th, pa);
        project(s->ref, s->m, s->dim, th, pb);
        total += sqrt(w2_squared_sorted(pa, n, pb, s->m));
    }
    free(pa);
    free(pb);
    flash_metric_result_add(out, "sliced_wasserstein", total / s->n_proj);
    return FLASH_OK;
}

FLASH_COMPONENT_TABLE(flash_metric_api, sliced_wasserstein_metric, FLASH_KIND_METRIC, "sliced_wasserstein",
                      "sliced Wasserstein-2 distance to a reference sample set (projections, seed)", sw_keys,
                      sw_create, sw_destroy, .compute = sw_compute)
