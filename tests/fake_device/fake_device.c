/* A strict stand-in for libflash_cuda.so on machines without a GPU: the CPU
 * kernels under the name "cuda", behind a memory that the host cannot
 * touch. Loaded through FLASH_CUDA_LIB by the unit.test_cuda_parity_fake
 * test, the device_*.sh integration tests and test_distill's device case,
 * it makes CI run every device code path outside the kernels themselves
 * (separate host arena for headers and tape, parameters moved between
 * backends, host copies through to_host / from_host, the backend's entry
 * symbol and loader) with the CPU as both sides of the parity harness.
 *
 * Strictness, so that a host access to device memory fails here as it
 * would on a GPU, and at the access rather than as a wrong number later:
 *   - "device" memory is one reserved region of address space, PROT_NONE
 *     except while one of this table's entries runs (the first entry to
 *     start opens it, the last to return closes it: two mprotect calls per
 *     kernel, over the region's used extent). A host read or write of it
 *     anywhere else raises SIGSEGV at once; the handler names the address
 *     as device memory, prints a backtrace and lets the signal kill the
 *     process (faults elsewhere go to the handler that was there before).
 *   - every pointer a kernel takes is checked against the contract of
 *     core/tensor/backend.h: device arguments must lie inside the region,
 *     "host" arguments (axpby's coefficients, indices, sum_rows' output,
 *     softmax's log-sum-exp, transfer buffers) outside it. A violation
 *     aborts with the entry and argument named.
 *   - as with cudaMalloc: 256-byte aligned, and fresh memory is not zeroed
 *     (it is filled with NaN bytes, so reading before writing shows).
 *   - the optional device entries are there as on CUDA: adam and ema (the
 *     CPU's formulas, so results stay those of the CPU), last_error and
 *     sync. Kernels run synchronously; that is one valid schedule of
 *     CUDA's single in-order stream, whose to_host waits for the work
 *     queued before it and whose from_host may reuse its source at once.
 *
 * The region grows by bumping its top and reuses freed blocks first-fit;
 * it is backed by transparent huge pages where the kernel allows, so that
 * opening and closing it costs little whatever its size.
 *
 * Like the real backend it does not link libflash: the CPU kernels are
 * compiled into it (tests/CMakeLists.txt), so it reaches nothing of
 * libflash's that libflash does not export.
 *
 * FLASH_FAKE_DEVICE_TABLE makes it return a table of another ABI, for the
 * loader's checks (tests/unit/test_backend_load.c):
 *   major        backend ABI major + 1 (refused)
 *   short        a table that ends before `sgemm` (refused)
 *   newer_minor  minor + 1 and fields this libflash does not know (loaded)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <execinfo.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tensor/backend.h"

#define DEVICE_ALIGN 256 /* cudaMalloc's */
#define REGION_STEP ((size_t)2 << 20) /* a huge page: the unit the region opens and closes in */

static const flash_backend *const cpu = &flash_cpu_backend;

/* ---- the region ---------------------------------------------------------------- */

typedef struct block {
    size_t off, size;
    bool used;
} block;

static struct {
    pthread_mutex_t lock;
    char *base;
    size_t reserved;
    size_t top;     /* end of the last block */
    size_t open_end; /* [base, base + open_end) is readable and writable now */
    int depth;       /* entries running (several threads may call in) */
    block *blocks;   /* sorted by offset, covering [0, top) */
    size_t n_blocks, cap_blocks;
    struct sigaction previous_segv;
} g_dev = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static _Noreturn void contract_broken(const char *entry, const char *what) {
    fprintf(stderr, "fake device: %s: %s (core/tensor/backend.h)\n", entry, what);
    void *frames[32];
    backtrace_symbols_fd(frames, backtrace(frames, 32), STDERR_FILENO);
    abort();
}

static bool in_region(const void *p) {
    const char *c = p;
    return g_dev.base && c >= g_dev.base && c < g_dev.base + g_dev.reserved;
}

