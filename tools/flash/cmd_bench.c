/* flash bench [CONFIG] [--set KEY=VALUE]...: times the configured model
 * (default unet-s) the way tools/bench/unet_torch.py times its PyTorch
 * peer, and prints one JSON line with the same fields. */
#include "cli.h"
#include "flash/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_args {
    const char *config, *out;
    long threads, batch, repeats, warmup, seed;
    bool profile, distill;
    flash_options_sets sets;
} bench_args;

static const flash_opt bench_opts[] = {
    FLASH_OPT_SETS(bench_args, sets),
    FLASH_INT("--threads", "N", bench_args, threads, 1, 1024, "threads (default 2)"),
    FLASH_INT("--batch", "B", bench_args, batch, 1, 1000000, "training and batched-NFE batch size (default 64)"),
    FLASH_INT("--repeats", "R", bench_args, repeats, 1, 1000000, "timed runs (default 10)"),
    FLASH_INT("--warmup", "W", bench_args, warmup, 1, 1000000, "untimed runs first (default 3)"),
    FLASH_INT("--seed", "S", bench_args, seed, 0, 1000000, "seed of the weights and inputs (default 0)"),
    FLASH_STRING("--out", "FILE", bench_args, out, "also write the JSON line to FILE"),
    FLASH_FLAG("--distill", bench_args, distill,
        "CONFIG is a distillation pipeline: time R iterations of its\n"
        "strategy after W, split into phases (the strategy's step and in it\n"
        "each network's evaluations: teacher, student, fake_score, ...;\n"
        "discriminator; backward; optimizer; after_step), one JSON line and a\n"
        "table on stderr. The run goes to a temporary folder"),
    FLASH_FLAG("--profile", bench_args, profile,
        "after the timings, R training steps and R batched NFEs with every\n"
        "kernel timed: a table on stderr of time, share, GFLOP and GFLOP/s per\n"
        "kernel, and the time outside the kernels (the framework's own)"),
    FLASH_OPT_DTYPE_OF(bench_args, sets),
    FLASH_OPT_DEVICE_OF(bench_args, sets,
                        "The\n"
                        "context and the parameters live there; each timed run ends with a\n"
                        "device sync"),
    FLASH_OPT_FORCE_ENTRY,
    {0},
};

