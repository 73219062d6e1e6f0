/* The world of a data-parallel run (include/flash/comm.h): one process
 * unless a launcher started several, then the MPI implementation loaded
 * with dlopen, so a single-process flash needs no MPI library at all. */
#include "flash/comm.h"
#include "flash/log.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLASH_COMM_MPI_SONAME "libflash_comm_mpi.so"
#define FLASH_COMM_NCCL_SONAME "libflash_comm_nccl.so"

struct flash_comm {
    const flash_comm_ops *ops; /* NULL: this process alone */
    void *self;
    int size, rank;
    /* the device collective, decided on the first device all-reduce */
    bool dev_decided;
    const flash_comm_device_ops *dev_ops; /* NULL: sums go through the host */
    void *dev_self;
    char dev_for[16]; /* the device it serves */
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static flash_comm g_world = {.size = 1, .rank = 0};
static bool g_ok = true, g_finalized;
static char g_msg[512];

/* The number of tasks a launcher says it started (0: none said). */
static int launched_tasks(void)
{
    /* srun's step, not the job: SLURM_NTASKS is set in the batch script
     * itself, where a flash started without srun is one process */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE",
                                       "SLURM_STEP_NUM_TASKS", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v);
    }
    return 0;
}

static void *open_beside_libflash(const char *soname)
{
    Dl_info info;
    if (!dladdr((void *)&flash_comm_world, &info) || !info.dli_fname) return NULL;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash) return NULL;
    char path[4096];
    int n = snprintf(path, sizeof path, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname, soname);
    if (n < 0 || (size_t)n >= sizeof path) return NULL;
    /* RTLD_GLOBAL: Open MPI's own plugins resolve symbols of libmpi */
    return dlopen(path, RTLD_NOW | RTLD_GLOBAL);
}

static void load(void)
{
    const char *want = getenv("FLASH_COMM");
    if (want && !strcmp(want, "none")) return;
    const bool forced = want && !strcmp(want, "mpi");
    if (want && *want && !forced && strcmp(want, "auto") != 0) {
        snprintf(g_msg, sizeof g_msg, "FLASH_COMM=%s: expected mpi, none or auto", want);
        g_ok = false;
        return;
    }
    if (!forced && launched_tasks() <= 1) return;
    const char *lib = getenv("FLASH_COMM_LIB");
    void *h = lib && *lib ? dlopen(lib, RTLD_NOW | RTLD_GLOBAL) : NULL;
    if (!h && !(lib && *lib)) h = open_beside_libflash(FLASH_COMM_MPI_SONAME);
    if (!h && !(lib && *lib)) h = dlopen(FLASH_COMM_MPI_SONAME, RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(g_msg, sizeof g_msg,
                 "started as %d tasks, but %s cannot be loaded (%s): build flash with MPI (tools/setup.sh installs "
                 "Open MPI) or set FLASH_COMM=none",
                 launched_tasks(), lib && *lib ? lib : FLASH_COMM_MPI_SONAME, e ? e : "not found");
        g_ok = false;
        return;
    }
    flash_comm_entry_fn entry = (flash_comm_entry_fn)dlsym(h, FLASH_COMM_ENTRY_SYMBOL);
    const flash_comm_ops *ops = entry ? entry() : NULL;
    if (!ops || ops->abi_major != FLASH_COMM_ABI_MAJOR || ops->size < sizeof(flash_comm_ops)) {
        snprintf(g_msg, sizeof g_msg, "%s: not a flash comm of ABI %d.x (%s)", FLASH_COMM_MPI_SONAME,
                 FLASH_COMM_ABI_MAJOR, ops ? "another version" : "no entry");
        g_ok = false;
        return;
    }
    char msg[400] = "";
    void *self = NULL;
    if (ops->init(&self, msg, sizeof msg) != 0) {
        snprintf(g_msg, sizeof g_msg, "%s: %s", ops->name, msg);
        g_ok = false;
        return;
    }
    g_world.ops = ops;
    g_world.self = self;
    g_world.size = ops->size_of(self);
    g_world.rank = ops->rank_of(self);
}

flash_comm *flash_comm_world(flash_error *err)
{
    pthread_once(&g_once, load);
    if (!g_ok) {
        flash_error_set(err, FLASH_ERR_RUNTIME, "%s", g_msg);
        return NULL;
    }
    return &g_world;
}

