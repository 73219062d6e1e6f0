/* IDX files (the MNIST distribution format), plain or gzip-compressed.
 *
 * Layout (http://yann.lecun.com/exdb/mnist/): a big-endian magic 0x0000TTDD
 * (TT = 0x08 for unsigned bytes, DD = number of dimensions), DD big-endian
 * u32 dimensions, then the payload. Only u8 labels (0x00000801) and images
 * (0x00000803) are read. zlib's gzread reads plain files unchanged, so one
 * path serves both.
 */
#include "flash/flash.h"
#include "runtime/io_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* Reads exactly n bytes; returns the count read (short on EOF) or -1 on a
 * zlib error (a truncated or corrupted gzip stream). */
static long long gz_read_all(gzFile g, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t chunk = n - got;
        if (chunk > (size_t)INT_MAX / 2)
            chunk = (size_t)INT_MAX / 2;
        int r = gzread(g, (char *)buf + got, (unsigned)chunk);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    int zerr;
    gzerror(g, &zerr);
    if (zerr != Z_OK)
        return -1;
    return (long long)got;
}

static flash_status gz_fail(gzFile g, flash_error *err, const char *path, const char *what)
{
    int zerr;
    const char *zmsg = gzerror(g, &zerr);
    flash_status st;
    if (zerr != Z_OK && zerr != Z_ERRNO)
        st = flash_error_set(err, FLASH_ERR_INPUT, "%s: %s (gzip: %s)", path, what, zmsg);
    else
        st = flash_error_set(err, FLASH_ERR_INPUT, "%s: %s", path, what);
    gzclose(g);
    return st;
}

flash_status flash_idx_read(const char *path, flash_array *out, flash_error *err)
{
    memset(out, 0, sizeof *out);
    errno = 0;
    int fd = flash_open_input(path, err);
    if (fd < 0) return err ? err->status : FLASH_ERR_INPUT;
    gzFile g = gzdopen(fd, "rb");
    if (!g) close(fd);
    if (!g)
        return flash_error_set(err, errno == ENOMEM ? FLASH_ERR_NOMEM : FLASH_ERR_INPUT, "%s: cannot open: %s", path,
                                errno ? strerror(errno) : "gzopen failed");
    unsigned char hdr[4 + 4 * 3];
    if (gz_read_all(g, hdr, 4) != 4)
        return gz_fail(g, err, path, "not an IDX file: shorter than the 4-byte magic");
    uint32_t magic = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (magic != 0x00000801u && magic != 0x00000803u) {
        gzclose(g);
        return flash_error_set(err, FLASH_ERR_INPUT,
                               "%s: not a u8 IDX file: magic 0x%08x (expected 0x00000801 labels or 0x00000803 images)",
                               path, magic);
    }
    int ndim = (int)(magic & 0xff);
    if (gz_read_all(g, hdr + 4, 4 * (size_t)ndim) != 4 * ndim)
        return gz_fail(g, err, path, "truncated IDX header");
    size_t total = 1;
    for (int d = 0; d < ndim; d++) {
        const unsigned char *b = hdr + 4 + 4 * d;
        uint32_t v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        out->shape[d] = v;
        if (v && total > SIZE_MAX / v) {
            gzclose(g);
            return flash_error_set(err, FLASH_ERR_INPUT, "%s: IDX dimensions overflow", path);
        }
        total *= v;
    }
    /* Read in growing chunks rather than allocating what the header claims
     * up front: a damaged header then reads as truncation, not as a huge
     * allocation. */
    size_t cap = total < ((size_t)1 << 24) ? total : ((size_t)1 << 24);
    uint8_t *data = malloc(cap ? cap : 1);
    if (!data) {
        gzclose(g);
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory for %zu bytes", path, cap);
    }
    long long got = 0;
    while ((size_t)got < total) {
        if ((size_t)got == cap) {
            size_t ncap = cap > total / 2 ? total : cap * 2;
            uint8_t *grown = realloc(data, ncap);
            if (!grown) {
                free(data);
                gzclose(g);
                return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory for %zu bytes", path, ncap);
            }
            data = grown;
            cap = ncap;
        }
        long long r = gz_read_all(g, data + got, cap - (size_t)got);
        if (r < 0) {
            got = -1;
            break;
        }
        got += r;
        if ((size_t)got < cap)
            break; /* end of input */
    }
    if (got < 0 || (size_t)got != total) {
        char what[128];
        if (got < 0)
            snprintf(what, sizeof what, "corrupted or truncated IDX payload (%zu bytes expected)", total);
        else
            snprintf(what, sizeof what, "truncated IDX payload: %lld of %zu bytes", got, total);
        free(data);
        return gz_fail(g, err, path, what);
    }
    unsigned char extra;
    long long more = gz_read_all(g, &extra, 1);
    if (more != 0) {
        free(data);
        return gz_fail(g, err, path,
                       more < 0 ? "corrupted data after the IDX payload" : "trailing bytes after the IDX payload");
    }
    if (gzclose(g) != Z_OK) {
        free(data);
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: error closing the (gzip) stream", path);
    }
    out->dtype = FLASH_U8;
    out->ndim = ndim;
    out->data = data;
    return FLASH_OK;
}
