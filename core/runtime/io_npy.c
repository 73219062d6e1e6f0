/* Host arrays and the NPY format (numpy's .npy, versions 1.0 and 2.0).
 *
 * Layout (numpy/lib/format.py): "\x93NUMPY", major, minor, a header length
 * (u16 LE for 1.0, u32 LE for 2.0), then an ASCII Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a final '\n' so the data start on a 64-byte
 * boundary, then the raw little-endian data in C order.
 */
#include "flash/flash.h"
#include "runtime/io_internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "flash's file formats are little-endian and are read and written by memcpy; a big-endian port must swap bytes"
#endif

size_t flash_dtype_size(flash_dtype t)
{
    switch (t) {
    case FLASH_F32: return 4;
    case FLASH_F64: return 8;
    case FLASH_I64: return 8;
    case FLASH_I32: return 4;
    case FLASH_U8: return 1;
    }
    return 0;
}

const char *flash_dtype_name(flash_dtype t)
{
    switch (t) {
    case FLASH_F32: return "F32";
    case FLASH_F64: return "F64";
    case FLASH_I64: return "I64";
    case FLASH_I32: return "I32";
    case FLASH_U8: return "U8";
    }
    return "?";
}

size_t flash_array_numel(const flash_array *a)
{
    size_t n = 1;
    for (int i = 0; i < a->ndim; i++)
        n *= (size_t)a->shape[i];
    return n;
}

void flash_array_free(flash_array *a)
{
    if (!a)
        return;
    free(a->data);
    a->data = NULL;
    a->ndim = 0;
}

static const char *npy_descr(flash_dtype t)
{
    switch (t) {
    case FLASH_F32: return "<f4";
    case FLASH_F64: return "<f8";
    case FLASH_I64: return "<i8";
    case FLASH_I32: return "<i4";
    case FLASH_U8: return "|u1";
    }
    return NULL;
}

/* numel * elem size, refusing negative dims and overflow. */
static int shape_bytes(int ndim, const int64_t *shape, size_t elem, size_t *numel, size_t *nbytes)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return -1;
        if (shape[i] != 0 && n > SIZE_MAX / (uint64_t)shape[i])
            return -1;
        n *= (size_t)shape[i];
    }
    if (elem && n > SIZE_MAX / elem)
        return -1;
    *numel = n;
    *nbytes = n * elem;
    return 0;
}

flash_status flash_npy_write(const char *path, flash_dtype dtype, int ndim, const int64_t *shape, const void *data,
                             flash_error *err)
{
    const char *descr = npy_descr(dtype);
    if (!descr)
        return flash_error_set(err, FLASH_ERR_IO, "%s: npy write: unknown dtype %d", path, (int)dtype);
    if (ndim < 0 || ndim > 8)
        return flash_error_set(err, FLASH_ERR_IO, "%s: npy write: %d dimensions (0 to 8 supported)", path, ndim);
    size_t numel, nbytes;
    if (shape_bytes(ndim, shape, flash_dtype_size(dtype), &numel, &nbytes))
        return flash_error_set(err, FLASH_ERR_IO, "%s: npy write: invalid shape", path);

    /* The dict; ndim <= 8 dims of at most 20 digits keeps this far below the
     * buffer size. A 1-tuple needs its trailing comma: (5,). */
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++)
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%s%" PRId64, i ? ", " : "", shape[i]);
    len += snprintf(dict + len, sizeof dict - (size_t)len, "%s), }", ndim == 1 ? "," : "");

    /* Version 1.0 unless the padded header outgrows its u16 length field
     * (numpy's rule; with at most 8 dimensions it never does). */
    size_t pre = 10;
    size_t padded = (pre + (size_t)len + 1 + 63) / 64 * 64;
    int v2 = padded - pre > 65535;
    if (v2) {
        pre = 12;
        padded = (pre + (size_t)len + 1 + 63) / 64 * 64;
    }
    size_t hlen = padded - pre;
    unsigned char head[512 + 128];
    memcpy(head, "\x93NUMPY", 6);
    head[6] = v2 ? 2 : 1;
    head[7] = 0;
    if (v2) {
        for (int i = 0; i < 4; i++)
            head[8 + i] = (unsigned char)(hlen >> (8 * i));
    } else {
        head[8] = (unsigned char)(hlen & 0xff);
        head[9] = (unsigned char)(hlen >> 8);
    }
    memcpy(head + pre, dict, (size_t)len);
    memset(head + pre + len, ' ', padded - pre - (size_t)len - 1);
    head[padded - 1] = '\n';

    flash_atomic_file af;
    flash_status st = flash_atomic_open(&af, path, err);
    if (st)
        return st;
    if (fwrite(head, 1, padded, af.f) != padded || (nbytes && fwrite(data, 1, nbytes, af.f) != nbytes)) {
        st = flash_error_set(err, FLASH_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        flash_atomic_abort(&af);
        return st;
    }
    return flash_atomic_commit(&af, err);
}

