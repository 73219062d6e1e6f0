/* The context (arena, tape bookkeeping, sticky error), tensor creation and
 * the shape helpers every op file uses.
 *
 * The arena is a list of chunks bump-allocated in order. flash_ctx_reset
 * rewinds it; when an iteration needed more than one chunk, reset replaces
 * them with a single chunk as large as the bytes that iteration used, so
 * after one warm-up iteration a steady training loop allocates nothing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/backend_load.h"
#include "tensor/tensor_internal.h"

#define FLASH_ARENA_DEFAULT (1u << 20)

/* Under AddressSanitizer the arena poisons its free space and leaves a
 * poisoned gap after every allocation, so an op that writes past its
 * output is caught like a heap overflow. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define FLASH_REDZONE FLASH_ARENA_ALIGN
#else
#define ASAN_POISON_MEMORY_REGION(a, s) ((void)(a), (void)(s))
#define ASAN_UNPOISON_MEMORY_REGION(a, s) ((void)(a), (void)(s))
#define FLASH_REDZONE 0
#endif
/* only host memory has shadow memory to poison (the CPU's table, or the
 * profiling copy of it: profile.c) */
#define ARENA_POISON(be, a, s)                                                       \
    do {                                                                             \
        if (flash_profile_base(be) == &flash_cpu_backend) ASAN_POISON_MEMORY_REGION(a, s); \
    } while (0)
#define ARENA_UNPOISON(be, a, s)                                                       \
    do {                                                                               \
        if (flash_profile_base(be) == &flash_cpu_backend) ASAN_UNPOISON_MEMORY_REGION(a, s); \
    } while (0)

static size_t align_up(size_t n) { return (n + FLASH_ARENA_ALIGN - 1) / FLASH_ARENA_ALIGN * FLASH_ARENA_ALIGN; }

static flash_arena_chunk *chunk_new(const flash_backend *be, size_t size) {
    flash_arena_chunk *k = malloc(sizeof *k);
    if (!k) return NULL;
    k->base = be->alloc(size);
    if (!k->base) {
        free(k);
        return NULL;
    }
    k->size = size;
    k->used = 0;
    k->next = NULL;
    ARENA_POISON(be, k->base, size);
    return k;
}

static void chunks_free(const flash_backend *be, flash_arena_chunk *k) {
    while (k) {
        flash_arena_chunk *n = k->next;
        ARENA_UNPOISON(be, k->base, k->size);
        be->free(k->base);
        free(k);
        k = n;
    }
}

static flash_ctx *ctx_create_with(const flash_backend *be, size_t arena_bytes) {
    flash_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->be = be;
    c->host = c;
    c->device = "cpu";
    c->chunk_bytes = align_up(arena_bytes ? arena_bytes : FLASH_ARENA_DEFAULT);
    c->chunks = chunk_new(c->be, c->chunk_bytes);
    if (!c->chunks) {
        free(c);
        return NULL;
    }
    c->cur = c->chunks;
    c->n_chunks = 1;
    c->capacity = c->chunk_bytes;
    c->grad_on = true;
    return c;
}

/* while profiling is enabled (flash_profile_enable), CPU contexts count
 * their kernels (profile.c) */
flash_ctx *flash_ctx_create(size_t arena_bytes) { return ctx_create_with(flash_profile_cpu_table(), arena_bytes); }

/* ---- device contexts (see flash_ctx_create_on in tensor.h) ---------------- */

#define FLASH_HOST_ARENA_DEFAULT (1u << 20)

/* ---- precision (see flash_ctx_set_precision in tensor.h) ----------------- */

static flash_precision g_default_precision = FLASH_PRECISION_FP32;

const char *flash_precision_name(flash_precision p) {
    return p == FLASH_PRECISION_FP32 ? "fp32" : p == FLASH_PRECISION_BF16 ? "bf16" : "?";
}

