/* The built-in plugins loaded through the registry as a pipeline would:
 * the mse loss against a double-precision sum, toy2d's determinism and
 * distributions (gmm moments, checkerboard parity), and the sliced
 * Wasserstein metric against closed forms and an independent 1-D W2. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flash/flash.h"

static flash_registry *reg;
static flash_error err;

static void setup(void)
{
    reg = flash_registry_create();
    ck_assert_ptr_nonnull(reg);
    memset(&err, 0, sizeof err);
    unsetenv("FLASH_PLUGIN_PATH");
    unsetenv("FLASH_PLUGIN_DIR");
    ck_assert_msg(flash_registry_load_default(reg, NULL, &err) == FLASH_OK, "%s", err.msg);
}

static void teardown(void)
{
    flash_registry_destroy(reg);
}

/* Creates `key` of the YAML text as kind; *root keeps the tree alive. */
static flash_status make(const char *yaml, const char *key, flash_kind kind, flash_instance *inst, flash_cfg **root)
{
    flash_status st = flash_cfg_parse_string(yaml, "t.yaml", root, &err);
    ck_assert_msg(st == FLASH_OK, "%s", err.msg);
    flash_env env = {.size = sizeof env, .registry = reg, .seed = 7, .root = *root};
    return flash_instance_create(&env, kind, flash_cfg_get(*root, key), inst, &err);
}

START_TEST(test_mse_matches_double_sum)
{
    flash_cfg *root;
    flash_instance inst;
    ck_assert_msg(make("loss: {plugin: mse, weight: 0.5}\n", "loss", FLASH_KIND_LOSS, &inst, &root) == FLASH_OK, "%s",
                  err.msg);
    flash_ctx *c = flash_ctx_create(1 << 16);
    ck_assert_ptr_nonnull(c);
    flash_rng r;
    flash_rng_seed(&r, 12345);
    enum { N = 3, D = 7 };
    float p[N * D], t[N * D];
    double ref = 0;
    for (int i = 0; i < N * D; i++) {
        p[i] = (float)(2 * flash_rng_uniform(&r) - 1);
        t[i] = (float)(2 * flash_rng_uniform(&r) - 1);
        ref += ((double)p[i] - t[i]) * ((double)p[i] - t[i]);
    }
    ref = 0.5 * ref / (N * D);
    int shape[2] = {N, D};
    flash_loss_in in = {.size = sizeof in};
    in.pred = flash_tensor_from(c, 2, shape, p);
    in.target = flash_tensor_from(c, 2, shape, t);
    flash_tensor *l = FLASH_API(&inst, flash_loss_api)->compute(inst.self, c, &in);
    ck_assert_msg(flash_ctx_ok(c), "%s", flash_ctx_error(c));
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(l->numel, 1);
    ck_assert_double_eq_tol(l->data[0], ref, 1e-6 * ref);

    /* no target: a sticky error, not a crash */
    in.target = NULL;
    ck_assert_ptr_null(FLASH_API(&inst, flash_loss_api)->compute(inst.self, c, &in));
    ck_assert(!flash_ctx_ok(c));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(c), "mse"));
    flash_ctx_destroy(c);
    flash_instance_destroy(&inst);
    flash_cfg_free(root);
}
END_TEST

static float *all_points(flash_instance *ds, flash_split split, int64_t *n, int **labels)
{
    const flash_dataset_api *api = FLASH_API(ds, flash_dataset_api);
    flash_dataset_info info;
    api->info(ds->self, &info);
    ck_assert_int_eq(info.ndim, 1);
    *n = split == FLASH_SPLIT_TRAIN ? info.n_train : info.n_test;
    int64_t *idx = malloc((size_t)*n * sizeof *idx);
    float *x = malloc((size_t)*n * (size_t)info.shape[0] * sizeof *x);
    *labels = malloc((size_t)*n * sizeof **labels);
    ck_assert(idx && x && *labels);
    for (int64_t i = 0; i < *n; i++) idx[i] = i;
    ck_assert_msg(api->get(ds->self, split, idx, (int)*n, x, *labels, &err) == FLASH_OK, "%s", err.msg);
    free(idx);
    return x;
}

