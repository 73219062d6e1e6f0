/* CUDA backend parity: every op, forward and backward, on the GPU against
 * the CPU backend as the reference, by normalised error
 *   ||gpu - cpu||_2 / ||cpu||_2
 * on random shapes and values (seeded per test), plus Adam, EMA, gradient
 * clipping and a full training step of a small conv net.
 *
 * Thresholds (float32):
 *   TOL_EXACT 1e-6  elementwise ops, views, gathers, resampling, axpby,
 *                   where: the same float operations, up to the GPU's
 *                   expf/logf/tanhf differing from glibc's by an ulp or two.
 *   TOL_RED   1e-6  sums, means, MSE, softmax: double accumulation on both
 *                   sides, only the partition differs.
 *   TOL_NORM  1e-5  group norm: float normalisation of double statistics;
 *                   the backward combines several sums of products.
 *   TOL_GEMM  1e-5  linear, matmul, conv2d: cuBLAS / cuDNN and oneDNN sum
 *                   the K products in different orders (float accumulators
 *                   on both sides), so the error grows like sqrt(K) ulps.
 *   TOL_STEP  1e-5  a whole training step (loss, gradients, parameters).
 *
 * Without a GPU, or in a build without the CUDA backend, it prints one SKIP
 * line and exits 0. Check's fork mode is off: CUDA cannot be used in a
 * child forked after the parent initialised it.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"
#include "tensor/tensor_internal.h"

#define TOL_EXACT 1e-6
#define TOL_RED 1e-6
#define TOL_NORM 1e-5
#define TOL_GEMM 1e-5
#define TOL_STEP 1e-5

/* ---- random numbers (independent of flash's RNG) ------------------------- */

typedef struct {
    uint64_t s;
} trng;

static uint64_t trng_next(trng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double trng_unif(trng *r) { return (double)(trng_next(r) >> 11) / 9007199254740992.0; }
static int trng_int(trng *r, int lo, int hi) { return lo + (int)(trng_next(r) % (uint64_t)(hi - lo + 1)); }

static uint64_t seed_of(const char *name) {
    uint64_t h = 1469598103934665603ull;
    for (; *name; name++) h = (h ^ (unsigned char)*name) * 1099511628211ull;
    return h;
}

/* ---- the harness --------------------------------------------------------------- */

#define MAX_IN 4

typedef struct {
    int ndim, shape[4];
    float lo, hi; /* values uniform in [lo, hi], kept at least 0.05 from 0 when lo < 0 < hi and `away` */
    bool grad;
    bool away;
} pin;

typedef flash_tensor *(*build_fn)(flash_ctx *c, flash_tensor *const *in, void *ud);

static size_t pin_numel(const pin *p) {
    size_t n = 1;
    for (int i = 0; i < p->ndim; i++) n *= (size_t)p->shape[i];
    return n;
}

static double nerr(const float *got, const float *want, size_t n) {
    double d = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)got[i] - (double)want[i];
        d += e * e;
        w += (double)want[i] * want[i];
    }
    if (w == 0) return sqrt(d);
    return sqrt(d / w);
}

typedef struct {
    float *out;
    size_t out_n;
    float *grad[MAX_IN];
    char msg[1100];
} run_result;

static void result_free(run_result *r) {
    free(r->out);
    for (int i = 0; i < MAX_IN; i++) free(r->grad[i]);
}

/* Runs build on `device` with the host inputs; the backward (when the
 * output needs grad) is seeded with weights drawn from seed. */
