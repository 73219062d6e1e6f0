/* The fashion_mnist and npy datasets (plugins/datasets): parsing small IDX
 * and NPY files written here, refusal of malformed ones with a message, and
 * (when installed) the real Fashion-MNIST files. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flash/flash.h"

static flash_registry *reg;
static char dir[256];

static void setup(void)
{
    flash_error err = {0};
    reg = flash_registry_create();
    ck_assert_ptr_nonnull(reg);
    const char *path = FLASH_BINARY_DIR "/lib/flash/plugins/flash_datasets.so";
    ck_assert_msg(flash_registry_load_file(reg, path, &err) == FLASH_OK, "%s", err.msg);
    snprintf(dir, sizeof dir, "/tmp/flash_test_datasets_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    flash_registry_destroy(reg);
}

static flash_status make_dataset(const char *yaml, flash_instance *inst, flash_error *err)
{
    flash_cfg *slot = NULL;
    flash_status st = flash_cfg_parse_string(yaml, "test", &slot, err);
    if (st) return st;
    flash_env env = {.size = sizeof env, .registry = reg, .seed = 0};
    st = flash_instance_create(&env, FLASH_KIND_DATASET, slot, inst, err);
    flash_cfg_free(slot);
    return st;
}

static void put_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    ck_assert_int_eq(fwrite(b, 1, 4, f), 4);
}

/* An IDX file of n items: images (n, rows, cols) when rows > 0, else labels
 * (i mod 10, except the last, which is label_max).
 * payload_bytes < 0 writes the full payload, else only that many bytes. */
static void write_idx(const char *name, uint32_t magic, int n, int rows, int cols, long payload_bytes, int label_max)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    put_be32(f, magic);
    put_be32(f, (uint32_t)n);
    if (rows > 0) {
        put_be32(f, (uint32_t)rows);
        put_be32(f, (uint32_t)cols);
    }
    long total = rows > 0 ? (long)n * rows * cols : n;
    if (payload_bytes >= 0 && payload_bytes < total) total = payload_bytes;
    for (long i = 0; i < total; i++) {
        /* labels: i mod 10, the last one label_max */
        int v = rows > 0 ? (int)((i * 7) % 256) : i == total - 1 ? label_max : (int)(i % 10);
        fputc(v, f);
    }
    ck_assert_int_eq(fclose(f), 0);
}

/* A well-formed set: 5 training and 3 test images. */
static void write_good_set(void)
{
    write_idx("train-images-idx3-ubyte", 0x803, 5, 28, 28, -1, 0);
    write_idx("train-labels-idx1-ubyte", 0x801, 5, 0, 0, -1, 9);
    write_idx("t10k-images-idx3-ubyte", 0x803, 3, 28, 28, -1, 0);
    write_idx("t10k-labels-idx1-ubyte", 0x801, 3, 0, 0, -1, 9);
}

static char yaml_buf[600];

static const char *fm_yaml(const char *extra)
{
    snprintf(yaml_buf, sizeof yaml_buf, "plugin: fashion_mnist\npath: %s\n%s", dir, extra ? extra : "");
    return yaml_buf;
}

START_TEST(test_fmnist_small_files)
{
    write_good_set();
    flash_error err = {0};
    flash_instance d = {0};
    ck_assert_msg(make_dataset(fm_yaml(NULL), &d, &err) == FLASH_OK, "%s", err.msg);
    const flash_dataset_api *api = FLASH_API(&d, flash_dataset_api);
    flash_dataset_info info;
    api->info(d.self, &info);
    ck_assert_int_eq(info.n_train, 5);
    ck_assert_int_eq(info.n_test, 3);
    ck_assert_int_eq(info.num_classes, 10);
    ck_assert_int_eq(info.ndim, 3);
    ck_assert_int_eq(info.shape[0], 1);
    ck_assert_int_eq(info.shape[2], 28);
    int64_t idx[2] = {4, 1};
    float x[2 * 784];
    int lab[2];
    ck_assert_msg(api->get(d.self, FLASH_SPLIT_TRAIN, idx, 2, x, lab, &err) == FLASH_OK, "%s", err.msg);
    ck_assert_int_eq(lab[0], 9); /* the last label is label_max */
    ck_assert_int_eq(lab[1], 1);
    for (int j = 0; j < 784; j++) {
        long i = 4L * 784 + j; /* byte index in the file's payload */
        float want = (float)((i * 7) % 256) / 127.5f - 1.0f;
        ck_assert_float_eq_tol(x[j], want, 1e-6f);
    }
    /* The byte 0 maps to -1 and 255 to 1. */
    float mn = 1, mx = -1;
    for (int j = 0; j < 2 * 784; j++) {
        mn = fminf(mn, x[j]);
        mx = fmaxf(mx, x[j]);
    }
    ck_assert(mn >= -1.0f && mx <= 1.0f);
    int64_t bad = 3;
    ck_assert_int_eq(api->get(d.self, FLASH_SPLIT_TEST, &bad, 1, x, lab, &err), FLASH_ERR_USAGE);
    flash_instance_destroy(&d);

    flash_instance l = {0};
    ck_assert_msg(make_dataset(fm_yaml("limit_train: 2\n"), &l, &err) == FLASH_OK, "%s", err.msg);
    FLASH_API(&l, flash_dataset_api)->info(l.self, &info);
    ck_assert_int_eq(info.n_train, 2);
    flash_instance_destroy(&l);
}
END_TEST

