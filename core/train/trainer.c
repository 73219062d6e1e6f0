/* The strategy-independent training loop (see include/flash/trainer.h). */
#include "flash/flash.h"
#include "flash/trainer.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Streams of the run's seed (flash_rng_seed_stream): one per purpose, so
 * adding evaluation or changing the model's initialisation never shifts the
 * data order or the strategy's noise. */
#define TRAIN_STREAM_DATA 0x64617461ull     /* "data" */
#define TRAIN_STREAM_STRATEGY 0x73747274ull /* "strt" */
#define TRAIN_STREAM_EVAL 0x6576616cull     /* "eval" */

static const char *const train_keys[] = {"steps",        "batch_size", "optimizer",   "lr",         "beta1",
                                         "beta2",        "eps",        "weight_decay", "warmup_steps", "lr_schedule",
                                         "min_lr",       "grad_clip",  "ema_decay",   "ckpt_every", "log_every",
                                         "eval_every",   "eval_batches", "device",     NULL};

flash_status flash_train_config_read(const flash_cfg *t, flash_train_config *o, flash_error *err)
{
    static const char *const optimizers[] = {"adam", "adamw", NULL};
    static const char *const schedules[] = {"constant", "cosine", NULL};
    flash_status st;
    long v;
    double d;
    int opt = 0, sched = 0;
    memset(o, 0, sizeof *o);
    if (t && (st = flash_cfg_check_keys(t, "train", train_keys, err))) return st;

#define INT_KEY(key, def, lo, field)                                                                \
    do {                                                                                            \
        if ((st = flash_cfg_int(t, key, def, &v, err))) return st;                                  \
        if (v < (lo)) return flash_cfg_error(flash_cfg_get(t, key), err, "must be >= %ld", (long)(lo)); \
        o->field = v;                                                                               \
    } while (0)
    INT_KEY("steps", 1000, 1, steps);
    INT_KEY("batch_size", 64, 1, batch_size);
    INT_KEY("warmup_steps", 0, 0, warmup_steps);
    INT_KEY("ckpt_every", 1000, 0, ckpt_every);
    INT_KEY("log_every", 50, 1, log_every);
    INT_KEY("eval_every", 0, 0, eval_every);
    INT_KEY("eval_batches", 0, 0, eval_batches);
#undef INT_KEY
    if (o->batch_size > (1 << 20)) return flash_cfg_error(flash_cfg_get(t, "batch_size"), err, "too large");

#define FLOAT_KEY(key, def, lo, hi, field)                                                                      \
    do {                                                                                                        \
        if ((st = flash_cfg_double(t, key, def, &d, err))) return st;                                           \
        if (!(d >= (lo) && d <= (hi)))                                                                          \
            return flash_cfg_error(flash_cfg_get(t, key), err, "must be in [%g, %g], got %g", (double)(lo), (double)(hi), d); \
        o->field = d;                                                                                           \
    } while (0)
    if ((st = flash_cfg_enum(t, "optimizer", optimizers, 0, &opt, err))) return st;
    if ((st = flash_cfg_enum(t, "lr_schedule", schedules, 0, &sched, err))) return st;
    /* where the context and the parameters live (see flash_ctx_create_on) */
    static const char *const devices[] = {"cpu", "cuda", NULL};
    int dev = 0;
    if ((st = flash_cfg_enum(t, "device", devices, 0, &dev, err))) return st;
    snprintf(o->device, sizeof o->device, "%s", devices[dev]);
    o->lr_schedule = (flash_lr_schedule)sched;
    FLOAT_KEY("lr", 2e-4, 0.0, 10.0, adam.lr);
    FLOAT_KEY("beta1", 0.9, 0.0, 0.999999, adam.beta1);
    FLOAT_KEY("beta2", 0.999, 0.0, 0.99999999, adam.beta2);
    FLOAT_KEY("eps", 1e-8, 1e-30, 1.0, adam.eps);
    FLOAT_KEY("weight_decay", opt == 1 ? 0.01 : 0.0, 0.0, 1.0, adam.weight_decay);
    FLOAT_KEY("min_lr", 0.0, 0.0, 10.0, min_lr);
    FLOAT_KEY("grad_clip", 1.0, 0.0, 1e30, grad_clip);
    FLOAT_KEY("ema_decay", 0.999, 0.0, 0.999999999, ema_decay);
#undef FLOAT_KEY
    /* flash_adam_step applies weight decay decoupled (AdamW); plain Adam
     * with an L2 term is not offered, so a decay under `adam` is a mistake. */
    if (opt == 0 && o->adam.weight_decay > 0)
        return flash_cfg_error(flash_cfg_get(t, "weight_decay"), err,
                               "weight decay is decoupled: use optimizer: adamw");
    if (o->min_lr > o->adam.lr)
        return flash_cfg_error(flash_cfg_get(t, "min_lr"), err, "min_lr %g exceeds lr %g", o->min_lr, o->adam.lr);
    if (o->warmup_steps >= o->steps && o->lr_schedule == FLASH_LR_COSINE)
        return flash_cfg_error(flash_cfg_get(t, "warmup_steps"), err,
                               "warmup_steps %lld leaves no steps for the cosine decay (steps = %lld)",
                               (long long)o->warmup_steps, (long long)o->steps);
    return FLASH_OK;
}