/* Device arguments: inside the used region (NULL only where allowed). */
static void device_arg(const char *entry, const char *name, const void *p, size_t bytes, bool may_be_null) {
    if (!p) {
        if (!may_be_null) contract_broken(entry, name);
        return;
    }
    const char *c = p;
    if (!in_region(p) || (size_t)(c - g_dev.base) + bytes > g_dev.top) {
        char msg[256];
        snprintf(msg, sizeof msg, "argument %s (%p, %zu bytes) is not device memory", name, p, bytes);
        contract_broken(entry, msg);
    }
}
#define DEV(entry, p, count) device_arg(entry, #p, p, (count) * sizeof *(p), false)
#define DEV_OPT(entry, p, count) device_arg(entry, #p, p, (count) * sizeof *(p), true)

/* Host arguments: never device memory. */
static void host_arg(const char *entry, const char *name, const void *p) {
    if (p && in_region(p)) {
        char msg[256];
        snprintf(msg, sizeof msg, "argument %s (%p) is device memory where the contract says host memory", name, p);
        contract_broken(entry, msg);
    }
}
#define HOST(entry, p) host_arg(entry, #p, p)

static void set_protection(size_t end, int prot) {
    if (end && mprotect(g_dev.base, end, prot) != 0) {
        perror("fake device: mprotect");
        abort();
    }
}

/* Opens the used extent for the duration of an entry; nests. */
static void enter(void) {
    pthread_mutex_lock(&g_dev.lock);
    const size_t want = round_up(g_dev.top, REGION_STEP);
    if (g_dev.depth++ == 0 || want > g_dev.open_end) {
        set_protection(want, PROT_READ | PROT_WRITE);
        if (want > g_dev.open_end) g_dev.open_end = want;
    }
    pthread_mutex_unlock(&g_dev.lock);
}

static void leave(void) {
    pthread_mutex_lock(&g_dev.lock);
    if (--g_dev.depth == 0) {
        set_protection(g_dev.open_end, PROT_NONE);
        g_dev.open_end = 0;
    }
    pthread_mutex_unlock(&g_dev.lock);
}

/* A host access to the region: say so, then let the default action kill
 * the process with SIGSEGV when the access is retried. */