static void expect_refused(const char *needle)
{
    flash_error err = {0};
    flash_instance d = {0};
    flash_status st = make_dataset(fm_yaml(NULL), &d, &err);
    ck_assert_msg(st == FLASH_ERR_INPUT || st == FLASH_ERR_IO, "expected a refusal naming '%s', got status %d: %s", needle, st, err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "'%s' not in: %s", needle, err.msg);
    ck_assert_ptr_null(d.self);
}

START_TEST(test_fmnist_malformed)
{
    write_good_set();
    /* wrong magic */
    write_idx("train-images-idx3-ubyte", 0x802, 5, 28, 28, -1, 0);
    expect_refused("magic");
    /* truncated payload */
    write_idx("train-images-idx3-ubyte", 0x803, 5, 28, 28, 1000, 0);
    expect_refused("truncated");
    /* wrong image size */
    write_idx("train-images-idx3-ubyte", 0x803, 5, 27, 28, -1, 0);
    expect_refused("28, 28");
    /* images and labels disagree in number */
    write_idx("train-images-idx3-ubyte", 0x803, 4, 28, 28, -1, 0);
    expect_refused("4 images but");
    /* a label outside 0..9 */
    write_good_set();
    write_idx("t10k-labels-idx1-ubyte", 0x801, 3, 0, 0, -1, 10);
    expect_refused("not in 0..9");
    /* an image file where labels belong */
    write_good_set();
    write_idx("t10k-labels-idx1-ubyte", 0x803, 3, 28, 28, -1, 0);
    expect_refused("1-D");
    /* a missing file names its path */
    write_good_set();
    char path[512];
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    ck_assert_int_eq(unlink(path), 0);
    expect_refused("t10k-images-idx3-ubyte");
}
END_TEST

START_TEST(test_fmnist_installed)
{
    const char *sys = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
    if (access(sys, R_OK) != 0) {
        fprintf(stderr, "test_fmnist_installed: %s not installed; skipped\n", sys);
        return;
    }
    flash_error err = {0};
    flash_instance d = {0};
    ck_assert_msg(make_dataset("plugin: fashion_mnist\n", &d, &err) == FLASH_OK, "%s", err.msg);
    const flash_dataset_api *api = FLASH_API(&d, flash_dataset_api);
    flash_dataset_info info;
    api->info(d.self, &info);
    ck_assert_int_eq(info.n_train, 60000);
    ck_assert_int_eq(info.n_test, 10000);
    /* Fashion-MNIST's first training and test items are both an ankle boot
     * (class 9); its classes are balanced: 6,000 and 1,000 each. */
    int64_t *idx = malloc(60000 * sizeof *idx);
    int *lab = malloc(60000 * sizeof *lab);
    for (int i = 0; i < 60000; i++) idx[i] = i;
    ck_assert_int_eq(api->get(d.self, FLASH_SPLIT_TRAIN, idx, 60000, NULL, lab, &err), FLASH_OK);
    ck_assert_int_eq(lab[0], 9);
    int count[10] = {0};
    for (int i = 0; i < 60000; i++) count[lab[i]]++;
    for (int k = 0; k < 10; k++) ck_assert_int_eq(count[k], 6000);
    ck_assert_int_eq(api->get(d.self, FLASH_SPLIT_TEST, idx, 1, NULL, lab, &err), FLASH_OK);
    ck_assert_int_eq(lab[0], 9);
    float x[784];
    ck_assert_int_eq(api->get(d.self, FLASH_SPLIT_TEST, idx, 1, x, NULL, &err), FLASH_OK);
    float mn = 1, mx = -1;
    for (int j = 0; j < 784; j++) {
        mn = fminf(mn, x[j]);
        mx = fmaxf(mx, x[j]);
    }
    ck_assert(mn == -1.0f && mx > 0.5f && mx <= 1.0f);
    free(idx);
    free(lab);
    flash_instance_destroy(&d);
}
END_TEST

