/* File I/O: atomic writes, NPY (against files written by numpy), safetensors,
 * IDX (plain and gzip), PNG (read back with libpng), JSONL. */
#include "flash/flash.h"
#include "tmpdir_fixture.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static void setup(void)
{
    tmpdir_create("/tmp", "flash_test_io");
}

static const char *fixture(const char *name)
{
    static char buf[1024];
    const char *src = getenv("FLASH_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/tests/data/io/%s", src ? src : FLASH_SOURCE_DIR, name);
    return buf;
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    char *buf;
    flash_error err = {0};
    ck_assert_msg(flash_read_file(path, &buf, n, &err) == FLASH_OK, "%s", err.msg);
    return (unsigned char *)buf;
}

/* Number of entries in g_dir (to see that no temp file is left behind). */
static int dir_entries(void)
{
    DIR *d = opendir(g_dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* The error names the file and says what is wrong. */
static void assert_refused(flash_status st, const flash_error *err, const char *path, const char *what)
{
    ck_assert_int_ne(st, FLASH_OK);
    ck_assert_msg(strstr(err->msg, path) != NULL, "message '%s' does not name '%s'", err->msg, path);
    ck_assert_msg(strstr(err->msg, what) != NULL, "message '%s' does not say '%s'", err->msg, what);
}

/* ---- atomic files ------------------------------------------------------- */

START_TEST(test_atomic_write_replaces_and_leaves_no_temp)
{
    flash_error err = {0};
    const char *p = tmp_path("a.txt");
    ck_assert_int_eq(flash_write_file_atomic(p, "old", 3, &err), FLASH_OK);
    ck_assert_int_eq(flash_write_file_atomic(p, "new contents", 12, &err), FLASH_OK);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    ck_assert_uint_eq(n, 12);
    ck_assert_mem_eq(b, "new contents", 12);
    ck_assert_int_eq(b[n], '\0');
    free(b);
    ck_assert_int_eq(dir_entries(), 1);
}
END_TEST

START_TEST(test_atomic_abort_keeps_old_file)
{
    flash_error err = {0};
    const char *p = tmp_path("b.txt");
    ck_assert_int_eq(flash_write_file_atomic(p, "old", 3, &err), FLASH_OK);
    flash_atomic_file af;
    ck_assert_int_eq(flash_atomic_open(&af, p, &err), FLASH_OK);
    fputs("half-written", af.f);
    fflush(af.f);
    ck_assert_int_eq(dir_entries(), 2); /* the temp file exists next to the target */
    flash_atomic_abort(&af);
    ck_assert_int_eq(dir_entries(), 1);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(b, "old", 3);
    free(b);
    flash_atomic_abort(&af); /* a second abort is harmless */
}
END_TEST

START_TEST(test_atomic_open_missing_dir_fails)
{
    flash_error err = {0};
    const char *p = tmp_path("no/such/dir/c.txt");
    assert_refused(flash_write_file_atomic(p, "x", 1, &err), &err, p, "temp file");
    ck_assert_int_eq(dir_entries(), 0);
}
END_TEST

START_TEST(test_read_file_missing)
{
    flash_error err = {0};
    char *buf = (char *)1;
    size_t n = 7;
    const char *p = tmp_path("missing");
    assert_refused(flash_read_file(p, &buf, &n, &err), &err, p, "No such file");
    ck_assert_ptr_null(buf);
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(test_mkdirs)
{
    flash_error err = {0};
    const char *p = tmp_path("x/y//z/");
    ck_assert_int_eq(flash_mkdirs(p, &err), FLASH_OK);
    ck_assert_int_eq(flash_mkdirs(p, &err), FLASH_OK); /* existing is fine */
    struct stat sb;
    ck_assert_int_eq(stat(tmp_path("x/y/z"), &sb), 0);
    ck_assert(S_ISDIR(sb.st_mode));
    /* A file in the way is an error naming it. */
    ck_assert_int_eq(flash_write_file_atomic(tmp_path("f"), "1", 1, &err), FLASH_OK);
    const char *q = tmp_path("f/g");
    assert_refused(flash_mkdirs(q, &err), &err, q, "not a directory");
}
END_TEST

/* ---- NPY ---------------------------------------------------------------- */

START_TEST(test_npy_roundtrip_f32)
{
    flash_error err = {0};
    int64_t shape[3] = {3, 4, 5};
    float v[60];
    for (int i = 0; i < 60; i++)
        v[i] = sinf((float)i * 0.7f) * 1e3f + (float)i * 1e-7f;
    v[7] = -0.0f;
    v[8] = INFINITY;
    const char *p = tmp_path("a.npy");
    ck_assert_int_eq(flash_npy_write(p, FLASH_F32, 3, shape, v, &err), FLASH_OK);
    flash_array a;
    ck_assert_msg(flash_npy_read(p, &a, &err) == FLASH_OK, "%s", err.msg);
    ck_assert_int_eq(a.dtype, FLASH_F32);
    ck_assert_int_eq(a.ndim, 3);
    for (int d = 0; d < 3; d++)
        ck_assert_int_eq(a.shape[d], shape[d]);
    ck_assert_uint_eq(flash_array_numel(&a), 60);
    ck_assert_mem_eq(a.data, v, sizeof v);
    flash_array_free(&a);
    ck_assert_ptr_null(a.data);
    /* The data start on a 64-byte boundary, as numpy writes them. */
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    ck_assert_uint_eq((n - sizeof v) % 64, 0);
    free(b);
}
END_TEST

START_TEST(test_npy_roundtrip_i64)
{
    flash_error err = {0};
    int64_t shape[1] = {6};
    int64_t v[6] = {0, -1, 1, INT64_MAX, INT64_MIN, 1234567890123LL};
    const char *p = tmp_path("b.npy");
    ck_assert_int_eq(flash_npy_write(p, FLASH_I64, 1, shape, v, &err), FLASH_OK);
    flash_array a;
    ck_assert_msg(flash_npy_read(p, &a, &err) == FLASH_OK, "%s", err.msg);
    ck_assert_int_eq(a.dtype, FLASH_I64);
    ck_assert_int_eq(a.ndim, 1);
    ck_assert_int_eq(a.shape[0], 6);
    ck_assert_mem_eq(a.data, v, sizeof v);
    flash_array_free(&a);
}
END_TEST

/* The writer produces the same bytes as numpy.save for the same array. */
START_TEST(test_npy_writer_matches_numpy)
{
    flash_error err = {0};
    float f[6];
    for (int k = 0; k < 6; k++)
        f[k] = (float)k * 0.25f - 1.0f;
    uint8_t u[12];
    for (int k = 0; k < 12; k++)
        u[k] = (uint8_t)(20 * k + 3);
    const flash_st_tensor cases[] = {
        {"f32_2x3.npy", FLASH_F32, 2, {2, 3}, f, sizeof f},
        {"u8_3x4.npy", FLASH_U8, 2, {3, 4}, u, sizeof u},
    };
    for (size_t i = 0; i < 2; i++) {
        const char *p = tmp_path(cases[i].name);
        ck_assert_int_eq(flash_npy_write(p, cases[i].dtype, cases[i].ndim, cases[i].shape, cases[i].data, &err),
                         FLASH_OK);
        size_t n1, n2;
        unsigned char *mine = read_bytes(p, &n1);
        unsigned char *ref = read_bytes(fixture(cases[i].name), &n2);
        ck_assert_uint_eq(n1, n2);
        ck_assert_mem_eq(mine, ref, n1);
        free(mine);
        free(ref);
    }
}
END_TEST

/* Element k of a, whatever its dtype, as a double (exact for these files). */
static double npy_elem(const flash_array *a, size_t k)
{
    switch (a->dtype) {
    case FLASH_F32: return ((const float *)a->data)[k];
    case FLASH_F64: return ((const double *)a->data)[k];
    case FLASH_I64: return (double)((const int64_t *)a->data)[k];
    case FLASH_I32: return ((const int32_t *)a->data)[k];
    case FLASH_U8: return ((const uint8_t *)a->data)[k];
    default: ck_abort_msg("dtype %d", (int)a->dtype);
    }
    return NAN;
}

/* The closed forms of tests/data/make_io_fixtures.py, at flat index k. */
static double quarter_minus_one(size_t k) { return (float)k * 0.25f - 1.0f; }
static double reciprocal(size_t k) { return 1.0 / ((double)k + 1.0); }
static double tera(size_t k) { return ((double)k - 2.0) * 1e12; }
static double minus_four(size_t k) { return (double)k - 4.0; }
static double twenty_k_plus_three(size_t k) { return 20.0 * (double)k + 3.0; }
static double two_and_a_half(size_t k) { (void)k; return 2.5; }

START_TEST(test_npy_reads_numpy_files)
{
    static const struct {
        const char *file;
        flash_dtype dtype;
        int ndim;
        int64_t shape[3];
        size_t numel;
        double (*want)(size_t k);
    } cases[] = {
        {"f32_2x3.npy", FLASH_F32, 2, {2, 3}, 6, quarter_minus_one},
        /* the same array in format version 2.0 (u32 header length) */
        {"f32_v2.npy", FLASH_F32, 2, {2, 3}, 6, quarter_minus_one},
        {"f64_4.npy", FLASH_F64, 1, {4}, 4, reciprocal},
        {"i64_5.npy", FLASH_I64, 1, {5}, 5, tera},
        {"i32_2x2x2.npy", FLASH_I32, 3, {2, 2, 2}, 8, minus_four},
        {"u8_3x4.npy", FLASH_U8, 2, {3, 4}, 12, twenty_k_plus_three},
        {"f32_scalar.npy", FLASH_F32, 0, {0}, 1, two_and_a_half},
        {"f32_empty.npy", FLASH_F32, 2, {0, 3}, 0, NULL},
    };
    flash_error err = {0};
    flash_array a;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *file = cases[c].file;
        ck_assert_msg(flash_npy_read(fixture(file), &a, &err) == FLASH_OK, "%s", err.msg);
        ck_assert_msg(a.dtype == cases[c].dtype, "%s: dtype %d", file, (int)a.dtype);
        ck_assert_msg(a.ndim == cases[c].ndim, "%s: ndim %d", file, a.ndim);
        for (int j = 0; j < a.ndim; j++)
            ck_assert_msg(a.shape[j] == cases[c].shape[j], "%s: dimension %d is %lld", file, j, (long long)a.shape[j]);
        ck_assert_uint_eq(flash_array_numel(&a), cases[c].numel);
        for (size_t k = 0; k < cases[c].numel; k++)
            ck_assert_msg(npy_elem(&a, k) == cases[c].want(k), "%s[%zu] = %.17g, want %.17g", file, k, npy_elem(&a, k),
                          cases[c].want(k));
        flash_array_free(&a);
    }
}
END_TEST

START_TEST(test_npy_refuses_unsupported_layouts)
{
    flash_error err = {0};
    flash_array a;
    const char *p = fixture("fortran.npy");
    assert_refused(flash_npy_read(p, &a, &err), &err, p, "fortran_order");
    ck_assert_ptr_null(a.data);
    p = fixture("bigendian.npy");
    assert_refused(flash_npy_read(p, &a, &err), &err, p, "big-endian");
    ck_assert_ptr_null(a.data);
}
END_TEST

START_TEST(test_npy_refuses_truncated_and_bad_magic)
{
    flash_error err = {0};
    flash_array a;
    size_t n;
    unsigned char *ref = read_bytes(fixture("f32_2x3.npy"), &n);
    const char *p = tmp_path("t.npy");
    /* Every truncation point: inside the preamble, the header, the data. */
    for (size_t cut = 0; cut < n; cut++) {
        write_bytes(p, ref, cut);
        flash_status st = flash_npy_read(p, &a, &err);
        ck_assert_msg(st != FLASH_OK, "truncated to %zu bytes accepted", cut);
        ck_assert_msg(strstr(err.msg, p) != NULL, "message '%s' does not name the file", err.msg);
        ck_assert_ptr_null(a.data);
    }
    write_bytes(p, ref, n - 1);
    assert_refused(flash_npy_read(p, &a, &err), &err, p, "truncated");

    unsigned char *bad = malloc(n + 1);
    memcpy(bad, ref, n);
    bad[1] = 'X';
    write_bytes(p, bad, n);
    assert_refused(flash_npy_read(p, &a, &err), &err, p, "magic");

    memcpy(bad, ref, n);
    bad[n] = 0;
    write_bytes(p, bad, n + 1);
    assert_refused(flash_npy_read(p, &a, &err), &err, p, "trailing");

    /* A damaged shape claiming petabytes reads as truncation. */
    const char *huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000000,), }";
    memcpy(bad, ref, n);
    memset(bad + 10, ' ', 117);
    memcpy(bad + 10, huge, strlen(huge));
    write_bytes(p, bad, n);
    assert_refused(flash_npy_read(p, &a, &err), &err, p, "truncated");

    /* A header that is not a dict. */
    memcpy(bad, ref, n);
    bad[10] = '[';
    write_bytes(p, bad, n);
    assert_refused(flash_npy_read(p, &a, &err), &err, p, "header");
    free(bad);
    free(ref);
}
END_TEST

