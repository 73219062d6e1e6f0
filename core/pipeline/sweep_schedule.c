/* Sweep scheduling: the run folders, one `flash run` child process per
 * run, `jobs` at a time, runs that wait on a shared teacher stage, resume,
 * the shared noise bank, DONE and FAILED; and the dry run's checks (see
 * sweep_internal.h). */
#include "pipeline/sweep_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* True when the checkpoint at ck holds a teacher trained for all of
 * teacher_train.train.steps: nothing is left to train, nobody waits. */
static bool teacher_trained(const flash_cfg *cfg, const char *ck)
{
    long want = 0;
    flash_error e = {0};
    if (flash_cfg_int(flash_cfg_get(flash_cfg_get(cfg, "teacher_train"), "train"), "steps", 0, &want, &e) || want <= 0)
        return false;
    flash_safetensors *st = NULL;
    if (flash_safetensors_open(ck, &st, &e)) return false;
    const char *step = flash_safetensors_meta(st, "step");
    const bool done = step && strtoll(step, NULL, 10) >= want;
    flash_safetensors_close(st);
    return done;
}

/* The run's shared teacher stage: the checkpoint its `flash run` trains
 * when the config has teacher_train and the teacher is not trained yet. */
static void stage_key(const flash_cfg *cfg, sw_run *r)
{
    const char *ck = flash_cfg_scalar(flash_cfg_get(cfg, "teacher_train") ? flash_cfg_get(cfg, "teacher_checkpoint") : NULL);
    snprintf(r->stage, sizeof r->stage, "%s", ck && !teacher_trained(cfg, ck) ? ck : "");
}

static flash_status write_meta(const sweep *S, const sw_run *r, int index, const entry_meta *em, int n_em,
                               const char *dir, flash_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_META);
    flash_atomic_file af;
    flash_status st = flash_atomic_open(&af, path, err);
    if (st) return st;
    FILE *f = af.f;
    fputs("{\"id\": ", f);
    flash_json_str(f, r->id);
    fprintf(f, ", \"index\": %d", index);
    flash_json_field_str(f, "method", S->v[r->variant].name);
    flash_json_field_str(f, "model", S->v[r->variant].model);
    fputs(", \"seed\": ", f);
    if (r->seeded)
        fprintf(f, "%ld", r->seed);
    else
        fputs("null", f);
    fputs(", \"guidance\": ", f);
    if (r->guided)
        fprintf(f, "%.17g", r->guidance);
    else
        fputs("null", f);
    fputs(", \"entries\": [", f);
    for (int i = 0; i < n_em; i++) {
        fputs(i ? ", {\"name\": " : "{\"name\": ", f);
        flash_json_str(f, em[i].name);
        flash_json_field_str(f, "method", em[i].method);
        fprintf(f, ", \"noise_correction\": %s}", em[i].nc < 0 ? "null" : em[i].nc ? "true" : "false");
    }
    fputs("]}\n", f);
    return flash_atomic_finish(&af, err);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void run_dir(const sweep *S, const sw_run *r, char *buf, size_t n)
{
    snprintf(buf, n, "%s/runs/%s", S->out, r->id);
}

/* Writes the run's folder: config.yaml (kept when resuming, so an
 * interrupted distillation continues on the config it started with) and
 * run.json. */
static flash_status prepare(sweep *S, int i, bool resume, flash_error *err)
{
    sw_run *r = &S->runs[i];
    char dir[4300], path[4400];
    run_dir(S, r, dir, sizeof dir);
    flash_cfg *cfg = NULL;
    entry_meta *em = calloc(MAX_RUN_ENTRIES, sizeof *em);
    if (!em) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    int n_em = 0;
    flash_status st = sweep_resolve(S, r, &cfg, em, &n_em, err);
    if (!st) stage_key(cfg, r);
    if (!st && r->state != 0) goto out; /* complete: only its stage matters */
    if (!st) st = flash_mkdirs(dir, err);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    if (!st && !(resume && exists(path))) st = flash_cfg_write(cfg, path, err);
    if (!st) st = write_meta(S, r, i, em, n_em, dir, err);
    snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_FAILED);
    if (!st) unlink(path);
out:
    flash_cfg_free(cfg);
    free(em);
    return st;
}

