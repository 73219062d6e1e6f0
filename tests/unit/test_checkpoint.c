/* Checkpoints: parameters, EMA, Adam moments, step, RNG state and config
 * round-trip bit-for-bit; damaged or mismatched files are refused. */
#include "flash/flash.h"
#include "tmpdir_fixture.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A RAM file system when there is one: the corruption tests write
 * thousands of small files. */
static void setup(void)
{
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : "/tmp";
    tmpdir_create(base, "flash_test_ckpt");
}

static const char *CONFIG = "model:\n  plugin: unet\n  channels: [32, 64]\nsampler: {plugin: ddim, steps: 4}\n";

/* A small model: a conv weight and bias, a linear weight (lin_out, 7)
 * unless lin_out is 0, and a parameter `extra` of 2 when it is named. */
static flash_params *make_layout(int lin_out, const char *extra)
{
    flash_params *p = flash_params_create();
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(flash_params_add(p, "conv.weight", 4, (int[]){4, 3, 3, 3}));
    ck_assert_ptr_nonnull(flash_params_add(p, "conv.bias", 1, (int[]){4}));
    if (lin_out) ck_assert_ptr_nonnull(flash_params_add(p, "out.weight", 2, (int[]){lin_out, 7}));
    if (extra) ck_assert_ptr_nonnull(flash_params_add(p, extra, 1, (int[]){2}));
    flash_error err = {0};
    ck_assert_int_eq(flash_params_finalize(p, &err), FLASH_OK);
    return p;
}

static flash_params *make_params(int lin_out)
{
    return make_layout(lin_out, NULL);
}

/* Data with awkward values (negative zero, subnormal, huge), one EMA update
 * and one Adam step, so all four blocks differ. */
static void train_a_little(flash_params *p)
{
    flash_error err = {0};
    flash_rng r;
    flash_rng_seed(&r, 7);
    float *d = flash_params_data(p);
    size_t n = flash_params_count(p);
    flash_rng_fill_normal(&r, d, n);
    d[0] = -0.0f;
    d[1] = 1e-40f;
    d[2] = 3.4e38f;
    ck_assert_int_eq(flash_params_ema_update(p, 0.9f, &err), FLASH_OK);
    float *g = flash_params_grad(p);
    for (size_t i = 0; i < n; i++)
        g[i] = sinf((float)i);
    flash_adam a = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
    ck_assert_int_eq(flash_adam_step(p, &a, 1, &err), FLASH_OK);
    ck_assert_int_eq(flash_params_ema_update(p, 0.9f, &err), FLASH_OK);
    ck_assert_ptr_nonnull(flash_params_adam_m(p));
    ck_assert_ptr_nonnull(flash_params_adam_v(p));
    ck_assert_ptr_nonnull(flash_params_ema(p));
}

/* A model of make_params(lin_out) after train_a_little, saved at path with
 * a step, a config and the generator state *r (r may be NULL). */
static flash_params *saved_checkpoint(const char *path, int lin_out, flash_rng *r)
{
    flash_params *p = make_params(lin_out);
    train_a_little(p);
    flash_rng own;
    if (!r) r = &own;
    flash_error err = {0};
    flash_rng_seed(r, 1234);
    (void)flash_rng_u64(r);
    (void)flash_rng_normal(r); /* leaves a spare normal in the state */
    ck_assert_uint_eq(r->has_spare, 1);
    flash_ckpt_info info = {.step = 987654321012LL, .rng = *r, .config_yaml = (char *)CONFIG};
    ck_assert_msg(flash_checkpoint_save(path, p, &info, &err) == FLASH_OK, "%s", err.msg);
    return p;
}

/* The bytes of a checkpoint of make_params(2) saved at path. */
static char *checkpoint_bytes(const char *path, size_t *n)
{
    flash_params_destroy(saved_checkpoint(path, 2, NULL));
    char *raw;
    flash_error err = {0};
    ck_assert_msg(flash_read_file(path, &raw, n, &err) == FLASH_OK, "%s", err.msg);
    return raw;
}