START_TEST(test_toy2d_deterministic)
{
    const char *yaml = "a: {plugin: toy2d, kind: two_moons, n_train: 500, n_test: 100, seed: 3}\n"
                       "b: {plugin: toy2d, kind: two_moons, n_train: 500, n_test: 100, seed: 3}\n"
                       "c: {plugin: toy2d, kind: two_moons, n_train: 500, n_test: 100, seed: 4}\n";
    flash_cfg *ra, *rb, *rc;
    flash_instance a, b, c;
    ck_assert_int_eq(make(yaml, "a", FLASH_KIND_DATASET, &a, &ra), FLASH_OK);
    ck_assert_int_eq(make(yaml, "b", FLASH_KIND_DATASET, &b, &rb), FLASH_OK);
    ck_assert_int_eq(make(yaml, "c", FLASH_KIND_DATASET, &c, &rc), FLASH_OK);
    int64_t na, nb, nc, nt;
    int *la, *lb, *lc, *lt;
    float *xa = all_points(&a, FLASH_SPLIT_TRAIN, &na, &la), *xb = all_points(&b, FLASH_SPLIT_TRAIN, &nb, &lb);
    float *xc = all_points(&c, FLASH_SPLIT_TRAIN, &nc, &lc), *xt = all_points(&a, FLASH_SPLIT_TEST, &nt, &lt);
    ck_assert_int_eq(na, 500);
    ck_assert_int_eq(nt, 100);
    ck_assert_int_eq(memcmp(xa, xb, 500 * 2 * sizeof(float)), 0);
    ck_assert_int_ne(memcmp(xa, xc, 500 * 2 * sizeof(float)), 0);
    ck_assert_int_ne(memcmp(xa, xt, 100 * 2 * sizeof(float)), 0);
    /* an index out of range is an error */
    int64_t bad = 500;
    float one[2];
    ck_assert_int_ne(FLASH_API(&a, flash_dataset_api)->get(a.self, FLASH_SPLIT_TRAIN, &bad, 1, one, NULL, &err),
                     FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "out of range"));
    free(xa), free(xb), free(xc), free(xt), free(la), free(lb), free(lc), free(lt);
    flash_instance_destroy(&a), flash_instance_destroy(&b), flash_instance_destroy(&c);
    flash_cfg_free(ra), flash_cfg_free(rb), flash_cfg_free(rc);
}
END_TEST

START_TEST(test_toy2d_gmm_moments)
{
    const char *yaml = "d:\n  plugin: toy2d\n  kind: gmm\n  n_train: 20000\n  n_test: 10\n"
                       "  weights: [1, 3]\n  means: [[2.0, 0.0], [-2.0, 1.0]]\n  stds: [0.5, 0.25]\n";
    flash_cfg *root;
    flash_instance d;
    ck_assert_msg(make(yaml, "d", FLASH_KIND_DATASET, &d, &root) == FLASH_OK, "%s", err.msg);
    int64_t n;
    int *lab;
    float *x = all_points(&d, FLASH_SPLIT_TRAIN, &n, &lab);
    const double mu[2][2] = {{2, 0}, {-2, 1}}, sd[2] = {0.5, 0.25}, w[2] = {0.25, 0.75};
    double cnt[2] = {0}, s1[2][2] = {{0}}, s2[2][2] = {{0}};
    for (int64_t i = 0; i < n; i++) {
        ck_assert(lab[i] == 0 || lab[i] == 1);
        cnt[lab[i]]++;
        for (int k = 0; k < 2; k++) {
            s1[lab[i]][k] += x[2 * i + k];
            s2[lab[i]][k] += (double)x[2 * i + k] * x[2 * i + k];
        }
    }
    for (int c = 0; c < 2; c++) {
        double frac = cnt[c] / (double)n;
        ck_assert_double_le(fabs(frac - w[c]), 5 * sqrt(w[c] * (1 - w[c]) / (double)n));
        for (int k = 0; k < 2; k++) {
            double m = s1[c][k] / cnt[c], v = s2[c][k] / cnt[c] - m * m;
            ck_assert_double_le(fabs(m - mu[c][k]), 5 * sd[c] / sqrt(cnt[c]));
            ck_assert_double_le(fabs(sqrt(v) / sd[c] - 1), 0.05);
        }
    }
    free(x);
    free(lab);
    flash_instance_destroy(&d);
    flash_cfg_free(root);
}
END_TEST

