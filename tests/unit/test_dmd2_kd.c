/* The `dmd2` and `kd` strategies on the exact `gmm` teacher, where the
 * answers are known:
 *   - DMD's fake score trained on a frozen student whose samples are
 *     N(b, w^2 I) (an affine x0-prediction model) converges to that
 *     Gaussian's posterior mean E[x0 | x_t] = m + v a / (a^2 v + s^2) (x_t - a m)
 *     under the schedule;
 *   - DMD moves an affine student onto a one-Gaussian teacher (the sign and
 *     the normalisation of the distribution-matching gradient);
 *   - kd's cached bank holds the teacher's sampler run on the bank's own
 *     noise, and is reused when its key matches;
 *   - both resume bit for bit (interrupted and continued vs straight: the
 *     checkpoints' bytes, the fake score's too). */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flash/flash.h"
#include "flash/trainer.h"

#include "distill.h"

/* ---- an affine x0-prediction model: out = w x + b ---------------------- */

typedef struct affine {
    flash_params *p;
    flash_tensor *w, *b;
} affine;

static flash_status af_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)cfg, (void)env;
    affine *a = calloc(1, sizeof *a);
    if (!a || !(a->p = flash_params_create())) {
        free(a);
        return flash_error_set(err, FLASH_ERR_NOMEM, "affine: out of memory");
    }
    a->w = flash_params_add(a->p, "w", 1, (int[]){1});
    a->b = flash_params_add(a->p, "b", 1, (int[]){2});
    flash_status st = flash_params_finalize(a->p, err);
    if (st) {
        flash_params_destroy(a->p);
        free(a);
        return st;
    }
    a->w->data[0] = 0.5f;
    a->b->data[0] = 0.2f;
    a->b->data[1] = -0.1f;
    *self = a;
    return FLASH_OK;
}

static void af_destroy(void *self)
{
    affine *a = self;
    if (!a) return;
    flash_params_destroy(a->p);
    free(a);
}

static void af_info(void *self, flash_model_info *out)
{
    (void)self;
    *out = (flash_model_info){.ndim = 1, .shape = {2, 0, 0}, .prediction = FLASH_PRED_SAMPLE};
}

static flash_params *af_params(void *self) { return ((affine *)self)->p; }

static flash_tensor *af_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond)
{
    (void)cond;
    affine *a = self;
    return flash_add(c, flash_mul(c, x, a->w), a->b);
}

static const char *const af_keys[] = {NULL};
static const flash_model_api af_api = {
    .head = {sizeof af_api, FLASH_KIND_MODEL, "affine", "test model x0 = w x + b", af_keys, af_create, af_destroy},
    .info = af_info,
    .params = af_params,
    .forward = af_forward,
};
static const flash_component *const comps[] = {&af_api.head};
static const flash_plugin_desc desc = {FLASH_ABI_MAJOR, FLASH_ABI_MINOR, "test_dmd2_kd", "1", comps, 1};

/* ---- fixture -------------------------------------------------------------- */

#define SCHED "schedule: {plugin: discrete, beta_schedule: scaled_linear, beta_start: 0.00085, beta_end: 0.012}\n"
#define GMM2 "teacher: {plugin: gmm, weights: [0.5, 0.5], means: [[-1.5, 0.5], [1.0, -1.0]], stds: [0.3, 0.5]}\n"

static flash_registry *registry(void)
{
    flash_registry *r = flash_registry_create();
    flash_error e = {0};
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(flash_registry_load_default(r, NULL, &e) == FLASH_OK, "%s", e.msg);
    ck_assert_msg(flash_registry_add(r, &desc, "test_dmd2_kd", &e) == FLASH_OK, "%s", e.msg);
    return r;
}

static const char *pipeline(const char *teacher, const char *student, const char *strategy, int steps, int batch)
{
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "seed: 5\nthreads: 1\n" SCHED "%sstudent: %s\n"
             "sampler: {plugin: ddim, timesteps: [999]}\n"
             "strategy: %s\n"
             "losses: [{plugin: reconstruction, weight: 0.5}]\n"
             "train: {steps: %d, batch_size: %d, lr: 1.0e-2, warmup_steps: 0, ckpt_every: 1000, log_every: 1}\n",
             teacher, student, strategy, steps, batch);
    return buf;
}

typedef struct fx {
    flash_registry *r;
    flash_cfg *root;
    flash_train_opts o;
    flash_run *run;
    distill *d;
    flash_error err;
} fx;

