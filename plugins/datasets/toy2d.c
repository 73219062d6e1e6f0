/* Dataset `toy2d`: the standard low-dimensional test distributions of the
 * diffusion and flow literature (checkerboard, two moons, swiss roll, eight
 * Gaussians, as in FFJORD's toy data) and samples of a Gaussian mixture
 * `gmm` (weights, means, isotropic stds, optional classes: the keys of the
 * exact `gmm` teacher) so a model can be trained on the teacher's data.
 * Labels: with `classes`, the class of the drawn component (num_classes =
 * max + 1); otherwise the dataset is unlabelled (num_classes 0) and labels
 * carry the component, moon or Gaussian index for inspection. Points are generated once at create from `seed`
 * (train and test from separate streams), so a config always names the same
 * data. */
#include "folder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOY_MAX_COMPONENTS 64
#define TOY_MAX_DIM 16

enum { TOY_CHECKERBOARD, TOY_TWO_MOONS, TOY_SWISS_ROLL, TOY_EIGHT_GAUSSIANS, TOY_GMM };
static const char *const toy_kinds[] = {"checkerboard", "two_moons", "swiss_roll", "eight_gaussians", "gmm", NULL};

typedef struct toy2d {
    int dim;
    int num_classes; /* gmm with `classes`: labels are classes[component] */
    int64_t n[2];    /* train, test */
    float *x[2];     /* (n, dim) */
    int *label[2];   /* mixture component (gmm, eight_gaussians), else 0 */
} toy2d;

typedef struct gmm_spec {
    size_t k;
    int dim;
    double w[TOY_MAX_COMPONENTS];
    double mu[TOY_MAX_COMPONENTS * TOY_MAX_DIM];
    double sd[TOY_MAX_COMPONENTS];
    long cls[TOY_MAX_COMPONENTS]; /* class of each component (with `classes`) */
    int num_classes;              /* 0: unlabelled */
} gmm_spec;

static const char *const toy_keys[] = {"kind", "n_train", "n_test", "seed", "weights", "means", "stds", "classes", NULL};

static void toy_destroy(void *self)
{
    toy2d *t = self;
    if (!t) return;
    for (int s = 0; s < 2; s++) {
        free(t->x[s]);
        free(t->label[s]);
    }
    free(t);
}

static int pick_component(flash_rng *r, const double *w, size_t k)
{
    double u = flash_rng_uniform(r), acc = 0;
    for (size_t i = 0; i < k; i++) {
        acc += w[i];
        if (u < acc) return (int)i;
    }
    return (int)k - 1;
}

static void generate(int kind, const gmm_spec *g, flash_rng *r, int64_t n, float *x, int *label)
{
    const double pi = 3.14159265358979323846;
    for (int64_t i = 0; i < n; i++) {
        double a = 0, b = 0;
        int lab = 0;
        switch (kind) {
        case TOY_CHECKERBOARD: {
            /* x1 ~ U(-2, 2); x2 in the squares of opposite parity, scaled to [-4, 4]^2 */
            double x1 = 4 * flash_rng_uniform(r) - 2;
            double x2 = flash_rng_uniform(r) - 2.0 * (double)flash_rng_below(r, 2);
            x2 += fmod(floor(x1) + 4, 2);
            a = 2 * x1;
            b = 2 * x2;
            break;
        }
        case TOY_TWO_MOONS: {
            /* scikit-learn's make_moons(noise=0.1), scaled by 2 and centred */
            double u = pi * flash_rng_uniform(r);
            lab = (int)flash_rng_below(r, 2);
            double mx = lab ? 1 - cos(u) : cos(u), my = lab ? 0.5 - sin(u) : sin(u);
            a = 2 * (mx + 0.1 * flash_rng_normal(r)) - 1;
            b = 2 * (my + 0.1 * flash_rng_normal(r)) - 0.2;
            break;
        }
        case TOY_SWISS_ROLL: {
            /* make_swiss_roll(noise=1.0) projected on (x, z), divided by 5 */
            double t = 1.5 * pi * (1 + 2 * flash_rng_uniform(r));
            a = (t * cos(t) + flash_rng_normal(r)) / 5;
            b = (t * sin(t) + flash_rng_normal(r)) / 5;
            break;
        }
        case TOY_EIGHT_GAUSSIANS: {
            /* centres on a circle of radius 4, std 0.5, scaled by 1/1.414 */
            lab = (int)flash_rng_below(r, 8);
            double ang = 2 * pi * lab / 8;
            a = (4 * cos(ang) + 0.5 * flash_rng_normal(r)) / 1.414;
            b = (4 * sin(ang) + 0.5 * flash_rng_normal(r)) / 1.414;
            break;
        }
        default: {
            lab = pick_component(r, g->w, g->k);
            for (int d = 0; d < g->dim; d++)
                x[i * g->dim + d] = (float)(g->mu[lab * g->dim + d] + g->sd[lab] * flash_rng_normal(r));
            label[i] = g->num_classes ? (int)g->cls[lab] : lab;
            continue;
        }
        }
        x[2 * i] = (float)a;
        x[2 * i + 1] = (float)b;
        label[i] = lab;
    }
}