static void assert_blocks_equal(flash_params *a, flash_params *b)
{
    size_t n = flash_params_count(a);
    ck_assert_uint_eq(flash_params_count(b), n);
    ck_assert_mem_eq(flash_params_data(a), flash_params_data(b), n * sizeof(float));
    ck_assert_mem_eq(flash_params_ema(a), flash_params_ema(b), n * sizeof(float));
    ck_assert_mem_eq(flash_params_adam_m(a), flash_params_adam_m(b), n * sizeof(float));
    ck_assert_mem_eq(flash_params_adam_v(a), flash_params_adam_v(b), n * sizeof(float));
}

START_TEST(test_roundtrip_bit_for_bit)
{
    flash_error err = {0};
    flash_rng r;
    const char *path = tmp_path("ckpt.safetensors");
    flash_params *p = saved_checkpoint(path, 5, &r);

    /* A fresh model of the same shape, with no EMA or Adam blocks yet. */
    flash_params *q = make_params(5);
    float *qd = flash_params_data(q);
    for (size_t i = 0; i < flash_params_count(q); i++)
        qd[i] = 99.0f;
    flash_ckpt_info info;
    memset(&info, 0xab, sizeof info);
    ck_assert_msg(flash_checkpoint_load(path, q, &info, &err) == FLASH_OK, "%s", err.msg);
    assert_blocks_equal(p, q);
    ck_assert_int_eq(info.step, 987654321012LL);
    ck_assert_mem_eq(info.rng.s, r.s, sizeof r.s);
    ck_assert_uint_eq(info.rng.has_spare, r.has_spare);
    ck_assert_mem_eq(&info.rng.spare, &r.spare, sizeof r.spare);
    ck_assert_str_eq(info.config_yaml, CONFIG);
    /* The restored generator continues the same sequence. */
    for (int i = 0; i < 5; i++)
        ck_assert_float_eq(flash_rng_normal(&info.rng), flash_rng_normal(&r));
    free(info.config_yaml);

    /* Loading again into the now-populated model, and weights only. */
    ck_assert_int_eq(flash_checkpoint_load(path, q, NULL, &err), FLASH_OK);
    assert_blocks_equal(p, q);

    /* No config: none comes back. */
    flash_ckpt_info bare = {.step = 3, .rng = r, .config_yaml = NULL};
    const char *path2 = tmp_path("bare.safetensors");
    ck_assert_int_eq(flash_checkpoint_save(path2, p, &bare, &err), FLASH_OK);
    ck_assert_int_eq(flash_checkpoint_load(path2, q, &info, &err), FLASH_OK);
    ck_assert_ptr_null(info.config_yaml);
    ck_assert_int_eq(info.step, 3);

    /* A failed save (no such directory) names the path and leaves the
     * existing checkpoint alone. */
    const char *nowhere = tmp_path("missing/dir/c.safetensors");
    ck_assert_int_ne(flash_checkpoint_save(nowhere, p, &bare, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, nowhere));
    ck_assert_int_eq(flash_checkpoint_load(path, q, NULL, &err), FLASH_OK);
    flash_params_destroy(p);
    flash_params_destroy(q);
}
END_TEST