START_TEST(test_npy_dataset)
{
    flash_error err = {0};
    char xp[512], lp[512], tp[512], bp[512], yaml[2048];
    snprintf(xp, sizeof xp, "%s/x.npy", dir);
    snprintf(lp, sizeof lp, "%s/y.npy", dir);
    snprintf(tp, sizeof tp, "%s/img.npy", dir);
    snprintf(bp, sizeof bp, "%s/bad.npy", dir);
    float x[6 * 2];
    int64_t y[6] = {0, 2, 1, 2, 0, 1};
    for (int i = 0; i < 12; i++) x[i] = (float)i * 0.5f;
    int64_t xs[2] = {6, 2}, ys[1] = {6};
    ck_assert_int_eq(flash_npy_write(xp, FLASH_F32, 2, xs, x, &err), FLASH_OK);
    ck_assert_int_eq(flash_npy_write(lp, FLASH_I64, 1, ys, y, &err), FLASH_OK);

    flash_instance d = {0};
    snprintf(yaml, sizeof yaml, "plugin: npy\npath: %s\nlabels: %s\n", xp, lp);
    ck_assert_msg(make_dataset(yaml, &d, &err) == FLASH_OK, "%s", err.msg);
    const flash_dataset_api *api = FLASH_API(&d, flash_dataset_api);
    flash_dataset_info info;
    api->info(d.self, &info);
    ck_assert_int_eq(info.ndim, 1);
    ck_assert_int_eq(info.shape[0], 2);
    ck_assert_int_eq(info.num_classes, 3);
    ck_assert_int_eq(info.n_train, 6);
    ck_assert_int_eq(info.n_test, 6); /* no test_path: the test split is the training split */
    int64_t idx[2] = {3, 0};
    float out[4];
    int lab[2];
    ck_assert_int_eq(api->get(d.self, FLASH_SPLIT_TEST, idx, 2, out, lab, &err), FLASH_OK);
    ck_assert_float_eq(out[0], 3.0f);
    ck_assert_float_eq(out[1], 3.5f);
    ck_assert_float_eq(out[2], 0.0f);
    ck_assert_int_eq(lab[0], 2);
    ck_assert_int_eq(lab[1], 0);
    flash_instance_destroy(&d);

    /* (N, C, H, W) images without labels */
    float img[2 * 3 * 4 * 4] = {0};
    int64_t is[4] = {2, 3, 4, 4};
    ck_assert_int_eq(flash_npy_write(tp, FLASH_F32, 4, is, img, &err), FLASH_OK);
    snprintf(yaml, sizeof yaml, "plugin: npy\npath: %s\n", tp);
    ck_assert_msg(make_dataset(yaml, &d, &err) == FLASH_OK, "%s", err.msg);
    FLASH_API(&d, flash_dataset_api)->info(d.self, &info);
    ck_assert_int_eq(info.ndim, 3);
    ck_assert_int_eq(info.shape[0], 3);
    ck_assert_int_eq(info.num_classes, 0);
    flash_instance_destroy(&d);

    /* float64 data, labels of the wrong length, a label beyond num_classes,
     * and a missing path are refused. */
    double xd[4] = {0};
    int64_t ds[2] = {2, 2};
    ck_assert_int_eq(flash_npy_write(bp, FLASH_F64, 2, ds, xd, &err), FLASH_OK);
    snprintf(yaml, sizeof yaml, "plugin: npy\npath: %s\n", bp);
    ck_assert_int_eq(make_dataset(yaml, &d, &err), FLASH_ERR_CONFIG);
    ck_assert(strstr(err.msg, "float32") != NULL);
    snprintf(yaml, sizeof yaml, "plugin: npy\npath: %s\nlabels: %s\n", tp, lp);
    ck_assert_int_eq(make_dataset(yaml, &d, &err), FLASH_ERR_CONFIG);
    ck_assert(strstr(err.msg, "labels") != NULL);
    snprintf(yaml, sizeof yaml, "plugin: npy\npath: %s\nlabels: %s\nnum_classes: 2\n", xp, lp);
    ck_assert_int_eq(make_dataset(yaml, &d, &err), FLASH_ERR_CONFIG);
    ck_assert(strstr(err.msg, "num_classes") != NULL);
    snprintf(yaml, sizeof yaml, "plugin: npy\npath: %s/none.npy\n", dir);
    ck_assert(make_dataset(yaml, &d, &err) != FLASH_OK);
    ck_assert(strstr(err.msg, "none.npy") != NULL);
    ck_assert_ptr_null(d.self);
}
END_TEST

static Suite *datasets_suite(void)
{
    Suite *s = suite_create("datasets");
    TCase *tc = tcase_create("datasets");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fmnist_small_files);
    tcase_add_test(tc, test_fmnist_malformed);
    tcase_add_test(tc, test_fmnist_installed);
    tcase_add_test(tc, test_npy_dataset);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(datasets_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