static bool run_on(const char *device, const pin *spec, int n_in, float *const *hin, build_fn build, void *ud,
                   uint64_t seed, run_result *r) {
    memset(r, 0, sizeof *r);
    flash_error err = {0};
    flash_ctx *c = flash_ctx_create_on(device, 1 << 20, &err);
    if (!c) {
        snprintf(r->msg, sizeof r->msg, "%.1000s", err.msg);
        return false;
    }
    flash_tensor *in[MAX_IN] = {0};
    for (int i = 0; i < n_in; i++) {
        in[i] = flash_tensor_from(c, spec[i].ndim, spec[i].shape, hin[i]);
        if (in[i] && spec[i].grad) flash_tensor_requires_grad(in[i], true);
    }
    flash_tensor *out = build(c, in, ud);
    bool ok = out && flash_ctx_ok(c);
    if (ok) {
        r->out_n = out->numel;
        r->out = malloc(out->numel * sizeof(float));
        ok = r->out && flash_tensor_to_host(c, out, r->out, &err) == FLASH_OK;
    }
    if (ok && flash_needs_grad(out)) {
        float *w = malloc(out->numel * sizeof(float));
        trng g = {seed ^ 0x5eed};
        for (size_t i = 0; w && i < out->numel; i++) w[i] = (float)(0.5 + trng_unif(&g)) * (trng_next(&g) & 1 ? 1 : -1);
        ok = w && flash_backward_from(c, out, w, &err) == FLASH_OK;
        free(w);
        for (int i = 0; ok && i < n_in; i++) {
            if (!spec[i].grad) continue;
            size_t n = pin_numel(&spec[i]);
            r->grad[i] = calloc(n, sizeof(float));
            ok = r->grad[i] != NULL;
            if (ok && in[i]->grad) c->be->to_host(r->grad[i], in[i]->grad, n);
        }
    }
    if (ok) ok = flash_ctx_ok(c);
    if (!ok && !r->msg[0]) snprintf(r->msg, sizeof r->msg, "%.1000s", err.msg[0] ? err.msg : flash_ctx_error(c));
    flash_ctx_destroy(c);
    return ok;
}

/* Draws inputs, runs on both devices, compares and prints one line. */
static void parity(const char *name, const pin *spec, int n_in, build_fn build, void *ud, double tol_fwd,
                   double tol_bwd, uint64_t seed) {
    trng g = {seed};
    float *hin[MAX_IN] = {0};
    for (int i = 0; i < n_in; i++) {
        size_t n = pin_numel(&spec[i]);
        hin[i] = malloc(n * sizeof(float));
        ck_assert_ptr_nonnull(hin[i]);
        for (size_t k = 0; k < n; k++) {
            float v = (float)(spec[i].lo + (spec[i].hi - spec[i].lo) * trng_unif(&g));
            if (spec[i].away && fabsf(v) < 0.05f) v = v < 0 ? -0.05f : 0.05f;
            hin[i][k] = v;
        }
    }
    run_result cpu, gpu;
    bool ok_cpu = run_on("cpu", spec, n_in, hin, build, ud, seed, &cpu);
    ck_assert_msg(ok_cpu, "%s on cpu: %s", name, cpu.msg);
    bool ok_gpu = run_on("cuda", spec, n_in, hin, build, ud, seed, &gpu);
    ck_assert_msg(ok_gpu, "%s on cuda: %s", name, gpu.msg);
    ck_assert_uint_eq(cpu.out_n, gpu.out_n);
    double ef = nerr(gpu.out, cpu.out, cpu.out_n), eb = 0;
    for (int i = 0; i < n_in; i++)
        if (cpu.grad[i]) {
            ck_assert_ptr_nonnull(gpu.grad[i]);
            double e = nerr(gpu.grad[i], cpu.grad[i], pin_numel(&spec[i]));
            if (e > eb) eb = e;
        }
    char shp[160] = "";
    size_t o = 0;
    for (int i = 0; i < n_in && o < sizeof shp; i++) {
        o += (size_t)snprintf(shp + o, sizeof shp - o, "%s(", i ? " " : "");
        for (int d = 0; d < spec[i].ndim && o < sizeof shp; d++)
            o += (size_t)snprintf(shp + o, sizeof shp - o, d ? ",%d" : "%d", spec[i].shape[d]);
        if (o < sizeof shp) o += (size_t)snprintf(shp + o, sizeof shp - o, ")");
    }
    printf("PARITY %-22s fwd %.2e (tol %.0e)  bwd %.2e (tol %.0e)  %s\n", name, ef, tol_fwd, eb, tol_bwd, shp);
    fflush(stdout);
    ck_assert_msg(ef <= tol_fwd, "%s forward: normalised error %.3e > %.0e", name, ef, tol_fwd);
    ck_assert_msg(eb <= tol_bwd, "%s backward: normalised error %.3e > %.0e", name, eb, tol_bwd);
    result_free(&cpu);
    result_free(&gpu);
    for (int i = 0; i < n_in; i++) free(hin[i]);
}

#define PIN(nd, a, b, c_, d, lo_, hi_) ((pin){.ndim = (nd), .shape = {(a), (b), (c_), (d)}, .lo = (lo_), .hi = (hi_), .grad = true})

/* ---- elementwise ------------------------------------------------------------------ */