START_TEST(test_weights_only_and_readable_layout)
{
    flash_error err = {0};
    flash_params *p = make_params(3);
    float *d = flash_params_data(p);
    for (size_t i = 0; i < flash_params_count(p); i++)
        d[i] = (float)i * 0.125f - 3.0f;
    const char *path = tmp_path("w.safetensors");
    ck_assert_int_eq(flash_checkpoint_save(path, p, NULL, &err), FLASH_OK);

    /* Plain safetensors: tensors under the parameter names, nothing else. */
    flash_safetensors *st;
    ck_assert_int_eq(flash_safetensors_open(path, &st, &err), FLASH_OK);
    ck_assert_uint_eq(flash_safetensors_count(st), 3);
    const flash_st_tensor *t = flash_safetensors_find(st, "out.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, FLASH_F32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], 3);
    ck_assert_int_eq(t->shape[1], 7);
    ck_assert_mem_eq(t->data, flash_params_find(p, "out.weight")->data, 21 * sizeof(float));
    ck_assert_ptr_null(flash_safetensors_find(st, "ema.conv.bias"));
    ck_assert_str_eq(flash_safetensors_meta(st, "format"), "flash-checkpoint-1");
    ck_assert_ptr_null(flash_safetensors_meta(st, "step"));
    /* The checksum is FNV-1a 64 of the data section, recomputed here. */
    uint64_t h = 0xcbf29ce484222325ull;
    const flash_st_tensor *order[3] = {flash_safetensors_find(st, "conv.weight"),
                                       flash_safetensors_find(st, "conv.bias"), t};
    for (int k = 0; k < 3; k++)
        for (size_t b = 0; b < order[k]->nbytes; b++) {
            h ^= ((const unsigned char *)order[k]->data)[b];
            h *= 0x100000001b3ull;
        }
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)h);
    ck_assert_str_eq(flash_safetensors_meta(st, "checksum"), want);
    flash_safetensors_close(st);

    flash_params *q = make_params(3);
    ck_assert_int_eq(flash_checkpoint_load(path, q, NULL, &err), FLASH_OK);
    ck_assert_mem_eq(flash_params_data(q), d, flash_params_count(p) * sizeof(float));
    ck_assert_ptr_null(flash_params_ema(q));
    /* Asking for step and RNG from a weights-only file is an error. */
    flash_ckpt_info info;
    ck_assert_int_ne(flash_checkpoint_load(path, q, &info, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "step"));
    flash_params_destroy(p);
    flash_params_destroy(q);
}
END_TEST

/* Flipping one bit anywhere in the file (length field, header, tensor
 * data) makes load refuse it, and a refused load leaves the model as it was. */
START_TEST(test_any_flipped_bit_refused)
{
    flash_error err = {0};
    size_t n;
    char *raw = checkpoint_bytes(tmp_path("c.safetensors"), &n);

    flash_params *q = make_params(2);
    size_t cnt = flash_params_count(q);
    float *before = malloc(cnt * sizeof(float));
    memcpy(before, flash_params_data(q), cnt * sizeof(float));
    const char *bad = tmp_path("bad.safetensors");
    /* Every bit of the length field and the header; in the data section
     * one bit per byte (cycling through positions) suffices, since a
     * one-byte change always changes an FNV-1a hash (each step is a
     * bijection of the state). */
    size_t header_end = 8;
    for (int i = 0; i < 8; i++)
        header_end += (size_t)(unsigned char)raw[i] << (8 * i);
    ck_assert_uint_lt(header_end, n);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            if (i >= header_end && bit != (int)(i % 8))
                continue;
            raw[i] ^= (char)(1 << bit);
            write_bytes(bad, raw, n);
            raw[i] ^= (char)(1 << bit);
            flash_ckpt_info info = {0};
            flash_status st = flash_checkpoint_load(bad, q, &info, &err);
            ck_assert_msg(st != FLASH_OK, "bit %d of byte %zu of %zu flipped: accepted", bit, i, n);
            ck_assert_ptr_null(info.config_yaml);
            ck_assert_msg(strstr(err.msg, bad) != NULL, "'%s' does not name the file", err.msg);
        }
    }
    ck_assert_mem_eq(flash_params_data(q), before, cnt * sizeof(float));
    ck_assert_ptr_null(flash_params_ema(q));

    /* A flip in tensor data is reported as a checksum mismatch. */
    raw[n - 3] ^= 0x10;
    write_bytes(bad, raw, n);
    ck_assert_int_ne(flash_checkpoint_load(bad, q, NULL, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "checksum"));
    free(before);
    free(raw);
    flash_params_destroy(q);
}
END_TEST

