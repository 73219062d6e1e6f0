/* The training loop (include/flash/trainer.h), the same for every method:
 * the strategy (include/flash/strategy.h) is the only difference between
 * `flash train` and `flash distill`. */
#include "flash/flash.h"
#include "flash/comm.h"
#include "flash/schema.h"
#include "flash/trainer.h"
#include "tensor/tensor_internal.h" /* flash_host_alloc: labels are host memory on every device */
#include "train/checkpoint_internal.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Streams of the run's seed (flash_rng_seed_stream): one per purpose, so
 * adding evaluation or changing a model's initialisation never shifts the
 * data order or the strategy's draws. A strategy may reseed its stream
 * (run->rng) when it is asked for its trained parameters. */
#define TRAIN_STREAM_DATA 0x64617461ull     /* "data" */
#define TRAIN_STREAM_STRATEGY 0x73747274ull /* "strt" */
#define TRAIN_STREAM_EVAL 0x6576616cull     /* "eval" */

#define LOOP_MAX_TRACKED 16

/* ---- settings ------------------------------------------------------------- */

flash_status flash_train_config_read(const flash_cfg *t, flash_train_config *o, flash_error *err)
{
    static const char *const optimizers[] = {"adam", "adamw", NULL};
    static const char *const schedules[] = {"constant", "cosine", NULL};
    flash_status st;
    long v;
    double d;
    int opt = 0, sched = 0;
    memset(o, 0, sizeof *o);
    const flash_cfg *dev = flash_cfg_get(t, "device");
    if (dev)
        return flash_cfg_error(dev, err, "train.device moved to the pipeline's top-level `device:` key "
                                         "(one device for the whole run)");
    if (t && (st = flash_cfg_check_keys(t, "train", flash_schema_keys("train"), err))) return st;

#define INT_KEY(key, def, lo, field)                                                                \
    do {                                                                                            \
        if ((st = flash_cfg_int(t, key, def, &v, err))) return st;                                  \
        if (v < (lo)) return flash_cfg_error(flash_cfg_get(t, key), err, "must be >= %ld", (long)(lo)); \
        o->field = v;                                                                               \
    } while (0)
    INT_KEY("steps", 1000, 1, steps);
    if ((st = flash_cfg_int(t, "batch_size", 64, &v, err))) return st;
    if (v > (1 << 20)) return flash_cfg_error(flash_cfg_get(t, "batch_size"), err, "must be <= %d, got %ld", 1 << 20, v);
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
    /* snapshots: steps at which the trained weights are kept (trainer.h) */
    long snaps[FLASH_TRAIN_MAX_SNAPSHOTS];
    size_t ns = 0;
    if ((st = flash_cfg_ints(t, "snapshots", snaps, FLASH_TRAIN_MAX_SNAPSHOTS, &ns, err))) return st;
    for (size_t i = 0; i < ns; i++) {
        const flash_cfg *item = flash_cfg_at(flash_cfg_get(t, "snapshots"), i);
        if (snaps[i] < 1) return flash_cfg_error(item, err, "a snapshot is a training step >= 1, got %ld", snaps[i]);
        if (i > 0 && snaps[i] <= snaps[i - 1])
            return flash_cfg_error(item, err, "snapshots must increase: %ld after %ld", snaps[i], snaps[i - 1]);
        if (snaps[i] > o->steps)
            return flash_cfg_error(item, err, "snapshot at step %ld is beyond train.steps (%lld)", snaps[i],
                                   (long long)o->steps);
        o->snapshots[i] = snaps[i];
    }
    o->n_snapshots = (int)ns;
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

/* ---- the run's state ------------------------------------------------------- */

typedef struct tracked {
    char name[64];
    flash_params *p;
} tracked;

typedef struct loop {
    const flash_train_opts *o;
    const char *who;
    flash_train_config tc;
    char device[8];
    flash_env env;
    flash_run run;
    flash_instance data, schedule, strategy;
    const flash_strategy_api *sapi;
    flash_dataset_info dinfo;
    int have_data;
    flash_params *P;
    flash_ctx *ctx;
    flash_rng rng;
    flash_batcher batcher;
    int batcher_ready;
    float *xbuf;
    int *lbuf;
    int64_t *idx;
    int cap;
    int64_t eval_i0; /* the evaluation's current test batch: [eval_i0, eval_i0 + eval_n) */
    int eval_n;
    tracked aux[LOOP_MAX_TRACKED];
    int n_aux;
    char ckpt_path[4096], metrics_path[4096];
    flash_jsonl jl;
    int64_t last_ckpt;
    /* data parallel (comm.h): this rank trains on rows [rank * n, (rank + 1) * n)
     * of every global batch, n = train.batch_size / ranks */
    flash_comm *comm;
    int rank, ranks;
    bool said_sum; /* the gradient sum's path (mpi, nccl, host) was logged */
    /* what the gradient sum costs (ranks > 1): its wall time and the
     * floats it summed, against the steps' wall time; logged at the end */
    double t_allreduce, t_steps;
    size_t allreduce_floats;
} loop;

static void loop_free(loop *L)
{
    if (!L) return;
    flash_jsonl_close(&L->jl);
    /* the strategy first: its models may hold contexts on the device */
    flash_instance_destroy(&L->strategy);
    if (L->batcher_ready) flash_batcher_free(&L->batcher);
    flash_ctx_destroy(L->ctx);
    free(L->xbuf);
    free(L->lbuf);
    free(L->idx);
    flash_instance_destroy(&L->data);
    flash_instance_destroy(&L->schedule);
}

static flash_status reserve(loop *L, flash_ctx *c, int n)
{
    if (n <= L->cap) return FLASH_OK;
    size_t per = 1;
    for (int i = 0; i < L->dinfo.ndim; i++) per *= (size_t)L->dinfo.shape[i];
    float *xb = realloc(L->xbuf, (size_t)n * per * sizeof *xb);
    if (xb) L->xbuf = xb;
    int *lb = realloc(L->lbuf, (size_t)n * sizeof *lb);
    if (lb) L->lbuf = lb;
    int64_t *ib = realloc(L->idx, (size_t)n * sizeof *ib);
    if (ib) L->idx = ib;
    if (!xb || !lb || !ib) {
        flash_ctx_fail(c, "%s: out of memory for %d examples", L->who, n);
        return FLASH_ERR_NOMEM;
    }
    L->cap = n;
    return FLASH_OK;
}

/* Reads examples L->idx[0..n) of split into the context as (n, shape...). */
static flash_status fetch(loop *L, flash_ctx *c, flash_split split, int n, flash_tensor **x, const int **labels)
{
    flash_error e = {0};
    const flash_dataset_api *api = FLASH_API(&L->data, flash_dataset_api);
    const int labelled = L->dinfo.num_classes > 0;
    if (api->get(L->data.self, split, L->idx, n, L->xbuf, labelled ? L->lbuf : NULL, &e)) {
        flash_ctx_fail(c, "dataset '%s': %s", L->data.comp->name, e.msg);
        return e.status ? e.status : FLASH_ERR_IO;
    }
    int shape[FLASH_MAX_DIMS] = {n};
    for (int i = 0; i < L->dinfo.ndim; i++) shape[1 + i] = L->dinfo.shape[i];
    *x = flash_tensor_from(c, 1 + L->dinfo.ndim, shape, L->xbuf);
    if (labels && labelled) {
        int *y = flash_host_alloc(c, (size_t)n * sizeof *y);
        if (!y) return FLASH_ERR_NOMEM;
        memcpy(y, L->lbuf, (size_t)n * sizeof *y);
        *labels = y;
    }
    return *x ? FLASH_OK : FLASH_ERR_NOMEM;
}

static loop *run_loop(flash_run *run, flash_ctx *c)
{
    loop *L = run ? run->priv : NULL;
    if (!L || !L->have_data) {
        if (c) flash_ctx_fail(c, "this pipeline needs real data: add a `dataset:` slot");
        return NULL;
    }
    return L;
}

flash_status flash_run_batch(flash_run *run, flash_ctx *c, flash_tensor **x, const int **labels)
{
    *x = NULL;
    if (labels) *labels = NULL;
    loop *L = run_loop(run, c);
    if (!L) return FLASH_ERR_CONFIG;
    /* evaluation runs whole on every rank; training batches are the
     * global batch's order, this rank's rows */
    const int n = run->eval ? L->eval_n : L->tc.batch_size;
    flash_status st = reserve(L, c, n);
    if (st) return st;
    if (run->eval) {
        for (int i = 0; i < n; i++) L->idx[i] = L->eval_i0 + i;
        return fetch(L, c, FLASH_SPLIT_TEST, n, x, labels);
    }
    flash_batcher_next(&L->batcher, L->idx, n);
    const int local = n / L->ranks;
    memmove(L->idx, L->idx + (size_t)L->rank * local, (size_t)local * sizeof *L->idx);
    return fetch(L, c, FLASH_SPLIT_TRAIN, local, x, labels);
}

flash_status flash_run_draw(flash_run *run, flash_ctx *c, int n, flash_tensor **x, const int **labels)
{
    return flash_run_draw_from(run, c, run ? run->rng : NULL, n, x, labels);
}

flash_status flash_run_draw_from(flash_run *run, flash_ctx *c, flash_rng *rng, int n, flash_tensor **x,
                                 const int **labels)
{
    *x = NULL;
    if (labels) *labels = NULL;
    loop *L = run_loop(run, c);
    if (!L) return FLASH_ERR_CONFIG;
    const int global = n * L->ranks;
    flash_status st = reserve(L, c, global);
    if (st) return st;
    for (int i = 0; i < global; i++) L->idx[i] = (int64_t)flash_rng_below(rng, (uint64_t)L->dinfo.n_train);
    memmove(L->idx, L->idx + (size_t)L->rank * n, (size_t)n * sizeof *L->idx);
    return fetch(L, c, FLASH_SPLIT_TRAIN, n, x, labels);
}

const int *flash_run_labels(flash_run *run, flash_ctx *c, int n, int num_classes)
{
    return flash_run_labels_from(run, c, run ? run->rng : NULL, n, num_classes);
}

const int *flash_run_labels_from(flash_run *run, flash_ctx *c, flash_rng *rng, int n, int num_classes)
{
    if (num_classes <= 0 || !run || !rng) return NULL;
    const loop *L = run->priv;
    const int ranks = L ? L->ranks : 1, rank = L ? L->rank : 0;
    /* host memory: the ops and the denoiser read labels on the host */
    int *y = flash_host_alloc(c, (size_t)n * sizeof *y);
    if (!y) return NULL;
    /* the global batch's draws, this rank's share kept */
    for (int i = 0; i < n * ranks; i++) {
        const int v = (int)flash_rng_below(rng, (uint64_t)num_classes);
        if (i / n == rank) y[i % n] = v;
    }
    return y;
}

flash_tensor *flash_run_randn(flash_run *run, flash_ctx *c, flash_rng *rng, int ndim, const int *shape)
{
    const loop *L = run ? run->priv : NULL;
    if (!L || L->ranks == 1 || ndim < 1) return flash_randn(c, rng, ndim, shape);
    int global[FLASH_MAX_DIMS];
    for (int i = 0; i < ndim && i < FLASH_MAX_DIMS; i++) global[i] = shape[i];
    global[0] = shape[0] * L->ranks;
    flash_tensor *x = flash_randn(c, rng, ndim, global);
    return x ? flash_narrow(c, x, L->rank * shape[0], shape[0]) : NULL;
}

/* a checkpoint read, one written (with the optimiser's state), a snapshot
 * written (the weights and their EMA alone) */
enum { CKPT_LOAD, CKPT_SAVE, CKPT_SNAPSHOT };

/* Checkpoints are read and written in host memory: parameters on a device
 * visit the CPU for the file and go back. */
/* ranks: the rank count to record (save), or where to put the recorded one
 * (load); NULL for neither */
static flash_status ckpt_io(int mode, const char *path, flash_params *p, flash_ckpt_info *info, int *ranks,
                            flash_error *err)
{
    const char *dev = flash_params_device(p);
    const bool away = strcmp(dev, "cpu") != 0;
    flash_status st = away ? flash_params_to_device(p, "cpu", err) : FLASH_OK;
    if (st == FLASH_OK)
        st = mode == CKPT_SAVE       ? flash_checkpoint_save_ranks(path, p, info, ranks ? *ranks : 0, err)
             : mode == CKPT_SNAPSHOT ? flash_checkpoint_save_weights(path, p, info, err)
                                     : flash_checkpoint_load_ranks(path, p, info, ranks, err);
    if (away) {
        flash_error e2 = {0};
        flash_status s2 = flash_params_to_device(p, dev, &e2);
        if (st == FLASH_OK && s2) {
            *err = e2;
            st = s2;
        }
    }
    return st;
}

static void aux_path(const loop *L, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s.safetensors", L->o->run_dir ? L->o->run_dir : ".", name);
}

flash_status flash_run_track(flash_run *run, const char *name, flash_params *p, bool *restored, flash_error *err)
{
    loop *L = run ? run->priv : NULL;
    if (restored) *restored = false;
    if (!L || !p) return flash_error_set(err, FLASH_ERR_RUNTIME, "flash_run_track: no run or no parameters");
    if (L->n_aux == LOOP_MAX_TRACKED)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "%s: at most %d parameter blocks besides the trained one",
                               L->who, LOOP_MAX_TRACKED);
    if (!name[0] || strlen(name) >= sizeof L->aux[0].name || strchr(name, '/') || strcmp(name, "checkpoint") == 0)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "flash_run_track: bad name '%s'", name);
    for (int i = 0; i < L->n_aux; i++)
        if (strcmp(L->aux[i].name, name) == 0)
            return flash_error_set(err, FLASH_ERR_RUNTIME, "flash_run_track: '%s' is tracked twice", name);
    char path[4200];
    aux_path(L, name, path, sizeof path);
    struct stat sb;
    if (run->resuming && L->o->run_dir && stat(path, &sb) == 0) {
        flash_status st = ckpt_io(CKPT_LOAD, path, p, NULL, NULL, err);
        if (st) return st;
        if (restored) *restored = true;
    }
    snprintf(L->aux[L->n_aux].name, sizeof L->aux[0].name, "%s", name);
    L->aux[L->n_aux++].p = p;
    return FLASH_OK;
}

