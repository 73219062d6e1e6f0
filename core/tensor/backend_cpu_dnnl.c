/* CPU dense kernels on oneDNN: sgemm and 2-D convolution.
 *
 * Why oneDNN: tools/bench/blas_choice measured, on the unet-s shapes at
 * batch 64 with 2 threads, oneDNN's convolutions (in the blocked layouts
 * they prefer, reorders from and to NCHW included) 2.4-3x faster than
 * im2col + OpenBLAS sgemm in every direction, and dnnl_sgemm faster than
 * OpenBLAS on the im2col and linear shapes (OpenBLAS 0.3.21 also detects
 * this CPU as "Prescott" unless OPENBLAS_CORETYPE is set).
 *
 * Convolutions: a plan per geometry (shape, stride, pad, bias, thread
 * count) holds the forward, backward-data and backward-weights primitives,
 * the reorders between flash's NCHW/OIHW tensors and the primitives'
 * layouts, and the offsets of every intermediate buffer. Plans are made on
 * first use and kept for the life of the process.
 *
 *   saved (caller's memory, kept by the tape until the backward): x in the
 *       forward's layout, which the backward-weights pass reuses when the
 *       layouts agree (they do for the blocked 3x3 convolutions);
 *   transient (a per-thread buffer that grows to the largest plan and is
 *       then reused: no allocation in steady state): w and y in the
 *       forward's layouts, dy, w, dx, dw in the backward's, scratchpads.
 *
 * Algorithm: oneDNN's "auto", which takes Winograd F(4x4, 3x3) for the
 * 3x3 stride-1 convolutions of unet-s at batch 64 (measured 1.13-1.76x
 * faster per layer than direct, 26% less convolution time per training
 * step, relative error 2.5e-6 against im2col) and direct convolution for
 * small batches and other shapes.
 *
 * Gradients accumulate (+=): blocked results are reordered into the NCHW
 * gradient with a sum post-op; plain results go through a temporary.
 * 1x1 stride-1 convolutions use the plain layouts (measured faster: no
 * reorder to pay for a cheap primitive).
 *
 * Determinism: oneDNN's CPU primitives and sgemm are run-to-run
 * reproducible for a fixed thread count; the plan key includes the count.
 *
 * Built with FLASH_BLAS=dnnl (the default); backend_cpu_blas.c provides the
 * same kernels on OpenBLAS alone.
 */
#if defined(FLASH_BLAS_DNNL)

#include <dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/backend_cpu_nn.h"
#include "tensor/tensor_internal.h"

/* ---- engine ------------------------------------------------------------ */

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static dnnl_status_t g_engine_status = dnnl_success;
static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void) {
    g_engine_status = dnnl_engine_create(&g_engine, dnnl_cpu, 0);
    if (g_engine_status == dnnl_success) g_engine_status = dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags);
}

static bool engine_ok(void) {
    pthread_once(&g_engine_once, engine_init);
    return g_engine_status == dnnl_success;
}

static void set_msg(char *msg, size_t n, const char *what, dnnl_status_t st) {
    if (msg && n) snprintf(msg, n, "oneDNN: %s failed (status %d)", what, (int)st);
}

/* ---- sgemm --------------------------------------------------------------- */

int flash_cpu_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                    int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0) {
        /* C = beta C: oneDNN handles it, but keep the trivial case exact */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
        return 0;
    }
    dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return st == dnnl_success ? 0 : (int)st;
}

/* ---- convolution plans ---------------------------------------------------- */

/* One operand: flash's plain buffer and the primitive's view of it. When the
 * layouts differ, `reorder` converts (to the primitive for inputs, back to
 * the plain buffer for outputs) and `off` places the blocked copy in a
 * workspace. */
typedef struct conv_arg {
    dnnl_memory_t user, prim;   /* prim == user when the layouts agree */
    dnnl_primitive_t reorder;   /* NULL when the layouts agree */
    size_t off, bytes;          /* the blocked copy in its workspace */
} conv_arg;

