/* The reverse pass: walk the tape newest-first and call each entry's
 * backward function when its output received a gradient. The tape order is
 * a topological order of the graph, so every output's gradient is complete
 * before its entry runs. */
#include "tensor/tensor_internal.h"

flash_status flash_backward_from(flash_ctx *c, flash_tensor *out, const float *seed, flash_error *err) {
    if (!c) return flash_error_set(err, FLASH_ERR_RUNTIME, "backward: no context");
    if (c->failed) return flash_ctx_status(c, err);
    if (!out || !seed) return flash_error_set(err, FLASH_ERR_RUNTIME, "backward: output is NULL");
    if (!flash_needs_grad(out))
        return flash_error_set(err, FLASH_ERR_RUNTIME,
                               "backward: output does not require grad (computed in a no-grad scope, detached, "
                               "or from inputs without gradients)");
    /* A second backward in the same iteration (e.g. discriminator, then
     * generator) must not see the first pass's intermediate gradients. */
    for (flash_tape_entry *e = c->tape; e; e = e->prev) e->out->grad = NULL;
    float *g = flash_grad_of(c, out);
    if (!g) return flash_ctx_status(c, err);
    float *tmp = flash_arena_alloc(c, out->numel * sizeof(float));
    if (!tmp) return flash_ctx_status(c, err);
    c->be->from_host(tmp, seed, out->numel);
    c->be->copy2d(g, 0, tmp, 0, 1, out->numel, true);
    for (flash_tape_entry *e = c->tape; e && !c->failed; e = e->prev)
        if (e->out->grad) e->backward(c, e);
    return flash_ctx_status(c, err);
}

flash_status flash_backward(flash_ctx *c, flash_tensor *loss, flash_error *err) {
    if (loss && loss->numel != 1) {
        char s[64];
        return flash_error_set(err, FLASH_ERR_RUNTIME, "backward: loss must have one element, got %s",
                               flash_tensor_shape_str(loss, s, sizeof s));
    }
    const float one = 1.0f;
    return flash_backward_from(c, loss, &one, err);
}
