/* Dataset `npy`: any float32 NPY array of shape (N, C, H, W) or (N, D), with
 * an optional int64 (or int32) labels file of shape (N). Lets a Python user
 * bring data with numpy.save, and lets flash train on its own samples.
 *
 *   dataset: {plugin: npy, path: train.npy, labels: train_labels.npy,
 *             test_path: test.npy, test_labels: test_labels.npy, num_classes: 10}
 *
 * Without test_path the test split is the training split. num_classes
 * defaults to max(label) + 1 (0 without labels).
 */
#include "folder.h"

#include <stdlib.h>
#include <string.h>

typedef struct npyds {
    int ndim; /* 1 or 3 */
    int shape[3];
    int num_classes;
    size_t per; /* floats per example */
    int64_t n[2];
    float *x[2];
    int *lab[2];
    int shared_test; /* test split aliases train */
} npyds;

static void npy_destroy(void *self)
{
    npyds *d = self;
    if (!d) return;
    int splits = d->shared_test ? 1 : 2;
    for (int s = 0; s < splits; s++) {
        free(d->x[s]);
        free(d->lab[s]);
    }
    free(d);
}

static flash_status npy_load_split(npyds *d, int s, const flash_cfg *cfg, const char *xkey, const char *lkey,
                                   flash_error *err)
{
    const char *xpath, *lpath;
    flash_status st;
    if ((st = flash_cfg_str(cfg, xkey, NULL, &xpath, err))) return st;
    if ((st = flash_cfg_str(cfg, lkey, NULL, &lpath, err))) return st;
    const flash_cfg *node = flash_cfg_get(cfg, xkey);

    flash_array a = {0}, l = {0};
    if ((st = flash_npy_read(xpath, &a, err))) {
        flash_error_prefix(err, "npy: %s", xkey);
        return st;
    }
    if (a.dtype != FLASH_F32 || (a.ndim != 2 && a.ndim != 4) || a.shape[0] < 1) {
        st = flash_cfg_error(node, err, "%s: expected a float32 array of shape (N, D) or (N, C, H, W), got %s with %d dims",
                             xpath, flash_dtype_name(a.dtype), a.ndim);
        goto out;
    }
    /* one NaN in the data turns the loss, and every weight after it, into NaN */
    const int64_t bad = flash_array_first_nonfinite(&a);
    if (bad >= 0) {
        const size_t per = flash_array_numel(&a) / (size_t)a.shape[0];
        st = flash_error_set(err, FLASH_ERR_INPUT, "npy: %s: example %lld holds %s (value %lld of it): refused",
                             xpath, (long long)((size_t)bad / per), flash_nonfinite_name(((const float *)a.data)[bad]),
                             (long long)((size_t)bad % per));
        goto out;
    }
    int ndim = a.ndim - 1;
    for (int i = 0; i < ndim; i++)
        if (a.shape[i + 1] < 1 || a.shape[i + 1] > (1 << 20)) {
            st = flash_cfg_error(node, err, "%s: dimension %d has size %lld", xpath, i + 1,
                                 (long long)a.shape[i + 1]);
            goto out;
        }
    if (s == FLASH_SPLIT_TRAIN) {
        d->ndim = ndim;
        d->per = 1;
        for (int i = 0; i < ndim; i++) {
            d->shape[i] = (int)a.shape[i + 1];
            d->per *= (size_t)d->shape[i];
        }
    } else {
        int same = ndim == d->ndim;
        for (int i = 0; same && i < ndim; i++) same = a.shape[i + 1] == d->shape[i];
        if (!same) {
            st = flash_cfg_error(node, err, "%s: example shape differs from the training array's", xpath);
            goto out;
        }
    }
    if (lpath) {
        const flash_cfg *lnode = flash_cfg_get(cfg, lkey);
        if ((st = flash_npy_read(lpath, &l, err))) {
            flash_error_prefix(err, "npy: %s", lkey);
            goto out;
        }
        if ((l.dtype != FLASH_I64 && l.dtype != FLASH_I32) || l.ndim != 1 || l.shape[0] != a.shape[0]) {
            st = flash_cfg_error(lnode, err, "%s: expected int64 labels of shape (%lld), got %s with %d dims", lpath,
                                 (long long)a.shape[0], flash_dtype_name(l.dtype), l.ndim);
            goto out;
        }
        int *lab = malloc((size_t)a.shape[0] * sizeof *lab);
        if (!lab) {
            st = flash_error_set(err, FLASH_ERR_NOMEM, "npy: out of memory");
            goto out;
        }
        for (int64_t i = 0; i < a.shape[0]; i++) {
            int64_t v = l.dtype == FLASH_I64 ? ((const int64_t *)l.data)[i] : ((const int32_t *)l.data)[i];
            if (v < 0 || v > 65535) {
                free(lab);
                st = flash_cfg_error(lnode, err, "%s: label %lld of item %lld is not in [0, 65535]", lpath,
                                     (long long)v, (long long)i);
                goto out;
            }
            lab[i] = (int)v;
        }
        d->lab[s] = lab;
    }
    d->n[s] = a.shape[0];
    d->x[s] = a.data;
    a.data = NULL;
out:
    flash_array_free(&a);
    flash_array_free(&l);
    return st;
}

