/* Elementwise, reduction and misc ops: forward against plain double
 * references, gradients against central finite differences (gradcheck.h),
 * the parallel paths against the same references at sizes above the
 * threading threshold, and determinism across thread counts. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"
#include "gradcheck.h"

#define TOL 2e-3

static uint64_t seed_of(const char *name) {
    /* fresh values per test, reproducible per name */
    uint64_t h = 1469598103934665603ull;
    for (; *name; name++) h = (h ^ (unsigned char)*name) * 1099511628211ull;
    return h;
}

#define GC_ASSERT(spec, n, build, ref, ud)                                                  \
    do {                                                                                    \
        gc_result r_;                                                                       \
        bool ok_ = gc_check(spec, n, build, ref, ud, seed_of(__func__) + __LINE__, TOL, &r_); \
        ck_assert_msg(ok_, "%s: %s", __func__, r_.msg);                                     \
    } while (0)

/* b (right-aligned with a) broadcast: index of b for a's flat index i */
static size_t bidx(const gc_input *a, const gc_input *b, size_t i) {
    int a4[4], b4[4];
    for (int k = 0; k < 4; k++) {
        a4[k] = k < 4 - a->ndim ? 1 : a->shape[k - (4 - a->ndim)];
        b4[k] = k < 4 - b->ndim ? 1 : b->shape[k - (4 - b->ndim)];
    }
    int idx[4];
    size_t r = i;
    for (int k = 3; k >= 0; k--) {
        idx[k] = (int)(r % (size_t)a4[k]);
        r /= (size_t)a4[k];
    }
    size_t o = 0;
    for (int k = 0; k < 4; k++) o = o * (size_t)b4[k] + (size_t)(b4[k] == 1 ? 0 : idx[k]);
    return o;
}

/* ---- binary with broadcasting ----------------------------------------------- */

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV } binop_t;

static flash_tensor *b_bin(flash_ctx *c, flash_tensor *const *in, void *ud) {
    switch (*(binop_t *)ud) {
    case OP_ADD: return flash_add(c, in[0], in[1]);
    case OP_SUB: return flash_sub(c, in[0], in[1]);
    case OP_MUL: return flash_mul(c, in[0], in[1]);
    default: return flash_div(c, in[0], in[1]);
    }
}

static void r_bin(const double *const *in, const gc_input *s, double *out, void *ud) {
    size_t n = gc_numel(&s[0]);
    for (size_t i = 0; i < n; i++) {
        double a = in[0][i], b = in[1][bidx(&s[0], &s[1], i)];
        switch (*(binop_t *)ud) {
        case OP_ADD: out[i] = a + b; break;
        case OP_SUB: out[i] = a - b; break;
        case OP_MUL: out[i] = a * b; break;
        default: out[i] = a / b; break;
        }
    }
}

START_TEST(test_binary_broadcast) {
    const gc_input a4 = GC_IN4(3, 4, 2, 5, -2, 2);
    const gc_input bs[] = {
        GC_IN4(3, 4, 2, 5, 0.5f, 2), /* same shape */
        GC_IN4(3, 1, 1, 1, 0.5f, 2), /* per sample */
        GC_IN4(1, 4, 1, 1, 0.5f, 2), /* per channel */
        GC_IN3(4, 1, 1, 0.5f, 2),    /* per channel, fewer dims */
        GC_IN1(1, 0.5f, 2),          /* scalar */
        GC_IN2(2, 5, 0.5f, 2),       /* per pixel */
        GC_IN4(3, 4, 1, 5, 0.5f, 2), /* mixed */
        GC_IN4(1, 4, 2, 1, 0.5f, 2),
    };
    for (binop_t op = OP_ADD; op <= OP_DIV; op++)
        for (size_t k = 0; k < sizeof bs / sizeof bs[0]; k++) {
            gc_input s[2] = {a4, bs[k]};
            GC_ASSERT(s, 2, b_bin, r_bin, &op);
        }
    const gc_input a2 = GC_IN2(6, 7, -2, 2);
    const gc_input b2[] = {GC_IN2(6, 7, 0.5f, 2), GC_IN2(6, 1, 0.5f, 2), GC_IN1(7, 0.5f, 2), GC_IN2(1, 7, 0.5f, 2)};
    for (binop_t op = OP_ADD; op <= OP_DIV; op++)
        for (size_t k = 0; k < 4; k++) {
            gc_input s[2] = {a2, b2[k]};
            GC_ASSERT(s, 2, b_bin, r_bin, &op);
        }
}
END_TEST

