/* Internal contract shared by every op file in core/.
 *
 * A flash_ctx owns an arena (chunks of backend memory, bump-allocated,
 * emptied by flash_ctx_reset), the autograd tape (a singly linked list of
 * entries allocated in that arena, newest first), the grad mode, a sticky
 * error and the backend whose kernels the ops call.
 *
 * Writing an op (see ops_elementwise.c for many examples):
 *
 *   flash_tensor *flash_foo(flash_ctx *c, flash_tensor *x) {
 *       if (!c || !x) return NULL;
 *       flash_tensor *y = flash_tensor_like(c, x);        // arena output
 *       if (!y) return NULL;
 *       c->be->foo(y->data, x->data, x->numel);           // forward kernel
 *       flash_tape_entry *e = flash_tape_record(c, "foo", foo_backward, y, 1, &x);
 *       if (e) e->farg[0] = ...;                          // only when on the tape
 *       return y;
 *   }
 *
 *   static void foo_backward(flash_ctx *c, flash_tape_entry *e) {
 *       flash_tensor *x = e->in[0], *y = e->out;          // y->grad is set
 *       float *gx = flash_grad_of(c, x);                  // NULL: x needs no grad
 *       if (gx) ... gx[i] += dy/dx * y->grad[i];          // always accumulate
 *   }
 *
 * Backward functions accumulate (+=) into input gradients and may allocate
 * scratch from the arena. They run only when the output received a gradient.
 */
#ifndef FLASH_TENSOR_INTERNAL_H
#define FLASH_TENSOR_INTERNAL_H

#include "flash/flash.h"

#include "tensor/backend.h"

#define FLASH_TAPE_MAX_IN 4
#define FLASH_TAPE_MAX_ARGS 8
/* Arena allocations are aligned for 512-bit vectors and cache lines. */
#define FLASH_ARENA_ALIGN 64

/* Internal flag: the tensor header lives in the arena (dies at reset). */
#define FLASH_TENSOR_IN_ARENA (1u << 16)

typedef struct flash_tape_entry flash_tape_entry;
typedef void (*flash_backward_fn)(flash_ctx *c, flash_tape_entry *e);

struct flash_tape_entry {
    const char *name;           /* op name, for error messages and debugging */
    flash_backward_fn backward;
    flash_tensor *out;
    int n_in;
    flash_tensor *in[FLASH_TAPE_MAX_IN]; /* inputs; an entry may be NULL (e.g. no bias) */
    int iarg[FLASH_TAPE_MAX_ARGS];       /* small op arguments (stride, pad, groups, ...) */
    float farg[FLASH_TAPE_MAX_ARGS];     /* scalar arguments (slope, eps, ...) */
    void *saved;                         /* op-owned arena memory (stats, masks, indices) */
    void *saved2;
    struct flash_tape_entry *prev;       /* the entry recorded before this one */
};

typedef struct flash_arena_chunk {
    struct flash_arena_chunk *next;
    unsigned char *base; /* FLASH_ARENA_ALIGN-aligned backend memory */
    size_t size, used;
} flash_arena_chunk;

/* A leaf outside the arena (heap tensor) whose .grad was allocated in the
 * arena: reset must clear that pointer, else it would dangle. */
typedef struct flash_leaf_grad {
    flash_tensor *t;
    struct flash_leaf_grad *prev;
} flash_leaf_grad;

struct flash_ctx {
    const flash_backend *be;
    flash_arena_chunk *chunks; /* first chunk; allocation walks forward */
    flash_arena_chunk *cur;    /* chunk allocations currently come from */
    size_t chunk_bytes;        /* size of a fresh chunk (grows with the arena) */
    size_t n_chunks, capacity;
    size_t peak;               /* most bytes in use before a rewind since the last reset */
    flash_tape_entry *tape;    /* newest entry */
    size_t tape_len;
    flash_leaf_grad *leaf_grads;
    bool grad_on;
    bool failed;
    char err[1024];
    /* Host memory for tensor headers, tape entries and host-side scratch:
     * the context itself when the backend's memory is host memory (CPU),
     * else a CPU context owned by this one (device backends). */
    struct flash_ctx *host;
    const char *device; /* "cpu" or "cuda" */
    int precision;      /* flash_precision of the dense kernels */
};

