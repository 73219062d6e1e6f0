/* blas_choice: measures the candidate CPU libraries on the shapes flash runs.
 *
 * (a) sgemm GFLOP/s (OpenBLAS and oneDNN) at 1024^3 and at the im2col and
 *     linear shapes of unet-s;
 * (b) conv2d forward, backward-data and backward-filter at batch 64 for every
 *     unet-s layer shape:
 *       A im2col + OpenBLAS sgemm, OpenMP over the batch, one BLAS thread
 *         each (samples grouped so that small images still give a wide GEMM);
 *       B oneDNN convolution primitives with the plain nchw/oihw layouts;
 *       C the same with the layouts oneDNN prefers (format "any"), timed
 *         including the reorders from and to nchw/oihw that flash's plain
 *         tensors need;
 *       D as C with the Winograd algorithm, for the 3x3 stride-1 layers.
 * Prints one table with milliseconds per layer and direction, GFLOP/s and the
 * ratio im2col / best oneDNN variant (> 1 means oneDNN is faster).
 *
 * usage: flash_blas_choice [--no-coretype] [threads=2] [reps=7]
 *
 * Result on the reference machine (2 cores, AVX-512; OpenBLAS 0.3.21 with
 * OPENBLAS_CORETYPE=SkylakeX, oneDNN 2.6.3; 2 threads, idle machine), one
 * unet-s step's convolutions (each shape times its count in the network):
 *             A im2col+OpenBLAS   B oneDNN nchw   C oneDNN blocked+reorders
 *   forward        153-186 ms         124-128 ms        64 ms
 *   backward-data  205-214 ms         160-162 ms        69 ms
 *   backward-wts   175-206 ms         165-169 ms        71-72 ms
 *   all            533-606 ms         451-456 ms       205 ms  (161 ms without reorders)
 * sgemm 1024^3: OpenBLAS 300 GFLOP/s (64 as detected, "Prescott"), oneDNN
 * 268; on the im2col shapes oneDNN's sgemm 231-323 against OpenBLAS's
 * 65-219. Hence FLASH_BLAS=dnnl: C for 3x3 and strided convolutions, B for
 * 1x1 stride 1 (0.3-1.4 ms against C's 0.4-3.4 ms per direction).
 * D, oneDNN's Winograd F(4x4, 3x3) for the 3x3 stride-1 layers, then cut
 * that choice from 411 to 306 ms (1 thread, CPU time: fwd 129 -> 100,
 * backward-data 141 -> 101, backward-weights 141 -> 105), 1.11-1.74x per
 * layer, relative error 2.1e-6 to 2.6e-6 against A; libflash lets oneDNN
 * choose it ("auto", which keeps direct convolution for small batches).
 */
#include <cblas.h>
#include <dnnl.h>
#include <math.h>
#include <stdbool.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

typedef struct layer {
    const char *name;
    int cin, cout, h, k, stride;
    int count; /* occurrences in one unet-s forward pass */
} layer;

/* The unet-s convolutions (issue 4), input size h x h, 3x3 pad 1 or 1x1 pad 0. */
static const layer LAYERS[] = {
    {"conv_in 1->32 @28", 1, 32, 28, 3, 1, 1},
    {"32->32 @28", 32, 32, 28, 3, 1, 3},
    {"down 32->32 s2 28->14", 32, 32, 28, 3, 2, 1},
    {"32->64 @14", 32, 64, 14, 3, 1, 1},
    {"skip 1x1 32->64 @14", 32, 64, 14, 1, 1, 1},
    {"64->64 @14", 64, 64, 14, 3, 1, 3},
    {"down 64->64 s2 14->7", 64, 64, 14, 3, 2, 1},
    {"64->64 @7", 64, 64, 7, 3, 1, 4},
    {"128->64 @14", 128, 64, 14, 3, 1, 1},
    {"skip 1x1 128->64 @14", 128, 64, 14, 1, 1, 1},
    {"up 64->64 @28", 64, 64, 28, 3, 1, 1},
    {"96->32 @28", 96, 32, 28, 3, 1, 1},
    {"skip 1x1 96->32 @28", 96, 32, 28, 1, 1, 1},
    {"out 32->1 @28", 32, 1, 28, 3, 1, 1},
    {"1x1 64->32 @28", 64, 32, 28, 1, 1, 0},
};
#define NLAYERS ((int)(sizeof LAYERS / sizeof LAYERS[0]))

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *falloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float))) {
        fprintf(stderr, "out of memory (%zu floats)\n", n);
        exit(1);
    }
    return p;
}