typedef struct conv_plan {
    flash_conv_geom g;
    int nthr;
    bool plain;
    dnnl_primitive_t fwd, bwd_data, bwd_w;
    /* forward: x (offset in the saved block), w in; y out */
    conv_arg fx, fw, fy;
    /* backward data: dy, w in; dx out (accumulating reorder) */
    conv_arg dy, dw_w, dx;
    /* backward weights: x (reuses fx when xw_shared), dy (reuses dy when
     * dyw_shared); dw out (accumulating reorder); db always via temporary */
    conv_arg xw, dyw, gw;
    bool xw_shared, dyw_shared;
    dnnl_memory_t bias, dbias, f_scratch, b_scratch;
    size_t f_scratch_off, b_scratch_off;
    size_t db_off, dx_tmp_off, gw_tmp_off; /* plain temporaries in the backward's transient buffer */
    size_t saved_bytes;                    /* fx's blocked copy (0 when x is used in place) */
    size_t fwd_bytes, bwd_bytes;           /* transient bytes of each pass */
    pthread_mutex_t lock; /* the memory objects' handles are set per call */
    struct conv_plan *next;
} conv_plan;

static conv_plan *g_plans;
static pthread_mutex_t g_plans_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

static void conv_arg_free(conv_arg *a) {
    if (a->reorder) dnnl_primitive_destroy(a->reorder);
    if (a->prim && a->prim != a->user) dnnl_memory_destroy(a->prim);
    if (a->user) dnnl_memory_destroy(a->user);
    memset(a, 0, sizeof *a);
}

static void plan_free(conv_plan *p) {
    if (!p) return;
    conv_arg *args[] = {&p->fx, &p->fw, &p->fy, &p->dy, &p->dw_w, &p->dx, &p->xw, &p->dyw, &p->gw};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        /* shared args alias another arg's objects: do not free twice */
        if ((args[i] == &p->xw && p->xw_shared) || (args[i] == &p->dyw && p->dyw_shared)) continue;
        conv_arg_free(args[i]);
    }
    if (p->fwd) dnnl_primitive_destroy(p->fwd);
    if (p->bwd_data) dnnl_primitive_destroy(p->bwd_data);
    if (p->bwd_w) dnnl_primitive_destroy(p->bwd_w);
    if (p->bias) dnnl_memory_destroy(p->bias);
    if (p->dbias) dnnl_memory_destroy(p->dbias);
    if (p->f_scratch) dnnl_memory_destroy(p->f_scratch);
    if (p->b_scratch) dnnl_memory_destroy(p->b_scratch);
    free(p);
}

/* Sets up one operand. to_prim: reorder user -> prim (an input); else prim
 * -> user, accumulating into the user buffer when `accumulate`. */
static dnnl_status_t conv_arg_init(conv_arg *a, const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *prim_md,
                                   bool to_prim, bool accumulate, size_t *ws_bytes, size_t *scratch_bytes) {
    dnnl_status_t st = dnnl_memory_create(&a->user, user_md, g_engine, DNNL_MEMORY_NONE);
    if (st != dnnl_success) return st;
    if (dnnl_memory_desc_equal(user_md, prim_md)) {
        a->prim = a->user;
        return dnnl_success;
    }
    st = dnnl_memory_create(&a->prim, prim_md, g_engine, DNNL_MEMORY_NONE);
    if (st != dnnl_success) return st;
    a->bytes = align64(dnnl_memory_desc_get_size(prim_md));
    a->off = *ws_bytes;
    *ws_bytes += a->bytes;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && accumulate) {
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success) st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    dnnl_primitive_desc_t rpd = NULL;
    if (st == dnnl_success)
        st = to_prim ? dnnl_reorder_primitive_desc_create(&rpd, user_md, g_engine, prim_md, g_engine, attr)
                     : dnnl_reorder_primitive_desc_create(&rpd, prim_md, g_engine, user_md, g_engine, attr);
    if (st == dnnl_success) {
        const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(rpd, dnnl_query_scratchpad_md, 0);
        size_t s = smd ? dnnl_memory_desc_get_size(smd) : 0;
        if (s > *scratch_bytes) *scratch_bytes = s;
        st = dnnl_primitive_create(&a->reorder, rpd);
    }
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

static size_t pd_scratch(const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return smd ? dnnl_memory_desc_get_size(smd) : 0;
}