/* ---- reading: a tiny parser for the header's Python dict literal -------- */

typedef struct npy_parser {
    const char *s, *end;
} npy_parser;

static void skip_ws(npy_parser *p)
{
    while (p->s < p->end && isspace((unsigned char)*p->s))
        p->s++;
}

static int eat(npy_parser *p, char c)
{
    skip_ws(p);
    if (p->s < p->end && *p->s == c) {
        p->s++;
        return 1;
    }
    return 0;
}

/* A quoted string ('...' or "...") without escapes into out. */
static int parse_str(npy_parser *p, char *out, size_t size)
{
    skip_ws(p);
    if (p->s >= p->end || (*p->s != '\'' && *p->s != '"'))
        return 0;
    char q = *p->s++;
    size_t n = 0;
    while (p->s < p->end && *p->s != q) {
        if (n + 1 >= size)
            return 0;
        out[n++] = *p->s++;
    }
    if (p->s >= p->end)
        return 0;
    p->s++;
    out[n] = '\0';
    return 1;
}

static int parse_word(npy_parser *p, const char *w)
{
    skip_ws(p);
    size_t n = strlen(w);
    if ((size_t)(p->end - p->s) >= n && memcmp(p->s, w, n) == 0) {
        p->s += n;
        return 1;
    }
    return 0;
}

/* (d0, d1, ...) with an optional trailing comma; Python 2 files may write 3L. */
static int parse_shape(npy_parser *p, int *ndim, int64_t *shape, const char **why)
{
    if (!eat(p, '('))
        return 0;
    *ndim = 0;
    for (;;) {
        if (eat(p, ')'))
            return 1;
        skip_ws(p);
        if (p->s >= p->end || !isdigit((unsigned char)*p->s))
            return 0;
        int64_t v = 0;
        while (p->s < p->end && isdigit((unsigned char)*p->s)) {
            if (v > (INT64_MAX - 9) / 10) {
                *why = "a dimension overflows";
                return 0;
            }
            v = v * 10 + (*p->s++ - '0');
        }
        if (p->s < p->end && (*p->s == 'L' || *p->s == 'l'))
            p->s++;
        if (*ndim >= 8) {
            *why = "more than 8 dimensions";
            return 0;
        }
        shape[(*ndim)++] = v;
        if (!eat(p, ',')) {
            if (eat(p, ')'))
                return 1;
            return 0;
        }
    }
}

static flash_status npy_fail(FILE *f, flash_error *err, flash_status st, const char *path, const char *what)
{
    if (f)
        fclose(f);
    return flash_error_set(err, st, "%s: not a valid .npy file: %s", path, what);
}