/* The one gradient step of the loop, for the trained parameters and for
 * every network a strategy updates through flash_run_update: gradients are
 * complete here and nowhere earlier. A non-finite gradient stops before any
 * parameter changes (*finite = false, *grad_norm its norm). */
static flash_status apply_gradients(loop *L, flash_params *P, const flash_adam *opt, double clip, int64_t step,
                                    double *grad_norm, bool *finite, flash_error *err)
{
    /* every rank's share of the gradient, summed (each rank's loss was
     * scaled by 1 / ranks, so the sum is the global batch's gradient) */
    if (L->ranks > 1) {
        const char *path = NULL;
        const double t0 = flash_now();
        flash_status st = flash_params_allreduce_grad(P, L->comm, &path, err);
        L->t_allreduce += flash_now() - t0;
        L->allreduce_floats += flash_params_count(P);
        if (st) return st;
        if (!L->said_sum) {
            L->said_sum = true;
            flash_info("%s: gradients summed over %d ranks by %s", L->who, L->ranks, path);
        }
    }
    *finite = flash_params_grad_finite(P);
    if (!*finite) {
        *grad_norm = flash_params_clip_grad(P, 0);
        return FLASH_OK;
    }
    *grad_norm = flash_params_clip_grad(P, clip);
    return flash_adam_step(P, opt, step, err);
}

