/* The evaluator of the classifier-space metrics: see evaluator.h. */
#include "evaluator.h"
#include "flash/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct flash_evaluator {
    const char *who;
    flash_instance model;
    flash_model_info info;
    flash_registry *registry;
    flash_cfg *reference;  /* owned clone of the reference dataset slot */
    char ckpt[4096];
    char device[8];        /* the pipeline's: the network and its context live there */
    int loaded;            /* the checkpoint is read at the first use */
    int split;             /* 0 train, 1 test */
    long reference_n, n, batch;
    char suffix[16];       /* appended to the value names */
    const int *ref_labels; /* the reference's, once read (the cache's) */
};

/* Reference features of one (checkpoint, reference slot, split, count):
 * a process-wide list, so each is computed once. */
typedef struct ref_cache {
    struct ref_cache *next;
    char *key;
    float *feats;
    int *labels; /* NULL when the reference has none */
    long m;
    int dim;
} ref_cache;
static ref_cache *cache_head;

static const char *const splits[] = {"train", "test", NULL};

void flash_evaluator_close(flash_evaluator *e)
{
    if (!e) return;
    flash_instance_destroy(&e->model);
    flash_cfg_free(e->reference);
    free(e);
}

long flash_evaluator_n(const flash_evaluator *e) { return e->n; }

int flash_evaluator_classes(const flash_evaluator *e) { return e->info.out_dim; }

flash_status flash_evaluator_open(const flash_cfg *cfg, flash_env *env, const char *who, flash_evaluator **out,
                                  flash_error *err)
{
    flash_status st;
    long n, rn, batch;
    int split;
    const char *ckpt, *evpath, *suffix;
    if ((st = flash_cfg_str(cfg, "suffix", "", &suffix, err))) return st;
    if (strlen(suffix) > 15)
        return flash_cfg_error(flash_cfg_get(cfg, "suffix"), err, "suffix: at most 15 characters");
    if ((st = flash_cfg_int(cfg, "n", 5000, &n, err))) return st;
    if ((st = flash_cfg_int(cfg, "reference_n", 0, &rn, err))) return st;
    if ((st = flash_cfg_int(cfg, "batch_size", 250, &batch, err))) return st;
    if ((st = flash_cfg_enum(cfg, "split", splits, 1, &split, err))) return st;
    if ((st = flash_cfg_str(cfg, "checkpoint", NULL, &ckpt, err))) return st;
    if ((st = flash_cfg_str(cfg, "evaluator", NULL, &evpath, err))) return st;
    const flash_cfg *ckpt_node = flash_cfg_get(cfg, "checkpoint");
    if ((!ckpt || !ckpt[0]) && env->root) {
        /* the pipeline's shared `evaluator_checkpoint:`, as teacher_checkpoint */
        if ((st = flash_cfg_str(env->root, "evaluator_checkpoint", NULL, &ckpt, err))) return st;
        ckpt_node = flash_cfg_get(env->root, "evaluator_checkpoint");
    }
    if (n < 2) return flash_cfg_error(flash_cfg_get(cfg, "n"), err, "n must be >= 2");
    if (rn < 0) return flash_cfg_error(flash_cfg_get(cfg, "reference_n"), err, "reference_n must be >= 0");
    if (batch < 1 || batch > 100000)
        return flash_cfg_error(flash_cfg_get(cfg, "batch_size"), err, "batch_size must be in [1, 100000]");
    if (!ckpt || !ckpt[0])
        return flash_cfg_error(cfg, err,
                               "metric '%s' needs 'checkpoint' (or the pipeline's 'evaluator_checkpoint'): the "
                               "evaluator's weights",
                               who);

    flash_evaluator *e = calloc(1, sizeof *e);
    if (!e) return flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", who);
    e->who = who;
    e->registry = env->registry;
    snprintf(e->suffix, sizeof e->suffix, "%s", suffix);
    snprintf(e->device, sizeof e->device, "%s", flash_env_device(env));
    e->split = split;
    e->reference_n = rn;
    e->n = n;
    e->batch = batch;
    (void)flash_cfg_resolve_path(ckpt_node, ckpt, e->ckpt, sizeof e->ckpt); /* a long path fails to open */

    flash_cfg *evroot = NULL;
    /* the reference: this slot's, else the pipeline's dataset, else the
     * evaluator config's (the data the evaluator was trained on) */
    const flash_cfg *model = flash_cfg_get(cfg, "model"), *ref = flash_cfg_get(cfg, "reference");
    if (!ref && env->root) ref = flash_cfg_get(env->root, "dataset");
    if (evpath && evpath[0]) {
        char full[4096];
        (void)flash_cfg_resolve_path(flash_cfg_get(cfg, "evaluator"), evpath, full, sizeof full);
        if ((st = flash_cfg_load(full, &evroot, err))) {
            flash_error_prefix(err, "metric '%s': evaluator", who);
            flash_evaluator_close(e);
            return st;
        }
        if (!model) model = flash_cfg_get(evroot, "model");
        if (!ref) ref = flash_cfg_get(evroot, "dataset");
    }
    if (!model && env->root) {
        /* the pipeline's shared `evaluator:` model slot */
        const flash_cfg *shared = flash_cfg_get(env->root, "evaluator");
        if (flash_cfg_kind(shared) == FLASH_CFG_MAP) model = shared;
    }
    if (!model)
        st = flash_cfg_error(cfg, err,
                             "metric '%s' needs 'evaluator' (a config file), 'model', or the pipeline's "
                             "'evaluator:' model slot",
                             who);
    else if (!ref)
        st = flash_cfg_error(cfg, err, "metric '%s' needs 'reference' (a dataset slot) or an 'evaluator' config "
                             "with a dataset", who);
    else if (!(e->reference = flash_cfg_clone(ref)))
        st = flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", who);
    if (!st) st = flash_instance_create(env, FLASH_KIND_MODEL, model, &e->model, err);
    flash_cfg_free(evroot);
    if (st) {
        flash_evaluator_close(e);
        return st;
    }
    const flash_model_api *api = FLASH_API(&e->model, flash_model_api);
    api->info(e->model.self, &e->info);
    if (!api->features || e->info.out_dim < 1 || !api->params || !api->params(e->model.self)) {
        flash_evaluator_close(e);
        return flash_cfg_error(model, err, "metric '%s': the evaluator must be a trained classifier with features",
                               who);
    }
    *out = e;
    return FLASH_OK;
}

