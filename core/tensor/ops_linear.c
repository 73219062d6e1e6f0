/* Linear layers and matrix products: the ops and their backward passes
 * (plain references for the tests: tests/ops_ref/). The fast path is the
 * backend's sgemm.
 *
 *   linear:  y = x w^T + b        gx += gy w,   gw += gy^T x,  gb += sum_rows gy
 *   matmul:  c = a b              ga += gc b^T, gb += a^T gc
 */
#include <string.h>

#include "tensor/tensor_internal.h"

/* ---- helpers ---------------------------------------------------------- */

static bool gemm(flash_ctx *c, const char *op, bool ta, bool tb, int m, int n, int k, const float *a, int lda,
                 const float *b, int ldb, float beta, float *out, int ldc) {
    int st = c->be->sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, out, ldc);
    if (st) flash_op_fail(c, op, "sgemm (%d x %d x %d) failed in the backend (status %d)", m, n, k, st);
    return st == 0;
}

/* gb[j] += sum_i g[i, j], in double, rows in index order (deterministic). */
static void col_sums_acc(float *gb, const float *g, int rows, int cols, double *scratch) {
    for (int j = 0; j < cols; j++) scratch[j] = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) scratch[j] += g[(size_t)i * cols + j];
    for (int j = 0; j < cols; j++) gb[j] += (float)scratch[j];
}

/* ---- linear ----------------------------------------------------------- */

static void linear_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *x = e->in[0], *w = e->in[1], *b = e->in[2], *y = e->out;
    const int n = x->shape[0], in = x->shape[1], out = w->shape[0];
    float *gx = flash_grad_of(c, x), *gw = flash_grad_of(c, w), *gb = flash_grad_of(c, b);
    if (gx && !gemm(c, "linear", false, false, n, in, out, y->grad, out, w->data, in, 1.0f, gx, in)) return;
    if (gw && !gemm(c, "linear", true, false, out, in, n, y->grad, out, x->data, in, 1.0f, gw, in)) return;
    if (gb && c->host == c) {
        double *scratch = flash_arena_alloc(c, (size_t)out * sizeof(double));
        if (scratch) col_sums_acc(gb, y->grad, n, out, scratch);
    } else if (gb) { /* device memory: gb (1, out) += ones (1, n) @ gy (n, out), one parallel GEMM */
        float *ones = flash_arena_alloc(c, (size_t)n * sizeof(float));
        if (!ones) return;
        c->be->fill(ones, (size_t)n, 1.0f);
        gemm(c, "linear", false, false, 1, out, n, ones, n, y->grad, out, 1.0f, gb, out);
    }
}

flash_tensor *flash_linear(flash_ctx *c, flash_tensor *x, flash_tensor *w, flash_tensor *b) {
    if (!c || !x || !w) return NULL;
    if (c->failed) return NULL;
    char sx[64], sw[64], sb[64];
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1] ||
        (b && (b->numel != (size_t)w->shape[0] || b->ndim != 1)))
        return flash_op_fail(c, "linear", "expects x (N, in), w (out, in), b (out): got x %s, w %s, b %s",
                             flash_tensor_shape_str(x, sx, sizeof sx), flash_tensor_shape_str(w, sw, sizeof sw),
                             b ? flash_tensor_shape_str(b, sb, sizeof sb) : "none");
    const int n = x->shape[0], in = x->shape[1], out = w->shape[0];
    flash_tensor *y = flash_tensor_2d(c, n, out);
    if (!y) return NULL;
    /* the bias goes in first and sgemm accumulates onto it */
    if (b) c->be->copy2d(y->data, (size_t)out, b->data, 0, (size_t)n, (size_t)out, false);
    if (!gemm(c, "linear", false, true, n, out, in, x->data, in, w->data, in, b ? 1.0f : 0.0f, y->data, out))
        return NULL;
    flash_tensor *ins[3] = {x, w, b};
    flash_tape_record(c, "linear", linear_backward, y, 3, ins);
    return y;
}

/* ---- matmul ----------------------------------------------------------- */

static void matmul_backward(flash_ctx *c, flash_tape_entry *e) {
    flash_tensor *a = e->in[0], *b = e->in[1], *out = e->out;
    const int m = a->shape[0], k = a->shape[1], n = b->shape[1];
    float *ga = flash_grad_of(c, a), *gb = flash_grad_of(c, b);
    if (ga && !gemm(c, "matmul", false, true, m, k, n, out->grad, n, b->data, n, 1.0f, ga, k)) return;
    if (gb) gemm(c, "matmul", true, false, k, n, m, a->data, k, out->grad, n, 1.0f, gb, n);
}

flash_tensor *flash_matmul(flash_ctx *c, flash_tensor *a, flash_tensor *b) {
    if (!c || !a || !b) return NULL;
    if (c->failed) return NULL;
    char sa[64], sb[64];
    if (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[0])
        return flash_op_fail(c, "matmul", "expects a (M, K) and b (K, N): got a %s, b %s",
                             flash_tensor_shape_str(a, sa, sizeof sa), flash_tensor_shape_str(b, sb, sizeof sb));
    const int m = a->shape[0], k = a->shape[1], n = b->shape[1];
    flash_tensor *y = flash_tensor_2d(c, m, n);
    if (!y) return NULL;
    if (!gemm(c, "matmul", false, false, m, n, k, a->data, k, b->data, n, 0.0f, y->data, n)) return NULL;
    flash_tensor *ins[2] = {a, b};
    flash_tape_record(c, "matmul", matmul_backward, y, 2, ins);
    return y;
}