static flash_status precision_check(const flash_backend *be, const char *device, flash_precision p,
                                    flash_error *err) {
    if (p == FLASH_PRECISION_FP32) return FLASH_OK;
    if (p != FLASH_PRECISION_BF16) return flash_error_set(err, FLASH_ERR_CONFIG, "unknown precision %d", (int)p);
    const flash_backend *base = flash_profile_base(be);
    char msg[256] = "";
    if (!base->conv2d_precision) snprintf(msg, sizeof msg, "its backend computes in fp32 only");
    else if (base->conv2d_precision(p, msg, sizeof msg) == 0) return FLASH_OK;
    return flash_error_set(err, FLASH_ERR_CONFIG, "dtype %s on device '%s': %s", flash_precision_name(p), device,
                           msg[0] ? msg : "not supported");
}

flash_status flash_ctx_set_precision(flash_ctx *c, flash_precision p, flash_error *err) {
    if (!c) return flash_error_set(err, FLASH_ERR_RUNTIME, "set_precision: NULL context");
    flash_status st = precision_check(c->be, c->device, p, err);
    if (!st) c->precision = (int)p;
    return st;
}

flash_precision flash_ctx_precision(const flash_ctx *c) {
    return c ? (flash_precision)c->precision : FLASH_PRECISION_FP32;
}

flash_status flash_set_default_precision(const char *device, flash_precision p, flash_error *err) {
    if (p == FLASH_PRECISION_FP32) { /* every backend: nothing to load or check */
        g_default_precision = p;
        return FLASH_OK;
    }
    char msg[512] = "";
    const flash_backend *be = flash_backend_for(device, msg, sizeof msg);
    if (!be) return flash_error_set(err, FLASH_ERR_RUNTIME, "device '%s': %s", device ? device : "(null)", msg);
    flash_status st = precision_check(be, device, p, err);
    if (!st) g_default_precision = p;
    return st;
}

flash_precision flash_default_precision(void) { return g_default_precision; }

flash_ctx *flash_ctx_create_on(const char *device, size_t arena_bytes, flash_error *err) {
    char msg[512] = "";
    const flash_backend *be = flash_backend_for(device, msg, sizeof msg);
    if (!be) {
        flash_error_set(err, FLASH_ERR_RUNTIME, "device '%s': %s", device ? device : "(null)", msg);
        return NULL;
    }
    flash_ctx *c = NULL;
    if (be == &flash_cpu_backend) {
        c = flash_ctx_create(arena_bytes);
        if (!c) flash_error_set(err, FLASH_ERR_NOMEM, "device 'cpu': cannot allocate a %zu-byte arena", arena_bytes);
    } else {
        c = ctx_create_with(be, arena_bytes);
        flash_ctx *h = c ? ctx_create_with(flash_profile_cpu_table(), FLASH_HOST_ARENA_DEFAULT) : NULL;
        if (!h) {
            flash_ctx_destroy(c);
            flash_error_set(err, FLASH_ERR_NOMEM, "device '%s': cannot allocate a %zu-byte arena", device, arena_bytes);
            return NULL;
        }
        c->host = h;
        c->device = be->name;
    }
    if (c && flash_ctx_set_precision(c, g_default_precision, err)) {
        flash_ctx_destroy(c);
        return NULL;
    }
    return c;
}

const char *flash_ctx_device(const flash_ctx *c) { return c ? c->device : NULL; }

flash_status flash_tensor_to_host(flash_ctx *c, const flash_tensor *t, float *host, flash_error *err) {
    if (!c || !t || !host) return flash_error_set(err, FLASH_ERR_RUNTIME, "tensor_to_host: NULL argument");
    c->be->to_host(host, t->data, t->numel);
    const char *m = c->be->last_error ? c->be->last_error() : NULL;
    if (m) return flash_error_set(err, FLASH_ERR_RUNTIME, "%s: %s", c->device, m);
    return FLASH_OK;
}

flash_status flash_tensor_from_host(flash_ctx *c, flash_tensor *t, const float *host, flash_error *err) {
    if (!c || !t || !host) return flash_error_set(err, FLASH_ERR_RUNTIME, "tensor_from_host: NULL argument");
    c->be->from_host(t->data, host, t->numel);
    const char *m = c->be->last_error ? c->be->last_error() : NULL;
    if (m) return flash_error_set(err, FLASH_ERR_RUNTIME, "%s: %s", c->device, m);
    return FLASH_OK;
}