float flash_train_lr_at(const flash_train_config *tc, int64_t step)
{
    const double lr = tc->adam.lr;
    if (tc->warmup_steps > 0 && step <= tc->warmup_steps) return (float)(lr * (double)step / (double)tc->warmup_steps);
    if (tc->lr_schedule == FLASH_LR_CONSTANT) return (float)lr;
    /* Cosine (Loshchilov & Hutter 2017, no restarts): lr at the first step
     * after warmup, min_lr at the last. */
    const double span = (double)(tc->steps - tc->warmup_steps);
    double frac = span > 1 ? (double)(step - tc->warmup_steps - 1) / (span - 1) : 1.0;
    if (frac < 0) frac = 0;
    if (frac > 1) frac = 1;
    const double pi = 3.14159265358979323846;
    return (float)(tc->min_lr + 0.5 * (lr - tc->min_lr) * (1.0 + cos(pi * frac)));
}

/* ---- the run ------------------------------------------------------------- */

typedef struct trainer {
    const flash_train_opts *o;
    flash_train_config tc;
    flash_env env;
    flash_instance data, model, schedule, strategy;
    const flash_dataset_api *dapi;
    const flash_model_api *mapi;
    const flash_strategy_api *sapi;
    flash_dataset_info dinfo;
    flash_params *P;
    flash_ctx *ctx;
    flash_batcher batcher;
    int batcher_ready;
    flash_rng rng;
    float *xbuf;
    int *lbuf;
    int64_t *idx;
    size_t per; /* floats per example */
    int shape[FLASH_MAX_DIMS];
    int ndim;
    char ckpt_path[4096], metrics_path[4096];
    flash_jsonl jl;
    int64_t last_ckpt;
} trainer;

static void trainer_free(trainer *T)
{
    flash_jsonl_close(&T->jl);
    if (T->batcher_ready) flash_batcher_free(&T->batcher);
    flash_ctx_destroy(T->ctx);
    free(T->xbuf);
    free(T->lbuf);
    free(T->idx);
    flash_instance_destroy(&T->strategy);
    flash_instance_destroy(&T->model);
    flash_instance_destroy(&T->schedule);
    flash_instance_destroy(&T->data);
}

static flash_status need_slot(const flash_cfg *root, const char *key, const flash_cfg **out, flash_error *err)
{
    *out = flash_cfg_get(root, key);
    if (!*out)
        return flash_cfg_error(root, err, "flash train: the pipeline needs a '%s:' section ({plugin: NAME, ...})",
                               key);
    return FLASH_OK;
}

