/* safetensors files (https://github.com/huggingface/safetensors, format
 * section of its README):
 *
 *   u64 LE N | N bytes of JSON header, space-padded | data section
 *
 * The header maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets relative to the data section) and may hold a
 * "__metadata__" map of string to string. The Python reader requires the
 * tensors to tile the data section exactly (no gaps, no overlap, nothing
 * after the last one); the writer produces that and the reader checks it.
 *
 * The writer orders tensors by element size, largest first (as the Python
 * writer does), so every tensor starts at a multiple of its element size and
 * the reader can hand out pointers that are correctly aligned for the type.
 */
#include "flash/flash.h"
#include "runtime/io_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

/* The Python implementation refuses headers above 100 MB; so do we, which
 * also keeps a corrupted length field from triggering a huge allocation. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)

/* JSON integers up to 2^53 are exact in cJSON's double. */
#define ST_MAX_INT 9007199254740992.0

static const struct {
    const char *name;
    flash_dtype t;
} st_dtypes[] = {
    {"F32", FLASH_F32}, {"F64", FLASH_F64}, {"I64", FLASH_I64}, {"I32", FLASH_I32}, {"U8", FLASH_U8},
};

/* ---- writing ------------------------------------------------------------ */

typedef struct st_order {
    const flash_st_tensor *t;
    size_t index;
} st_order;

static int by_size_then_index(const void *a, const void *b)
{
    const st_order *x = a, *y = b;
    size_t sx = flash_dtype_size(x->t->dtype), sy = flash_dtype_size(y->t->dtype);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int by_name(const void *a, const void *b)
{
    const st_order *x = a, *y = b;
    return strcmp(x->t->name, y->t->name);
}

/* An integer as a raw JSON number: cJSON prints doubles, which would turn
 * large offsets into exponent notation. */
static cJSON *json_int(uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

static flash_status st_check_tensor(const char *path, const flash_st_tensor *t, flash_error *err)
{
    if (!t->name || !*t->name)
        return flash_error_set(err, FLASH_ERR_IO, "%s: safetensors write: a tensor has an empty name", path);
    if (strcmp(t->name, "__metadata__") == 0)
        return flash_error_set(err, FLASH_ERR_IO, "%s: safetensors write: '__metadata__' is reserved", path);
    if (flash_dtype_size(t->dtype) == 0)
        return flash_error_set(err, FLASH_ERR_IO, "%s: safetensors write: tensor '%s' has unknown dtype %d", path,
                               t->name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > 8)
        return flash_error_set(err, FLASH_ERR_IO, "%s: safetensors write: tensor '%s' has %d dimensions", path,
                               t->name, t->ndim);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            return flash_error_set(err, FLASH_ERR_IO, "%s: safetensors write: tensor '%s' has a negative dimension",
                                   path, t->name);
        numel *= (uint64_t)t->shape[d];
    }
    if (numel * flash_dtype_size(t->dtype) != t->nbytes)
        return flash_error_set(err, FLASH_ERR_IO,
                               "%s: safetensors write: tensor '%s' has %zu bytes but its dtype and shape need %" PRIu64,
                               path, t->name, t->nbytes, numel * flash_dtype_size(t->dtype));
    if (t->nbytes && !t->data)
        return flash_error_set(err, FLASH_ERR_IO, "%s: safetensors write: tensor '%s' has no data", path, t->name);
    return FLASH_OK;
}

flash_status flash_safetensors_write(const char *path, const flash_st_tensor *tensors, size_t n,
                                     const flash_st_meta *meta, size_t n_meta, flash_error *err)
{
    flash_status st = FLASH_OK;
    for (size_t i = 0; i < n && !st; i++)
        st = st_check_tensor(path, &tensors[i], err);
    if (st)
        return st;

    st_order *order = malloc((n ? n : 1) * sizeof *order);
    if (!order)
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        order[i] = (st_order){&tensors[i], i};
    qsort(order, n, sizeof *order, by_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(order[i - 1].t->name, order[i].t->name) == 0) {
            st = flash_error_set(err, FLASH_ERR_IO, "%s: safetensors write: duplicate tensor name '%s'", path,
                                 order[i].t->name);
            free(order);
            return st;
        }
    }
    qsort(order, n, sizeof *order, by_size_then_index);

    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (size_t i = 0; ok && i < n_meta; i++)
            ok = meta[i].key && meta[i].value && cJSON_AddStringToObject(m, meta[i].key, meta[i].value) != NULL;
    }
    uint64_t off = 0;
    for (size_t i = 0; ok && i < n; i++) {
        const flash_st_tensor *t = order[i].t;
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = o ? cJSON_AddArrayToObject(o, "shape") : NULL;
        cJSON *offs = NULL;
        ok = o && cJSON_AddStringToObject(o, "dtype", flash_dtype_name(t->dtype)) && shape;
        for (int d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape, json_int((uint64_t)t->shape[d]));
        if (ok)
            ok = (offs = cJSON_AddArrayToObject(o, "data_offsets")) != NULL;
        ok = ok && cJSON_AddItemToArray(offs, json_int(off)) && cJSON_AddItemToArray(offs, json_int(off + t->nbytes));
        off += t->nbytes;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) {
        free(order);
        for (size_t i = 0; i < n_meta; i++)
            if (!meta[i].key || !meta[i].value)
                return flash_error_set(err, FLASH_ERR_IO, "%s: safetensors write: metadata entry %zu is NULL", path,
                                       i);
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory building the header", path);
    }
    size_t jlen = strlen(json);
    /* Pad with spaces so the data section starts 8-byte aligned. */
    size_t hlen = (jlen + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));

    flash_atomic_file af;
    st = flash_atomic_open(&af, path, err);
    if (st) {
        free(json);
        free(order);
        return st;
    }
    int wok = fwrite(len8, 1, 8, af.f) == 8 && fwrite(json, 1, jlen, af.f) == jlen;
    for (size_t i = jlen; wok && i < hlen; i++)
        wok = fputc(' ', af.f) != EOF;
    for (size_t i = 0; wok && i < n; i++)
        wok = order[i].t->nbytes == 0 || fwrite(order[i].t->data, 1, order[i].t->nbytes, af.f) == order[i].t->nbytes;
    free(json);
    free(order);
    if (!wok) {
        st = flash_error_set(err, FLASH_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        flash_atomic_abort(&af);
        return st;
    }
    return flash_atomic_commit(&af, err);
}