static const dnnl_memory_desc_t *pd_md(const_dnnl_primitive_desc_t pd, dnnl_query_t q) {
    return dnnl_primitive_desc_query_md(pd, q, 0);
}

static conv_plan *plan_make(const flash_conv_geom *g, int nthr, dnnl_status_t *status, const char **what) {
    conv_plan *p = calloc(1, sizeof *p);
    if (!p) {
        *status = dnnl_out_of_memory;
        *what = "plan allocation";
        return NULL;
    }
    p->g = *g;
    p->nthr = nthr;
    /* bf16: x, w and dy enter the primitives as bfloat16 (the reorders
     * from flash's float32 buffers round them); y, dx, dw and db leave as
     * float32, accumulated in float32 */
    const bool bf16 = g->precision == FLASH_PRECISION_BF16;
    const dnnl_data_type_t lo = bf16 ? dnnl_bf16 : dnnl_f32;
    /* the plain layouts have no fast bf16 kernels */
    p->plain = !bf16 && g->k == 1 && g->stride == 1 && g->pad == 0;
    dnnl_format_tag_t act = p->plain ? dnnl_nchw : dnnl_format_tag_any;
    /* "auto" lets oneDNN take Winograd F(4x4, 3x3) where it is profitable
     * (3x3 stride 1, channels multiples of 16, batches of about 16 and up) */
    const dnnl_alg_kind_t alg = p->plain ? dnnl_convolution_direct : dnnl_convolution_auto;
    dnnl_format_tag_t wt = p->plain ? dnnl_oihw : dnnl_format_tag_any;
    dnnl_dims_t xd = {g->n, g->cin, g->h, g->w}, wd = {g->cout, g->cin, g->k, g->k}, bd = {g->cout},
                yd = {g->n, g->cout, g->ho, g->wo};
    dnnl_dims_t strides = {g->stride, g->stride}, pad = {g->pad, g->pad};
    /* right padding so that (h + pl + pr - k) / s + 1 == ho exactly */
    dnnl_dims_t pad_r = {(g->ho - 1) * g->stride + g->k - g->h - g->pad, (g->wo - 1) * g->stride + g->k - g->w - g->pad};
    /* x_any, w_any, y_any: the operands entering a primitive (in `lo`);
     * x_out, w_out, y_out: those it writes (float32) */
    dnnl_memory_desc_t x_user, w_user, y_user, b_md, x_any, w_any, y_any, x_out, w_out, y_out;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_convolution_desc_t fd, dd, wdsc;
    size_t fscr = 0, bscr = 0;
    dnnl_status_t st = dnnl_success;
#define TRY(call, label)                                                                                             \
    do {                                                                                                           \
        if (st == dnnl_success) {                                                                                  \
            st = (call);                                                                                           \
            if (st != dnnl_success) *what = label;                                                                 \
        }                                                                                                          \
    } while (0)
    TRY(dnnl_memory_desc_init_by_tag(&x_user, 4, xd, dnnl_f32, dnnl_nchw), "memory descriptor");
    TRY(dnnl_memory_desc_init_by_tag(&w_user, 4, wd, dnnl_f32, dnnl_oihw), "memory descriptor");
    TRY(dnnl_memory_desc_init_by_tag(&y_user, 4, yd, dnnl_f32, dnnl_nchw), "memory descriptor");
    TRY(dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x), "memory descriptor");
    TRY(dnnl_memory_desc_init_by_tag(&x_any, 4, xd, lo, act), "memory descriptor");
    TRY(dnnl_memory_desc_init_by_tag(&w_any, 4, wd, lo, wt), "memory descriptor");
    TRY(dnnl_memory_desc_init_by_tag(&y_any, 4, yd, lo, act), "memory descriptor");
    TRY(dnnl_memory_desc_init_by_tag(&x_out, 4, xd, dnnl_f32, act), "memory descriptor");
    TRY(dnnl_memory_desc_init_by_tag(&w_out, 4, wd, dnnl_f32, wt), "memory descriptor");
    TRY(dnnl_memory_desc_init_by_tag(&y_out, 4, yd, dnnl_f32, act), "memory descriptor");
    const dnnl_memory_desc_t *bmd = g->bias ? &b_md : NULL;
    TRY(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &x_any, &w_any, bmd,
                                           &y_out, strides, pad, pad_r),
        "convolution forward descriptor");
    TRY(dnnl_convolution_backward_data_desc_init(&dd, alg, &x_out, &w_any, &y_any, strides, pad,
                                                 pad_r),
        "convolution backward-data descriptor");
    TRY(dnnl_convolution_backward_weights_desc_init(&wdsc, alg, &x_any, &w_out, bmd, &y_any,
                                                    strides, pad, pad_r),
        "convolution backward-weights descriptor");
    TRY(dnnl_primitive_attr_create(&attr), "attributes");
    TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "attributes");
    TRY(dnnl_primitive_desc_create(&fpd, &fd, attr, g_engine, NULL), "convolution forward");
    TRY(dnnl_primitive_desc_create(&dpd, &dd, attr, g_engine, fpd), "convolution backward-data");
    TRY(dnnl_primitive_desc_create(&wpd, &wdsc, attr, g_engine, fpd), "convolution backward-weights");
    TRY(dnnl_primitive_create(&p->fwd, fpd), "convolution forward");
    TRY(dnnl_primitive_create(&p->bwd_data, dpd), "convolution backward-data");
    TRY(dnnl_primitive_create(&p->bwd_w, wpd), "convolution backward-weights");
    if (st == dnnl_success) {
        fscr = pd_scratch(fpd);
        bscr = pd_scratch(dpd);
        size_t s = pd_scratch(wpd);
        if (s > bscr) bscr = s;
    }
    size_t fw = 0, bw = 0, sv = 0;
    TRY(conv_arg_init(&p->fx, &x_user, pd_md(fpd, dnnl_query_src_md), true, false, &sv, &fscr), "reorder");
    TRY(conv_arg_init(&p->fw, &w_user, pd_md(fpd, dnnl_query_weights_md), true, false, &fw, &fscr), "reorder");
    TRY(conv_arg_init(&p->fy, &y_user, pd_md(fpd, dnnl_query_dst_md), false, false, &fw, &fscr), "reorder");
    TRY(conv_arg_init(&p->dy, &y_user, pd_md(dpd, dnnl_query_diff_dst_md), true, false, &bw, &bscr), "reorder");
    TRY(conv_arg_init(&p->dw_w, &w_user, pd_md(dpd, dnnl_query_weights_md), true, false, &bw, &bscr), "reorder");
    TRY(conv_arg_init(&p->dx, &x_user, pd_md(dpd, dnnl_query_diff_src_md), false, true, &bw, &bscr), "reorder");
    if (st == dnnl_success) {
        p->xw_shared = dnnl_memory_desc_equal(pd_md(wpd, dnnl_query_src_md), pd_md(fpd, dnnl_query_src_md));
        p->dyw_shared = dnnl_memory_desc_equal(pd_md(wpd, dnnl_query_diff_dst_md), pd_md(dpd, dnnl_query_diff_dst_md));
    }
    if (st == dnnl_success && p->xw_shared) p->xw = p->fx;
    else TRY(conv_arg_init(&p->xw, &x_user, pd_md(wpd, dnnl_query_src_md), true, false, &bw, &bscr), "reorder");
    if (st == dnnl_success && p->dyw_shared) p->dyw = p->dy;
    else TRY(conv_arg_init(&p->dyw, &y_user, pd_md(wpd, dnnl_query_diff_dst_md), true, false, &bw, &bscr), "reorder");
    TRY(conv_arg_init(&p->gw, &w_user, pd_md(wpd, dnnl_query_diff_weights_md), false, true, &bw, &bscr), "reorder");
    if (g->bias) {
        TRY(dnnl_memory_create(&p->bias, &b_md, g_engine, DNNL_MEMORY_NONE), "memory");
        TRY(dnnl_memory_create(&p->dbias, &b_md, g_engine, DNNL_MEMORY_NONE), "memory");
        p->db_off = bw;
        bw += align64((size_t)g->cout * sizeof(float));
    }
    /* plain outputs cannot accumulate through a reorder: temporaries */
    if (st == dnnl_success && !p->dx.reorder) {
        p->dx_tmp_off = bw;
        bw += align64((size_t)g->n * g->cin * g->h * g->w * sizeof(float));
    }
    if (st == dnnl_success && !p->gw.reorder) {
        p->gw_tmp_off = bw;
        bw += align64((size_t)g->cout * g->cin * g->k * g->k * sizeof(float));
    }
    dnnl_memory_desc_t smd;
    dnnl_dims_t fsd = {(dnnl_dim_t)(fscr > 0 ? fscr : 1)}, bsd = {(dnnl_dim_t)(bscr > 0 ? bscr : 1)};
    TRY(dnnl_memory_desc_init_by_tag(&smd, 1, fsd, dnnl_u8, dnnl_x), "memory descriptor");
    TRY(dnnl_memory_create(&p->f_scratch, &smd, g_engine, DNNL_MEMORY_NONE), "memory");
    TRY(dnnl_memory_desc_init_by_tag(&smd, 1, bsd, dnnl_u8, dnnl_x), "memory descriptor");
    TRY(dnnl_memory_create(&p->b_scratch, &smd, g_engine, DNNL_MEMORY_NONE), "memory");