static flash_status read_gmm(const flash_cfg *cfg, gmm_spec *g, flash_error *err)
{
    size_t rows = 0, cols = 0, nw = 0, ns = 0;
    flash_status st = flash_cfg_matrix(cfg, "means", g->mu, TOY_MAX_COMPONENTS * TOY_MAX_DIM, &rows, &cols, err);
    if (st) return st;
    if (rows == 0)
        return flash_cfg_error(cfg, err, "dataset 'toy2d' with kind gmm needs 'means' (one row per component)");
    if (rows > TOY_MAX_COMPONENTS || cols > TOY_MAX_DIM || cols == 0)
        return flash_cfg_error(flash_cfg_get(cfg, "means"), err,
                               "at most %d components of at most %d dimensions", TOY_MAX_COMPONENTS, TOY_MAX_DIM);
    g->k = rows;
    g->dim = (int)cols;
    if ((st = flash_cfg_doubles(cfg, "weights", g->w, TOY_MAX_COMPONENTS, &nw, err))) return st;
    if ((st = flash_cfg_doubles(cfg, "stds", g->sd, TOY_MAX_COMPONENTS, &ns, err))) return st;
    if (nw == 0) {
        for (size_t i = 0; i < rows; i++) g->w[i] = 1.0 / (double)rows;
        nw = rows;
    }
    if (ns == 0) {
        for (size_t i = 0; i < rows; i++) g->sd[i] = 1.0;
        ns = rows;
    }
    if (nw != rows)
        return flash_cfg_error(flash_cfg_get(cfg, "weights"), err, "%zu weights for %zu components", nw, rows);
    if (ns != rows)
        return flash_cfg_error(flash_cfg_get(cfg, "stds"), err, "%zu stds for %zu components", ns, rows);
    double sum = 0;
    for (size_t i = 0; i < rows; i++) {
        if (!(g->w[i] >= 0)) return flash_cfg_error(flash_cfg_get(cfg, "weights"), err, "weights must be >= 0");
        if (!(g->sd[i] > 0)) return flash_cfg_error(flash_cfg_get(cfg, "stds"), err, "stds must be > 0");
        sum += g->w[i];
    }
    if (!(sum > 0)) return flash_cfg_error(flash_cfg_get(cfg, "weights"), err, "weights sum to zero");
    for (size_t i = 0; i < rows; i++) g->w[i] /= sum;
    size_t nc = 0;
    if ((st = flash_cfg_ints(cfg, "classes", g->cls, TOY_MAX_COMPONENTS, &nc, err))) return st;
    if (nc && nc != rows)
        return flash_cfg_error(flash_cfg_get(cfg, "classes"), err, "%zu classes for %zu components", nc, rows);
    for (size_t i = 0; i < nc; i++) {
        if (g->cls[i] < 0 || g->cls[i] >= TOY_MAX_COMPONENTS)
            return flash_cfg_error(flash_cfg_get(cfg, "classes"), err, "classes must be in [0, %d)",
                                   TOY_MAX_COMPONENTS);
        if (g->cls[i] + 1 > g->num_classes) g->num_classes = (int)g->cls[i] + 1;
    }
    return FLASH_OK;
}

