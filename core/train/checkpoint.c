/* Checkpoints: a model's parameters (and its EMA copy and Adam moments when
 * present) as a safetensors file that Python's `safetensors` reads as is.
 *
 *   name            the parameter (F32, its shape)
 *   ema.name        EMA copy        } written when the params block has
 *   adam_m.name     Adam first      } them, same shapes
 *   adam_v.name     Adam second     }
 *
 * __metadata__ (all strings, as the format requires):
 *   format    "flash-checkpoint-1"
 *   step      decimal
 *   rng       the flash_rng state: s0:s1:s2:s3:has_spare:spare_bits in hex
 *   config    the resolved config as YAML
 *   ranks     the data-parallel rank count that wrote it (training's
 *             checkpoints; checkpoint_internal.h). Outside meta_checksum,
 *             so that flash builds from before it read these files: it
 *             only decides a log line on resume, and a value that is not
 *             a positive count is ignored
 *   checksum  FNV-1a 64 of the data section (every tensor's bytes in file
 *             order), 16 hex digits
 *   meta_checksum  FNV-1a 64 of "key\0value\0" for format, step, rng and
 *             config (those present, in that order), so a damaged step or
 *             config is refused too; names, shapes and offsets are checked
 *             against the model and the format itself
 *
 * Loading validates everything (format, checksum, names, shapes) before
 * touching the params, so a refused file leaves the model as it was.
 */
#include "flash/flash.h"
#include "runtime/io_internal.h"
#include "train/checkpoint_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_FORMAT "flash-checkpoint-1"

uint64_t flash_fnv1a64(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The index of the first non-finite float32 of a tensor's bytes (which
 * need not be aligned in the file), or -1. */
static int64_t first_nonfinite_bytes(const void *data, size_t nbytes)
{
    const unsigned char *b = data;
    for (size_t i = 0; i + sizeof(float) <= nbytes; i += sizeof(float)) {
        float v;
        memcpy(&v, b + i, sizeof v);
        if (!isfinite(v)) return (int64_t)(i / sizeof v);
    }
    return -1;
}

/* The three optional blocks that share the parameters' layout. */
enum { BLK_EMA, BLK_M, BLK_V, N_BLK };
static const char *const blk_prefix[N_BLK] = {"ema.", "adam_m.", "adam_v."};

static float *block_of(flash_params *p, int b)
{
    switch (b) {
    case BLK_EMA: return flash_params_ema(p);
    case BLK_M: return flash_params_adam_m(p);
    case BLK_V: return flash_params_adam_v(p);
    }
    return NULL;
}

/* Metadata covered by meta_checksum, in hashing order. */
static const char *const meta_keys[] = {"format", "step", "rng", "config"};
#define N_META_KEYS (sizeof meta_keys / sizeof meta_keys[0])

static uint64_t meta_hash(const char *const *values)
{
    uint64_t h = FLASH_FNV1A64_INIT;
    for (size_t i = 0; i < N_META_KEYS; i++) {
        if (!values[i])
            continue;
        h = flash_fnv1a64(h, meta_keys[i], strlen(meta_keys[i]) + 1);
        h = flash_fnv1a64(h, values[i], strlen(values[i]) + 1);
    }
    return h;
}

static char *prefixed(const char *prefix, const char *name)
{
    size_t a = strlen(prefix), b = strlen(name);
    char *s = malloc(a + b + 1);
    if (s) {
        memcpy(s, prefix, a);
        memcpy(s + a, name, b + 1);
    }
    return s;
}

flash_status flash_checkpoint_save(const char *path, flash_params *p, const flash_ckpt_info *info, flash_error *err)
{
    return flash_checkpoint_save_ranks(path, p, info, 0, err);
}

/* moments: with the Adam blocks (a checkpoint to resume from), else the
 * weights and their EMA alone (a snapshot to sample from) */
