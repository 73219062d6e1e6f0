/* Strategy `classify`: supervised training of the evaluator.
 *
 * The loss is the mean cross-entropy of the model's logits against the
 * dataset labels. Training batches are augmented by random horizontal flips
 * (probability 1/2 per image, from the strategy's RNG stream); evaluation
 * batches are not. The batch accuracy is logged as `acc` (`test_acc` on the
 * test split). Flips and the accuracy go through host copies
 * (flash_tensor_to_host/_from_host), so the strategy runs on any device.
 */
#include "model_trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct classify {
    model_trainer mt;
    int hflip;
    float *host; /* staging for flips and logits: tensor data may live on a device */
    size_t cap;
} classify;

static void cl_destroy(void *self)
{
    classify *s = self;
    if (!s) return;
    free(s->host);
    model_trainer_close(&s->mt);
    free(s);
}

static float *cl_host(classify *s, size_t n)
{
    if (n <= s->cap) return s->host;
    float *p = realloc(s->host, n * sizeof *p);
    if (!p) return NULL;
    s->host = p;
    s->cap = n;
    return p;
}

static flash_tensor *cl_step(void *self, flash_ctx *c, const train_batch *bt, int64_t iter);

static flash_status cl_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    bool hflip;
    flash_status st = flash_cfg_bool(cfg, "hflip", true, &hflip, err);
    if (st) return st;
    classify *s = calloc(1, sizeof *s);
    if (!s) return flash_error_set(err, FLASH_ERR_NOMEM, "classify: out of memory");
    s->hflip = hflip;
    if ((st = model_trainer_open(&s->mt, env, cl_step, self, s, err))) cl_destroy(s);
    return st;
}

/* Mirrors sample i of host data shaped like x (N, C, H, W) left-right. */
static void flip_sample(const flash_tensor *x, float *data, int i)
{
    const int C = x->shape[1], H = x->shape[2], W = x->shape[3];
    float *p = data + (size_t)i * C * H * W;
    for (int r = 0; r < C * H; r++) {
        float *row = p + (size_t)r * W;
        for (int a = 0, b = W - 1; a < b; a++, b--) {
            float tmp = row[a];
            row[a] = row[b];
            row[b] = tmp;
        }
    }
}

static flash_tensor *cl_step(void *self, flash_ctx *c, const train_batch *bt, int64_t iter)
{
    classify *s = self;
    (void)iter;
    flash_tensor *x = bt->x;
    if (!x) return NULL;
    if (!bt->labels) {
        flash_ctx_fail(c, "classify: the dataset has no labels");
        return NULL;
    }
    const flash_model_api *m = FLASH_API(bt->model, flash_model_api);
    flash_model_info mi;
    m->info(bt->model->self, &mi);
    const int n = x->shape[0];
    for (int i = 0; i < n; i++)
        if (bt->labels[i] < 0 || bt->labels[i] >= mi.out_dim) {
            flash_ctx_fail(c, "classify: label %d of sample %d outside the model's %d classes", bt->labels[i], i,
                           mi.out_dim);
            return NULL;
        }
    if (s->hflip && !bt->eval && x->ndim == 4) {
        float *h = cl_host(s, x->numel);
        flash_error e = {0};
        if (!h || flash_tensor_to_host(c, x, h, &e)) {
            flash_ctx_fail(c, "classify: %s", h ? e.msg : "out of memory");
            return NULL;
        }
        /* one draw per sample of the global batch, this shard's applied */
        const int first = train_batch_first(bt, n);
        for (int g = 0; g < train_batch_global(bt, n); g++)
            if ((flash_rng_u64(bt->rng) >> 63) && g >= first && g < first + n) flip_sample(x, h, g - first);
        if (flash_tensor_from_host(c, x, h, &e)) {
            flash_ctx_fail(c, "classify: %s", e.msg);
            return NULL;
        }
    }

    flash_tensor *logits = m->forward(bt->model->self, c, x, NULL);
    flash_tensor *loss = flash_cross_entropy(c, logits, bt->labels);
    if (!loss) return NULL;
    if (bt->stats && bt->stats->n < FLASH_METRIC_MAX_VALUES) {
        const int K = logits->shape[1];
        float *h = cl_host(s, logits->numel);
        flash_error e = {0};
        if (!h || flash_tensor_to_host(c, logits, h, &e)) {
            flash_ctx_fail(c, "classify: %s", h ? e.msg : "out of memory");
            return NULL;
        }
        int correct = 0;
        for (int i = 0; i < n; i++) {
            const float *row = h + (size_t)i * K;
            int best = 0;
            for (int k = 1; k < K; k++)
                if (row[k] > row[best]) best = k;
            correct += best == bt->labels[i];
        }
        flash_metric_result *r = bt->stats;
        snprintf(r->name[r->n], sizeof r->name[r->n], "acc");
        r->value[r->n++] = (double)correct / n;
    }
    return loss;
}

static const char *const cl_keys[] = {"hflip", NULL};

MODEL_TRAINER_STRATEGY(classify_strategy, "classify",
                       "evaluator training: cross-entropy on dataset labels, random horizontal flips", cl_keys,
                       cl_create, cl_destroy)
