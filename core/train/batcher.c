/* Epoch-wise shuffled batches. Each epoch's order is a fresh Fisher-Yates
 * permutation of 0..n-1 drawn from the batcher's RNG, so the state
 * (epoch, cursor, RNG) fully determines every later batch and
 * flash_batcher_skip reproduces it without drawing data. */
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"
#include "flash/plugin.h"
#include "flash/dataset.h"

/* the stream that gives data order its own sequence, apart from noise */
#define FLASH_BATCHER_STREAM 0x6461746100000001ull

static void new_epoch(flash_batcher *b) {
    for (int64_t i = 0; i < b->n; i++) b->perm[i] = i;
    flash_rng_shuffle(&b->rng, b->perm, (size_t)b->n);
    b->cursor = 0;
}

flash_status flash_batcher_init(flash_batcher *b, int64_t n, uint64_t seed, flash_error *err) {
    if (!b) return flash_error_set(err, FLASH_ERR_RUNTIME, "batcher: NULL batcher");
    memset(b, 0, sizeof *b);
    if (n < 1) return flash_error_set(err, FLASH_ERR_RUNTIME, "batcher: dataset has no examples (n = %lld)", (long long)n);
    b->perm = malloc((size_t)n * sizeof *b->perm);
    if (!b->perm)
        return flash_error_set(err, FLASH_ERR_NOMEM, "batcher: cannot allocate a permutation of %lld indices",
                               (long long)n);
    b->n = n;
    flash_rng_seed_stream(&b->rng, seed, FLASH_BATCHER_STREAM);
    new_epoch(b);
    b->epoch = 0;
    return FLASH_OK;
}

void flash_batcher_free(flash_batcher *b) {
    if (!b) return;
    free(b->perm);
    b->perm = NULL;
    b->n = 0;
}

void flash_batcher_next(flash_batcher *b, int64_t *idx, int batch) {
    for (int i = 0; i < batch; i++) {
        if (b->cursor >= b->n) {
            new_epoch(b);
            b->epoch++;
        }
        idx[i] = b->perm[b->cursor++];
    }
}

void flash_batcher_skip(flash_batcher *b, int64_t steps, int batch) {
    int64_t left = steps * (int64_t)batch;
    while (left > 0) {
        if (b->cursor >= b->n) {
            new_epoch(b);
            b->epoch++;
        }
        int64_t take = b->n - b->cursor < left ? b->n - b->cursor : left;
        b->cursor += take;
        left -= take;
    }
}