static const flash_command bench_cmd = {
    .name = "bench",
    .positional = "CONFIG",
    .positional_optional = true,
    .positional_offset = offsetof(bench_args, config),
    .opts = bench_opts,
    .about = "Times the config's model (default: model: {plugin: unet}, i.e. unet-s):\n"
             "  train_step_s  one training step on a batch of B (default 64): forward,\n"
             "                MSE loss (cross-entropy for classifiers), backward, Adam\n"
             "  nfe_b1_s      one no-grad forward of a batch of 1\n"
             "  nfe_b64_s     one no-grad forward of a batch of B\n"
             "each the median of R runs (b1: 10 R) after W warm-up runs, and\n"
             "sgemm_gflops, the rate of a 1024^3 matrix product (flash_matmul), as the\n"
             "peak to compare with. The roofline: gflop_forward_per_sample and\n"
             "gflop_train_step count the operations of the matrix products and\n"
             "convolutions from their shapes (2 per multiply-add); train_gflops and\n"
             "nfe_b64_gflops are the rates the timings reached, *_peak_fraction\n"
             "their share of sgemm_gflops. Prints one JSON line on stdout\n"
             "(tools/bench/bench.sh puts it next to the PyTorch peer's and prints\n"
             "ratios).\n",
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct bench {
    flash_instance model;
    const flash_model_api *api;
    flash_model_info info;
    flash_params *P;
    flash_ctx *ctx;
    flash_rng rng;
    int batch;
    float *t;
    int *labels;
    flash_adam adam;
    int64_t adam_step;
    double adam_s; /* time in the optimiser step (the parameters' table, not the context's) */
    float *host_in[2]; /* fixed random inputs and targets, drawn once */
} bench;

/* Input (slot 0) or target (slot 1) of n samples: drawn once on the host
 * (like the PyTorch peer's fixed tensors), copied in each call as a data
 * loader would. */
static flash_tensor *make_input(bench *b, int n, int slot)
{
    int shape[4] = {n, b->info.shape[0], b->info.shape[1], b->info.shape[2]};
    size_t per = 1;
    for (int i = 0; i < b->info.ndim; i++) per *= (size_t)b->info.shape[i];
    if (!b->host_in[slot]) {
        size_t total = per * (size_t)(b->batch > n ? b->batch : n);
        if (!(b->host_in[slot] = malloc(total * sizeof(float)))) return NULL;
        flash_rng_fill_normal(&b->rng, b->host_in[slot], total);
    }
    return flash_tensor_from(b->ctx, 1 + b->info.ndim, shape, b->host_in[slot]);
}

static flash_status run_train(bench *b, flash_error *err)
{
    flash_ctx *c = b->ctx;
    flash_ctx_reset(c);
    flash_tensor *x = make_input(b, b->batch, 0);
    flash_cond cond = {.n = b->batch, .t = b->t, .labels = b->info.num_classes > 0 ? b->labels : NULL};
    flash_tensor *out = b->api->forward(b->model.self, c, x, &cond);
    flash_tensor *loss;
    if (b->info.out_dim > 0)
        loss = flash_cross_entropy(c, out, b->labels);
    else
        loss = flash_mse(c, out, make_input(b, b->batch, 1));
    if (!loss || !flash_ctx_ok(c)) return flash_ctx_status(c, err);
    flash_params_zero_grad(b->P);
    flash_status st = flash_backward(c, loss, err);
    if (st) return st;
    const double t0 = flash_now();
    if ((st = flash_adam_step(b->P, &b->adam, ++b->adam_step, err))) return st;
    b->adam_s += flash_now() - t0;
    return flash_ctx_sync(c) ? flash_ctx_status(c, err) : FLASH_OK;
}

static flash_status run_nfe(bench *b, int n, flash_error *err)
{
    flash_ctx *c = b->ctx;
    flash_ctx_reset(c);
    bool was = flash_grad_set(c, false);
    flash_tensor *x = make_input(b, n, 0);
    flash_cond cond = {.n = n, .t = b->t, .labels = b->info.num_classes > 0 ? b->labels : NULL};
    flash_tensor *out = b->api->forward(b->model.self, c, x, &cond);
    flash_grad_set(c, was);
    if (!out || flash_ctx_sync(c)) return flash_ctx_status(c, err);
    return FLASH_OK;
}

typedef flash_status (*bench_fn)(bench *b, int n, flash_error *err);

static flash_status train_fn(bench *b, int n, flash_error *err)
{
    (void)n;
    return run_train(b, err);
}

static flash_status time_median(bench *b, bench_fn fn, int n, int warmup, int repeats, double *out,
                                flash_error *err)
{
    flash_status st;
    for (int i = 0; i < warmup; i++)
        if ((st = fn(b, n, err))) return st;
    double *v = malloc((size_t)repeats * sizeof *v);
    if (!v) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    for (int i = 0; i < repeats; i++) {
        double t0 = flash_now();
        if ((st = fn(b, n, err))) {
            free(v);
            return st;
        }
        v[i] = flash_now() - t0;
    }
    *out = median(v, repeats);
    free(v);
    return FLASH_OK;
}

/* The matrix-product rate of this build on this machine: the ceiling a
 * convolution lowered to GEMM can approach. */
static flash_status sgemm_rate(bench *b, double *gflops, flash_error *err)
{
    const int n = 1024, reps = 5;
    double v[5];
    flash_ctx *c = b->ctx;
    flash_ctx_reset(c);
    bool was = flash_grad_set(c, false);
    int s[2] = {n, n};
    flash_tensor *A = flash_randn(c, &b->rng, 2, s), *B = flash_randn(c, &b->rng, 2, s);
    for (int i = 0; i < reps + 1; i++) {
        double t0 = flash_now();
        flash_tensor *C = flash_matmul(c, A, B);
        flash_ctx_sync(c);
        double dt = flash_now() - t0;
        if (!C) break;
        if (i > 0) v[i - 1] = dt;
    }
    flash_grad_set(c, was);
    if (!flash_ctx_ok(c)) return flash_ctx_status(c, err);
    *gflops = 2.0 * n * (double)n * n / median(v, reps) / 1e9;
    return FLASH_OK;
}

/* Profile rows by time, the slowest first (a few dozen: insertion sort). */
static void slowest_first(flash_profile_row *rows, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && rows[j].seconds > rows[j - 1].seconds; j--) {
            flash_profile_row t = rows[j];
            rows[j] = rows[j - 1];
            rows[j - 1] = t;
        }
}

/* The floating-point operations of one call of fn (matrix products and
 * convolutions, from their shapes), and with --profile the kernels' times
 * over `repeats` calls, per call. */