int flash_comm_size(const flash_comm *c) { return c ? c->size : 1; }
int flash_comm_rank(const flash_comm *c) { return c ? c->rank : 0; }
const char *flash_comm_name(const flash_comm *c) { return c && c->ops ? c->ops->name : "none"; }

static flash_status fail(const char *what, const char *msg, flash_error *err)
{
    return flash_error_set(err, FLASH_ERR_RUNTIME, "comm %s: %s", what, msg);
}

flash_status flash_comm_allreduce_sum(flash_comm *c, float *buf, size_t n, flash_error *err)
{
    char msg[400];
    if (!c || !c->ops || c->size == 1) return FLASH_OK;
    return c->ops->allreduce_sum(c->self, buf, n, msg, sizeof msg) ? fail("all-reduce", msg, err) : FLASH_OK;
}

flash_status flash_comm_broadcast(flash_comm *c, void *buf, size_t bytes, int root, flash_error *err)
{
    char msg[400];
    if (!c || !c->ops || c->size == 1) return FLASH_OK;
    return c->ops->broadcast(c->self, buf, bytes, root, msg, sizeof msg) ? fail("broadcast", msg, err) : FLASH_OK;
}

flash_status flash_comm_gather(flash_comm *c, const void *send, size_t bytes, void *recv, int root, flash_error *err)
{
    char msg[400];
    if (!c || !c->ops || c->size == 1) {
        if (recv != send && bytes) memmove(recv, send, bytes);
        return FLASH_OK;
    }
    return c->ops->gather(c->self, send, bytes, recv, root, msg, sizeof msg) ? fail("gather", msg, err) : FLASH_OK;
}

flash_status flash_comm_barrier(flash_comm *c, flash_error *err)
{
    char msg[400];
    if (!c || !c->ops || c->size == 1) return FLASH_OK;
    return c->ops->barrier(c->self, msg, sizeof msg) ? fail("barrier", msg, err) : FLASH_OK;
}

/* ---- device collectives ---------------------------------------------------- */

static int share_from_rank0(void *world, void *buf, size_t bytes)
{
    flash_comm *c = world;
    char msg[400];
    return c->ops->broadcast(c->self, buf, bytes, 0, msg, sizeof msg);
}

/* This rank's candidate for `device`, not yet initialised; *why says why
 * there is none. */
static const flash_comm_device_ops *open_device_collective(const char *device, char *id, size_t id_size, char *why,
                                                           size_t why_size)
{
    if (strcmp(device, "cuda") != 0) {
        snprintf(why, why_size, "no device collective for '%s'", device);
        return NULL;
    }
    const char *lib = getenv("FLASH_COMM_DEVICE_LIB");
    void *h = lib && *lib ? dlopen(lib, RTLD_NOW | RTLD_GLOBAL) : open_beside_libflash(FLASH_COMM_NCCL_SONAME);
    if (!h && !(lib && *lib)) h = dlopen(FLASH_COMM_NCCL_SONAME, RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, why_size, "%s cannot be loaded (%s)", lib && *lib ? lib : FLASH_COMM_NCCL_SONAME,
                 e ? e : "not found");
        return NULL;
    }
    flash_comm_device_entry_fn entry = (flash_comm_device_entry_fn)dlsym(h, FLASH_COMM_DEVICE_ENTRY_SYMBOL);
    const flash_comm_device_ops *ops = entry ? entry() : NULL;
    if (!ops || ops->abi_major != FLASH_COMM_DEVICE_ABI_MAJOR || ops->size < sizeof(flash_comm_device_ops) ||
        strcmp(ops->device, device) != 0) {
        snprintf(why, why_size, "%s: not a device collective of ABI %d.x for '%s'", FLASH_COMM_NCCL_SONAME,
                 FLASH_COMM_DEVICE_ABI_MAJOR, device);
        return NULL;
    }
    char msg[300] = "";
    if (ops->probe(id, id_size, msg, sizeof msg) != 0) {
        snprintf(why, why_size, "%s: %s", ops->name, msg);
        return NULL;
    }
    return ops;
}

