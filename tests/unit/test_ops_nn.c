/* Dense layer ops: linear, matmul, conv2d, group norm (and its fusion with
 * SiLU), nearest 2x upsample, average pooling.
 *
 * - fast path (backend kernels through the ops) against the plain references
 *   of tests/ops_ref/ by normalised error, forward and backward, on random
 *   shapes including stride 2, odd sizes, 1x1 kernels, one input/output channel;
 * - gradients accumulate (a second backward doubles them);
 * - gradients against central finite differences in double (gradcheck.h);
 * - determinism: two runs are bit-identical;
 * - shape errors are reported, not crashed on.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"
#include "gradcheck.h"
#include "ops_ref/ops_ref.h"
#include "tensor/tensor_internal.h"

/* ---- helpers ---------------------------------------------------------- */

/* splitmix64: test data independent of the library's RNG */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float unif(uint64_t *s, float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(mix(s) >> 11) * (1.0 / 9007199254740992.0));
}

static float *rand_buf(uint64_t *s, size_t n, float lo, float hi) {
    float *p = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = unif(s, lo, hi);
    return p;
}

static float *zero_buf(size_t n) {
    float *p = calloc(n, sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

/* ||a - b|| / max(||b||, 1e-12) */
static double nerr(const float *a, const float *b, size_t n) {
    double d = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        d += e * e;
        w += (double)b[i] * b[i];
    }
    return sqrt(d) / fmax(sqrt(w), 1e-12);
}

static flash_tensor *leaf(flash_ctx *c, int ndim, const int *shape, const float *v) {
    flash_tensor *t = flash_tensor_from(c, ndim, shape, v);
    ck_assert_msg(t != NULL, "tensor_from: %s", flash_ctx_error(c));
    flash_tensor_requires_grad(t, true);
    return t;
}

/* Runs the backward of the op that made y with upstream gradient gy. */
static void run_backward(flash_ctx *c, flash_tensor *y, const float *gy) {
    ck_assert_ptr_nonnull(y->op);
    flash_tensor *g = flash_tensor_from(c, y->ndim, y->shape, gy); /* arena memory, like a real gradient */
    ck_assert_ptr_nonnull(g);
    y->grad = g->data;
    y->op->backward(c, y->op);
    ck_assert_msg(flash_ctx_ok(c), "backward: %s", flash_ctx_error(c));
}

#define TOL 2e-5

/* ---- conv2d against the reference -------------------------------------- */

typedef struct conv_case {
    int n, cin, h, w, cout, k, stride, pad;
    bool bias;
} conv_case;

/* x rounded to the nearest bfloat16 (ties to even), as float */
static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

static float *bf16_copy(const float *x, size_t n) {
    float *y = malloc(n * sizeof *y);
    ck_assert_ptr_nonnull(y);
    for (size_t i = 0; i < n; i++) y[i] = bf16_round(x[i]);
    return y;
}

/* The op at `precision` against the reference. In bf16 the reference is
 * given the operands the kernels see (x, w, dy rounded to bfloat16): then
 * only the float32 accumulation order differs, and the plain float32
 * reference must differ by about bfloat16's rounding (2^-9), which shows
 * the rounding took place. */
static void check_conv_case_at(const conv_case *cc, uint64_t seed, flash_precision precision) {
    flash_conv_geom g = {.n = cc->n, .cin = cc->cin, .h = cc->h, .w = cc->w, .cout = cc->cout, .k = cc->k,
                         .stride = cc->stride, .pad = cc->pad, .bias = cc->bias};
    g.ho = (g.h + 2 * g.pad - g.k) / g.stride + 1;
    g.wo = (g.w + 2 * g.pad - g.k) / g.stride + 1;
    size_t nx = (size_t)g.n * g.cin * g.h * g.w, nw = (size_t)g.cout * g.cin * g.k * g.k,
           ny = (size_t)g.n * g.cout * g.ho * g.wo;
    uint64_t s = seed;
    float *x = rand_buf(&s, nx, -1, 1), *w = rand_buf(&s, nw, -0.5f, 0.5f), *b = rand_buf(&s, (size_t)g.cout, -1, 1);
    float *gy = rand_buf(&s, ny, -1, 1);
    float *y_ref = zero_buf(ny), *gx_ref = zero_buf(nx), *gw_ref = zero_buf(nw), *gb_ref = zero_buf((size_t)g.cout);
    const bool bf16 = precision == FLASH_PRECISION_BF16;
    if (bf16) {
        float *xr = bf16_copy(x, nx), *wr = bf16_copy(w, nw), *gyr = bf16_copy(gy, ny);
        float *y32 = zero_buf(ny);
        flash_ref_conv2d_forward(y_ref, xr, wr, g.bias ? b : NULL, &g);
        flash_ref_conv2d_backward(gx_ref, gw_ref, gb_ref, gyr, xr, wr, &g);
        flash_ref_conv2d_forward(y32, x, w, g.bias ? b : NULL, &g);
        const double rounding = nerr(y_ref, y32, ny);
        ck_assert_msg(rounding > 1e-4 && rounding < 2e-2, "bf16 operands change the reference by %.3g", rounding);
        free(xr), free(wr), free(gyr), free(y32);
    } else {
        flash_ref_conv2d_forward(y_ref, x, w, g.bias ? b : NULL, &g);
        flash_ref_conv2d_backward(gx_ref, gw_ref, gb_ref, gy, x, w, &g);
    }

    flash_ctx *c = flash_ctx_create(1 << 20);
    ck_assert_ptr_nonnull(c);
    flash_error err = {0};
    ck_assert_msg(flash_ctx_set_precision(c, precision, &err) == FLASH_OK, "%s", err.msg);
    int xs[4] = {g.n, g.cin, g.h, g.w}, ws[4] = {g.cout, g.cin, g.k, g.k};
    flash_tensor *tx = leaf(c, 4, xs, x), *tw = leaf(c, 4, ws, w), *tb = g.bias ? leaf(c, 1, &g.cout, b) : NULL;
    flash_tensor *y = flash_conv2d(c, tx, tw, tb, g.stride, g.pad);
    ck_assert_msg(y != NULL, "conv2d: %s", flash_ctx_error(c));
    ck_assert_int_eq(y->shape[2], g.ho);
    ck_assert_int_eq(y->shape[3], g.wo);
    char what[128];
    snprintf(what, sizeof what, "n%d %d->%d %dx%d k%d s%d p%d%s", g.n, g.cin, g.cout, g.h, g.w, g.k, g.stride, g.pad,
             g.bias ? " bias" : "");
    double e = nerr(y->data, y_ref, ny);
    /* a float32 y of bfloat16 products: only the summation order differs */
    ck_assert_msg(e < TOL, "%s %s: forward error %.3g", flash_precision_name(precision), what, e);
    run_backward(c, y, gy);
    e = nerr(tx->grad, gx_ref, nx);
    ck_assert_msg(e < TOL, "%s: dx error %.3g", what, e);
    e = nerr(tw->grad, gw_ref, nw);
    ck_assert_msg(e < TOL, "%s: dw error %.3g", what, e);
    if (g.bias) {
        e = nerr(tb->grad, gb_ref, (size_t)g.cout);
        ck_assert_msg(e < TOL, "%s: db error %.3g", what, e);
    }
    /* a second backward accumulates: every gradient doubles */
    for (size_t i = 0; i < nx; i++) gx_ref[i] *= 2;
    for (size_t i = 0; i < nw; i++) gw_ref[i] *= 2;
    for (int i = 0; i < g.cout; i++) gb_ref[i] *= 2;
    run_backward(c, y, gy);
    ck_assert_msg(nerr(tx->grad, gx_ref, nx) < TOL, "%s: dx does not accumulate", what);
    ck_assert_msg(nerr(tw->grad, gw_ref, nw) < TOL, "%s: dw does not accumulate", what);
    if (g.bias) ck_assert_msg(nerr(tb->grad, gb_ref, (size_t)g.cout) < TOL, "%s: db does not accumulate", what);
    flash_ctx_destroy(c);
    free(x), free(w), free(b), free(gy), free(y_ref), free(gx_ref), free(gw_ref), free(gb_ref);
}

static void check_conv_case(const conv_case *cc, uint64_t seed) {
    check_conv_case_at(cc, seed, FLASH_PRECISION_FP32);
}

START_TEST(test_conv_fixed_shapes) {
    /* the unet-s kinds of layers, at small batch, plus edge cases */
    static const conv_case cases[] = {
        {2, 1, 28, 28, 32, 3, 1, 1, true},  /* conv_in */
        {2, 32, 14, 14, 32, 3, 1, 1, true}, /* ResBlock conv */
        {2, 32, 14, 14, 32, 3, 2, 1, true}, /* downsample, even size */
        {2, 16, 7, 7, 16, 3, 2, 1, false},  /* stride 2, odd size */
        {3, 24, 9, 9, 40, 1, 1, 0, true},   /* 1x1 skip */
        {2, 16, 6, 10, 1, 3, 1, 1, true},   /* one output channel, non-square */
        {1, 5, 5, 7, 3, 3, 1, 0, true},     /* no padding, odd channels */
        {2, 8, 8, 8, 4, 1, 2, 0, false},    /* 1x1 stride 2 */
        {16, 16, 8, 8, 16, 3, 1, 1, true},  /* batch 16: oneDNN picks Winograd */
        {24, 32, 10, 10, 32, 3, 1, 1, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv_case(&cases[i], 100 + i);
}
END_TEST

START_TEST(test_conv_random_shapes) {
    uint64_t s = 7;
    for (int t = 0; t < 12; t++) {
        conv_case cc;
        cc.k = (mix(&s) & 1) ? 3 : 1;
        cc.stride = (mix(&s) % 3 == 0) ? 2 : 1;
        cc.pad = cc.k == 3 ? (int)(mix(&s) % 2) : 0;
        cc.n = 1 + (int)(mix(&s) % 3);
        cc.cin = 1 + (int)(mix(&s) % 20);
        cc.cout = 1 + (int)(mix(&s) % 20);
        cc.h = 3 + (int)(mix(&s) % 12);
        cc.w = 3 + (int)(mix(&s) % 12);
        cc.bias = mix(&s) & 1;
        check_conv_case(&cc, 1000 + (uint64_t)t);
    }
}
END_TEST

/* bfloat16 convolutions (mixed precision) on the unet-s shapes and odd
 * ones, where this CPU has them; elsewhere the context refuses bf16 with
 * the reason, and that is checked instead. */
START_TEST(test_conv_bf16) {
    flash_ctx *c = flash_ctx_create(1 << 16);
    flash_error err = {0};
    const bool have = flash_ctx_set_precision(c, FLASH_PRECISION_BF16, &err) == FLASH_OK;
    flash_ctx_destroy(c);
    if (!have) {
        ck_assert_msg(strstr(err.msg, "dtype bf16") != NULL, "refusal without a reason: %s", err.msg);
        printf("test_conv_bf16: not on this machine: %s\n", err.msg);
        return;
    }
    static const conv_case cases[] = {
        {2, 1, 28, 28, 32, 3, 1, 1, true},  {4, 32, 14, 14, 64, 3, 1, 1, true}, {2, 32, 14, 14, 32, 3, 2, 1, true},
        {3, 24, 9, 9, 40, 1, 1, 0, true},   {1, 5, 5, 7, 3, 3, 1, 0, false},    {16, 16, 8, 8, 16, 3, 1, 1, true},
        {2, 8, 8, 8, 4, 1, 2, 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case_at(&cases[i], 300 + i, FLASH_PRECISION_BF16);
}
END_TEST

/* Without grad the forward keeps nothing for a backward (no tape entry)
 * and gives the same output; a training-like loop reaches a steady arena
 * size after its first iteration. */
START_TEST(test_conv_no_grad) {
    uint64_t s = 77;
    const int xs[4] = {4, 16, 14, 14}, ws[4] = {32, 16, 3, 3};
    float *x = rand_buf(&s, 4 * 16 * 196, -1, 1), *w = rand_buf(&s, 32 * 16 * 9, -0.3f, 0.3f);
    flash_ctx *c = flash_ctx_create(1 << 16);
    size_t cap[3];
    float *y_grad = NULL;
    for (int it = 0; it < 3; it++) {
        flash_ctx_reset(c);
        flash_tensor *tx = leaf(c, 4, xs, x), *tw = leaf(c, 4, ws, w);
        flash_tensor *y = flash_conv2d(c, tx, tw, NULL, 2, 1);
        ck_assert_msg(y != NULL, "conv2d: %s", flash_ctx_error(c));
        ck_assert_ptr_nonnull(y->op);
        if (!y_grad) {
            y_grad = malloc(y->numel * sizeof(float));
            memcpy(y_grad, y->data, y->numel * sizeof(float));
        }
        run_backward(c, y, y_grad);
        cap[it] = flash_ctx_arena_capacity(c);
    }
    ck_assert_uint_eq(cap[1], cap[2]);
    bool was = flash_grad_set(c, false);
    flash_tensor *tx = leaf(c, 4, xs, x), *tw = leaf(c, 4, ws, w);
    flash_tensor *y = flash_conv2d(c, tx, tw, NULL, 2, 1);
    flash_grad_set(c, was);
    ck_assert_msg(y != NULL, "conv2d: %s", flash_ctx_error(c));
    ck_assert_ptr_null(y->op);
    ck_assert_msg(memcmp(y->data, y_grad, y->numel * sizeof(float)) == 0, "no-grad output differs");
    flash_ctx_destroy(c);
    free(x), free(w), free(y_grad);
}
END_TEST

/* ---- linear, matmul against the references ------------------------------ */

START_TEST(test_linear_vs_ref) {
    static const int shapes[][3] = {{64, 64, 128}, {5, 7, 3}, {1, 128, 128}, {33, 1, 17}};
    for (size_t t = 0; t < 4; t++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const int n = shapes[t][0], in = shapes[t][1], out = shapes[t][2];
            uint64_t s = 11 + t;
            float *x = rand_buf(&s, (size_t)n * in, -1, 1), *w = rand_buf(&s, (size_t)out * in, -1, 1),
                  *b = rand_buf(&s, (size_t)out, -1, 1), *gy = rand_buf(&s, (size_t)n * out, -1, 1);
            float *y_ref = zero_buf((size_t)n * out), *gx_ref = zero_buf((size_t)n * in),
                  *gw_ref = zero_buf((size_t)out * in), *gb_ref = zero_buf((size_t)out);
            flash_ref_linear_forward(y_ref, x, w, with_bias ? b : NULL, n, in, out);
            flash_ref_linear_backward(gx_ref, gw_ref, gb_ref, gy, x, w, n, in, out);
            flash_ctx *c = flash_ctx_create(1 << 16);
            int xs[2] = {n, in}, wsh[2] = {out, in};
            flash_tensor *tx = leaf(c, 2, xs, x), *tw = leaf(c, 2, wsh, w), *tb = with_bias ? leaf(c, 1, &out, b) : NULL;
            flash_tensor *y = flash_linear(c, tx, tw, tb);
            ck_assert_msg(y != NULL, "linear: %s", flash_ctx_error(c));
            ck_assert_msg(nerr(y->data, y_ref, (size_t)n * out) < TOL, "linear %dx%d->%d forward", n, in, out);
            run_backward(c, y, gy);
            ck_assert_msg(nerr(tx->grad, gx_ref, (size_t)n * in) < TOL, "linear dx");
            ck_assert_msg(nerr(tw->grad, gw_ref, (size_t)out * in) < TOL, "linear dw");
            if (with_bias) ck_assert_msg(nerr(tb->grad, gb_ref, (size_t)out) < TOL, "linear db");
            flash_ctx_destroy(c);
            free(x), free(w), free(b), free(gy), free(y_ref), free(gx_ref), free(gw_ref), free(gb_ref);
        }
}
END_TEST

START_TEST(test_matmul_vs_ref) {
    static const int shapes[][3] = {{64, 128, 96}, {3, 5, 7}, {1, 9, 1}, {17, 1, 4}};
    for (size_t t = 0; t < 4; t++) {
        const int m = shapes[t][0], k = shapes[t][1], n = shapes[t][2];
        uint64_t s = 21 + t;
        float *a = rand_buf(&s, (size_t)m * k, -1, 1), *b = rand_buf(&s, (size_t)k * n, -1, 1),
              *gc = rand_buf(&s, (size_t)m * n, -1, 1);
        float *c_ref = zero_buf((size_t)m * n), *ga_ref = zero_buf((size_t)m * k), *gb_ref = zero_buf((size_t)k * n);
        flash_ref_matmul_forward(c_ref, a, b, m, k, n);
        flash_ref_matmul_backward(ga_ref, gb_ref, gc, a, b, m, k, n);
        flash_ctx *c = flash_ctx_create(1 << 16);
        int as[2] = {m, k}, bs[2] = {k, n};
        flash_tensor *ta = leaf(c, 2, as, a), *tb = leaf(c, 2, bs, b);
        flash_tensor *y = flash_matmul(c, ta, tb);
        ck_assert_msg(y != NULL, "matmul: %s", flash_ctx_error(c));
        ck_assert_msg(nerr(y->data, c_ref, (size_t)m * n) < TOL, "matmul %dx%dx%d forward", m, k, n);
        run_backward(c, y, gc);
        ck_assert_msg(nerr(ta->grad, ga_ref, (size_t)m * k) < TOL, "matmul da");
        ck_assert_msg(nerr(tb->grad, gb_ref, (size_t)k * n) < TOL, "matmul db");
        flash_ctx_destroy(c);
        free(a), free(b), free(gc), free(c_ref), free(ga_ref), free(gb_ref);
    }
}
END_TEST

/* ---- group norm ---------------------------------------------------------- */

static void check_group_norm(int n, int ch, int h, int w, int groups, bool affine, bool silu, float offset,
                             uint64_t seed, double tol) {
    const size_t nx = (size_t)n * ch * h * w;
    uint64_t s = seed;
    float *x = rand_buf(&s, nx, offset - 1, offset + 1), *gamma = rand_buf(&s, (size_t)ch, 0.5f, 1.5f),
          *beta = rand_buf(&s, (size_t)ch, -1, 1), *gy = rand_buf(&s, nx, -1, 1);
    float *y_ref = zero_buf(nx), *gx_ref = zero_buf(nx), *gg_ref = zero_buf((size_t)ch), *gb_ref = zero_buf((size_t)ch);
    const float eps = 1e-5f;
    flash_ref_group_norm_forward(y_ref, x, affine ? gamma : NULL, affine ? beta : NULL, n, ch, h * w, groups, eps);
    float *gz = gy;
    if (silu) {
        /* y = z sigmoid(z): the reference gradient at z, then silu on y_ref */
        gz = malloc(nx * sizeof(float));
        ck_assert_ptr_nonnull(gz);
        for (size_t i = 0; i < nx; i++) {
            double z = y_ref[i], sg = 1.0 / (1.0 + exp(-z));
            gz[i] = (float)(gy[i] * (sg + z * sg * (1.0 - sg)));
            y_ref[i] = (float)(z * sg);
        }
    }
    flash_ref_group_norm_backward(gx_ref, gg_ref, gb_ref, gz, x, affine ? gamma : NULL, n, ch, h * w, groups, eps);
    if (silu) free(gz);
    flash_ctx *c = flash_ctx_create(1 << 20);
    int xs[4] = {n, ch, h, w};
    flash_tensor *tx = leaf(c, 4, xs, x), *tg = affine ? leaf(c, 1, &ch, gamma) : NULL,
                 *tb = affine ? leaf(c, 1, &ch, beta) : NULL;
    flash_tensor *y = silu ? flash_group_norm_silu(c, tx, groups, tg, tb, eps) : flash_group_norm(c, tx, groups, tg, tb, eps);
    ck_assert_msg(y != NULL, "group_norm: %s", flash_ctx_error(c));
    double e = nerr(y->data, y_ref, nx);
    ck_assert_msg(e < tol, "group_norm%s (%d,%d,%d,%d)/%d offset %g: forward error %.3g", silu ? "_silu" : "", n, ch,
                  h, w, groups, (double)offset, e);
    run_backward(c, y, gy);
    e = nerr(tx->grad, gx_ref, nx);
    ck_assert_msg(e < tol, "group_norm%s offset %g: dx error %.3g", silu ? "_silu" : "", (double)offset, e);
    if (affine) {
        ck_assert_msg(nerr(tg->grad, gg_ref, (size_t)ch) < tol, "group_norm dgamma");
        ck_assert_msg(nerr(tb->grad, gb_ref, (size_t)ch) < tol, "group_norm dbeta");
    }
    flash_ctx_destroy(c);
    free(x), free(gamma), free(beta), free(gy), free(y_ref), free(gx_ref), free(gg_ref), free(gb_ref);
}

START_TEST(test_group_norm_vs_ref) {
    check_group_norm(4, 32, 28, 28, 8, true, false, 0.0f, 31, TOL);
    check_group_norm(3, 12, 5, 7, 3, true, false, 0.0f, 32, TOL);
    check_group_norm(2, 6, 3, 3, 6, false, false, 0.0f, 33, TOL); /* instance norm */
    check_group_norm(2, 8, 4, 4, 1, true, false, 0.0f, 34, TOL);  /* layer norm */
}
END_TEST

START_TEST(test_group_norm_silu_vs_ref) {
    check_group_norm(4, 32, 28, 28, 8, true, true, 0.0f, 36, TOL);
    check_group_norm(3, 12, 5, 7, 3, true, true, 0.0f, 37, TOL);
    check_group_norm(2, 6, 3, 3, 6, false, true, 0.0f, 38, TOL);
    check_group_norm(2, 8, 300, 1, 2, true, true, 0.0f, 39, TOL); /* rows longer than the kernel's chunk */
}
END_TEST

/* A large common offset: a one-pass float variance would cancel; the
 * statistics must still match the double reference. */
START_TEST(test_group_norm_offset_stable) {
    check_group_norm(2, 16, 8, 8, 4, true, false, 1000.0f, 35, 1e-3);
    check_group_norm(2, 16, 8, 8, 4, true, true, 1000.0f, 35, 1e-3);
}
END_TEST

/* ---- upsample, pooling --------------------------------------------------- */

START_TEST(test_upsample_pool_vs_ref) {
    const int n = 3, ch = 5, h = 6, w = 9, k = 3;
    const size_t nx = (size_t)n * ch * h * w;
    uint64_t s = 41;
    float *x = rand_buf(&s, nx, -1, 1), *gu = rand_buf(&s, 4 * nx, -1, 1), *gp = rand_buf(&s, nx / (k * k), -1, 1);
    float *u_ref = zero_buf(4 * nx), *p_ref = zero_buf(nx / (k * k)), *gxu_ref = zero_buf(nx), *gxp_ref = zero_buf(nx);
    flash_ref_upsample2x_forward(u_ref, x, n * ch, h, w);
    flash_ref_upsample2x_backward(gxu_ref, gu, n * ch, h, w);
    flash_ref_avg_pool2d_forward(p_ref, x, n * ch, h, w, k);
    flash_ref_avg_pool2d_backward(gxp_ref, gp, n * ch, h, w, k);
    flash_ctx *c = flash_ctx_create(1 << 16);
    int xs[4] = {n, ch, h, w};
    flash_tensor *tx = leaf(c, 4, xs, x);
    flash_tensor *u = flash_upsample_nearest2x(c, tx);
    ck_assert_msg(u != NULL, "upsample: %s", flash_ctx_error(c));
    ck_assert_int_eq(u->shape[2], 2 * h);
    ck_assert_int_eq(u->shape[3], 2 * w);
    ck_assert_msg(nerr(u->data, u_ref, 4 * nx) == 0, "upsample forward must be exact");
    run_backward(c, u, gu);
    ck_assert_msg(nerr(tx->grad, gxu_ref, nx) < TOL, "upsample backward");
    flash_tensor *tx2 = leaf(c, 4, xs, x);
    flash_tensor *p = flash_avg_pool2d(c, tx2, k);
    ck_assert_msg(p != NULL, "avg_pool2d: %s", flash_ctx_error(c));
    ck_assert_int_eq(p->shape[2], h / k);
    ck_assert_int_eq(p->shape[3], w / k);
    ck_assert_msg(nerr(p->data, p_ref, nx / (k * k)) < TOL, "avg_pool2d forward");
    run_backward(c, p, gp);
    ck_assert_msg(nerr(tx2->grad, gxp_ref, nx) < TOL, "avg_pool2d backward");
    flash_ctx_destroy(c);
    free(x), free(gu), free(gp), free(u_ref), free(p_ref), free(gxu_ref), free(gxp_ref);
}
END_TEST

/* ---- determinism --------------------------------------------------------- */

/* conv (Winograd at this batch) -> group norm -> conv (stride 2, direct) ->
 * linear head, forward and backward; returns a malloc'd concatenation of the
 * output and every gradient. */
static float *run_block(size_t *len) {
    uint64_t s = 51;
    const int n = 16, ch = 32, hw = 14;
    int xs[4] = {n, 16, hw, hw}, w1s[4] = {ch, 16, 3, 3}, w2s[4] = {ch, ch, 3, 3}, lws[2] = {10, ch * 7 * 7};
    float *x = rand_buf(&s, (size_t)n * 16 * hw * hw, -1, 1), *w1 = rand_buf(&s, (size_t)ch * 16 * 9, -0.3f, 0.3f),
          *w2 = rand_buf(&s, (size_t)ch * ch * 9, -0.2f, 0.2f), *lw = rand_buf(&s, (size_t)10 * ch * 49, -0.1f, 0.1f),
          *gy = rand_buf(&s, (size_t)n * 10, -1, 1);
    flash_ctx *c = flash_ctx_create(1 << 20);
    flash_tensor *tx = leaf(c, 4, xs, x), *tw1 = leaf(c, 4, w1s, w1), *tw2 = leaf(c, 4, w2s, w2),
                 *tlw = leaf(c, 2, lws, lw);
    flash_tensor *h1 = flash_conv2d(c, tx, tw1, NULL, 1, 1);
    flash_tensor *h2 = flash_group_norm(c, h1, 8, NULL, NULL, 1e-5f);
    flash_tensor *h3 = flash_conv2d(c, h2, tw2, NULL, 2, 1);
    int fs[2] = {n, ch * 49};
    flash_tensor *h4 = flash_reshape(c, h3, 2, fs);
    flash_tensor *y = flash_linear(c, h4, tlw, NULL);
    ck_assert_msg(y != NULL && flash_ctx_ok(c), "block: %s", flash_ctx_error(c));
    /* backward through the tape, newest first */
    flash_tensor *gy_t = flash_tensor_from(c, y->ndim, y->shape, gy);
    ck_assert_ptr_nonnull(gy_t);
    y->grad = gy_t->data;
    for (flash_tape_entry *e = c->tape; e; e = e->prev)
        if (e->out->grad) e->backward(c, e);
    ck_assert_msg(flash_ctx_ok(c), "block backward: %s", flash_ctx_error(c));
    flash_tensor *parts[5] = {y, tx, tw1, tw2, tlw};
    size_t total = 0;
    for (int i = 0; i < 5; i++) total += parts[i]->numel;
    float *out = malloc(total * sizeof(float)), *o = out;
    ck_assert_ptr_nonnull(out);
    memcpy(o, y->data, y->numel * sizeof(float));
    o += y->numel;
    for (int i = 1; i < 5; i++) {
        ck_assert_ptr_nonnull(parts[i]->grad);
        memcpy(o, parts[i]->grad, parts[i]->numel * sizeof(float));
        o += parts[i]->numel;
    }
    *len = total;
    flash_ctx_destroy(c);
    free(x), free(w1), free(w2), free(lw), free(gy);
    return out;
}

START_TEST(test_determinism) {
    size_t n1, n2;
    float *a = run_block(&n1), *b = run_block(&n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_msg(memcmp(a, b, n1 * sizeof(float)) == 0, "two identical runs differ");
    free(a);
    free(b);
}
END_TEST

/* ---- errors --------------------------------------------------------------- */

START_TEST(test_shape_errors) {
    flash_ctx *c = flash_ctx_create(1 << 16);
    int xs[4] = {2, 3, 8, 8}, ws[4] = {4, 5, 3, 3};
    flash_tensor *x = flash_zeros(c, 4, xs), *w = flash_zeros(c, 4, ws);
    ck_assert_ptr_null(flash_conv2d(c, x, w, NULL, 1, 1));
    ck_assert(!flash_ctx_ok(c));
    ck_assert_msg(strstr(flash_ctx_error(c), "conv2d") && strstr(flash_ctx_error(c), "(4, 5, 3, 3)"), "message: %s",
                  flash_ctx_error(c));
    flash_ctx_reset(c);
    x = flash_zeros(c, 4, xs);
    ck_assert_ptr_null(flash_group_norm(c, x, 2, NULL, NULL, 1e-5f));
    ck_assert_msg(strstr(flash_ctx_error(c), "group_norm"), "message: %s", flash_ctx_error(c));
    flash_ctx_reset(c);
    x = flash_zeros(c, 4, xs);
    ck_assert_ptr_null(flash_avg_pool2d(c, x, 3));
    ck_assert_msg(strstr(flash_ctx_error(c), "avg_pool2d"), "message: %s", flash_ctx_error(c));
    flash_ctx_reset(c);
    int as[2] = {3, 4}, bs[2] = {5, 6};
    ck_assert_ptr_null(flash_matmul(c, flash_zeros(c, 2, as), flash_zeros(c, 2, bs)));
    ck_assert_msg(strstr(flash_ctx_error(c), "matmul"), "message: %s", flash_ctx_error(c));
    flash_ctx_reset(c);
    ck_assert_ptr_null(flash_linear(c, flash_zeros(c, 2, as), flash_zeros(c, 2, bs), NULL));
    ck_assert_msg(strstr(flash_ctx_error(c), "linear"), "message: %s", flash_ctx_error(c));
    /* NULL in, NULL out */
    flash_ctx_reset(c);
    ck_assert_ptr_null(flash_conv2d(c, NULL, NULL, NULL, 1, 1));
    ck_assert_ptr_null(flash_upsample_nearest2x(c, NULL));
    flash_ctx_destroy(c);
}
END_TEST

/* ---- finite differences ---------------------------------------------------- */

typedef struct conv_ud {
    int stride, pad;
} conv_ud;

static flash_tensor *b_conv(flash_ctx *c, flash_tensor *const *in, void *ud) {
    const conv_ud *u = ud;
    return flash_conv2d(c, in[0], in[1], in[2], u->stride, u->pad);
}

static void r_conv(const double *const *in, const gc_input *s, double *out, void *ud) {
    const conv_ud *u = ud;
    const int n = s[0].shape[0], ci = s[0].shape[1], h = s[0].shape[2], w = s[0].shape[3];
    const int co = s[1].shape[0], k = s[1].shape[2];
    const int ho = (h + 2 * u->pad - k) / u->stride + 1, wo = (w + 2 * u->pad - k) / u->stride + 1;
    for (int b = 0; b < n; b++)
        for (int o = 0; o < co; o++)
            for (int i = 0; i < ho; i++)
                for (int j = 0; j < wo; j++) {
                    double acc = in[2][o];
                    for (int c = 0; c < ci; c++)
                        for (int p = 0; p < k; p++)
                            for (int q = 0; q < k; q++) {
                                int yi = i * u->stride - u->pad + p, xj = j * u->stride - u->pad + q;
                                if (yi >= 0 && yi < h && xj >= 0 && xj < w)
                                    acc += in[1][((o * ci + c) * k + p) * k + q] * in[0][((b * ci + c) * h + yi) * w + xj];
                            }
                    out[((b * co + o) * ho + i) * wo + j] = acc;
                }
}

START_TEST(test_gradcheck_conv) {
    static const struct {
        int n, ci, h, w, co, k, stride, pad;
    } cases[] = {{2, 3, 5, 5, 4, 3, 1, 1}, {2, 2, 7, 6, 3, 3, 2, 1}, {1, 4, 4, 4, 2, 1, 1, 0}, {2, 2, 6, 5, 3, 3, 1, 0}};
    for (size_t t = 0; t < 4; t++) {
        gc_input in[3] = {GC_IN4(cases[t].n, cases[t].ci, cases[t].h, cases[t].w, -1, 1),
                          GC_IN4(cases[t].co, cases[t].ci, cases[t].k, cases[t].k, -1, 1),
                          GC_IN1(cases[t].co, -1, 1)};
        conv_ud u = {cases[t].stride, cases[t].pad};
        gc_result r;
        ck_assert_msg(gc_check(in, 3, b_conv, r_conv, &u, 300 + t, 1e-3, &r), "case %zu: %s", t, r.msg);
    }
}
END_TEST

static flash_tensor *b_linear(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_linear(c, in[0], in[1], in[2]);
}

static void r_linear(const double *const *in, const gc_input *s, double *out, void *ud) {
    (void)ud;
    const int n = s[0].shape[0], d = s[0].shape[1], o = s[1].shape[0];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < o; j++) {
            double acc = in[2][j];
            for (int k = 0; k < d; k++) acc += in[0][i * d + k] * in[1][j * d + k];
            out[i * o + j] = acc;
        }
}

static flash_tensor *b_matmul(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_matmul(c, in[0], in[1]);
}

static void r_matmul(const double *const *in, const gc_input *s, double *out, void *ud) {
    (void)ud;
    const int m = s[0].shape[0], k = s[0].shape[1], n = s[1].shape[1];
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int p = 0; p < k; p++) acc += in[0][i * k + p] * in[1][p * n + j];
            out[i * n + j] = acc;
        }
}

START_TEST(test_gradcheck_linear_matmul) {
    gc_input lin[3] = {GC_IN2(4, 6, -1, 1), GC_IN2(5, 6, -1, 1), GC_IN1(5, -1, 1)};
    gc_result r;
    ck_assert_msg(gc_check(lin, 3, b_linear, r_linear, NULL, 401, 1e-3, &r), "linear: %s", r.msg);
    gc_input mm[2] = {GC_IN2(3, 7, -1, 1), GC_IN2(7, 4, -1, 1)};
    ck_assert_msg(gc_check(mm, 2, b_matmul, r_matmul, NULL, 402, 1e-3, &r), "matmul: %s", r.msg);
}
END_TEST

typedef struct gn_ud {
    int groups;
} gn_ud;

static flash_tensor *b_gn(flash_ctx *c, flash_tensor *const *in, void *ud) {
    const gn_ud *u = ud;
    return flash_group_norm(c, in[0], u->groups, in[1], in[2], 1e-5f);
}

static void r_gn(const double *const *in, const gc_input *s, double *out, void *ud) {
    const gn_ud *u = ud;
    const int n = s[0].shape[0], ch = s[0].shape[1], hw = s[0].shape[2] * s[0].shape[3], cpg = ch / u->groups;
    for (int b = 0; b < n; b++)
        for (int g = 0; g < u->groups; g++) {
            const double *x = in[0] + ((size_t)b * ch + (size_t)g * cpg) * hw;
            double mean = 0, var = 0;
            for (int i = 0; i < cpg * hw; i++) mean += x[i];
            mean /= cpg * hw;
            for (int i = 0; i < cpg * hw; i++) var += (x[i] - mean) * (x[i] - mean);
            var /= cpg * hw;
            for (int c = 0; c < cpg; c++)
                for (int j = 0; j < hw; j++) {
                    int cc = g * cpg + c;
                    out[((size_t)b * ch + cc) * hw + j] =
                        (x[c * hw + j] - mean) / sqrt(var + 1e-5) * in[1][cc] + in[2][cc];
                }
        }
}

static flash_tensor *b_gn_silu(flash_ctx *c, flash_tensor *const *in, void *ud) {
    const gn_ud *u = ud;
    return flash_group_norm_silu(c, in[0], u->groups, in[1], in[2], 1e-5f);
}

static void r_gn_silu(const double *const *in, const gc_input *s, double *out, void *ud) {
    r_gn(in, s, out, ud);
    for (size_t i = 0; i < gc_numel(&s[0]); i++) out[i] = out[i] / (1.0 + exp(-out[i]));
}

START_TEST(test_gradcheck_group_norm) {
    gc_input in[3] = {GC_IN4(2, 6, 3, 4, -2, 2), GC_IN1(6, 0.5f, 1.5f), GC_IN1(6, -1, 1)};
    gn_ud u = {3};
    gc_result r;
    ck_assert_msg(gc_check(in, 3, b_gn, r_gn, &u, 501, 1e-3, &r), "group_norm: %s", r.msg);
    ck_assert_msg(gc_check(in, 3, b_gn_silu, r_gn_silu, &u, 502, 1e-3, &r), "group_norm_silu: %s", r.msg);
}
END_TEST

static flash_tensor *b_up(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_upsample_nearest2x(c, in[0]);
}

static void r_up(const double *const *in, const gc_input *s, double *out, void *ud) {
    (void)ud;
    const int nc = s[0].shape[0] * s[0].shape[1], h = s[0].shape[2], w = s[0].shape[3];
    for (int p = 0; p < nc; p++)
        for (int i = 0; i < 2 * h; i++)
            for (int j = 0; j < 2 * w; j++) out[((size_t)p * 2 * h + i) * 2 * w + j] = in[0][((size_t)p * h + i / 2) * w + j / 2];
}

static flash_tensor *b_pool(flash_ctx *c, flash_tensor *const *in, void *ud) {
    return flash_avg_pool2d(c, in[0], *(const int *)ud);
}

static void r_pool(const double *const *in, const gc_input *s, double *out, void *ud) {
    const int k = *(const int *)ud;
    const int nc = s[0].shape[0] * s[0].shape[1], h = s[0].shape[2], w = s[0].shape[3];
    for (int p = 0; p < nc; p++)
        for (int i = 0; i < h / k; i++)
            for (int j = 0; j < w / k; j++) {
                double acc = 0;
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) acc += in[0][((size_t)p * h + i * k + a) * w + j * k + b];
                out[((size_t)p * (h / k) + i) * (w / k) + j] = acc / (k * k);
            }
}

START_TEST(test_gradcheck_upsample_pool) {
    gc_input x = GC_IN4(2, 3, 3, 5, -1, 1);
    gc_result r;
    ck_assert_msg(gc_check(&x, 1, b_up, r_up, NULL, 601, 1e-3, &r), "upsample: %s", r.msg);
    gc_input xp = GC_IN4(2, 3, 4, 6, -1, 1);
    int k = 2;
    ck_assert_msg(gc_check(&xp, 1, b_pool, r_pool, &k, 602, 1e-3, &r), "avg_pool2d k=2: %s", r.msg);
    gc_input xg = GC_IN4(2, 2, 3, 3, -1, 1);
    k = 3; /* global average pooling */
    ck_assert_msg(gc_check(&xg, 1, b_pool, r_pool, &k, 603, 1e-3, &r), "avg_pool2d global: %s", r.msg);
}
END_TEST

static Suite *ops_nn_suite(void) {
    Suite *s = suite_create("ops_nn");
    TCase *tc = tcase_create("fast_vs_ref");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_conv_fixed_shapes);
    tcase_add_test(tc, test_conv_random_shapes);
    tcase_add_test(tc, test_conv_bf16);
    tcase_add_test(tc, test_linear_vs_ref);
    tcase_add_test(tc, test_matmul_vs_ref);
    tcase_add_test(tc, test_group_norm_vs_ref);
    tcase_add_test(tc, test_group_norm_silu_vs_ref);
    tcase_add_test(tc, test_group_norm_offset_stable);
    tcase_add_test(tc, test_conv_no_grad);
    tcase_add_test(tc, test_upsample_pool_vs_ref);
    suite_add_tcase(s, tc);
    tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_gradcheck_conv);
    tcase_add_test(tc, test_gradcheck_linear_matmul);
    tcase_add_test(tc, test_gradcheck_group_norm);
    tcase_add_test(tc, test_gradcheck_upsample_pool);
    suite_add_tcase(s, tc);
    tc = tcase_create("determinism_errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_shape_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    flash_set_threads(2);
    SRunner *sr = srunner_create(ops_nn_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