static pid_t spawn(const sweep *S, const sw_run *r)
{
    char dir[4300], cfg[4400], log[4400];
    run_dir(S, r, dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/config.yaml", dir);
    snprintf(log, sizeof log, "%s/run.log", dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* the child dies with the sweep, so a killed sweep leaves no run writing */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    /* runs side by side share the cores: their OpenMP threads sleep at a
     * barrier instead of spinning on a core another run needs (a spinning
     * 2-thread distillation beside a 2-thread training on 2 cores ran 9x
     * slower than alone, where fair sharing is 2x); a policy the user set
     * is kept */
    if (S->jobs > 1) setenv("OMP_WAIT_POLICY", "passive", 0);
    execl(S->self, "flash", "run", cfg, "--out", dir, (char *)NULL);
    /* the child's stderr is the run's log */
    fprintf(stderr, "flash sweep: cannot execute %s: %s\n", S->self, strerror(errno));
    _exit(127);
}

/* The last line of the run's log that reads as an error. */
static void last_error(const char *dir, char *msg, size_t n)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/run.log", dir);
    snprintf(msg, n, "see %.900s", path);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "flash run: ") == line && !strstr(line, "distilling") && !strstr(line, "wrote") &&
            !strstr(line, " NFE, ")) {
            line[strcspn(line, "\n")] = 0;
            snprintf(msg, n, "%s", line);
        }
    }
    fclose(f);
}

static flash_status same_bytes(const char *a, const char *b, bool *same, flash_error *err)
{
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    flash_status st = flash_read_file(a, &x, &nx, err);
    if (!st) st = flash_read_file(b, &y, &ny, err);
    *same = !st && nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return st;
}

/* Keeps the first bank as DIR/noise_bank*.npy, checks the others against it
 * and removes the run's copy. */
static flash_status check_bank(const sweep *S, const char *dir, flash_error *err)
{
    static const char *const names[] = {"noise_bank.npy", "noise_bank.labels.npy"};
    for (int i = 0; i < 2; i++) {
        char mine[4400], shared[4400];
        snprintf(mine, sizeof mine, "%s/%s", dir, names[i]);
        snprintf(shared, sizeof shared, "%s/%s", S->out, names[i]);
        if (!exists(mine)) continue;
        flash_status st;
        if (!exists(shared)) {
            char *b = NULL;
            size_t n = 0;
            if ((st = flash_read_file(mine, &b, &n, err))) return st;
            st = flash_write_file_atomic(shared, b, n, err);
            free(b);
            if (st) return st;
        } else {
            bool same;
            if ((st = same_bytes(mine, shared, &same, err))) return st;
            if (!same)
                return flash_error_set(err, FLASH_ERR_RUNTIME,
                                       "%s differs from the sweep's %s: a variant changed run.samples or run.noise_seed",
                                       mine, shared);
        }
        unlink(mine);
    }
    return FLASH_OK;
}

static void finish(sweep *S, sw_run *r, int status)
{
    char dir[4300], path[4400], msg[1200];
    run_dir(S, r, dir, sizeof dir);
    flash_error err = {0};
    flash_status st = FLASH_OK;
    /* one of a launcher's tasks other than 0: its `flash run` was a rank
     * that writes nothing, and task 0 keeps the run's books */
    if (S->task > 0) {
        r->state = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 2 : 3;
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        if (!(st = check_bank(S, dir, &err))) {
            snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_DONE);
            snprintf(msg, sizeof msg, "%s\n", r->id);
            st = flash_write_file_atomic(path, msg, strlen(msg), &err);
        }
        if (!st) {
            r->state = 2;
            sweep_say(S, "%s done\n", r->id);
            return;
        }
        snprintf(msg, sizeof msg, "%s", err.msg);
    } else if (WIFSIGNALED(status)) {
        snprintf(msg, sizeof msg, "killed by signal %d", WTERMSIG(status));
    } else {
        last_error(dir, msg, sizeof msg);
    }
    r->state = 3;
    sweep_say(S, "%s failed: %s\n", r->id, msg);
    size_t n = strlen(msg);
    msg[n] = '\n';
    snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_FAILED);
    flash_error e2 = {0};
    if (flash_write_file_atomic(path, msg, n + 1, &e2)) sweep_say(S, "%s\n", e2.msg);
}

/* A run whose `flash run` trains a teacher waits while another run of the
 * same teacher runs and none has finished: the first one trains it, the
 * others then find it complete. */
static bool stage_free(const sweep *S, const sw_run *r)
{
    if (!r->stage[0]) return true;
    bool busy = false;
    for (int i = 0; i < S->n_runs; i++) {
        const sw_run *o = &S->runs[i];
        if (o == r || strcmp(o->stage, r->stage)) continue;
        if (o->state == 2 || o->state == 4) return true;
        if (o->state == 1) busy = true;
    }
    return !busy;
}