static flash_status npy_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)env;
    if (!flash_cfg_get(cfg, "path")) return flash_cfg_error(cfg, err, "npy: key 'path' (the data file) is required");
    npyds *d = calloc(1, sizeof *d);
    if (!d) return flash_error_set(err, FLASH_ERR_NOMEM, "npy: out of memory");
    long nc;
    flash_status st = npy_load_split(d, FLASH_SPLIT_TRAIN, cfg, "path", "labels", err);
    if (st) goto fail;
    if (flash_cfg_get(cfg, "test_path")) {
        if ((st = npy_load_split(d, FLASH_SPLIT_TEST, cfg, "test_path", "test_labels", err))) goto fail;
        if (!d->lab[FLASH_SPLIT_TEST] != !d->lab[FLASH_SPLIT_TRAIN]) {
            st = flash_cfg_error(cfg, err, "npy: give labels for both splits or for neither");
            goto fail;
        }
    } else {
        if (flash_cfg_get(cfg, "test_labels")) {
            st = flash_cfg_error(flash_cfg_get(cfg, "test_labels"), err, "npy: test_labels needs test_path");
            goto fail;
        }
        d->shared_test = 1;
        d->n[FLASH_SPLIT_TEST] = d->n[FLASH_SPLIT_TRAIN];
        d->x[FLASH_SPLIT_TEST] = d->x[FLASH_SPLIT_TRAIN];
        d->lab[FLASH_SPLIT_TEST] = d->lab[FLASH_SPLIT_TRAIN];
    }
    int maxl = -1;
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; d->lab[s] && i < d->n[s]; i++)
            if (d->lab[s][i] > maxl) maxl = d->lab[s][i];
    if ((st = flash_cfg_int(cfg, "num_classes", maxl + 1, &nc, err))) goto fail;
    if (nc < 0 || nc > 65536 || (d->lab[0] && nc <= maxl)) {
        st = flash_cfg_error(flash_cfg_get(cfg, "num_classes"), err,
                             "num_classes = %ld but the largest label is %d", nc, maxl);
        goto fail;
    }
    d->num_classes = (int)nc;
    *self = d;
    return FLASH_OK;
fail:
    npy_destroy(d);
    return st;
}

static void npy_info(void *self, flash_dataset_info *out)
{
    const npyds *d = self;
    memset(out, 0, sizeof *out);
    out->ndim = d->ndim;
    memcpy(out->shape, d->shape, sizeof d->shape);
    out->num_classes = d->lab[0] ? d->num_classes : 0;
    out->n_train = d->n[FLASH_SPLIT_TRAIN];
    out->n_test = d->n[FLASH_SPLIT_TEST];
}

static flash_status npy_get(void *self, flash_split split, const int64_t *idx, int n, float *x, int *labels,
                            flash_error *err)
{
    const npyds *d = self;
    if (split != FLASH_SPLIT_TRAIN && split != FLASH_SPLIT_TEST)
        return flash_error_set(err, FLASH_ERR_USAGE, "npy: unknown split %d", (int)split);
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= d->n[split])
            return flash_error_set(err, FLASH_ERR_USAGE, "npy: index %lld outside [0, %lld)", (long long)idx[i],
                                   (long long)d->n[split]);
        if (x) memcpy(x + (size_t)i * d->per, d->x[split] + (size_t)idx[i] * d->per, d->per * sizeof(float));
        if (labels) labels[i] = d->lab[split] ? d->lab[split][idx[i]] : 0;
    }
    return FLASH_OK;
}

static const char *const npy_keys[] = {"path", "labels", "test_path", "test_labels", "num_classes", NULL};

FLASH_COMPONENT_TABLE(flash_dataset_api, npy_dataset, FLASH_KIND_DATASET, "npy",
                      "float32 NPY array (N, C, H, W) or (N, D) with optional int64 labels", npy_keys, npy_create,
                      npy_destroy, .info = npy_info, .get = npy_get)