flash_status flash_run_update(flash_run *run, flash_ctx *c, flash_params *P, flash_tensor *loss,
                              const flash_adam *opt, double grad_clip, int64_t step, flash_error *err)
{
    loop *L = run ? run->priv : NULL;
    if (!L) return flash_error_set(err, FLASH_ERR_RUNTIME, "flash_run_update: no run");
    if (L->ranks > 1) loss = flash_scale(c, loss, 1.0f / (float)L->ranks);
    flash_params_zero_grad(P);
    flash_status st = flash_backward(c, loss, err);
    if (st) return st;
    double gn = 0;
    bool finite = true;
    if ((st = apply_gradients(L, P, opt, grad_clip, step, &gn, &finite, err))) return st;
    if (!finite) return flash_error_set(err, FLASH_ERR_RUNTIME, "the gradient norm is %g", gn);
    return FLASH_OK;
}

/* The trained parameters' update: reads the loss, backpropagates, then
 * the guard, the clip, the scheduled Adam step and the EMA. *bad names
 * what is not finite ("the loss", "the gradient norm"); nothing changed
 * then. */
static flash_status train_update(loop *L, flash_tensor *loss, int64_t step, double *loss_value, double *grad_norm,
                                 double *lr, const char **bad, flash_error *err)
{
    const flash_train_config *tc = &L->tc;
    *bad = NULL;
    *grad_norm = 0;
    *lr = 0;
    /* this rank's share of the global batch's mean: summed over ranks, the
     * loss and its gradient are the global batch's */
    if (L->ranks > 1) loss = flash_scale(L->ctx, loss, 1.0f / (float)L->ranks);
    float lh = 0;
    flash_status st = flash_tensor_to_host(L->ctx, loss, &lh, err);
    if (st) return st;
    /* every rank sees the same value, so a NaN on one stops them all */
    if (L->ranks > 1 && (st = flash_comm_allreduce_sum(L->comm, &lh, 1, err))) return st;
    *loss_value = lh;
    if (!isfinite(*loss_value)) {
        *bad = "the loss";
        return FLASH_OK;
    }
    flash_params_zero_grad(L->P);
    flash_profile_phase("backward");
    if ((st = flash_backward(L->ctx, loss, err))) {
        flash_error_prefix(err, "%s: step %lld: backward", L->who, (long long)step);
        return st;
    }
    flash_profile_phase("optimizer");
    flash_adam opt = tc->adam;
    opt.lr = flash_train_lr_at(tc, step);
    bool finite = true;
    if ((st = apply_gradients(L, L->P, &opt, tc->grad_clip, step, grad_norm, &finite, err))) return st;
    if (!finite) {
        *bad = "the gradient norm";
        return FLASH_OK;
    }
    *lr = opt.lr;
    if (tc->ema_decay > 0 && (st = flash_params_ema_update(L->P, tc->ema_decay, err))) return st;
    return FLASH_OK;
}