#undef TRY
    p->f_scratch_off = fw;
    fw += align64(fscr > 0 ? fscr : 1);
    p->b_scratch_off = bw;
    bw += align64(bscr > 0 ? bscr : 1);
    p->saved_bytes = sv;
    p->fwd_bytes = fw;
    p->bwd_bytes = bw;
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st == dnnl_success && pthread_mutex_init(&p->lock, NULL) != 0) {
        st = dnnl_out_of_memory;
        *what = "mutex";
    }
    *status = st;
    if (st != dnnl_success) {
        plan_free(p);
        return NULL;
    }
    return p;
}

static bool geom_equal(const flash_conv_geom *a, const flash_conv_geom *b) {
    return a->n == b->n && a->cin == b->cin && a->h == b->h && a->w == b->w && a->cout == b->cout && a->k == b->k &&
           a->stride == b->stride && a->pad == b->pad && a->ho == b->ho && a->wo == b->wo && a->bias == b->bias &&
           a->precision == b->precision;
}

/* bf16 needs AVX-512: oneDNN runs it with AVX512_BF16 instructions
 * (vdpbf16ps) where the CPU has them and emulates them on AVX-512 cores
 * that do not; below AVX-512 it has only reference kernels. */
int flash_cpu_conv2d_precision(int precision, char *msg, size_t msg_size) {
    if (precision == FLASH_PRECISION_FP32) return 0;
    if (precision != FLASH_PRECISION_BF16) {
        if (msg && msg_size) snprintf(msg, msg_size, "unknown precision %d", precision);
        return 1;
    }
    /* the ISA values are cumulative bit masks: every AVX-512 core's holds
     * avx512_core's bits */
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core) == (unsigned)dnnl_cpu_isa_avx512_core) return 0;
    if (msg && msg_size)
        snprintf(msg, msg_size, "this CPU has no AVX-512 (oneDNN ISA %#x): bfloat16 would run on reference kernels",
                 (unsigned)isa);
    return 1;
}