/* random ranks, sizes (1 included) and broadcast patterns */
START_TEST(test_binary_broadcast_fuzz) {
    flash_rng r;
    flash_rng_seed(&r, seed_of(__func__));
    for (int it = 0; it < 60; it++) {
        gc_input s[2];
        s[0] = (gc_input){.ndim = 1 + (int)flash_rng_below(&r, 4), .lo = -2, .hi = 2};
        for (int k = 0; k < s[0].ndim; k++) s[0].shape[k] = 1 + (int)flash_rng_below(&r, 4);
        s[1] = (gc_input){.ndim = 1 + (int)flash_rng_below(&r, (uint64_t)s[0].ndim), .lo = 0.5f, .hi = 2};
        for (int k = 0; k < s[1].ndim; k++) {
            int ak = s[0].shape[s[0].ndim - s[1].ndim + k];
            s[1].shape[k] = flash_rng_below(&r, 2) ? ak : 1;
        }
        binop_t op = (binop_t)flash_rng_below(&r, 4);
        gc_result res;
        bool ok = gc_check(s, 2, b_bin, r_bin, &op, seed_of(__func__) + (uint64_t)it, TOL, &res);
        ck_assert_msg(ok, "case %d (op %d, a ndim %d, b ndim %d): %s", it, (int)op, s[0].ndim, s[1].ndim, res.msg);
    }
}
END_TEST

static flash_tensor *b_mul_self(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_mul(c, in[0], in[0]);
}
static void r_mul_self(const double *const *in, const gc_input *s, double *out, void *ud) {
    (void)ud;
    for (size_t i = 0; i < gc_numel(&s[0]); i++) out[i] = in[0][i] * in[0][i];
}

START_TEST(test_binary_same_input) {
    gc_input s = GC_IN4(2, 3, 3, 3, -2, 2);
    GC_ASSERT(&s, 1, b_mul_self, r_mul_self, NULL);
}
END_TEST

START_TEST(test_broadcast_mismatch) {
    flash_ctx *c = flash_ctx_create(0);
    flash_tensor *a = flash_zeros(c, 4, (int[]){2, 3, 4, 4});
    flash_tensor *b = flash_zeros(c, 4, (int[]){2, 2, 1, 1});
    ck_assert_ptr_null(flash_add(c, a, b));
    ck_assert(!flash_ctx_ok(c));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(c), "add"));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(c), "(2, 2, 1, 1)"));
    /* b with more dims than a is refused too */
    flash_ctx_reset(c);
    ck_assert_ptr_null(flash_sub(c, flash_zeros(c, 1, (int[]){3}), flash_zeros(c, 2, (int[]){1, 3})));
    ck_assert(!flash_ctx_ok(c));
    flash_ctx_destroy(c);
}
END_TEST

/* ---- unary ------------------------------------------------------------------ */

typedef struct {
    int op;
    float a, b;
} un_t;

enum { U_AFFINE, U_SCALE, U_ADDS, U_NEG, U_EXP, U_LOG, U_SQRT, U_SQUARE, U_ABS, U_SILU, U_RELU, U_LEAKY, U_SOFTPLUS, U_TANH, U_N };

static flash_tensor *b_un(flash_ctx *c, flash_tensor *const *in, void *ud) {
    const un_t *u = ud;
    flash_tensor *x = in[0];
    switch (u->op) {
    case U_AFFINE: return flash_affine(c, x, u->a, u->b);
    case U_SCALE: return flash_scale(c, x, u->a);
    case U_ADDS: return flash_add_scalar(c, x, u->b);
    case U_NEG: return flash_neg(c, x);
    case U_EXP: return flash_exp(c, x);
    case U_LOG: return flash_log(c, x);
    case U_SQRT: return flash_sqrt(c, x);
    case U_SQUARE: return flash_square(c, x);
    case U_ABS: return flash_abs(c, x);
    case U_SILU: return flash_silu(c, x);
    case U_RELU: return flash_relu(c, x);
    case U_LEAKY: return flash_leaky_relu(c, x, u->a);
    case U_SOFTPLUS: return flash_softplus(c, x);
    default: return flash_tanh(c, x);
    }
}

static double ref_un(const un_t *u, double x) {
    switch (u->op) {
    case U_AFFINE: return u->a * x + u->b;
    case U_SCALE: return u->a * x;
    case U_ADDS: return x + u->b;
    case U_NEG: return -x;
    case U_EXP: return exp(x);
    case U_LOG: return log(x);
    case U_SQRT: return sqrt(x);
    case U_SQUARE: return x * x;
    case U_ABS: return fabs(x);
    case U_SILU: return x / (1 + exp(-x));
    case U_RELU: return x > 0 ? x : 0;
    case U_LEAKY: return x > 0 ? x : u->a * x;
    case U_SOFTPLUS: return log1p(exp(x));
    default: return tanh(x);
    }
}