/* ---- safetensors -------------------------------------------------------- */

/* Little-endian u64 at p. */
static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A file from a hand-written header and data section. */
static void write_st(const char *path, const char *json, const void *data, size_t n)
{
    size_t hl = strlen(json);
    unsigned char *b = malloc(8 + hl + n + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    if (n)
        memcpy(b + 8 + hl, data, n);
    write_bytes(path, b, 8 + hl + n);
    free(b);
}

START_TEST(test_safetensors_roundtrip)
{
    flash_error err = {0};
    uint8_t u[5] = {1, 2, 3, 250, 255};
    float f[12];
    for (int i = 0; i < 12; i++)
        f[i] = (float)i / 7.0f - 0.5f;
    int64_t l[3] = {-5, 0, INT64_MAX};
    double d[2] = {M_PI, -1e300};
    int32_t k[4] = {INT32_MIN, -1, 0, INT32_MAX};
    /* Mixed sizes in an order that would misalign if written as given. */
    flash_st_tensor ts[] = {
        {"bytes", FLASH_U8, 1, {5}, u, sizeof u},
        {"weights.w", FLASH_F32, 3, {2, 3, 2}, f, sizeof f},
        {"longs", FLASH_I64, 1, {3}, l, sizeof l},
        {"doubles", FLASH_F64, 2, {1, 2}, d, sizeof d},
        {"ints", FLASH_I32, 2, {2, 2}, k, sizeof k},
        {"scalar", FLASH_F32, 0, {0}, f + 3, sizeof(float)},
        {"empty", FLASH_F32, 2, {0, 4}, NULL, 0},
    };
    size_t nt = sizeof ts / sizeof ts[0];
    flash_st_meta meta[] = {{"format", "test"}, {"quote\"d", "line\nbreak \\ \"q\""}};
    const char *p = tmp_path("t.safetensors");
    ck_assert_msg(flash_safetensors_write(p, ts, nt, meta, 2, &err) == FLASH_OK, "%s", err.msg);
    ck_assert_int_eq(dir_entries(), 1);

    size_t n;
    unsigned char *raw = read_bytes(p, &n);
    uint64_t hl = le64(raw);
    ck_assert_uint_eq((8 + hl) % 8, 0);
    ck_assert_int_eq(raw[8], '{');
    ck_assert_uint_eq(n, 8 + hl + sizeof u + sizeof f + sizeof l + sizeof d + sizeof k + sizeof(float));
    free(raw);

    flash_safetensors *st;
    ck_assert_msg(flash_safetensors_open(p, &st, &err) == FLASH_OK, "%s", err.msg);
    ck_assert_uint_eq(flash_safetensors_count(st), nt);
    for (size_t i = 0; i < nt; i++) {
        const flash_st_tensor *t = flash_safetensors_find(st, ts[i].name);
        ck_assert_ptr_nonnull(t);
        ck_assert_str_eq(t->name, ts[i].name);
        ck_assert_int_eq(t->dtype, ts[i].dtype);
        ck_assert_int_eq(t->ndim, ts[i].ndim);
        for (int j = 0; j < t->ndim; j++)
            ck_assert_int_eq(t->shape[j], ts[i].shape[j]);
        ck_assert_uint_eq(t->nbytes, ts[i].nbytes);
        if (t->nbytes)
            ck_assert_mem_eq(t->data, ts[i].data, t->nbytes);
        ck_assert_uint_eq((uintptr_t)t->data % flash_dtype_size(t->dtype), 0);
    }
    ck_assert_ptr_null(flash_safetensors_find(st, "nope"));
    ck_assert_ptr_null(flash_safetensors_at(st, nt));
    ck_assert_str_eq(flash_safetensors_meta(st, "format"), "test");
    ck_assert_str_eq(flash_safetensors_meta(st, "quote\"d"), "line\nbreak \\ \"q\"");
    ck_assert_ptr_null(flash_safetensors_meta(st, "absent"));
    flash_safetensors_close(st);
    flash_safetensors_close(NULL);
}
END_TEST

START_TEST(test_safetensors_writer_refuses_bad_input)
{
    flash_error err = {0};
    float f[4] = {0};
    const char *p = tmp_path("w.safetensors");
    flash_st_tensor dup[] = {{"a", FLASH_F32, 1, {4}, f, 16}, {"a", FLASH_F32, 1, {4}, f, 16}};
    assert_refused(flash_safetensors_write(p, dup, 2, NULL, 0, &err), &err, p, "duplicate");
    flash_st_tensor size[] = {{"a", FLASH_F32, 1, {4}, f, 12}};
    assert_refused(flash_safetensors_write(p, size, 1, NULL, 0, &err), &err, p, "need");
    flash_st_tensor reserved[] = {{"__metadata__", FLASH_F32, 1, {4}, f, 16}};
    assert_refused(flash_safetensors_write(p, reserved, 1, NULL, 0, &err), &err, p, "reserved");
    ck_assert_int_eq(dir_entries(), 0);
}
END_TEST

START_TEST(test_safetensors_refuses_truncation)
{
    flash_error err = {0};
    float f[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    flash_st_tensor ts[] = {{"a", FLASH_F32, 1, {3}, f, 12}, {"b", FLASH_F32, 2, {1, 5}, f + 3, 20}};
    flash_st_meta meta[] = {{"k", "v"}};
    const char *p = tmp_path("t.safetensors");
    ck_assert_int_eq(flash_safetensors_write(p, ts, 2, meta, 1, &err), FLASH_OK);
    size_t n;
    unsigned char *raw = read_bytes(p, &n);
    const char *q = tmp_path("cut.safetensors");
    for (size_t cut = 0; cut < n; cut++) {
        write_bytes(q, raw, cut);
        flash_safetensors *st = (flash_safetensors *)1;
        flash_status s = flash_safetensors_open(q, &st, &err);
        ck_assert_msg(s != FLASH_OK, "truncated to %zu of %zu bytes accepted", cut, n);
        ck_assert_ptr_null(st);
        ck_assert_msg(strstr(err.msg, q) != NULL, "'%s' does not name the file", err.msg);
    }
    write_bytes(q, raw, n - 1);
    flash_safetensors *st;
    assert_refused(flash_safetensors_open(q, &st, &err), &err, q, "truncated");
    /* Extra bytes after the last tensor. */
    unsigned char *more = malloc(n + 4);
    memcpy(more, raw, n);
    memset(more + n, 0, 4);
    write_bytes(q, more, n + 4);
    assert_refused(flash_safetensors_open(q, &st, &err), &err, q, "after the last tensor");
    free(more);
    free(raw);
}
END_TEST

START_TEST(test_safetensors_refuses_bad_headers)
{
    flash_error err = {0};
    flash_safetensors *st;
    unsigned char data[64] = {0};
    const char *p = tmp_path("h.safetensors");
    struct {
        const char *json;
        size_t ndata;
        const char *what;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "overlaps"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "unused bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "truncated"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "shape"},
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "BF16"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         16, "twice"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "not a string"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}xx", 8, "after the header"},
        {"[1, 2]", 0, "does not start with"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st(p, cases[i].json, data, cases[i].ndata);
        st = (flash_safetensors *)1;
        flash_status s = flash_safetensors_open(p, &st, &err);
        ck_assert_msg(s != FLASH_OK, "case %zu accepted", i);
        ck_assert_ptr_null(st);
        ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, cases[i].what), "case %zu: '%s' lacks '%s'", i, err.msg,
                      cases[i].what);
    }
    /* Header length beyond the file. */
    unsigned char big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(p, big, 10);
    assert_refused(flash_safetensors_open(p, &st, &err), &err, p, "header of");
    /* A valid hand-written file with a misaligned F32 tensor (legal in the
     * format) is read, and its data pointer is aligned. */
    float two[2] = {1.5f, -2.0f};
    unsigned char mis[9] = {7};
    memcpy(mis + 1, two, 8);
    write_st(p,
             "{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
             "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}  ",
             mis, 9);
    ck_assert_msg(flash_safetensors_open(p, &st, &err) == FLASH_OK, "%s", err.msg);
    const flash_st_tensor *t = flash_safetensors_find(st, "f");
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq((uintptr_t)t->data % 4, 0);
    ck_assert_mem_eq(t->data, two, 8);
    ck_assert_int_eq(*(const uint8_t *)flash_safetensors_find(st, "u")->data, 7);
    flash_safetensors_close(st);
}
END_TEST