int flash_ctx_sync(flash_ctx *c) { return c && c->be->sync ? c->be->sync() : 0; }

void *flash_host_alloc(flash_ctx *c, size_t bytes) {
    if (!c) return NULL;
    if (c->host == c) return flash_arena_alloc(c, bytes);
    void *p = flash_arena_alloc(c->host, bytes);
    if (!p) flash_ctx_fail(c, "%s", c->host->err);
    return p;
}

void flash_ctx_destroy(flash_ctx *c) {
    if (!c) return;
    for (flash_leaf_grad *l = c->leaf_grads; l; l = l->prev) l->t->grad = NULL;
    chunks_free(c->be, c->chunks);
    if (c->host != c) flash_ctx_destroy(c->host);
    free(c);
}

static size_t arena_used(const flash_ctx *c) {
    size_t total = 0;
    for (flash_arena_chunk *k = c->chunks; k; k = k->next) total += k->used;
    return total;
}

void flash_ctx_reset(flash_ctx *c) {
    if (!c) return;
    /* heap leaves must not keep pointers into the arena */
    for (flash_leaf_grad *l = c->leaf_grads; l; l = l->prev) l->t->grad = NULL;
    c->leaf_grads = NULL;
    c->tape = NULL;
    c->tape_len = 0;
    c->failed = false;
    c->err[0] = '\0';
    if (c->n_chunks > 1) {
        /* coalesce: one chunk exactly as large as everything this iteration
         * used, so the same sequence of allocations fits it next time */
        size_t total = arena_used(c);
        if (total < c->peak) total = c->peak;
        if (total < c->chunks->size) total = c->chunks->size;
        chunks_free(c->be, c->chunks);
        c->chunks = chunk_new(c->be, total);
        c->n_chunks = c->chunks ? 1 : 0;
        c->capacity = c->chunks ? total : 0;
    }
    for (flash_arena_chunk *k = c->chunks; k; k = k->next) {
        k->used = 0;
        ARENA_POISON(c->be, k->base, k->size);
    }
    c->cur = c->chunks;
    c->peak = 0;
    if (c->host != c) flash_ctx_reset(c->host);
}

/* ---- marks ---------------------------------------------------------------- */

static flash_arena_chunk *chunk_holding(const flash_ctx *c, const void *p) {
    const unsigned char *q = p;
    for (flash_arena_chunk *k = c->chunks; k; k = k->next)
        if (q >= k->base && q < k->base + k->size) return k;
    return NULL;
}

/* True when p lies in the part of c's arena a rewind to (chunk, used) drops. */
static bool after_mark(const flash_ctx *c, const void *chunk, size_t used, const void *p) {
    const flash_arena_chunk *k = chunk_holding(c, p);
    if (!k) return false; /* heap tensors and parameters */
    if (k == chunk) return (size_t)((const unsigned char *)p - k->base) >= used;
    for (const flash_arena_chunk *j = chunk; j; j = j->next)
        if (j == k) return true; /* a later chunk */
    return false;
}

static void rewind_to(flash_ctx *c, const void *chunk, size_t used) {
    size_t now = arena_used(c);
    if (now > c->peak) c->peak = now;
    flash_arena_chunk *k = (flash_arena_chunk *)chunk;
    if (!k) return;
    ARENA_POISON(c->be, k->base + used, k->size - used);
    k->used = used;
    for (flash_arena_chunk *j = k->next; j; j = j->next) {
        ARENA_POISON(c->be, j->base, j->size);
        j->used = 0;
    }
    c->cur = k;
}

flash_arena_mark flash_ctx_mark(const flash_ctx *c) {
    flash_arena_mark m = {0};
    if (!c) return m;
    m.chunk = c->cur;
    m.used = c->cur ? c->cur->used : 0;
    m.host_chunk = c->host->cur;
    m.host_used = c->host->cur ? c->host->cur->used : 0;
    m.tape = c->tape;
    return m;
}

