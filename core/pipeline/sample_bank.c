/* Sampling a bank of noise in batches (include/flash/pipeline.h), the one
 * loop behind `flash run` and `flash sample`. */
#include "flash/comm.h"
#include "flash/diffusion.h"
#include "flash/pipeline.h"

#include <string.h>

/* The stream of a batch's own draws: the batch's index decides it, not
 * the rank that runs it. */
#define BANK_BATCH_STREAM 0x62617463ull /* "batc" */

flash_status flash_sample_bank(flash_denoiser *den, const flash_instance *sampler, flash_ctx *c, const float *xT,
                               const int *labels, long n, long batch, uint64_t seed, float *xs, long *batches,
                               flash_error *err)
{
    const flash_model_info *mi = &den->info;
    size_t per = 1;
    int shape[FLASH_MAX_DIMS];
    for (int j = 0; j < mi->ndim; j++) {
        shape[1 + j] = mi->shape[j];
        per *= (size_t)mi->shape[j];
    }
    const flash_sampler_api *sapi = FLASH_API(sampler, flash_sampler_api);
    /* Under mpirun the batches, the same ones on any number of ranks, are
     * shared out in contiguous runs and gathered (comm.h). */
    flash_comm *world = flash_comm_world(err);
    if (!world) return err && err->status ? err->status : FLASH_ERR_RUNTIME;
    const int rank = flash_comm_rank(world), ranks = flash_comm_size(world);
    const long n_batches = (n + batch - 1) / batch;
    const long first = n_batches * rank / ranks, end = n_batches * (rank + 1) / ranks;
    if (ranks > 1) memset(xs, 0, (size_t)n * per * sizeof *xs);
    flash_status st = FLASH_OK;
    *batches = 0;
    bool was = flash_grad_set(c, false);
    for (long b = first * batch; b < end * batch && b < n; b += batch) {
        const int nb = (int)(n - b < batch ? n - b : batch);
        flash_ctx_reset(c);
        shape[0] = nb;
        flash_rng batch_rng;
        flash_rng_seed_stream(&batch_rng, seed, BANK_BATCH_STREAM + (uint64_t)(b / batch));
        flash_tensor *x = flash_tensor_from(c, 1 + mi->ndim, shape, xT + (size_t)b * per);
        flash_sample_request rq = {.size = sizeof rq, .den = den, .x = x, .labels = labels ? labels + b : NULL,
                                   .stop_at = -1.0, .rng = &batch_rng};
        flash_tensor *y = x ? sapi->sample(sampler->self, c, &rq) : NULL;
        if (!y || !flash_ctx_ok(c)) {
            flash_ctx_status(c, err);
            flash_error_prefix(err, "sampler '%s'", sampler->comp->name);
            st = FLASH_ERR_RUNTIME;
            break;
        }
        if (y->numel != (size_t)nb * per) {
            st = flash_error_set(err, FLASH_ERR_RUNTIME, "sampler '%s' returned %zu values for %d samples",
                                 sampler->comp->name, y->numel, nb);
            break;
        }
        if ((st = flash_tensor_to_host(c, y, xs + (size_t)b * per, err))) break;
        ++*batches;
    }
    flash_grad_set(c, was);
    /* each sample is one rank's and zeros elsewhere: the sum is the sample */
    if (st == FLASH_OK && ranks > 1) st = flash_comm_allreduce_sum(world, xs, (size_t)n * per, err);
    return st;
}