/* Every rank loads the collective, then all agree (a sum of failures over
 * the world) before any joins it: one rank without NCCL must not leave
 * the others waiting in its bootstrap. */
static flash_status decide_device_collective(flash_comm *c, const char *device, flash_error *err)
{
    const char *want = getenv("FLASH_COMM_DEVICE");
    const bool forced = want && !strcmp(want, "nccl");
    if (want && *want && !forced && strcmp(want, "none") != 0 && strcmp(want, "auto") != 0)
        return flash_error_set(err, FLASH_ERR_USAGE, "FLASH_COMM_DEVICE=%s: expected nccl, none or auto", want);
    c->dev_decided = true;
    snprintf(c->dev_for, sizeof c->dev_for, "%s", device);
    char why[400] = "";
    enum { ID = 128 };
    char id[ID] = "";
    const flash_comm_device_ops *ops = NULL;
    if (!(want && !strcmp(want, "none"))) ops = open_device_collective(device, id, ID, why, sizeof why);
    float missing = ops ? 0.0f : 1.0f;
    /* rank 0 counts the ranks that would share a device with another */
    char *ids = c->rank == 0 ? calloc((size_t)c->size, ID) : NULL;
    if (c->rank == 0 && !ids) return flash_error_set(err, FLASH_ERR_NOMEM, "comm: out of memory");
    flash_status st = flash_comm_gather(c, id, ID, ids, 0, err);
    int shared = 0;
    for (int r = 0; ids && !st && r < c->size; r++)
        for (int q = 0; q < r; q++)
            if (ids[(size_t)r * ID] && !strncmp(ids + (size_t)r * ID, ids + (size_t)q * ID, ID)) {
                shared++;
                break;
            }
    free(ids);
    if (st) return st;
    if (c->rank == 0) missing += (float)shared;
    if ((st = flash_comm_allreduce_sum(c, &missing, 1, err))) return st;
    if (missing > 0) {
        if (!*why && shared) snprintf(why, sizeof why, "%d ranks would share a device with another", shared);
        if (forced)
            return flash_error_set(err, FLASH_ERR_RUNTIME, "FLASH_COMM_DEVICE=nccl: %g of %d ranks lack it%s%s",
                                   (double)missing, c->size, *why ? ": " : "", why);
        flash_info("device all-reduce through host memory: %s", *why ? why : "another rank lacks the collective");
        return FLASH_OK;
    }
    char msg[400] = "";
    void *self = NULL;
    if (ops->init(&self, c->rank, c->size, share_from_rank0, c, msg, sizeof msg) != 0)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "comm %s on rank %d: %s", ops->name, c->rank, msg);
    c->dev_ops = ops;
    c->dev_self = self;
    return FLASH_OK;
}

flash_status flash_comm_allreduce_sum_device(flash_comm *c, const char *device, float *buf, size_t n, bool *done,
                                             flash_error *err)
{
    *done = false;
    if (!c || !c->ops || c->size == 1 || !device || !strcmp(device, "cpu")) return FLASH_OK;
    if (!c->dev_decided) {
        flash_status st = decide_device_collective(c, device, err);
        if (st) return st;
    } else if (strcmp(c->dev_for, device) != 0) {
        return FLASH_OK; /* one device per run; another goes through the host */
    }
    if (!c->dev_ops) return FLASH_OK;
    char msg[400];
    if (c->dev_ops->allreduce_sum(c->dev_self, buf, n, msg, sizeof msg))
        return flash_error_set(err, FLASH_ERR_RUNTIME, "comm %s all-reduce: %s", c->dev_ops->name, msg);
    *done = true;
    return FLASH_OK;
}

const char *flash_comm_device_name(const flash_comm *c) { return c && c->dev_ops ? c->dev_ops->name : "host"; }

void flash_comm_abort(flash_comm *c, int code)
{
    if (c && c->dev_ops) c->dev_ops->abort_all(c->dev_self);
    if (c && c->ops && c->size > 1) c->ops->abort_all(c->self, code);
    exit(code);
}

void flash_comm_finalize(void)
{
    if (g_finalized || !g_world.ops) return;
    g_finalized = true;
    if (g_world.dev_ops) g_world.dev_ops->finalize(g_world.dev_self);
    g_world.dev_ops = NULL;
    g_world.ops->finalize(g_world.self);
}
