/* The training loop (core/trainer.c): the learning-rate schedule against
 * its closed form, the train: section's checks, and the guard that stops a
 * run at a non-finite loss and keeps the last good checkpoint. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flash/flash.h"
#include "flash/trainer.h"

static flash_status read_train(const char *yaml, flash_train_config *tc, flash_error *err)
{
    flash_cfg *root = NULL;
    flash_status st = flash_cfg_parse_string(yaml, "test", &root, err);
    if (st) return st;
    st = flash_train_config_read(flash_cfg_get(root, "train"), tc, err);
    flash_cfg_free(root);
    return st;
}

START_TEST(test_lr_schedule)
{
    flash_error err = {0};
    flash_train_config tc;
    ck_assert_msg(read_train("train: {steps: 110, lr: 1.0e-3, warmup_steps: 10, lr_schedule: cosine, min_lr: 1.0e-4}\n",
                             &tc, &err) == FLASH_OK,
                  "%s", err.msg);
    const double pi = 3.14159265358979323846;
    /* linear warmup: lr * step / warmup */
    ck_assert_float_eq_tol(flash_train_lr_at(&tc, 1), 1e-4f, 1e-9f);
    ck_assert_float_eq_tol(flash_train_lr_at(&tc, 5), 5e-4f, 1e-9f);
    ck_assert_float_eq_tol(flash_train_lr_at(&tc, 10), 1e-3f, 1e-9f);
    /* cosine from lr at step 11 to min_lr at step 110 */
    ck_assert_float_eq_tol(flash_train_lr_at(&tc, 11), 1e-3f, 1e-9f);
    ck_assert_float_eq_tol(flash_train_lr_at(&tc, 110), 1e-4f, 1e-9f);
    for (int s = 11; s <= 110; s += 7) {
        double frac = (double)(s - 11) / 99.0;
        double want = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + cos(pi * frac));
        ck_assert_float_eq_tol(flash_train_lr_at(&tc, s), (float)want, 1e-9f);
    }
    ck_assert_msg(read_train("train: {lr: 3.0e-4}\n", &tc, &err) == FLASH_OK, "%s", err.msg);
    ck_assert_float_eq(flash_train_lr_at(&tc, 1), 3e-4f);
    ck_assert_float_eq(flash_train_lr_at(&tc, 999), 3e-4f);
    /* defaults */
    ck_assert_int_eq(tc.batch_size, 64);
    ck_assert_float_eq_tol(tc.ema_decay, 0.999f, 1e-9f);
    ck_assert_float_eq_tol((float)tc.grad_clip, 1.0f, 1e-9f);
}
END_TEST

START_TEST(test_train_config_errors)
{
    flash_error err = {0};
    flash_train_config tc;
    ck_assert_int_eq(read_train("train: {stesp: 10}\n", &tc, &err), FLASH_ERR_CONFIG);
    ck_assert_msg(strstr(err.msg, "steps") != NULL, "%s", err.msg); /* did you mean */
    ck_assert_int_eq(read_train("train: {weight_decay: 0.1}\n", &tc, &err), FLASH_ERR_CONFIG);
    ck_assert_msg(strstr(err.msg, "adamw") != NULL, "%s", err.msg);
    ck_assert_int_eq(read_train("train: {optimizer: sgd}\n", &tc, &err), FLASH_ERR_CONFIG);
    ck_assert_int_eq(read_train("train: {steps: 0}\n", &tc, &err), FLASH_ERR_CONFIG);
    ck_assert_int_eq(read_train("train: {steps: 10, warmup_steps: 10, lr_schedule: cosine}\n", &tc, &err),
                     FLASH_ERR_CONFIG);
    ck_assert_int_eq(read_train("train: {lr: 1.0e-4, min_lr: 1.0e-3}\n", &tc, &err), FLASH_ERR_CONFIG);
    ck_assert_msg(read_train("train: {optimizer: adamw}\n", &tc, &err) == FLASH_OK, "%s", err.msg);
    ck_assert_float_eq_tol(tc.adam.weight_decay, 0.01f, 1e-9f);
}
END_TEST