/* ---- IDX ---------------------------------------------------------------- */

/* An IDX image file of n images 3x2 with pixel values (i*7 + k) % 256. */
static size_t make_idx(unsigned char *buf, int n)
{
    unsigned char h[16] = {0, 0, 8, 3, 0, 0, 0, (unsigned char)n, 0, 0, 0, 3, 0, 0, 0, 2};
    memcpy(buf, h, 16);
    for (int i = 0; i < n * 6; i++)
        buf[16 + i] = (unsigned char)((i * 7 + i / 6) % 256);
    return 16 + (size_t)n * 6;
}

static void write_gz(const char *path, const void *buf, size_t n)
{
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, buf, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

START_TEST(test_idx_plain_and_gzip)
{
    flash_error err = {0};
    unsigned char buf[256];
    size_t n = make_idx(buf, 5);
    const char *plain = tmp_path("images-idx3-ubyte");
    const char *gz = tmp_path("images-idx3-ubyte.gz");
    write_bytes(plain, buf, n);
    write_gz(gz, buf, n);
    const char *paths[2] = {plain, gz};
    for (int i = 0; i < 2; i++) {
        flash_array a;
        ck_assert_msg(flash_idx_read(paths[i], &a, &err) == FLASH_OK, "%s", err.msg);
        ck_assert_int_eq(a.dtype, FLASH_U8);
        ck_assert_int_eq(a.ndim, 3);
        ck_assert_int_eq(a.shape[0], 5);
        ck_assert_int_eq(a.shape[1], 3);
        ck_assert_int_eq(a.shape[2], 2);
        ck_assert_mem_eq(a.data, buf + 16, 30);
        flash_array_free(&a);
    }
    /* Labels. */
    unsigned char lab[8 + 4] = {0, 0, 8, 1, 0, 0, 0, 4, 9, 0, 3, 7};
    const char *lp = tmp_path("labels-idx1-ubyte.gz");
    write_gz(lp, lab, sizeof lab);
    flash_array a;
    ck_assert_msg(flash_idx_read(lp, &a, &err) == FLASH_OK, "%s", err.msg);
    ck_assert_int_eq(a.ndim, 1);
    ck_assert_int_eq(a.shape[0], 4);
    ck_assert_mem_eq(a.data, lab + 8, 4);
    flash_array_free(&a);
}
END_TEST

START_TEST(test_idx_refuses_malformed)
{
    flash_error err = {0};
    flash_array a;
    unsigned char buf[256];
    size_t n = make_idx(buf, 5);
    const char *p = tmp_path("bad-idx3-ubyte");
    const char *gz = tmp_path("bad-idx3-ubyte.gz");

    buf[2] = 0x0d; /* float data */
    write_bytes(p, buf, n);
    assert_refused(flash_idx_read(p, &a, &err), &err, p, "magic");
    write_gz(gz, buf, n);
    assert_refused(flash_idx_read(gz, &a, &err), &err, gz, "magic");
    buf[2] = 0x08;

    for (size_t cut = 0; cut < n; cut++) {
        write_bytes(p, buf, cut);
        ck_assert_msg(flash_idx_read(p, &a, &err) != FLASH_OK, "plain cut at %zu accepted", cut);
        ck_assert_ptr_null(a.data);
        write_gz(gz, buf, cut);
        ck_assert_msg(flash_idx_read(gz, &a, &err) != FLASH_OK, "gzip of %zu bytes accepted", cut);
        ck_assert(strstr(err.msg, gz) != NULL);
    }
    write_bytes(p, buf, n - 1);
    assert_refused(flash_idx_read(p, &a, &err), &err, p, "truncated");

    /* Dimensions claiming petabytes read as truncation. */
    unsigned char huge[20] = {0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x10, 0, 0, 0, 0x10, 0, 1, 2, 3, 4};
    write_bytes(p, huge, sizeof huge);
    assert_refused(flash_idx_read(p, &a, &err), &err, p, "truncated");

    /* Trailing garbage. */
    buf[n] = 1;
    write_bytes(p, buf, n + 1);
    assert_refused(flash_idx_read(p, &a, &err), &err, p, "trailing");
    write_gz(gz, buf, n + 1);
    assert_refused(flash_idx_read(gz, &a, &err), &err, gz, "trailing");

    /* A gzip stream cut short (the compressed bytes, not the payload). */
    write_gz(gz, buf, n);
    size_t zn;
    unsigned char *z = read_bytes(gz, &zn);
    write_bytes(gz, z, zn - 12);
    ck_assert_int_ne(flash_idx_read(gz, &a, &err), FLASH_OK);
    ck_assert(strstr(err.msg, gz) != NULL);
    free(z);

    const char *missing = tmp_path("none.gz");
    assert_refused(flash_idx_read(missing, &a, &err), &err, missing, "cannot open");
}
END_TEST

/* ---- PNG ---------------------------------------------------------------- */

/* Decodes a PNG with libpng into 8-bit gray or RGB. */
static uint8_t *png_load(const char *path, int *w, int *h, int *c)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&img, path), "%s", img.message);
    *c = (img.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
    img.format = *c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    uint8_t *px = malloc(PNG_IMAGE_SIZE(img));
    ck_assert_msg(png_image_finish_read(&img, NULL, px, 0, NULL), "%s", img.message);
    *w = (int)img.width;
    *h = (int)img.height;
    return px;
}