static void r_un(const double *const *in, const gc_input *s, double *out, void *ud) {
    for (size_t i = 0; i < gc_numel(&s[0]); i++) out[i] = ref_un(ud, in[0][i]);
}

START_TEST(test_unary) {
    for (int op = 0; op < U_N; op++) {
        un_t u = {op, 1.7f, -0.3f};
        if (op == U_LEAKY) u.a = 0.2f;
        gc_input s = GC_IN4(2, 3, 4, 3, -3, 3);
        if (op == U_LOG || op == U_SQRT) s.lo = 0.2f;
        if (op == U_ABS || op == U_RELU || op == U_LEAKY) s.avoid = 0.05f;
        GC_ASSERT(&s, 1, b_un, r_un, &u);
    }
}
END_TEST

/* exp, tanh and the sigmoid inside silu are vectorised approximations:
 * relative error over a dense grid against libm in double */
START_TEST(test_transcendental_accuracy) {
    const int n = 400001;
    flash_ctx *c = flash_ctx_create(0);
    flash_tensor *x = flash_tensor_1d(c, n);
    for (int i = 0; i < n; i++) x->data[i] = -85.0f + 170.0f * (float)i / (float)(n - 1);
    flash_tensor *e = flash_exp(c, x), *t = flash_tanh(c, x), *s = flash_silu(c, x);
    double worst_e = 0, worst_t = 0, worst_s = 0;
    for (int i = 0; i < n; i++) {
        const double v = x->data[i], ev = exp(v), tv = tanh(v), sv = v / (1 + exp(-v));
        worst_e = fmax(worst_e, fabs(e->data[i] - ev) / ev);
        worst_t = fmax(worst_t, fabs(t->data[i] - tv) / fmax(fabs(tv), 1e-30));
        worst_s = fmax(worst_s, fabs(s->data[i] - sv) / fmax(fabs(sv), 1e-30));
    }
    ck_assert_msg(worst_e < 1e-6, "exp relative error %g", worst_e);
    ck_assert_msg(worst_t < 1e-6, "tanh relative error %g", worst_t);
    ck_assert_msg(worst_s < 1e-6, "silu relative error %g", worst_s);
    /* extremes saturate instead of overflowing; NaN propagates */
    float v[5] = {-1000, 1000, 0, -0.0f, NAN};
    flash_tensor *xv = flash_tensor_from(c, 1, (int[]){5}, v);
    e = flash_exp(c, xv), t = flash_tanh(c, xv), s = flash_silu(c, xv);
    ck_assert(e->data[0] >= 0 && e->data[0] < 1e-37f);
    ck_assert(isfinite(e->data[1]) && e->data[1] > 1e38f);
    ck_assert_float_eq(e->data[2], 1.0f);
    ck_assert_float_eq(t->data[0], -1.0f);
    ck_assert_float_eq(t->data[1], 1.0f);
    ck_assert_float_eq(t->data[2], 0.0f);
    ck_assert_float_eq(s->data[1], 1000.0f);
    ck_assert(fabsf(s->data[0]) < 1e-30f);
    ck_assert(isnan(e->data[4]) && isnan(t->data[4]) && isnan(s->data[4]));
    flash_ctx_destroy(c);
}
END_TEST

START_TEST(test_softplus_extremes) {
    flash_ctx *c = flash_ctx_create(0);
    float v[4] = {-100, -30, 30, 100};
    flash_tensor *y = flash_softplus(c, flash_tensor_from(c, 1, (int[]){4}, v));
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < 4; i++) {
        ck_assert(isfinite(y->data[i]));
        ck_assert_double_eq_tol(y->data[i], log1p(exp((double)v[i])), 1e-5 * fmax(1, fabs(v[i])));
    }
    flash_ctx_destroy(c);
}
END_TEST

/* ---- axpby, where ---------------------------------------------------------------- */

static const float AX_A[3] = {0.7f, -1.3f, 2.1f}, AX_B[3] = {0.4f, 1.1f, -0.6f};

static flash_tensor *b_axpby(flash_ctx *c, flash_tensor *const *in, void *ud) {
    return *(int *)ud ? flash_axpby(c, AX_A, in[0], AX_B, in[1]) : flash_axpby(c, AX_A, in[0], NULL, NULL);
}