static flash_tensor *b_binary(flash_ctx *c, flash_tensor *const *in, void *ud) {
    switch (*(int *)ud) {
    case 0: return flash_add(c, in[0], in[1]);
    case 1: return flash_sub(c, in[0], in[1]);
    case 2: return flash_mul(c, in[0], in[1]);
    default: return flash_div(c, in[0], in[1]);
    }
}

START_TEST(test_binary_broadcast) {
    trng g = {seed_of(__func__)};
    static const char *names[4] = {"add", "sub", "mul", "div"};
    for (int op = 0; op < 4; op++)
        for (int form = 0; form < 5; form++) {
            const int n = trng_int(&g, 2, 9), ch = trng_int(&g, 2, 16), h = trng_int(&g, 3, 12), w = trng_int(&g, 3, 12);
            pin a = PIN(4, n, ch, h, w, -2, 2), b;
            switch (form) {
            case 0: b = PIN(4, n, ch, h, w, -2, 2); break;  /* same shape */
            case 1: b = PIN(4, 1, ch, 1, 1, -2, 2); break;  /* channel */
            case 2: b = PIN(4, n, 1, 1, 1, -2, 2); break;   /* per sample */
            case 3: b = PIN(3, ch, h, w, 0, -2, 2); break;  /* over the batch */
            default: b = PIN(4, n, ch, 1, 1, -2, 2); break; /* (N, C) channel bias */
            }
            b.away = op == 3;
            pin s[2] = {a, b};
            char name[32];
            snprintf(name, sizeof name, "%s/bcast%d", names[op], form);
            parity(name, s, 2, b_binary, &op, TOL_EXACT, TOL_EXACT, trng_next(&g));
        }
}
END_TEST

typedef struct {
    int op;
    float a;
} un_ud;

static flash_tensor *b_unary(flash_ctx *c, flash_tensor *const *in, void *ud) {
    const un_ud *u = ud;
    flash_tensor *x = in[0];
    switch (u->op) {
    case 0: return flash_affine(c, x, u->a, 0.25f);
    case 1: return flash_neg(c, x);
    case 2: return flash_exp(c, x);
    case 3: return flash_log(c, x);
    case 4: return flash_sqrt(c, x);
    case 5: return flash_square(c, x);
    case 6: return flash_abs(c, x);
    case 7: return flash_silu(c, x);
    case 8: return flash_relu(c, x);
    case 9: return flash_leaky_relu(c, x, u->a);
    case 10: return flash_softplus(c, x);
    default: return flash_tanh(c, x);
    }
}

START_TEST(test_unary) {
    trng g = {seed_of(__func__)};
    static const char *names[12] = {"affine", "neg", "exp", "log", "sqrt", "square",
                                    "abs", "silu", "relu", "leaky_relu", "softplus", "tanh"};
    for (int op = 0; op < 12; op++) {
        const bool positive = op == 3 || op == 4;
        pin x = PIN(4, trng_int(&g, 1, 8), trng_int(&g, 1, 32), trng_int(&g, 4, 20), trng_int(&g, 4, 20),
                    positive ? 0.1f : -4.0f, 4.0f);
        x.away = true; /* away from the kinks of abs, relu, leaky_relu */
        un_ud u = {op, 0.2f + (float)trng_unif(&g)};
        parity(names[op], &x, 1, b_unary, &u, TOL_EXACT, TOL_EXACT, trng_next(&g));
    }
}
END_TEST

static flash_tensor *b_axpby(flash_ctx *c, flash_tensor *const *in, void *ud) {
    const float *coef = ud; /* a then b, 600 each */
    return flash_axpby(c, coef, in[0], coef + 600, in[1]);
}

START_TEST(test_axpby_where) {
    trng g = {seed_of(__func__)};
    static float coef[1200];
    for (int i = 0; i < 1200; i++) coef[i] = (float)(2 * trng_unif(&g) - 1);
    /* batch 6 passes the coefficients by value, 520 through the staging buffer */
    int batches[2] = {6, 520};
    for (int k = 0; k < 2; k++) {
        pin s[2] = {PIN(4, batches[k], 3, 5, 7, -2, 2), PIN(4, batches[k], 3, 5, 7, -2, 2)};
        parity(k ? "axpby/staged" : "axpby", s, 2, b_axpby, coef, TOL_EXACT, TOL_EXACT, trng_next(&g));
    }
}
END_TEST

static flash_tensor *b_where(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    /* mask from the sign of a no-grad input */
    flash_tensor *m = flash_relu(c, in[2]);
    return flash_where(c, m, in[0], in[1]);
}