/* ---- building ------------------------------------------------------------ */


/* train.lr_scale: {NAME_PREFIX: MULTIPLIER, ...}, Adam's rate for the
 * trained tensors whose names start with the prefix (a parameter group, as
 * torch's). For a part that starts from nothing beside a copied network,
 * e.g. a guidance-conditioned student's zero-initialised guidance input,
 * which at the distillation rate would barely move in 1,000 steps. */
static flash_status apply_lr_scale(flash_params *P, const flash_cfg *map, flash_error *err)
{
    if (!map) return FLASH_OK;
    if (flash_cfg_kind(map) != FLASH_CFG_MAP)
        return flash_cfg_error(map, err, "lr_scale: expected a map of parameter-name prefix to multiplier "
                                         "({guidance.: 50})");
    for (size_t i = 0; i < flash_cfg_len(map); i++) {
        const char *prefix = flash_cfg_key_at(map, i);
        double m;
        flash_status st = flash_cfg_double(map, prefix, 1.0, &m, err);
        if (st) return st;
        if (!(m >= 0 && m <= 1e6))
            return flash_cfg_error(flash_cfg_at(map, i), err, "lr_scale.%s: a multiplier in [0, 1e6], got %g", prefix,
                                   m);
        if (!flash_params_set_lr_scale(P, prefix, (float)m))
            return flash_cfg_error(flash_cfg_at(map, i), err,
                                   "lr_scale.%s: no trained parameter's name starts with '%s' (`flash check` "
                                   "lists them)",
                                   prefix, prefix);
    }
    return FLASH_OK;
}