static void r_axpby(const double *const *in, const gc_input *s, double *out, void *ud) {
    size_t n = gc_numel(&s[0]), inner = n / (size_t)s[0].shape[0];
    for (size_t i = 0; i < n; i++) {
        size_t r = i / inner;
        out[i] = AX_A[r] * in[0][i] + (*(int *)ud ? AX_B[r] * in[1][i] : 0.0);
    }
}

START_TEST(test_axpby) {
    gc_input s[2] = {GC_IN4(3, 2, 3, 3, -2, 2), GC_IN4(3, 2, 3, 3, -2, 2)};
    int with_y = 1;
    GC_ASSERT(s, 2, b_axpby, r_axpby, &with_y);
    with_y = 0;
    GC_ASSERT(s, 1, b_axpby, r_axpby, &with_y);
    gc_input s2[2] = {GC_IN2(3, 5, -2, 2), GC_IN2(3, 5, -2, 2)};
    with_y = 1;
    GC_ASSERT(s2, 2, b_axpby, r_axpby, &with_y);
}
END_TEST

static flash_tensor *b_where(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    /* mask from a random input: negative -> 0, positive -> 1 */
    flash_tensor *m = flash_relu(c, in[2]);
    m = flash_detach(c, m);
    return flash_where(c, m, in[0], in[1]);
}

static void r_where(const double *const *in, const gc_input *s, double *out, void *ud) {
    (void)ud;
    for (size_t i = 0; i < gc_numel(&s[0]); i++)
        out[i] = in[2][bidx(&s[0], &s[2], i)] > 0 ? in[0][i] : in[1][i];
}

START_TEST(test_where) {
    gc_input m[] = {GC_IN4(4, 1, 1, 1, -1, 1), GC_IN4(4, 2, 3, 3, -1, 1), GC_IN4(1, 2, 1, 1, -1, 1)};
    for (int k = 0; k < 3; k++) {
        gc_input s[3] = {GC_IN4(4, 2, 3, 3, -2, 2), GC_IN4(4, 2, 3, 3, -2, 2), m[k]};
        s[2].no_grad = true;
        s[2].avoid = 0.1f;
        GC_ASSERT(s, 3, b_where, r_where, NULL);
    }
    gc_input s2[3] = {GC_IN2(5, 3, -2, 2), GC_IN2(5, 3, -2, 2), GC_IN2(5, 1, -1, 1)};
    s2[2].no_grad = true;
    s2[2].avoid = 0.1f;
    GC_ASSERT(s2, 3, b_where, r_where, NULL);
}
END_TEST

/* ---- reductions --------------------------------------------------------------- */

enum { R_SUM, R_MEAN, R_SUM_PS, R_MEAN_PS };

static flash_tensor *b_red(flash_ctx *c, flash_tensor *const *in, void *ud) {
    switch (*(int *)ud) {
    case R_SUM: return flash_sum(c, in[0]);
    case R_MEAN: return flash_mean(c, in[0]);
    case R_SUM_PS: return flash_sum_per_sample(c, in[0]);
    default: return flash_mean_per_sample(c, in[0]);
    }
}

static void r_red(const double *const *in, const gc_input *s, double *out, void *ud) {
    const int op = *(int *)ud;
    size_t n = gc_numel(&s[0]), rows = (size_t)s[0].shape[0], inner = n / rows;
    if (op == R_SUM || op == R_MEAN) {
        double t = 0;
        for (size_t i = 0; i < n; i++) t += in[0][i];
        out[0] = op == R_MEAN ? t / (double)n : t;
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        double t = 0;
        for (size_t i = 0; i < inner; i++) t += in[0][r * inner + i];
        out[r] = op == R_MEAN_PS ? t / (double)inner : t;
    }
}

START_TEST(test_reductions) {
    gc_input shapes[] = {GC_IN4(3, 2, 4, 5, -2, 2), GC_IN2(4, 7, -2, 2), GC_IN1(9, -2, 2)};
    for (int op = R_SUM; op <= R_MEAN_PS; op++)
        for (int k = 0; k < 3; k++) GC_ASSERT(&shapes[k], 1, b_red, r_red, &op);
}
END_TEST

static flash_tensor *b_mse(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_mse(c, in[0], in[1]);
}

static void r_mse(const double *const *in, const gc_input *s, double *out, void *ud) {
    (void)ud;
    size_t n = gc_numel(&s[0]);
    double t = 0;
    for (size_t i = 0; i < n; i++) t += (in[0][i] - in[1][i]) * (in[0][i] - in[1][i]);
    out[0] = t / (double)n;
}

