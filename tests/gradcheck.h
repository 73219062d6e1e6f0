/* Gradient checks by central finite differences, for any float32 graph.
 *
 * A test supplies
 *   - the inputs' shapes and value ranges (gc_input),
 *   - build(): the graph under test, in float32 through the flash ops,
 *   - ref():   an independent double-precision forward of the same function.
 * gc_check() draws seeded random inputs (never all zero, optionally kept away
 * from kinks), runs build() and compares its output with ref() (forward
 * error), then seeds the output gradient with random nonzero weights w and
 * compares each input's autograd gradient of L = sum(w * out) with
 *   dL/dx_k ~ (L(x + h e_k) - L(x - h e_k)) / 2h
 * evaluated with ref() in double. Errors are normalised:
 *   ||got - want|| / max(||want||, floor).
 *
 * Example:
 *   static flash_tensor *b_tanh(flash_ctx *c, flash_tensor *const *in, void *ud) {
 *       (void)ud; return flash_tanh(c, in[0]);
 *   }
 *   static void r_tanh(const double *const *in, const gc_input *s, double *out, void *ud) {
 *       for (size_t i = 0; i < gc_numel(&s[0]); i++) out[i] = tanh(in[0][i]);
 *   }
 *   gc_input x = GC_IN4(2, 3, 4, 5, -2, 2);
 *   gc_result r;
 *   ck_assert_msg(gc_check(&x, 1, b_tanh, r_tanh, NULL, 42, 1e-3, &r), "%s", r.msg);
 *
 * Sizes are meant to be small (hundreds of elements): each input element
 * costs two reference forwards.
 */
#ifndef FLASH_TESTS_GRADCHECK_H
#define FLASH_TESTS_GRADCHECK_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"
#include "tensor/tensor_internal.h"

#define GC_MAX_IN 4

typedef struct gc_input {
    int ndim;
    int shape[FLASH_MAX_DIMS];
    float lo, hi;  /* values uniform in [lo, hi) */
    float avoid;   /* redraw while |x| < avoid (keeps FD away from kinks at 0) */
    bool no_grad;  /* an input that is not differentiated (e.g. a mask) */
} gc_input;

#define GC_IN1(a, lo_, hi_) ((gc_input){.ndim = 1, .shape = {a}, .lo = (lo_), .hi = (hi_)})
#define GC_IN2(a, b, lo_, hi_) ((gc_input){.ndim = 2, .shape = {a, b}, .lo = (lo_), .hi = (hi_)})
#define GC_IN3(a, b, c_, lo_, hi_) ((gc_input){.ndim = 3, .shape = {a, b, c_}, .lo = (lo_), .hi = (hi_)})
#define GC_IN4(a, b, c_, d, lo_, hi_) ((gc_input){.ndim = 4, .shape = {a, b, c_, d}, .lo = (lo_), .hi = (hi_)})

typedef flash_tensor *(*gc_build_fn)(flash_ctx *c, flash_tensor *const *in, void *ud);
typedef void (*gc_ref_fn)(const double *const *in, const gc_input *spec, double *out, void *ud);

typedef struct gc_result {
    double fwd_err;
    double grad_err[GC_MAX_IN];
    size_t out_numel;
    char msg[512];
} gc_result;

static inline size_t gc_numel(const gc_input *s) {
    size_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= (size_t)s->shape[i];
    return n;
}

/* ||got - want|| / max(||want||, floor) */
static inline double gc_norm_err_f(const float *got, const double *want, size_t n, double floor) {
    double d = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)got[i] - want[i];
        d += e * e;
        w += want[i] * want[i];
    }
    return sqrt(d) / fmax(sqrt(w), floor);
}

/* Fills x with values of the spec drawn from r (never all zero). */
static inline void gc_fill(flash_rng *r, const gc_input *s, float *x) {
    size_t n = gc_numel(s);
    for (size_t i = 0; i < n; i++) {
        float v;
        int tries = 0;
        do v = s->lo + (s->hi - s->lo) * (float)flash_rng_uniform(r);
        while ((fabsf(v) < s->avoid || v == 0.0f) && ++tries < 1000);
        x[i] = v;
    }
}

static inline double gc_loss_ref(gc_ref_fn ref, double *const *in, const gc_input *spec, void *ud, const double *w,
                                 double *out, size_t n_out) {
    ref((const double *const *)in, spec, out, ud);
    double l = 0;
    for (size_t j = 0; j < n_out; j++) l += w[j] * out[j];
    return l;
}

/* Returns true when the forward error and every gradient error are <= tol;
 * res (optional) gets the errors and a message naming the failure. */