START_TEST(test_png_write_read_back)
{
    flash_error err = {0};
    for (int c = 1; c <= 3; c += 2) {
        int w = 7, h = 5;
        uint8_t px[7 * 5 * 3];
        for (int i = 0; i < w * h * c; i++)
            px[i] = (uint8_t)(i * 37 + 11);
        const char *p = tmp_path(c == 1 ? "g.png" : "rgb.png");
        ck_assert_int_eq(flash_png_write(p, w, h, c, px, &err), FLASH_OK);
        int rw, rh, rc;
        uint8_t *back = png_load(p, &rw, &rh, &rc);
        ck_assert_int_eq(rw, w);
        ck_assert_int_eq(rh, h);
        ck_assert_int_eq(rc, c);
        ck_assert_mem_eq(back, px, (size_t)(w * h * c));
        free(back);
    }
    const char *p = tmp_path("bad.png");
    uint8_t one = 0;
    assert_refused(flash_png_write(p, 1, 1, 2, &one, &err), &err, p, "channels");
    ck_assert_int_eq(dir_entries(), 2);
}
END_TEST

START_TEST(test_png_grid_layout_and_values)
{
    flash_error err = {0};
    /* 3 RGB images of 2x3 in 2 columns: a 2x2 grid with one empty cell. */
    enum { N = 3, C = 3, H = 2, W = 3 };
    float img[N * C * H * W];
    for (int i = 0; i < N * C * H * W; i++)
        img[i] = -1.2f + 2.4f * (float)i / (N * C * H * W - 1);
    img[4] = NAN;
    const char *p = tmp_path("grid.png");
    ck_assert_int_eq(flash_png_grid(p, img, N, C, H, W, 2, &err), FLASH_OK);
    int gw, gh, gc;
    uint8_t *px = png_load(p, &gw, &gh, &gc);
    ck_assert_int_eq(gc, 3);
    ck_assert_int_eq(gw, 2 * (W + 2) + 2);
    ck_assert_int_eq(gh, 2 * (H + 2) + 2);
    for (int y = 0; y < gh; y++) {
        for (int x = 0; x < gw; x++) {
            int cx = (x - 2) / (W + 2), cy = (y - 2) / (H + 2);
            int ix = (x - 2) % (W + 2), iy = (y - 2) % (H + 2);
            int i = cy * 2 + cx;
            int inside = x >= 2 && y >= 2 && ix < W && iy < H && i < N;
            for (int ch = 0; ch < C; ch++) {
                int got = px[(y * gw + x) * 3 + ch];
                int want = 0;
                if (inside) {
                    double v = img[((i * C + ch) * H + iy) * W + ix];
                    /* Reference: round((v + 1) / 2 * 255) clamped to [0, 255]. */
                    double s = isnan(v) ? 0 : floor((v + 1.0) / 2.0 * 255.0 + 0.5);
                    want = s < 0 ? 0 : s > 255 ? 255 : (int)s;
                }
                ck_assert_msg(abs(got - want) <= (inside ? 1 : 0), "pixel (%d,%d,%d): %d vs %d", x, y, ch, got, want);
            }
        }
    }
    /* The extremes land exactly. */
    float ends[2] = {-1.0f, 1.0f};
    ck_assert_int_eq(flash_png_grid(p, ends, 2, 1, 1, 1, 2, &err), FLASH_OK);
    free(px);
    px = png_load(p, &gw, &gh, &gc);
    ck_assert_int_eq(gc, 1);
    ck_assert_int_eq(px[2 * gw + 2], 0);
    ck_assert_int_eq(px[2 * gw + 5], 255);
    free(px);
}
END_TEST

