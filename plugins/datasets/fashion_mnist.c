/* Dataset `fashion_mnist`: Zalando's Fashion-MNIST (Xiao et al. 2017),
 * 60,000 training and 10,000 test images of 28x28 grey pixels in 10
 * classes, read from the IDX files Debian's dataset-fashion-mnist installs
 * (gzip or plain; `path` names their directory).
 *
 * Pixels are kept as bytes (47 MB instead of 188 MB of floats) and scaled
 * to [-1, 1] when a batch is copied out: x = p / 127.5 - 1. Every file is
 * checked when the dataset is created: magic, dimensions 28x28, a complete
 * payload (flash_idx_read), matching image and label counts, labels in 0..9.
 */
#include "folder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FMNIST_SIDE 28
#define FMNIST_CLASSES 10

typedef struct fmnist {
    int64_t n[2];
    uint8_t *pix[2]; /* (n, 28, 28) */
    uint8_t *lab[2]; /* (n) */
    int64_t limit[2];
} fmnist;

static void fm_destroy(void *self)
{
    fmnist *d = self;
    if (!d) return;
    for (int s = 0; s < 2; s++) {
        free(d->pix[s]);
        free(d->lab[s]);
    }
    free(d);
}

/* dir/base.gz if it exists, else dir/base (uncompressed copies work too). */
static void fm_path(char *out, size_t n, const char *dir, const char *base)
{
    snprintf(out, n, "%s/%s.gz", dir, base);
    if (access(out, R_OK) == 0) return;
    snprintf(out, n, "%s/%s", dir, base);
    if (access(out, R_OK) == 0) return;
    snprintf(out, n, "%s/%s.gz", dir, base); /* the name the error will show */
}

static flash_status fm_load_split(fmnist *d, int s, const char *dir, const char *prefix, flash_error *err)
{
    char ipath[4096], lpath[4096], base[64];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    fm_path(ipath, sizeof ipath, dir, base);
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    fm_path(lpath, sizeof lpath, dir, base);

    flash_array img = {0}, lab = {0};
    flash_status st = flash_idx_read(ipath, &img, err);
    if (st) goto out;
    if ((st = flash_idx_read(lpath, &lab, err))) goto out;
    if (img.dtype != FLASH_U8 || lab.dtype != FLASH_U8) {
        st = flash_error_set(err, FLASH_ERR_IO, "fashion_mnist: %s: expected unsigned-byte IDX data",
                             img.dtype != FLASH_U8 ? ipath : lpath);
        goto out;
    }
    if (img.ndim != 3 || img.shape[1] != FMNIST_SIDE || img.shape[2] != FMNIST_SIDE) {
        st = flash_error_set(err, FLASH_ERR_IO, "fashion_mnist: %s: expected images of shape (n, 28, 28), got %d dims",
                             ipath, img.ndim);
        goto out;
    }
    if (lab.ndim != 1) {
        st = flash_error_set(err, FLASH_ERR_IO, "fashion_mnist: %s: expected a 1-D label file, got %d dims", lpath,
                             lab.ndim);
        goto out;
    }
    if (img.shape[0] != lab.shape[0]) {
        st = flash_error_set(err, FLASH_ERR_IO, "fashion_mnist: %s has %lld images but %s has %lld labels", ipath,
                             (long long)img.shape[0], lpath, (long long)lab.shape[0]);
        goto out;
    }
    if (img.shape[0] == 0) {
        st = flash_error_set(err, FLASH_ERR_IO, "fashion_mnist: %s holds no images", ipath);
        goto out;
    }
    const uint8_t *l = lab.data;
    for (int64_t i = 0; i < lab.shape[0]; i++)
        if (l[i] >= FMNIST_CLASSES) {
            st = flash_error_set(err, FLASH_ERR_IO, "fashion_mnist: %s: label %d of item %lld is not in 0..9", lpath,
                                 l[i], (long long)i);
            goto out;
        }
    d->n[s] = img.shape[0];
    if (d->limit[s] > 0 && d->limit[s] < d->n[s]) d->n[s] = d->limit[s];
    d->pix[s] = img.data;
    d->lab[s] = lab.data;
    img.data = lab.data = NULL;
out:
    flash_array_free(&img);
    flash_array_free(&lab);
    return st;
}

static flash_status fm_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)env;
    const char *dir;
    long lim_train, lim_test;
    flash_status st;
    if ((st = flash_cfg_str(cfg, "path", "/usr/share/datasets/fashion-mnist", &dir, err))) return st;
    if ((st = flash_cfg_int(cfg, "limit_train", 0, &lim_train, err))) return st;
    if ((st = flash_cfg_int(cfg, "limit_test", 0, &lim_test, err))) return st;
    if (lim_train < 0 || lim_test < 0)
        return flash_cfg_error(flash_cfg_get(cfg, lim_train < 0 ? "limit_train" : "limit_test"), err,
                               "must be >= 0 (0: all)");
    fmnist *d = calloc(1, sizeof *d);
    if (!d) return flash_error_set(err, FLASH_ERR_NOMEM, "fashion_mnist: out of memory");
    d->limit[FLASH_SPLIT_TRAIN] = lim_train;
    d->limit[FLASH_SPLIT_TEST] = lim_test;
    if ((st = fm_load_split(d, FLASH_SPLIT_TRAIN, dir, "train", err)) ||
        (st = fm_load_split(d, FLASH_SPLIT_TEST, dir, "t10k", err))) {
        fm_destroy(d);
        return st;
    }
    *self = d;
    return FLASH_OK;
}

static void fm_info(void *self, flash_dataset_info *out)
{
    const fmnist *d = self;
    memset(out, 0, sizeof *out);
    out->ndim = 3;
    out->shape[0] = 1;
    out->shape[1] = FMNIST_SIDE;
    out->shape[2] = FMNIST_SIDE;
    out->num_classes = FMNIST_CLASSES;
    out->n_train = d->n[FLASH_SPLIT_TRAIN];
    out->n_test = d->n[FLASH_SPLIT_TEST];
}

static flash_status fm_get(void *self, flash_split split, const int64_t *idx, int n, float *x, int *labels,
                           flash_error *err)
{
    const fmnist *d = self;
    if (split != FLASH_SPLIT_TRAIN && split != FLASH_SPLIT_TEST)
        return flash_error_set(err, FLASH_ERR_USAGE, "fashion_mnist: unknown split %d", (int)split);
    const size_t px = FMNIST_SIDE * FMNIST_SIDE;
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= d->n[split])
            return flash_error_set(err, FLASH_ERR_USAGE, "fashion_mnist: index %lld outside [0, %lld) of the %s split",
                                   (long long)idx[i], (long long)d->n[split], split ? "test" : "train");
        const uint8_t *p = d->pix[split] + (size_t)idx[i] * px;
        if (x)
            for (size_t j = 0; j < px; j++) x[(size_t)i * px + j] = (float)p[j] / 127.5f - 1.0f;
        if (labels) labels[i] = d->lab[split][idx[i]];
    }
    return FLASH_OK;
}

static const char *const fm_keys[] = {"path", "limit_train", "limit_test", NULL};

FLASH_COMPONENT_TABLE(flash_dataset_api, fashion_mnist_dataset, FLASH_KIND_DATASET, "fashion_mnist",
                      "Fashion-MNIST 28x28 grey images in [-1, 1] with labels 0..9 (IDX files)", fm_keys, fm_create,
                      fm_destroy, .info = fm_info, .get = fm_get)