static conv_plan *plan_get(const flash_conv_geom *g, char *msg, size_t msg_size) {
    if (!engine_ok()) {
        set_msg(msg, msg_size, "CPU engine creation", g_engine_status);
        return NULL;
    }
    int nthr = omp_get_max_threads();
    pthread_mutex_lock(&g_plans_lock);
    conv_plan *p = g_plans;
    while (p && !(p->nthr == nthr && geom_equal(&p->g, g))) p = p->next;
    if (!p) {
        dnnl_status_t st = dnnl_success;
        const char *what = "plan";
        p = plan_make(g, nthr, &st, &what);
        if (p) {
            p->next = g_plans;
            g_plans = p;
        } else {
            set_msg(msg, msg_size, what, st);
        }
    }
    pthread_mutex_unlock(&g_plans_lock);
    return p;
}

/* ---- convolution kernels -------------------------------------------------- */

int flash_cpu_conv2d_saved_bytes(const flash_conv_geom *g, size_t *saved_bytes, char *msg, size_t msg_size) {
    conv_plan *p = plan_get(g, msg, msg_size);
    if (!p) return 1;
    *saved_bytes = p->saved_bytes;
    return 0;
}

/* The calling thread's transient buffer, grown to at least `bytes`. Kept
 * for the life of the thread: after the first iteration it has reached the
 * largest plan's size and no further allocation happens. */