static flash_status save(const char *path, flash_params *p, const flash_ckpt_info *info, int ranks, bool moments,
                         flash_error *err)
{
    size_t np = flash_params_n(p);
    float *base = flash_params_data(p);
    float *blk[N_BLK];
    size_t nt = np;
    for (int b = 0; b < N_BLK; b++) {
        blk[b] = moments || b == BLK_EMA ? block_of(p, b) : NULL;
        if (blk[b])
            nt += np;
    }
    flash_st_tensor *ts = calloc(nt ? nt : 1, sizeof *ts);
    char **names = calloc(nt ? nt : 1, sizeof *names);
    flash_status st = FLASH_OK;
    if (!ts || !names) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    /* All tensors are F32, so the writer keeps this order in the file and
     * the checksum can be computed here in the same order. */
    uint64_t h = FLASH_FNV1A64_INIT;
    size_t k = 0;
    for (int b = -1; b < N_BLK; b++) {
        if (b >= 0 && !blk[b])
            continue;
        for (size_t i = 0; i < np; i++) {
            const flash_tensor *t = flash_params_at(p, i);
            const char *name = flash_params_name(p, i);
            flash_st_tensor *o = &ts[k];
            if (b < 0) {
                o->name = name;
                o->data = t->data;
            } else {
                if (!(names[k] = prefixed(blk_prefix[b], name))) {
                    st = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
                    goto done;
                }
                o->name = names[k];
                o->data = blk[b] + (t->data - base);
            }
            o->dtype = FLASH_F32;
            o->ndim = t->ndim;
            for (int d = 0; d < t->ndim; d++)
                o->shape[d] = t->shape[d];
            o->nbytes = t->numel * sizeof(float);
            h = flash_fnv1a64(h, o->data, o->nbytes);
            k++;
        }
    }

    char step[32], rng[128], sum[32], msum[32], nranks[16];
    flash_st_meta meta[7];
    size_t nm = 0;
    meta[nm++] = (flash_st_meta){"format", CKPT_FORMAT};
    if (info) {
        snprintf(step, sizeof step, "%" PRId64, info->step);
        uint32_t bits;
        memcpy(&bits, &info->rng.spare, sizeof bits);
        snprintf(rng, sizeof rng, "%016" PRIx64 ":%016" PRIx64 ":%016" PRIx64 ":%016" PRIx64 ":%" PRIx32 ":%08" PRIx32,
                 info->rng.s[0], info->rng.s[1], info->rng.s[2], info->rng.s[3], info->rng.has_spare, bits);
        meta[nm++] = (flash_st_meta){"step", step};
        meta[nm++] = (flash_st_meta){"rng", rng};
        if (info->config_yaml)
            meta[nm++] = (flash_st_meta){"config", info->config_yaml};
    }
    snprintf(nranks, sizeof nranks, "%d", ranks);
    if (ranks > 0)
        meta[nm++] = (flash_st_meta){"ranks", nranks};
    snprintf(sum, sizeof sum, "%016" PRIx64, h);
    meta[nm++] = (flash_st_meta){"checksum", sum};
    const char *mv[N_META_KEYS] = {CKPT_FORMAT, info ? step : NULL, info ? rng : NULL, info ? info->config_yaml : NULL};
    snprintf(msum, sizeof msum, "%016" PRIx64, meta_hash(mv));
    meta[nm++] = (flash_st_meta){"meta_checksum", msum};
    st = flash_safetensors_write(path, ts, k, meta, nm, err);
done:
    if (names)
        for (size_t i = 0; i < nt; i++)
            free(names[i]);
    free(names);
    free(ts);
    return st;
}

flash_status flash_checkpoint_save_ranks(const char *path, flash_params *p, const flash_ckpt_info *info, int ranks,
                                         flash_error *err)
{
    return save(path, p, info, ranks, true, err);
}

flash_status flash_checkpoint_save_weights(const char *path, flash_params *p, const flash_ckpt_info *info,
                                           flash_error *err)
{
    return save(path, p, info, 0, false, err);
}

static int parse_hex64(const char *s, const char **end, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;
    for (; n < 16; n++, s++) {
        int c = (unsigned char)*s, d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else /* lowercase only: the form written, so any change to the text is a change */
            break;
        v = v << 4 | (uint64_t)d;
    }
    *end = s;
    *out = v;
    return n > 0;
}

static int parse_rng(const char *s, flash_rng *r)
{
    uint64_t v[6];
    for (int i = 0; i < 6; i++) {
        const char *end;
        if (!parse_hex64(s, &end, &v[i]))
            return 0;
        if (i < 5 && *end != ':')
            return 0;
        if (i == 5 && *end != '\0')
            return 0;
        s = end + 1;
    }
    if (v[4] > 1 || v[5] > UINT32_MAX)
        return 0;
    for (int i = 0; i < 4; i++)
        r->s[i] = v[i];
    r->has_spare = (uint32_t)v[4];
    uint32_t bits = (uint32_t)v[5];
    memcpy(&r->spare, &bits, sizeof bits);
    return 1;
}

static int shape_matches(const flash_st_tensor *s, const flash_tensor *t)
{
    if (s->ndim != t->ndim)
        return 0;
    for (int d = 0; d < t->ndim; d++)
        if (s->shape[d] != t->shape[d])
            return 0;
    return 1;
}

static void shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    int len = snprintf(buf, size, "(");
    for (int d = 0; d < ndim && len > 0 && (size_t)len < size; d++)
        len += snprintf(buf + len, size - (size_t)len, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (len > 0 && (size_t)len < size)
        snprintf(buf + len, size - (size_t)len, ")");
}