static void frand(float *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- (a) sgemm -------------------------------------------------------- */

static double bench_sgemm(int m, int n, int k, int reps) {
    float *a = falloc((size_t)m * k), *b = falloc((size_t)k * n), *c = falloc((size_t)m * n);
    frand(a, (size_t)m * k, 1);
    frand(b, (size_t)k * n, 2);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    double t[32];
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        t[r] = now() - t0;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k / median(t, reps) * 1e-9;
}

static double bench_dnnl_sgemm(int m, int n, int k, int reps) {
    float *a = falloc((size_t)m * k), *b = falloc((size_t)k * n), *c = falloc((size_t)m * n);
    frand(a, (size_t)m * k, 1);
    frand(b, (size_t)k * n, 2);
    dnnl_sgemm('N', 'N', m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    double t[32];
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        dnnl_sgemm('N', 'N', m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        t[r] = now() - t0;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k / median(t, reps) * 1e-9;
}

/* ---- (b1) im2col + sgemm ---------------------------------------------- */

typedef struct geom {
    int cin, cout, h, w, k, s, p, ho, wo, kk, hw;
} geom;

static geom make_geom(const layer *l) {
    geom g;
    g.cin = l->cin;
    g.cout = l->cout;
    g.h = g.w = l->h;
    g.k = l->k;
    g.s = l->stride;
    g.p = l->k / 2;
    g.ho = (g.h + 2 * g.p - g.k) / g.s + 1;
    g.wo = (g.w + 2 * g.p - g.k) / g.s + 1;
    g.kk = g.cin * g.k * g.k;
    g.hw = g.ho * g.wo;
    return g;
}

/* col[(c*k+i)*k+j][oy*wo+ox] (row stride ldc) from one sample x (cin, h, w). */
static void im2col(const geom *g, const float *x, float *col, int ldc) {
    for (int c = 0; c < g->cin; c++)
        for (int i = 0; i < g->k; i++)
            for (int j = 0; j < g->k; j++) {
                float *row = col + (size_t)((c * g->k + i) * g->k + j) * ldc;
                const float *xc = x + (size_t)c * g->h * g->w;
                for (int oy = 0; oy < g->ho; oy++) {
                    int iy = oy * g->s - g->p + i;
                    float *r = row + oy * g->wo;
                    if (iy < 0 || iy >= g->h) {
                        memset(r, 0, sizeof(float) * (size_t)g->wo);
                        continue;
                    }
                    const float *xr = xc + (size_t)iy * g->w;
                    for (int ox = 0; ox < g->wo; ox++) {
                        int ix = ox * g->s - g->p + j;
                        r[ox] = (ix >= 0 && ix < g->w) ? xr[ix] : 0.0f;
                    }
                }
            }
}

/* dx (cin, h, w) += scatter of col (the adjoint of im2col). */
static void col2im(const geom *g, const float *col, int ldc, float *dx) {
    for (int c = 0; c < g->cin; c++)
        for (int i = 0; i < g->k; i++)
            for (int j = 0; j < g->k; j++) {
                const float *row = col + (size_t)((c * g->k + i) * g->k + j) * ldc;
                float *xc = dx + (size_t)c * g->h * g->w;
                for (int oy = 0; oy < g->ho; oy++) {
                    int iy = oy * g->s - g->p + i;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    const float *r = row + oy * g->wo;
                    float *xr = xc + (size_t)iy * g->w;
                    for (int ox = 0; ox < g->wo; ox++) {
                        int ix = ox * g->s - g->p + j;
                        if (ix >= 0 && ix < g->w)
                            xr[ix] += r[ox];
                    }
                }
            }
}

/* Samples per GEMM: enough that the GEMM's N dimension is >= 512. */
static int group_size(const geom *g) {
    int gs = (512 + g->hw - 1) / g->hw;
    return gs < 1 ? 1 : gs;
}

static int is_pointwise(const geom *g) { return g->k == 1 && g->s == 1 && g->p == 0; }

/* The GEMM operand of samples n0 .. n0+nb-1: their im2col matrices side by
 * side in col (rows of nb hw), or x itself for one pointwise sample, whose
 * input already is that matrix. */
static const float *columns(const geom *g, const float *x, int n0, int nb, float *col) {
    const int ld = nb * g->hw;
    if (is_pointwise(g) && nb == 1) return x + (size_t)n0 * g->cin * g->h * g->w;
    for (int s = 0; s < nb; s++) {
        const float *xs = x + (size_t)(n0 + s) * g->cin * g->h * g->w;
        if (is_pointwise(g))
            for (int c = 0; c < g->cin; c++)
                memcpy(col + (size_t)c * ld + (size_t)s * g->hw, xs + (size_t)c * g->hw,
                       sizeof(float) * (size_t)g->hw);
        else
            im2col(g, xs, col + (size_t)s * g->hw, ld);
    }
    return col;
}

typedef struct im2col_ws {
    float *col[64], *tmp[64], *dw[64];
} im2col_ws;

static void conv_fwd_im2col(const geom *g, const float *x, const float *w, float *y, im2col_ws *ws) {
    int gs = group_size(g);
    int ngroups = (BATCH + gs - 1) / gs;
#pragma omp parallel for schedule(static)
    for (int gi = 0; gi < ngroups; gi++) {
        int t = omp_get_thread_num();
        int n0 = gi * gs, nb = BATCH - n0 < gs ? BATCH - n0 : gs;
        int ld = nb * g->hw;
        float *col = ws->col[t], *tmp = ws->tmp[t];
        const float *b = columns(g, x, n0, nb, col);
        float *out = nb == 1 ? y + (size_t)n0 * g->cout * g->hw : tmp;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, ld, g->kk, 1.0f, w, g->kk, b, ld, 0.0f,
                    out, ld);
        if (nb > 1)
            for (int s = 0; s < nb; s++)
                for (int co = 0; co < g->cout; co++)
                    memcpy(y + ((size_t)(n0 + s) * g->cout + co) * g->hw, tmp + (size_t)co * ld + (size_t)s * g->hw,
                           sizeof(float) * (size_t)g->hw);
    }
}

static void conv_bwd_data_im2col(const geom *g, const float *dy, const float *w, float *dx, im2col_ws *ws) {
    int gs = group_size(g);
    int ngroups = (BATCH + gs - 1) / gs;
#pragma omp parallel for schedule(static)
    for (int gi = 0; gi < ngroups; gi++) {
        int t = omp_get_thread_num();
        int n0 = gi * gs, nb = BATCH - n0 < gs ? BATCH - n0 : gs;
        int ld = nb * g->hw;
        float *col = ws->col[t], *tmp = ws->tmp[t];
        const float *a;
        if (nb == 1) {
            a = dy + (size_t)n0 * g->cout * g->hw;
        } else {
            for (int s = 0; s < nb; s++)
                for (int co = 0; co < g->cout; co++)
                    memcpy(tmp + (size_t)co * ld + (size_t)s * g->hw, dy + ((size_t)(n0 + s) * g->cout + co) * g->hw,
                           sizeof(float) * (size_t)g->hw);
            a = tmp;
        }
        float *dxs0 = dx + (size_t)n0 * g->cin * g->h * g->w;
        if (is_pointwise(g) && nb == 1) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->kk, ld, g->cout, 1.0f, w, g->kk, a, ld, 0.0f,
                        dxs0, ld);
            continue;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->kk, ld, g->cout, 1.0f, w, g->kk, a, ld, 0.0f, col,
                    ld);
        for (int s = 0; s < nb; s++) {
            float *dxs = dx + (size_t)(n0 + s) * g->cin * g->h * g->w;
            if (is_pointwise(g)) {
                for (int c = 0; c < g->cin; c++)
                    memcpy(dxs + (size_t)c * g->hw, col + (size_t)c * ld + (size_t)s * g->hw,
                           sizeof(float) * (size_t)g->hw);
            } else {
                memset(dxs, 0, sizeof(float) * (size_t)g->cin * g->h * g->w);
                col2im(g, col + (size_t)s * g->hw, ld, dxs);
            }
        }
    }
}