static flash_status trainer_build(trainer *T, flash_error *err)
{
    const flash_cfg *root = T->o->root, *slot;
    flash_status st;
    long seed;
    if ((st = flash_cfg_int(root, "seed", 0, &seed, err))) return st;
    if ((st = flash_train_config_read(flash_cfg_get(root, "train"), &T->tc, err))) return st;

    T->env.size = sizeof T->env;
    T->env.registry = T->o->registry;
    T->env.seed = (uint64_t)seed;
    T->env.run_dir = T->o->run_dir;
    T->env.root = root;
    T->env.device = T->tc.device; /* components that make their own contexts make them there */

    if ((st = need_slot(root, "dataset", &slot, err))) return st;
    if ((st = flash_instance_create(&T->env, FLASH_KIND_DATASET, slot, &T->data, err))) return st;
    if ((slot = flash_cfg_get(root, "schedule"))) {
        if ((st = flash_instance_create(&T->env, FLASH_KIND_SCHEDULE, slot, &T->schedule, err))) return st;
        T->env.schedule = &T->schedule;
    }
    if ((st = need_slot(root, "model", &slot, err))) return st;
    if ((st = flash_instance_create(&T->env, FLASH_KIND_MODEL, slot, &T->model, err))) return st;
    if ((st = need_slot(root, "strategy", &slot, err))) return st;
    if ((st = flash_instance_create(&T->env, FLASH_KIND_STRATEGY, slot, &T->strategy, err))) return st;

    T->dapi = FLASH_API(&T->data, flash_dataset_api);
    T->mapi = FLASH_API(&T->model, flash_model_api);
    T->sapi = FLASH_API(&T->strategy, flash_strategy_api);
    if (T->strategy.comp->size < offsetof(flash_strategy_api, train_step) + sizeof T->sapi->train_step ||
        !T->sapi->train_step)
        return flash_cfg_error(flash_cfg_get(root, "strategy"), err,
                               "strategy '%s' has no training step (it is a distillation strategy: use flash distill)",
                               T->strategy.comp->name);
    T->P = T->mapi->params ? T->mapi->params(T->model.self) : NULL;
    if (!T->P || flash_params_count(T->P) == 0)
        return flash_cfg_error(flash_cfg_get(root, "model"), err, "model '%s' has no parameters to train",
                               T->model.comp->name);

    T->dapi->info(T->data.self, &T->dinfo);
    flash_model_info mi;
    T->mapi->info(T->model.self, &mi);
    int same = mi.ndim == T->dinfo.ndim;
    for (int i = 0; same && i < mi.ndim; i++) same = mi.shape[i] == T->dinfo.shape[i];
    if (!same)
        return flash_cfg_error(flash_cfg_get(root, "model"), err,
                               "model '%s' takes examples of %d dims (%d, %d, %d) but dataset '%s' has %d dims (%d, %d, %d)",
                               T->model.comp->name, mi.ndim, mi.shape[0], mi.shape[1], mi.shape[2],
                               T->data.comp->name, T->dinfo.ndim, T->dinfo.shape[0], T->dinfo.shape[1],
                               T->dinfo.shape[2]);
    if (T->dinfo.n_train < 1)
        return flash_cfg_error(flash_cfg_get(root, "dataset"), err, "dataset '%s' has no training examples",
                               T->data.comp->name);

    T->ndim = 1 + T->dinfo.ndim;
    T->per = 1;
    for (int i = 0; i < T->dinfo.ndim; i++) {
        T->shape[1 + i] = T->dinfo.shape[i];
        T->per *= (size_t)T->dinfo.shape[i];
    }
    const size_t B = (size_t)T->tc.batch_size;
    T->xbuf = malloc(B * T->per * sizeof(float));
    T->lbuf = malloc(B * sizeof(int));
    T->idx = malloc(B * sizeof(int64_t));
    T->ctx = flash_ctx_create_on(T->tc.device, (size_t)64 << 20, err);
    if (!T->ctx) {
        const flash_cfg *key = flash_cfg_get(flash_cfg_get(root, "train"), "device");
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return key ? flash_cfg_error(key, err, "%s", why) : FLASH_ERR_RUNTIME;
    }
    if (!T->xbuf || !T->lbuf || !T->idx)
        return flash_error_set(err, FLASH_ERR_NOMEM, "flash train: out of memory for a batch of %zu", B);

    flash_rng s;
    flash_rng_seed_stream(&s, T->env.seed, TRAIN_STREAM_DATA);
    if ((st = flash_batcher_init(&T->batcher, T->dinfo.n_train, flash_rng_u64(&s), err))) return st;
    T->batcher_ready = 1;
    flash_rng_seed_stream(&T->rng, T->env.seed, TRAIN_STREAM_STRATEGY);
    return FLASH_OK;
}


static flash_status save_ckpt(trainer *T, int64_t step, flash_error *err)
{
    flash_ckpt_info info = {.step = step, .rng = T->rng, .config_yaml = flash_cfg_to_yaml(T->o->root)};
    if (!info.config_yaml) return flash_error_set(err, FLASH_ERR_NOMEM, "flash train: cannot serialise the config");
    /* checkpoints are written from host memory: parameters on a device
     * visit the CPU for the write */
    const bool dev = strcmp(T->tc.device, "cpu") != 0;
    flash_status st = dev ? flash_params_to_device(T->P, "cpu", err) : FLASH_OK;
    if (st == FLASH_OK) st = flash_checkpoint_save(T->ckpt_path, T->P, &info, err);
    if (dev) {
        flash_error e2 = {0};
        flash_status s2 = flash_params_to_device(T->P, T->tc.device, &e2);
        if (st == FLASH_OK && s2) {
            *err = e2;
            st = s2;
        }
    }
    free(info.config_yaml);
    if (st == FLASH_OK) T->last_ckpt = step;
    return st;
}