START_TEST(test_where) {
    trng g = {seed_of(__func__)};
    const int n = trng_int(&g, 2, 9), ch = trng_int(&g, 1, 6), h = trng_int(&g, 3, 9);
    pin m1 = PIN(4, n, 1, 1, 1, -1, 1), m2 = PIN(4, n, ch, h, h, -1, 1);
    m1.grad = m2.grad = false;
    m1.away = m2.away = true;
    pin s1[3] = {PIN(4, n, ch, h, h, -2, 2), PIN(4, n, ch, h, h, -2, 2), m1};
    parity("where/per_sample", s1, 3, b_where, NULL, TOL_EXACT, TOL_EXACT, trng_next(&g));
    pin s2[3] = {PIN(4, n, ch, h, h, -2, 2), PIN(4, n, ch, h, h, -2, 2), m2};
    parity("where/full", s2, 3, b_where, NULL, TOL_EXACT, TOL_EXACT, trng_next(&g));
}
END_TEST

/* ---- reductions and losses ------------------------------------------------------------ */

static flash_tensor *b_reduce(flash_ctx *c, flash_tensor *const *in, void *ud) {
    switch (*(int *)ud) {
    case 0: return flash_sum(c, in[0]);
    case 1: return flash_mean(c, in[0]);
    case 2: return flash_sum_per_sample(c, in[0]);
    case 3: return flash_mean_per_sample(c, in[0]);
    case 4: return flash_mse(c, in[0], in[1]);
    default: return flash_softmax(c, in[0]);
    }
}

START_TEST(test_reductions) {
    trng g = {seed_of(__func__)};
    static const char *names[6] = {"sum", "mean", "sum_per_sample", "mean_per_sample", "mse", "softmax"};
    for (int op = 0; op < 6; op++)
        for (int big = 0; big < 2; big++) {
            /* big: more than one reduction chunk per row */
            pin x = big ? PIN(2, trng_int(&g, 2, 5), trng_int(&g, 20000, 40000), 0, 0, -2, 2)
                        : PIN(4, trng_int(&g, 1, 8), trng_int(&g, 1, 16), trng_int(&g, 3, 14), trng_int(&g, 3, 14), -2, 2);
            if (op == 5) x = big ? PIN(2, trng_int(&g, 2, 40), trng_int(&g, 3000, 5000), 0, 0, -4, 4)
                                 : PIN(2, trng_int(&g, 1, 64), trng_int(&g, 2, 100), 0, 0, -4, 4);
            pin s[2] = {x, x};
            char name[40];
            snprintf(name, sizeof name, "%s%s", names[op], big ? "/large" : "");
            parity(name, s, op == 4 ? 2 : 1, b_reduce, &op, TOL_RED, TOL_RED, trng_next(&g));
        }
}
END_TEST

static int g_labels[64];

static flash_tensor *b_xent(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_cross_entropy(c, in[0], g_labels);
}

START_TEST(test_cross_entropy) {
    trng g = {seed_of(__func__)};
    const int n = trng_int(&g, 2, 64), k = trng_int(&g, 2, 12);
    for (int i = 0; i < n; i++) g_labels[i] = trng_int(&g, 0, k - 1);
    pin x = PIN(2, n, k, 0, 0, -3, 3);
    parity("cross_entropy", &x, 1, b_xent, NULL, TOL_RED, TOL_RED, trng_next(&g));
}
END_TEST

/* ---- layers ------------------------------------------------------------------------------- */

static flash_tensor *b_linear(flash_ctx *c, flash_tensor *const *in, void *ud) {
    return flash_linear(c, in[0], in[1], *(int *)ud ? in[2] : NULL);
}

static flash_tensor *b_matmul(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_matmul(c, in[0], in[1]);
}

START_TEST(test_linear_matmul) {
    trng g = {seed_of(__func__)};
    for (int bias = 0; bias < 2; bias++) {
        const int n = trng_int(&g, 1, 300), in = trng_int(&g, 1, 300), out = trng_int(&g, 1, 200);
        pin s[3] = {PIN(2, n, in, 0, 0, -1, 1), PIN(2, out, in, 0, 0, -1, 1), PIN(1, out, 0, 0, 0, -1, 1)};
        parity(bias ? "linear/bias" : "linear", s, bias ? 3 : 2, b_linear, &bias, TOL_GEMM, TOL_GEMM, trng_next(&g));
    }
    const int m = trng_int(&g, 1, 200), k = trng_int(&g, 1, 300), n = trng_int(&g, 1, 200);
    pin s[2] = {PIN(2, m, k, 0, 0, -1, 1), PIN(2, k, n, 0, 0, -1, 1)};
    parity("matmul", s, 2, b_matmul, NULL, TOL_GEMM, TOL_GEMM, trng_next(&g));
}
END_TEST