bool flash_ctx_rewind(flash_ctx *c, const flash_arena_mark *m, flash_tensor **keep, int n_keep) {
    if (!c || !m || c->failed) return false;
    if (c->tape != m->tape) {
        flash_ctx_fail(c, "tensor: cannot rewind the arena past recorded tape entries (use it in no-grad scopes)");
        return false;
    }
    /* kept data that would be dropped goes to scratch memory of the
     * context's own backend first, so device tensors never visit the host */
    enum { MAX_KEEP = 16 };
    if (n_keep > MAX_KEEP) {
        flash_ctx_fail(c, "tensor: rewind keeps at most %d tensors, not %d", MAX_KEEP, n_keep);
        return false;
    }
    float *saved[MAX_KEEP] = {0};
    bool move[MAX_KEEP] = {0};
    int ndim[MAX_KEEP], shape[MAX_KEEP][FLASH_MAX_DIMS];
    bool ok = true;
    for (int i = 0; i < n_keep && ok; i++) {
        flash_tensor *t = keep[i];
        if (!t) continue;
        bool dup = false;
        for (int j = 0; j < i; j++) dup |= keep[j] == t;
        if (dup) continue;
        move[i] = after_mark(c, m->chunk, m->used, t->data) || after_mark(c->host, m->host_chunk, m->host_used, t);
        if (!move[i]) continue;
        /* the header may be dropped too: keep its shape */
        ndim[i] = t->ndim;
        memcpy(shape[i], t->shape, sizeof shape[i]);
        saved[i] = c->be->alloc(t->numel * sizeof(float) + 1);
        if (!saved[i])
            ok = false;
        else
            c->be->copy(saved[i], t->data, t->numel);
    }
    if (ok) {
        rewind_to(c, m->chunk, m->used);
        if (c->host != c) rewind_to(c->host, m->host_chunk, m->host_used);
        for (int i = 0; i < n_keep; i++) {
            if (!keep[i] || !move[i]) continue;
            flash_tensor *old = keep[i];
            flash_tensor *t = flash_tensor_new(c, ndim[i], shape[i]);
            if (!t) {
                ok = false;
                break;
            }
            c->be->copy(t->data, saved[i], t->numel);
            for (int j = i + 1; j < n_keep; j++)
                if (keep[j] == old) keep[j] = t;
            keep[i] = t;
        }
    } else {
        flash_ctx_fail(c, "tensor: out of memory saving tensors across an arena rewind");
    }
    for (int i = 0; i < n_keep; i++)
        if (saved[i]) c->be->free(saved[i]);
    return ok && flash_ctx_ok(c);
}

/* A device backend's asynchronous failure becomes the context's error. */
static const char *backend_error(const flash_ctx *c) { return c->be->last_error ? c->be->last_error() : NULL; }

bool flash_ctx_ok(const flash_ctx *c) { return c && !c->failed && !backend_error(c); }

const char *flash_ctx_error(const flash_ctx *c) {
    if (!c) return "no context";
    if (!c->failed && backend_error(c)) return backend_error(c);
    return c->failed ? c->err : "";
}

void flash_ctx_fail(flash_ctx *c, const char *fmt, ...) {
    if (!c || c->failed) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    c->failed = true;
}