static void fx_open(fx *f, const char *yaml, const char *run_dir)
{
    memset(f, 0, sizeof *f);
    f->r = registry();
    ck_assert_msg(flash_cfg_parse_string(yaml, "t.yaml", &f->root, &f->err) == FLASH_OK, "%s", f->err.msg);
    f->o = (flash_train_opts){.size = sizeof f->o, .root = f->root, .registry = f->r, .run_dir = run_dir};
    ck_assert_msg(flash_train_open(&f->o, &f->run, &f->err) == FLASH_OK, "%s", f->err.msg);
    f->d = flash_run_strategy(f->run)->self;
}

static void fx_close(fx *f)
{
    flash_train_close(f->run);
    flash_cfg_free(f->root);
    flash_registry_destroy(f->r);
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- dmd2 ----------------------------------------------------------------- */

/* With the student frozen (its samples N(b, w^2 I)), the fake score's
 * updates alone (the strategy's after_step) make its x0-prediction the
 * posterior mean of that Gaussian at the training noise level t = 500. */
START_TEST(test_dmd2_fake_score_learns_student_posterior)
{
    fx f;
    fx_open(&f,
            pipeline(GMM2, "{plugin: affine}", "{plugin: dmd2, t_min: 500, t_max: 500, fake_updates: 5, fake_lr: 5.0e-3}",
                     10, 512),
            NULL);
    distill *d = f.d;
    ck_assert_int_eq(d->n_clones, 1);
    float *sp = flash_params_data(d->student_params);
    sp[0] = 1.3f; /* w: the student's samples have std 1.3 */
    sp[1] = 0.8f; /* b: and mean (0.8, -0.6) */
    sp[2] = -0.6f;
    flash_instance *strat = flash_run_strategy(f.run);
    const flash_strategy_api *api = FLASH_API(strat, flash_strategy_api);
    flash_ctx *c = flash_ctx_create(1 << 20);
    for (int64_t it = 1; it <= 400; it++)
        ck_assert_msg(api->after_step(strat->self, c, f.run, it, &f.err) == FLASH_OK, "%s", f.err.msg);
    /* the student did not move */
    ck_assert_float_eq(sp[0], 1.3f);
    const float *fp = flash_params_data(FLASH_API(d->clones[0], flash_model_api)->params(d->clones[0]->self));
    double a, s;
    flash_schedule_eval(d->student->schedule, 500, &a, &s);
    const double v = 1.3 * 1.3, k = v * a / (a * a * v + s * s);
    const double m[2] = {0.8, -0.6};
    ck_assert_msg(fabs(fp[0] - k) < 0.02, "fake score slope %g, posterior %g", fp[0], k);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(fabs(fp[1 + i] - (1 - k * a) * m[i]) < 0.03, "fake score offset[%d] %g, posterior %g", i,
                      fp[1 + i], (1 - k * a) * m[i]);
    flash_ctx_destroy(c);
    fx_close(&f);
}
END_TEST

/* The whole method on a one-Gaussian teacher N((1, -2), 0.7^2 I): the
 * affine student's samples move onto it (DMD's gradient points from the
 * fake score to the real one, eq. 7-8). One noise level, t = 500, where
 * both posterior means are affine in x_t, so the time-blind affine fake
 * score can be exact. */
START_TEST(test_dmd2_student_matches_gaussian_teacher)
{
    char dir[] = "/tmp/flash_test_dmd2_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    flash_registry *r = registry();
    flash_cfg *root = NULL;
    flash_error e = {0};
    ck_assert(flash_cfg_parse_string(pipeline("teacher: {plugin: gmm, weights: [1], means: [[1.0, -2.0]], stds: [0.7]}\n",
                                              "{plugin: affine}",
                                              "{plugin: dmd2, t_min: 500, t_max: 500, fake_updates: 5, fake_lr: 1.0e-2}",
                                              400, 256),
                                     "t.yaml", &root, &e) == FLASH_OK);
    ck_assert(flash_cfg_set(root, "train.ema_decay=0", &e) == FLASH_OK);
    char run[200];
    snprintf(run, sizeof run, "%s/run", dir);
    flash_train_opts o = {.size = sizeof o, .root = root, .registry = r, .run_dir = run, .command = "flash distill"};
    ck_assert_msg(flash_train_run(&o, &e) == FLASH_OK, "%s", e.msg);
    /* the student's weights from its checkpoint */
    char path[300];
    snprintf(path, sizeof path, "%s/%s", run, FLASH_RUN_CHECKPOINT);
    flash_safetensors *st = NULL;
    ck_assert_msg(flash_safetensors_open(path, &st, &e) == FLASH_OK, "%s", e.msg);
    const float *w = flash_safetensors_find(st, "w")->data, *b = flash_safetensors_find(st, "b")->data;
    ck_assert_msg(fabs(fabs(w[0]) - 0.7) < 0.1, "student std %g, teacher 0.7", w[0]);
    ck_assert_msg(fabs(b[0] - 1.0) < 0.1 && fabs(b[1] + 2.0) < 0.1, "student mean (%g, %g), teacher (1, -2)", b[0], b[1]);
    flash_safetensors_close(st);
    flash_cfg_free(root);
    flash_registry_destroy(r);
    rm_rf(dir);
}
END_TEST

/* A GAN term needs a student with encoder features: the 2-D affine model
 * has none, and the error says so. */
START_TEST(test_dmd2_gan_needs_encoder)
{
    flash_registry *r = registry();
    flash_cfg *root = NULL;
    flash_error e = {0};
    ck_assert(flash_cfg_parse_string(pipeline(GMM2, "{plugin: affine}", "{plugin: dmd2, gan_weight: 0.1}", 2, 8), "t.yaml",
                                     &root, &e) == FLASH_OK);
    flash_train_opts o = {.size = sizeof o, .root = root, .registry = r};
    flash_run *run = NULL;
    ck_assert_int_eq(flash_train_open(&o, &run, &e), FLASH_ERR_CONFIG);
    ck_assert_msg(strstr(e.msg, "encoder") && strstr(e.msg, "affine"), "%s", e.msg);
    flash_cfg_free(root);
    flash_registry_destroy(r);
}
END_TEST

/* ---- kd ------------------------------------------------------------------- */

#define KD_STRATEGY "{plugin: kd, bank_size: 100, bank_seed: %d, teacher_sampler: {plugin: dpmpp_2m, steps: 10}}"

/* The one kd_bank_*.npy of dir other than skip (NULL: any); returns how many there are. */
static int find_bank(const char *dir, const char *skip, char *out, size_t n)
{
    DIR *dd = opendir(dir);
    ck_assert_ptr_nonnull(dd);
    int count = 0;
    struct dirent *de;
    while ((de = readdir(dd))) {
        if (strncmp(de->d_name, "kd_bank_", 8) != 0) continue;
        count++;
        if (skip && strstr(skip, de->d_name)) continue;
        snprintf(out, n, "%s/%s", dir, de->d_name);
    }
    closedir(dd);
    return count;
}

START_TEST(test_kd_bank_is_teacher_ode_and_cached)
{
    char dir[] = "/tmp/flash_test_kd_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char strat[256];
    snprintf(strat, sizeof strat, KD_STRATEGY, 3);
    fx f;
    fx_open(&f, pipeline(GMM2, "{plugin: mlp, dim: 2, hidden: 16, layers: 1}", strat, 4, 16), dir);
    char path[600];
    ck_assert_int_eq(find_bank(dir, NULL, path, sizeof path), 1);
    flash_array a = {0};
    ck_assert_msg(flash_npy_read(path, &a, &f.err) == FLASH_OK, "%s", f.err.msg);
    ck_assert_int_eq(a.ndim, 2);
    ck_assert_int_eq(a.shape[0], 100);
    ck_assert_int_eq(a.shape[1], 5); /* x_T (2) | F(x_T) (2) | label */
    const float *rows = a.data;

    /* the dpmpp_2m sampler plugin run directly on the bank's noise */
    flash_ctx *c = flash_ctx_create(1 << 20);
    float noise[200];
    for (int i = 0; i < 100; i++) {
        noise[2 * i] = rows[5 * i];
        noise[2 * i + 1] = rows[5 * i + 1];
        ck_assert_float_eq(rows[5 * i + 4], -1.0f); /* an unconditional teacher */
    }
    flash_tensor *x = flash_tensor_from(c, 2, (int[]){100, 2}, noise);
    flash_cfg *sc = NULL;
    ck_assert(flash_cfg_parse_string("{plugin: dpmpp_2m, steps: 10}", "s.yaml", &sc, &f.err) == FLASH_OK);
    flash_instance s = {0};
    ck_assert_msg(flash_instance_create(f.d->env, FLASH_KIND_SAMPLER, sc, &s, &f.err) == FLASH_OK, "%s", f.err.msg);
    flash_sample_request rq = {.size = sizeof rq, .den = f.d->teacher, .x = x, .stop_at = -1.0};
    flash_tensor *y = FLASH_API(&s, flash_sampler_api)->sample(s.self, c, &rq);
    ck_assert_msg(y && flash_ctx_ok(c), "%s", flash_ctx_error(c));
    double worst = 0, spread = 0;
    for (int i = 0; i < 100; i++)
        for (int j = 0; j < 2; j++) {
            worst = fmax(worst, fabs((double)rows[5 * i + 2 + j] - y->data[2 * i + j]));
            spread += fabs(rows[5 * i + 2 + j]);
        }
    ck_assert_msg(worst < 1e-5, "bank vs sampler: %g", worst);
    ck_assert_double_gt(spread / 200, 0.5); /* samples of the mixture, not the noise shrunk */
    flash_instance_destroy(&s);
    flash_cfg_free(sc);
    flash_ctx_destroy(c);
    flash_array_free(&a);
    fx_close(&f);

    /* the same key: the file is read, not written again */
    struct stat before, after;
    ck_assert_int_eq(stat(path, &before), 0);
    fx_open(&f, pipeline(GMM2, "{plugin: mlp, dim: 2, hidden: 16, layers: 1}", strat, 4, 16), dir);
    fx_close(&f);
    ck_assert_int_eq(stat(path, &after), 0);
    ck_assert_uint_eq(before.st_ino, after.st_ino);
    ck_assert_int_eq(find_bank(dir, NULL, (char[600]){0}, 600), 1);
    /* another seed, or another teacher: another bank */
    snprintf(strat, sizeof strat, KD_STRATEGY, 4);
    fx_open(&f, pipeline(GMM2, "{plugin: mlp, dim: 2, hidden: 16, layers: 1}", strat, 4, 16), dir);
    fx_close(&f);
    ck_assert_int_eq(find_bank(dir, NULL, (char[600]){0}, 600), 2);
    fx_open(&f,
            pipeline("teacher: {plugin: gmm, weights: [1], means: [[1.0, -2.0]], stds: [0.7]}\n",
                     "{plugin: mlp, dim: 2, hidden: 16, layers: 1}", strat, 4, 16),
            dir);
    fx_close(&f);
    ck_assert_int_eq(find_bank(dir, NULL, (char[600]){0}, 600), 3);
    rm_rf(dir);
}
END_TEST

/* ---- resume --------------------------------------------------------------- */

static char *slurp(const char *path, size_t *n)
{
    char *buf = NULL;
    flash_error e = {0};
    ck_assert_msg(flash_read_file(path, &buf, n, &e) == FLASH_OK, "%s", e.msg);
    return buf;
}

static void same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    ck_assert_msg(na == nb && memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* Straight to 6 iterations vs stopped after 3 and resumed: the same bytes. */
static void resume_bit_for_bit(const char *strategy, const char *aux)
{
    char dir[] = "/tmp/flash_test_resume_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    flash_registry *r = registry();
    flash_error e = {0};
    char straight[200], split[200];
    snprintf(straight, sizeof straight, "%s/straight", dir);
    snprintf(split, sizeof split, "%s/split", dir);
    const char *runs[] = {straight, split, split};
    const int64_t stop[] = {0, 3, 0};
    for (int i = 0; i < 3; i++) {
        flash_cfg *root = NULL;
        ck_assert(flash_cfg_parse_string(pipeline(GMM2, "{plugin: mlp, dim: 2, hidden: 16, layers: 1, prediction_type: sample}",
                                                  strategy, 6, 32),
                                         "t.yaml", &root, &e) == FLASH_OK);
        flash_train_opts o = {.size = sizeof o, .root = root, .registry = r, .run_dir = runs[i], .resume = i == 2,
                              .stop_after = stop[i], .command = "flash distill"};
        ck_assert_msg(flash_train_run(&o, &e) == FLASH_OK, "%s", e.msg);
        flash_cfg_free(root);
    }
    const char *files[] = {FLASH_RUN_CHECKPOINT, aux};
    for (int i = 0; i < 2 && files[i]; i++) {
        char a[300], b[300];
        snprintf(a, sizeof a, "%s/%s", straight, files[i]);
        snprintf(b, sizeof b, "%s/%s", split, files[i]);
        same_file(a, b);
    }
    flash_registry_destroy(r);
    rm_rf(dir);
}

START_TEST(test_dmd2_resumes_bit_for_bit)
{
    resume_bit_for_bit("{plugin: dmd2, fake_updates: 3, fake_lr: 1.0e-3}", "fake_score.safetensors");
}
END_TEST

START_TEST(test_kd_resumes_bit_for_bit)
{
    resume_bit_for_bit("{plugin: kd, bank_size: 64, teacher_sampler: {plugin: dpmpp_2m, steps: 5}}", NULL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dmd2_kd");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_dmd2_fake_score_learns_student_posterior);
    tcase_add_test(tc, test_dmd2_student_matches_gaussian_teacher);
    tcase_add_test(tc, test_dmd2_gan_needs_encoder);
    tcase_add_test(tc, test_kd_bank_is_teacher_ode_and_cached);
    tcase_add_test(tc, test_dmd2_resumes_bit_for_bit);
    tcase_add_test(tc, test_kd_resumes_bit_for_bit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