typedef struct {
    int stride, pad, bias;
} conv_ud;

static flash_tensor *b_conv(flash_ctx *c, flash_tensor *const *in, void *ud) {
    const conv_ud *u = ud;
    return flash_conv2d(c, in[0], in[1], u->bias ? in[2] : NULL, u->stride, u->pad);
}

START_TEST(test_conv2d) {
    trng g = {seed_of(__func__)};
    /* k, stride, pad: the U-Net's 3x3 s1 p1, 3x3 s2 p1 (downsampling), 1x1 skips */
    const int cfg[4][3] = {{3, 1, 1}, {3, 2, 1}, {1, 1, 0}, {3, 1, 0}};
    for (int i = 0; i < 4; i++)
        for (int bias = 0; bias < 2; bias++) {
            const int k = cfg[i][0];
            const int n = trng_int(&g, 1, 8), cin = trng_int(&g, 1, 48), cout = trng_int(&g, 1, 48);
            const int h = trng_int(&g, 4, 20), w = trng_int(&g, 4, 20);
            conv_ud u = {cfg[i][1], cfg[i][2], bias};
            pin s[3] = {PIN(4, n, cin, h, w, -1, 1), PIN(4, cout, cin, k, k, -1, 1), PIN(1, cout, 0, 0, 0, -1, 1)};
            char name[40];
            snprintf(name, sizeof name, "conv%dx%d/s%dp%d%s", k, k, cfg[i][1], cfg[i][2], bias ? "/bias" : "");
            parity(name, s, bias ? 3 : 2, b_conv, &u, TOL_GEMM, TOL_GEMM, trng_next(&g));
        }
}
END_TEST

static flash_tensor *b_gn(flash_ctx *c, flash_tensor *const *in, void *ud) {
    const int *groups = ud;
    return flash_group_norm(c, in[0], *groups, in[1], in[2], 1e-5f);
}

static flash_tensor *b_gn_silu(flash_ctx *c, flash_tensor *const *in, void *ud) {
    const int *groups = ud;
    return flash_group_norm_silu(c, in[0], *groups, in[1], in[2], 1e-5f);
}

START_TEST(test_group_norm) {
    trng g = {seed_of(__func__)};
    const int gs[3] = {1, 4, 8};
    for (int i = 0; i < 3; i++) {
        const int groups = gs[i], ch = groups * trng_int(&g, 1, 8);
        pin s[3] = {PIN(4, trng_int(&g, 1, 8), ch, trng_int(&g, 2, 28), trng_int(&g, 2, 28), -3, 3),
                    PIN(1, ch, 0, 0, 0, 0.5f, 1.5f), PIN(1, ch, 0, 0, 0, -1, 1)};
        char name[32];
        snprintf(name, sizeof name, "group_norm/g%d", groups);
        parity(name, s, 3, b_gn, (void *)&gs[i], TOL_NORM, TOL_NORM, trng_next(&g));
        snprintf(name, sizeof name, "group_norm_silu/g%d", groups);
        parity(name, s, 3, b_gn_silu, (void *)&gs[i], TOL_NORM, TOL_NORM, trng_next(&g));
    }
}
END_TEST

static flash_tensor *b_resample(flash_ctx *c, flash_tensor *const *in, void *ud) {
    switch (*(int *)ud) {
    case 0: return flash_upsample_nearest2x(c, in[0]);
    case 1: return flash_avg_pool2d(c, in[0], 2);
    case 2: return flash_avg_pool2d(c, in[0], in[0]->shape[2]);
    case 3: return flash_concat(c, in[0], in[1]);
    default: {
        /* views: narrow, reshape and copy feed a sum of squares */
        flash_tensor *v = flash_narrow(c, in[0], 1, in[0]->shape[0] - 1);
        int s[2] = {v->shape[0], -1};
        return flash_square(c, flash_copy(c, flash_reshape(c, v, 2, s)));
    }
    }
}