static void json_append(char *buf, size_t cap, size_t *len, const char *fmt, ...) FLASH_PRINTF(4, 5);

static void json_append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (w > 0) *len += (size_t)w;
}

/* %.9g keeps every float bit, so two runs' curves compare exactly. */
static void append_stats(char *buf, size_t cap, size_t *len, const flash_metric_result *r, const char *prefix)
{
    for (int i = 0; i < r->n; i++) json_append(buf, cap, len, ", \"%s%s\": %.9g", prefix, r->name[i], r->value[i]);
}

/* Mean loss and stats over the test split (or its first eval_batches
 * batches), with the EMA weights when there are any, without gradients and
 * from a fresh RNG stream, so evaluating never changes the training run. */
static flash_status run_eval(trainer *T, int64_t step, flash_error *err)
{
    const int64_t n_test = T->dinfo.n_test;
    if (n_test < 1) return FLASH_OK;
    const int B = T->tc.batch_size;
    int64_t n = n_test;
    if (T->tc.eval_batches > 0 && T->tc.eval_batches * B < n) n = T->tc.eval_batches * B;
    flash_rng erng;
    flash_rng_seed_stream(&erng, T->env.seed, TRAIN_STREAM_EVAL);
    const int use_ema = T->tc.ema_decay > 0 && flash_params_ema(T->P) != NULL;
    flash_status st = FLASH_OK;
    if (use_ema && (st = flash_params_swap_ema(T->P, err))) return st;
    double loss_sum = 0;
    flash_metric_result acc = {0};
    bool was = flash_grad_set(T->ctx, false);
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        int nb = (int)(n - i0 < B ? n - i0 : B);
        for (int i = 0; i < nb; i++) T->idx[i] = i0 + i;
        const int labelled = T->dinfo.num_classes > 0;
        if ((st = T->dapi->get(T->data.self, FLASH_SPLIT_TEST, T->idx, nb, T->xbuf, labelled ? T->lbuf : NULL, err)))
            break;
        flash_ctx_reset(T->ctx);
        T->shape[0] = nb;
        flash_metric_result stats = {0};
        flash_train_batch b = {.size = sizeof b, .model = &T->model, .schedule = T->env.schedule,
                               .x = flash_tensor_from(T->ctx, T->ndim, T->shape, T->xbuf),
                               .labels = labelled ? T->lbuf : NULL, .num_classes = T->dinfo.num_classes,
                               .rng = &erng, .stats = &stats, .eval = 1};
        flash_tensor *loss = T->sapi->train_step(T->strategy.self, T->ctx, &b, step);
        if (!loss || !flash_ctx_ok(T->ctx)) {
            st = flash_ctx_status(T->ctx, err);
            if (st == FLASH_OK) st = flash_error_set(err, FLASH_ERR_RUNTIME, "evaluation returned no loss");
            flash_error_prefix(err, "flash train: evaluation at step %lld", (long long)step);
            break;
        }
        float lh = 0;
        if ((st = flash_tensor_to_host(T->ctx, loss, &lh, err))) break;
        loss_sum += (double)lh * nb;
        for (int k = 0; k < stats.n; k++) {
            if (k >= acc.n) {
                memcpy(acc.name[k], stats.name[k], sizeof acc.name[k]);
                acc.value[k] = 0;
                acc.n = k + 1;
            }
            acc.value[k] += stats.value[k] * nb;
        }
    }
    flash_grad_set(T->ctx, was);
    if (use_ema) {
        flash_error e2 = {0};
        flash_status s2 = flash_params_swap_ema(T->P, &e2);
        if (st == FLASH_OK && s2) {
            *err = e2;
            st = s2;
        }
    }
    if (st) return st;
    for (int k = 0; k < acc.n; k++) acc.value[k] /= (double)n;
    char line[1024];
    size_t len = 0;
    json_append(line, sizeof line, &len, "\"step\": %lld, \"test_loss\": %.9g, \"test_examples\": %lld",
                (long long)step, loss_sum / (double)n, (long long)n);
    append_stats(line, sizeof line, &len, &acc, "test_");
    flash_jsonl_write(&T->jl, "%s", line);
    char msg[512];
    size_t ml = 0;
    json_append(msg, sizeof msg, &ml, "step %lld: test loss %.5g", (long long)step, loss_sum / (double)n);
    for (int k = 0; k < acc.n; k++) json_append(msg, sizeof msg, &ml, ", test %s %.5g", acc.name[k], acc.value[k]);
    flash_info("%s (%lld examples%s)", msg, (long long)n, use_ema ? ", EMA weights" : "");
    return FLASH_OK;
}