START_TEST(test_truncated_refused)
{
    flash_error err = {0};
    size_t n;
    char *raw = checkpoint_bytes(tmp_path("c.safetensors"), &n);
    const char *cut = tmp_path("cut.safetensors");
    flash_params *q = make_params(2);
    for (size_t len = 0; len < n; len++) {
        write_bytes(cut, raw, len);
        ck_assert_msg(flash_checkpoint_load(cut, q, NULL, &err) != FLASH_OK, "cut to %zu of %zu accepted", len, n);
        ck_assert_ptr_nonnull(strstr(err.msg, cut));
    }
    write_bytes(cut, raw, n - 100);
    ck_assert_int_ne(flash_checkpoint_load(cut, q, NULL, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    free(raw);
    flash_params_destroy(q);
}
END_TEST

/* A checkpoint can hold NaN or infinity only if it was damaged or made
 * elsewhere (the training loop's guard stops before such an update): a
 * well-formed one with a valid checksum is refused all the same, naming
 * the tensor, and nothing is loaded. */
START_TEST(test_nonfinite_refused)
{
    flash_error err = {0};
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        flash_params *p = make_params(2);
        flash_rng r;
        flash_rng_seed(&r, 3);
        flash_rng_fill_normal(&r, flash_params_data(p), flash_params_count(p));
        const flash_tensor *bias = flash_params_at(p, 1);
        bias->data[2] = bad[k];
        const char *path = tmp_path("nonfinite.safetensors");
        ck_assert_msg(flash_checkpoint_save(path, p, NULL, &err) == FLASH_OK, "%s", err.msg);
        flash_params *q = make_params(2);
        ck_assert_int_eq(flash_checkpoint_load(path, q, NULL, &err), FLASH_ERR_INPUT);
        ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "'conv.bias'") && strstr(err.msg, "non-finite") &&
                          strstr(err.msg, "index 2"),
                      "%s", err.msg);
        for (size_t i = 0; i < flash_params_count(q); i++) ck_assert(isfinite(flash_params_data(q)[i]));
        flash_params_destroy(q);
        flash_params_destroy(p);
    }
}
END_TEST

START_TEST(test_mismatched_model_refused)
{
    flash_error err = {0};
    const char *path = tmp_path("c.safetensors");
    flash_params *p = saved_checkpoint(path, 5, NULL);

    /* A different shape, a parameter the file lacks, a tensor the model
     * lacks: each refused with a message that says so. */
    static const struct {
        int lin_out;
        const char *extra;
        const char *says[3];
    } cases[] = {
        {6, NULL, {"out.weight", "(5, 7)", "(6, 7)"}},
        {5, "extra", {"'extra'"}},
        {0, NULL, {"out.weight", "not a parameter"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        flash_params *q = make_layout(cases[c].lin_out, cases[c].extra);
        ck_assert_int_ne(flash_checkpoint_load(path, q, NULL, &err), FLASH_OK);
        for (int k = 0; k < 3 && cases[c].says[k]; k++)
            ck_assert_msg(strstr(err.msg, cases[c].says[k]) != NULL, "case %zu: '%s' does not say '%s'", c, err.msg,
                          cases[c].says[k]);
        flash_params_destroy(q);
    }

    /* A safetensors file that is not a checkpoint. */
    float x[4] = {1, 2, 3, 4};
    flash_st_tensor t = {"conv.bias", FLASH_F32, 1, {4}, x, sizeof x};
    const char *plain = tmp_path("plain.safetensors");
    ck_assert_int_eq(flash_safetensors_write(plain, &t, 1, NULL, 0, &err), FLASH_OK);
    flash_params *q = make_params(5);
    ck_assert_int_ne(flash_checkpoint_load(plain, q, NULL, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a flash checkpoint"));
    const char *missing = tmp_path("none.safetensors");
    ck_assert_int_ne(flash_checkpoint_load(missing, q, NULL, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, missing));
    flash_params_destroy(q);
    flash_params_destroy(p);
}
END_TEST

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_add_checked_fixture(tc, setup, tmpdir_remove);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roundtrip_bit_for_bit);
    tcase_add_test(tc, test_weights_only_and_readable_layout);
    tcase_add_test(tc, test_any_flipped_bit_refused);
    tcase_add_test(tc, test_truncated_refused);
    tcase_add_test(tc, test_mismatched_model_refused);
    tcase_add_test(tc, test_nonfinite_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(checkpoint_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