START_TEST(test_resample_concat_views) {
    trng g = {seed_of(__func__)};
    static const char *names[5] = {"upsample2x", "avg_pool2d/2", "avg_pool2d/global", "concat", "views"};
    for (int op = 0; op < 5; op++) {
        const int n = trng_int(&g, 2, 8), h = 2 * trng_int(&g, 2, 14);
        pin s[2] = {PIN(4, n, trng_int(&g, 1, 16), h, h, -2, 2), PIN(4, n, trng_int(&g, 1, 16), h, h, -2, 2)};
        parity(names[op], s, op == 3 ? 2 : 1, b_resample, &op, TOL_EXACT, TOL_EXACT, trng_next(&g));
    }
}
END_TEST

static int g_idx[1200];
static float g_t[64];

static flash_tensor *b_embed(flash_ctx *c, flash_tensor *const *in, void *ud) {
    const int n = *(const int *)ud;
    return flash_embedding(c, in[0], g_idx, n);
}

static flash_tensor *b_temb(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    /* the sinusoidal embedding is host-computed and copied in; a linear
     * layer on top gives it a gradient path to check */
    flash_tensor *e = flash_timestep_embedding(c, g_t, 64, 32, 10000.0f);
    return flash_linear(c, e, in[0], NULL);
}

START_TEST(test_embeddings) {
    trng g = {seed_of(__func__)};
    /* 40 indices by value, 1100 through the staging buffer; repeated rows
     * check the ordered scatter-add */
    int counts[2] = {40, 1100};
    for (int k = 0; k < 2; k++) {
        const int v = trng_int(&g, 2, 12), d = trng_int(&g, 1, 130);
        int n = counts[k];
        for (int i = 0; i < n; i++) g_idx[i] = trng_int(&g, 0, v - 1);
        pin t = PIN(2, v, d, 0, 0, -1, 1);
        parity(k ? "embedding/staged" : "embedding", &t, 1, b_embed, &n, TOL_EXACT, TOL_EXACT, trng_next(&g));
    }
    for (int i = 0; i < 64; i++) g_t[i] = (float)trng_int(&g, 0, 999);
    pin w = PIN(2, 16, 32, 0, 0, -1, 1);
    parity("timestep_embedding", &w, 1, b_temb, NULL, TOL_GEMM, TOL_GEMM, trng_next(&g));
}
END_TEST

/* ---- parameters: Adam, EMA, clipping, and a training step ---------------------------------- */

/* A small conv net: conv 3x3 -> group norm -> SiLU -> conv 3x3 s2 ->
 * upsample -> concat with the input features -> 1x1 conv, plus a linear
 * per-sample scale from a label embedding; MSE against a target. */
typedef struct {
    flash_params *p;
    flash_tensor *c1w, *c1b, *gng, *gnb, *c2w, *c2b, *c3w, *c3b, *emb, *lw, *lb;
} tinynet;

static bool tinynet_make(tinynet *t, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->p = flash_params_create();
    if (!t->p) return false;
    t->c1w = flash_params_add(t->p, "c1.w", 4, (int[]){8, 2, 3, 3});
    t->c1b = flash_params_add(t->p, "c1.b", 1, (int[]){8});
    t->gng = flash_params_add(t->p, "gn.g", 1, (int[]){8});
    t->gnb = flash_params_add(t->p, "gn.b", 1, (int[]){8});
    t->c2w = flash_params_add(t->p, "c2.w", 4, (int[]){8, 8, 3, 3});
    t->c2b = flash_params_add(t->p, "c2.b", 1, (int[]){8});
    t->c3w = flash_params_add(t->p, "c3.w", 4, (int[]){2, 16, 1, 1});
    t->c3b = flash_params_add(t->p, "c3.b", 1, (int[]){2});
    t->emb = flash_params_add(t->p, "emb", 2, (int[]){5, 6});
    t->lw = flash_params_add(t->p, "lin.w", 2, (int[]){8, 6});
    t->lb = flash_params_add(t->p, "lin.b", 1, (int[]){8});
    if (flash_params_finalize(t->p, NULL) != FLASH_OK) return false;
    flash_rng r;
    flash_rng_seed(&r, seed);
    for (size_t i = 0; i < flash_params_n(t->p); i++) flash_init_uniform(flash_params_at(t->p, i), &r, 0.4f);
    flash_init_const(t->gng, 1.0f);
    return true;
}