START_TEST(test_toy2d_gmm_classes)
{
    /* components 0 and 2 are class 1, component 1 is class 0; each
     * component's points sit near its mean, so the label follows from x */
    const char *yaml = "d:\n  plugin: toy2d\n  kind: gmm\n  n_train: 3000\n  n_test: 10\n"
                       "  means: [[-5, 0], [0, 0], [5, 0]]\n  stds: [0.1, 0.1, 0.1]\n  classes: [1, 0, 1]\n";
    flash_cfg *root;
    flash_instance d;
    ck_assert_msg(make(yaml, "d", FLASH_KIND_DATASET, &d, &root) == FLASH_OK, "%s", err.msg);
    flash_dataset_info info;
    FLASH_API(&d, flash_dataset_api)->info(d.self, &info);
    ck_assert_int_eq(info.num_classes, 2);
    int64_t n;
    int *lab;
    float *x = all_points(&d, FLASH_SPLIT_TRAIN, &n, &lab);
    int count[2] = {0};
    for (int64_t i = 0; i < n; i++) {
        ck_assert_int_eq(lab[i], fabsf(x[2 * i]) > 2.5f ? 1 : 0);
        count[lab[i]]++;
    }
    /* equal weights by default: class 1 holds two thirds */
    ck_assert_double_le(fabs(count[1] / (double)n - 2.0 / 3), 5 * sqrt(2.0 / 9 / (double)n));
    free(x);
    free(lab);
    flash_instance_destroy(&d);
    flash_cfg_free(root);
}
END_TEST

START_TEST(test_toy2d_checkerboard_cells)
{
    flash_cfg *root;
    flash_instance d;
    ck_assert_int_eq(make("d: {plugin: toy2d, kind: checkerboard, n_train: 5000, n_test: 10}\n", "d",
                          FLASH_KIND_DATASET, &d, &root),
                     FLASH_OK);
    int64_t n;
    int *lab;
    float *x = all_points(&d, FLASH_SPLIT_TRAIN, &n, &lab);
    int quadrant[4] = {0};
    for (int64_t i = 0; i < n; i++) {
        float a = x[2 * i], b = x[2 * i + 1];
        ck_assert(a >= -4 && a < 4 && b >= -4 && b < 4);
        /* filled cells of side 2 have an even sum of cell indices */
        ck_assert_int_eq(((int)floorf(a / 2) + (int)floorf(b / 2)) & 1, 0);
        quadrant[(a >= 0) * 2 + (b >= 0)]++;
    }
    for (int q = 0; q < 4; q++) ck_assert_int_gt(quadrant[q], 1000);
    free(x);
    free(lab);
    flash_instance_destroy(&d);
    flash_cfg_free(root);
}
END_TEST

START_TEST(test_toy2d_config_errors)
{
    flash_cfg *root;
    flash_instance d;
    ck_assert_int_eq(make("d: {plugin: toy2d, kind: two_moons, means: [[0, 0]]}\n", "d", FLASH_KIND_DATASET, &d, &root),
                     FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "only to kind gmm"));
    flash_cfg_free(root);
    ck_assert_int_eq(make("d: {plugin: toy2d, kind: gmm}\n", "d", FLASH_KIND_DATASET, &d, &root), FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "needs 'means'"));
    flash_cfg_free(root);
    ck_assert_int_eq(make("d:\n  plugin: toy2d\n  kind: gmm\n  means: [[0, 0], [1, 1]]\n  stds: [1]\n", "d",
                          FLASH_KIND_DATASET, &d, &root),
                     FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "t.yaml:5:"));
    ck_assert_ptr_nonnull(strstr(err.msg, "1 stds for 2 components"));
    flash_cfg_free(root);
}
END_TEST