/* ---- reading ------------------------------------------------------------ */

struct flash_safetensors {
    char *path;
    unsigned char *buf;        /* the whole file, placed so the data section is 16-byte aligned */
    const unsigned char *data; /* data section */
    size_t data_size;
    cJSON *root; /* names and metadata strings point into it */
    flash_st_tensor *t;
    size_t n;
    const cJSON **meta;
    size_t n_meta;
    void **copies; /* aligned copies of tensors a foreign writer left misaligned */
    size_t n_copies;
};

void flash_safetensors_close(flash_safetensors *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_copies; i++)
        free(st->copies[i]);
    free(st->copies);
    free(st->meta);
    free(st->t);
    cJSON_Delete(st->root);
    free(st->buf);
    free(st->path);
    free(st);
}

size_t flash_safetensors_count(const flash_safetensors *st)
{
    return st ? st->n : 0;
}

const flash_st_tensor *flash_safetensors_at(const flash_safetensors *st, size_t i)
{
    return st && i < st->n ? &st->t[i] : NULL;
}

const flash_st_tensor *flash_safetensors_find(const flash_safetensors *st, const char *name)
{
    if (!st || !name)
        return NULL;
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->t[i].name, name) == 0)
            return &st->t[i];
    return NULL;
}

const char *flash_safetensors_meta(const flash_safetensors *st, const char *key)
{
    if (!st || !key)
        return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i]->string, key) == 0)
            return st->meta[i]->valuestring;
    return NULL;
}

/* A non-negative JSON integer. */
static int json_u64(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != (double)(uint64_t)d)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

typedef struct st_span {
    uint64_t begin, end;
    size_t index;
} st_span;