static flash_status loop_build(loop *L, flash_error *err)
{
    const flash_cfg *root = L->o->root, *slot;
    flash_status st;
    long seed;
    /* the whole config against the schema first: a misspelt key anywhere
     * stops the run before anything is built */
    const flash_schema_for what = strcmp(L->who, "flash distill") == 0 ? FLASH_FOR_DISTILL : FLASH_FOR_TRAIN;
    if ((st = flash_schema_check(root, what, L->o->registry, err))) return st;
    if ((st = flash_cfg_int(root, "seed", 0, &seed, err))) return st;
    if ((st = flash_train_config_read(flash_cfg_get(root, "train"), &L->tc, err))) return st;
    static const char *const devices[] = {"cpu", "cuda", NULL};
    int dev = 0;
    if ((st = flash_cfg_enum(root, "device", devices, 0, &dev, err))) return st;
    snprintf(L->device, sizeof L->device, "%s", devices[dev]);
    flash_error ce = {0};
    if (!(L->comm = flash_comm_world(&ce))) return flash_error_set(err, FLASH_ERR_RUNTIME, "%s: %s", L->who, ce.msg);
    L->ranks = flash_comm_size(L->comm);
    L->rank = flash_comm_rank(L->comm);
    if (L->tc.batch_size % L->ranks)
        return flash_cfg_error(flash_cfg_path(root, "train.batch_size"), err,
                               "train.batch_size %d (the global batch) does not split evenly over %d ranks",
                               L->tc.batch_size, L->ranks);
    /* components that make their own contexts (a discriminator's, an
     * evaluator's) make them on the pipeline's device */
    L->env = (flash_env){.size = sizeof L->env, .registry = L->o->registry, .seed = (uint64_t)seed,
                         .run_dir = L->o->run_dir, .root = root, .device = L->device};
    /* the context first: an unusable device is reported against the key
     * before any component is built */
    if (!(L->ctx = flash_ctx_create_on(L->device, (size_t)64 << 20, err))) {
        const flash_cfg *key = flash_cfg_get(root, "device");
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return key ? flash_cfg_error(key, err, "%s", why) : FLASH_ERR_RUNTIME;
    }
    if ((slot = flash_cfg_get(root, "schedule"))) {
        if ((st = flash_instance_create(&L->env, FLASH_KIND_SCHEDULE, slot, &L->schedule, err))) return st;
        L->env.schedule = &L->schedule;
    }
    if ((slot = flash_cfg_get(root, "dataset"))) {
        if ((st = flash_instance_create(&L->env, FLASH_KIND_DATASET, slot, &L->data, err))) return st;
        FLASH_API(&L->data, flash_dataset_api)->info(L->data.self, &L->dinfo);
        if (L->dinfo.n_train < 1)
            return flash_cfg_error(slot, err, "dataset '%s' has no training examples", L->data.comp->name);
        L->have_data = 1;
        flash_rng s;
        flash_rng_seed_stream(&s, L->env.seed, TRAIN_STREAM_DATA);
        if ((st = flash_batcher_init(&L->batcher, L->dinfo.n_train, flash_rng_u64(&s), err))) return st;
        L->batcher_ready = 1;
    }
    flash_rng_seed_stream(&L->rng, L->env.seed, TRAIN_STREAM_STRATEGY);
    L->run = (flash_run){.size = sizeof L->run, .env = &L->env, .rng = &L->rng,
                         .data = L->have_data ? &L->dinfo : NULL, .batch_size = L->tc.batch_size / L->ranks,
                         .global_batch_size = L->tc.batch_size, .rank = L->rank, .ranks = L->ranks,
                         .steps = L->tc.steps, .resuming = L->o->resume, .priv = L};
    if (!(slot = flash_cfg_get(root, "strategy")))
        return flash_cfg_error(root, err, "%s: the pipeline needs a 'strategy:' section ({plugin: NAME, ...})",
                               L->who);
    if ((st = flash_instance_create(&L->env, FLASH_KIND_STRATEGY, slot, &L->strategy, err))) return st;
    L->sapi = FLASH_API(&L->strategy, flash_strategy_api);
    if (!L->sapi->trained || !L->sapi->step)
        return flash_cfg_error(slot, err, "strategy '%s' has no trained parameters or no step",
                               L->strategy.comp->name);
    L->P = L->sapi->trained(L->strategy.self, &L->run, err);
    if (!L->P) {
        if (!err->status) flash_error_set(err, FLASH_ERR_CONFIG, "strategy '%s' trains nothing", L->strategy.comp->name);
        return err->status;
    }
    if (flash_params_count(L->P) == 0)
        return flash_cfg_error(slot, err, "strategy '%s': the trained model has no parameters", L->strategy.comp->name);
    if ((st = apply_lr_scale(L->P, flash_cfg_get(flash_cfg_get(root, "train"), "lr_scale"), err))) return st;
    if ((st = flash_params_to_device(L->P, L->device, err))) {
        flash_error_prefix(err, "%s", L->who);
        return st;
    }
    return FLASH_OK;
}

/* ---- checkpoints ----------------------------------------------------------- */

static flash_status save_all(loop *L, int64_t step, flash_error *err)
{
    char path[4200];
    flash_status st;
    /* rank 0 alone writes; every rank holds the same parameters, and none
     * goes on before the files are there (a pipeline reads them next) */
    if (L->rank != 0) {
        L->last_ckpt = step;
        return flash_comm_barrier(L->comm, err);
    }
    flash_ckpt_info aux = {.step = step, .rng = L->rng};
    for (int i = 0; i < L->n_aux; i++) {
        aux_path(L, L->aux[i].name, path, sizeof path);
        if ((st = ckpt_io(CKPT_SAVE, path, L->aux[i].p, &aux, &L->ranks, err))) return st;
    }
    /* the trained parameters last: their step marks a complete checkpoint */
    flash_ckpt_info info = {.step = step, .rng = L->rng, .config_yaml = flash_cfg_to_yaml(L->o->root)};
    if (!info.config_yaml) return flash_error_set(err, FLASH_ERR_NOMEM, "%s: cannot serialise the config", L->who);
    st = ckpt_io(CKPT_SAVE, L->ckpt_path, L->P, &info, &L->ranks, err);
    free(info.config_yaml);
    if (st == FLASH_OK) L->last_ckpt = step;
    if (st == FLASH_OK && L->ranks > 1) st = flash_comm_barrier(L->comm, err);
    return st;
}

static void snapshot_path(const loop *L, int64_t step, char *buf, size_t n)
{
    int k = snprintf(buf, n, "%s/", L->o->run_dir);
    if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, FLASH_RUN_SNAPSHOT, (long long)step);
}

static bool is_snapshot(const flash_train_config *tc, int64_t step)
{
    for (int i = 0; i < tc->n_snapshots; i++)
        if (tc->snapshots[i] == step) return true;
    return false;
}

/* The trained weights and their EMA at a step of train.snapshots, as the
 * final checkpoint holds them, without the optimiser's state; rank 0
 * writes, the others wait for the file as for a checkpoint. */