static flash_status toy_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    int kind;
    long n_train, n_test, seed;
    flash_status st;
    if ((st = flash_cfg_enum(cfg, "kind", toy_kinds, TOY_CHECKERBOARD, &kind, err))) return st;
    if ((st = flash_cfg_int(cfg, "n_train", 10000, &n_train, err))) return st;
    if ((st = flash_cfg_int(cfg, "n_test", 2000, &n_test, err))) return st;
    if ((st = flash_cfg_int(cfg, "seed", env ? (long)env->seed : 0, &seed, err))) return st;
    if (n_train < 1 || n_train > 100000000)
        return flash_cfg_error(flash_cfg_get(cfg, "n_train"), err, "n_train must be in [1, 1e8]");
    if (n_test < 1 || n_test > 100000000)
        return flash_cfg_error(flash_cfg_get(cfg, "n_test"), err, "n_test must be in [1, 1e8]");
    gmm_spec g = {0};
    g.dim = 2;
    if (kind == TOY_GMM) {
        if ((st = read_gmm(cfg, &g, err))) return st;
    } else {
        static const char *const gmm_only[] = {"weights", "means", "stds", "classes"};
        for (int i = 0; i < 4; i++) {
            const flash_cfg *n = flash_cfg_get(cfg, gmm_only[i]);
            if (n) return flash_cfg_error(n, err, "'%s' applies only to kind gmm, not %s", gmm_only[i], toy_kinds[kind]);
        }
    }

    toy2d *t = calloc(1, sizeof *t);
    if (!t) return flash_error_set(err, FLASH_ERR_NOMEM, "dataset 'toy2d': out of memory");
    t->dim = g.dim;
    t->num_classes = g.num_classes;
    t->n[0] = n_train;
    t->n[1] = n_test;
    for (int s = 0; s < 2; s++) {
        t->x[s] = malloc((size_t)t->n[s] * (size_t)t->dim * sizeof(float));
        t->label[s] = malloc((size_t)t->n[s] * sizeof(int));
        if (!t->x[s] || !t->label[s]) {
            toy_destroy(t);
            return flash_error_set(err, FLASH_ERR_NOMEM, "dataset 'toy2d': out of memory for %ld points",
                                   n_train + n_test);
        }
        flash_rng r;
        flash_rng_seed_stream(&r, (uint64_t)seed, (uint64_t)s);
        generate(kind, &g, &r, t->n[s], t->x[s], t->label[s]);
    }
    *self = t;
    return FLASH_OK;
}

static void toy_info(void *self, flash_dataset_info *out)
{
    const toy2d *t = self;
    memset(out, 0, sizeof *out);
    out->ndim = 1;
    out->shape[0] = t->dim;
    out->num_classes = t->num_classes;
    out->n_train = t->n[0];
    out->n_test = t->n[1];
}

static flash_status toy_get(void *self, flash_split split, const int64_t *idx, int n, float *x, int *labels,
                            flash_error *err)
{
    const toy2d *t = self;
    if (split != FLASH_SPLIT_TRAIN && split != FLASH_SPLIT_TEST)
        return flash_error_set(err, FLASH_ERR_USAGE, "dataset 'toy2d': unknown split %d", (int)split);
    int s = split == FLASH_SPLIT_TEST;
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= t->n[s])
            return flash_error_set(err, FLASH_ERR_USAGE, "dataset 'toy2d': index %lld out of range [0, %lld)",
                                   (long long)idx[i], (long long)t->n[s]);
        memcpy(x + (size_t)i * t->dim, t->x[s] + (size_t)idx[i] * t->dim, (size_t)t->dim * sizeof(float));
        if (labels) labels[i] = t->label[s][idx[i]];
    }
    return FLASH_OK;
}

FLASH_COMPONENT_TABLE(flash_dataset_api, toy2d_dataset, FLASH_KIND_DATASET, "toy2d",
                      "2-D toy data: checkerboard, two_moons, swiss_roll, eight_gaussians, gmm samples", toy_keys,
                      toy_create, toy_destroy, .info = toy_info, .get = toy_get)