static flash_status count_flops(bench *b, bench_fn fn, int n, int repeats, bool table, const char *what,
                                double *flops, flash_error *err)
{
    flash_status st = flash_ctx_profile_start(b->ctx, err);
    if (st) return st;
    flash_profile_row rows[64];
    int k = 0;
    double wall = 0;
    b->adam_s = 0;
    for (int i = 0; i < repeats && !st; i++) {
        const double t0 = flash_now();
        st = fn(b, n, err);
        wall += flash_now() - t0;
    }
    if (!st) k = flash_ctx_profile_read(rows, 64);
    flash_ctx_profile_stop(b->ctx);
    if (st) return st;
    double f = 0, in_kernels = 0;
    for (int i = 0; i < k; i++) {
        f += rows[i].flops;
        in_kernels += rows[i].seconds;
    }
    *flops = f / repeats;
    if (!table) return FLASH_OK;
    slowest_first(rows, k);
    const double per = wall / repeats;
    fprintf(stderr, "\n%s: %.2f ms per call (%d calls, profiled)\n", what, 1e3 * per, repeats);
    fprintf(stderr, "  %-26s %9s %10s %7s %10s %9s\n", "kernel", "calls", "ms", "share", "GFLOP", "GFLOP/s");
    for (int i = 0; i < k; i++) {
        const double ms = 1e3 * rows[i].seconds / repeats, gf = rows[i].flops / repeats / 1e9;
        fprintf(stderr, "  %-26s %9.1f %10.3f %6.1f%%", rows[i].kernel, (double)rows[i].calls / repeats, ms,
                100 * rows[i].seconds / wall);
        if (gf > 0) fprintf(stderr, " %10.3f %9.1f", gf, gf / (ms / 1e3));
        fputc('\n', stderr);
    }
    const double adam = b->adam_s / repeats, outside = per - in_kernels / repeats - adam;
    if (adam > 0)
        fprintf(stderr, "  %-26s %9s %10.3f %6.1f%%\n", "adam (the parameters')", "", 1e3 * adam, 100 * adam / per);
    fprintf(stderr, "  %-26s %9s %10.3f %6.1f%%   shapes, tape, arena, dispatch\n", "outside the kernels", "",
            1e3 * outside, 100 * outside / per);
    fprintf(stderr, "  %-26s %9s %10.3f %6s %10.3f %9.1f\n", "total", "", 1e3 * per, "", *flops / 1e9,
            *flops / 1e9 / per);
    return FLASH_OK;
}

/* flash bench --distill: W iterations to a checkpoint, then R more from
 * it with every CPU context profiled, so the set-up (models, the teacher's
 * weights, a cached bank) and the warm-up stay outside the numbers. */