void *flash_op_fail(flash_ctx *c, const char *op, const char *fmt, ...) {
    if (!c || c->failed) return NULL;
    char msg[sizeof c->err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    flash_ctx_fail(c, "%s: %s", op, msg);
    return NULL;
}

flash_status flash_ctx_status(const flash_ctx *c, flash_error *err) {
    if (!c) return flash_error_set(err, FLASH_ERR_RUNTIME, "tensor: no context");
    if (!c->failed && backend_error(c))
        return flash_error_set(err, FLASH_ERR_RUNTIME, "%s: %s", c->device, backend_error(c));
    if (!c->failed) return FLASH_OK;
    return flash_error_set(err, FLASH_ERR_RUNTIME, "%s", c->err);
}

size_t flash_ctx_arena_capacity(const flash_ctx *c) { return c ? c->capacity : 0; }
size_t flash_ctx_arena_chunks(const flash_ctx *c) { return c ? c->n_chunks : 0; }

bool flash_grad_set(flash_ctx *c, bool on) {
    if (!c) return false;
    bool was = c->grad_on;
    c->grad_on = on;
    return was;
}

bool flash_grad_enabled(const flash_ctx *c) { return c && c->grad_on; }

/* ---- arena ------------------------------------------------------------- */

void *flash_arena_alloc(flash_ctx *c, size_t bytes) {
    if (!c) return NULL;
    size_t sz = align_up(bytes ? bytes : 1) + FLASH_REDZONE;
    for (;;) {
        flash_arena_chunk *k = c->cur;
        if (k && k->size - k->used >= sz) {
            void *p = k->base + k->used;
            k->used += sz;
            ARENA_UNPOISON(c->be, p, bytes);
            return p;
        }
        if (k && k->next) {
            c->cur = k->next;
            continue;
        }
        /* grow geometrically so chunks stay few */
        size_t want = c->capacity > c->chunk_bytes ? c->capacity : c->chunk_bytes;
        if (want < sz) want = sz;
        flash_arena_chunk *n = chunk_new(c->be, want);
        if (!n) {
            flash_ctx_fail(c, "tensor: arena exhausted (could not allocate %zu bytes)", want);
            return NULL;
        }
        if (k)
            k->next = n;
        else
            c->chunks = n;
        c->cur = n;
        c->n_chunks++;
        c->capacity += want;
    }
}

float *flash_arena_zeros(flash_ctx *c, size_t n) {
    float *p = flash_arena_alloc(c, n * sizeof(float));
    if (p) c->be->zero(p, n);
    return p;
}

/* ---- tape and gradients -------------------------------------------------- */

flash_tape_entry *flash_tape_record(flash_ctx *c, const char *opname, flash_backward_fn backward,
                                    flash_tensor *out, int n_in, flash_tensor *const *in) {
    if (!c || !out || !c->grad_on || c->failed) return NULL;
    if (n_in < 0 || n_in > FLASH_TAPE_MAX_IN) return flash_op_fail(c, opname, "too many inputs (%d)", n_in);
    bool any = false;
    for (int i = 0; i < n_in; i++) any = any || flash_needs_grad(in[i]);
    if (!any) return NULL;
    flash_tape_entry *e = flash_host_alloc(c, sizeof *e);
    if (!e) return NULL;
    memset(e, 0, sizeof *e);
    e->name = opname;
    e->backward = backward;
    e->out = out;
    e->n_in = n_in;
    for (int i = 0; i < n_in; i++) e->in[i] = in[i];
    e->prev = c->tape;
    c->tape = e;
    c->tape_len++;
    out->flags |= FLASH_TENSOR_REQUIRES_GRAD;
    out->op = e;
    return e;
}

static float *grad_new(flash_ctx *c, flash_tensor *t, bool zero) {
    float *g = zero ? flash_arena_zeros(c, t->numel) : flash_arena_alloc(c, t->numel * sizeof(float));
    if (!g) return NULL;
    if (!(t->flags & FLASH_TENSOR_IN_ARENA)) {
        flash_leaf_grad *l = flash_host_alloc(c, sizeof *l);
        if (!l) return NULL;
        l->t = t;
        l->prev = c->leaf_grads;
        c->leaf_grads = l;
    }
    t->grad = g;
    return g;
}

float *flash_grad_of(flash_ctx *c, flash_tensor *t) {
    if (!c || !flash_needs_grad(t)) return NULL;
    return t->grad ? t->grad : grad_new(c, t, true);
}

float *flash_grad_write(flash_ctx *c, flash_tensor *t, bool *acc) {
    *acc = true;
    if (!c || !flash_needs_grad(t)) return NULL;
    if (t->grad) return t->grad;
    *acc = false;
    return grad_new(c, t, false);
}

/* ---- shapes ---------------------------------------------------------------- */

static bool shape_valid(int ndim, const int *shape, size_t *numel) {
    if (ndim < 1 || ndim > FLASH_MAX_DIMS || !shape) return false;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) return false;
        n *= (size_t)shape[i];
    }
    *numel = n;
    return true;
}

