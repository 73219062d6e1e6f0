/* Data-parallel communication between the processes of one run (ranks).
 *
 * `mpirun -np N flash train|distill ...` and `srun flash ...` start N
 * processes; each trains on a disjoint shard of every global batch and the
 * training loop (trainer.h) sums their gradients at its one gradient step,
 * so the optimiser step is the same on every rank. The communication lives
 * in one place, behind this interface, in a shared object loaded with
 * dlopen the first time it is asked for: libflash_comm_mpi.so (Open MPI or
 * MPICH) when the process was started by an MPI launcher or by Slurm with
 * more than one task. Otherwise the world is this process alone, and no
 * MPI library is needed or loaded.
 *
 * $FLASH_COMM selects explicitly: `mpi` (fail if it cannot be loaded) or
 * `none` (one process whatever the launcher says). $FLASH_COMM_LIB names
 * the shared object's path.
 */
#ifndef FLASH_COMM_H
#define FLASH_COMM_H

#include "flash/flash.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct flash_comm flash_comm;

/* The process-wide world, initialised on first use (MPI_Init then). NULL
 * with err set when a launcher asked for MPI and it cannot be loaded. */
FLASH_EXPORT flash_comm *flash_comm_world(flash_error *err);
FLASH_EXPORT int flash_comm_size(const flash_comm *c); /* 1 for NULL */
FLASH_EXPORT int flash_comm_rank(const flash_comm *c); /* 0 for NULL */
/* "mpi" or "none" */
FLASH_EXPORT const char *flash_comm_name(const flash_comm *c);

/* buf[i] = the sum over ranks of buf[i], on every rank. The order of the
 * sum is fixed (rank 0 + rank 1 + ...), so a given rank count is bit for
 * bit reproducible run to run. */
FLASH_EXPORT flash_status flash_comm_allreduce_sum(flash_comm *c, float *buf, size_t n, flash_error *err);
/* root's bytes to every rank. */
FLASH_EXPORT flash_status flash_comm_broadcast(flash_comm *c, void *buf, size_t bytes, int root, flash_error *err);
/* Every rank's `bytes` bytes, concatenated in rank order into recv on root
 * (size * bytes; recv is ignored elsewhere). */
FLASH_EXPORT flash_status flash_comm_gather(flash_comm *c, const void *send, size_t bytes, void *recv, int root,
                                            flash_error *err);
FLASH_EXPORT flash_status flash_comm_barrier(flash_comm *c, flash_error *err);
/* The same sum for n floats in `device` memory ("cuda"), whose queued
 * writes are complete: through the device's own collective library when
 * it is there (libflash_comm_nccl.so for "cuda", loaded beside libflash
 * on first use and bootstrapped from this world), *done = true; else
 * *done = false and nothing happened: the caller sums through host memory.
 * Every rank decides alike: if one rank cannot load the library, none
 * uses it. $FLASH_COMM_DEVICE = nccl (fail without it), none (always
 * through the host) or auto; $FLASH_COMM_DEVICE_LIB names the object.
 * NCCL's sum is not in rank order, but its algorithms are fixed for a
 * given rank count and topology (NCCL_ALGO=Ring NCCL_PROTO=Simple pin
 * them), so a run still repeats bit for bit on the same machines. */
FLASH_EXPORT flash_status flash_comm_allreduce_sum_device(flash_comm *c, const char *device, float *buf, size_t n,
                                                          bool *done, flash_error *err);
/* What the last flash_comm_allreduce_sum_device used: "nccl", or "host"
 * before any or when there is no device collective. */
FLASH_EXPORT const char *flash_comm_device_name(const flash_comm *c);
/* Ends every rank's process with code: one rank's failure stops the run
 * instead of leaving the others waiting for it. */
FLASH_EXPORT void flash_comm_abort(flash_comm *c, int code);
/* Before a normal exit (MPI_Finalize); NULL-safe, idempotent. */
FLASH_EXPORT void flash_comm_finalize(void);

/* ---- the table an implementation exports (libflash_comm_<name>.so) ------ */

#define FLASH_COMM_ABI_MAJOR 1
#define FLASH_COMM_ABI_MINOR 0
#define FLASH_COMM_ENTRY_SYMBOL "flash_comm_entry"

typedef struct flash_comm_ops {
    uint32_t size;                 /* sizeof(flash_comm_ops) of the implementation */
    uint16_t abi_major, abi_minor; /* FLASH_COMM_ABI_* it was built against */
    const char *name;              /* "mpi" */
    /* Initialises the world; *self is the implementation's state. */
    int (*init)(void **self, char *msg, size_t msg_size);
    int (*size_of)(void *self);
    int (*rank_of)(void *self);
    /* 0 on success, else a message in msg */
    int (*allreduce_sum)(void *self, float *buf, size_t n, char *msg, size_t msg_size);
    int (*broadcast)(void *self, void *buf, size_t bytes, int root, char *msg, size_t msg_size);
    int (*gather)(void *self, const void *send, size_t bytes, void *recv, int root, char *msg, size_t msg_size);
    int (*barrier)(void *self, char *msg, size_t msg_size);
    void (*abort_all)(void *self, int code);
    void (*finalize)(void *self);
} flash_comm_ops;

typedef const flash_comm_ops *(*flash_comm_entry_fn)(void);

/* ---- the table a device collective exports (libflash_comm_nccl.so) ----- */

#define FLASH_COMM_DEVICE_ABI_MAJOR 1
#define FLASH_COMM_DEVICE_ABI_MINOR 0
#define FLASH_COMM_DEVICE_ENTRY_SYMBOL "flash_comm_device_entry"

/* Broadcasts rank 0's bytes to every rank over the world that loads the
 * collective (its bootstrap: NCCL's unique id); 0 on success. */
typedef int (*flash_comm_share_fn)(void *world, void *buf, size_t bytes);

typedef struct flash_comm_device_ops {
    uint32_t size;                 /* sizeof(flash_comm_device_ops) of the implementation */
    uint16_t abi_major, abi_minor; /* FLASH_COMM_DEVICE_ABI_* it was built against */
    const char *name;              /* "nccl" */
    const char *device;            /* whose memory it sums: "cuda" */
    /* Whether this rank can join (a device is there); 0 and the device's
     * identity in id (host and bus: two ranks on one device cannot join,
     * NCCL refuses them), else a message. Not collective: every rank
     * probes, then all agree, then all init. */
    int (*probe)(char *id, size_t id_size, char *msg, size_t msg_size);
    /* Collective over all ranks: joins the device world of `size` ranks. */
    int (*init)(void **self, int rank, int size, flash_comm_share_fn share, void *world, char *msg, size_t msg_size);
    /* buf = the sum over ranks, in place, complete on return; 0 or a message */
    int (*allreduce_sum)(void *self, float *buf, size_t n, char *msg, size_t msg_size);
    void (*abort_all)(void *self);
    void (*finalize)(void *self);
} flash_comm_device_ops;

typedef const flash_comm_device_ops *(*flash_comm_device_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
