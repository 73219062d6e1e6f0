/* Kernel profiling (flash bench --profile): a copy of a context's backend
 * table whose every entry counts its calls, times them and, for the matrix
 * products and convolutions, counts their floating-point operations (2
 * per multiply-add) from their shapes. Whatever a step spends outside
 * these kernels is the framework's own work: shape logic, the tape,
 * allocation, and the optimiser, which runs on the parameters' table.
 *
 * Backend functions take no context, so the counters are the process's:
 * one profiled context at a time. Times are wall times of each call: a
 * CPU backend's work is done when it returns; an asynchronous device's is
 * not, so on a device only the counts and operations are meaningful. */
#include "tensor/backend.h"
#include "tensor/tensor_internal.h"

#include <string.h>

enum {
    K_ALLOC, K_FREE, K_ZERO, K_COPY, K_FILL, K_COPY2D, K_TO_HOST, K_FROM_HOST, K_BINARY, K_BCAST_REDUCE, K_UNARY,
    K_UNARY_BACKWARD, K_AXPBY, K_WHERE, K_WHERE_BACKWARD, K_SUM, K_SUM_ROWS, K_SQ_DIFF_SUM, K_SOFTMAX_ROWS,
    K_GATHER_ROWS, K_SCATTER_ADD_ROWS, K_SGEMM, K_CONV2D_SAVED_BYTES, K_CONV2D_FORWARD, K_CONV2D_BACKWARD,
    K_GROUP_NORM_FORWARD, K_GROUP_NORM_BACKWARD, K_UPSAMPLE2X, K_UPSAMPLE2X_BACKWARD, K_AVG_POOL2D,
    K_AVG_POOL2D_BACKWARD, K_ADAM, K_EMA, K_SYNC, K_COUNT
};

static const char *const kernel_names[K_COUNT] = {
    "alloc", "free", "zero", "copy", "fill", "copy2d", "to_host", "from_host", "binary", "bcast_reduce", "unary",
    "unary_backward", "axpby", "where", "where_backward", "sum", "sum_rows", "sq_diff_sum", "softmax_rows",
    "gather_rows", "scatter_add_rows", "sgemm", "conv2d_saved_bytes", "conv2d_forward", "conv2d_backward",
    "group_norm_forward", "group_norm_backward", "upsample2x", "upsample2x_backward", "avg_pool2d",
    "avg_pool2d_backward", "adam", "ema", "sync"};

static const flash_backend *g_base;
static flash_backend g_table;
static flash_ctx *g_ctx;   /* the context profile_start profiles */
static bool g_enabled;     /* flash_profile_enable: new CPU contexts are profiled */
static int64_t g_calls[K_COUNT];
static double g_seconds[K_COUNT], g_flops[K_COUNT];

/* Phases: the wall time between flash_profile_phase calls, and the
 * operations of the kernels run meanwhile, per phase name. */
#define MAX_PHASES 24
static const char *g_phase_name[MAX_PHASES];
static double g_phase_s[MAX_PHASES], g_phase_flops[MAX_PHASES];
static int64_t g_phase_n[MAX_PHASES];
static int g_n_phases, g_cur = -1;
static double g_since;

static void add(int k, double t0, double flops)
{
    g_calls[k]++;
    g_seconds[k] += flash_now() - t0;
    g_flops[k] += flops;
    if (g_cur >= 0) g_phase_flops[g_cur] += flops;
}

/* a call of the base table's entry, timed under kernel k */
#define TIMED_VOID(k, call)                                                                                         \
    do {                                                                                                            \
        const double t0 = flash_now();                                                                              \
        g_base->call;                                                                                               \
        add(k, t0, 0);                                                                                              \
    } while (0)
#define TIMED_RET(k, type, call, flops)                                                                             \
    do {                                                                                                            \
        const double t0 = flash_now();                                                                              \
        type r = g_base->call;                                                                                      \
        add(k, t0, flops);                                                                                          \
        return r;                                                                                                   \
    } while (0)

static double conv_flops(const flash_conv_geom *g)
{
    const double ho = (g->h + 2.0 * g->pad - g->k) / g->stride + 1, wo = (g->w + 2.0 * g->pad - g->k) / g->stride + 1;
    return 2.0 * g->n * g->cout * (double)(int)ho * (double)(int)wo * g->cin * g->k * g->k;
}