static int bench_distill(const bench_args *a)
{
    flash_error err = {0};
    flash_cli_pipeline pl = {0};
    flash_status st = flash_cli_pipeline_load(&pl, a->config, &a->sets, &err);
    char dir[] = "/tmp/flash_bench_distill_XXXXXX";
    bool made = false;
    if (!st && !mkdtemp(dir)) st = flash_error_set(&err, FLASH_ERR_IO, "flash bench: cannot make a temporary folder");
    made = !st;
    const long total = a->warmup + a->repeats;
    /* the schedule's warm-up would not fit W + R steps: timing does not
     * depend on the learning rate */
    char set[5][96];
    snprintf(set[0], sizeof set[0], "train.steps=%ld", total);
    snprintf(set[1], sizeof set[1], "train.ckpt_every=%ld", a->warmup);
    snprintf(set[2], sizeof set[2], "train.log_every=%ld", total);
    snprintf(set[3], sizeof set[3], "train.eval_every=0");
    snprintf(set[4], sizeof set[4], "train.warmup_steps=0");
    for (int i = 0; i < 5 && !st; i++) st = flash_cfg_set(pl.root, set[i], &err);
    if (!st) flash_set_threads((int)a->threads);
    flash_train_opts o = {.size = sizeof o, .root = pl.root, .registry = pl.registry, .run_dir = dir,
                          .stop_after = a->warmup, .command = "flash distill"};
    if (!st) st = flash_train_run(&o, &err);
    flash_profile_row phases[32], kernels[64];
    int np = 0, nk = 0;
    double t0 = 0, wall = 0;
    if (!st) {
        o.resume = true;
        o.stop_after = 0;
        flash_profile_enable(true);
        flash_profile_phase("set-up");
        t0 = flash_now();
        st = flash_train_run(&o, &err);
        wall = flash_now() - t0;
        flash_profile_phase(NULL);
        np = flash_profile_read_phases(phases, 32);
        nk = flash_ctx_profile_read(kernels, 64);
        flash_profile_enable(false);
    }
    if (made) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "flash bench: could not remove %s\n", dir);
    }
    if (st) {
        flash_cli_pipeline_free(&pl);
        return flash_cli_fail("bench", &err);
    }
    const flash_cfg *strat = flash_cfg_get(pl.root, "strategy");
    const char *sname = NULL;
    flash_cfg_str(strat, "plugin", "?", &sname, &err);
    double iter_s = 0, setup_s = 0, flops = 0;
    for (int i = 0; i < np; i++) {
        if (strcmp(phases[i].kernel, "set-up") == 0 || strcmp(phases[i].kernel, "final save") == 0)
            setup_s += phases[i].seconds;
        else
            iter_s += phases[i].seconds, flops += phases[i].flops;
    }
    slowest_first(phases, np);
    const long R = a->repeats;
    fprintf(stderr, "\n%s: %ld iterations after %ld, %.2f ms each (set-up and final save %.2f s, outside them)\n", sname, R,
            a->warmup, 1e3 * iter_s / R, setup_s);
    fprintf(stderr, "  %-22s %12s %7s %10s %9s\n", "phase", "ms/iter", "share", "GFLOP/iter", "GFLOP/s");
    char json[4096];
    int len = snprintf(json, sizeof json,
                       "{\"impl\": \"flash\", \"bench\": \"distill\", \"strategy\": \"%s\", \"threads\": %d, "
                       "\"iterations\": %ld, \"iteration_s\": %.6f, \"setup_s\": %.3f, \"gflop_iteration\": %.3f, "
                       "\"phases_ms\": {",
                       sname, flash_get_threads(), R, iter_s / R, setup_s, flops / R / 1e9);
    int first = 1;
    for (int i = 0; i < np; i++) {
        if (strcmp(phases[i].kernel, "set-up") == 0 || strcmp(phases[i].kernel, "final save") == 0) continue;
        const double ms = 1e3 * phases[i].seconds / R, gf = phases[i].flops / R / 1e9;
        fprintf(stderr, "  %-22s %12.3f %6.1f%%", phases[i].kernel, ms, 100 * phases[i].seconds / iter_s);
        if (gf > 0) fprintf(stderr, " %10.3f %9.1f", gf, gf / (ms / 1e3));
        fputc('\n', stderr);
        if (len < (int)sizeof json - 64)
            len += snprintf(json + len, sizeof json - (size_t)len, "%s\"%s\": %.3f", first ? "" : ", ",
                            phases[i].kernel, ms);
        first = 0;
    }
    double in_kernels = 0;
    for (int i = 0; i < nk; i++) in_kernels += kernels[i].seconds;
    fprintf(stderr, "  (kernels %.1f%% of the run's %.2f s, the rest the framework's and the optimiser's)\n",
            100 * in_kernels / wall, wall);
    if (len < (int)sizeof json - 4) snprintf(json + len, sizeof json - (size_t)len, "}}");
    puts(json);
    fflush(stdout);
    if (a->out) {
        size_t n = strlen(json);
        json[n] = '\n';
        st = flash_write_file_atomic(a->out, json, n + 1, &err);
    }
    flash_cli_pipeline_free(&pl);
    return st ? flash_cli_fail("bench", &err) : FLASH_EXIT_OK;
}