static inline bool gc_check(const gc_input *spec, int n_in, gc_build_fn build, gc_ref_fn ref, void *ud,
                            uint64_t seed, double tol, gc_result *res) {
    gc_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    if (n_in < 1 || n_in > GC_MAX_IN) {
        snprintf(res->msg, sizeof res->msg, "gc_check: bad number of inputs %d", n_in);
        return false;
    }
    bool ok = false;
    flash_rng rng;
    flash_rng_seed(&rng, seed);
    float *xf[GC_MAX_IN] = {0};
    double *xd[GC_MAX_IN] = {0};
    double *out_ref = NULL, *w = NULL, *tmp = NULL;
    float *wf = NULL;
    flash_ctx *c = flash_ctx_create(1 << 20);
    if (!c) {
        snprintf(res->msg, sizeof res->msg, "gc_check: no context");
        return false;
    }
    flash_tensor *t[GC_MAX_IN] = {0};
    for (int i = 0; i < n_in; i++) {
        size_t n = gc_numel(&spec[i]);
        xf[i] = malloc(n * sizeof(float));
        xd[i] = malloc(n * sizeof(double));
        if (!xf[i] || !xd[i]) goto done;
        gc_fill(&rng, &spec[i], xf[i]);
        for (size_t k = 0; k < n; k++) xd[i][k] = xf[i][k];
        t[i] = flash_tensor_from(c, spec[i].ndim, spec[i].shape, xf[i]);
        if (!t[i]) goto done;
        flash_tensor_requires_grad(t[i], !spec[i].no_grad);
    }
    flash_tensor *out = build(c, t, ud);
    if (!out || !flash_ctx_ok(c)) {
        snprintf(res->msg, sizeof res->msg, "gc_check: build failed: %.400s", flash_ctx_error(c));
        goto done;
    }
    const size_t n_out = out->numel;
    res->out_numel = n_out;
    out_ref = malloc(n_out * sizeof(double));
    tmp = malloc(n_out * sizeof(double));
    w = malloc(n_out * sizeof(double));
    wf = malloc(n_out * sizeof(float));
    if (!out_ref || !tmp || !w || !wf) goto done;
    ref((const double *const *)xd, spec, out_ref, ud);
    res->fwd_err = gc_norm_err_f(out->data, out_ref, n_out, 1e-6);
    if (!(res->fwd_err <= tol)) {
        snprintf(res->msg, sizeof res->msg, "forward error %.3g > %.3g (out[0] %.6g vs ref %.6g)", res->fwd_err, tol,
                 (double)out->data[0], out_ref[0]);
        goto done;
    }
    for (size_t j = 0; j < n_out; j++) {
        /* weights of magnitude in [0.5, 1.5) with random sign: never zero */
        double m = 0.5 + flash_rng_uniform(&rng);
        w[j] = (flash_rng_u64(&rng) & 1) ? m : -m;
        wf[j] = (float)w[j];
    }
    bool any_grad = false;
    for (int i = 0; i < n_in; i++) any_grad = any_grad || !spec[i].no_grad;
    if (!any_grad) {
        ok = true;
        goto done;
    }
    flash_error err = {0};
    if (flash_backward_from(c, out, wf, &err) != FLASH_OK) {
        snprintf(res->msg, sizeof res->msg, "gc_check: backward failed: %.400s", err.msg);
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        if (spec[i].no_grad) continue;
        size_t n = gc_numel(&spec[i]);
        if (!t[i]->grad) {
            snprintf(res->msg, sizeof res->msg, "input %d received no gradient", i);
            goto done;
        }
        double *fd = malloc(n * sizeof(double));
        if (!fd) goto done;
        for (size_t k = 0; k < n; k++) {
            const double x0 = xd[i][k];
            const double h = 1e-5 * fmax(1.0, fabs(x0));
            xd[i][k] = x0 + h;
            double lp = gc_loss_ref(ref, xd, spec, ud, w, tmp, n_out);
            xd[i][k] = x0 - h;
            double lm = gc_loss_ref(ref, xd, spec, ud, w, tmp, n_out);
            xd[i][k] = x0;
            fd[k] = (lp - lm) / (2 * h);
        }
        res->grad_err[i] = gc_norm_err_f(t[i]->grad, fd, n, 1e-3);
        if (!(res->grad_err[i] <= tol)) {
            size_t worst = 0;
            double wd = -1;
            for (size_t k = 0; k < n; k++) {
                double d = fabs((double)t[i]->grad[k] - fd[k]);
                if (d > wd) wd = d, worst = k;
            }
            snprintf(res->msg, sizeof res->msg,
                     "input %d: gradient error %.3g > %.3g (element %zu: autograd %.6g, finite difference %.6g)", i,
                     res->grad_err[i], tol, worst, (double)t[i]->grad[worst], fd[worst]);
            free(fd);
            goto done;
        }
        free(fd);
    }
    ok = true;
done:
    for (int i = 0; i < n_in; i++) {
        free(xf[i]);
        free(xd[i]);
    }
    free(out_ref);
    free(tmp);
    free(w);
    free(wf);
    flash_ctx_destroy(c);
    return ok;
}

#endif