static void conv_bwd_filter_im2col(const geom *g, const float *x, const float *dy, float *dw, float *db,
                                   im2col_ws *ws) {
    int gs = group_size(g);
    int ngroups = (BATCH + gs - 1) / gs;
    int nt = omp_get_max_threads();
    size_t wsz = (size_t)g->cout * g->kk;
#pragma omp parallel
    {
        int t = omp_get_thread_num();
        float *dwt = ws->dw[t];
        memset(dwt, 0, sizeof(float) * (wsz + (size_t)g->cout));
#pragma omp for schedule(static)
        for (int gi = 0; gi < ngroups; gi++) {
            int n0 = gi * gs, nb = BATCH - n0 < gs ? BATCH - n0 : gs;
            int ld = nb * g->hw;
            float *col = ws->col[t], *tmp = ws->tmp[t];
            const float *a, *b;
            if (nb == 1) {
                a = dy + (size_t)n0 * g->cout * g->hw;
            } else {
                for (int s = 0; s < nb; s++)
                    for (int co = 0; co < g->cout; co++)
                        memcpy(tmp + (size_t)co * ld + (size_t)s * g->hw,
                               dy + ((size_t)(n0 + s) * g->cout + co) * g->hw, sizeof(float) * (size_t)g->hw);
                a = tmp;
            }
            b = columns(g, x, n0, nb, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->cout, g->kk, ld, 1.0f, a, ld, b, ld, 1.0f, dwt,
                        g->kk);
            for (int co = 0; co < g->cout; co++) {
                float acc = 0.0f;
                const float *r = a + (size_t)co * ld;
                for (int i = 0; i < ld; i++)
                    acc += r[i];
                dwt[wsz + (size_t)co] += acc;
            }
        }
    }
    /* fixed-order reduction over threads: deterministic for a thread count */
    for (size_t i = 0; i < wsz; i++) {
        float acc = 0.0f;
        for (int t = 0; t < nt; t++)
            acc += ws->dw[t][i];
        dw[i] = acc;
    }
    for (int co = 0; co < g->cout; co++) {
        float acc = 0.0f;
        for (int t = 0; t < nt; t++)
            acc += ws->dw[t][wsz + (size_t)co];
        db[co] = acc;
    }
}

