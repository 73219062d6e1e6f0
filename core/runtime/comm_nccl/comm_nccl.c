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
#include <string.h>
#include <unistd.h>

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

/* The device this rank would use, named by host and PCI bus: NCCL refuses
 * two ranks on one GPU, so the ranks compare these before joining. */
static int probe(char *id, size_t id_size, char *msg, size_t n)
{
    int count = 0;
    if (cuda_failed(cudaGetDeviceCount(&count), "cudaGetDeviceCount", msg, n)) return 1;
    if (count < 1) {
        snprintf(msg, n, "no CUDA device");
        return 1;
    }
    char bus[64] = "", host[64] = "";
    if (cuda_failed(cudaDeviceGetPCIBusId(bus, sizeof bus, flash_local_rank() % count), "cudaDeviceGetPCIBusId", msg,
                    n))
        return 1;
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    snprintf(id, id_size, "%s/%s", host, bus);
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
    /* rank 0's id goes out with whether it could make one, so no rank
     * joins with an id that does not exist */
    struct {
        int32_t ok;
        ncclUniqueId id;
    } boot;
    memset(&boot, 0, sizeof boot);
    int failed = cuda_failed(cudaSetDevice(w->device), "cudaSetDevice", msg, n);
    /* the bootstrap is collective: every rank joins the broadcast even
     * when its own part failed, then reports */
    if (rank == 0) boot.ok = !failed && !nccl_failed(ncclGetUniqueId(&boot.id), "ncclGetUniqueId", msg, n);
    if (share(world, &boot, sizeof boot) != 0 && !failed) {
        snprintf(msg, n, "the NCCL unique id could not be broadcast");
        failed = 1;
    }
    if (!failed && !boot.ok) {
        if (rank != 0) snprintf(msg, n, "rank 0 could not make the NCCL unique id");
        failed = 1;
    }
    if (!failed) failed = nccl_failed(ncclCommInitRank(&w->comm, size, boot.id, rank), "ncclCommInitRank", msg, n);
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
