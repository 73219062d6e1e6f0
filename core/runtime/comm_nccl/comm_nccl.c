/* libflash_comm_nccl.so: the device collective for "cuda" (comm.h): the
 * data-parallel gradient sum on the GPUs themselves with NCCL, instead of
 * a copy through host memory and MPI. libflash loads it with dlopen on a
 * run's first device all-reduce; the MPI world bootstraps it (rank 0's
 * NCCL unique id is broadcast over MPI), so it needs no launcher of its
 * own.
 *
 * Each rank uses GPU local_rank % count (local_rank.h), the same rule as
 * the CUDA backend, and NCCL wants one GPU per rank. The backend computes
 * on its own stream; the caller has waited for that stream before the
 * sum, and the sum is complete on the device when allreduce_sum returns,
 * so no stream of one is ever ordered against the other's. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>

#include "flash/comm.h"
#include "runtime/local_rank.h"

typedef struct nccl_world {
    ncclComm_t comm;
    cudaStream_t stream;
    int device;
} nccl_world;

static int cuda_failed(cudaError_t e, const char *what, char *msg, size_t n)
{
    if (e == cudaSuccess) return 0;
    snprintf(msg, n, "%s: %s", what, cudaGetErrorString(e));
    return 1;
}

static int nccl_failed(ncclResult_t r, const char *what, char *msg, size_t n)
{
    if (r == ncclSuccess) return 0;
    snprintf(msg, n, "%s: %s", what, ncclGetErrorString(r));
    return 1;
}

static int probe(char *msg, size_t n)
{
    int count = 0;
    if (cuda_failed(cudaGetDeviceCount(&count), "cudaGetDeviceCount", msg, n)) return 1;
    if (count < 1) {
        snprintf(msg, n, "no CUDA device");
        return 1;
    }
    return 0;
}

static int comm_init(void **self, int rank, int size, flash_comm_share_fn share, void *world, char *msg, size_t n)
{
    int count = 0;
    if (cuda_failed(cudaGetDeviceCount(&count), "cudaGetDeviceCount", msg, n)) return 1;
    if (count < 1) {
        snprintf(msg, n, "no CUDA device");
        return 1;
    }
    nccl_world *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(msg, n, "out of memory");
        return 1;
    }
    w->device = flash_local_rank() % count;
    ncclUniqueId id;
    int failed = cuda_failed(cudaSetDevice(w->device), "cudaSetDevice", msg, n);
    /* the bootstrap is collective: every rank joins the broadcast even
     * when its own id could not be made, then reports */
    if (!failed && rank == 0) failed = nccl_failed(ncclGetUniqueId(&id), "ncclGetUniqueId", msg, n);
    if (share(world, &id, sizeof id) != 0 && !failed) {
        snprintf(msg, n, "the NCCL unique id could not be broadcast");
        failed = 1;
    }
    if (!failed) failed = nccl_failed(ncclCommInitRank(&w->comm, size, id, rank), "ncclCommInitRank", msg, n);
    if (!failed)
        failed = cuda_failed(cudaStreamCreateWithFlags(&w->stream, cudaStreamNonBlocking), "cudaStreamCreate", msg, n);
    if (failed) {
        if (w->comm) ncclCommAbort(w->comm);
        free(w);
        return 1;
    }
    *self = w;
    return 0;
}

static int allreduce_sum(void *self, float *buf, size_t count, char *msg, size_t n)
{
    nccl_world *w = self;
    if (!count) return 0;
    if (nccl_failed(ncclAllReduce(buf, buf, count, ncclFloat, ncclSum, w->comm, w->stream), "ncclAllReduce", msg, n))
        return 1;
    if (cuda_failed(cudaStreamSynchronize(w->stream), "cudaStreamSynchronize", msg, n)) return 1;
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(w->comm, &async);
    return nccl_failed(async, "NCCL", msg, n);
}

static void abort_all(void *self)
{
    nccl_world *w = self;
    if (w && w->comm) ncclCommAbort(w->comm);
    if (w) w->comm = NULL;
}

static void finalize(void *self)
{
    nccl_world *w = self;
    if (!w) return;
    if (w->comm) ncclCommDestroy(w->comm);
    if (w->stream) cudaStreamDestroy(w->stream);
    free(w);
}

static const flash_comm_device_ops nccl_ops = {
    .size = sizeof nccl_ops,
    .abi_major = FLASH_COMM_DEVICE_ABI_MAJOR,
    .abi_minor = FLASH_COMM_DEVICE_ABI_MINOR,
    .name = "nccl",
    .device = "cuda",
    .probe = probe,
    .init = comm_init,
    .allreduce_sum = allreduce_sum,
    .abort_all = abort_all,
    .finalize = finalize,
};

__attribute__((visibility("default"))) const flash_comm_device_ops *flash_comm_device_entry(void)
{
    return &nccl_ops;
}