static void on_segv(int sig, siginfo_t *info, void *uctx) {
    if (in_region(info->si_addr)) {
        static const char msg[] = "fake device: the host touched device memory outside the backend's entries "
                                  "(read and write it through flash_tensor_to_host / _from_host), at 0x";
        char addr[2 * sizeof(uintptr_t) + 2];
        uintptr_t a = (uintptr_t)info->si_addr;
        size_t n = sizeof addr - 1;
        addr[n] = '\n';
        do {
            addr[--n] = "0123456789abcdef"[a & 15];
            a >>= 4;
        } while (a && n);
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        w = write(STDERR_FILENO, addr + n, sizeof addr - n);
        (void)w;
        void *frames[32];
        backtrace_symbols_fd(frames, backtrace(frames, 32), STDERR_FILENO);
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    const struct sigaction *p = &g_dev.previous_segv;
    if (p->sa_flags & SA_SIGINFO) {
        p->sa_sigaction(sig, info, uctx);
    } else if (p->sa_handler != SIG_IGN && p->sa_handler != SIG_DFL) {
        p->sa_handler(sig);
    } else {
        signal(SIGSEGV, SIG_DFL); /* the retried access now kills, as it would have */
    }
}

static bool region_init(char *msg, size_t msg_size) {
    if (g_dev.base) return true;
    /* address space only (no memory is committed until touched); the
     * largest reservation the system grants */
    for (size_t want = (size_t)1 << 38; want >= ((size_t)1 << 30); want >>= 1) {
        void *p = mmap(NULL, want + REGION_STEP, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) continue;
        char *base = (char *)round_up((uintptr_t)p, REGION_STEP);
        (void)madvise(base, want, MADV_HUGEPAGE);
        g_dev.base = base;
        g_dev.reserved = want;
        break;
    }
    if (!g_dev.base) {
        snprintf(msg, msg_size, "fake device: cannot reserve address space for device memory");
        return false;
    }
    void *frames[1];
    (void)backtrace(frames, 1); /* loads the unwinder now, not inside the signal handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_dev.previous_segv);
    return true;
}

static bool blocks_insert(size_t at, block b) {
    if (g_dev.n_blocks == g_dev.cap_blocks) {
        size_t cap = g_dev.cap_blocks ? 2 * g_dev.cap_blocks : 64;
        block *nb = realloc(g_dev.blocks, cap * sizeof *nb);
        if (!nb) return false;
        g_dev.blocks = nb;
        g_dev.cap_blocks = cap;
    }
    memmove(&g_dev.blocks[at + 1], &g_dev.blocks[at], (g_dev.n_blocks - at) * sizeof *g_dev.blocks);
    g_dev.blocks[at] = b;
    g_dev.n_blocks++;
    return true;
}

static void blocks_remove(size_t at) {
    memmove(&g_dev.blocks[at], &g_dev.blocks[at + 1], (g_dev.n_blocks - at - 1) * sizeof *g_dev.blocks);
    g_dev.n_blocks--;
}

/* First fit among freed blocks, else a new block at the top. */
static void *region_alloc(size_t bytes) {
    const size_t size = round_up(bytes ? bytes : 1, DEVICE_ALIGN);
    for (size_t i = 0; i < g_dev.n_blocks; i++) {
        block *b = &g_dev.blocks[i];
        if (b->used || b->size < size) continue;
        if (b->size > size) {
            block rest = {b->off + size, b->size - size, false};
            if (!blocks_insert(i + 1, rest)) return NULL;
            b = &g_dev.blocks[i];
            b->size = size;
        }
        b->used = true;
        return g_dev.base + b->off;
    }
    if (size > g_dev.reserved - g_dev.top) return NULL;
    block b = {g_dev.top, size, true};
    if (!blocks_insert(g_dev.n_blocks, b)) return NULL;
    g_dev.top += size;
    return g_dev.base + b.off;
}

static void region_free(void *p) {
    const size_t off = (size_t)((char *)p - g_dev.base);
    size_t lo = 0, hi = g_dev.n_blocks;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g_dev.blocks[mid].off < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == g_dev.n_blocks || g_dev.blocks[lo].off != off || !g_dev.blocks[lo].used)
        contract_broken("free", "not a live device allocation");
    size_t i = lo;
    g_dev.blocks[i].used = false;
    if (i + 1 < g_dev.n_blocks && !g_dev.blocks[i + 1].used) {
        g_dev.blocks[i].size += g_dev.blocks[i + 1].size;
        blocks_remove(i + 1);
    }
    if (i > 0 && !g_dev.blocks[i - 1].used) {
        g_dev.blocks[i - 1].size += g_dev.blocks[i].size;
        blocks_remove(i);
        i--;
    }
    if (i == g_dev.n_blocks - 1) { /* the top block: lower the top and give its pages back */
        const size_t from = round_up(g_dev.blocks[i].off, REGION_STEP), to = round_up(g_dev.top, REGION_STEP);
        g_dev.top = g_dev.blocks[i].off;
        blocks_remove(i);
        if (to > from) (void)madvise(g_dev.base + from, to - from, MADV_DONTNEED);
    }
}

/* ---- memory entries -------------------------------------------------------------- */

static void *dev_alloc(size_t bytes) {
    pthread_mutex_lock(&g_dev.lock);
    void *p = region_alloc(bytes);
    pthread_mutex_unlock(&g_dev.lock);
    if (!p) return NULL;
    enter();
    memset(p, 0xff, bytes); /* NaN: device memory starts as garbage, not zeros */
    leave();
    return p;
}

static void dev_free(void *p) {
    if (!p) return;
    pthread_mutex_lock(&g_dev.lock);
    region_free(p);
    pthread_mutex_unlock(&g_dev.lock);
}

/* Each kernel: check the arguments, open the region, run the CPU's kernel, close it. */
#define RUN(call) \
    do {          \
        enter();  \
        call;     \
        leave();  \
    } while (0)

static void dev_zero(float *p, size_t n) {
    DEV("zero", p, n);
    RUN(cpu->zero(p, n));
}

static void dev_copy(float *dst, const float *src, size_t n) {
    DEV("copy", dst, n);
    DEV("copy", src, n);
    RUN(cpu->copy(dst, src, n));
}

static void dev_fill(float *p, size_t n, float v) {
    DEV("fill", p, n);
    RUN(cpu->fill(p, n, v));
}

static void dev_copy2d(float *dst, size_t dst_ld, const float *src, size_t src_ld, size_t rows, size_t cols,
                       bool acc) {
    if (rows && cols) {
        DEV("copy2d", dst, (rows - 1) * dst_ld + cols);
        DEV("copy2d", src, (rows - 1) * src_ld + cols);
    }
    RUN(cpu->copy2d(dst, dst_ld, src, src_ld, rows, cols, acc));
}

static void dev_to_host(float *host, const float *dev, size_t n) {
    HOST("to_host", host);
    DEV("to_host", dev, n);
    RUN(cpu->to_host(host, dev, n));
}

static void dev_from_host(float *dev, const float *host, size_t n) {
    DEV("from_host", dev, n);
    HOST("from_host", host);
    RUN(cpu->from_host(dev, host, n));
}

/* ---- elementwise ------------------------------------------------------------------- */

static void dev_binary(flash_binop op, float *y, const float *a, const float *b, const flash_bcast *bc, bool acc) {
    DEV("binary", y, bc->a_numel);
    DEV("binary", a, bc->a_numel);
    DEV("binary", b, bc->b_numel);
    RUN(cpu->binary(op, y, a, b, bc, acc));
}

static void dev_bcast_reduce(float *gb, const float *x, const float *w, const flash_bcast *bc, float scale,
                             double *scratch, bool acc) {
    DEV("bcast_reduce", gb, bc->b_numel);
    DEV("bcast_reduce", x, bc->a_numel);
    DEV_OPT("bcast_reduce", w, bc->a_numel);
    DEV("bcast_reduce", scratch, bc->outer);
    RUN(cpu->bcast_reduce(gb, x, w, bc, scale, scratch, acc));
}

static void dev_unary(flash_unop op, float *y, const float *x, size_t n, float a, float b) {
    DEV("unary", y, n);
    DEV("unary", x, n);
    RUN(cpu->unary(op, y, x, n, a, b));
}

static void dev_unary_backward(flash_unop op, float *gx, const float *gy, const float *x, const float *y, size_t n,
                               float a, bool acc) {
    DEV("unary_backward", gx, n);
    DEV("unary_backward", gy, n);
    DEV_OPT("unary_backward", x, n);
    DEV_OPT("unary_backward", y, n);
    RUN(cpu->unary_backward(op, gx, gy, x, y, n, a, acc));
}

static void dev_axpby(float *out, const float *a, const float *x, const float *b, const float *y, size_t rows,
                      size_t inner, bool acc) {
    DEV("axpby", out, rows * inner);
    DEV("axpby", x, rows * inner);
    DEV_OPT("axpby", y, rows * inner);
    HOST("axpby", a);
    HOST("axpby", b);
    RUN(cpu->axpby(out, a, x, b, y, rows, inner, acc));
}

static void dev_where(float *out, const float *mask, const float *a, const float *b, const flash_bcast *bc) {
    DEV("where", out, bc->a_numel);
    DEV("where", mask, bc->b_numel);
    DEV("where", a, bc->a_numel);
    DEV("where", b, bc->a_numel);
    RUN(cpu->where(out, mask, a, b, bc));
}

static void dev_where_backward(float *ga, float *gb, const float *mask, const float *g, const flash_bcast *bc) {
    DEV_OPT("where_backward", ga, bc->a_numel);
    DEV_OPT("where_backward", gb, bc->a_numel);
    DEV("where_backward", mask, bc->b_numel);
    DEV("where_backward", g, bc->a_numel);
    RUN(cpu->where_backward(ga, gb, mask, g, bc));
}

/* ---- reductions ------------------------------------------------------------------- */

static double dev_sum(const float *x, const float *w, size_t n) {
    DEV("sum", x, n);
    DEV_OPT("sum", w, n);
    double s;
    RUN(s = cpu->sum(x, w, n));
    return s;
}

static void dev_sum_rows(double *out, const float *x, size_t rows, size_t len) {
    HOST("sum_rows", out);
    DEV("sum_rows", x, rows * len);
    RUN(cpu->sum_rows(out, x, rows, len));
}

static double dev_sq_diff_sum(const float *a, const float *b, size_t n) {
    DEV("sq_diff_sum", a, n);
    DEV("sq_diff_sum", b, n);
    double s;
    RUN(s = cpu->sq_diff_sum(a, b, n));
    return s;
}

static void dev_softmax_rows(float *p, double *lse, const float *x, size_t rows, size_t k) {
    DEV("softmax_rows", p, rows * k);
    HOST("softmax_rows", lse);
    DEV("softmax_rows", x, rows * k);
    RUN(cpu->softmax_rows(p, lse, x, rows, k));
}

/* ---- gathers ------------------------------------------------------------------------ */

static void dev_gather_rows(float *out, const float *table, const int *idx, size_t n, size_t d) {
    DEV("gather_rows", out, n * d);
    DEV("gather_rows", table, d);
    HOST("gather_rows", idx);
    RUN(cpu->gather_rows(out, table, idx, n, d));
}

static void dev_scatter_add_rows(float *gtable, const float *g, const int *idx, size_t n, size_t d) {
    DEV("scatter_add_rows", gtable, d);
    DEV("scatter_add_rows", g, n * d);
    HOST("scatter_add_rows", idx);
    RUN(cpu->scatter_add_rows(gtable, g, idx, n, d));
}

/* ---- dense layers -------------------------------------------------------------------- */

static int dev_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc) {
    if (m > 0 && n > 0 && k > 0) {
        DEV("sgemm", a, (size_t)((ta ? k : m) - 1) * (size_t)lda + (size_t)(ta ? m : k));
        DEV("sgemm", b, (size_t)((tb ? n : k) - 1) * (size_t)ldb + (size_t)(tb ? k : n));
        DEV("sgemm", c, (size_t)(m - 1) * (size_t)ldc + (size_t)n);
    }
    int st;
    RUN(st = cpu->sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc));
    return st;
}