static flash_status save_snapshot(loop *L, int64_t step, flash_error *err)
{
    if (L->rank != 0) return flash_comm_barrier(L->comm, err);
    char path[4200];
    snapshot_path(L, step, path, sizeof path);
    flash_ckpt_info info = {.step = step, .rng = L->rng, .config_yaml = flash_cfg_to_yaml(L->o->root)};
    if (!info.config_yaml) return flash_error_set(err, FLASH_ERR_NOMEM, "%s: cannot serialise the config", L->who);
    flash_status st = ckpt_io(CKPT_SNAPSHOT, path, L->P, &info, NULL, err);
    free(info.config_yaml);
    if (st == FLASH_OK && L->ranks > 1) st = flash_comm_barrier(L->comm, err);
    return st;
}

/* The loss terms the strategy logged for the step that are not finite
 * ("loss_srl = NaN, ..."), so a stopped run says which term went. */
static void bad_terms(const flash_metric_result *stats, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; stats && i < stats->n && k < n; i++)
        if (!isfinite(stats->value[i]))
            k += (size_t)snprintf(buf + k, n - k, "%s%s = %s", k ? ", " : " (", stats->name[i],
                                  isnan(stats->value[i]) ? "NaN" : stats->value[i] > 0 ? "+inf" : "-inf");
    if (k && k < n) snprintf(buf + k, n - k, ")");
}

static flash_status guard_fail(loop *L, int64_t step, const char *what, double v, const flash_metric_result *stats,
                               flash_error *err)
{
    const char *value = isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf";
    char terms[512];
    bad_terms(stats, terms, sizeof terms);
    if (L->last_ckpt > 0)
        return flash_error_set(err, FLASH_ERR_RUNTIME,
                               "%s: step %lld: %s is %s%s; stopped before updating. The last good checkpoint "
                               "is %s (step %lld); check the data, lower train.lr or tighten train.grad_clip, "
                               "then --resume",
                               L->who, (long long)step, what, value, terms, L->ckpt_path, (long long)L->last_ckpt);
    return flash_error_set(err, FLASH_ERR_RUNTIME,
                           "%s: step %lld: %s is %s%s; stopped before updating (no checkpoint was written yet)",
                           L->who, (long long)step, what, value, terms);
}