/* ---- JSONL and logging ---------------------------------------------------- */

START_TEST(test_jsonl_appends_valid_lines)
{
    flash_error err = {0};
    const char *p = tmp_path("metrics.jsonl");
    flash_jsonl j;
    for (int round = 0; round < 2; round++) {
        ck_assert_int_eq(flash_jsonl_open(&j, p, &err), FLASH_OK);
        flash_jsonl_write(&j, "\"step\": %d, \"loss\": %.4g, \"name\": \"%s\"", round, 0.5, "inf nan");
        flash_jsonl_write(&j, "\"step\": %d, \"loss\": %g, \"other\": %g", round, (double)NAN, -(double)INFINITY);
        /* Flushed per write: visible before close. */
        size_t n;
        unsigned char *b = read_bytes(p, &n);
        ck_assert_ptr_nonnull(strstr((char *)b, "\"other\": null}"));
        free(b);
        flash_jsonl_close(&j);
        flash_jsonl_close(&j);
    }
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    const char *want = "{\"step\": 0, \"loss\": 0.5, \"name\": \"inf nan\"}\n"
                       "{\"step\": 0, \"loss\": null, \"other\": null}\n"
                       "{\"step\": 1, \"loss\": 0.5, \"name\": \"inf nan\"}\n"
                       "{\"step\": 1, \"loss\": null, \"other\": null}\n";
    ck_assert_str_eq((char *)b, want);
    free(b);
    const char *bad = tmp_path("no/dir/m.jsonl");
    assert_refused(flash_jsonl_open(&j, bad, &err), &err, bad, "cannot open");
}
END_TEST