static _Thread_local struct {
    void *p;
    size_t cap;
} t_scratch;

static void *transient(size_t bytes, char *msg, size_t msg_size) {
    if (bytes <= t_scratch.cap && t_scratch.p) return t_scratch.p;
    size_t cap = bytes + bytes / 4 + 4096;
    void *q = flash_cpu_backend.alloc(cap);
    if (!q) {
        if (msg && msg_size) snprintf(msg, msg_size, "out of memory for a %zu-byte convolution workspace", cap);
        return NULL;
    }
    flash_cpu_backend.free(t_scratch.p);
    t_scratch.p = q;
    t_scratch.cap = cap;
    return q;
}

static void *ws_at(void *ws, size_t off) { return (unsigned char *)ws + off; }

/* Binds the operand to a plain buffer and, when blocked, to its slot. */
static void arg_bind(conv_arg *a, const float *user, void *ws) {
    dnnl_memory_set_data_handle(a->user, (void *)user);
    if (a->prim != a->user) dnnl_memory_set_data_handle(a->prim, ws_at(ws, a->off));
}

static dnnl_status_t arg_reorder(conv_arg *a, bool to_prim, dnnl_memory_t scratch) {
    if (!a->reorder) return dnnl_success;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, to_prim ? a->user : a->prim},
                               {DNNL_ARG_TO, to_prim ? a->prim : a->user},
                               {DNNL_ARG_SCRATCHPAD, scratch}};
    return dnnl_primitive_execute(a->reorder, g_stream, 3, args);
}

int flash_cpu_conv2d_forward(const flash_conv_geom *g, float *y, const float *x, const float *w, const float *b,
                             void *saved, char *msg, size_t msg_size) {
    conv_plan *p = plan_get(g, msg, msg_size);
    if (!p) return 1;
    pthread_mutex_lock(&p->lock);
    /* without a backward to follow, x's blocked copy is transient too */
    unsigned char *ws = transient(p->fwd_bytes + (saved ? 0 : p->saved_bytes), msg, msg_size);
    if (!ws) {
        pthread_mutex_unlock(&p->lock);
        return 1;
    }
    arg_bind(&p->fx, x, saved ? saved : ws + p->fwd_bytes);
    arg_bind(&p->fw, w, ws);
    arg_bind(&p->fy, y, ws);
    dnnl_memory_set_data_handle(p->f_scratch, ws_at(ws, p->f_scratch_off));
    if (g->bias) dnnl_memory_set_data_handle(p->bias, (void *)b);
    dnnl_status_t st = arg_reorder(&p->fx, true, p->f_scratch);
    if (st == dnnl_success) st = arg_reorder(&p->fw, true, p->f_scratch);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, p->fx.prim},
                                   {DNNL_ARG_WEIGHTS, p->fw.prim},
                                   {DNNL_ARG_DST, p->fy.prim},
                                   {DNNL_ARG_SCRATCHPAD, p->f_scratch},
                                   {DNNL_ARG_BIAS, p->bias}};
        st = dnnl_primitive_execute(p->fwd, g_stream, g->bias ? 5 : 4, args);
    }
    if (st == dnnl_success) st = arg_reorder(&p->fy, false, p->f_scratch);
    if (st == dnnl_success) st = dnnl_stream_wait(g_stream);
    pthread_mutex_unlock(&p->lock);
    if (st != dnnl_success) {
        set_msg(msg, msg_size, "convolution forward", st);
        return 1;
    }
    return 0;
}

static void add_into(float *dst, const float *src, size_t n) {
    const long long N = (long long)n;
#pragma omp parallel for schedule(static) if (n > FLASH_PAR_THRESHOLD)
    for (long long i = 0; i < N; i++) dst[i] += src[i];
}

