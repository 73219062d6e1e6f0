/* Logging, progress lines and JSONL metrics.
 *
 * Log lines go to stderr ("[flash] level: message"). A progress line redraws
 * in place on a terminal and is printed as plain periodic lines otherwise.
 * Metrics are appended to a JSONL file, one object per line, flushed each
 * write so a killed run keeps what it logged.
 */
#ifndef FLASH_LOG_H
#define FLASH_LOG_H

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum flash_log_level { FLASH_LOG_DEBUG = 0, FLASH_LOG_INFO, FLASH_LOG_WARN, FLASH_LOG_ERROR } flash_log_level;

FLASH_EXPORT void flash_log_set_level(flash_log_level lvl);
/* (flash_log is the tensor op in tensor.h.) */
FLASH_EXPORT void flash_logf(flash_log_level lvl, const char *fmt, ...) FLASH_PRINTF(2, 3);
#define flash_info(...) flash_logf(FLASH_LOG_INFO, __VA_ARGS__)
#define flash_warn(...) flash_logf(FLASH_LOG_WARN, __VA_ARGS__)

/* Monotonic seconds. */
FLASH_EXPORT double flash_now(void);

typedef struct flash_progress {
    const char *label;
    int64_t total;
    int64_t start_step;
    double t0, last_print;
    int is_tty;
} flash_progress;

FLASH_EXPORT void flash_progress_begin(flash_progress *p, const char *label, int64_t start_step, int64_t total);
/* "label 1200/5000 | 12.3 it/s | ETA 5m08s | loss 0.0345" */
FLASH_EXPORT void flash_progress_update(flash_progress *p, int64_t step, const char *fmt, ...) FLASH_PRINTF(3, 4);
FLASH_EXPORT void flash_progress_end(flash_progress *p);

typedef struct flash_jsonl {
    FILE *f;
} flash_jsonl;

/* Appends to path (created if missing). */
FLASH_EXPORT flash_status flash_jsonl_open(flash_jsonl *j, const char *path, flash_error *err);
/* fmt is the body of a JSON object without braces: "\"step\": %ld, \"loss\": %.6g" */
FLASH_EXPORT void flash_jsonl_write(flash_jsonl *j, const char *fmt, ...) FLASH_PRINTF(2, 3);
FLASH_EXPORT void flash_jsonl_close(flash_jsonl *j);
/* Keeps the lines of a metrics log whose "step" is <= step (the checkpoint a
 * run resumes from) and drops the rest, so the resumed run's lines follow
 * without duplicates; a torn last line is dropped too. A missing file is fine. */
FLASH_EXPORT flash_status flash_jsonl_truncate(const char *path, int64_t step, flash_error *err);

#ifdef __cplusplus
}
#endif
#endif