/* Runs the planned runs, `jobs` at a time. Returns 1 when interrupted. */
static int execute(sweep *S, int jobs, int skipped)
{
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int next = 0, running = 0, stopping = 0;
    double t0 = flash_now();
    for (;;) {
        while (!g_stop && running < jobs) {
            sw_run *r = NULL;
            for (int i = 0; i < S->n_runs && !r; i++)
                if (S->runs[i].state == 0 && stage_free(S, &S->runs[i])) r = &S->runs[i];
            if (!r) break;
            next++;
            if ((r->pid = spawn(S, r)) < 0) {
                r->state = 3;
                sweep_say(S, "%s: fork failed: %s\n", r->id, strerror(errno));
                continue;
            }
            r->state = 1;
            running++;
            sweep_say(S, "%s started (%d/%d)\n", r->id, next + skipped, S->n_runs);
        }
        if (running == 0) break;
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        const int werr = errno;
        if (g_stop && !stopping) {
            stopping = 1;
            for (int i = 0; i < S->n_runs; i++)
                if (S->runs[i].state == 1) kill(S->runs[i].pid, SIGTERM);
        }
        if (pid < 0) {
            if (werr == ECHILD) break;
            continue;
        }
        for (int i = 0; i < S->n_runs; i++) {
            sw_run *r = &S->runs[i];
            if (r->state == 1 && r->pid == pid) {
                running--;
                if (g_stop && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                    r->state = 0; /* interrupted: resumable, not failed */
                else
                    finish(S, r, status);
            }
        }
    }
    sweep_say(S, "%.1f s\n", flash_now() - t0);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return g_stop ? 1 : 0;
}

/* `flash check` on the resolved config (every component created once), as
 * a child process with the config in a temporary file. A component that
 * needs the teacher's weights cannot be checked before a teacher stage
 * (teacher_train) has written them: that is a note, not a failure. */
static int check_config(const sweep *S, const flash_cfg *cfg, const char *id)
{
    const char *tmpdir = getenv("TMPDIR");
    char path[4096], log[4200];
    snprintf(path, sizeof path, "%s/flash-sweep-XXXXXX.yaml", tmpdir && tmpdir[0] ? tmpdir : "/tmp");
    int fd = mkstemps(path, 5);
    snprintf(log, sizeof log, "%s.log", path);
    char *yaml = fd >= 0 ? flash_cfg_to_yaml(cfg) : NULL;
    int ok = 0;
    if (yaml && write(fd, yaml, strlen(yaml)) == (ssize_t)strlen(yaml)) {
        fflush(NULL); /* nothing buffered is written twice by the child */
        pid_t pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", O_WRONLY), e = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (null >= 0) dup2(null, 1);
            if (e >= 0) dup2(e, 2);
            execl(S->self, "flash", "check", path, (char *)NULL);
            _exit(127);
        }
        int status = 0;
        ok = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        char *msg = NULL;
        size_t n = 0;
        flash_error e2 = {0};
        if (!ok && flash_read_file(log, &msg, &n, &e2) == FLASH_OK) {
            const char *ck = flash_cfg_scalar(flash_cfg_get(cfg, "teacher_checkpoint"));
            if (flash_cfg_get(cfg, "teacher_train") && ck && !exists(ck) && strstr(msg, "no teacher checkpoint")) {
                sweep_say(S, "run '%s': checked up to the teacher's weights (%s: written by its "
                                "teacher_train stage)\n", id, ck);
                ok = 1;
            } else {
                if (S->log) fputs(msg, S->log);
                sweep_say(S, "run '%s': its resolved config does not check\n", id);
            }
        }
        free(msg);
    } else {
        sweep_say(S, "cannot write a temporary config in %s: %s\n", path, strerror(errno));
    }
    free(yaml);
    if (fd >= 0) {
        close(fd);
        unlink(path);
        unlink(log);
    }
    return ok;
}


flash_status flash_sweep_dry_run(flash_sweep *S, FILE *plan, flash_error *err)
{
    /* every task's `flash check` children would join one world */
    flash_status st0 = sweep_not_launched(S, "--dry-run", err);
    if (st0) return st0;
    for (int i = 0; i < S->n_runs; i++) {
        if (S->only >= 0 && i != S->only) continue;
        const sw_run *r = &S->runs[i];
        flash_cfg *cfg = NULL;
        entry_meta em[MAX_RUN_ENTRIES];
        int n_em = 0;
        flash_status st = sweep_resolve(S, r, &cfg, em, &n_em, err);
        if (st) return st;
        int ok = check_config(S, cfg, r->id);
        flash_cfg_free(cfg);
        if (!ok) return flash_error_set(err, FLASH_ERR_CONFIG, "run '%s' does not check", r->id);
        if (!plan) continue;
        fprintf(plan, "%-40s %s/runs/%s  config %s", r->id, S->out, r->id,
                S->v[r->variant].config ? S->v[r->variant].config : S->base);
        if (r->seeded) fprintf(plan, "  seed %ld", r->seed);
        if (r->guided) fprintf(plan, "  guidance %g", r->guidance);
        fprintf(plan, "  variants:");
        for (int k = 0; k < n_em; k++) fprintf(plan, " %s", em[k].name);
        fputc('\n', plan);
    }
    if (plan) fprintf(plan, "%d runs, %d at once, %d threads each\n", S->n_runs, S->jobs, S->threads_per_job);
    return FLASH_OK;
}