/* ---- logging ------------------------------------------------------------- */

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
static flash_status run_eval(loop *L, int64_t step, flash_error *err)
{
    const int64_t n_test = L->have_data ? L->dinfo.n_test : 0;
    if (n_test < 1) return FLASH_OK;
    const int B = L->tc.batch_size;
    int64_t n = n_test;
    if (L->tc.eval_batches > 0 && L->tc.eval_batches * B < n) n = L->tc.eval_batches * B;
    flash_rng erng, *train_rng = L->run.rng;
    flash_rng_seed_stream(&erng, L->env.seed, TRAIN_STREAM_EVAL);
    const int use_ema = L->tc.ema_decay > 0 && flash_params_ema(L->P) != NULL;
    flash_status st = FLASH_OK;
    if (use_ema && (st = flash_params_swap_ema(L->P, err))) return st;
    double loss_sum = 0;
    flash_metric_result acc = {0};
    bool was = flash_grad_set(L->ctx, false);
    L->run.eval = true;
    L->run.rng = &erng;
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        const int nb = (int)(n - i0 < B ? n - i0 : B);
        L->eval_i0 = i0;
        L->eval_n = nb;
        flash_ctx_reset(L->ctx);
        flash_metric_result stats = {0};
        L->run.stats = &stats;
        flash_tensor *loss = L->sapi->step(L->strategy.self, L->ctx, &L->run, step);
        if (!loss || !flash_ctx_ok(L->ctx)) {
            st = flash_ctx_status(L->ctx, err);
            if (st == FLASH_OK) st = flash_error_set(err, FLASH_ERR_RUNTIME, "evaluation returned no loss");
            flash_error_prefix(err, "%s: evaluation at step %lld", L->who, (long long)step);
            break;
        }
        float lh = 0;
        if ((st = flash_tensor_to_host(L->ctx, loss, &lh, err))) break;
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
    L->run.eval = false;
    L->run.rng = train_rng;
    L->run.stats = NULL;
    flash_grad_set(L->ctx, was);
    if (use_ema) {
        flash_error e2 = {0};
        flash_status s2 = flash_params_swap_ema(L->P, &e2);
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
    flash_jsonl_write(&L->jl, "%s", line);
    char msg[512];
    size_t ml = 0;
    json_append(msg, sizeof msg, &ml, "step %lld: test loss %.5g", (long long)step, loss_sum / (double)n);
    for (int k = 0; k < acc.n; k++) json_append(msg, sizeof msg, &ml, ", test %s %.5g", acc.name[k], acc.value[k]);
    flash_info("%s (%lld examples%s)", msg, (long long)n, use_ema ? ", EMA weights" : "");
    return FLASH_OK;
}

/* ---- the loop ------------------------------------------------------------ */

/* "train" of "flash train": what the run's messages say it does. */
static const char *verb_of(const char *who)
{
    return strncmp(who, "flash ", 6) == 0 ? who + 6 : who;
}


static flash_status loop_run(loop *L, int64_t start, flash_error *err)
{
    const flash_train_config *tc = &L->tc;
    flash_run *run = &L->run;
    const bool evaluates = (L->sapi->flags & FLASH_STRATEGY_EVALUATES) != 0;
    flash_progress prog;
    const bool progress = L->o->progress && L->rank == 0;
    if (progress) flash_progress_begin(&prog, verb_of(L->who), start, tc->steps);
    double t_log = flash_now(), loss_acc = 0;
    int64_t n_acc = 0;
    flash_status st = FLASH_OK;
    int64_t last = tc->steps;
    if (L->o->stop_after > 0 && L->o->stop_after < last) last = L->o->stop_after;
    /* FLASH_TEST_FAIL=RANK:STEP makes that rank fail at that step: how the
     * tests check that one rank's failure stops every rank */
    long fail_rank = -1, fail_step = -1;
    const char *inject = getenv("FLASH_TEST_FAIL");
    if (inject && sscanf(inject, "%ld:%ld", &fail_rank, &fail_step) != 2) fail_rank = -1;
    for (int64_t step = start + 1; step <= last; step++) {
        if (fail_rank == L->rank && fail_step == step) {
            st = flash_error_set(err, FLASH_ERR_RUNTIME, "%s: step %lld: failure injected (FLASH_TEST_FAIL=%s)",
                                 L->who, (long long)step, inject);
            break;
        }
        const double t_step = flash_now();
        /* a profile's phases (flash bench --distill): the strategy's step,
         * within it the networks' evaluations under their roles (teacher,
         * student, ...), the backward pass, the optimiser, after_step */
        flash_profile_phase("strategy step");
        flash_ctx_reset(L->ctx);
        flash_metric_result stats = {0};
        run->stats = &stats;
        run->iter = step;
        flash_tensor *loss = L->sapi->step(L->strategy.self, L->ctx, run, step);
        if (!loss || !flash_ctx_ok(L->ctx)) {
            st = flash_ctx_status(L->ctx, err);
            if (st == FLASH_OK)
                st = flash_error_set(err, FLASH_ERR_RUNTIME, "strategy '%s' returned no loss", L->strategy.comp->name);
            flash_error_prefix(err, "%s: step %lld", L->who, (long long)step);
            break;
        }
        double lv = 0, gnorm = 0, lr = 0;
        const char *bad = NULL;
        if ((st = train_update(L, loss, step, &lv, &gnorm, &lr, &bad, err))) break;
        if (bad) {
            st = guard_fail(L, step, bad, isfinite(lv) ? gnorm : lv, &stats, err);
            break;
        }
        /* the strategy's own networks (a discriminator) alternate with the
         * trained ones */
        flash_profile_phase("after_step");
        if (L->sapi->after_step && (st = L->sapi->after_step(L->strategy.self, L->ctx, run, step, err))) {
            flash_error_prefix(err, "%s: step %lld", L->who, (long long)step);
            break;
        }
        L->t_steps += flash_now() - t_step;
        /* the run's final save is no iteration's cost */
        flash_profile_phase(step == last ? "final save" : "logs and checkpoints");
        run->stats = NULL;
        loss_acc += lv;
        n_acc++;
        if (step % tc->log_every == 0 || step == last) {
            double now = flash_now();
            char line[2048];
            size_t len = 0;
            json_append(line, sizeof line, &len,
                        "\"step\": %lld, \"loss\": %.9g, \"loss_avg\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
                        "\"step_s\": %.5f",
                        (long long)step, lv, loss_acc / (double)n_acc, lr, gnorm, (now - t_log) / (double)n_acc);
            /* the ranks' stats are means over their shards: their mean is the
             * global batch's (every rank logs at the same steps) */
            if (L->ranks > 1) {
                float v[FLASH_METRIC_MAX_VALUES];
                for (int k = 0; k < stats.n; k++) v[k] = (float)(stats.value[k] / L->ranks);
                if ((st = flash_comm_allreduce_sum(L->comm, v, (size_t)stats.n, err))) break;
                for (int k = 0; k < stats.n; k++) stats.value[k] = v[k];
            }
            append_stats(line, sizeof line, &len, &stats, "");
            flash_jsonl_write(&L->jl, "%s", line);
            t_log = now;
            loss_acc = 0;
            n_acc = 0;
        }
        if (progress) flash_progress_update(&prog, step, "loss %.4f | lr %.2e", lv, lr);
        /* Evaluation before the checkpoint: a run killed between the two
         * resumes from the previous checkpoint and repeats both. */
        if (evaluates && ((tc->eval_every > 0 && step % tc->eval_every == 0) || step == tc->steps) &&
            (st = run_eval(L, step, err)))
            break;
        /* the snapshot before the checkpoint of the same step: a run killed
         * between the two repeats the step and writes the same bytes */
        if (is_snapshot(tc, step) && (st = save_snapshot(L, step, err))) break;
        if ((tc->ckpt_every > 0 && step % tc->ckpt_every == 0) || step == last) {
            if ((st = save_all(L, step, err))) break;
        }
    }
    if (progress) flash_progress_end(&prog);
    /* The gradient sum of P floats moves 2 (N - 1) copies of 4 P bytes
     * between the N ranks: comm_mpi.c gathers the N - 1 other ranks'
     * gradients to rank 0 and broadcasts the sum back to them (NCCL's ring
     * moves the same total, 2 (N - 1) / N of them per rank). Its time
     * includes waiting for the slowest rank to arrive. */
    if (st == FLASH_OK && L->ranks > 1 && last > start && L->t_steps > 0)
        flash_info("gradient all-reduce: %.3f s over %lld steps (%.2f%% of the step time), %zu bytes per step",
                   L->t_allreduce, (long long)(last - start), 100.0 * L->t_allreduce / L->t_steps,
                   L->allreduce_floats * sizeof(float) * 2 * (size_t)(L->ranks - 1) / (size_t)(last - start));
    return st;
}

static const char *who_of(const flash_train_opts *o)
{
    return o->command ? o->command : "flash train";
}

flash_status flash_train_run(const flash_train_opts *o, flash_error *err)
{
    if (!o || o->size < sizeof *o || !o->root || !o->registry || !o->run_dir)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_train_run: incomplete options");
    loop *L = calloc(1, sizeof *L);
    if (!L) return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", who_of(o));
    L->o = o;
    L->who = who_of(o);
    flash_status st = flash_mkdirs(o->run_dir, err);
    if (st) goto out;
    snprintf(L->ckpt_path, sizeof L->ckpt_path, "%s/%s", o->run_dir, FLASH_RUN_CHECKPOINT);
    snprintf(L->metrics_path, sizeof L->metrics_path, "%s/%s", o->run_dir, FLASH_RUN_METRICS);
    if ((st = loop_build(L, err))) goto out;
    int64_t start = 0;
    struct stat sb;
    const int have = stat(L->ckpt_path, &sb) == 0;
    if (o->resume) {
        if (!have) {
            st = flash_error_set(err, FLASH_ERR_USAGE, "%s --resume: no checkpoint at %s", L->who, L->ckpt_path);
            goto out;
        }
        flash_ckpt_info info = {0};
        int was = 0;
        if ((st = ckpt_io(CKPT_LOAD, L->ckpt_path, L->P, &info, &was, err))) goto out;
        free(info.config_yaml);
        start = info.step;
        L->rng = info.rng;
        L->last_ckpt = start;
        if (L->batcher_ready) flash_batcher_skip(&L->batcher, start, L->tc.batch_size);
        if (L->rank == 0 && (st = flash_jsonl_truncate(L->metrics_path, start, err))) goto out;
        flash_info("resuming %s at step %lld of %lld", o->run_dir, (long long)start, (long long)L->tc.steps);
        /* snapshots the run passed before it listed them cannot be made now */
        for (int i = 0; i < L->tc.n_snapshots && L->tc.snapshots[i] <= start; i++) {
            char path[4200];
            snapshot_path(L, L->tc.snapshots[i], path, sizeof path);
            if (L->rank == 0 && stat(path, &sb) != 0)
                flash_warn("%s: train.snapshots lists step %lld, but %s is missing and the run resumes past it "
                           "(at step %lld)",
                           L->who, (long long)L->tc.snapshots[i], path, (long long)start);
        }
        /* the global batch and every draw are the same on any rank count,
         * so the run goes on as it would have; only the summation order
         * of the gradients, and so the rounding, follows the new count */
        if (was > 0 && was != L->ranks)
            flash_info("%s: the checkpoint was written by %d rank%s, the run resumes on %d: the same global batch of "
                       "%d (%d per rank) and the same draws, rounded in another summation order",
                       L->who, was, was == 1 ? "" : "s", L->ranks, L->tc.batch_size, L->tc.batch_size / L->ranks);
    } else {
        if (have) {
            st = flash_error_set(err, FLASH_ERR_USAGE,
                                 "%s: %s already holds a checkpoint; continue it with --resume or choose another --out",
                                 L->who, o->run_dir);
            goto out;
        }
        bool through;
        if (L->rank == 0 && (st = flash_output_check(L->metrics_path, &through, err))) goto out;
        if (L->rank == 0 && remove(L->metrics_path) != 0 && errno != ENOENT) {
            st = flash_error_set(err, FLASH_ERR_IO, "%s: cannot remove the old %s", L->who, L->metrics_path);
            goto out;
        }
    }
    /* rank 0 alone writes the run folder */
    if (L->rank == 0 && (st = flash_jsonl_open(&L->jl, L->metrics_path, err))) goto out;
    if (L->ranks > 1)
        flash_info("%s: data parallel over %d ranks (%s), %d examples of the global batch of %d each", L->who,
                   L->ranks, flash_comm_name(L->comm), L->tc.batch_size / L->ranks, L->tc.batch_size);
    flash_info("%sing with %s on %s (%zu parameters): %lld steps of %d, %d threads, device %s", verb_of(L->who),
               L->strategy.comp->name, L->have_data ? L->data.comp->name : "no dataset", flash_params_count(L->P),
               (long long)L->tc.steps, L->tc.batch_size, flash_get_threads(), L->device);
    if (start >= L->tc.steps) {
        flash_info("the checkpoint is at step %lld: nothing left to %s", (long long)start, verb_of(L->who));
        goto out;
    }
    st = loop_run(L, start, err);
out:
    loop_free(L);
    free(L);
    return st;
}

flash_status flash_distill_run(const flash_distill_opts *o, flash_error *err)
{
    if (!o || o->size < sizeof *o) return flash_error_set(err, FLASH_ERR_USAGE, "flash_distill_run: incomplete options");
    flash_train_opts named = *o;
    if (!named.command) named.command = "flash distill";
    return flash_train_run(&named, err);
}

flash_status flash_train_open(const flash_train_opts *o, flash_run **out, flash_error *err)
{
    *out = NULL;
    if (!o || o->size < sizeof *o || !o->root || !o->registry)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_train_open: incomplete options");
    loop *L = calloc(1, sizeof *L);
    if (!L) return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", who_of(o));
    L->o = o;
    L->who = who_of(o);
    flash_status st = loop_build(L, err);
    if (st) {
        loop_free(L);
        free(L);
        return st;
    }
    *out = &L->run;
    return FLASH_OK;
}

void flash_train_close(flash_run *run)
{
    if (!run) return;
    loop *L = run->priv;
    loop_free(L);
    free(L);
}

flash_instance *flash_run_strategy(flash_run *run)
{
    return run && run->priv ? &((loop *)run->priv)->strategy : NULL;
}
