/* Pieces the pipeline calls and the commands share (see pipeline.h): the
 * threads and device of a pipeline, the JSON of the results files, and the
 * scatter plot of 2-D samples. */
#include "flash/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

flash_status flash_png_scatter(const char *path, const float *x, long n, const flash_instance *model,
                                   flash_error *err)
{
    enum { W = 512 };
    double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (long i = 0; i < n; i++)
        for (int j = 0; j < 2; j++)
            if (isfinite(x[2 * i + j])) {
                lo[j] = fmin(lo[j], x[2 * i + j]);
                hi[j] = fmax(hi[j], x[2 * i + j]);
            }
    if (!(lo[0] <= hi[0] && lo[1] <= hi[1])) return flash_error_set(err, FLASH_ERR_RUNTIME, "no finite samples to plot");
    double cx = 0.5 * (lo[0] + hi[0]), cy = 0.5 * (lo[1] + hi[1]);
    double half = 0.6 * fmax(fmax(hi[0] - lo[0], hi[1] - lo[1]), 1e-3);
    uint8_t *px = malloc((size_t)W * W * 3);
    double *dens = malloc((size_t)W * W * sizeof *dens);
    if (!px || !dens) {
        free(px);
        free(dens);
        return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory for the plot");
    }
    const flash_model_api *m = model ? FLASH_API(model, flash_model_api) : NULL;
    int has_density = m && model->comp->size >= offsetof(flash_model_api, log_density) + sizeof(void *) &&
                      m->log_density != NULL;
    double dmax = 0;
    for (int r = 0; r < W; r++)
        for (int c = 0; c < W; c++) {
            float p[2] = {(float)(cx - half + 2 * half * (c + 0.5) / W), (float)(cy + half - 2 * half * (r + 0.5) / W)};
            double d = has_density ? exp(m->log_density(model->self, p, -1)) : 0.0;
            dens[r * W + c] = isfinite(d) ? d : 0.0;
            dmax = fmax(dmax, dens[r * W + c]);
        }
    for (int i = 0; i < W * W; i++) {
        double v = dmax > 0 ? pow(dens[i] / dmax, 0.3) : 0.0;
        px[3 * i] = (uint8_t)(255 - 200 * v);
        px[3 * i + 1] = (uint8_t)(255 - 140 * v);
        px[3 * i + 2] = 255;
    }
    for (long i = 0; i < n; i++) {
        if (!isfinite(x[2 * i]) || !isfinite(x[2 * i + 1])) continue;
        int c = (int)((x[2 * i] - (cx - half)) / (2 * half) * W), r = (int)(((cy + half) - x[2 * i + 1]) / (2 * half) * W);
        for (int dr = -1; dr <= 1; dr++)
            for (int dc = -1; dc <= 1; dc++) {
                int rr = r + dr, cc = c + dc;
                if (rr < 0 || rr >= W || cc < 0 || cc >= W) continue;
                uint8_t *q = px + 3 * ((size_t)rr * W + cc);
                q[0] = 200;
                q[1] = 20;
                q[2] = 20;
            }
    }
    flash_status st = flash_png_write(path, W, W, 3, px, err);
    free(px);
    free(dens);
    return st;
}

flash_status flash_pipeline_threads(const flash_cfg *root, flash_error *err)
{
    long threads;
    flash_status st = flash_cfg_int(root, "threads", 2, &threads, err);
    if (st) return st;
    if (threads < 1 || threads > 1024) return flash_cfg_error(flash_cfg_get(root, "threads"), err, "must be in [1, 1024]");
    flash_set_threads((int)threads);
    return FLASH_OK;
}

flash_status flash_pipeline_device(const flash_cfg *root, size_t arena_bytes, const char **device, flash_ctx **ctx,
                                   flash_error *err)
{
    static const char *const devices[] = {"cpu", "cuda", NULL};
    int dev = 0;
    flash_status st = flash_cfg_enum(root, "device", devices, 0, &dev, err);
    if (st) return st;
    *device = devices[dev];
    if (!ctx) return FLASH_OK;
    if (!(*ctx = flash_ctx_create_on(*device, arena_bytes, err))) {
        const flash_cfg *node = flash_cfg_get(root, "device");
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return node ? flash_cfg_error(node, err, "%s", why) : FLASH_ERR_RUNTIME;
    }
    return FLASH_OK;
}

flash_status flash_pipeline_precision(const flash_cfg *root, flash_error *err)
{
    static const char *const dtypes[] = {"fp32", "bf16", NULL};
    static const flash_precision precisions[] = {FLASH_PRECISION_FP32, FLASH_PRECISION_BF16};
    const char *device = NULL;
    int t = 0;
    flash_status st = flash_cfg_enum(root, "dtype", dtypes, 0, &t, err);
    if (!st) st = flash_pipeline_device(root, 0, &device, NULL, err);
    if (st) return st;
    if ((st = flash_set_default_precision(device, precisions[t], err))) {
        /* "device 'cuda': no CUDA device" is the device's; "dtype bf16 on
         * device 'cpu': ..." the dtype's, said once after the key */
        const bool no_device = strncmp(err->msg, "device '", 8) == 0;
        const flash_cfg *node = flash_cfg_get(root, no_device ? "device" : "dtype");
        if (!node) node = flash_cfg_get(root, "dtype");
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", !no_device && !strncmp(err->msg, "dtype ", 6) ? err->msg + 6 : err->msg);
        return node ? flash_cfg_error(node, err, "%s", why) : st;
    }
    return FLASH_OK;
}

void flash_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('"', f);
}

void flash_json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

void flash_json_field_str(FILE *f, const char *key, const char *s)
{
    fprintf(f, ", \"%s\": ", key);
    flash_json_str(f, s);
}

void flash_json_field_num(FILE *f, const char *key, double v)
{
    fprintf(f, ", \"%s\": ", key);
    flash_json_num(f, v);
}

void flash_json_metrics(FILE *f, const flash_metric_result *m)
{
    fputc('{', f);
    for (int k = 0; k < m->n; k++) {
        if (k) fputs(", ", f);
        flash_json_str(f, m->name[k]);
        fputs(": ", f);
        flash_json_num(f, m->value[k]);
    }
    fputc('}', f);
}

flash_status flash_atomic_finish(flash_atomic_file *af, flash_error *err)
{
    if (ferror(af->f)) {
        flash_atomic_abort(af);
        return flash_error_set(err, FLASH_ERR_IO, "%s: write failed", af->path);
    }
    return flash_atomic_commit(af, err);
}