flash_status flash_npy_read(const char *path, flash_array *out, flash_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = flash_fopen_input(path, err);
    if (!f) return err ? err->status : FLASH_ERR_INPUT;
    unsigned char pre[12];
    if (fread(pre, 1, 8, f) != 8)
        return npy_fail(f, err, FLASH_ERR_INPUT, path, "shorter than the 8-byte preamble");
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        return npy_fail(f, err, FLASH_ERR_INPUT, path, "bad magic (expected \\x93NUMPY)");
    size_t hlen;
    if (pre[6] == 1) {
        if (fread(pre + 8, 1, 2, f) != 2)
            return npy_fail(f, err, FLASH_ERR_INPUT, path, "truncated header length");
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        /* 3.0 differs from 2.0 only by allowing UTF-8 in the header. */
        if (fread(pre + 8, 1, 4, f) != 4)
            return npy_fail(f, err, FLASH_ERR_INPUT, path, "truncated header length");
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    } else {
        fclose(f);
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: unsupported .npy version %d.%d", path, pre[6], pre[7]);
    }
    if (hlen > (1u << 24))
        return npy_fail(f, err, FLASH_ERR_INPUT, path, "header length implausibly large");
    char *hdr = malloc(hlen + 1);
    if (!hdr) {
        fclose(f);
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
    }
    if (fread(hdr, 1, hlen, f) != hlen) {
        free(hdr);
        return npy_fail(f, err, FLASH_ERR_INPUT, path, "truncated header");
    }
    hdr[hlen] = '\0';

    npy_parser p = {hdr, hdr + hlen};
    char descr[32] = "", key[32];
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0, ndim = 0;
    int64_t shape[8];
    const char *why = NULL;
    int ok = eat(&p, '{');
    while (ok && !eat(&p, '}')) {
        if (!parse_str(&p, key, sizeof key) || !eat(&p, ':')) {
            ok = 0;
            break;
        }
        if (strcmp(key, "descr") == 0) {
            ok = parse_str(&p, descr, sizeof descr);
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (parse_word(&p, "True"))
                fortran = 1;
            else if (parse_word(&p, "False"))
                fortran = 0;
            else
                ok = 0;
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0) {
            ok = parse_shape(&p, &ndim, shape, &why);
            have_shape = 1;
        } else {
            free(hdr);
            fclose(f);
            return flash_error_set(err, FLASH_ERR_INPUT, "%s: not a valid .npy file: unexpected header key '%s'", path,
                                   key);
        }
        if (ok && !eat(&p, ',')) {
            ok = eat(&p, '}');
            break;
        }
    }
    free(hdr);
    if (!ok) {
        fclose(f);
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: not a valid .npy file: malformed header dict%s%s", path,
                               why ? ": " : "", why ? why : "");
    }
    if (!have_descr || !have_fortran || !have_shape)
        return npy_fail(f, err, FLASH_ERR_INPUT, path, "header lacks one of 'descr', 'fortran_order', 'shape'");
    if (fortran) {
        fclose(f);
        return flash_error_set(err, FLASH_ERR_INPUT,
                               "%s: fortran_order True is not supported (save a C-ordered array, "
                               "e.g. np.ascontiguousarray)",
                               path);
    }
    static const struct {
        const char *descr;
        flash_dtype t;
    } known[] = {{"<f4", FLASH_F32}, {"<f8", FLASH_F64}, {"<i8", FLASH_I64}, {"<i4", FLASH_I32},
                 {"|u1", FLASH_U8},  {"<u1", FLASH_U8}};
    int found = -1;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(descr, known[i].descr) == 0)
            found = (int)i;
    if (found < 0) {
        fclose(f);
        if (descr[0] == '>')
            return flash_error_set(err, FLASH_ERR_INPUT,
                                   "%s: big-endian dtype '%s' is not supported (convert with "
                                   "arr.astype(arr.dtype.newbyteorder('<')))",
                                   path, descr);
        return flash_error_set(err, FLASH_ERR_INPUT,
                               "%s: unsupported dtype '%s' (supported: <f4, <f8, <i8, <i4, |u1)", path, descr);
    }
    size_t numel, nbytes;
    flash_dtype dt = known[found].t;
    if (shape_bytes(ndim, shape, flash_dtype_size(dt), &numel, &nbytes))
        return npy_fail(f, err, FLASH_ERR_INPUT, path, "shape too large");
    /* Compare with the bytes present before allocating, so a damaged shape
     * reads as truncation rather than a huge allocation. */
    struct stat sb;
    long here = ftell(f);
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && here >= 0 &&
        (uint64_t)(sb.st_size - here) < (uint64_t)nbytes) {
        fclose(f);
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: truncated .npy: %lld of %zu data bytes present", path,
                               (long long)(sb.st_size - here), nbytes);
    }
    void *data = malloc(nbytes ? nbytes : 1);
    if (!data) {
        fclose(f);
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory for %zu bytes", path, nbytes);
    }
    size_t got = fread(data, 1, nbytes, f);
    if (got != nbytes) {
        free(data);
        fclose(f);
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: truncated .npy: %zu of %zu data bytes present", path, got,
                               nbytes);
    }
    /* Extra bytes mean the header and the data disagree: refuse them rather
     * than guess which one is right. */
    if (fgetc(f) != EOF) {
        free(data);
        fclose(f);
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: .npy has trailing bytes after %zu data bytes", path, nbytes);
    }
    fclose(f);
    out->dtype = dt;
    out->ndim = ndim;
    memcpy(out->shape, shape, sizeof(int64_t) * (size_t)ndim);
    out->data = data;
    return FLASH_OK;
}