static void *p_alloc(size_t bytes) { TIMED_RET(K_ALLOC, void *, alloc(bytes), 0); }
static void p_free(void *p) { TIMED_VOID(K_FREE, free(p)); }
static void p_zero(float *p, size_t n) { TIMED_VOID(K_ZERO, zero(p, n)); }
static void p_copy(float *d, const float *s, size_t n) { TIMED_VOID(K_COPY, copy(d, s, n)); }
static void p_fill(float *p, size_t n, float v) { TIMED_VOID(K_FILL, fill(p, n, v)); }
static void p_copy2d(float *d, size_t dl, const float *s, size_t sl, size_t rows, size_t cols, bool acc)
{
    TIMED_VOID(K_COPY2D, copy2d(d, dl, s, sl, rows, cols, acc));
}
static void p_to_host(float *h, const float *d, size_t n) { TIMED_VOID(K_TO_HOST, to_host(h, d, n)); }
static void p_from_host(float *d, const float *h, size_t n) { TIMED_VOID(K_FROM_HOST, from_host(d, h, n)); }
static void p_binary(flash_binop op, float *y, const float *a, const float *b, const flash_bcast *bc, bool acc)
{
    TIMED_VOID(K_BINARY, binary(op, y, a, b, bc, acc));
}
static void p_bcast_reduce(float *gb, const float *x, const float *w, const flash_bcast *bc, float scale,
                           double *scratch, bool acc)
{
    TIMED_VOID(K_BCAST_REDUCE, bcast_reduce(gb, x, w, bc, scale, scratch, acc));
}
static void p_unary(flash_unop op, float *y, const float *x, size_t n, float a, float b)
{
    TIMED_VOID(K_UNARY, unary(op, y, x, n, a, b));
}
static void p_unary_backward(flash_unop op, float *gx, const float *gy, const float *x, const float *y, size_t n,
                             float a, bool acc)
{
    TIMED_VOID(K_UNARY_BACKWARD, unary_backward(op, gx, gy, x, y, n, a, acc));
}
static void p_axpby(float *out, const float *a, const float *x, const float *b, const float *y, size_t rows,
                    size_t inner, bool acc)
{
    TIMED_VOID(K_AXPBY, axpby(out, a, x, b, y, rows, inner, acc));
}
static void p_where(float *out, const float *m, const float *a, const float *b, const flash_bcast *bc)
{
    TIMED_VOID(K_WHERE, where(out, m, a, b, bc));
}
static void p_where_backward(float *ga, float *gb, const float *m, const float *g, const flash_bcast *bc)
{
    TIMED_VOID(K_WHERE_BACKWARD, where_backward(ga, gb, m, g, bc));
}
static double p_sum(const float *x, const float *w, size_t n) { TIMED_RET(K_SUM, double, sum(x, w, n), 0); }
static void p_sum_rows(double *out, const float *x, size_t rows, size_t len)
{
    TIMED_VOID(K_SUM_ROWS, sum_rows(out, x, rows, len));
}
static double p_sq_diff_sum(const float *a, const float *b, size_t n)
{
    TIMED_RET(K_SQ_DIFF_SUM, double, sq_diff_sum(a, b, n), 0);
}
static void p_softmax_rows(float *p, double *lse, const float *x, size_t rows, size_t k)
{
    TIMED_VOID(K_SOFTMAX_ROWS, softmax_rows(p, lse, x, rows, k));
}
static void p_gather_rows(float *out, const float *t, const int *idx, size_t n, size_t d)
{
    TIMED_VOID(K_GATHER_ROWS, gather_rows(out, t, idx, n, d));
}
static void p_scatter_add_rows(float *gt, const float *g, const int *idx, size_t n, size_t d)
{
    TIMED_VOID(K_SCATTER_ADD_ROWS, scatter_add_rows(gt, g, idx, n, d));
}
static int p_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                   int ldb, float beta, float *c, int ldc)
{
    TIMED_RET(K_SGEMM, int, sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), 2.0 * m * (double)n * k);
}
static int p_conv2d_saved_bytes(const flash_conv_geom *g, size_t *bytes, char *msg, size_t ms)
{
    TIMED_RET(K_CONV2D_SAVED_BYTES, int, conv2d_saved_bytes(g, bytes, msg, ms), 0);
}
static int p_conv2d_forward(const flash_conv_geom *g, float *y, const float *x, const float *w, const float *b,
                            void *saved, char *msg, size_t ms)
{
    TIMED_RET(K_CONV2D_FORWARD, int, conv2d_forward(g, y, x, w, b, saved, msg, ms), conv_flops(g));
}
/* the input's gradient and the weights': twice the forward's products
 * (the first layer's input gradient is computed whether or not it is used) */