int flash_cmd_bench(int argc, char **argv)
{
    bench_args a = {.threads = 2, .batch = 64, .repeats = 10, .warmup = 3};
    int rc;
    if (!flash_options_parse(&bench_cmd, argc, argv, &a, &rc)) return rc;
    if (a.distill) {
        if (!a.config) return flash_cli_usage("bench", "%s", "--distill needs a CONFIG (a pipeline to distil)");
        return bench_distill(&a);
    }
    const char *out_path = a.out, *device = "cpu";
    const long threads = a.threads, batch = a.batch, repeats = a.repeats, warmup = a.warmup, seed = a.seed;

    flash_error err = {0};
    flash_cli_pipeline pl = {0};
    bench b;
    memset(&b, 0, sizeof b);
    flash_status st;
    if (a.config)
        st = flash_cli_pipeline_load(&pl, a.config, &a.sets, &err);
    else /* no file: the unet-s default, with the overrides applied */
        st = flash_cli_pipeline_parse(&pl, "model: {plugin: unet}\n", "<flash bench default>", &a.sets, &err);
    if (!st) st = flash_pipeline_device(pl.root, 0, &device, NULL, &err);
    if (st) goto done;
    flash_set_threads((int)threads);

    const flash_cfg *slot = flash_cfg_get(pl.root, "model");
    if (!slot) {
        st = flash_cfg_error(pl.root, &err, "flash bench: the config needs a 'model:' section");
        goto done;
    }
    flash_env env = {.size = sizeof env, .registry = pl.registry, .seed = (uint64_t)seed, .root = pl.root};
    if ((st = flash_instance_create(&env, FLASH_KIND_MODEL, slot, &b.model, &err))) goto done;
    b.api = FLASH_API(&b.model, flash_model_api);
    b.api->info(b.model.self, &b.info);
    b.P = b.api->params ? b.api->params(b.model.self) : NULL;
    if (!b.P) {
        st = flash_error_set(&err, FLASH_ERR_CONFIG, "flash bench: model '%s' has no parameters to train",
                             b.model.comp->name);
        goto done;
    }
    b.batch = (int)batch;
    b.t = malloc((size_t)batch * sizeof *b.t);
    b.labels = malloc((size_t)batch * sizeof *b.labels);
    if ((st = flash_params_to_device(b.P, device, &err))) goto done;
    b.ctx = flash_ctx_create_on(device, (size_t)64 << 20, &err);
    if (!b.ctx) {
        st = FLASH_ERR_RUNTIME;
        goto done;
    }
    if (!b.t || !b.labels) {
        st = flash_error_set(&err, FLASH_ERR_NOMEM, "out of memory");
        goto done;
    }
    flash_rng_seed_stream(&b.rng, (uint64_t)seed, 0x62656e63ull);
    /* Timesteps over [0, 999]; labels over the classes and the null class
     * for denoisers, over the classes for classifiers. */
    int nlab = b.info.out_dim > 0 ? b.info.out_dim : b.info.num_classes + 1;
    for (long i = 0; i < batch; i++) {
        b.t[i] = (float)flash_rng_below(&b.rng, 1000);
        b.labels[i] = (int)flash_rng_below(&b.rng, (uint64_t)(nlab > 0 ? nlab : 1));
    }
    b.adam = (flash_adam){.lr = 2e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};

    double train_s = 0, b1_s = 0, bN_s = 0, gflops = 0;
    if ((st = time_median(&b, train_fn, b.batch, (int)warmup, (int)repeats, &train_s, &err))) goto done;
    if ((st = time_median(&b, run_nfe, 1, (int)warmup * 5, (int)repeats * 10, &b1_s, &err))) goto done;
    if ((st = time_median(&b, run_nfe, b.batch, (int)warmup, (int)repeats * 2, &bN_s, &err))) goto done;
    if ((st = sgemm_rate(&b, &gflops, &err))) goto done;
    /* the roofline: operations per call from the layer shapes, the rate
     * each timing reached, and its fraction of the sgemm rate */
    double train_flops = 0, nfe_flops = 0;
    const int prof_reps = a.profile ? (int)repeats : 1;
    if ((st = count_flops(&b, train_fn, b.batch, prof_reps, a.profile, "training step", &train_flops, &err)) ||
        (st = count_flops(&b, run_nfe, b.batch, prof_reps, a.profile, "batched NFE", &nfe_flops, &err)))
        goto done;
    const double train_rate = train_flops / train_s / 1e9, nfe_rate = nfe_flops / bN_s / 1e9;

    char line[1024];
    snprintf(line, sizeof line,
             "{\"impl\": \"flash\", \"version\": \"%s\", \"device\": \"%s\", \"model\": \"%s\", \"params\": %zu, \"threads\": %d, "
             "\"batch\": %d, \"train_step_s\": %.6f, \"nfe_b1_s\": %.6f, \"nfe_b64_s\": %.6f, "
             "\"sgemm_gflops\": %.1f, \"gflop_forward_per_sample\": %.4f, \"gflop_train_step\": %.3f, "
             "\"train_gflops\": %.1f, \"nfe_b64_gflops\": %.1f, \"train_peak_fraction\": %.3f, "
             "\"nfe_b64_peak_fraction\": %.3f}",
             FLASH_VERSION_STRING, flash_ctx_device(b.ctx), b.model.comp->name, flash_params_count(b.P), flash_get_threads(), b.batch,
             train_s, b1_s, bN_s, gflops, nfe_flops / b.batch / 1e9, train_flops / 1e9, train_rate, nfe_rate,
             train_rate / gflops, nfe_rate / gflops);
    puts(line);
    fflush(stdout);
    if (out_path) {
        size_t len = strlen(line);
        line[len] = '\n';
        st = flash_write_file_atomic(out_path, line, len + 1, &err);
    }
done:
    flash_ctx_destroy(b.ctx);
    free(b.host_in[0]);
    free(b.host_in[1]);
    free(b.t);
    free(b.labels);
    flash_instance_destroy(&b.model);
    flash_cli_pipeline_free(&pl);
    return st ? flash_cli_fail("bench", &err) : FLASH_EXIT_OK;
}
