/* libflash_comm_mpi.so: the data-parallel world on MPI (include/flash/comm.h),
 * loaded by libflash with dlopen only when a launcher started several
 * processes, so libflash itself never links MPI.
 *
 * The all-reduce is a gather to rank 0, a sum in rank order and a
 * broadcast, not MPI_Allreduce: MPI may pick its reduction order by message
 * size and rank count, and a fixed order makes a run with a given rank
 * count bit for bit reproducible. Gradients of the models trained here are
 * megabytes, so the extra copy is cheap next to a step. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash/comm.h"

typedef struct mpi_world {
    int size, rank;
    float *scratch; /* rank 0: size * n floats for the all-reduce */
    size_t cap;
    int we_initialised;
} mpi_world;

static void say(int rc, char *msg, size_t n)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    snprintf(msg, n, "%s", s);
}

static int comm_init(void **self, char *msg, size_t n)
{
    mpi_world *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(msg, n, "out of memory");
        return 1;
    }
    int inited = 0, rc;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided;
        /* one thread calls MPI (the loop's); OpenMP threads never do */
        if ((rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS) {
            say(rc, msg, n);
            free(w);
            return 1;
        }
        w->we_initialised = 1;
    }
    /* errors come back as codes, so a rank reports its own failure */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    *self = w;
    return 0;
}

static int size_of(void *self) { return ((mpi_world *)self)->size; }
static int rank_of(void *self) { return ((mpi_world *)self)->rank; }

static int bytes_ok(size_t bytes, char *msg, size_t n)
{
    if (bytes > (size_t)0x7fffffff) {
        snprintf(msg, n, "%zu bytes in one call: more than MPI's int count", bytes);
        return 0;
    }
    return 1;
}

static int broadcast(void *self, void *buf, size_t bytes, int root, char *msg, size_t n)
{
    (void)self;
    if (!bytes_ok(bytes, msg, n)) return 1;
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) say(rc, msg, n);
    return rc != MPI_SUCCESS;
}

static int gather(void *self, const void *send, size_t bytes, void *recv, int root, char *msg, size_t n)
{
    (void)self;
    if (!bytes_ok(bytes, msg, n)) return 1;
    int rc = MPI_Gather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) say(rc, msg, n);
    return rc != MPI_SUCCESS;
}

static int allreduce_sum(void *self, float *buf, size_t count, char *msg, size_t n)
{
    mpi_world *w = self;
    const size_t bytes = count * sizeof(float);
    if (!bytes_ok(bytes * (size_t)w->size, msg, n)) return 1;
    if (w->rank == 0 && w->cap < count * (size_t)w->size) {
        float *s = realloc(w->scratch, count * (size_t)w->size * sizeof *s);
        if (!s) {
            snprintf(msg, n, "out of memory for %zu floats", count * (size_t)w->size);
            /* the others wait in the gather: stop them too */
            MPI_Abort(MPI_COMM_WORLD, 1);
            return 1;
        }
        w->scratch = s;
        w->cap = count * (size_t)w->size;
    }
    if (gather(self, buf, bytes, w->scratch, 0, msg, n)) return 1;
    if (w->rank == 0) {
        /* rank order, every time */
        memcpy(buf, w->scratch, bytes);
        for (int r = 1; r < w->size; r++) {
            const float *src = w->scratch + (size_t)r * count;
            for (size_t i = 0; i < count; i++) buf[i] += src[i];
        }
    }
    return broadcast(self, buf, bytes, 0, msg, n);
}

static int barrier(void *self, char *msg, size_t n)
{
    (void)self;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) say(rc, msg, n);
    return rc != MPI_SUCCESS;
}

static void abort_all(void *self, int code)
{
    (void)self;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
}

static void finalize(void *self)
{
    mpi_world *w = self;
    if (w->we_initialised) MPI_Finalize();
    free(w->scratch);
    free(w);
}

static const flash_comm_ops mpi_ops = {
    .size = sizeof mpi_ops,
    .abi_major = FLASH_COMM_ABI_MAJOR,
    .abi_minor = FLASH_COMM_ABI_MINOR,
    .name = "mpi",
    .init = comm_init,
    .size_of = size_of,
    .rank_of = rank_of,
    .allreduce_sum = allreduce_sum,
    .broadcast = broadcast,
    .gather = gather,
    .barrier = barrier,
    .abort_all = abort_all,
    .finalize = finalize,
};

__attribute__((visibility("default"))) const flash_comm_ops *flash_comm_entry(void) { return &mpi_ops; }
