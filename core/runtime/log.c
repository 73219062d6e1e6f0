/* Logging to stderr, progress lines, JSONL metrics. */
#include "flash/flash.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static flash_log_level g_level = FLASH_LOG_INFO;

/* True while a progress line is drawn on a terminal without its newline:
 * a log line then first clears it (the next update redraws it below). */
static atomic_int g_progress_drawn;

void flash_log_set_level(flash_log_level lvl)
{
    g_level = lvl;
}

static const char *level_name(flash_log_level lvl)
{
    switch (lvl) {
    case FLASH_LOG_DEBUG: return "debug";
    case FLASH_LOG_INFO: return "info";
    case FLASH_LOG_WARN: return "warning";
    case FLASH_LOG_ERROR: return "error";
    }
    return "log";
}

void flash_logf(flash_log_level lvl, const char *fmt, ...)
{
    if (lvl < g_level)
        return;
    /* One fputs per line, so lines from several threads do not interleave. */
    char line[2048];
    int clear = atomic_exchange(&g_progress_drawn, 0);
    int n = snprintf(line, sizeof line, "%s[flash] %s: ", clear ? "\r\033[K" : "", level_name(lvl));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') {
        line[len] = '\n';
        line[len + 1] = '\0';
    }
    fputs(line, stderr);
}

double flash_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- progress ------------------------------------------------------------ */

/* A terminal is redrawn at most this often, so a fast loop does not spend
 * its time writing to the terminal; a log file gets a line this often. */
#define PROGRESS_TTY_INTERVAL 0.1
#define PROGRESS_PLAIN_INTERVAL 5.0

void flash_progress_begin(flash_progress *p, const char *label, int64_t start_step, int64_t total)
{
    p->label = label ? label : "";
    p->total = total;
    p->start_step = start_step;
    p->t0 = flash_now();
    p->last_print = -1e300;
    p->is_tty = isatty(fileno(stderr));
}

static void fmt_duration(char *buf, size_t size, double s)
{
    if (!(s >= 0) || s > 1e9) {
        snprintf(buf, size, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, size, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, size, "%lds", t);
}

void flash_progress_update(flash_progress *p, int64_t step, const char *fmt, ...)
{
    double now = flash_now();
    int last = p->total > 0 && step >= p->total;
    double interval = p->is_tty ? PROGRESS_TTY_INTERVAL : PROGRESS_PLAIN_INTERVAL;
    if (!last && now - p->last_print < interval)
        return;
    p->last_print = now;

    double dt = now - p->t0;
    double done = (double)(step - p->start_step);
    double rate = dt > 0 && done > 0 ? done / dt : 0;
    char eta[32], rate_s[32];
    if (rate > 0 && p->total > 0)
        fmt_duration(eta, sizeof eta, (double)(p->total - step) / rate);
    else
        snprintf(eta, sizeof eta, "?");
    if (rate >= 100)
        snprintf(rate_s, sizeof rate_s, "%.0f it/s", rate);
    else if (rate >= 1 || rate == 0)
        snprintf(rate_s, sizeof rate_s, "%.1f it/s", rate);
    else
        snprintf(rate_s, sizeof rate_s, "%.1f s/it", 1.0 / rate);

    char text[512] = "";
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
    }
    char line[1024];
    if (p->total > 0)
        snprintf(line, sizeof line, "%s %lld/%lld | %s | ETA %s%s%s", p->label, (long long)step, (long long)p->total,
                 rate_s, eta, text[0] ? " | " : "", text);
    else
        snprintf(line, sizeof line, "%s %lld | %s%s%s", p->label, (long long)step, rate_s, text[0] ? " | " : "",
                 text);
    if (p->is_tty) {
        /* Cut to the terminal's width: a wrapped line cannot be redrawn. */
        struct winsize ws;
        if (ioctl(fileno(stderr), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && strlen(line) >= ws.ws_col)
            line[ws.ws_col - 1] = '\0';
        fprintf(stderr, "\r%s\033[K", line); /* carriage return, then clear the rest of the line */
        g_progress_drawn = 1;
    } else
        fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

void flash_progress_end(flash_progress *p)
{
    char took[32];
    fmt_duration(took, sizeof took, flash_now() - p->t0);
    if (atomic_exchange(&g_progress_drawn, 0))
        fprintf(stderr, "\n");
    fprintf(stderr, "%s done in %s\n", p->label, took);
    fflush(stderr);
}

/* ---- JSONL -------------------------------------------------------------- */

flash_status flash_jsonl_open(flash_jsonl *j, const char *path, flash_error *err)
{
    bool through;
    flash_status st = flash_output_check(path, &through, err);
    if (st) return st;
    j->f = fopen(path, "a");
    if (!j->f)
        return flash_error_set(err, FLASH_ERR_IO, "%s: cannot open for appending: %s", path, strerror(errno));
    return FLASH_OK;
}

/* JSON has no NaN or infinity, but printf writes "nan", "inf", "-inf" for
 * them (a diverging loss does that): outside strings such tokens become null
 * so every line stays valid JSON. */
static void write_json_sanitized(FILE *f, const char *s)
{
    int in_str = 0;
    while (*s) {
        char c = *s;
        if (in_str) {
            fputc(c, f);
            if (c == '\\' && s[1]) {
                fputc(s[1], f);
                s += 2;
                continue;
            }
            if (c == '"')
                in_str = 0;
            s++;
            continue;
        }
        if (c == '"') {
            in_str = 1;
            fputc(c, f);
            s++;
            continue;
        }
        const char *t = s + (c == '-' || c == '+');
        size_t k = strncasecmp(t, "nan", 3) == 0 ? 3 : strncasecmp(t, "infinity", 8) == 0 ? 8 : strncasecmp(t, "inf", 3) == 0 ? 3 : 0;
        if (k) {
            fputs("null", f);
            s = t + k;
            continue;
        }
        fputc(c, f);
        s++;
    }
}

void flash_jsonl_write(flash_jsonl *j, const char *fmt, ...)
{
    if (!j || !j->f)
        return;
    char small[1024], *buf = small;
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof small && (buf = malloc((size_t)n + 1)) != NULL)
        vsnprintf(buf, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    if (n < 0 || !buf) {
        /* Out of memory for a huge line: keep the file valid JSONL. */
        fputs("{\"error\": \"metrics line lost\"}\n", j->f);
        fflush(j->f);
        return;
    }
    fputc('{', j->f);
    write_json_sanitized(j->f, buf);
    fputs("}\n", j->f);
    if (buf != small)
        free(buf);
    /* Flushed per line so a killed run keeps everything it logged. */
    fflush(j->f);
}

void flash_jsonl_close(flash_jsonl *j)
{
    if (j && j->f) {
        fclose(j->f);
        j->f = NULL;
    }
}

flash_status flash_jsonl_truncate(const char *path, int64_t step, flash_error *err)
{
    char *buf = NULL;
    size_t n = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return FLASH_OK;
    flash_status st = flash_read_file(path, &buf, &n, err);
    if (st) return st;
    size_t keep = 0;
    for (size_t i = 0; i < n;) {
        char *nl = memchr(buf + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - buf) + 1 : n;
        const char *k = strstr(buf + i, "\"step\":");
        long long s = (k && k < buf + end) ? strtoll(k + 7, NULL, 10) : 0;
        if (!nl || s > step) break; /* a torn last line or a step after the checkpoint */
        keep = end;
        i = end;
    }
    st = flash_write_file_atomic(path, buf, keep, err);
    free(buf);
    return st;
}