START_TEST(test_mse) {
    gc_input s[2] = {GC_IN4(2, 3, 4, 4, -2, 2), GC_IN4(2, 3, 4, 4, -2, 2)};
    GC_ASSERT(s, 2, b_mse, r_mse, NULL);
}
END_TEST

static const int CE_LABELS[5] = {0, 3, 2, 3, 1};

static flash_tensor *b_ce(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_cross_entropy(c, in[0], CE_LABELS);
}

static void r_ce(const double *const *in, const gc_input *s, double *out, void *ud) {
    (void)ud;
    int n = s[0].shape[0], k = s[0].shape[1];
    double t = 0;
    for (int r = 0; r < n; r++) {
        double z = 0;
        for (int j = 0; j < k; j++) z += exp(in[0][r * k + j]);
        t += log(z) - in[0][r * k + CE_LABELS[r]];
    }
    out[0] = t / n;
}

START_TEST(test_cross_entropy) {
    gc_input s = GC_IN2(5, 4, -3, 3);
    GC_ASSERT(&s, 1, b_ce, r_ce, NULL);
    /* large logits stay finite; bad labels are refused */
    flash_ctx *c = flash_ctx_create(0);
    float big[8] = {1000, -1000, 0, 500, -800, 900, 900, 0};
    flash_tensor *x = flash_tensor_from(c, 2, (int[]){2, 4}, big);
    flash_tensor *l = flash_cross_entropy(c, x, (int[]){0, 1});
    ck_assert_ptr_nonnull(l);
    ck_assert_double_eq_tol(l->data[0], log(2.0) / 2, 1e-5);
    flash_tensor *p = flash_softmax(c, x);
    ck_assert_double_eq_tol(p->data[0], 1.0, 1e-6);
    ck_assert_double_eq_tol(p->data[5], 0.5, 1e-6);
    ck_assert_ptr_null(flash_cross_entropy(c, x, (int[]){0, 4}));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(c), "label 4"));
    flash_ctx_destroy(c);
}
END_TEST

START_TEST(test_softmax) {
    flash_ctx *c = flash_ctx_create(0);
    flash_rng r;
    flash_rng_seed(&r, 7);
    flash_tensor *x = flash_randn(c, &r, 2, (int[]){6, 9});
    flash_tensor *p = flash_softmax(c, x);
    for (int i = 0; i < 6; i++) {
        double z = 0;
        for (int j = 0; j < 9; j++) z += exp((double)x->data[i * 9 + j]);
        for (int j = 0; j < 9; j++)
            ck_assert_double_eq_tol(p->data[i * 9 + j], exp((double)x->data[i * 9 + j]) / z, 1e-6);
    }
    flash_ctx_destroy(c);
}
END_TEST

/* ---- views, copy, concat ------------------------------------------------------------ */

enum { V_RESHAPE, V_NARROW, V_COPY, V_NARROW_RESHAPE_SQ };

static flash_tensor *b_view(flash_ctx *c, flash_tensor *const *in, void *ud) {
    switch (*(int *)ud) {
    case V_RESHAPE: return flash_square(c, flash_reshape(c, in[0], 2, (int[]){4, -1}));
    case V_NARROW: return flash_square(c, flash_narrow(c, in[0], 1, 2));
    case V_COPY: return flash_square(c, flash_copy(c, in[0]));
    default: {
        /* a view used twice plus the source used directly: gradients add */
        flash_tensor *v = flash_reshape(c, flash_narrow(c, in[0], 2, 2), 1, (int[]){-1});
        flash_tensor *s = flash_mul(c, v, v);
        return flash_add(c, s, flash_reshape(c, flash_narrow(c, in[0], 0, 2), 1, (int[]){-1}));
    }
    }
}

static void r_view(const double *const *in, const gc_input *s, double *out, void *ud) {
    size_t n = gc_numel(&s[0]), inner = n / (size_t)s[0].shape[0];
    switch (*(int *)ud) {
    case V_RESHAPE:
    case V_COPY:
        for (size_t i = 0; i < n; i++) out[i] = in[0][i] * in[0][i];
        break;
    case V_NARROW:
        for (size_t i = 0; i < 2 * inner; i++) out[i] = in[0][inner + i] * in[0][inner + i];
        break;
    default:
        for (size_t i = 0; i < 2 * inner; i++) out[i] = in[0][2 * inner + i] * in[0][2 * inner + i] + in[0][i];
        break;
    }
}

START_TEST(test_views) {
    gc_input s = GC_IN4(4, 2, 3, 2, -2, 2);
    for (int op = V_RESHAPE; op <= V_NARROW_RESHAPE_SQ; op++) GC_ASSERT(&s, 1, b_view, r_view, &op);
}
END_TEST

