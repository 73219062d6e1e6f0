/* comm_device_check LIB DEVICE: one rank of a device collective
 * (include/flash/comm.h; libflash_comm_nccl.so for "cuda") on a real
 * device: load it, probe, join a world of one, sum a buffer of device
 * memory in place, and check it came back unchanged (the sum over one
 * rank). NCCL refuses two ranks on one GPU, so this is what a machine
 * with one GPU can prove; tools/bench/gpu.sh runs it. Exit 0: passed,
 * 77: no device here (skipped), 1: failed. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "flash/comm.h"
#include "flash/flash.h"

static int share_nothing(void *world, void *buf, size_t bytes)
{
    (void)world, (void)buf, (void)bytes; /* one rank: its own id */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: comm_device_check LIB DEVICE\n");
        return 2;
    }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    flash_comm_device_entry_fn entry = h ? (flash_comm_device_entry_fn)dlsym(h, FLASH_COMM_DEVICE_ENTRY_SYMBOL) : NULL;
    const flash_comm_device_ops *ops = entry ? entry() : NULL;
    if (!ops || ops->abi_major != FLASH_COMM_DEVICE_ABI_MAJOR || strcmp(ops->device, argv[2]) != 0) {
        fprintf(stderr, "%s: not a device collective for %s (%s)\n", argv[1], argv[2], h ? "entry" : dlerror());
        return 1;
    }
    char msg[400] = "", id[128] = "";
    if (ops->probe(id, sizeof id, msg, sizeof msg) != 0) {
        printf("SKIP: %s: %s\n", ops->name, msg);
        return 77;
    }
    flash_error err = {0};
    flash_ctx *c = flash_ctx_create_on(argv[2], 1 << 20, &err);
    if (!c) {
        fprintf(stderr, "context on %s: %s\n", argv[2], err.msg);
        return 1;
    }
    enum { N = 4099 }; /* not a multiple of any chunk size */
    static float host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = (float)i * 0.5f - 1000.0f;
    int shape[1] = {N};
    flash_tensor *t = flash_tensor_new(c, 1, shape);
    int failed = !t || flash_tensor_from_host(c, t, host, &err) != FLASH_OK || flash_ctx_sync(c) != 0;
    void *self = NULL;
    if (!failed && ops->init(&self, 0, 1, share_nothing, NULL, msg, sizeof msg) != 0) {
        fprintf(stderr, "%s init: %s\n", ops->name, msg);
        failed = 1;
    }
    if (!failed && ops->allreduce_sum(self, t->data, N, msg, sizeof msg) != 0) {
        fprintf(stderr, "%s all-reduce: %s\n", ops->name, msg);
        failed = 1;
    }
    if (!failed && flash_tensor_to_host(c, t, back, &err) != FLASH_OK) failed = 1;
    if (!failed && memcmp(host, back, sizeof host) != 0) {
        fprintf(stderr, "%s: the sum over one rank changed the buffer\n", ops->name);
        failed = 1;
    }
    if (self) ops->finalize(self);
    flash_ctx_destroy(c);
    if (!failed)
        printf("ok: %s on %s (%s): one rank joined and summed %d floats of device memory in place\n", ops->name,
               argv[2], id, N);
    return failed;
}