/* Checks the tensor saved under name against parameter t. */
static flash_status check_tensor(const char *path, const flash_st_tensor *s, const char *name,
                                 const flash_tensor *t, flash_error *err)
{
    if (s->dtype != FLASH_F32)
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: tensor '%s' has dtype %s, expected F32", path, name,
                               flash_dtype_name(s->dtype));
    if (!shape_matches(s, t)) {
        char a[128], b[128];
        int64_t ts[FLASH_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++)
            ts[d] = t->shape[d];
        shape_str(a, sizeof a, s->ndim, s->shape);
        shape_str(b, sizeof b, t->ndim, ts);
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: tensor '%s' has shape %s but the model's parameter has %s",
                               path, name, a, b);
    }
    return FLASH_OK;
}

/* Gives p the optional block b so a checkpoint's copy can be loaded into
 * it. The params API creates these blocks on first use: EMA's first update
 * copies data; Adam's first step creates zeroed moments, and with zero
 * gradients, lr 0, betas 0 and eps 1 it leaves data bit-for-bit unchanged
 * (w - 0 * 0 / (0 + 1) = w). The loaded values overwrite the blocks next. */
static flash_status ensure_block(flash_params *p, int b, const char *path, flash_error *err)
{
    if (block_of(p, b))
        return FLASH_OK;
    flash_status st = FLASH_OK;
    if (b == BLK_EMA) {
        st = flash_params_ema_update(p, 0.0f, err);
    } else {
        const flash_adam noop = {.lr = 0.0f, .beta1 = 0.0f, .beta2 = 0.0f, .eps = 1.0f, .weight_decay = 0.0f};
        flash_params_zero_grad(p);
        st = flash_adam_step(p, &noop, 1, err);
    }
    if (st) {
        flash_error_prefix(err, "%s", path);
        return st;
    }
    if (!block_of(p, b))
        return flash_error_set(err, FLASH_ERR_RUNTIME,
                               "%s: the checkpoint holds '%s' tensors but the model's params have no such block", path,
                               blk_prefix[b]);
    return FLASH_OK;
}

flash_status flash_checkpoint_load(const char *path, flash_params *p, flash_ckpt_info *info, flash_error *err)
{
    return flash_checkpoint_load_ranks(path, p, info, NULL, err);
}

