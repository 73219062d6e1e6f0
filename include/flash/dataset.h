/* Datasets (kind FLASH_KIND_DATASET). Examples are addressed by index in a
 * split; the core's batcher (flash_batcher) shuffles with the run's seed. */
#ifndef FLASH_DATASET_H
#define FLASH_DATASET_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum flash_split { FLASH_SPLIT_TRAIN = 0, FLASH_SPLIT_TEST } flash_split;

typedef struct flash_dataset_info {
    int ndim;        /* 1 for (D), 3 for (C, H, W) */
    int shape[3];
    int num_classes; /* 0 when unlabelled */
    int64_t n_train, n_test;
} flash_dataset_info;

typedef struct flash_dataset_api {
    flash_component head;
    void (*info)(void *self, flash_dataset_info *out);
    /* Copies examples idx[0..n) of split into x (n * prod(shape) floats)
     * and their labels (may be NULL). */
    flash_status (*get)(void *self, flash_split split, const int64_t *idx, int n, float *x, int *labels,
                        flash_error *err);
} flash_dataset_api;

/* Epoch-wise shuffled batches over a split: each epoch is a fresh
 * permutation from the run's RNG stream; the state is (epoch, cursor) plus
 * the RNG, so a resumed run draws the same batches. */
typedef struct flash_batcher {
    int64_t n, cursor, epoch;
    int64_t *perm;
    flash_rng rng;
} flash_batcher;

FLASH_EXPORT flash_status flash_batcher_init(flash_batcher *b, int64_t n, uint64_t seed, flash_error *err);
FLASH_EXPORT void flash_batcher_free(flash_batcher *b);
/* Fills idx[0..batch) with the next indices, starting a new epoch as needed. */
FLASH_EXPORT void flash_batcher_next(flash_batcher *b, int64_t *idx, int batch);
/* Positions the batcher as if `steps` batches of `batch` had been drawn
 * (for resume). */
FLASH_EXPORT void flash_batcher_skip(flash_batcher *b, int64_t steps, int batch);

#ifdef __cplusplus
}
#endif
#endif
