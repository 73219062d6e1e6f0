/* Strategies (kind FLASH_KIND_STRATEGY): what one training iteration
 * computes. Distillation strategies (backward, forward, progressive, LCM,
 * ADD) decide how a training input x_t is made and which target the student
 * is compared with; the distillation context is defined with them.
 * Training strategies (`denoise` for a teacher, `classify` for the
 * evaluator) implement train_step: the loop in trainer.h hands them a batch
 * of real data and a random stream, and owns everything else (optimizer,
 * EMA, checkpoints, resume). */
#ifndef FLASH_STRATEGY_H
#define FLASH_STRATEGY_H

#ifdef __cplusplus
extern "C" {
#endif

struct flash_distill;
struct flash_metric_result;

/* One iteration of `flash train` (trainer.h). Everything is borrowed for
 * the call. */
typedef struct flash_train_batch {
    uint32_t size;                       /* sizeof(flash_train_batch) of the caller */
    flash_instance *model;               /* the model being trained */
    flash_instance *schedule;            /* the pipeline's schedule, NULL when none is configured */
    flash_tensor *x;                     /* (N, shape...) real examples, in the context's arena */
    const int *labels;                   /* (N) labels, NULL for unlabelled data */
    int num_classes;                     /* the dataset's classes (0: unlabelled) */
    flash_rng *rng;                      /* the strategy's stream; checkpoints save and restore it */
    struct flash_metric_result *stats;   /* optional extra scalars to log (accuracy, ...), may be NULL */
    int eval;                            /* 1: held-out evaluation, grad off: no augmentation, no dropout */
} flash_train_batch;

typedef struct flash_strategy_api {
    flash_component head;
    /* One training iteration: returns the scalar loss on the tape. */
    flash_tensor *(*step)(void *self, flash_ctx *c, struct flash_distill *d, int64_t iter);
    /* optional: one iteration of `flash train` on a batch of real data;
     * returns the scalar loss on the tape (NULL with the context's error set). */
    flash_tensor *(*train_step)(void *self, flash_ctx *c, const flash_train_batch *b, int64_t iter);
} flash_strategy_api;

#ifdef __cplusplus
}
#endif
#endif