flash_status flash_checkpoint_load_ranks(const char *path, flash_params *p, flash_ckpt_info *info, int *ranks,
                                         flash_error *err)
{
    if (ranks)
        *ranks = 0;
    if (info)
        info->config_yaml = NULL;
    flash_safetensors *sf = NULL;
    flash_status st = flash_safetensors_open(path, &sf, err);
    if (st)
        return st;
    const flash_st_tensor **src = NULL;
    char *name = NULL;

    const char *fmt = flash_safetensors_meta(sf, "format");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0) {
        st = flash_error_set(err, FLASH_ERR_INPUT, "%s: not a flash checkpoint (metadata format is '%s', expected '%s')",
                             path, fmt ? fmt : "(absent)", CKPT_FORMAT);
        goto done;
    }
    const char *sum = flash_safetensors_meta(sf, "checksum");
    uint64_t want;
    const char *end;
    if (!sum || strlen(sum) != 16 || !parse_hex64(sum, &end, &want) || *end) {
        st = flash_error_set(err, FLASH_ERR_INPUT, "%s: corrupted checkpoint: missing or malformed checksum", path);
        goto done;
    }
    const char *msum = flash_safetensors_meta(sf, "meta_checksum");
    const char *mv[N_META_KEYS];
    for (size_t i = 0; i < N_META_KEYS; i++)
        mv[i] = flash_safetensors_meta(sf, meta_keys[i]);
    uint64_t mwant;
    if (!msum || strlen(msum) != 16 || !parse_hex64(msum, &end, &mwant) || *end || mwant != meta_hash(mv)) {
        st = flash_error_set(err, FLASH_ERR_INPUT, "%s: corrupted checkpoint: metadata (step, rng, config) %s", path,
                             msum ? "fails its checksum" : "has no checksum");
        goto done;
    }
    size_t nbytes;
    const unsigned char *bytes = flash_safetensors_data_section(sf, &nbytes);
    uint64_t got = flash_fnv1a64(FLASH_FNV1A64_INIT, bytes, nbytes);
    if (got != want) {
        st = flash_error_set(err, FLASH_ERR_INPUT,
                             "%s: corrupted checkpoint: checksum mismatch (stored %016" PRIx64 ", data hash %016" PRIx64
                             ")",
                             path, want, got);
        goto done;
    }

    /* Match every tensor of the file to a parameter (or one of its blocks). */
    size_t np = flash_params_n(p);
    src = calloc((np ? np : 1) * (N_BLK + 1), sizeof *src);
    if (!src) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t matched = 0;
    int present[N_BLK + 1] = {0};
    for (int b = -1; b < N_BLK; b++) {
        for (size_t i = 0; i < np; i++) {
            const char *pn = flash_params_name(p, i);
            free(name);
            name = prefixed(b < 0 ? "" : blk_prefix[b], pn);
            if (!name) {
                st = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
            const flash_st_tensor *s = flash_safetensors_find(sf, name);
            if (!s)
                continue;
            st = check_tensor(path, s, name, flash_params_at(p, i), err);
            if (st)
                goto done;
            /* the training loop's guard stops before a non-finite update,
             * so a trained model's checkpoint never holds NaN or infinity:
             * one that does was damaged or made elsewhere */
            const int64_t bad = first_nonfinite_bytes(s->data, s->nbytes);
            if (bad >= 0) {
                st = flash_error_set(err, FLASH_ERR_INPUT, "%s: tensor '%s' holds a non-finite value (at index %lld): "
                                     "refused",
                                     path, name, (long long)bad);
                goto done;
            }
            src[(size_t)(b + 1) * np + i] = s;
            present[b + 1]++;
            matched++;
        }
        /* A block is all there or absent. */
        if (present[b + 1] != 0 && (size_t)present[b + 1] != np) {
            for (size_t i = 0; i < np; i++) {
                if (!src[(size_t)(b + 1) * np + i]) {
                    st = flash_error_set(err, FLASH_ERR_INPUT, "%s: checkpoint has no tensor '%s%s'", path,
                                         b < 0 ? "" : blk_prefix[b], flash_params_name(p, i));
                    goto done;
                }
            }
        }
    }
    if (np > 0 && (size_t)present[0] != np) {
        st = flash_error_set(err, FLASH_ERR_INPUT, "%s: checkpoint has none of the model's parameters (first: '%s')", path,
                             flash_params_name(p, 0));
        goto done;
    }
    if (matched != flash_safetensors_count(sf)) {
        for (size_t j = 0; j < flash_safetensors_count(sf); j++) {
            const flash_st_tensor *s = flash_safetensors_at(sf, j);
            int known = 0;
            for (size_t i = 0; i < np * (N_BLK + 1) && !known; i++)
                known = src[i] == s;
            if (!known) {
                st = flash_error_set(err, FLASH_ERR_INPUT, "%s: tensor '%s' is not a parameter of this model", path,
                                     s->name);
                goto done;
            }
        }
    }

    flash_rng rng;
    memset(&rng, 0, sizeof rng);
    int64_t step = 0;
    if (info) {
        const char *s_step = flash_safetensors_meta(sf, "step");
        const char *s_rng = flash_safetensors_meta(sf, "rng");
        char *e = NULL;
        if (!s_step || !s_rng) {
            st = flash_error_set(err, FLASH_ERR_INPUT, "%s: checkpoint has no %s metadata (a weights-only file)", path,
                                 s_step ? "rng" : "step");
            goto done;
        }
        step = strtoll(s_step, &e, 10);
        if (!*s_step || *e) {
            st = flash_error_set(err, FLASH_ERR_INPUT, "%s: corrupted checkpoint: bad step '%s'", path, s_step);
            goto done;
        }
        if (!parse_rng(s_rng, &rng)) {
            st = flash_error_set(err, FLASH_ERR_INPUT, "%s: corrupted checkpoint: bad rng state '%s'", path, s_rng);
            goto done;
        }
    }

    /* Everything checked: create the blocks the file has, then copy. */
    for (int b = 0; b < N_BLK; b++)
        if (present[b + 1] && (st = ensure_block(p, b, path, err)))
            goto done;
    for (int b = -1; b < N_BLK; b++) {
        if (!present[b + 1])
            continue;
        float *base = flash_params_data(p);
        float *dst = b < 0 ? base : block_of(p, b);
        for (size_t i = 0; i < np; i++) {
            const flash_tensor *t = flash_params_at(p, i);
            const flash_st_tensor *s = src[(size_t)(b + 1) * np + i];
            memcpy(dst + (t->data - base), s->data, s->nbytes);
        }
    }
    if (info) {
        const char *cfg = flash_safetensors_meta(sf, "config");
        if (cfg && !(info->config_yaml = strdup(cfg))) {
            st = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        info->step = step;
        info->rng = rng;
    }
    const char *rk = flash_safetensors_meta(sf, "ranks");
    if (ranks && rk) {
        char *end = NULL;
        long v = strtol(rk, &end, 10);
        *ranks = end != rk && !*end && v > 0 && v < 1000000 ? (int)v : 0;
    }
done:
    free(name);
    free(src);
    flash_safetensors_close(sf);
    return st;
}