static int p_conv2d_backward(const flash_conv_geom *g, float *gx, float *gw, float *gb, const float *gy,
                             const float *x, const float *w, const void *saved, char *msg, size_t ms)
{
    TIMED_RET(K_CONV2D_BACKWARD, int, conv2d_backward(g, gx, gw, gb, gy, x, w, saved, msg, ms),
              (gx ? 1.0 : 0.0) * conv_flops(g) + (gw ? 1.0 : 0.0) * conv_flops(g));
}
static void p_group_norm_forward(float *y, double *stats, const float *x, const float *gamma, const float *beta,
                                 int n, int c, int hw, int groups, float eps, bool silu)
{
    TIMED_VOID(K_GROUP_NORM_FORWARD, group_norm_forward(y, stats, x, gamma, beta, n, c, hw, groups, eps, silu));
}
static void p_group_norm_backward(float *gx, float *gg, float *gb, const float *gy, const float *x,
                                  const double *stats, const float *gamma, const float *beta, int n, int c, int hw,
                                  int groups, bool silu, double *scratch)
{
    TIMED_VOID(K_GROUP_NORM_BACKWARD,
               group_norm_backward(gx, gg, gb, gy, x, stats, gamma, beta, n, c, hw, groups, silu, scratch));
}
static void p_upsample2x(float *y, const float *x, int nc, int h, int w)
{
    TIMED_VOID(K_UPSAMPLE2X, upsample2x(y, x, nc, h, w));
}
static void p_upsample2x_backward(float *gx, const float *gy, int nc, int h, int w)
{
    TIMED_VOID(K_UPSAMPLE2X_BACKWARD, upsample2x_backward(gx, gy, nc, h, w));
}
static void p_avg_pool2d(float *y, const float *x, int nc, int h, int w, int k)
{
    TIMED_VOID(K_AVG_POOL2D, avg_pool2d(y, x, nc, h, w, k));
}
static void p_avg_pool2d_backward(float *gx, const float *gy, int nc, int h, int w, int k)
{
    TIMED_VOID(K_AVG_POOL2D_BACKWARD, avg_pool2d_backward(gx, gy, nc, h, w, k));
}
static void p_adam(float *w, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                   float step, float inv, float decay)
{
    TIMED_VOID(K_ADAM, adam(w, g, m, v, n, b1, b2, eps, step, inv, decay));
}
static void p_ema(float *e, const float *w, size_t n, float decay) { TIMED_VOID(K_EMA, ema(e, w, n, decay)); }
static int p_sync(void) { TIMED_RET(K_SYNC, int, sync(), 0); }

const flash_backend *flash_profile_base(const flash_backend *be) { return be == &g_table ? g_base : be; }

static void build(const flash_backend *base)
{
    g_base = base;
    g_table = (flash_backend){
        .size = sizeof g_table, .abi_major = base->abi_major, .abi_minor = base->abi_minor, .name = base->name,
        .alloc = p_alloc, .free = p_free, .zero = p_zero, .copy = p_copy, .fill = p_fill, .copy2d = p_copy2d,
        .to_host = p_to_host, .from_host = p_from_host, .binary = p_binary, .bcast_reduce = p_bcast_reduce,
        .unary = p_unary, .unary_backward = p_unary_backward, .axpby = p_axpby, .where = p_where,
        .where_backward = p_where_backward, .sum = p_sum, .sum_rows = p_sum_rows, .sq_diff_sum = p_sq_diff_sum,
        .softmax_rows = p_softmax_rows, .gather_rows = p_gather_rows, .scatter_add_rows = p_scatter_add_rows,
        .sgemm = p_sgemm, .conv2d_saved_bytes = p_conv2d_saved_bytes, .conv2d_forward = p_conv2d_forward,
        .conv2d_backward = p_conv2d_backward, .group_norm_forward = p_group_norm_forward,
        .group_norm_backward = p_group_norm_backward, .upsample2x = p_upsample2x,
        .upsample2x_backward = p_upsample2x_backward, .avg_pool2d = p_avg_pool2d,
        .avg_pool2d_backward = p_avg_pool2d_backward, .adam = p_adam, .ema = p_ema,
        .last_error = base->last_error, .sync = p_sync,
        .conv2d_precision = base->conv2d_precision};
    /* an entry the backend lacks (the CPU has no sync) stays absent */
#define KEEP_ABSENT(f)                                                                                              \
    if (!g_base->f) g_table.f = NULL
    KEEP_ABSENT(alloc); KEEP_ABSENT(free); KEEP_ABSENT(zero); KEEP_ABSENT(copy); KEEP_ABSENT(fill);
    KEEP_ABSENT(copy2d); KEEP_ABSENT(to_host); KEEP_ABSENT(from_host); KEEP_ABSENT(binary);
    KEEP_ABSENT(bcast_reduce); KEEP_ABSENT(unary); KEEP_ABSENT(unary_backward); KEEP_ABSENT(axpby);
    KEEP_ABSENT(where); KEEP_ABSENT(where_backward); KEEP_ABSENT(sum); KEEP_ABSENT(sum_rows);
    KEEP_ABSENT(sq_diff_sum); KEEP_ABSENT(softmax_rows); KEEP_ABSENT(gather_rows); KEEP_ABSENT(scatter_add_rows);
    KEEP_ABSENT(sgemm); KEEP_ABSENT(conv2d_saved_bytes); KEEP_ABSENT(conv2d_forward); KEEP_ABSENT(conv2d_backward);
    KEEP_ABSENT(group_norm_forward); KEEP_ABSENT(group_norm_backward); KEEP_ABSENT(upsample2x);
    KEEP_ABSENT(upsample2x_backward); KEEP_ABSENT(avg_pool2d); KEEP_ABSENT(avg_pool2d_backward); KEEP_ABSENT(adam);
    KEEP_ABSENT(ema); KEEP_ABSENT(sync);
#undef KEEP_ABSENT
}