/* ---- (b2) oneDNN ------------------------------------------------------ */

#define DNNL_CHECK(call)                                                                                     \
    do {                                                                                                       \
        dnnl_status_t st_ = (call);                                                                            \
        if (st_ != dnnl_success) {                                                                             \
            fprintf(stderr, "%s:%d: %s failed (status %d)\n", __FILE__, __LINE__, #call, (int)st_);           \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)

static dnnl_engine_t ENG;
static dnnl_stream_t STR;

/* A user buffer in a plain layout and, if the primitive wants another one,
 * a reorder into (to_prim) or out of (!to_prim) the primitive's layout. */
typedef struct dnn_arg {
    dnnl_memory_t user, prim;
    dnnl_primitive_t reorder;
    void *prim_buf;
} dnn_arg;

static void dnn_arg_init(dnn_arg *a, const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *prim_md,
                         float *user_buf, int to_prim) {
    memset(a, 0, sizeof *a);
    DNNL_CHECK(dnnl_memory_create(&a->user, user_md, ENG, user_buf));
    if (dnnl_memory_desc_equal(user_md, prim_md)) {
        a->prim = a->user;
        return;
    }
    a->prim_buf = falloc(dnnl_memory_desc_get_size(prim_md) / sizeof(float) + 16);
    DNNL_CHECK(dnnl_memory_create(&a->prim, prim_md, ENG, a->prim_buf));
    dnnl_primitive_desc_t rpd;
    if (to_prim)
        DNNL_CHECK(dnnl_reorder_primitive_desc_create(&rpd, user_md, ENG, prim_md, ENG, NULL));
    else
        DNNL_CHECK(dnnl_reorder_primitive_desc_create(&rpd, prim_md, ENG, user_md, ENG, NULL));
    DNNL_CHECK(dnnl_primitive_create(&a->reorder, rpd));
    dnnl_primitive_desc_destroy(rpd);
}

static void dnn_arg_reorder(dnn_arg *a, int to_prim) {
    if (!a->reorder)
        return;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, to_prim ? a->user : a->prim},
                               {DNNL_ARG_TO, to_prim ? a->prim : a->user}};
    DNNL_CHECK(dnnl_primitive_execute(a->reorder, STR, 2, args));
}

static void dnn_arg_free(dnn_arg *a) {
    if (a->reorder)
        dnnl_primitive_destroy(a->reorder);
    if (a->prim != a->user)
        dnnl_memory_destroy(a->prim);
    dnnl_memory_destroy(a->user);
    free(a->prim_buf);
}

typedef struct dnn_times {
    double fwd, bwd_data, bwd_filter;
    double compute; /* the three primitives alone, without reorders */
    char impl[3][48];
    int reorders; /* number of reorder primitives in use */
} dnn_times;

/* any: 0 the plain layouts, 1 the preferred ones (direct), 2 the preferred
 * ones with the Winograd F(4x4, 3x3) algorithm */
static void time_dnnl(const geom *g, int any, float *x, float *w, float *b, float *y, float *dy, float *dx,
                      float *dw, float *db, int reps, dnn_times *out) {
    const dnnl_alg_kind_t alg = any == 2 ? dnnl_convolution_winograd : dnnl_convolution_direct;
    dnnl_dims_t xd = {BATCH, g->cin, g->h, g->w}, wd = {g->cout, g->cin, g->k, g->k}, bd = {g->cout},
                yd = {BATCH, g->cout, g->ho, g->wo};
    dnnl_dims_t strides = {g->s, g->s}, pad = {g->p, g->p};
    dnnl_memory_desc_t x_user, w_user, b_md, y_user, x_any, w_any, y_any;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&x_user, 4, xd, dnnl_f32, dnnl_nchw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&w_user, 4, wd, dnnl_f32, dnnl_oihw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&y_user, 4, yd, dnnl_f32, dnnl_nchw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&x_any, 4, xd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nchw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_oihw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&y_any, 4, yd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nchw));

    dnnl_convolution_desc_t fd, bdd, bwd;
    DNNL_CHECK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &x_any, &w_any,
                                                  &b_md, &y_any, strides, pad, pad));
    DNNL_CHECK(
        dnnl_convolution_backward_data_desc_init(&bdd, alg, &x_any, &w_any, &y_any, strides, pad, pad));
    DNNL_CHECK(dnnl_convolution_backward_weights_desc_init(&bwd, alg, &x_any, &w_any, &b_md,
                                                           &y_any, strides, pad, pad));
    dnnl_primitive_desc_t fpd, bdpd, bwpd;
    DNNL_CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, ENG, NULL));
    DNNL_CHECK(dnnl_primitive_desc_create(&bdpd, &bdd, NULL, ENG, fpd));
    DNNL_CHECK(dnnl_primitive_desc_create(&bwpd, &bwd, NULL, ENG, fpd));
    const char *impl;
    DNNL_CHECK(dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &impl));
    snprintf(out->impl[0], sizeof out->impl[0], "%s", impl);
    DNNL_CHECK(dnnl_primitive_desc_query(bdpd, dnnl_query_impl_info_str, 0, &impl));
    snprintf(out->impl[1], sizeof out->impl[1], "%s", impl);
    DNNL_CHECK(dnnl_primitive_desc_query(bwpd, dnnl_query_impl_info_str, 0, &impl));
    snprintf(out->impl[2], sizeof out->impl[2], "%s", impl);

    dnnl_primitive_t fp, bdp, bwp;
    DNNL_CHECK(dnnl_primitive_create(&fp, fpd));
    DNNL_CHECK(dnnl_primitive_create(&bdp, bdpd));
    DNNL_CHECK(dnnl_primitive_create(&bwp, bwpd));

    /* forward: x, w in; y out */
    dnn_arg fx, fw, fy, bdy, bw, bdx, wx, wdy, wdw;
    dnn_arg_init(&fx, &x_user, dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0), x, 1);
    dnn_arg_init(&fw, &w_user, dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0), w, 1);
    dnn_arg_init(&fy, &y_user, dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0), y, 0);
    dnn_arg_init(&bdy, &y_user, dnnl_primitive_desc_query_md(bdpd, dnnl_query_diff_dst_md, 0), dy, 1);
    dnn_arg_init(&bw, &w_user, dnnl_primitive_desc_query_md(bdpd, dnnl_query_weights_md, 0), w, 1);
    dnn_arg_init(&bdx, &x_user, dnnl_primitive_desc_query_md(bdpd, dnnl_query_diff_src_md, 0), dx, 0);
    dnn_arg_init(&wx, &x_user, dnnl_primitive_desc_query_md(bwpd, dnnl_query_src_md, 0), x, 1);
    dnn_arg_init(&wdy, &y_user, dnnl_primitive_desc_query_md(bwpd, dnnl_query_diff_dst_md, 0), dy, 1);
    dnn_arg_init(&wdw, &w_user, dnnl_primitive_desc_query_md(bwpd, dnnl_query_diff_weights_md, 0), dw, 0);
    dnn_arg *all[] = {&fx, &fw, &fy, &bdy, &bw, &bdx, &wx, &wdy, &wdw};
    out->reorders = 0;
    for (int i = 0; i < 9; i++)
        out->reorders += all[i]->reorder != NULL;
    dnnl_memory_t bmem, dbmem;
    DNNL_CHECK(dnnl_memory_create(&bmem, &b_md, ENG, b));
    DNNL_CHECK(dnnl_memory_create(&dbmem, &b_md, ENG, db));

    double tf[32], td[32], tw[32], tcomp[32];
    for (int r = -1; r < reps; r++) {
        double c0 = now();
        dnnl_exec_arg_t fa0[4] = {{DNNL_ARG_SRC, fx.prim}, {DNNL_ARG_WEIGHTS, fw.prim}, {DNNL_ARG_BIAS, bmem},
                                  {DNNL_ARG_DST, fy.prim}};
        dnnl_exec_arg_t da0[3] = {{DNNL_ARG_DIFF_DST, bdy.prim}, {DNNL_ARG_WEIGHTS, bw.prim},
                                  {DNNL_ARG_DIFF_SRC, bdx.prim}};
        dnnl_exec_arg_t wa0[4] = {{DNNL_ARG_SRC, wx.prim}, {DNNL_ARG_DIFF_DST, wdy.prim},
                                  {DNNL_ARG_DIFF_WEIGHTS, wdw.prim}, {DNNL_ARG_DIFF_BIAS, dbmem}};
        DNNL_CHECK(dnnl_primitive_execute(fp, STR, 4, fa0));
        DNNL_CHECK(dnnl_primitive_execute(bdp, STR, 3, da0));
        DNNL_CHECK(dnnl_primitive_execute(bwp, STR, 4, wa0));
        DNNL_CHECK(dnnl_stream_wait(STR));
        double c1 = now();
        double t0 = now();
        dnn_arg_reorder(&fx, 1);
        dnn_arg_reorder(&fw, 1);
        dnnl_exec_arg_t fa[4] = {{DNNL_ARG_SRC, fx.prim}, {DNNL_ARG_WEIGHTS, fw.prim}, {DNNL_ARG_BIAS, bmem},
                                 {DNNL_ARG_DST, fy.prim}};
        DNNL_CHECK(dnnl_primitive_execute(fp, STR, 4, fa));
        dnn_arg_reorder(&fy, 0);
        DNNL_CHECK(dnnl_stream_wait(STR));
        double t1 = now();
        dnn_arg_reorder(&bdy, 1);
        dnn_arg_reorder(&bw, 1);
        dnnl_exec_arg_t da[3] = {{DNNL_ARG_DIFF_DST, bdy.prim}, {DNNL_ARG_WEIGHTS, bw.prim},
                                 {DNNL_ARG_DIFF_SRC, bdx.prim}};
        DNNL_CHECK(dnnl_primitive_execute(bdp, STR, 3, da));
        dnn_arg_reorder(&bdx, 0);
        DNNL_CHECK(dnnl_stream_wait(STR));
        double t2 = now();
        dnn_arg_reorder(&wx, 1);
        dnn_arg_reorder(&wdy, 1);
        dnnl_exec_arg_t wa[4] = {{DNNL_ARG_SRC, wx.prim}, {DNNL_ARG_DIFF_DST, wdy.prim},
                                 {DNNL_ARG_DIFF_WEIGHTS, wdw.prim}, {DNNL_ARG_DIFF_BIAS, dbmem}};
        DNNL_CHECK(dnnl_primitive_execute(bwp, STR, 4, wa));
        dnn_arg_reorder(&wdw, 0);
        DNNL_CHECK(dnnl_stream_wait(STR));
        double t3 = now();
        if (r >= 0) {
            tf[r] = t1 - t0;
            td[r] = t2 - t1;
            tw[r] = t3 - t2;
            tcomp[r] = c1 - c0;
        }
    }
    out->fwd = median(tf, reps);
    out->bwd_data = median(td, reps);
    out->bwd_filter = median(tw, reps);
    out->compute = median(tcomp, reps);
    for (int i = 0; i < 9; i++)
        dnn_arg_free(all[i]);
    dnnl_memory_destroy(bmem);
    dnnl_memory_destroy(dbmem);
    dnnl_primitive_destroy(fp);
    dnnl_primitive_destroy(bdp);
    dnnl_primitive_destroy(bwp);
    dnnl_primitive_desc_destroy(fpd);
    dnnl_primitive_desc_destroy(bdpd);
    dnnl_primitive_desc_destroy(bwpd);
}