START_TEST(test_jsonl_truncate_keeps_steps_up_to_checkpoint)
{
    flash_error err = {0};
    const char *p = tmp_path("resume.jsonl");
    const char *text = "{\"step\": 1, \"loss\": 0.5}\n"
                       "{\"step\": 2, \"loss\": 0.4}\n"
                       "{\"step\": 3, \"loss\": 0.3}\n"
                       "{\"step\": 4, \"loss\": 0.2}\n"
                       "{\"step\": 5, \"lo";
    ck_assert_int_eq(flash_write_file_atomic(p, text, strlen(text), &err), FLASH_OK);
    ck_assert_int_eq(flash_jsonl_truncate(p, 3, &err), FLASH_OK);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    ck_assert_str_eq((char *)b, "{\"step\": 1, \"loss\": 0.5}\n{\"step\": 2, \"loss\": 0.4}\n{\"step\": 3, \"loss\": 0.3}\n");
    free(b);
    /* a torn last line goes even when its step would be kept */
    const char *torn = "{\"step\": 1}\n{\"step\": 2";
    ck_assert_int_eq(flash_write_file_atomic(p, torn, strlen(torn), &err), FLASH_OK);
    ck_assert_int_eq(flash_jsonl_truncate(p, 9, &err), FLASH_OK);
    b = read_bytes(p, &n);
    ck_assert_str_eq((char *)b, "{\"step\": 1}\n");
    free(b);
    ck_assert_int_eq(flash_jsonl_truncate(tmp_path("absent.jsonl"), 3, &err), FLASH_OK);
}
END_TEST