static int dev_conv2d_saved_bytes(const flash_conv_geom *g, size_t *saved_bytes, char *msg, size_t msg_size) {
    return cpu->conv2d_saved_bytes(g, saved_bytes, msg, msg_size);
}

static size_t conv_saved_bytes(const flash_conv_geom *g) {
    size_t bytes = 0;
    char msg[8];
    return cpu->conv2d_saved_bytes(g, &bytes, msg, sizeof msg) == 0 ? bytes : 0;
}

static int dev_conv2d_forward(const flash_conv_geom *g, float *y, const float *x, const float *w, const float *b,
                              void *saved, char *msg, size_t msg_size) {
    const size_t nx = (size_t)g->n * g->cin * g->h * g->w, nw = (size_t)g->cout * g->cin * g->k * g->k;
    DEV("conv2d_forward", y, (size_t)g->n * g->cout * g->ho * g->wo);
    DEV("conv2d_forward", x, nx);
    DEV("conv2d_forward", w, nw);
    if (g->bias) DEV("conv2d_forward", b, (size_t)g->cout);
    if (saved) device_arg("conv2d_forward", "saved", saved, conv_saved_bytes(g), false);
    HOST("conv2d_forward", msg);
    int st;
    RUN(st = cpu->conv2d_forward(g, y, x, w, b, saved, msg, msg_size));
    return st;
}

