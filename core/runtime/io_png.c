/* PNG output through libpng: single images and grids of samples.
 *
 * libpng reports errors by longjmp; the error callback copies the message
 * so the caller gets it in flash_error instead of text on stderr.
 */
#include "flash/flash.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_err_ctx {
    jmp_buf jmp;
    char msg[256];
} png_err_ctx;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_err_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jmp, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

flash_status flash_png_write(const char *path, int width, int height, int channels, const uint8_t *pixels,
                             flash_error *err)
{
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3))
        return flash_error_set(err, FLASH_ERR_IO, "%s: png: bad image %dx%d with %d channels (1 or 3 supported)",
                               path, width, height, channels);
    if ((size_t)width > PNG_UINT_31_MAX / (size_t)channels || (size_t)height > PNG_UINT_31_MAX)
        return flash_error_set(err, FLASH_ERR_IO, "%s: png: image %dx%d too large", path, width, height);
    flash_atomic_file af;
    flash_status st = flash_atomic_open(&af, path, err);
    if (st)
        return st;
    /* No local is modified between setjmp and a possible longjmp, so none
     * needs to be volatile. */
    png_err_ctx ctx;
    ctx.msg[0] = '\0';
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        flash_atomic_abort(&af);
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: png: out of memory", path);
    }
    if (setjmp(ctx.jmp)) {
        png_destroy_write_struct(&png, &info);
        flash_atomic_abort(&af);
        return flash_error_set(err, FLASH_ERR_IO, "%s: png write failed: %s", path, ctx.msg);
    }
    png_init_io(png, af.f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)width * (size_t)channels;
    for (int y = 0; y < height; y++)
        png_write_row(png, pixels + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return flash_atomic_commit(&af, err);
}

/* [-1, 1] -> {0..255}: scale, round to nearest, clamp; NaN maps to 0. */
static uint8_t to_u8(float x)
{
    float v = (x + 1.0f) * 127.5f;
    if (!(v > 0.0f))
        return 0;
    if (v >= 255.0f)
        return 255;
    return (uint8_t)lrintf(v);
}

flash_status flash_png_grid(const char *path, const float *images, int n, int c, int h, int w, int ncols,
                            flash_error *err)
{
    enum { BORDER = 2 };
    if (n <= 0 || h <= 0 || w <= 0 || (c != 1 && c != 3))
        return flash_error_set(err, FLASH_ERR_IO, "%s: png grid: bad shape (%d, %d, %d, %d) (1 or 3 channels)", path,
                               n, c, h, w);
    if (ncols <= 0 || ncols > n)
        ncols = n;
    int nrows = (n + ncols - 1) / ncols;
    if ((size_t)ncols * (size_t)(w + BORDER) > 1u << 20 || (size_t)nrows * (size_t)(h + BORDER) > 1u << 20)
        return flash_error_set(err, FLASH_ERR_IO, "%s: png grid of %d images of %dx%d is too large", path, n, h, w);
    int gw = ncols * (w + BORDER) + BORDER, gh = nrows * (h + BORDER) + BORDER;
    /* Borders and empty cells stay black, as in torchvision's make_grid. */
    uint8_t *px = calloc((size_t)gw * (size_t)gh * (size_t)c, 1);
    if (!px)
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory for a %dx%d grid", path, gw, gh);
    size_t plane = (size_t)h * (size_t)w;
    for (int i = 0; i < n; i++) {
        int x0 = BORDER + (i % ncols) * (w + BORDER), y0 = BORDER + (i / ncols) * (h + BORDER);
        const float *img = images + (size_t)i * (size_t)c * plane;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int ch = 0; ch < c; ch++)
                    px[((size_t)(y0 + y) * (size_t)gw + (size_t)(x0 + x)) * (size_t)c + (size_t)ch] =
                        to_u8(img[(size_t)ch * plane + (size_t)y * (size_t)w + (size_t)x]);
    }
    flash_status st = flash_png_write(path, gw, gh, c, px, err);
    free(px);
    return st;
}