static int by_begin(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

#define ST_BAD(...) (st_status = flash_error_set(err, FLASH_ERR_INPUT, __VA_ARGS__), ok = 0)

/* Parses and validates the header; fills st->t, st->meta. */
static flash_status st_parse(flash_safetensors *st, const char *json, size_t hlen, flash_error *err)
{
    const char *path = st->path;
    flash_status st_status = FLASH_OK;
    int ok = 1;
    const char *end = NULL;
    st->root = cJSON_ParseWithLengthOpts(json, hlen, &end, 0);
    if (!st->root || !cJSON_IsObject(st->root))
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: corrupted safetensors file: the header is not a JSON object",
                               path);
    /* Only the space padding may follow the object. */
    for (; end && end < json + hlen; end++)
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r')
            return flash_error_set(err, FLASH_ERR_INPUT,
                                   "%s: corrupted safetensors file: bytes after the header's JSON object", path);
    size_t n_items = (size_t)cJSON_GetArraySize(st->root);
    st->t = calloc(n_items ? n_items : 1, sizeof *st->t);
    st_span *spans = calloc(n_items ? n_items : 1, sizeof *spans);
    if (!st->t || !spans) {
        free(spans);
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, st->root)
    {
        const char *name = item->string;
        if (!ok)
            break;
        if (strcmp(name, "__metadata__") == 0) {
            if (st->meta) {
                ST_BAD("%s: corrupted safetensors file: '__metadata__' appears twice", path);
                break;
            }
            if (!cJSON_IsObject(item)) {
                ST_BAD("%s: corrupted safetensors file: '__metadata__' is not an object", path);
                break;
            }
            size_t nm = (size_t)cJSON_GetArraySize(item);
            st->meta = calloc(nm ? nm : 1, sizeof *st->meta);
            if (!st->meta) {
                st_status = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
                ok = 0;
                break;
            }
            const cJSON *m;
            cJSON_ArrayForEach(m, item)
            {
                if (!cJSON_IsString(m)) {
                    ST_BAD("%s: corrupted safetensors file: metadata '%s' is not a string", path, m->string);
                    break;
                }
                st->meta[st->n_meta++] = m;
            }
            continue;
        }
        if (!cJSON_IsObject(item)) {
            ST_BAD("%s: corrupted safetensors file: entry '%s' is not an object", path, name);
            break;
        }
        flash_st_tensor *t = &st->t[st->n];
        t->name = name;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs)) {
            ST_BAD("%s: corrupted safetensors file: tensor '%s' lacks dtype, shape or data_offsets", path, name);
            break;
        }
        int known = 0;
        for (size_t k = 0; k < sizeof st_dtypes / sizeof st_dtypes[0]; k++) {
            if (strcmp(dt->valuestring, st_dtypes[k].name) == 0) {
                t->dtype = st_dtypes[k].t;
                known = 1;
            }
        }
        if (!known) {
            ST_BAD("%s: tensor '%s' has dtype '%s' (supported: F32, F64, I64, I32, U8)", path, name, dt->valuestring);
            break;
        }
        int nd = cJSON_GetArraySize(shape);
        if (nd > 8) {
            ST_BAD("%s: tensor '%s' has %d dimensions (at most 8 supported)", path, name, nd);
            break;
        }
        t->ndim = nd;
        double numel = 1;
        uint64_t numel_u = 1;
        for (int d = 0; d < nd; d++) {
            uint64_t v;
            if (!json_u64(cJSON_GetArrayItem(shape, d), &v)) {
                ST_BAD("%s: corrupted safetensors file: tensor '%s' has a bad shape", path, name);
                break;
            }
            t->shape[d] = (int64_t)v;
            numel *= (double)v;
            numel_u *= v;
        }
        if (!ok)
            break;
        uint64_t b, e;
        if (cJSON_GetArraySize(offs) != 2 || !json_u64(cJSON_GetArrayItem(offs, 0), &b) ||
            !json_u64(cJSON_GetArrayItem(offs, 1), &e) || e < b) {
            ST_BAD("%s: corrupted safetensors file: tensor '%s' has bad data_offsets", path, name);
            break;
        }
        size_t es = flash_dtype_size(t->dtype);
        if (numel * (double)es > ST_MAX_INT || numel_u * es != e - b) {
            ST_BAD("%s: corrupted safetensors file: tensor '%s' spans %" PRIu64
                   " bytes but its dtype and shape need %.0f",
                   path, name, e - b, numel * (double)es);
            break;
        }
        if (e > st->data_size) {
            ST_BAD("%s: truncated safetensors file: tensor '%s' ends at byte %" PRIu64
                   " of the data section, which has only %zu bytes",
                   path, name, e, st->data_size);
            break;
        }
        t->nbytes = (size_t)(e - b);
        t->data = st->data + b;
        spans[st->n] = (st_span){b, e, st->n};
        st->n++;
    }
    if (ok) {
        /* Tensors must tile the data section: sorted by offset, each begins
         * where the previous ended and the last ends at the end of the file. */
        qsort(spans, st->n, sizeof *spans, by_begin);
        uint64_t at = 0;
        for (size_t i = 0; ok && i < st->n; i++) {
            if (spans[i].begin < at)
                ST_BAD("%s: corrupted safetensors file: tensor '%s' overlaps another tensor", path,
                       st->t[spans[i].index].name);
            else if (spans[i].begin > at)
                ST_BAD("%s: corrupted safetensors file: %" PRIu64 " unused bytes before tensor '%s'", path,
                       spans[i].begin - at, st->t[spans[i].index].name);
            at = spans[i].end;
        }
        if (ok && at != st->data_size)
            ST_BAD("%s: corrupted safetensors file: %" PRIu64 " bytes after the last tensor", path,
                   (uint64_t)st->data_size - at);
    }
    free(spans);
    if (!ok)
        return st_status;
    /* Duplicate names (JSON allows them; safetensors does not). */
    for (size_t i = 0; i < st->n; i++)
        for (size_t j = i + 1; j < st->n; j++)
            if (strcmp(st->t[i].name, st->t[j].name) == 0)
                return flash_error_set(err, FLASH_ERR_INPUT, "%s: corrupted safetensors file: tensor '%s' appears twice",
                                       path, st->t[i].name);
    for (size_t i = 0; i < st->n_meta; i++)
        for (size_t j = i + 1; j < st->n_meta; j++)
            if (strcmp(st->meta[i]->string, st->meta[j]->string) == 0)
                return flash_error_set(err, FLASH_ERR_INPUT,
                                       "%s: corrupted safetensors file: metadata '%s' appears twice", path,
                                       st->meta[i]->string);
    return FLASH_OK;
}