static int dev_conv2d_backward(const flash_conv_geom *g, float *gx, float *gw, float *gb, const float *gy,
                               const float *x, const float *w, const void *saved, char *msg, size_t msg_size) {
    const size_t nx = (size_t)g->n * g->cin * g->h * g->w, nw = (size_t)g->cout * g->cin * g->k * g->k;
    DEV_OPT("conv2d_backward", gx, nx);
    DEV_OPT("conv2d_backward", gw, nw);
    DEV_OPT("conv2d_backward", gb, (size_t)g->cout);
    DEV("conv2d_backward", gy, (size_t)g->n * g->cout * g->ho * g->wo);
    DEV("conv2d_backward", x, nx);
    DEV("conv2d_backward", w, nw);
    if (saved) device_arg("conv2d_backward", "saved", saved, conv_saved_bytes(g), false);
    HOST("conv2d_backward", msg);
    int st;
    RUN(st = cpu->conv2d_backward(g, gx, gw, gb, gy, x, w, saved, msg, msg_size));
    return st;
}

static void dev_group_norm_forward(float *y, double *stats, const float *x, const float *gamma, const float *beta,
                                   int n, int c, int hw, int groups, float eps, bool silu) {
    const size_t nx = (size_t)n * c * hw;
    DEV("group_norm_forward", y, nx);
    DEV("group_norm_forward", stats, 2 * (size_t)n * groups);
    DEV("group_norm_forward", x, nx);
    DEV_OPT("group_norm_forward", gamma, (size_t)c);
    DEV_OPT("group_norm_forward", beta, (size_t)c);
    RUN(cpu->group_norm_forward(y, stats, x, gamma, beta, n, c, hw, groups, eps, silu));
}