START_TEST(test_view_shares_data) {
    flash_ctx *c = flash_ctx_create(0);
    flash_tensor *x = flash_zeros(c, 4, (int[]){4, 2, 3, 3});
    flash_tensor *v = flash_narrow(c, x, 1, 2);
    ck_assert_ptr_eq(v->data, x->data + 18);
    ck_assert_int_eq(v->shape[0], 2);
    flash_tensor *r = flash_reshape(c, x, 2, (int[]){4, 18});
    ck_assert_ptr_eq(r->data, x->data);
    v->data[0] = 5;
    ck_assert_float_eq(x->data[18], 5);
    flash_tensor *d = flash_detach(c, x);
    ck_assert_ptr_eq(d->data, x->data);
    flash_tensor *cp = flash_copy(c, x);
    ck_assert_ptr_ne(cp->data, x->data);
    ck_assert_float_eq(cp->data[18], 5);
    /* errors */
    ck_assert_ptr_null(flash_reshape(c, x, 2, (int[]){5, -1}));
    ck_assert(!flash_ctx_ok(c));
    flash_ctx_reset(c);
    x = flash_zeros(c, 2, (int[]){4, 3});
    ck_assert_ptr_null(flash_narrow(c, x, 3, 2));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(c), "narrow"));
    flash_ctx_destroy(c);
}
END_TEST

static flash_tensor *b_concat(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_concat(c, in[0], in[1]);
}

static void r_concat(const double *const *in, const gc_input *s, double *out, void *ud) {
    (void)ud;
    size_t rows = (size_t)s[0].shape[0], ia = gc_numel(&s[0]) / rows, ib = gc_numel(&s[1]) / rows;
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < ia; i++) out[r * (ia + ib) + i] = in[0][r * ia + i];
        for (size_t i = 0; i < ib; i++) out[r * (ia + ib) + ia + i] = in[1][r * ib + i];
    }
}

START_TEST(test_concat) {
    gc_input s[2] = {GC_IN4(2, 3, 2, 2, -2, 2), GC_IN4(2, 1, 2, 2, -2, 2)};
    GC_ASSERT(s, 2, b_concat, r_concat, NULL);
    gc_input s2[2] = {GC_IN2(3, 2, -2, 2), GC_IN2(3, 5, -2, 2)};
    GC_ASSERT(s2, 2, b_concat, r_concat, NULL);
    flash_ctx *c = flash_ctx_create(0);
    ck_assert_ptr_null(flash_concat(c, flash_zeros(c, 4, (int[]){2, 3, 2, 2}), flash_zeros(c, 4, (int[]){2, 3, 2, 3})));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(c), "concat"));
    flash_ctx_destroy(c);
}
END_TEST

/* ---- embeddings, channel bias ----------------------------------------------------------- */

static const int EMB_IDX[6] = {2, 0, 2, 4, 1, 2};

static flash_tensor *b_emb(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_embedding(c, in[0], EMB_IDX, 6);
}

static void r_emb(const double *const *in, const gc_input *s, double *out, void *ud) {
    (void)ud;
    int d = s[0].shape[1];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < d; j++) out[i * d + j] = in[0][EMB_IDX[i] * d + j];
}

START_TEST(test_embedding) {
    gc_input s = GC_IN2(5, 3, -2, 2);
    GC_ASSERT(&s, 1, b_emb, r_emb, NULL);
    flash_ctx *c = flash_ctx_create(0);
    ck_assert_ptr_null(flash_embedding(c, flash_zeros(c, 2, (int[]){5, 3}), (int[]){5}, 1));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(c), "index 5"));
    flash_ctx_destroy(c);
}
END_TEST

START_TEST(test_timestep_embedding) {
    flash_ctx *c = flash_ctx_create(0);
    const float t[3] = {0, 17.5f, 999};
    for (int dim = 7; dim <= 8; dim++) {
        flash_tensor *e = flash_timestep_embedding(c, t, 3, dim, 10000.0f);
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(e->shape[1], dim);
        int half = dim / 2;
        for (int r = 0; r < 3; r++) {
            for (int i = 0; i < half; i++) {
                double f = pow(10000.0, -(double)i / half);
                ck_assert_double_eq_tol(e->data[r * dim + i], sin(t[r] * f), 1e-5);
                ck_assert_double_eq_tol(e->data[r * dim + half + i], cos(t[r] * f), 1e-5);
            }
            if (dim % 2) ck_assert_float_eq(e->data[r * dim + dim - 1], 0);
        }
        ck_assert(!flash_needs_grad(e));
    }
    flash_ctx_destroy(c);
}
END_TEST