START_TEST(test_progress_plain_lines)
{
    /* stderr redirected to a file: not a terminal, so plain lines. */
    const char *p = tmp_path("stderr.txt");
    fflush(stderr);
    ck_assert_ptr_nonnull(freopen(p, "w", stderr));
    flash_progress pr;
    flash_progress_begin(&pr, "train", 0, 1000);
    ck_assert_int_eq(pr.is_tty, 0);
    for (int s = 1; s <= 1000; s++)
        flash_progress_update(&pr, s, "loss %.3f", 1.0 / s);
    flash_progress_end(&pr);
    flash_logf(FLASH_LOG_INFO, "hello %d", 42);
    flash_log_set_level(FLASH_LOG_WARN);
    flash_info("hidden");
    flash_warn("shown");
    flash_log_set_level(FLASH_LOG_INFO);
    fflush(stderr);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    const char *s = (const char *)b;
    /* First update and the last one print; the rest fall within the
     * interval. No carriage returns in a log file. */
    ck_assert_ptr_nonnull(strstr(s, "train 1/1000 | "));
    ck_assert_ptr_nonnull(strstr(s, "train 1000/1000 | "));
    ck_assert_ptr_nonnull(strstr(s, "| loss 0.001\n"));
    ck_assert_ptr_null(strstr(s, "train 2/1000"));
    ck_assert_ptr_null(strchr(s, '\r'));
    ck_assert_ptr_nonnull(strstr(s, "train done in "));
    ck_assert_ptr_nonnull(strstr(s, "[flash] info: hello 42\n"));
    ck_assert_ptr_null(strstr(s, "hidden"));
    ck_assert_ptr_nonnull(strstr(s, "[flash] warning: shown\n"));
    free(b);
}
END_TEST