static void dev_group_norm_backward(float *gx, float *ggamma, float *gbeta, const float *gy, const float *x,
                                    const double *stats, const float *gamma, const float *beta, int n, int c, int hw,
                                    int groups, bool silu, double *scratch) {
    const size_t nx = (size_t)n * c * hw;
    DEV_OPT("group_norm_backward", gx, nx);
    DEV_OPT("group_norm_backward", ggamma, (size_t)c);
    DEV_OPT("group_norm_backward", gbeta, (size_t)c);
    DEV("group_norm_backward", gy, nx);
    DEV("group_norm_backward", x, nx);
    DEV("group_norm_backward", stats, 2 * (size_t)n * groups);
    DEV_OPT("group_norm_backward", gamma, (size_t)c);
    DEV_OPT("group_norm_backward", beta, (size_t)c);
    DEV("group_norm_backward", scratch, 2 * (size_t)n * c);
    RUN(cpu->group_norm_backward(gx, ggamma, gbeta, gy, x, stats, gamma, beta, n, c, hw, groups, silu, scratch));
}

static void dev_upsample2x(float *y, const float *x, int nc, int h, int w) {
    DEV("upsample2x", y, 4 * (size_t)nc * h * w);
    DEV("upsample2x", x, (size_t)nc * h * w);
    RUN(cpu->upsample2x(y, x, nc, h, w));
}

static void dev_upsample2x_backward(float *gx, const float *gy, int nc, int h, int w) {
    DEV("upsample2x_backward", gx, (size_t)nc * h * w);
    DEV("upsample2x_backward", gy, 4 * (size_t)nc * h * w);
    RUN(cpu->upsample2x_backward(gx, gy, nc, h, w));
}

static void dev_avg_pool2d(float *y, const float *x, int nc, int h, int w, int k) {
    DEV("avg_pool2d", y, (size_t)nc * (h / k) * (w / k));
    DEV("avg_pool2d", x, (size_t)nc * h * w);
    RUN(cpu->avg_pool2d(y, x, nc, h, w, k));
}

static void dev_avg_pool2d_backward(float *gx, const float *gy, int nc, int h, int w, int k) {
    DEV("avg_pool2d_backward", gx, (size_t)nc * h * w);
    DEV("avg_pool2d_backward", gy, (size_t)nc * (h / k) * (w / k));
    RUN(cpu->avg_pool2d_backward(gx, gy, nc, h, w, k));
}

/* ---- the optional device entries -------------------------------------------------------- */

/* The CPU fallback's formula in core/tensor/params.c, so the stand-in's
 * parameters stay those of a CPU run. */