flash_status sweep_prepare_runs(sweep *S, bool for_emit, int *skipped, flash_error *err)
{
    /* existing folders are only reused on request */
    *skipped = 0;
    for (int i = 0; i < S->n_runs; i++) {
        if (S->only >= 0 && i != S->only) {
            S->runs[i].state = 4;
            continue;
        }
        char dir[4300], path[4400];
        run_dir(S, &S->runs[i], dir, sizeof dir);
        snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_DONE);
        if (!S->resume && exists(dir))
            return flash_error_set(err, FLASH_ERR_USAGE,
                                   "%s exists: pass --resume to continue the sweep, or choose another --out", dir);
        if (S->resume && exists(path)) {
            S->runs[i].state = 4;
            (*skipped)++;
        }
    }
    /* a launcher's other tasks find the folder task 0 resumes as it was */
    if (S->task > 0) return FLASH_OK;
    for (int i = 0; i < S->n_runs; i++) {
        flash_status st;
        if ((S->only < 0 || S->runs[i].state == 0) && (st = prepare(S, i, S->resume || for_emit, err))) return st;
    }
    return FLASH_OK;
}

flash_status sweep_not_launched(const sweep *S, const char *what, flash_error *err)
{
    if (S->tasks == 1) return FLASH_OK;
    return flash_error_set(err, FLASH_ERR_USAGE,
                           "started as %d tasks (srun, mpirun): run %s as one process; a launcher's tasks run one "
                           "prepared run (--run ID --resume, the lines of DIR/slurm/commands.txt)",
                           S->tasks, what);
}

/* Under a launcher of N tasks (the srun of DIR/slurm/sweep.sbatch), each
 * task is this sweep of one run, and each task's `flash run` child is one
 * rank of the run's world. The sweep cannot be an MPI process itself (a
 * child cannot join a world as its parent's rank), so main.c never loads
 * the world for it, and only the child does. The run must be one, in a
 * folder --emit slurm prepared, and resumed: every task then starts on the
 * same config.yaml, and none but task 0 writes (sweep_prepare_runs). */
static flash_status one_prepared_run(const sweep *S, flash_error *err)
{
    if (S->only < 0 || !S->resume)
        return flash_error_set(err, FLASH_ERR_USAGE,
                               "started as %d tasks (srun, mpirun): each task runs one rank of one prepared run "
                               "(--run ID --resume, the lines of DIR/slurm/commands.txt); run a whole sweep as one "
                               "process",
                               S->tasks);
    char path[4400];
    snprintf(path, sizeof path, "%s/runs/%s/config.yaml", S->out, S->runs[S->only].id);
    if (!exists(path))
        return flash_error_set(err, FLASH_ERR_USAGE,
                               "started as %d tasks: %s is missing (flash sweep --emit slurm prepares the run folders)",
                               S->tasks, path);
    return FLASH_OK;
}

flash_status flash_sweep_execute(flash_sweep *S, FILE *table, flash_error *err)
{
    int skipped = 0;
    if (S->tasks > 1) {
        flash_status st = one_prepared_run(S, err);
        if (st) return st;
    }
    /* the sweep's folder first: a symlink or a file there is refused before
     * anything is written into it */
    flash_status st = flash_mkdirs(S->out, err);
    if (st) return st;
    st = sweep_prepare_runs(S, false, &skipped, err);
    if (st) return st;
    if (skipped) sweep_say(S, "%d of %d runs already complete\n", skipped, S->n_runs);
    int interrupted = execute(S, S->jobs, skipped);
    int failed = 0;
    for (int i = 0; i < S->n_runs; i++) failed += S->runs[i].state == 3;
    if (interrupted) return flash_error_set(err, FLASH_ERR_RUNTIME, "interrupted; continue with --resume");
    if (S->only < 0 && (st = flash_report_write(S->out, S->baseline, NULL, table, err))) return st;
    if (failed && S->task > 0)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "task %d of %d: its rank of run '%s' failed (see its run.log)",
                               S->task, S->tasks, S->runs[S->only].id);
    if (failed) return flash_error_set(err, FLASH_ERR_RUNTIME, "%d run(s) failed (see their FAILED files)", failed);
    return FLASH_OK;
}