START_TEST(test_progress_tty_redraws)
{
    /* stderr on a pseudo-terminal: one line redrawn with carriage returns. */
    int master, slave;
    struct winsize ws = {.ws_row = 24, .ws_col = 60};
    ck_assert_int_eq(openpty(&master, &slave, NULL, NULL, &ws), 0);
    fflush(stderr);
    ck_assert_int_eq(dup2(slave, STDERR_FILENO), STDERR_FILENO);
    flash_progress pr;
    flash_progress_begin(&pr, "sample", 10, 20);
    ck_assert_int_eq(pr.is_tty, 1);
    flash_progress_update(&pr, 11, "fid %.1f", 12.5);
    usleep(120000); /* past the redraw interval */
    flash_progress_update(&pr, 12, NULL);
    flash_progress_update(&pr, 13, NULL); /* within the interval: skipped */
    flash_info("a log line clears the progress line first");
    flash_progress_update(&pr, 20, "done, and a long text that the terminal width cuts off here");
    flash_progress_end(&pr);
    fflush(stderr);
    char buf[4096];
    size_t n = 0;
    ck_assert_int_eq(fcntl(master, F_SETFL, O_NONBLOCK), 0);
    for (ssize_t r; n < sizeof buf - 1 && (r = read(master, buf + n, sizeof buf - 1 - n)) > 0;)
        n += (size_t)r;
    buf[n] = '\0';
    ck_assert_msg(strstr(buf, "\rsample 11/20 | ") != NULL, "%s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "| fid 12.5\033[K"));
    ck_assert_ptr_nonnull(strstr(buf, "\rsample 12/20 | "));
    ck_assert_ptr_null(strstr(buf, "sample 13/20"));
    ck_assert_ptr_nonnull(strstr(buf, "\rsample 20/20 | "));
    ck_assert_ptr_nonnull(strstr(buf, "\r\033[K[flash] info: a log line clears"));
    ck_assert_ptr_nonnull(strstr(buf, "ETA 0s | done, and"));
    ck_assert_ptr_null(strstr(buf, "cuts off here"));
    /* Each drawn line fits in 59 columns. */
    for (char *l = strstr(buf, "\rsample"); l; l = strstr(l + 1, "\rsample")) {
        char *e = strstr(l, "\033[K");
        ck_assert_ptr_nonnull(e);
        ck_assert_int_le(e - l - 1, 59);
    }
    ck_assert_ptr_nonnull(strstr(buf, "sample done in "));
    close(master);
    close(slave);
}
END_TEST

START_TEST(test_now_monotonic)
{
    double a = flash_now();
    usleep(2000);
    double b = flash_now();
    ck_assert(b - a >= 0.0015);
    ck_assert(b - a < 1.0);
}
END_TEST

static Suite *io_suite(void)
{
    Suite *s = suite_create("io");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, tmpdir_remove);
    tcase_add_test(tc, test_atomic_write_replaces_and_leaves_no_temp);
    tcase_add_test(tc, test_atomic_abort_keeps_old_file);
    tcase_add_test(tc, test_atomic_open_missing_dir_fails);
    tcase_add_test(tc, test_read_file_missing);
    tcase_add_test(tc, test_mkdirs);
    tcase_add_test(tc, test_npy_roundtrip_f32);
    tcase_add_test(tc, test_npy_roundtrip_i64);
    tcase_add_test(tc, test_npy_writer_matches_numpy);
    tcase_add_test(tc, test_npy_reads_numpy_files);
    tcase_add_test(tc, test_npy_refuses_unsupported_layouts);
    tcase_add_test(tc, test_npy_refuses_truncated_and_bad_magic);
    tcase_add_test(tc, test_safetensors_roundtrip);
    tcase_add_test(tc, test_safetensors_writer_refuses_bad_input);
    tcase_add_test(tc, test_safetensors_refuses_truncation);
    tcase_add_test(tc, test_safetensors_refuses_bad_headers);
    tcase_add_test(tc, test_idx_plain_and_gzip);
    tcase_add_test(tc, test_idx_refuses_malformed);
    tcase_add_test(tc, test_png_write_read_back);
    tcase_add_test(tc, test_png_grid_layout_and_values);
    tcase_add_test(tc, test_jsonl_appends_valid_lines);
    tcase_add_test(tc, test_jsonl_truncate_keeps_steps_up_to_checkpoint);
    tcase_add_test(tc, test_progress_plain_lines);
    tcase_add_test(tc, test_progress_tty_redraws);
    tcase_add_test(tc, test_now_monotonic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(io_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