flash_status flash_evaluator_check(const flash_evaluator *e, const flash_tensor *samples, long *n, flash_error *err)
{
    if (!samples || samples->ndim != 1 + e->info.ndim || samples->shape[0] < 2)
        return flash_error_set(err, FLASH_ERR_USAGE, "metric '%s': expected at least 2 samples of %d dims", e->who,
                               e->info.ndim);
    for (int j = 0; j < e->info.ndim; j++)
        if (samples->shape[1 + j] != e->info.shape[j])
            return flash_error_set(err, FLASH_ERR_USAGE,
                                   "metric '%s': sample dim %d is %d, the evaluator expects %d", e->who, j + 1,
                                   samples->shape[1 + j], e->info.shape[j]);
    *n = samples->shape[0] < e->n ? samples->shape[0] : e->n;
    return FLASH_OK;
}

/* Every rank's rows of a sharded flash_evaluator_run, on every rank. A rank
 * with no batch learns the feature width from the others. */
static flash_status gather_rows(const flash_evaluator *e, flash_comm *world, long n, float **f, int *fdim, int *pred,
                                flash_error *err)
{
    flash_status st = FLASH_OK;
    if (f) {
        float width[2] = {(float)*fdim, *f ? 1.0f : 0.0f};
        if ((st = flash_comm_allreduce_sum(world, width, 2, err))) return st;
        if (width[1] < 1) return flash_error_set(err, FLASH_ERR_RUNTIME, "metric '%s': no samples", e->who);
        *fdim = (int)(width[0] / width[1] + 0.5f);
        if (!*f && !(*f = calloc((size_t)n * (size_t)*fdim, sizeof **f)))
            return flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", e->who);
        if ((st = flash_comm_allreduce_sum(world, *f, (size_t)n * (size_t)*fdim, err))) return st;
    }
    if (pred) {
        /* class indices are small integers: exact as floats */
        float *pf = malloc((size_t)(n ? n : 1) * sizeof *pf);
        if (!pf) return flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", e->who);
        for (long i = 0; i < n; i++) pf[i] = (float)pred[i];
        st = flash_comm_allreduce_sum(world, pf, (size_t)n, err);
        for (long i = 0; !st && i < n; i++) pred[i] = (int)pf[i];
        free(pf);
    }
    return st;
}