/* The guard: a non-finite loss or gradient stops the run before the
 * update, so the parameters and the last checkpoint stay good. */
flash_status flash_train_update(flash_ctx *c, flash_params *P, flash_tensor *loss, const flash_train_config *tc,
                                int64_t step, const char *who, double *loss_value, double *grad_norm, double *lr,
                                const char **bad, flash_error *err)
{
    *bad = NULL;
    *grad_norm = 0;
    *lr = 0;
    float lh = 0;
    flash_status st = flash_tensor_to_host(c, loss, &lh, err);
    if (st) return st;
    *loss_value = lh;
    if (!isfinite(*loss_value)) {
        *bad = "the loss";
        return FLASH_OK;
    }
    flash_params_zero_grad(P);
    if ((st = flash_backward(c, loss, err))) {
        flash_error_prefix(err, "%s: step %lld: backward", who, (long long)step);
        return st;
    }
    if (!flash_params_grad_finite(P)) {
        *bad = "the gradient norm";
        *grad_norm = flash_params_clip_grad(P, 0);
        return FLASH_OK;
    }
    *grad_norm = flash_params_clip_grad(P, tc->grad_clip);
    flash_adam opt = tc->adam;
    opt.lr = flash_train_lr_at(tc, step);
    *lr = opt.lr;
    if ((st = flash_adam_step(P, &opt, step, err))) return st;
    if (tc->ema_decay > 0 && (st = flash_params_ema_update(P, tc->ema_decay, err))) return st;
    return FLASH_OK;
}

static flash_status guard_fail(trainer *T, int64_t step, const char *what, double v, flash_error *err)
{
    const char *value = isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf";
    if (T->last_ckpt > 0)
        return flash_error_set(err, FLASH_ERR_RUNTIME,
                               "flash train: step %lld: %s is %s; stopped before updating. The last good checkpoint "
                               "is %s (step %lld); check the data, lower train.lr or tighten train.grad_clip, then --resume",
                               (long long)step, what, value, T->ckpt_path, (long long)T->last_ckpt);
    return flash_error_set(err, FLASH_ERR_RUNTIME,
                           "flash train: step %lld: %s is %s; stopped before updating (no checkpoint was written yet)",
                           (long long)step, what, value);
}

static flash_status trainer_loop(trainer *T, int64_t start, flash_error *err)
{
    const flash_train_config *tc = &T->tc;
    const int B = tc->batch_size;
    const int labelled = T->dinfo.num_classes > 0;
    flash_progress prog;
    if (T->o->progress) flash_progress_begin(&prog, "train", start, tc->steps);
    double t_log = flash_now(), loss_acc = 0;
    int64_t n_acc = 0;
    flash_status st = FLASH_OK;

    for (int64_t step = start + 1; step <= tc->steps; step++) {
        flash_batcher_next(&T->batcher, T->idx, B);
        if ((st = T->dapi->get(T->data.self, FLASH_SPLIT_TRAIN, T->idx, B, T->xbuf, labelled ? T->lbuf : NULL, err)))
            break;
        flash_ctx_reset(T->ctx);
        T->shape[0] = B;
        flash_metric_result stats = {0};
        flash_train_batch b = {.size = sizeof b, .model = &T->model, .schedule = T->env.schedule,
                               .x = flash_tensor_from(T->ctx, T->ndim, T->shape, T->xbuf),
                               .labels = labelled ? T->lbuf : NULL, .num_classes = T->dinfo.num_classes,
                               .rng = &T->rng, .stats = &stats, .eval = 0};
        flash_tensor *loss = T->sapi->train_step(T->strategy.self, T->ctx, &b, step);
        if (!loss || !flash_ctx_ok(T->ctx)) {
            st = flash_ctx_status(T->ctx, err);
            if (st == FLASH_OK)
                st = flash_error_set(err, FLASH_ERR_RUNTIME, "strategy '%s' returned no loss", T->strategy.comp->name);
            flash_error_prefix(err, "flash train: step %lld", (long long)step);
            break;
        }
        double lv = 0, gnorm = 0, lr = 0;
        const char *bad = NULL;
        if ((st = flash_train_update(T->ctx, T->P, loss, tc, step, "flash train", &lv, &gnorm, &lr, &bad, err)))
            break;
        if (bad) {
            st = guard_fail(T, step, bad, isfinite(lv) ? gnorm : lv, err);
            break;
        }

        loss_acc += lv;
        n_acc++;
        if (step % tc->log_every == 0 || step == tc->steps) {
            double now = flash_now();
            char line[1024];
            size_t len = 0;
            json_append(line, sizeof line, &len,
                        "\"step\": %lld, \"loss\": %.9g, \"loss_avg\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
                        "\"step_s\": %.4f",
                        (long long)step, lv, loss_acc / (double)n_acc, lr, gnorm, (now - t_log) / (double)n_acc);
            append_stats(line, sizeof line, &len, &stats, "");
            flash_jsonl_write(&T->jl, "%s", line);
            t_log = now;
            loss_acc = 0;
            n_acc = 0;
        }
        if (T->o->progress) flash_progress_update(&prog, step, "loss %.4f | lr %.2e", lv, lr);
        /* Evaluation before the checkpoint: a run killed between the two
         * resumes from the previous checkpoint and repeats both. */
        if (((tc->eval_every > 0 && step % tc->eval_every == 0) || step == tc->steps) &&
            (st = run_eval(T, step, err)))
            break;
        if ((tc->ckpt_every > 0 && step % tc->ckpt_every == 0) || step == tc->steps) {
            if ((st = save_ckpt(T, step, err))) break;
        }
    }
    if (T->o->progress) flash_progress_end(&prog);
    return st;
}