/* 64-byte aligned arena memory; on exhaustion (the backend allocator fails)
 * records the sticky error and returns NULL. bytes == 0 returns a valid
 * pointer. Valid until flash_ctx_reset. */
void *flash_arena_alloc(flash_ctx *c, size_t bytes);
/* The table a backend table stands for: the profiled backend's when be is
 * the profiling copy (profile.c), else be itself. */
const flash_backend *flash_profile_base(const flash_backend *be);
/* The CPU's table, or its profiling copy while profiling is enabled. */
const flash_backend *flash_profile_cpu_table(void);
/* flash_host_alloc: include/flash/tensor.h */
/* Zeroed arena floats. */
float *flash_arena_zeros(flash_ctx *c, size_t n);

/* Records a tape entry for `out` when grad mode is on and some input requires
 * grad; marks out as requiring grad and links out->op. Returns NULL (and
 * records nothing) otherwise, or when the arena is exhausted (sticky error).
 * Inputs may contain NULLs (optional inputs). */
flash_tape_entry *flash_tape_record(flash_ctx *c, const char *opname, flash_backward_fn backward,
                                    flash_tensor *out, int n_in, flash_tensor *const *in);

/* The gradient buffer of t, allocated zeroed in the arena on first use
 * (parameters already have one). NULL when t does not require grad (or on
 * arena exhaustion, with the sticky error set). */
float *flash_grad_of(flash_ctx *c, flash_tensor *t);
/* For a backward that writes t's whole gradient with an overwrite-or-add
 * kernel: when t has no gradient yet, returns fresh uninitialised memory
 * and sets *acc = false (the caller must write every element), saving the
 * zero fill and a read; otherwise returns t->grad with *acc = true. */
float *flash_grad_write(flash_ctx *c, flash_tensor *t, bool *acc);
static inline bool flash_needs_grad(const flash_tensor *t) {
    return t && (t->flags & FLASH_TENSOR_REQUIRES_GRAD);
}

/* An arena tensor with x's shape (uninitialised). */
flash_tensor *flash_tensor_like(flash_ctx *c, const flash_tensor *x);
/* An arena tensor header sharing `data` (views). */
flash_tensor *flash_tensor_view_of(flash_ctx *c, float *data, int ndim, const int *shape);

/* Shapes as 4-D, right-aligned with leading 1s: (N, D) -> (1, 1, N, D). */
void flash_shape4(const flash_tensor *t, int out[4]);
/* True when b broadcasts against a (b's dims, right-aligned with a's, each
 * equal to a's or 1; b->ndim <= a->ndim). On failure records a sticky error
 * naming op and both shapes. */
bool flash_check_broadcast(flash_ctx *c, const char *op, const flash_tensor *a, const flash_tensor *b);
/* Same shape, or a sticky error naming op and both shapes. */
bool flash_check_same_shape(flash_ctx *c, const char *op, const flash_tensor *a, const flash_tensor *b);
/* Describes b broadcast over a's shape for the backend kernels. */
void flash_bcast_make(flash_bcast *bc, const flash_tensor *a, const flash_tensor *b);

/* rows x inner with one b value per row (per-sample scalars). */
void flash_bcast_rows(flash_bcast *bc, size_t rows, size_t inner);

/* Records "op: message" as the sticky error (first wins); returns NULL so
 * ops can `return flash_op_fail(c, "add", "...")`. */
void *flash_op_fail(flash_ctx *c, const char *op, const char *fmt, ...) FLASH_PRINTF(3, 4);

/* Elements above which kernels split work across OpenMP threads. */
#define FLASH_PAR_THRESHOLD 32768

#endif
