/* Training one model on real data: what the `denoise` and `classify`
 * strategies share on top of the core's strategy interface. The strategy
 * builds the pipeline's `model:` slot, hands its parameters to the loop,
 * and each iteration gets the loop's next batch as a train_batch.
 *
 *   typedef struct mine { model_trainer mt; ... } mine;     // first member
 *   static flash_tensor *my_step(void *self, flash_ctx *c, const train_batch *b, int64_t iter) {...}
 *   create: ... return model_trainer_open(&m->mt, env, my_step, self, m, err);
 *   MODEL_TRAINER_STRATEGY(mine_api, "mine", "one line", keys, my_create, my_destroy)
 */
#ifndef FLASH_PLUGINS_MODEL_TRAINER_H
#define FLASH_PLUGINS_MODEL_TRAINER_H

#include "folder.h"

/* One iteration's batch. Everything is borrowed for the call. */
typedef struct train_batch {
    flash_instance *model;         /* the model being trained */
    flash_instance *schedule;      /* the pipeline's schedule, NULL when none is configured */
    flash_tensor *x;               /* (N, shape...) real examples, in the context's arena */
    const int *labels;             /* (N) labels, NULL for unlabelled data */
    int num_classes;               /* the dataset's classes (0: unlabelled) */
    flash_rng *rng;                /* the strategy's stream */
    flash_metric_result *stats;    /* optional extra scalars to log, may be NULL */
    bool eval;                     /* held-out evaluation, grad off: no augmentation, no dropout */
    /* data parallel: x holds rows [shard * N, (shard + 1) * N) of a global
     * batch of shards * N; per-sample draws are made for the global batch
     * and this shard's kept (train_batch_draw), so every rank's stream
     * stays in step and N ranks draw what one would; shards 0 or 1: x is
     * the whole batch */
    int shard, shards;
} train_batch;

typedef flash_tensor *(*model_trainer_step_fn)(void *self, flash_ctx *c, const train_batch *b, int64_t iter);

typedef struct model_trainer {
    flash_env *env;
    flash_instance model;
    model_trainer_step_fn step;
    void *method;
} model_trainer;

/* Keeps the method; the pipeline's `model:` slot is built when the run
 * asks for the trained parameters (creating the strategy alone, as `flash
 * check` does, reads only its own keys). On success *self = method. */
static inline flash_status model_trainer_open(model_trainer *t, flash_env *env, model_trainer_step_fn step,
                                              void **self, void *method, flash_error *err)
{
    (void)err;
    t->env = env;
    t->step = step;
    t->method = method;
    *self = method;
    return FLASH_OK;
}

static inline void model_trainer_close(model_trainer *t) { flash_instance_destroy(&t->model); }

static inline flash_params *model_trainer_trained(void *self, flash_run *run, flash_error *err)
{
    model_trainer *t = self;
    const flash_cfg *slot = flash_cfg_get(run->env->root, "model");
    if (!slot) {
        flash_cfg_error(run->env->root, err, "the pipeline needs a 'model:' section ({plugin: NAME, ...})");
        return NULL;
    }
    if (!t->model.comp && flash_instance_create(t->env, FLASH_KIND_MODEL, slot, &t->model, err)) return NULL;
    const flash_model_api *api = FLASH_API(&t->model, flash_model_api);
    if (!run->data) {
        flash_cfg_error(run->env->root, err, "this strategy trains on real data: add a `dataset:` slot");
        return NULL;
    }
    flash_model_info mi;
    api->info(t->model.self, &mi);
    int same = mi.ndim == run->data->ndim;
    for (int i = 0; same && i < mi.ndim; i++) same = mi.shape[i] == run->data->shape[i];
    if (!same) {
        flash_cfg_error(slot, err, "model '%s' takes examples of %d dims (%d, %d, %d) but the dataset has %d dims (%d, %d, %d)",
                        t->model.comp->name, mi.ndim, mi.shape[0], mi.shape[1], mi.shape[2], run->data->ndim,
                        run->data->shape[0], run->data->shape[1], run->data->shape[2]);
        return NULL;
    }
    flash_params *p = api->params ? api->params(t->model.self) : NULL;
    if (!p || flash_params_count(p) == 0) {
        flash_cfg_error(slot, err, "model '%s' has no parameters to train", t->model.comp->name);
        return NULL;
    }
    return p;
}

static inline flash_tensor *model_trainer_step(void *self, flash_ctx *c, flash_run *run, int64_t iter)
{
    model_trainer *t = self;
    train_batch b = {.model = &t->model, .schedule = run->env->schedule, .num_classes = run->data->num_classes,
                     .rng = run->rng, .stats = run->stats, .eval = run->eval,
                     .shard = run->eval ? 0 : run->rank, .shards = run->eval ? 1 : run->ranks};
    if (flash_run_batch(run, c, &b.x, &b.labels)) return NULL;
    return t->step(t->method, c, &b, iter);
}

/* The global batch's index of this shard's first row, and how many rows
 * the global batch has: a per-sample draw loops over all of them and keeps
 * [first, first + n). */
static inline int train_batch_first(const train_batch *b, int n) { return b->shards > 1 ? b->shard * n : 0; }
static inline int train_batch_global(const train_batch *b, int n) { return b->shards > 1 ? b->shards * n : n; }

/* N(0, I) like this shard's x: drawn for the global batch, its rows kept. */
static inline flash_tensor *train_batch_randn(const train_batch *b, flash_ctx *c, const flash_tensor *x)
{
    if (b->shards <= 1) return flash_randn(c, b->rng, x->ndim, x->shape);
    int shape[FLASH_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[0] *= b->shards;
    flash_tensor *g = flash_randn(c, b->rng, x->ndim, shape);
    return g ? flash_narrow(c, g, b->shard * x->shape[0], x->shape[0]) : NULL;
}

#define MODEL_TRAINER_STRATEGY(var, name, summary, keys, create, destroy)                                   \
    static const flash_strategy_api var = {                                                                 \
        .head = {sizeof var, FLASH_KIND_STRATEGY, name, summary, keys, create, destroy},                    \
        .trained = model_trainer_trained,                                                                   \
        .step = model_trainer_step,                                                                         \
        .flags = FLASH_STRATEGY_EVALUATES,                                                                  \
    };                                                                                                      \
    FLASH_COMPONENT(var)

#endif