flash_status flash_ctx_profile_start(flash_ctx *c, flash_error *err)
{
    if (!c) return flash_error_set(err, FLASH_ERR_USAGE, "profile: no context");
    if (g_ctx && g_ctx != c) return flash_error_set(err, FLASH_ERR_USAGE, "profile: another context is profiled");
    if (g_ctx == c) return FLASH_OK;
    if (g_base && g_base != c->be)
        return flash_error_set(err, FLASH_ERR_USAGE, "profile: the profiled backend is '%s', not '%s'", g_base->name,
                               c->be->name);
    if (!g_base) build(c->be);
    flash_ctx_profile_zero();
    c->be = &g_table;
    g_ctx = c;
    return FLASH_OK;
}

void flash_profile_enable(bool on)
{
    if (on && !g_base) build(&flash_cpu_backend);
    g_enabled = on && g_base == &flash_cpu_backend;
    if (g_enabled) flash_ctx_profile_zero();
}

const flash_backend *flash_profile_cpu_table(void) { return g_enabled ? &g_table : &flash_cpu_backend; }

bool flash_profile_active(void) { return g_enabled || g_ctx != NULL; }

const char *flash_profile_phase(const char *name)
{
    if (!flash_profile_active()) return NULL;
    const double now = flash_now();
    const char *prev = g_cur >= 0 ? g_phase_name[g_cur] : NULL;
    if (g_cur >= 0) g_phase_s[g_cur] += now - g_since;
    g_since = now;
    g_cur = -1;
    if (!name) return prev;
    for (int i = 0; i < g_n_phases; i++)
        if (g_phase_name[i] == name || strcmp(g_phase_name[i], name) == 0) g_cur = i;
    if (g_cur < 0 && g_n_phases < MAX_PHASES) {
        g_cur = g_n_phases++;
        g_phase_name[g_cur] = name;
    }
    if (g_cur >= 0) g_phase_n[g_cur]++;
    return prev;
}

int flash_profile_read_phases(flash_profile_row *rows, int max)
{
    /* the current phase's time so far */
    if (g_cur >= 0) {
        const double now = flash_now();
        g_phase_s[g_cur] += now - g_since;
        g_since = now;
    }
    int n = 0;
    for (int i = 0; i < g_n_phases && n < max; i++)
        rows[n++] = (flash_profile_row){
            .kernel = g_phase_name[i], .calls = g_phase_n[i], .seconds = g_phase_s[i], .flops = g_phase_flops[i]};
    return n;
}

void flash_ctx_profile_stop(flash_ctx *c)
{
    if (!c || c != g_ctx) return;
    c->be = g_base;
    g_ctx = NULL;
}

void flash_ctx_profile_zero(void)
{
    memset(g_calls, 0, sizeof g_calls);
    memset(g_seconds, 0, sizeof g_seconds);
    memset(g_flops, 0, sizeof g_flops);
    memset(g_phase_s, 0, sizeof g_phase_s);
    memset(g_phase_flops, 0, sizeof g_phase_flops);
    memset(g_phase_n, 0, sizeof g_phase_n);
    g_since = flash_now();
}

int flash_ctx_profile_read(flash_profile_row *rows, int max)
{
    int n = 0;
    for (int k = 0; k < K_COUNT && n < max; k++)
        if (g_calls[k] > 0)
            rows[n++] = (flash_profile_row){
                .kernel = kernel_names[k], .calls = g_calls[k], .seconds = g_seconds[k], .flops = g_flops[k]};
    return n;
}
