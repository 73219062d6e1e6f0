/* This process's rank among the ranks of a data-parallel run on the same
 * machine, as the launcher says it (Open MPI, MPICH, MVAPICH, Slurm,
 * torchrun-style LOCAL_RANK), 0 without one. The CUDA backend and the
 * NCCL collective both pick GPU local_rank % count by it, so the two agree
 * on the device without talking to each other. Header-only: the two live
 * in separate shared objects. */
#ifndef FLASH_LOCAL_RANK_H
#define FLASH_LOCAL_RANK_H

#include <stdlib.h>

static inline int flash_local_rank(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK",
                                       "SLURM_LOCALID", "LOCAL_RANK", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            int r = atoi(v);
            return r > 0 ? r : 0;
        }
    }
    return 0;
}

#endif
