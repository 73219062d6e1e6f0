/* Interoperability helper for tests/integration/safetensors_python.sh.
 *
 *   io_interop write DIR   writes DIR/mixed.safetensors, DIR/f32.npy,
 *                          DIR/i64.npy with the closed-form values below
 *   io_interop check FILE  reads a safetensors file written by Python with
 *                          the same tensors and checks every value
 *
 * Closed forms (k is the flat index):
 *   w    F32 (3, 4)   k * 0.5 - 2.25
 *   ids  I64 (5,)     k * k * 1000000007 - 7
 *   img  U8  (2, 3)   40 * k + 1
 *   d    F64 (2,)     1 / (k + 3)
 *   i    I32 (4,)     -1000 * k
 *   metadata: format "flash-test", note "h\u00e9llo \"quoted\"\n"
 * f32.npy is w with shape (3, 4); i64.npy is ids.
 *
 * DIR/ckpt.safetensors is a checkpoint (step 42, config CKPT_CONFIG) of
 * params "a.weight" (3, 4) = w and "a.bias" (3,) = 0.5 - k, with the EMA
 * taken right after setting them (so equal), then gradients g = k * 0.01 - 0.05
 * (flat over the block) and one Adam step with lr 0, beta1 0.9, beta2 0.999:
 * adam_m = 0.1 g, adam_v = 0.001 g^2, data unchanged.
 */
#include "flash/flash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float w[12];
static int64_t ids[5];
static uint8_t img[6];
static double d[2];
static int32_t iv[4];
static const char *note = "h\xc3\xa9llo \"quoted\"\n";

static void fill(void)
{
    for (int k = 0; k < 12; k++)
        w[k] = (float)k * 0.5f - 2.25f;
    for (int k = 0; k < 5; k++)
        ids[k] = (int64_t)k * k * 1000000007LL - 7;
    for (int k = 0; k < 6; k++)
        img[k] = (uint8_t)(40 * k + 1);
    for (int k = 0; k < 2; k++)
        d[k] = 1.0 / (k + 3);
    for (int k = 0; k < 4; k++)
        iv[k] = -1000 * k;
}

static const char *CKPT_CONFIG = "model: {plugin: mlp}\nsteps: 42\n";

static flash_status write_ckpt(const char *path, flash_error *err)
{
    flash_params *p = flash_params_create();
    if (!p)
        return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    flash_status st = FLASH_ERR_RUNTIME;
    flash_tensor *tw = flash_params_add(p, "a.weight", 2, (int[]){3, 4});
    flash_tensor *tb = flash_params_add(p, "a.bias", 1, (int[]){3});
    if (!tw || !tb || (st = flash_params_finalize(p, err)))
        goto done;
    memcpy(tw->data, w, sizeof w);
    for (int k = 0; k < 3; k++)
        tb->data[k] = 0.5f - (float)k;
    if ((st = flash_params_ema_update(p, 0.99f, err)))
        goto done;
    float *g = flash_params_grad(p);
    for (size_t k = 0; k < flash_params_count(p); k++)
        g[k] = (float)k * 0.01f - 0.05f;
    flash_adam opt = {.lr = 0.0f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
    if ((st = flash_adam_step(p, &opt, 1, err)))
        goto done;
    flash_ckpt_info info = {.step = 42, .config_yaml = (char *)CKPT_CONFIG};
    flash_rng_seed(&info.rng, 5);
    st = flash_checkpoint_save(path, p, &info, err);
done:
    flash_params_destroy(p);
    return st;
}

static int write_all(const char *dir)
{
    flash_error err = {0};
    char path[4096];
    flash_st_tensor ts[] = {
        {"img", FLASH_U8, 2, {2, 3}, img, sizeof img}, {"w", FLASH_F32, 2, {3, 4}, w, sizeof w},
        {"ids", FLASH_I64, 1, {5}, ids, sizeof ids},   {"d", FLASH_F64, 1, {2}, d, sizeof d},
        {"i", FLASH_I32, 1, {4}, iv, sizeof iv},
    };
    flash_st_meta meta[] = {{"format", "flash-test"}, {"note", note}};
    snprintf(path, sizeof path, "%s/mixed.safetensors", dir);
    if (flash_safetensors_write(path, ts, 5, meta, 2, &err))
        goto fail;
    int64_t ws[2] = {3, 4}, is[1] = {5};
    snprintf(path, sizeof path, "%s/f32.npy", dir);
    if (flash_npy_write(path, FLASH_F32, 2, ws, w, &err))
        goto fail;
    snprintf(path, sizeof path, "%s/i64.npy", dir);
    if (flash_npy_write(path, FLASH_I64, 1, is, ids, &err))
        goto fail;
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    if (write_ckpt(path, &err))
        goto fail;
    return 0;
fail:
    fprintf(stderr, "io_interop: %s\n", err.msg);
    return 1;
}

static int check(const char *path)
{
    flash_error err = {0};
    flash_safetensors *st;
    if (flash_safetensors_open(path, &st, &err)) {
        fprintf(stderr, "io_interop: %s\n", err.msg);
        return 1;
    }
    const flash_st_tensor want[] = {
        {"img", FLASH_U8, 2, {2, 3}, img, sizeof img}, {"w", FLASH_F32, 2, {3, 4}, w, sizeof w},
        {"ids", FLASH_I64, 1, {5}, ids, sizeof ids},   {"d", FLASH_F64, 1, {2}, d, sizeof d},
        {"i", FLASH_I32, 1, {4}, iv, sizeof iv},
    };
    int bad = 0;
    if (flash_safetensors_count(st) != 5) {
        fprintf(stderr, "io_interop: %zu tensors, expected 5\n", flash_safetensors_count(st));
        bad = 1;
    }
    for (int i = 0; i < 5; i++) {
        const flash_st_tensor *t = flash_safetensors_find(st, want[i].name);
        if (!t || t->dtype != want[i].dtype || t->ndim != want[i].ndim || t->nbytes != want[i].nbytes ||
            t->shape[0] != want[i].shape[0] || (t->ndim == 2 && t->shape[1] != want[i].shape[1]) ||
            memcmp(t->data, want[i].data, want[i].nbytes) != 0) {
            fprintf(stderr, "io_interop: tensor '%s' missing or different\n", want[i].name);
            bad = 1;
        }
    }
    const char *m = flash_safetensors_meta(st, "note");
    if (!m || strcmp(m, note) != 0) {
        fprintf(stderr, "io_interop: metadata 'note' is '%s'\n", m ? m : "(absent)");
        bad = 1;
    }
    flash_safetensors_close(st);
    if (!bad)
        printf("io_interop: %s matches\n", path);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "write") && strcmp(argv[1], "check"))) {
        fprintf(stderr, "usage: io_interop write DIR | io_interop check FILE\n");
        return 2;
    }
    fill();
    return strcmp(argv[1], "write") == 0 ? write_all(argv[2]) : check(argv[2]);
}