/* Writes an (n, d) float32 NPY in a temp dir and returns its path. */
static char npy_dir[64];
static const char *write_npy(const char *name, const float *x, int64_t n, int64_t d)
{
    static char path[128];
    if (!npy_dir[0]) {
        snprintf(npy_dir, sizeof npy_dir, "/tmp/flash_sw_XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(npy_dir));
    }
    snprintf(path, sizeof path, "%s/%s", npy_dir, name);
    int64_t shape[2] = {n, d};
    ck_assert_msg(flash_npy_write(path, FLASH_F32, 2, shape, x, &err) == FLASH_OK, "%s", err.msg);
    return path;
}

static double sw_of(const char *ref_path, int projections, const float *x, int n, int d)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml, "m: {plugin: sliced_wasserstein, projections: %d, seed: 5, reference: '%s'}\n",
             projections, ref_path);
    flash_cfg *root;
    flash_instance m;
    ck_assert_msg(make(yaml, "m", FLASH_KIND_METRIC, &m, &root) == FLASH_OK, "%s", err.msg);
    int shape[2] = {n, d};
    flash_tensor *t = flash_tensor_alloc(2, shape);
    ck_assert_ptr_nonnull(t);
    memcpy(t->data, x, (size_t)n * (size_t)d * sizeof(float));
    flash_metric_result res = {0};
    ck_assert_msg(FLASH_API(&m, flash_metric_api)->compute(m.self, NULL, t, NULL, &res, &err) == FLASH_OK, "%s",
                  err.msg);
    ck_assert_int_eq(res.n, 1);
    ck_assert_str_eq(res.name[0], "sliced_wasserstein");
    flash_tensor_free(t);
    flash_instance_destroy(&m);
    flash_cfg_free(root);
    return res.value[0];
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

START_TEST(test_sw_one_dimension_is_w2)
{
    /* In 1-D every direction is +-1, so SW equals W2, which for equal sizes is
     * the root mean square difference of the sorted samples. */
    enum { N = 301 };
    float x[N], y[N], xs[N], ys[N];
    flash_rng r;
    flash_rng_seed(&r, 99);
    for (int i = 0; i < N; i++) {
        x[i] = flash_rng_normal(&r);
        y[i] = 0.5f + 2 * (float)flash_rng_uniform(&r);
    }
    memcpy(xs, x, sizeof x);
    memcpy(ys, y, sizeof y);
    qsort(xs, N, sizeof(float), cmp_f);
    qsort(ys, N, sizeof(float), cmp_f);
    double acc = 0;
    for (int i = 0; i < N; i++) acc += ((double)xs[i] - ys[i]) * ((double)xs[i] - ys[i]);
    const char *p = write_npy("ref1d.npy", y, N, 1);
    ck_assert_double_eq_tol(sw_of(p, 8, x, N, 1), sqrt(acc / N), 1e-9);

    /* unequal sizes: {0, 1, 2} against {0, 2}: W2^2 = 1/6 + 1/6 */
    const float a[3] = {0, 1, 2}, b[2] = {0, 2};
    p = write_npy("ref_unequal.npy", b, 2, 1);
    ck_assert_double_eq_tol(sw_of(p, 4, a, 3, 1), sqrt(1.0 / 3), 1e-12);
    /* the same distribution at different sizes: 0 */
    const float c4[4] = {0, 0, 1, 1}, c2[2] = {0, 1};
    p = write_npy("ref_same.npy", c2, 2, 1);
    ck_assert_double_eq_tol(sw_of(p, 4, c4, 4, 1), 0, 1e-12);
}
END_TEST

START_TEST(test_sw_shift_in_two_dimensions)
{
    /* A copy shifted by s has W2 = |theta . s| on each direction; the average
     * over uniform directions on the circle is (2/pi) |s|. */
    enum { N = 200 };
    float y[2 * N], x[2 * N];
    flash_rng r;
    flash_rng_seed(&r, 5);
    for (int i = 0; i < N; i++) {
        y[2 * i] = flash_rng_normal(&r);
        y[2 * i + 1] = flash_rng_normal(&r);
        x[2 * i] = y[2 * i] + 3;
        x[2 * i + 1] = y[2 * i + 1] + 4;
    }
    const char *p = write_npy("ref2d.npy", y, N, 2);
    ck_assert_double_eq_tol(sw_of(p, 64, y, N, 2), 0, 1e-9);
    double v = sw_of(p, 2048, x, N, 2);
    ck_assert_double_eq_tol(v, 2 / M_PI * 5, 0.04 * 2 / M_PI * 5);
}
END_TEST