static void adam_kernel(float *restrict w, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                        float b1, float b2, float eps, float step_size, float inv_sqrt_bc2, float decay) {
#pragma omp parallel for schedule(static) if (n > 32768)
    for (long long i = 0; i < (long long)n; i++) {
        const float gi = g[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        const float denom = sqrtf(v[i]) * inv_sqrt_bc2 + eps;
        w[i] = w[i] * decay - step_size * m[i] / denom;
    }
}

static void dev_adam(float *w, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                     float step_size, float inv_sqrt_bc2, float decay) {
    DEV("adam", w, n);
    DEV("adam", g, n);
    DEV("adam", m, n);
    DEV("adam", v, n);
    RUN(adam_kernel(w, g, m, v, n, b1, b2, eps, step_size, inv_sqrt_bc2, decay));
}

static void ema_kernel(float *restrict e, const float *restrict w, size_t n, float decay) {
    const float k = 1.0f - decay;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (long long i = 0; i < (long long)n; i++) e[i] = decay * e[i] + k * w[i];
}

static void dev_ema(float *e, const float *w, size_t n, float decay) {
    DEV("ema", e, n);
    DEV("ema", w, n);
    RUN(ema_kernel(e, w, n, decay));
}

static const char *dev_last_error(void) { return NULL; }

static int dev_sync(void) { return 0; }

/* ---- the entry -------------------------------------------------------------------------- */

/* Room for fields appended by a newer minor than this build's. */
static struct {
    flash_backend table;
    void (*later[4])(void);
} g_fake;

__attribute__((visibility("default"))) const flash_backend *flash_backend_entry(char *msg, size_t msg_size) {
    if (!region_init(msg, msg_size)) return NULL;
    flash_backend *t = &g_fake.table;
    *t = flash_cpu_backend;
    t->name = "cuda";
    t->alloc = dev_alloc;
    t->free = dev_free;
    t->zero = dev_zero;
    t->copy = dev_copy;
    t->fill = dev_fill;
    t->copy2d = dev_copy2d;
    t->to_host = dev_to_host;
    t->from_host = dev_from_host;
    t->binary = dev_binary;
    t->bcast_reduce = dev_bcast_reduce;
    t->unary = dev_unary;
    t->unary_backward = dev_unary_backward;
    t->axpby = dev_axpby;
    t->where = dev_where;
    t->where_backward = dev_where_backward;
    t->sum = dev_sum;
    t->sum_rows = dev_sum_rows;
    t->sq_diff_sum = dev_sq_diff_sum;
    t->softmax_rows = dev_softmax_rows;
    t->gather_rows = dev_gather_rows;
    t->scatter_add_rows = dev_scatter_add_rows;
    t->sgemm = dev_sgemm;
    t->conv2d_saved_bytes = dev_conv2d_saved_bytes;
    t->conv2d_forward = dev_conv2d_forward;
    t->conv2d_backward = dev_conv2d_backward;
    t->group_norm_forward = dev_group_norm_forward;
    t->group_norm_backward = dev_group_norm_backward;
    t->upsample2x = dev_upsample2x;
    t->upsample2x_backward = dev_upsample2x_backward;
    t->avg_pool2d = dev_avg_pool2d;
    t->avg_pool2d_backward = dev_avg_pool2d_backward;
    t->adam = dev_adam;
    t->ema = dev_ema;
    t->last_error = dev_last_error;
    t->sync = dev_sync;
    /* its kernels compute in float32 only, like the CUDA backend's today:
     * the CPU table's bf16 answer is not the stand-in's to give */
    t->conv2d_precision = NULL;
    const char *variant = getenv("FLASH_FAKE_DEVICE_TABLE");
    if (variant && !strcmp(variant, "major")) {
        t->abi_major = FLASH_BACKEND_ABI_MAJOR + 1;
    } else if (variant && !strcmp(variant, "short")) {
        t->size = (uint32_t)offsetof(flash_backend, sgemm);
    } else if (variant && !strcmp(variant, "newer_minor")) {
        t->abi_minor = FLASH_BACKEND_ABI_MINOR + 1;
        t->size = (uint32_t)sizeof g_fake;
    }
    return t;
}
