/* The training loop (core/train/trainer.c): the learning-rate schedule against
 * its closed form, the train: section's checks, and the guard that stops a
 * run at a non-finite loss and keeps the last good checkpoint. The `denoise`
 * strategy: its loss in every parameterisation, with and without min-SNR
 * weights, against a double-precision replay; CFG label dropout rates. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flash/flash.h"
#include "flash/trainer.h"

#include "model_trainer.h"

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

/* 64 images (1, 8, 8) of zeros except example 37, all `value`. */
static void write_poisoned(const char *path, float value)
{
    float *x = calloc(64 * 64, sizeof *x);
    for (int j = 0; j < 64; j++) x[37 * 64 + j] = value;
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
    /* finite data (a dataset holding NaN is refused when it loads) with one
     * example so large that the x0 loss, its square error, overflows: the
     * non-finite value arises inside training */
    write_poisoned(data, 1e30f);
    snprintf(yaml, sizeof yaml,
             "seed: 1\n"
             "dataset: {plugin: npy, path: %s}\n"
             "schedule: {plugin: discrete}\n"
             "model: {plugin: unet, base_channels: 8, groups: 4, num_classes: 0, image_size: 8, mid_blocks: 1}\n"
             "strategy: {plugin: denoise, prediction: sample}\n"
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
    ck_assert_msg(st == FLASH_ERR_RUNTIME, "%d: %s", st, err.msg);
    ck_assert_msg(strstr(err.msg, "the loss is") != NULL || strstr(err.msg, "the gradient norm is") != NULL, "%s",
                  err.msg);
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
        ck_assert_msg(strstr(err.msg, "the loss is") != NULL || strstr(err.msg, "the gradient norm is") != NULL,
                      "%s", err.msg);
        char want[64];
        snprintf(want, sizeof want, "step %ld:", bad_step);
        ck_assert_msg(strstr(err.msg, want) != NULL, "%s", err.msg);
    }
    flash_registry_destroy(reg);
    flash_cfg_free(root);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A dataset holding NaN is refused when it loads, naming the file and the
 * first bad example, before any step is taken. */
START_TEST(test_nonfinite_dataset_refused)
{
    char dir[] = "/tmp/flash_test_trainer_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char data[128], run[128], yaml[1024];
    snprintf(data, sizeof data, "%s/x.npy", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    write_poisoned(data, NAN);
    snprintf(yaml, sizeof yaml,
             "seed: 1\n"
             "dataset: {plugin: npy, path: %s}\n"
             "schedule: {plugin: discrete}\n"
             "model: {plugin: unet, base_channels: 8, groups: 4, num_classes: 0, image_size: 8, mid_blocks: 1}\n"
             "strategy: {plugin: denoise}\n"
             "train: {steps: 2, batch_size: 8}\n",
             data);
    flash_error err = {0};
    flash_cfg *root = NULL;
    ck_assert_msg(flash_cfg_parse_string(yaml, "test", &root, &err) == FLASH_OK, "%s", err.msg);
    flash_registry *reg = flash_registry_create();
    ck_assert_msg(flash_registry_load_dir(reg, FLASH_BINARY_DIR "/lib/flash/plugins", &err) == FLASH_OK, "%s",
                  err.msg);
    flash_train_opts o = {.size = sizeof o, .root = root, .registry = reg, .run_dir = run, .resume = false};
    ck_assert_int_eq(flash_train_run(&o, &err), FLASH_ERR_INPUT);
    ck_assert_msg(strstr(err.msg, data) != NULL && strstr(err.msg, "example 37") != NULL &&
                      strstr(err.msg, "NaN") != NULL,
                  "%s", err.msg);
    flash_registry_destroy(reg);
    flash_cfg_free(root);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- the denoise strategy against a replay in double precision ---------- */

/* A model whose output is its input (any prediction type), recording the
 * labels it was given: enough to check x_t, the targets, the conversions
 * between parameterisations and the min-SNR weights. */
typedef struct ident {
    flash_prediction pred;
    int num_classes;
    int labels[256];
} ident;

static void ident_info(void *self, flash_model_info *out)
{
    ident *m = self;
    memset(out, 0, sizeof *out);
    out->ndim = 1;
    out->shape[0] = 6;
    out->num_classes = m->num_classes;
    out->prediction = m->pred;
}

static flash_tensor *ident_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond)
{
    ident *m = self;
    for (int i = 0; cond->labels && i < cond->n && i < 256; i++) m->labels[i] = cond->labels[i];
    return flash_copy(c, x);
}

static const flash_model_api ident_api = {
    .head = {sizeof ident_api, FLASH_KIND_MODEL, "identity", "test", NULL, NULL, NULL},
    .info = ident_info,
    .forward = ident_forward,
};

typedef struct dn_fixture {
    flash_registry *reg;
    flash_instance sched, strat;
    ident model;
    flash_instance model_inst;
} dn_fixture;

static void dn_make(dn_fixture *f, const char *strategy_yaml, flash_prediction pred, int num_classes)
{
    flash_error err = {0};
    memset(f, 0, sizeof *f);
    f->reg = flash_registry_create();
    ck_assert_msg(flash_registry_load_dir(f->reg, FLASH_BINARY_DIR "/lib/flash/plugins", &err) == FLASH_OK, "%s",
                  err.msg);
    flash_env env = {.size = sizeof env, .registry = f->reg, .seed = 0};
    flash_cfg *s = NULL, *g = NULL;
    f->model.pred = pred;
    f->model.num_classes = num_classes;
    ck_assert_int_eq(flash_cfg_parse_string("plugin: discrete\n", "test", &s, &err), FLASH_OK);
    ck_assert_msg(flash_instance_create(&env, FLASH_KIND_SCHEDULE, s, &f->sched, &err) == FLASH_OK, "%s", err.msg);
    ck_assert_int_eq(flash_cfg_parse_string(strategy_yaml, "test", &g, &err), FLASH_OK);
    ck_assert_msg(flash_instance_create(&env, FLASH_KIND_STRATEGY, g, &f->strat, &err) == FLASH_OK, "%s", err.msg);
    flash_cfg_free(s);
    flash_cfg_free(g);
    f->model_inst.comp = &ident_api.head;
    f->model_inst.self = &f->model;
}

static void dn_free(dn_fixture *f)
{
    flash_instance_destroy(&f->strat);
    flash_instance_destroy(&f->sched);
    flash_registry_destroy(f->reg);
}

/* The loss `denoise` should return for the identity model, computed from
 * scratch: replays the strategy's draws (timesteps, then the noise) from a
 * copy of its RNG. */
static double dn_expected(dn_fixture *f, flash_rng rng, const float *x0, int n, int d, flash_prediction target,
                          double gamma)
{
    const flash_schedule_api *sch = FLASH_API(&f->sched, flash_schedule_api);
    const int T = sch->num_train_timesteps(f->sched.self);
    double al[64], sg[64];
    for (int i = 0; i < n; i++) {
        double t = (double)flash_rng_below(&rng, (uint64_t)T);
        sch->alpha_sigma(f->sched.self, t, &al[i], &sg[i]);
    }
    flash_ctx *c = flash_ctx_create(1 << 16);
    int shape[2] = {n, d};
    flash_tensor *eps = flash_randn(c, &rng, 2, shape);
    const flash_prediction p = f->model.pred;
    double total = 0;
    for (int i = 0; i < n; i++) {
        double a = al[i], s = sg[i], se = 0;
        for (int j = 0; j < d; j++) {
            double x = x0[i * d + j], e = eps->data[i * d + j];
            double xt = a * x + s * e, out = xt;
            double x0h = p == FLASH_PRED_SAMPLE ? out : p == FLASH_PRED_EPSILON ? (xt - s * out) / a : a * xt - s * out;
            double eh = p == FLASH_PRED_EPSILON ? out : p == FLASH_PRED_SAMPLE ? (xt - a * out) / s : s * xt + a * out;
            double pr = target == FLASH_PRED_EPSILON ? eh : target == FLASH_PRED_SAMPLE ? x0h : a * eh - s * x0h;
            double tg = target == FLASH_PRED_EPSILON ? e : target == FLASH_PRED_SAMPLE ? x : a * e - s * x;
            se += (pr - tg) * (pr - tg);
        }
        double w = 1;
        if (gamma > 0) {
            double snr = a * a / (s * s), mn = snr < gamma ? snr : gamma;
            w = target == FLASH_PRED_EPSILON ? mn / snr : target == FLASH_PRED_SAMPLE ? mn : mn / (snr + 1);
        }
        total += w * se / d;
    }
    flash_ctx_destroy(c);
    return total / n;
}

static void dn_check(const char *yaml, flash_prediction model_pred, flash_prediction target, double gamma)
{
    dn_fixture f;
    dn_make(&f, yaml, model_pred, 0);
    const int n = 32, d = 6;
    float x0[32 * 6];
    for (int i = 0; i < n * d; i++) x0[i] = (float)sin(0.37 * i);
    flash_rng rng;
    flash_rng_seed(&rng, 99);
    double want = dn_expected(&f, rng, x0, n, d, target, gamma);
    flash_ctx *c = flash_ctx_create(1 << 20);
    int shape[2] = {n, d};
    train_batch b = {.model = &f.model_inst, .schedule = &f.sched, .x = flash_tensor_from(c, 2, shape, x0),
                     .rng = &rng};
    const model_trainer *mt = f.strat.self; /* the strategy's state begins with it */
    flash_tensor *loss = mt->step(mt->method, c, &b, 1);
    ck_assert_msg(loss && flash_ctx_ok(c), "%s", flash_ctx_error(c));
    ck_assert_msg(fabs(loss->data[0] - want) <= 1e-4 * fabs(want) + 1e-6, "%s: loss %.9g, expected %.9g", yaml,
                  loss->data[0], want);
    flash_ctx_destroy(c);
    dn_free(&f);
}

START_TEST(test_denoise_targets)
{
    /* the model's own parameterisation, plain MSE */
    dn_check("plugin: denoise\n", FLASH_PRED_EPSILON, FLASH_PRED_EPSILON, 0);
    dn_check("plugin: denoise\n", FLASH_PRED_V, FLASH_PRED_V, 0);
    /* min-SNR-5 weights in each space */
    dn_check("plugin: denoise\nmin_snr_gamma: 5\n", FLASH_PRED_EPSILON, FLASH_PRED_EPSILON, 5);
    dn_check("plugin: denoise\nmin_snr_gamma: 5\n", FLASH_PRED_V, FLASH_PRED_V, 5);
    dn_check("plugin: denoise\nmin_snr_gamma: 5\n", FLASH_PRED_SAMPLE, FLASH_PRED_SAMPLE, 5);
    /* losses in another space than the model's output */
    dn_check("plugin: denoise\nprediction: v\n", FLASH_PRED_EPSILON, FLASH_PRED_V, 0);
    dn_check("plugin: denoise\nprediction: epsilon\nmin_snr_gamma: 2\n", FLASH_PRED_V, FLASH_PRED_EPSILON, 2);
    dn_check("plugin: denoise\nprediction: v\n", FLASH_PRED_SAMPLE, FLASH_PRED_V, 0);
}
END_TEST

START_TEST(test_denoise_label_dropout)
{
    const double ps[3] = {0.0, 0.3, 1.0};
    const char *yaml[3] = {"plugin: denoise\nlabel_dropout: 0\n", "plugin: denoise\nlabel_dropout: 0.3\n",
                           "plugin: denoise\nlabel_dropout: 1\n"};
    for (int k = 0; k < 3; k++) {
        dn_fixture f;
        dn_make(&f, yaml[k], FLASH_PRED_EPSILON, 10);
        const int n = 256;
        static float x0[256 * 6];
        int labels[256];
        for (int i = 0; i < n; i++) labels[i] = i % 10;
        flash_rng rng;
        flash_rng_seed(&rng, 5);
        flash_ctx *c = flash_ctx_create(1 << 20);
        int shape[2] = {n, 6};
        train_batch b = {.model = &f.model_inst, .schedule = &f.sched, .x = flash_tensor_from(c, 2, shape, x0),
                         .labels = labels, .num_classes = 10, .rng = &rng};
        const model_trainer *mt = f.strat.self;
        ck_assert_ptr_nonnull(mt->step(mt->method, c, &b, 1));
        int dropped = 0;
        for (int i = 0; i < n; i++) {
            ck_assert(f.model.labels[i] == labels[i] || f.model.labels[i] == 10); /* kept, or the null class */
            dropped += f.model.labels[i] == 10;
        }
        /* binomial(256, p): within 4 standard deviations */
        double mean = n * ps[k], sd = sqrt(n * ps[k] * (1 - ps[k]));
        ck_assert_msg(fabs(dropped - mean) <= 4 * sd + 1e-9, "p = %g: %d of %d dropped", ps[k], dropped, n);
        /* evaluation batches keep every label */
        b.eval = 1;
        flash_ctx_reset(c);
        b.x = flash_tensor_from(c, 2, shape, x0);
        ck_assert_ptr_nonnull(mt->step(mt->method, c, &b, 1));
        for (int i = 0; i < n; i++) ck_assert_int_eq(f.model.labels[i], labels[i]);
        flash_ctx_destroy(c);
        dn_free(&f);
    }
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
    tcase_add_test(tc, test_nonfinite_dataset_refused);
    tcase_add_test(tc, test_denoise_targets);
    tcase_add_test(tc, test_denoise_label_dropout);
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
