/* Strategies (kind FLASH_KIND_STRATEGY): what one training iteration
 * computes. The training loop (trainer.h) is the same for every method;
 * the strategy is the only difference between training a teacher, an
 * evaluator or a distilled student. The loop owns the optimiser, the
 * learning-rate schedule, clipping, the EMA, checkpoints, resume, logging
 * and the data; the strategy owns everything its method needs (the models
 * it builds, the losses it sums, its targets) and says which parameters
 * the loop trains.
 *
 * The loop calls, in order:
 *
 *   create(cfg, env, &self, err)       the strategy's slot; it may build models from env->root
 *   trained(self, run, err)            once: the parameter block the loop's optimiser updates
 *   step(self, c, run, iter)           every iteration: the scalar loss on the tape
 *   after_step(self, c, run, iter, err)  optional, after the optimiser step: the
 *                                      strategy's own networks (a discriminator) update here,
 *                                      through flash_run_update
 *
 * A minimal strategy:
 *
 *   static flash_tensor *my_step(void *self, flash_ctx *c, flash_run *run, int64_t iter)
 *   {
 *       my *m = self;
 *       flash_tensor *x;
 *       const int *labels;
 *       if (flash_run_batch(run, c, &x, &labels)) return NULL;        // the next batch of real data
 *       flash_tensor *pred = m->api->forward(m->model.self, c, x, NULL);
 *       return flash_mse(c, pred, x);
 *   }
 */
#ifndef FLASH_STRATEGY_H
#define FLASH_STRATEGY_H

#ifdef __cplusplus
extern "C" {
#endif

struct flash_metric_result;
struct flash_dataset_info;

/* The loop's view of a run, handed to every strategy call. */
typedef struct flash_run {
    uint32_t size;                           /* sizeof(flash_run) of the host */
    flash_env *env;                          /* registry, seed, root config, schedule, device */
    flash_rng *rng;                          /* the strategy's stream; checkpoints save and restore it */
    const struct flash_dataset_info *data;   /* the pipeline's `dataset:`, NULL when it has none */
    int batch_size;                          /* this rank's share of train.batch_size (all of it on one rank) */
    int64_t steps;                           /* train.steps */
    int64_t iter;                            /* the current iteration, from 1 */
    bool eval;                               /* held-out evaluation: grad off, test batches, no augmentation */
    bool resuming;                           /* the run continues from a checkpoint */
    struct flash_metric_result *stats;       /* extra scalars logged for this iteration, may be NULL */
    void *priv;                              /* the loop's */
    /* Data parallel (comm.h): this rank computes rows [rank * batch_size,
     * (rank + 1) * batch_size) of every global batch. Per-sample random
     * draws go through flash_run_randn / flash_run_labels / flash_run_draw,
     * which draw for the global batch and keep this rank's rows, so every
     * rank's stream stays in step and N ranks compute what one would. */
    int global_batch_size;                   /* train.batch_size */
    int rank, ranks;                         /* 0 and 1 on one process */
} flash_run;

/* Strategy flags. */
#define FLASH_STRATEGY_EVALUATES 1u /* step() supports run->eval: the loop evaluates on the test split */

typedef struct flash_strategy_api {
    flash_component head;
    /* Once, after create and before a resume restores anything: the
     * parameters the loop trains (Adam, EMA, clipping, the run's
     * checkpoint). NULL with err set on failure. The loop moves them to
     * the run's device. */
    flash_params *(*trained)(void *self, flash_run *run, flash_error *err);
    /* One iteration: the scalar loss on the tape (NULL with the context's
     * error set). */
    flash_tensor *(*step)(void *self, flash_ctx *c, flash_run *run, int64_t iter);
    /* optional: after the optimiser step of iteration iter. */
    flash_status (*after_step)(void *self, flash_ctx *c, flash_run *run, int64_t iter, flash_error *err);
    uint32_t flags; /* FLASH_STRATEGY_* */
} flash_strategy_api;

/* ---- what the loop offers a strategy --------------------------------------- */

/* The next batch of real data: during training run->batch_size examples
 * of the training split in the loop's epoch order (call it at most once
 * per iteration: a resume skips one batch per completed iteration); during
 * evaluation the loop's current test batch. x is in the context's arena on
 * the run's device; labels (host memory, NULL for unlabelled data) live as
 * long as x. Fails (context error) when the pipeline has no dataset. */
FLASH_EXPORT flash_status flash_run_batch(flash_run *run, flash_ctx *c, flash_tensor **x, const int **labels);
/* n examples (this rank's count) of the training split at indices drawn
 * from run->rng, for methods that need real data beside other draws (a
 * discriminator's real batch): the draws interleave with the strategy's
 * own, so a resume continues them. labels may be NULL when not wanted. */
FLASH_EXPORT flash_status flash_run_draw(flash_run *run, flash_ctx *c, int n, flash_tensor **x, const int **labels);
/* The same from the caller's own stream rng: a component with draws of its
 * own (a discriminator's real batch) takes them from a stream of its own,
 * so that adding it, or setting its weight to 0, changes no other draw of
 * the run. A stream derived from the step (flash_rng_seed_stream(seed,
 * purpose ^ step)) needs no checkpoint to resume. */
FLASH_EXPORT flash_status flash_run_draw_from(flash_run *run, flash_ctx *c, flash_rng *rng, int n, flash_tensor **x,
                                              const int **labels);
/* N(0, I) of shape for this rank's rows of a per-sample draw from rng
 * (shape[0] is this rank's count): drawn for the global batch, this rank's
 * rows kept (flash_randn on one process). */
FLASH_EXPORT flash_tensor *flash_run_randn(flash_run *run, flash_ctx *c, flash_rng *rng, int ndim, const int *shape);
/* n labels (this rank's count) uniform in [0, num_classes) from run->rng,
 * in host arena memory (NULL when num_classes <= 0). */
FLASH_EXPORT const int *flash_run_labels(flash_run *run, flash_ctx *c, int n, int num_classes);
/* The same from the caller's own stream (see flash_run_draw_from). */
FLASH_EXPORT const int *flash_run_labels_from(flash_run *run, flash_ctx *c, flash_rng *rng, int n, int num_classes);
/* Keeps p, a parameter block the strategy owns besides the trained one (a
 * discriminator, a frozen or EMA copy of the student), in the run's
 * checkpoints as RUN_DIR/<name>.safetensors. When the run resumes and that
 * file exists, p is loaded from it now (*restored = true), else p is left
 * as it is. p must outlive the run. */
FLASH_EXPORT flash_status flash_run_track(flash_run *run, const char *name, flash_params *p, bool *restored,
                                          flash_error *err);
/* One optimiser update of a strategy's own parameters from its scalar loss:
 * zero the gradients, backpropagate, then the loop's one gradient step
 * (where gradients are complete; a non-finite gradient is refused), clip to
 * grad_clip (0: none) and take an Adam step with opt at step. On several
 * ranks the loss is this rank's share and the gradients are summed there. */
FLASH_EXPORT flash_status flash_run_update(flash_run *run, flash_ctx *c, flash_params *P, flash_tensor *loss,
                                           const flash_adam *opt, double grad_clip, int64_t step, flash_error *err);

#ifdef __cplusplus
}
#endif
#endif