flash_status flash_evaluator_run(flash_evaluator *e, const float *x, long n, float **feats, int *dim, int *pred,
                                 flash_error *err)
{
    const flash_model_api *api = FLASH_API(&e->model, flash_model_api);
    /* read at the first use, so `flash check` validates a pipeline before
     * its evaluator is trained */
    if (!e->loaded) {
        /* loaded on the host, then moved to the pipeline's device */
        flash_status ls = flash_checkpoint_load(e->ckpt, api->params(e->model.self), NULL, err);
        if (ls) {
            flash_error_prefix(err, "evaluator checkpoint");
            return ls;
        }
        if ((ls = flash_params_to_device(api->params(e->model.self), e->device, err))) {
            flash_error_prefix(err, "metric '%s': evaluator", e->who);
            return ls;
        }
        e->loaded = 1;
    }
    size_t per = 1;
    for (int j = 0; j < e->info.ndim; j++) per *= (size_t)e->info.shape[j];
    flash_ctx *c = flash_ctx_create_on(e->device, (size_t)64 << 20, err);
    if (!c) {
        flash_error_prefix(err, "metric '%s'", e->who);
        return err->status ? err->status : FLASH_ERR_NOMEM;
    }
    /* float32 whatever the pipeline's dtype: the features define the metric,
     * and a bf16 run must be measured on the same scale as an fp32 one */
    flash_ctx_set_precision(c, FLASH_PRECISION_FP32, err);
    flash_grad_set(c, false);
    float *f = NULL, *logits = NULL;
    int fdim = 0;
    flash_status st = FLASH_OK;
    if (pred && !(logits = malloc((size_t)e->batch * (size_t)e->info.out_dim * sizeof *logits))) {
        flash_ctx_destroy(c);
        return flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", e->who);
    }
    /* Under mpirun the batches, the same ones on any number of ranks, are
     * shared out in contiguous runs; each row is one rank's and zeros
     * elsewhere, so the sum over ranks is what one process computes, bit
     * for bit (comm.h). */
    flash_error ce = {0};
    flash_comm *world = flash_comm_world(&ce);
    const int ranks = flash_comm_size(world), rank = flash_comm_rank(world);
    const long n_batches = (n + e->batch - 1) / e->batch;
    const long first = n_batches * rank / ranks, end = n_batches * (rank + 1) / ranks;
    if (pred && ranks > 1) memset(pred, 0, (size_t)n * sizeof *pred);
    for (long i = first * e->batch; i < end * e->batch && i < n && !st; i += e->batch) {
        int b = (int)(n - i < e->batch ? n - i : e->batch);
        int shape[FLASH_MAX_DIMS] = {b};
        for (int j = 0; j < e->info.ndim; j++) shape[1 + j] = e->info.shape[j];
        flash_ctx_reset(c);
        flash_tensor *xt = flash_tensor_from(c, 1 + e->info.ndim, shape, x + (size_t)i * per);
        if (feats) {
            flash_tensor *ft = xt ? api->features(e->model.self, c, xt) : NULL;
            if (!ft || !flash_ctx_ok(c)) {
                st = flash_ctx_status(c, err);
                if (!st) st = flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", e->who);
                break;
            }
            if (!f) {
                fdim = (int)(ft->numel / (size_t)b);
                if (!(f = calloc((size_t)n * (size_t)fdim, sizeof *f))) {
                    st = flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", e->who);
                    break;
                }
            }
            st = flash_tensor_to_host(c, ft, f + (size_t)i * fdim, err);
        }
        if (pred && !st) {
            flash_tensor *lt = xt ? api->forward(e->model.self, c, xt, NULL) : NULL;
            if (!lt || !flash_ctx_ok(c)) {
                st = flash_ctx_status(c, err);
                if (!st) st = flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", e->who);
                break;
            }
            int k = e->info.out_dim;
            if (lt->numel != (size_t)b * (size_t)k) {
                st = flash_error_set(err, FLASH_ERR_RUNTIME, "metric '%s': the evaluator gave %zu logits for %d samples",
                                     e->who, lt->numel, b);
                break;
            }
            if ((st = flash_tensor_to_host(c, lt, logits, err))) break;
            for (int r = 0; r < b; r++) {
                const float *l = logits + (size_t)r * k;
                int best = 0;
                for (int j = 1; j < k; j++)
                    if (l[j] > l[best]) best = j;
                pred[i + r] = best;
            }
        }
    }
    flash_ctx_destroy(c);
    free(logits);
    if (!st && ranks > 1) st = gather_rows(e, world, n, feats ? &f : NULL, &fdim, pred, err);
    if (st) {
        free(f);
        return st;
    }
    if (feats) {
        *feats = f;
        *dim = fdim;
    }
    return FLASH_OK;
}