/* 64 images (1, 8, 8) of zeros except example 37, which is all NaN. */
static void write_poisoned(const char *path)
{
    float *x = calloc(64 * 64, sizeof *x);
    for (int j = 0; j < 64; j++) x[37 * 64 + j] = NAN;
    int64_t shape[4] = {64, 1, 8, 8};
    flash_error err = {0};
    ck_assert_msg(flash_npy_write(path, FLASH_F32, 4, shape, x, &err) == FLASH_OK, "%s", err.msg);
    free(x);
}

START_TEST(test_nan_guard)
{
    char dir[] = "/tmp/flash_test_trainer_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char data[128], run[128], ckpt[200], yaml[1024];
    snprintf(data, sizeof data, "%s/x.npy", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(ckpt, sizeof ckpt, "%s/%s", run, FLASH_RUN_CHECKPOINT);
    write_poisoned(data);
    snprintf(yaml, sizeof yaml,
             "seed: 1\n"
             "dataset: {plugin: npy, path: %s}\n"
             "schedule: {plugin: discrete}\n"
             "model: {plugin: unet, base_channels: 8, groups: 4, num_classes: 0, image_size: 8, mid_blocks: 1}\n"
             "strategy: {plugin: denoise}\n"
             "train: {steps: 16, batch_size: 8, ckpt_every: 1, log_every: 1}\n",
             data);
    flash_error err = {0};
    flash_cfg *root = NULL;
    ck_assert_msg(flash_cfg_parse_string(yaml, "test", &root, &err) == FLASH_OK, "%s", err.msg);
    flash_registry *reg = flash_registry_create();
    ck_assert_msg(flash_registry_load_dir(reg, FLASH_BINARY_DIR "/lib/flash/plugins", &err) == FLASH_OK, "%s",
                  err.msg);
    flash_train_opts o = {.size = sizeof o, .root = root, .registry = reg, .run_dir = run, .resume = false};
    flash_status st = flash_train_run(&o, &err);
    /* The poisoned example is drawn within the first epoch (8 batches). */
    ck_assert_int_eq(st, FLASH_ERR_RUNTIME);
    ck_assert_msg(strstr(err.msg, "the loss is NaN") != NULL, "%s", err.msg);
    const char *at = strstr(err.msg, "step ");
    ck_assert_ptr_nonnull(at);
    long bad_step = strtol(at + 5, NULL, 10);
    ck_assert(bad_step >= 1 && bad_step <= 8);
    if (bad_step > 1) {
        /* The checkpoint of the step before is in place and loads. */
        ck_assert_msg(strstr(err.msg, "last good checkpoint") != NULL, "%s", err.msg);
        flash_params *P = NULL;
        flash_instance m = {0};
        flash_env env = {.size = sizeof env, .registry = reg, .seed = 1};
        ck_assert_int_eq(flash_instance_create(&env, FLASH_KIND_MODEL, flash_cfg_get(root, "model"), &m, &err),
                         FLASH_OK);
        P = FLASH_API(&m, flash_model_api)->params(m.self);
        flash_ckpt_info info = {0};
        ck_assert_msg(flash_checkpoint_load(ckpt, P, &info, &err) == FLASH_OK, "%s", err.msg);
        ck_assert_int_eq(info.step, bad_step - 1);
        for (size_t i = 0; i < flash_params_count(P); i++) ck_assert(isfinite(flash_params_data(P)[i]));
        free(info.config_yaml);
        flash_instance_destroy(&m);
    } else {
        ck_assert(access(ckpt, F_OK) != 0);
    }
    /* A fresh run refuses the directory; --resume continues from the
     * checkpoint (and stops at the same example again). */
    if (bad_step > 1) {
        ck_assert_int_eq(flash_train_run(&o, &err), FLASH_ERR_USAGE);
        o.resume = true;
        ck_assert_int_eq(flash_train_run(&o, &err), FLASH_ERR_RUNTIME);
        ck_assert_msg(strstr(err.msg, "the loss is NaN") != NULL, "%s", err.msg);
    }
    flash_registry_destroy(reg);
    flash_cfg_free(root);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *trainer_suite(void)
{
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_create("trainer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_lr_schedule);
    tcase_add_test(tc, test_train_config_errors);
    tcase_add_test(tc, test_nan_guard);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(trainer_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