static flash_tensor *tinynet_loss(tinynet *t, flash_ctx *c, flash_tensor *x, flash_tensor *target, const int *labels) {
    const int n = x->shape[0];
    flash_tensor *h = flash_conv2d(c, x, t->c1w, t->c1b, 1, 1);
    flash_tensor *e = flash_silu(c, flash_linear(c, flash_embedding(c, t->emb, labels, n), t->lw, t->lb));
    h = flash_add_channel_bias(c, h, e);
    h = flash_group_norm_silu(c, h, 4, t->gng, t->gnb, 1e-5f);
    flash_tensor *d = flash_conv2d(c, h, t->c2w, t->c2b, 2, 1);
    flash_tensor *u = flash_upsample_nearest2x(c, d);
    flash_tensor *y = flash_conv2d(c, flash_concat(c, u, h), t->c3w, t->c3b, 1, 0);
    return flash_mse(c, y, target);
}

typedef struct {
    float loss[3];
    float *data, *grad;
    size_t count;
} step_result;

/* Three steps of: forward, MSE, backward, clip, Adam, EMA (every step
 * re-uses the same arena, as training does). */
static bool train_steps(const char *device, uint64_t seed, step_result *sr, char *msg, size_t msg_size) {
    memset(sr, 0, sizeof *sr);
    tinynet t;
    flash_error err = {0};
    if (!tinynet_make(&t, seed)) {
        snprintf(msg, msg_size, "tinynet");
        return false;
    }
    bool ok = flash_params_to_device(t.p, device, &err) == FLASH_OK;
    flash_ctx *c = ok ? flash_ctx_create_on(device, 1 << 20, &err) : NULL;
    ok = ok && c;
    const int n = 6, hw = 12;
    trng g = {seed};
    float *hx = malloc(sizeof(float) * n * 2 * hw * hw), *ht = malloc(sizeof(float) * n * 2 * hw * hw);
    int labels[6];
    for (int i = 0; i < n * 2 * hw * hw; i++) {
        hx[i] = (float)(2 * trng_unif(&g) - 1);
        ht[i] = (float)(2 * trng_unif(&g) - 1);
    }
    for (int i = 0; i < n; i++) labels[i] = trng_int(&g, 0, 4);
    flash_adam opt = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f};
    for (int step = 1; ok && step <= 3; step++) {
        flash_ctx_reset(c);
        flash_params_zero_grad(t.p);
        flash_tensor *x = flash_tensor_from(c, 4, (int[]){n, 2, hw, hw}, hx);
        flash_tensor *tg = flash_tensor_from(c, 4, (int[]){n, 2, hw, hw}, ht);
        flash_tensor *loss = tinynet_loss(&t, c, x, tg, labels);
        ok = loss && flash_ctx_ok(c) && flash_backward(c, loss, &err) == FLASH_OK;
        if (ok) ok = flash_tensor_to_host(c, loss, &sr->loss[step - 1], &err) == FLASH_OK;
        if (ok && step == 3) { /* the gradient of the last step, before clipping */
            sr->count = flash_params_count(t.p);
            sr->grad = malloc(sr->count * sizeof(float));
            ok = sr->grad != NULL;
            if (ok) c->be->to_host(sr->grad, flash_params_grad(t.p), sr->count);
        }
        if (ok) ok = flash_params_grad_finite(t.p);
        if (ok) flash_params_clip_grad(t.p, 0.5);
        if (ok) ok = flash_adam_step(t.p, &opt, step, &err) == FLASH_OK;
        if (ok) ok = flash_params_ema_update(t.p, 0.9f, &err) == FLASH_OK;
        if (ok) ok = flash_ctx_ok(c);
    }
    if (ok) {
        /* the EMA weights after three updates, swapped in, then the data */
        ok = flash_params_swap_ema(t.p, &err) == FLASH_OK;
        sr->data = malloc(2 * sr->count * sizeof(float));
        ok = ok && sr->data && flash_params_to_host(t.p, sr->data + sr->count, &err) == FLASH_OK;
        ok = ok && flash_params_swap_ema(t.p, &err) == FLASH_OK;
        ok = ok && flash_params_to_host(t.p, sr->data, &err) == FLASH_OK;
    }
    if (!ok) snprintf(msg, msg_size, "%.1000s", err.msg[0] ? err.msg : c ? flash_ctx_error(c) : "context");
    free(hx);
    free(ht);
    flash_ctx_destroy(c);
    flash_params_destroy(t.p);
    return ok;
}