void flash_evaluator_result(const flash_evaluator *e, flash_metric_result *out, const char *name, double value)
{
    char full[32];
    snprintf(full, sizeof full, "%s%s", name, e->suffix);
    flash_metric_result_add(out, full, value);
}

void flash_evaluator_result_tail(const flash_evaluator *e, flash_metric_result *out, const char *name,
                                 const char *tail, double value)
{
    char full[40];
    snprintf(full, sizeof full, "%s%s%s", name, e->suffix, tail);
    flash_metric_result_add(out, full, value);
}

const int *flash_evaluator_reference_labels(flash_evaluator *e) { return e->ref_labels; }

flash_status flash_evaluator_reference(flash_evaluator *e, const float **feats, long *m, int *dim,
                                       flash_error *err)
{
    char *yaml = flash_cfg_to_yaml(e->reference);
    if (!yaml) return flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", e->who);
    size_t len = strlen(e->ckpt) + strlen(yaml) + 64;
    char *key = malloc(len);
    if (!key) {
        free(yaml);
        return flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", e->who);
    }
    snprintf(key, len, "%s\n%s\n%d\n%ld\n%s", e->ckpt, e->device, e->split, e->reference_n, yaml);
    free(yaml);
    for (ref_cache *r = cache_head; r; r = r->next)
        if (strcmp(r->key, key) == 0) {
            free(key);
            *feats = r->feats;
            *m = r->m;
            *dim = r->dim;
            e->ref_labels = r->labels;
            return FLASH_OK;
        }

    flash_env env = {.size = sizeof env, .registry = e->registry};
    flash_instance ds;
    flash_status st = flash_instance_create(&env, FLASH_KIND_DATASET, e->reference, &ds, err);
    if (st) {
        free(key);
        return st;
    }
    const flash_dataset_api *api = FLASH_API(&ds, flash_dataset_api);
    flash_dataset_info info;
    api->info(ds.self, &info);
    long total = (long)(e->split ? info.n_test : info.n_train);
    long cnt = e->reference_n > 0 && e->reference_n < total ? e->reference_n : total;
    size_t per = 1;
    int same = info.ndim == e->info.ndim;
    for (int j = 0; j < info.ndim && same; j++) {
        same = info.shape[j] == e->info.shape[j];
        per *= (size_t)info.shape[j];
    }
    ref_cache *r = NULL;
    float *x = NULL;
    int64_t *idx = NULL;
    if (!same || cnt < 2)
        st = flash_cfg_error(e->reference, err, "metric '%s': the reference's examples do not match the evaluator's "
                             "input, or it has fewer than 2", e->who);
    else if (!(r = calloc(1, sizeof *r)) || !(x = malloc((size_t)cnt * per * sizeof *x)) ||
             !(idx = malloc(1024 * sizeof *idx)) ||
             (info.num_classes > 0 && !(r->labels = malloc((size_t)cnt * sizeof *r->labels))))
        st = flash_error_set(err, FLASH_ERR_NOMEM, "metric '%s': out of memory", e->who);
    for (long i = 0; i < cnt && !st; i += 1024) {
        int b = (int)(cnt - i < 1024 ? cnt - i : 1024);
        for (int j = 0; j < b; j++) idx[j] = i + j;
        st = api->get(ds.self, e->split ? FLASH_SPLIT_TEST : FLASH_SPLIT_TRAIN, idx, b, x + (size_t)i * per,
                      r->labels ? r->labels + i : NULL, err);
    }
    free(idx);
    flash_instance_destroy(&ds);
    if (!st) st = flash_evaluator_run(e, x, cnt, &r->feats, &r->dim, NULL, err);
    free(x);
    if (st) {
        if (r) free(r->labels);
        free(r);
        free(key);
        return st;
    }
    r->key = key;
    e->ref_labels = r->labels;
    r->m = cnt;
    r->next = cache_head;
    cache_head = r;
    *feats = r->feats;
    *m = r->m;
    *dim = r->dim;
    return FLASH_OK;
}