flash_status flash_train_run(const flash_train_opts *o, flash_error *err)
{
    if (!o || o->size < sizeof *o || !o->root || !o->registry || !o->run_dir)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_train_run: incomplete options");
    trainer T;
    memset(&T, 0, sizeof T);
    T.o = o;
    flash_status st = flash_mkdirs(o->run_dir, err);
    if (st) goto out;
    snprintf(T.ckpt_path, sizeof T.ckpt_path, "%s/%s", o->run_dir, FLASH_RUN_CHECKPOINT);
    snprintf(T.metrics_path, sizeof T.metrics_path, "%s/%s", o->run_dir, FLASH_RUN_METRICS);
    if ((st = trainer_build(&T, err))) goto out;

    int64_t start = 0;
    struct stat sb;
    const int have_ckpt = stat(T.ckpt_path, &sb) == 0;
    if (o->resume) {
        if (!have_ckpt) {
            st = flash_error_set(err, FLASH_ERR_USAGE, "flash train --resume: no checkpoint at %s", T.ckpt_path);
            goto out;
        }
        flash_ckpt_info info = {0};
        if ((st = flash_checkpoint_load(T.ckpt_path, T.P, &info, err))) goto out;
        free(info.config_yaml);
        start = info.step;
        T.rng = info.rng;
        T.last_ckpt = start;
        flash_batcher_skip(&T.batcher, start, T.tc.batch_size);
        if ((st = flash_jsonl_truncate(T.metrics_path, start, err))) goto out;
        flash_info("resuming %s at step %lld of %lld", o->run_dir, (long long)start, (long long)T.tc.steps);
    } else {
        if (have_ckpt) {
            st = flash_error_set(err, FLASH_ERR_USAGE,
                                 "flash train: %s already holds a checkpoint; continue it with --resume or choose "
                                 "another --out",
                                 o->run_dir);
            goto out;
        }
        if (remove(T.metrics_path) != 0 && errno != ENOENT) {
            st = flash_error_set(err, FLASH_ERR_IO, "flash train: cannot remove the old %s", T.metrics_path);
            goto out;
        }
    }
    /* after a resume's load, which writes the parameters on the host */
    if ((st = flash_params_to_device(T.P, T.tc.device, err))) goto out;
    if ((st = flash_jsonl_open(&T.jl, T.metrics_path, err))) goto out;
    flash_info("training %s (%zu parameters) on %s with %s: %lld steps of %d, %d threads, device %s",
               T.model.comp->name, flash_params_count(T.P), T.data.comp->name, T.strategy.comp->name,
               (long long)T.tc.steps, T.tc.batch_size, flash_get_threads(), T.tc.device);
    if (start >= T.tc.steps) {
        flash_info("the checkpoint is at step %lld: nothing left to train", (long long)start);
        goto out;
    }
    st = trainer_loop(&T, start, err);
out:
    trainer_free(&T);
    return st;
}