static flash_tensor *b_cbias(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    return flash_add_channel_bias(c, in[0], in[1]);
}

static void r_cbias(const double *const *in, const gc_input *s, double *out, void *ud) {
    (void)ud;
    size_t hw = (size_t)s[0].shape[2] * (size_t)s[0].shape[3];
    for (size_t i = 0; i < gc_numel(&s[0]); i++) out[i] = in[0][i] + in[1][i / hw];
}

START_TEST(test_add_channel_bias) {
    gc_input s[2] = {GC_IN4(2, 3, 2, 3, -2, 2), GC_IN2(2, 3, -2, 2)};
    GC_ASSERT(s, 2, b_cbias, r_cbias, NULL);
}
END_TEST

/* ---- a composite graph: every op type chained --------------------------------------------- */

static flash_tensor *b_chain(flash_ctx *c, flash_tensor *const *in, void *ud) {
    (void)ud;
    flash_tensor *x = in[0], *s = in[1];
    flash_tensor *h = flash_silu(c, flash_mul(c, x, s));
    h = flash_add(c, h, flash_tanh(c, x));
    h = flash_concat(c, h, x);
    return flash_mean_per_sample(c, flash_square(c, h));
}

static void r_chain(const double *const *in, const gc_input *sp, double *out, void *ud) {
    (void)ud;
    size_t n = (size_t)sp[0].shape[0], inner = gc_numel(&sp[0]) / n;
    for (size_t r = 0; r < n; r++) {
        double t = 0;
        for (size_t i = 0; i < inner; i++) {
            double x = in[0][r * inner + i], v = x * in[1][r];
            double h = v / (1 + exp(-v)) + tanh(x);
            t += h * h + x * x;
        }
        out[r] = t / (double)(2 * inner);
    }
}

START_TEST(test_chain) {
    gc_input s[2] = {GC_IN4(3, 2, 3, 3, -2, 2), GC_IN4(3, 1, 1, 1, 0.5f, 2)};
    GC_ASSERT(s, 2, b_chain, r_chain, NULL);
}
END_TEST

/* ---- the parallel paths at sizes above the threading threshold --------------------------- */

/* mul with b broadcast in several patterns over a (8, 16, 24, 24) tensor:
 * forward and both gradients (output gradient w) against double loops */
START_TEST(test_large_broadcast) {
    const gc_input A = GC_IN4(8, 16, 24, 24, -1, 1);
    const gc_input Bs[] = {GC_IN4(8, 1, 1, 1, -1, 1), GC_IN4(1, 16, 1, 1, -1, 1), GC_IN1(1, -1, 1),
                           GC_IN4(8, 16, 24, 24, -1, 1), GC_IN2(24, 24, -1, 1), GC_IN4(8, 16, 1, 1, -1, 1)};
    flash_rng r;
    flash_rng_seed(&r, 99);
    const size_t n = gc_numel(&A);
    float *a = malloc(n * sizeof(float)), *w = malloc(n * sizeof(float));
    gc_fill(&r, &A, a);
    gc_fill(&r, &A, w);
    for (size_t k = 0; k < sizeof Bs / sizeof Bs[0]; k++) {
        const size_t nb = gc_numel(&Bs[k]);
        float *b = malloc(nb * sizeof(float));
        double *gb = calloc(nb, sizeof(double));
        gc_fill(&r, &Bs[k], b);
        flash_ctx *c = flash_ctx_create(0);
        flash_tensor *ta = flash_tensor_from(c, 4, A.shape, a);
        flash_tensor *tb = flash_tensor_from(c, Bs[k].ndim, Bs[k].shape, b);
        flash_tensor_requires_grad(ta, true);
        flash_tensor_requires_grad(tb, true);
        flash_tensor *y = flash_mul(c, ta, tb);
        ck_assert_int_eq(flash_backward_from(c, y, w, NULL), FLASH_OK);
        for (size_t i = 0; i < n; i++) {
            size_t j = bidx(&A, &Bs[k], i);
            ck_assert_float_eq(y->data[i], a[i] * b[j]);
            ck_assert_float_eq(ta->grad[i], w[i] * b[j]);
            gb[j] += (double)w[i] * a[i];
        }
        for (size_t j = 0; j < nb; j++) ck_assert_double_eq_tol(tb->grad[j], gb[j], 1e-4 * fmax(1, fabs(gb[j])));
        flash_ctx_destroy(c);
        free(b);
        free(gb);
    }
    free(a);
    free(w);
}
END_TEST