/* Relative max error between two arrays (sanity check that both paths agree). */
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* OpenBLAS 0.3.21 (DYNAMIC_ARCH) reads OPENBLAS_CORETYPE when it is loaded
 * and otherwise identifies some AVX-512 CPUs (virtualised ones reporting a
 * generic model) as "Prescott", i.e. SSE3 kernels at a third of the speed.
 * For a fair comparison the tool re-executes itself with the core type set
 * when that happens; --no-coretype measures the library as it comes. */
static void fix_openblas_coretype(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || strcmp(openblas_get_corename(), "Prescott") != 0) return;
    __builtin_cpu_init();
    const char *core = __builtin_cpu_supports("avx512f") ? "SkylakeX" : __builtin_cpu_supports("avx2") ? "Haswell" : NULL;
    if (!core) return;
    fprintf(stderr, "OpenBLAS detected core Prescott on a CPU with %s: re-running with OPENBLAS_CORETYPE=%s\n",
            strcmp(core, "SkylakeX") ? "AVX2" : "AVX-512", core);
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv);
    perror("execv /proc/self/exe");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--no-coretype") == 0) {
        argv++;
        argc--;
    } else {
        fix_openblas_coretype(argv);
    }
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    if (threads < 1 || threads > 64 || reps < 1 || reps > 32) {
        fprintf(stderr, "usage: %s [--no-coretype] [threads 1..64] [reps 1..32]\n", argv[0]);
        return 2;
    }
    omp_set_num_threads(threads);
    printf("threads %d, batch %d, median of %d runs\n", threads, BATCH, reps);
    printf("OpenBLAS: %s (core %s)\n", openblas_get_config(), openblas_get_corename());
    const dnnl_version_t *v = dnnl_version();
    printf("oneDNN: %d.%d.%d (cpu runtime %s)\n\n", v->major, v->minor, v->patch,
           v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other");
    DNNL_CHECK(dnnl_engine_create(&ENG, dnnl_cpu, 0));
    DNNL_CHECK(dnnl_stream_create(&STR, ENG, dnnl_stream_default_flags));

    /* (a) sgemm: OpenBLAS with its own threads and single-threaded (the
     * im2col path runs one per OpenMP thread), and oneDNN's sgemm */
    printf("== sgemm, GFLOP/s ==\n");
    printf("%-34s %9s %9s %9s\n", "M x N x K", "OpenBLAS", "OB 1thr", "dnnl");
    int shapes[NLAYERS + 3][3] = {{1024, 1024, 1024}, {64, 128, 128}, {64, 128, 64}};
    const char *names[NLAYERS + 3] = {"", "(linear 128->128, batch 64)", "(linear 64->128, batch 64)"};
    int nshapes = 3;
    for (int i = 0; i < NLAYERS; i++) {
        geom g = make_geom(&LAYERS[i]);
        shapes[nshapes][0] = g.cout;
        shapes[nshapes][1] = g.hw * group_size(&g);
        shapes[nshapes][2] = g.kk;
        names[nshapes++] = LAYERS[i].name;
    }
    for (int i = 0; i < nshapes; i++) {
        int m = shapes[i][0], n = shapes[i][1], k = shapes[i][2];
        char lbl[96];
        snprintf(lbl, sizeof lbl, "%d x %d x %d %s", m, n, k, names[i]);
        openblas_set_num_threads(threads);
        double ob = bench_sgemm(m, n, k, reps);
        openblas_set_num_threads(1);
        double ob1 = bench_sgemm(m, n, k, reps);
        double dn = bench_dnnl_sgemm(m, n, k, reps);
        printf("%-34s %9.1f %9.1f %9.1f\n", lbl, ob, ob1, dn);
    }

    /* (b) convolutions */
    printf("\n== conv2d, batch %d, ms (GFLOP/s) ==\n", BATCH);
    printf("A = im2col + OpenBLAS (OpenMP over batch), B = oneDNN nchw/oihw, C = oneDNN preferred layouts + reorders\n");
    printf("%-22s %-4s %16s %16s %16s %7s  %s\n", "layer", "dir", "A im2col", "B dnnl-plain", "C dnnl-any", "A/best",
           "oneDNN impl (C)");
    double tot[3][3] = {{0}}, tot_comp = 0, tot_flash[3] = {0}, tot_wino[3] = {0};
    for (int i = 0; i < NLAYERS; i++) {
        geom g = make_geom(&LAYERS[i]);
        size_t nx = (size_t)BATCH * g.cin * g.h * g.w, ny = (size_t)BATCH * g.cout * g.hw, nw = (size_t)g.cout * g.kk;
        float *x = falloc(nx), *w = falloc(nw), *b = falloc((size_t)g.cout), *y = falloc(ny), *dy = falloc(ny),
              *dx = falloc(nx), *dw = falloc(nw), *db = falloc((size_t)g.cout);
        float *y2 = falloc(ny), *dx2 = falloc(nx), *dw2 = falloc(nw), *db2 = falloc((size_t)g.cout);
        frand(x, nx, 3);
        frand(w, nw, 4);
        memset(b, 0, sizeof(float) * (size_t)g.cout);
        frand(dy, ny, 5);
        im2col_ws ws;
        int gs = group_size(&g);
        for (int t = 0; t < threads; t++) {
            ws.col[t] = falloc((size_t)g.kk * g.hw * gs);
            ws.tmp[t] = falloc((size_t)(g.cout > g.kk ? g.cout : g.kk) * g.hw * gs);
            ws.dw[t] = falloc(nw + (size_t)g.cout);
        }
        openblas_set_num_threads(1);
        double ta[3][32];
        for (int r = -1; r < reps; r++) {
            double t0 = now();
            conv_fwd_im2col(&g, x, w, y, &ws);
            double t1 = now();
            conv_bwd_data_im2col(&g, dy, w, dx, &ws);
            double t2 = now();
            conv_bwd_filter_im2col(&g, x, dy, dw, db, &ws);
            double t3 = now();
            if (r >= 0) {
                ta[0][r] = t1 - t0;
                ta[1][r] = t2 - t1;
                ta[2][r] = t3 - t2;
            }
        }
        double a[3] = {median(ta[0], reps), median(ta[1], reps), median(ta[2], reps)};
        dnn_times tb, tc;
        time_dnnl(&g, 0, x, w, b, y2, dy, dx2, dw2, db2, reps, &tb);
        double eb = rel_err(y2, y, ny) + rel_err(dx2, dx, nx) + rel_err(dw2, dw, nw);
        time_dnnl(&g, 1, x, w, b, y2, dy, dx2, dw2, db2, reps, &tc);
        double ec = rel_err(y2, y, ny) + rel_err(dx2, dx, nx) + rel_err(dw2, dw, nw);
        double bt[3] = {tb.fwd, tb.bwd_data, tb.bwd_filter}, ct[3] = {tc.fwd, tc.bwd_data, tc.bwd_filter};
        /* D: Winograd, where oneDNN has it (3x3 stride 1, channels multiples of 16) */
        const bool wino = g.k == 3 && g.s == 1 && g.cin % 16 == 0 && g.cout % 16 == 0;
        double dt[3] = {ct[0], ct[1], ct[2]}, ed = 0;
        if (wino) {
            dnn_times td;
            time_dnnl(&g, 2, x, w, b, y2, dy, dx2, dw2, db2, reps, &td);
            ed = rel_err(y2, y, ny) + rel_err(dx2, dx, nx) + rel_err(dw2, dw, nw);
            dt[0] = td.fwd, dt[1] = td.bwd_data, dt[2] = td.bwd_filter;
        }
        double flops = 2.0 * BATCH * g.cout * (double)g.kk * g.hw;
        static const char *dn[3] = {"fwd", "bwdD", "bwdW"};
        for (int d = 0; d < 3; d++) {
            double best = bt[d] < ct[d] ? bt[d] : ct[d];
            printf("%-22s %-4s %7.2f (%6.1f) %7.2f (%6.1f) %7.2f (%6.1f) %7.2f  %s\n", d == 0 ? LAYERS[i].name : "",
                   dn[d], a[d] * 1e3, flops / a[d] * 1e-9, bt[d] * 1e3, flops / bt[d] * 1e-9, ct[d] * 1e3,
                   flops / ct[d] * 1e-9, a[d] / best, tc.impl[d]);
            tot[0][d] += LAYERS[i].count * a[d];
            tot[1][d] += LAYERS[i].count * bt[d];
            tot[2][d] += LAYERS[i].count * ct[d];
            /* what libflash does: plain layouts for 1x1 stride 1, preferred ones otherwise */
            tot_flash[d] += LAYERS[i].count * (g.k == 1 && g.s == 1 ? bt[d] : ct[d]);
            tot_wino[d] += LAYERS[i].count * (g.k == 1 && g.s == 1 ? bt[d] : dt[d]);
        }
        if (eb > 1e-4 || ec > 1e-4)
            printf("  WARNING: paths disagree (rel err plain %.2e, any %.2e)\n", eb, ec);
        if (wino)
            printf("  D Winograd 4x3 + reorders: fwd %.2f, bwdD %.2f, bwdW %.2f ms (C/D %.2f); rel err vs A %.1e\n",
                   dt[0] * 1e3, dt[1] * 1e3, dt[2] * 1e3, (ct[0] + ct[1] + ct[2]) / (dt[0] + dt[1] + dt[2]), ed);
        printf("  C: %d reorders; its three primitives alone %.2f ms of %.2f\n", tc.reorders, tc.compute * 1e3,
               (ct[0] + ct[1] + ct[2]) * 1e3);
        tot_comp += LAYERS[i].count * tc.compute;
        for (int t = 0; t < threads; t++) {
            free(ws.col[t]);
            free(ws.tmp[t]);
            free(ws.dw[t]);
        }
        free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
        free(y2), free(dx2), free(dw2), free(db2);
    }
    printf("\n== one unet-s step: each shape times its count in the network, ms ==\n");
    printf("%-5s %10s %10s %10s %8s %8s\n", "dir", "A im2col", "B plain", "C any", "A/B", "A/C");
    static const char *dn[3] = {"fwd", "bwdD", "bwdW"};
    double s[3] = {0};
    for (int d = 0; d < 3; d++) {
        printf("%-5s %10.2f %10.2f %10.2f %8.2f %8.2f\n", dn[d], tot[0][d] * 1e3, tot[1][d] * 1e3, tot[2][d] * 1e3,
               tot[0][d] / tot[1][d], tot[0][d] / tot[2][d]);
        for (int k = 0; k < 3; k++)
            s[k] += tot[k][d];
    }
    printf("%-5s %10.2f %10.2f %10.2f %8.2f %8.2f\n", "all", s[0] * 1e3, s[1] * 1e3, s[2] * 1e3, s[0] / s[1],
           s[0] / s[2]);
    printf("C without reorders (layouts kept blocked between ops): %.2f ms\n", tot_comp * 1e3);
    printf("libflash's choice (B for 1x1 stride 1, C otherwise): fwd %.2f, bwdD %.2f, bwdW %.2f, all %.2f ms\n"
           "  (libflash also shares the x and dy reorders between passes, which C counts twice)\n",
           tot_flash[0] * 1e3, tot_flash[1] * 1e3, tot_flash[2] * 1e3, (tot_flash[0] + tot_flash[1] + tot_flash[2]) * 1e3);
    printf("the same with D (Winograd) where available: fwd %.2f, bwdD %.2f, bwdW %.2f, all %.2f ms\n", tot_wino[0] * 1e3,
           tot_wino[1] * 1e3, tot_wino[2] * 1e3, (tot_wino[0] + tot_wino[1] + tot_wino[2]) * 1e3);
    dnnl_stream_destroy(STR);
    dnnl_engine_destroy(ENG);
    return 0;
}