int flash_cpu_conv2d_backward(const flash_conv_geom *g, float *gx, float *gw, float *gb, const float *gy,
                              const float *x, const float *w, const void *saved, char *msg, size_t msg_size) {
    conv_plan *p = plan_get(g, msg, msg_size);
    if (!p) return 1;
    if (p->saved_bytes && !saved) {
        if (msg && msg_size) snprintf(msg, msg_size, "backward without the forward's saved data");
        return 1;
    }
    dnnl_status_t st = dnnl_success;
    const char *what = "convolution backward-data";
    pthread_mutex_lock(&p->lock);
    unsigned char *ws = transient(p->bwd_bytes, msg, msg_size);
    if (!ws) {
        pthread_mutex_unlock(&p->lock);
        return 1;
    }
    dnnl_memory_set_data_handle(p->b_scratch, ws_at(ws, p->b_scratch_off));
    if (gx) {
        arg_bind(&p->dy, gy, ws);
        arg_bind(&p->dw_w, w, ws);
        /* a plain dx goes to a temporary and is added below */
        arg_bind(&p->dx, p->dx.reorder ? gx : (float *)ws_at(ws, p->dx_tmp_off), ws);
        st = arg_reorder(&p->dy, true, p->b_scratch);
        if (st == dnnl_success) st = arg_reorder(&p->dw_w, true, p->b_scratch);
        if (st == dnnl_success) {
            dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, p->dy.prim},
                                       {DNNL_ARG_WEIGHTS, p->dw_w.prim},
                                       {DNNL_ARG_DIFF_SRC, p->dx.prim},
                                       {DNNL_ARG_SCRATCHPAD, p->b_scratch}};
            st = dnnl_primitive_execute(p->bwd_data, g_stream, 4, args);
        }
        if (st == dnnl_success) st = arg_reorder(&p->dx, false, p->b_scratch);
        if (st == dnnl_success) st = dnnl_stream_wait(g_stream);
        if (st == dnnl_success && !p->dx.reorder)
            add_into(gx, ws_at(ws, p->dx_tmp_off), (size_t)g->n * g->cin * g->h * g->w);
    }
    if (st == dnnl_success && (gw || gb)) {
        what = "convolution backward-weights";
        /* x in the primitive's layout: in `saved` when the layouts agree
         * (the forward reordered it there) */
        arg_bind(&p->xw, x, p->xw_shared ? (void *)saved : (void *)ws);
        /* dy: already reordered above when backward-data ran and the
         * layouts agree */
        bool dy_ready = p->dyw_shared && gx;
        arg_bind(&p->dyw, gy, ws);
        /* gw may be NULL (frozen weights): the primitive still computes dw,
         * into a slot of the transient buffer that is then dropped */
        float *gw_tmp = ws_at(ws, p->gw_tmp_off);
        arg_bind(&p->gw, p->gw.reorder && gw ? gw : gw_tmp, ws);
        if (g->bias) dnnl_memory_set_data_handle(p->dbias, ws_at(ws, p->db_off));
        if (!p->xw_shared) st = arg_reorder(&p->xw, true, p->b_scratch);
        if (st == dnnl_success && !dy_ready) st = arg_reorder(&p->dyw, true, p->b_scratch);
        if (st == dnnl_success) {
            dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, p->xw.prim},
                                       {DNNL_ARG_DIFF_DST, p->dyw.prim},
                                       {DNNL_ARG_DIFF_WEIGHTS, p->gw.prim},
                                       {DNNL_ARG_SCRATCHPAD, p->b_scratch},
                                       {DNNL_ARG_DIFF_BIAS, p->dbias}};
            st = dnnl_primitive_execute(p->bwd_w, g_stream, g->bias ? 5 : 4, args);
        }
        if (st == dnnl_success && gw) st = arg_reorder(&p->gw, false, p->b_scratch);
        if (st == dnnl_success) st = dnnl_stream_wait(g_stream);
        if (st == dnnl_success && gw && !p->gw.reorder)
            add_into(gw, gw_tmp, (size_t)g->cout * g->cin * g->k * g->k);
        if (st == dnnl_success && gb && g->bias) add_into(gb, ws_at(ws, p->db_off), (size_t)g->cout);
    }
    pthread_mutex_unlock(&p->lock);
    if (st != dnnl_success) {
        set_msg(msg, msg_size, what, st);
        return 1;
    }
    return 0;
}

#endif