START_TEST(test_sw_dataset_reference_and_errors)
{
    /* a reference drawn from a toy2d gmm with a tiny spread around (1, -1):
     * samples at (1, -1) are near 0, samples at the origin near (2/pi) sqrt(2) */
    const char *yaml = "m:\n  plugin: sliced_wasserstein\n  projections: 2048\n"
                       "  reference: {plugin: toy2d, kind: gmm, means: [[1, -1]], stds: [0.001], n_test: 500}\n";
    flash_cfg *root;
    flash_instance m;
    ck_assert_msg(make(yaml, "m", FLASH_KIND_METRIC, &m, &root) == FLASH_OK, "%s", err.msg);
    int shape[2] = {4, 2};
    flash_tensor *t = flash_tensor_alloc(2, shape);
    for (int i = 0; i < 4; i++) t->data[2 * i] = 1, t->data[2 * i + 1] = -1;
    flash_metric_result res = {0};
    const flash_metric_api *api = FLASH_API(&m, flash_metric_api);
    ck_assert_int_eq(api->compute(m.self, NULL, t, NULL, &res, &err), FLASH_OK);
    ck_assert_double_lt(res.value[0], 0.002);
    memset(t->data, 0, 8 * sizeof(float));
    ck_assert_int_eq(api->compute(m.self, NULL, t, NULL, &res, &err), FLASH_OK);
    ck_assert_double_eq_tol(res.value[1], 2 / M_PI * sqrt(2), 0.05);
    flash_tensor_free(t);
    /* samples of the wrong width are refused */
    int s3[2] = {2, 3};
    t = flash_tensor_alloc(2, s3);
    ck_assert_int_ne(api->compute(m.self, NULL, t, NULL, &res, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "reference"));
    flash_tensor_free(t);
    flash_instance_destroy(&m);
    flash_cfg_free(root);

    ck_assert_int_eq(make("m: {plugin: sliced_wasserstein}\n", "m", FLASH_KIND_METRIC, &m, &root), FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "needs 'reference'"));
    flash_cfg_free(root);
    ck_assert_int_eq(make("m: {plugin: sliced_wasserstein, reference: /no/such.npy}\n", "m", FLASH_KIND_METRIC, &m,
                          &root),
                     FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "t.yaml:1:"));
    ck_assert_ptr_nonnull(strstr(err.msg, "/no/such.npy"));
    flash_cfg_free(root);
    ck_assert_int_eq(make("m: {plugin: sliced_wasserstein, reference: {plugin: toy2e}}\n", "m", FLASH_KIND_METRIC,
                          &m, &root),
                     FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "did you mean 'toy2d'"));
    flash_cfg_free(root);
}
END_TEST

static void cleanup_npy(void)
{
    if (!npy_dir[0]) return;
    const char *names[] = {"ref1d.npy", "ref_unequal.npy", "ref_same.npy", "ref2d.npy"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s/%s", npy_dir, names[i]);
        unlink(p);
    }
    rmdir(npy_dir);
    npy_dir[0] = '\0';
}

static void teardown_sw(void)
{
    cleanup_npy();
    teardown();
}

static Suite *builtin_suite(void)
{
    Suite *s = suite_create("builtin_plugins");
    TCase *tc = tcase_create("loss_dataset");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_mse_matches_double_sum);
    tcase_add_test(tc, test_toy2d_deterministic);
    tcase_add_test(tc, test_toy2d_gmm_moments);
    tcase_add_test(tc, test_toy2d_gmm_classes);
    tcase_add_test(tc, test_toy2d_checkerboard_cells);
    tcase_add_test(tc, test_toy2d_config_errors);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("metric");
    tcase_add_checked_fixture(tm, setup, teardown_sw);
    tcase_set_timeout(tm, 30);
    tcase_add_test(tm, test_sw_one_dimension_is_w2);
    tcase_add_test(tm, test_sw_shift_in_two_dimensions);
    tcase_add_test(tm, test_sw_dataset_reference_and_errors);
    suite_add_tcase(s, tm);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(builtin_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