/* Tensors whose offset is not a multiple of their element size (legal in
 * the format, never written by flash or the Python writer) get an aligned
 * copy, so callers can always read the data through a typed pointer. */
static flash_status st_align(flash_safetensors *st, flash_error *err)
{
    for (size_t i = 0; i < st->n; i++) {
        flash_st_tensor *t = &st->t[i];
        if ((uintptr_t)t->data % flash_dtype_size(t->dtype) == 0)
            continue;
        if (!st->copies && !(st->copies = calloc(st->n, sizeof *st->copies)))
            return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", st->path);
        void *c = malloc(t->nbytes);
        if (!c)
            return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", st->path);
        memcpy(c, t->data, t->nbytes);
        st->copies[st->n_copies++] = c;
        t->data = c;
    }
    return FLASH_OK;
}

flash_status flash_safetensors_open(const char *path, flash_safetensors **out, flash_error *err)
{
    *out = NULL;
    flash_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
    }
    flash_status rc = FLASH_OK;
    FILE *f = flash_fopen_input(path, err);
    if (!f) {
        rc = err ? err->status : FLASH_ERR_INPUT;
        goto fail;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = flash_error_set(err, FLASH_ERR_INPUT, "%s: not a regular file", path);
        goto fail;
    }
    size_t size = (size_t)sb.st_size;
    unsigned char len8[8];
    if (size < 8 || fread(len8, 1, 8, f) != 8) {
        rc = flash_error_set(err, FLASH_ERR_INPUT,
                             "%s: truncated safetensors file: %zu bytes, shorter than the 8-byte header length",
                             path, size);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)len8[i] << (8 * i);
    if (hlen > size - 8) {
        rc = flash_error_set(err, FLASH_ERR_INPUT,
                             "%s: truncated or corrupted safetensors file: header of %" PRIu64
                             " bytes but only %zu bytes follow the length field",
                             path, hlen, size - 8);
        goto fail;
    }
    if (hlen > ST_MAX_HEADER || hlen < 2) {
        rc = flash_error_set(err, FLASH_ERR_INPUT, "%s: corrupted safetensors file: header length %" PRIu64, path, hlen);
        goto fail;
    }
    size_t pad = (16 - (8 + (size_t)hlen) % 16) % 16;
    st->buf = malloc(size + pad + 1);
    if (!st->buf) {
        rc = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory for %zu bytes", path, size);
        goto fail;
    }
    unsigned char *file = st->buf + pad;
    memcpy(file, len8, 8);
    size_t rest = size - 8;
    if (fread(file + 8, 1, rest, f) != rest) {
        rc = flash_error_set(err, FLASH_ERR_INPUT, "%s: read failed or the file shrank while reading", path);
        goto fail;
    }
    if (fgetc(f) != EOF) {
        rc = flash_error_set(err, FLASH_ERR_INPUT, "%s: the file grew while reading", path);
        goto fail;
    }
    fclose(f);
    f = NULL;
    st->data = file + 8 + hlen;
    st->data_size = size - 8 - (size_t)hlen;
    if (file[8] != '{') {
        rc = flash_error_set(err, FLASH_ERR_INPUT, "%s: corrupted safetensors file: the header does not start with '{'",
                             path);
        goto fail;
    }
    rc = st_parse(st, (const char *)file + 8, (size_t)hlen, err);
    if (!rc)
        rc = st_align(st, err);
    if (rc)
        goto fail;
    *out = st;
    return FLASH_OK;
fail:
    if (f)
        fclose(f);
    flash_safetensors_close(st);
    return rc;
}

const unsigned char *flash_safetensors_data_section(const flash_safetensors *st, size_t *size)
{
    *size = st->data_size;
    return st->data;
}
