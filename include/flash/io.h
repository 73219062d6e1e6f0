/* Files: atomic writes, NPY, safetensors, checkpoints, PNG, IDX.
 *
 * Every writer goes through a temp file in the target's directory, fsync,
 * then rename, so a crash never leaves a half-written file under the final
 * name. Readers refuse truncated or corrupted input with a message naming
 * the file and what is wrong.
 */
#ifndef FLASH_IO_H
#define FLASH_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- atomic files ---------------------------------------------------- */
/* Outputs are written to a temporary file next to the target, flushed,
 * fsync'ed and renamed into place: a crash leaves the old file or the new
 * one. Only a regular file or a missing path is replaced. A path flash does
 * not own (a symlink, FIFO, socket or device; a directory for a file, a
 * symlink or a non-directory for a folder) is refused with FLASH_ERR_USAGE
 * (exit code 2), unless flash_io_set_force(true) (`--force`): then it is
 * written through, never replaced. */
typedef struct flash_atomic_file {
    FILE *f;          /* write here */
    char path[4096];  /* final name */
    char tmp[4096];   /* temp name; empty when writing through (forced) */
} flash_atomic_file;

/* Process-wide: write through paths flash does not own instead of refusing. */
FLASH_EXPORT void flash_io_set_force(bool force);
/* FLASH_OK when path may be written as an output file: missing, or a
 * regular file; a symlink, FIFO, socket or device is FLASH_ERR_USAGE unless
 * forced (*through = true: write through it, never replace it), and a
 * directory is always FLASH_ERR_USAGE. */
FLASH_EXPORT flash_status flash_output_check(const char *path, bool *through, flash_error *err);

FLASH_EXPORT flash_status flash_atomic_open(flash_atomic_file *af, const char *path, flash_error *err);
/* fflush, fsync, close, rename; on failure removes the temp file. */
FLASH_EXPORT flash_status flash_atomic_commit(flash_atomic_file *af, flash_error *err);
FLASH_EXPORT void flash_atomic_abort(flash_atomic_file *af);
FLASH_EXPORT flash_status flash_write_file_atomic(const char *path, const void *buf, size_t n, flash_error *err);
/* Whole file into a malloc'd buffer (NUL-terminated one past *n). */
FLASH_EXPORT flash_status flash_read_file(const char *path, char **buf, size_t *n, flash_error *err);
/* mkdir -p; a last component that exists as a symlink is refused
 * (FLASH_ERR_USAGE) unless forced, and one that is not a directory always. */
FLASH_EXPORT flash_status flash_mkdirs(const char *path, flash_error *err);

/* ---- arrays ------------------------------------------------------------ */
typedef enum flash_dtype {
    FLASH_F32 = 0,
    FLASH_F64,
    FLASH_I64,
    FLASH_I32,
    FLASH_U8,
} flash_dtype;

FLASH_EXPORT size_t flash_dtype_size(flash_dtype t);
FLASH_EXPORT const char *flash_dtype_name(flash_dtype t); /* "F32" as in safetensors */

/* An n-d array in host memory. */
typedef struct flash_array {
    flash_dtype dtype;
    int ndim;
    int64_t shape[8];
    void *data; /* owned: free with flash_array_free */
} flash_array;

FLASH_EXPORT size_t flash_array_numel(const flash_array *a);
FLASH_EXPORT void flash_array_free(flash_array *a);

/* ---- finite values ------------------------------------------------------
 * NaN or infinity in an input (noise, samples, a dataset, a checkpoint)
 * poisons every number computed from it without another sign of trouble,
 * so readers refuse it (FLASH_ERR_INPUT) naming the file and the first bad
 * index. The index of the first non-finite value, or -1 when every value
 * is finite (an integer array always is). */
FLASH_EXPORT int64_t flash_first_nonfinite(const float *x, size_t n);
FLASH_EXPORT int64_t flash_array_first_nonfinite(const flash_array *a);
/* "NaN", "+inf" or "-inf", for messages about a non-finite value. */
FLASH_EXPORT const char *flash_nonfinite_name(double v);