static void shape_fmt(int ndim, const int *shape, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "(");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %d" : "%d", shape ? shape[i] : 0);
    if (o < n) snprintf(buf + o, n - o, ")");
}

const char *flash_tensor_shape_str(const flash_tensor *t, char *buf, size_t n) {
    if (!buf || n == 0) return buf;
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    shape_fmt(t->ndim, t->shape, buf, n);
    return buf;
}

bool flash_tensor_same_shape(const flash_tensor *a, const flash_tensor *b) {
    if (!a || !b || a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

void flash_shape4(const flash_tensor *t, int out[4]) {
    int pad = 4 - t->ndim;
    for (int i = 0; i < 4; i++) out[i] = i < pad ? 1 : t->shape[i - pad];
}

bool flash_check_same_shape(flash_ctx *c, const char *op, const flash_tensor *a, const flash_tensor *b) {
    if (flash_tensor_same_shape(a, b)) return true;
    char sa[64], sb[64];
    flash_op_fail(c, op, "shapes differ: %s vs %s", flash_tensor_shape_str(a, sa, sizeof sa),
                  flash_tensor_shape_str(b, sb, sizeof sb));
    return false;
}

bool flash_check_broadcast(flash_ctx *c, const char *op, const flash_tensor *a, const flash_tensor *b) {
    bool ok = b->ndim <= a->ndim;
    for (int i = 1; ok && i <= b->ndim; i++) {
        int db = b->shape[b->ndim - i], da = a->shape[a->ndim - i];
        ok = db == da || db == 1;
    }
    if (ok) return true;
    char sa[64], sb[64];
    flash_op_fail(c, op, "cannot broadcast %s over %s", flash_tensor_shape_str(b, sb, sizeof sb),
                  flash_tensor_shape_str(a, sa, sizeof sa));
    return false;
}

void flash_bcast_make(flash_bcast *bc, const flash_tensor *a, const flash_tensor *b) {
    int a4[4], b4[4];
    flash_shape4(a, a4);
    flash_shape4(b, b4);
    memset(bc, 0, sizeof *bc);
    bc->a_numel = a->numel;
    bc->b_numel = b->numel;
    bc->same = a->numel == b->numel;
    /* merge neighbouring dims that are both broadcast or both full;
     * dims of size 1 in a are neutral and dropped */
    size_t gsize[4];
    bool gbc[4];
    int ng = 0;
    for (int k = 0; k < 4; k++) {
        if (a4[k] == 1) continue;
        bool isbc = b4[k] == 1;
        if (ng > 0 && gbc[ng - 1] == isbc) {
            gsize[ng - 1] *= (size_t)a4[k];
        } else {
            gsize[ng] = (size_t)a4[k];
            gbc[ng] = isbc;
            ng++;
        }
    }
    if (ng == 0) {
        bc->outer = 1;
        bc->inner = 1;
        bc->inner_scalar = false;
        return;
    }
    /* b's stride of each group: the product of the later full groups */
    size_t gstride[4], s = 1;
    for (int g = ng - 1; g >= 0; g--) {
        gstride[g] = gbc[g] ? 0 : s;
        if (!gbc[g]) s *= gsize[g];
    }
    bc->inner = gsize[ng - 1];
    bc->inner_scalar = gbc[ng - 1];
    bc->n_outer = ng - 1;
    bc->outer = 1;
    for (int g = 0; g < ng - 1; g++) {
        bc->osize[g] = gsize[g];
        bc->ostride[g] = gstride[g];
        bc->outer *= gsize[g];
    }
}

void flash_bcast_rows(flash_bcast *bc, size_t rows, size_t inner) {
    memset(bc, 0, sizeof *bc);
    bc->a_numel = rows * inner;
    bc->b_numel = rows;
    bc->same = inner == 1;
    bc->outer = rows;
    bc->inner = inner;
    bc->inner_scalar = true;
    bc->n_outer = 1;
    bc->osize[0] = rows;
    bc->ostride[0] = 1;
    if (inner == 1) { /* plain elementwise */
        bc->outer = 1;
        bc->inner = rows;
        bc->inner_scalar = false;
        bc->n_outer = 0;
    }
}

/* ---- making tensors ------------------------------------------------------------ */

flash_tensor *flash_tensor_view_of(flash_ctx *c, float *data, int ndim, const int *shape) {
    if (!c) return NULL;
    size_t n;
    if (!shape_valid(ndim, shape, &n)) {
        char s[64];
        shape_fmt(ndim >= 0 && ndim <= FLASH_MAX_DIMS ? ndim : 0, shape, s, sizeof s);
        return flash_op_fail(c, "tensor", "invalid shape %s (ndim %d)", s, ndim);
    }
    flash_tensor *t = flash_host_alloc(c, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->data = data;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = n;
    t->flags = FLASH_TENSOR_IN_ARENA;
    return t;
}

flash_tensor *flash_tensor_new(flash_ctx *c, int ndim, const int *shape) {
    if (!c) return NULL;
    size_t n;
    if (!shape_valid(ndim, shape, &n)) return flash_tensor_view_of(c, NULL, ndim, shape); /* reports */
    float *d = flash_arena_alloc(c, n * sizeof(float));
    if (!d) return NULL;
    return flash_tensor_view_of(c, d, ndim, shape);
}

flash_tensor *flash_tensor_like(flash_ctx *c, const flash_tensor *x) {
    if (!x) return NULL;
    return flash_tensor_new(c, x->ndim, x->shape);
}

flash_tensor *flash_tensor_4d(flash_ctx *c, int n, int ch, int h, int w) {
    int s[4] = {n, ch, h, w};
    return flash_tensor_new(c, 4, s);
}

flash_tensor *flash_tensor_2d(flash_ctx *c, int n, int d) {
    int s[2] = {n, d};
    return flash_tensor_new(c, 2, s);
}

flash_tensor *flash_tensor_1d(flash_ctx *c, int n) { return flash_tensor_new(c, 1, &n); }

flash_tensor *flash_zeros(flash_ctx *c, int ndim, const int *shape) {
    flash_tensor *t = flash_tensor_new(c, ndim, shape);
    if (t) c->be->zero(t->data, t->numel);
    return t;
}

flash_tensor *flash_full(flash_ctx *c, int ndim, const int *shape, float value) {
    flash_tensor *t = flash_tensor_new(c, ndim, shape);
    if (t) c->be->fill(t->data, t->numel, value);
    return t;
}

flash_tensor *flash_tensor_per_sample(flash_ctx *c, const flash_tensor *like, const float *v) {
    if (!c || !like || !v) return NULL;
    /* (n, 1, ..., 1) with like's rank, so it broadcasts against like */
    int s[4] = {like->shape[0], 1, 1, 1};
    flash_tensor *t = flash_tensor_new(c, like->ndim, s);
    if (t) c->be->from_host(t->data, v, t->numel);
    return t;
}

flash_tensor *flash_tensor_from(flash_ctx *c, int ndim, const int *shape, const float *src) {
    if (!c || !src) return NULL;
    flash_tensor *t = flash_tensor_new(c, ndim, shape);
    if (t) c->be->from_host(t->data, src, t->numel);
    return t;
}

flash_tensor *flash_tensor_alloc(int ndim, const int *shape) {
    size_t n;
    if (!shape_valid(ndim, shape, &n)) return NULL;
    flash_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->data = flash_cpu_backend.alloc(n * sizeof(float));
    if (!t->data) {
        free(t);
        return NULL;
    }
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = n;
    t->flags = FLASH_TENSOR_OWNS_DATA;
    return t;
}

void flash_tensor_free(flash_tensor *t) {
    if (!t) return;
    if (t->flags & FLASH_TENSOR_OWNS_DATA) flash_cpu_backend.free(t->data);
    free(t);
}

void flash_tensor_requires_grad(flash_tensor *t, bool on) {
    if (!t) return;
    if (on)
        t->flags |= FLASH_TENSOR_REQUIRES_GRAD;
    else
        t->flags &= ~(uint32_t)FLASH_TENSOR_REQUIRES_GRAD;
}