START_TEST(test_large_unary_and_sum) {
    const size_t n = 300001;
    flash_ctx *c = flash_ctx_create(0);
    flash_rng r;
    flash_rng_seed(&r, 5);
    flash_tensor *x = flash_randn(c, &r, 1, (int[]){(int)n});
    flash_tensor_requires_grad(x, true);
    flash_tensor *y = flash_tanh(c, x);
    flash_tensor *s = flash_mean(c, y);
    double ref = 0;
    for (size_t i = 0; i < n; i++) {
        const double t = tanh((double)x->data[i]);
        ck_assert_double_eq_tol(y->data[i], t, 2e-6 * fabs(t) + 1e-30);
        ref += t;
    }
    ck_assert_double_eq_tol(s->data[0], ref / n, 1e-6);
    ck_assert_int_eq(flash_backward(c, s, NULL), FLASH_OK);
    for (size_t i = 0; i < n; i += 997) {
        double t = tanh((double)x->data[i]);
        ck_assert_double_eq_tol(x->grad[i], (1 - t * t) / n, 1e-11);
    }
    flash_ctx_destroy(c);
}
END_TEST

/* Same inputs, one and two threads: bit-identical outputs and gradients. */
static void run_graph(int threads, float *out, float *gx, float *gb) {
    flash_set_threads(threads);
    flash_ctx *c = flash_ctx_create(0);
    flash_rng r;
    flash_rng_seed(&r, 1234);
    flash_tensor *x = flash_randn(c, &r, 4, (int[]){16, 8, 32, 32});
    flash_tensor *b = flash_randn(c, &r, 4, (int[]){1, 8, 1, 1});
    flash_tensor_requires_grad(x, true);
    flash_tensor_requires_grad(b, true);
    flash_tensor *h = flash_silu(c, flash_mul(c, x, b));
    flash_tensor *l = flash_add(c, flash_mean(c, flash_square(c, h)), flash_sum(c, flash_mean_per_sample(c, h)));
    ck_assert_int_eq(flash_backward(c, l, NULL), FLASH_OK);
    out[0] = l->data[0];
    memcpy(gx, x->grad, x->numel * sizeof(float));
    memcpy(gb, b->grad, b->numel * sizeof(float));
    flash_ctx_destroy(c);
}

START_TEST(test_determinism_threads) {
    const size_t n = 16 * 8 * 32 * 32;
    float o1, o2, *g1 = malloc(n * sizeof(float)), *g2 = malloc(n * sizeof(float)), b1[8], b2[8];
    int was = flash_get_threads();
    run_graph(1, &o1, g1, b1);
    run_graph(2, &o2, g2, b2);
    run_graph(2, &o2, g2, b2);
    flash_set_threads(was);
    ck_assert(memcmp(&o1, &o2, sizeof o1) == 0);
    ck_assert(memcmp(g1, g2, n * sizeof(float)) == 0);
    ck_assert(memcmp(b1, b2, sizeof b1) == 0);
    free(g1);
    free(g2);
}
END_TEST

static Suite *ops_suite(void) {
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("elementwise");
    tcase_add_test(tc, test_binary_broadcast);
    tcase_add_test(tc, test_binary_broadcast_fuzz);
    tcase_add_test(tc, test_binary_same_input);
    tcase_add_test(tc, test_broadcast_mismatch);
    tcase_add_test(tc, test_unary);
    tcase_add_test(tc, test_transcendental_accuracy);
    tcase_add_test(tc, test_softplus_extremes);
    tcase_add_test(tc, test_axpby);
    tcase_add_test(tc, test_where);
    suite_add_tcase(s, tc);
    tc = tcase_create("reduce");
    tcase_add_test(tc, test_reductions);
    tcase_add_test(tc, test_mse);
    tcase_add_test(tc, test_cross_entropy);
    tcase_add_test(tc, test_softmax);
    suite_add_tcase(s, tc);
    tc = tcase_create("misc");
    tcase_add_test(tc, test_views);
    tcase_add_test(tc, test_view_shares_data);
    tcase_add_test(tc, test_concat);
    tcase_add_test(tc, test_embedding);
    tcase_add_test(tc, test_timestep_embedding);
    tcase_add_test(tc, test_add_channel_bias);
    tcase_add_test(tc, test_chain);
    suite_add_tcase(s, tc);
    tc = tcase_create("parallel");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_large_broadcast);
    tcase_add_test(tc, test_large_unary_and_sum);
    tcase_add_test(tc, test_determinism_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(ops_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