/* ---- NPY (version 1.0/2.0, little-endian, C order) --------------------- */
FLASH_EXPORT flash_status flash_npy_write(const char *path, flash_dtype dtype, int ndim, const int64_t *shape,
                                          const void *data, flash_error *err);
/* Reads <f4, <f8, <i8, <i4, |u1; Fortran order and big-endian are refused. */
FLASH_EXPORT flash_status flash_npy_read(const char *path, flash_array *out, flash_error *err);

/* ---- safetensors --------------------------------------------------------
 * Format: u64 little-endian header size, JSON header
 * {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
 *  "__metadata__": {"key": "string value", ...}}, then the raw bytes. */
typedef struct flash_st_tensor {
    const char *name;
    flash_dtype dtype;
    int ndim;
    int64_t shape[8];
    const void *data;
    size_t nbytes;
} flash_st_tensor;

typedef struct flash_st_meta {
    const char *key;
    const char *value;
} flash_st_meta;

FLASH_EXPORT flash_status flash_safetensors_write(const char *path, const flash_st_tensor *tensors, size_t n,
                                                  const flash_st_meta *meta, size_t n_meta, flash_error *err);

typedef struct flash_safetensors flash_safetensors; /* a file read into memory */
FLASH_EXPORT flash_status flash_safetensors_open(const char *path, flash_safetensors **out, flash_error *err);
FLASH_EXPORT void flash_safetensors_close(flash_safetensors *st);
FLASH_EXPORT size_t flash_safetensors_count(const flash_safetensors *st);
/* By index or name; the returned struct points into st. NULL when absent. */
FLASH_EXPORT const flash_st_tensor *flash_safetensors_at(const flash_safetensors *st, size_t i);
FLASH_EXPORT const flash_st_tensor *flash_safetensors_find(const flash_safetensors *st, const char *name);
FLASH_EXPORT const char *flash_safetensors_meta(const flash_safetensors *st, const char *key);

/* ---- checkpoints --------------------------------------------------------
 * A safetensors file holding a model's parameters under their names (the
 * EMA copy, Adam m and v under "ema.", "adam_m.", "adam_v." prefixes when
 * present) and, in __metadata__: format "flash-checkpoint-1", step, the RNG
 * state, the resolved config (YAML), and a checksum (FNV-1a 64 of all tensor
 * bytes) that load verifies, plus meta_checksum over format, step, rng and
 * config (see core/train/checkpoint.c). */
typedef struct flash_ckpt_info {
    int64_t step;
    flash_rng rng;
    char *config_yaml; /* owned by the caller after load: free() */
} flash_ckpt_info;

FLASH_EXPORT flash_status flash_checkpoint_save(const char *path, flash_params *p, const flash_ckpt_info *info,
                                                flash_error *err);
/* Loads into an already-declared, finalized p; names and shapes must match.
 * info may be NULL (weights only). Refuses a bad checksum or truncation. */
FLASH_EXPORT flash_status flash_checkpoint_load(const char *path, flash_params *p, flash_ckpt_info *info,
                                                flash_error *err);

/* ---- PNG ---------------------------------------------------------------- */
/* channels 1 (gray) or 3 (RGB), rows top to bottom. */
FLASH_EXPORT flash_status flash_png_write(const char *path, int width, int height, int channels,
                                          const uint8_t *pixels, flash_error *err);
/* Grid of n images (n, c, h, w) with values in [-1, 1], ncols per row, a
 * 2-pixel border. */
FLASH_EXPORT flash_status flash_png_grid(const char *path, const float *images, int n, int c, int h, int w,
                                         int ncols, flash_error *err);

/* ---- IDX (MNIST format), plain or gzip ---------------------------------- */
/* u8 data only (images (n, rows, cols), labels (n)); checks the magic,
 * dimensions and that the payload is complete. */
FLASH_EXPORT flash_status flash_idx_read(const char *path, flash_array *out, flash_error *err);

#ifdef __cplusplus
}
#endif
#endif