START_TEST(test_training_step) {
    const uint64_t seed = seed_of(__func__);
    step_result cpu, gpu;
    char msg[1100] = "";
    ck_assert_msg(train_steps("cpu", seed, &cpu, msg, sizeof msg), "cpu: %s", msg);
    ck_assert_msg(train_steps("cuda", seed, &gpu, msg, sizeof msg), "cuda: %s", msg);
    ck_assert_uint_eq(cpu.count, gpu.count);
    double el = nerr(gpu.loss, cpu.loss, 3);
    double eg = nerr(gpu.grad, cpu.grad, cpu.count);
    double ep = nerr(gpu.data, cpu.data, cpu.count);
    double ee = nerr(gpu.data + cpu.count, cpu.data + cpu.count, cpu.count);
    printf("PARITY %-22s loss %.2e  grad %.2e  params %.2e  ema %.2e (tol %.0e; losses cpu %.6f %.6f %.6f)\n",
           "train_step x3", el, eg, ep, ee, TOL_STEP, cpu.loss[0], cpu.loss[1], cpu.loss[2]);
    fflush(stdout);
    ck_assert_msg(el <= TOL_STEP, "loss error %.3e", el);
    ck_assert_msg(eg <= TOL_STEP, "gradient error %.3e", eg);
    ck_assert_msg(ep <= TOL_STEP, "parameter error %.3e", ep);
    ck_assert_msg(ee <= TOL_STEP, "EMA error %.3e", ee);
    /* the loss went down on both */
    ck_assert(cpu.loss[2] < cpu.loss[0] && gpu.loss[2] < gpu.loss[0]);
    free(cpu.grad);
    free(cpu.data);
    free(gpu.grad);
    free(gpu.data);
}
END_TEST

/* Same inputs, two runs on the GPU: bit-identical (no atomics, fixed
 * algorithm choice). */
START_TEST(test_deterministic) {
    const uint64_t seed = seed_of(__func__);
    step_result a, b;
    char msg[1100] = "";
    ck_assert_msg(train_steps("cuda", seed, &a, msg, sizeof msg), "cuda: %s", msg);
    ck_assert_msg(train_steps("cuda", seed, &b, msg, sizeof msg), "cuda: %s", msg);
    ck_assert_int_eq(memcmp(a.loss, b.loss, sizeof a.loss), 0);
    ck_assert_int_eq(memcmp(a.grad, b.grad, a.count * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(a.data, b.data, 2 * a.count * sizeof(float)), 0);
    printf("PARITY %-22s bit-identical over two runs\n", "determinism");
    free(a.grad);
    free(a.data);
    free(b.grad);
    free(b.data);
}
END_TEST

START_TEST(test_device_errors) {
    flash_error err = {0};
    ck_assert_ptr_null(flash_ctx_create_on("tpu", 1 << 20, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "tpu"));
    flash_ctx *c = flash_ctx_create_on("cuda", 1 << 20, &err);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(flash_ctx_device(c), "cuda");
    /* a shape error is still a sticky context error, reported as on the CPU */
    flash_tensor *a = flash_zeros(c, 2, (int[]){2, 3}), *b = flash_zeros(c, 2, (int[]){3, 2});
    ck_assert_ptr_null(flash_add(c, a, b));
    ck_assert(!flash_ctx_ok(c));
    flash_ctx_reset(c);
    ck_assert(flash_ctx_ok(c));
    flash_ctx_destroy(c);
}
END_TEST

static Suite *cuda_suite(void) {
    Suite *s = suite_create("cuda_parity");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_device_errors);
    tcase_add_test(tc, test_binary_broadcast);
    tcase_add_test(tc, test_unary);
    tcase_add_test(tc, test_axpby_where);
    tcase_add_test(tc, test_where);
    tcase_add_test(tc, test_reductions);
    tcase_add_test(tc, test_cross_entropy);
    tcase_add_test(tc, test_linear_matmul);
    tcase_add_test(tc, test_conv2d);
    tcase_add_test(tc, test_group_norm);
    tcase_add_test(tc, test_resample_concat_views);
    tcase_add_test(tc, test_embeddings);
    tcase_add_test(tc, test_training_step);
    tcase_add_test(tc, test_deterministic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    flash_error err = {0};
    flash_ctx *probe = flash_ctx_create_on("cuda", 1 << 16, &err);
    if (!probe) {
        printf("SKIP test_cuda_parity: %s\n", err.msg);
        return EXIT_SUCCESS;
    }
    flash_ctx_destroy(probe);
    SRunner *sr = srunner_create(cuda_suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* CUDA is initialised in this process */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
