/* The schema of configs (include/flash/schema.h): every key the core reads,
 * which command reads it, and how its value is checked, in one table. */
#include "flash/flash.h"
#include "flash/schema.h"
#include "flash/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the blocks ----------------------------------------------------------- */

static const char *const train_keys[] = {"steps",        "batch_size",   "optimizer",   "lr",         "beta1",
                                         "beta2",        "eps",          "weight_decay", "warmup_steps", "lr_schedule",
                                         "min_lr",       "grad_clip",    "ema_decay",   "ckpt_every", "log_every",
                                         "eval_every",   "eval_batches", "snapshots",   "lr_scale",   NULL};
static const char *const run_keys[] = {"samples", "noise_seed", "batch", "plots", "variants", NULL};
static const char *const run_variant_keys[] = {"name", "model", "from", "set", "snapshot", NULL};
static const char *const teacher_train_keys[] = {"strategy", "train", NULL};
static const char *const sweep_keys[] = {"base",     "set",          "out",      "jobs",     "seeds", "steps",
                                         "timesteps", "guidance",    "guidance_key", "baseline", "variants", "runs",
                                         "snapshots", NULL};
static const char *const sweep_variant_keys[] = {"name",     "config",   "model",     "set", "per_step", "share_steps",
                                                 "seeded",   "seeds",    "steps",     "resample",  "snapshots", NULL};
static const char *const sweep_resample_keys[] = {"name", "set", NULL};
static const char *const sweep_run_keys[] = {"variant", "steps", "seed", "guidance", NULL};

static const struct {
    const char *name;
    const char *const *keys;
} blocks[] = {
    {"train", train_keys},
    {"run", run_keys},
    {"run.variants", run_variant_keys},
    {"teacher_train", teacher_train_keys},
    {"sweep", sweep_keys},
    {"sweep.variants", sweep_variant_keys},
    {"sweep.resample", sweep_resample_keys},
    {"sweep.runs", sweep_run_keys},
};

const char *const *flash_schema_keys(const char *block)
{
    for (size_t i = 0; block && i < sizeof blocks / sizeof blocks[0]; i++)
        if (strcmp(blocks[i].name, block) == 0) return blocks[i].keys;
    return NULL;
}

/* ---- the top level of a pipeline ------------------------------------------ */

enum {
    TRAIN = 1u << FLASH_FOR_TRAIN,
    DISTILL = 1u << FLASH_FOR_DISTILL,
    RUN = 1u << FLASH_FOR_RUN,
    SAMPLE = 1u << FLASH_FOR_SAMPLE,
    EVAL = 1u << FLASH_FOR_EVAL,
    ALL = TRAIN | DISTILL | RUN | SAMPLE | EVAL,
};

typedef enum shape {
    SHAPE_ANY,          /* read by the component or command that uses it */
    SHAPE_INT,
    SHAPE_STR,
    SHAPE_DEVICE,       /* cpu | cuda */
    SHAPE_DTYPE,        /* fp32 | bf16 */
    SHAPE_WEIGHTS,      /* ema | raw */
    SHAPE_SLOT,         /* {plugin: NAME, ...} of `kind` */
    SHAPE_SLOTS,        /* a list of slots of `kind` */
    SHAPE_TRAIN,        /* the loop's settings */
    SHAPE_RUN,          /* flash run's comparison */
    SHAPE_TEACHER_TRAIN /* {strategy, train}: training the teacher first */
} shape;

typedef struct top_key {
    const char *key;
    unsigned read_by; /* the commands that read it (0: documentation only) */
    shape shape;
    flash_kind kind;  /* of a slot */
} top_key;

/* Every key a pipeline may hold at its top level. `name` and `description`
 * document a config and are read by nothing. */
static const top_key top_keys[] = {
    {"seed", ALL, SHAPE_INT, 0},
    {"threads", ALL, SHAPE_INT, 0},
    {"device", ALL, SHAPE_DEVICE, 0},
    {"dtype", ALL, SHAPE_DTYPE, 0}, /* applied when the pipeline is loaded (flash_pipeline_precision) */
    {"plugin_paths", ALL, SHAPE_ANY, 0}, /* read by the plugin loader */
    {"name", 0, SHAPE_ANY, 0},
    {"description", 0, SHAPE_ANY, 0},
    {"schedule", TRAIN | DISTILL | RUN | SAMPLE, SHAPE_SLOT, FLASH_KIND_SCHEDULE},
    {"teacher", DISTILL | RUN | SAMPLE, SHAPE_SLOT, FLASH_KIND_MODEL},
    {"teacher_checkpoint", DISTILL | RUN, SHAPE_STR, 0},
    {"teacher_weights", DISTILL | RUN, SHAPE_WEIGHTS, 0},
    {"student", DISTILL | RUN | SAMPLE, SHAPE_SLOT, FLASH_KIND_MODEL},
    {"model", TRAIN | SAMPLE, SHAPE_SLOT, FLASH_KIND_MODEL},
    {"sampler", DISTILL | RUN | SAMPLE, SHAPE_SLOT, FLASH_KIND_SAMPLER},
    {"strategy", TRAIN | DISTILL | RUN, SHAPE_SLOT, FLASH_KIND_STRATEGY},
    {"losses", DISTILL | RUN, SHAPE_SLOTS, FLASH_KIND_LOSS},
    {"dataset", TRAIN | DISTILL | RUN | EVAL, SHAPE_SLOT, FLASH_KIND_DATASET},
    {"train", TRAIN | DISTILL | RUN, SHAPE_TRAIN, 0},
    {"metrics", RUN | EVAL, SHAPE_SLOTS, FLASH_KIND_METRIC},
    {"evaluator", RUN | EVAL, SHAPE_SLOT, FLASH_KIND_MODEL},
    {"evaluator_checkpoint", RUN | EVAL, SHAPE_STR, 0},
    {"run", RUN, SHAPE_RUN, 0},
    {"teacher_train", RUN, SHAPE_TEACHER_TRAIN, 0},
};
#define N_TOP (sizeof top_keys / sizeof top_keys[0])

/* Keys that moved: an old pipeline is told where. */
static const struct {
    const char *key, *now, *where;
} moved[] = {
    {"distill", "train", "`distill:` is now `train:` (one training loop for flash train and flash distill)"},
    {"target", "strategy.target",
     "`target:` moved into the strategy (strategy.target: {k, guidance_scale}); "
     "gamma moved to the loss that shifts (losses[i].gamma)"},
};
#define N_MOVED (sizeof moved / sizeof moved[0])

/* What each command cannot go without; `one_of` lists alternatives (any one). */
typedef struct command_schema {
    const char *name;
    const char *const *required;
    const char *const *one_of;
} command_schema;

static const char *const train_required[] = {"strategy", NULL};
static const char *const distill_required[] = {"strategy", "schedule", "teacher", "student", "sampler", NULL};
static const char *const run_required[] = {"run", "schedule", "teacher", "sampler", NULL};
static const char *const sample_required[] = {"schedule", "sampler", NULL};
static const char *const sample_models[] = {"model", "student", "teacher", NULL};
static const char *const eval_required[] = {"metrics", NULL};

static const command_schema commands[FLASH_FOR_COUNT] = {
    [FLASH_FOR_ANY] = {"any", NULL, NULL},
    [FLASH_FOR_TRAIN] = {"train", train_required, NULL},
    [FLASH_FOR_DISTILL] = {"distill", distill_required, NULL},
    [FLASH_FOR_RUN] = {"run", run_required, NULL},
    [FLASH_FOR_SAMPLE] = {"sample", sample_required, sample_models},
    [FLASH_FOR_EVAL] = {"eval", eval_required, NULL},
    [FLASH_FOR_SWEEP] = {"sweep", NULL, NULL},
};

const char *flash_schema_name(flash_schema_for what)
{
    return (int)what >= 0 && what < FLASH_FOR_COUNT ? commands[what].name : "?";
}

int flash_schema_parse(const char *name)
{
    for (int i = 0; name && i < FLASH_FOR_COUNT; i++)
        if (strcmp(commands[i].name, name) == 0) return i;
    return -1;
}

static bool free_form(const char *key)
{
    return strncmp(key, "x-", 2) == 0;
}

static const top_key *find_top(const char *key)
{
    for (size_t i = 0; i < N_TOP; i++)
        if (strcmp(top_keys[i].key, key) == 0) return &top_keys[i];
    return NULL;
}

bool flash_schema_reads(flash_schema_for what, const char *key)
{
    const top_key *k = key ? find_top(key) : NULL;
    return k && (int)what > 0 && what < FLASH_FOR_SWEEP && (k->read_by & (1u << what));
}

flash_schema_for flash_schema_infer(const flash_cfg *root)
{
#define HAS(k) (flash_cfg_get(root, k) != NULL)
    if (flash_cfg_kind(root) != FLASH_CFG_MAP) return FLASH_FOR_ANY;
    if (HAS("variants") || HAS("runs") || HAS("base")) return FLASH_FOR_SWEEP;
    if (HAS("run")) return FLASH_FOR_RUN;
    if (HAS("strategy") && HAS("student")) return FLASH_FOR_DISTILL;
    if (HAS("strategy")) return FLASH_FOR_TRAIN;
    if (HAS("sampler")) return FLASH_FOR_SAMPLE;
    if (HAS("metrics")) return FLASH_FOR_EVAL;
    return FLASH_FOR_ANY;
#undef HAS
}

/* ---- checks --------------------------------------------------------------- */

/* A slot's plugin and keys, as flash_instance_create checks them before
 * creating (the values are the component's to check). */
static flash_status check_slot(const flash_cfg *slot, flash_kind kind, const flash_registry *r, flash_error *err)
{
    const char *kname = flash_kind_name(kind);
    if (flash_cfg_kind(slot) != FLASH_CFG_MAP)
        return flash_cfg_error(slot, err, "expected a %s: a map with 'plugin: NAME' and its settings", kname);
    const flash_cfg *pnode = flash_cfg_get(slot, "plugin");
    /* settings for a plugin named elsewhere (a base that recipes extend, a
     * variant's `set:`): whoever creates the slot needs the name */
    if (!pnode) return FLASH_OK;
    const char *pname = flash_cfg_scalar(pnode);
    if (!pname || !pname[0]) return flash_cfg_error(pnode, err, "expected the name of a %s plugin", kname);
    if (!r) return FLASH_OK;
    const flash_component *comp = flash_registry_find(r, kind, pname);
    if (!comp) {
        size_t total = flash_registry_count(r), nk = 0;
        const char **names = calloc(total + 1, sizeof *names);
        if (!names) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < total; i++) {
            const flash_component *c = flash_registry_at(r, i, NULL);
            if (c->kind == kind) names[nk++] = c->name;
        }
        const char *near = flash_did_you_mean(pname, names);
        flash_status st = near ? flash_cfg_error(pnode, err, "no %s named '%s' (did you mean '%s'?)", kname, pname, near)
                               : flash_cfg_error(pnode, err, "no %s named '%s' (see 'flash plugins --kind %s')", kname,
                                                 pname, kname);
        free(names);
        return st;
    }
    char what[256];
    snprintf(what, sizeof what, "%s '%s'", kname, comp->name);
    static const char *const no_keys[] = {NULL};
    return flash_cfg_check_keys(slot, what, comp->keys ? comp->keys : no_keys, err);
}

static flash_status check_slots(const flash_cfg *list, flash_kind kind, const flash_registry *r, flash_error *err)
{
    if (flash_cfg_kind(list) != FLASH_CFG_SEQ)
        return flash_cfg_error(list, err, "expected a list of %s slots ({plugin: NAME, ...})", flash_kind_name(kind));
    flash_status st = FLASH_OK;
    for (size_t i = 0; i < flash_cfg_len(list) && !st; i++) st = check_slot(flash_cfg_at(list, i), kind, r, err);
    return st;
}

static flash_status check_strings(const flash_cfg *seq, const char *what, flash_error *err)
{
    if (!seq || flash_cfg_kind(seq) == FLASH_CFG_NULL) return FLASH_OK;
    if (flash_cfg_kind(seq) != FLASH_CFG_SEQ)
        return flash_cfg_error(seq, err, "%s: expected a list of \"key=value\" strings", what);
    for (size_t i = 0; i < flash_cfg_len(seq); i++)
        if (!flash_cfg_scalar(flash_cfg_at(seq, i)))
            return flash_cfg_error(flash_cfg_at(seq, i), err, "%s: expected a \"key=value\" string", what);
    return FLASH_OK;
}

static flash_status check_pipeline(const flash_cfg *root, flash_schema_for what, const flash_registry *r,
                                   bool variant, flash_error *err);

/* A run variant's config: the pipeline with its `set:` applied, checked as
 * the pipeline is (its own `run:` dropped: the comparison is not the
 * variant's). */
static flash_status check_variant(const flash_cfg *root, const flash_cfg *v, const flash_registry *r,
                                  flash_error *err)
{
    const flash_cfg *sets = flash_cfg_get(v, "set");
    flash_status st = check_strings(sets, "set", err);
    if (st || !sets || flash_cfg_kind(sets) != FLASH_CFG_SEQ || flash_cfg_len(sets) == 0) return st;
    flash_cfg *cfg = flash_cfg_clone(root);
    if (!cfg) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < flash_cfg_len(sets) && !st; i++) {
        const flash_cfg *item = flash_cfg_at(sets, i);
        if ((st = flash_cfg_set(cfg, flash_cfg_scalar(item), err))) {
            char where[256];
            flash_error_prefix(err, "%s", flash_cfg_where(item, where, sizeof where));
        }
    }
    if (!st && (st = flash_cfg_set(cfg, "run=null", err)) == FLASH_OK) {
        st = check_pipeline(cfg, FLASH_FOR_ANY, r, true, err);
        if (st) {
            const char *name = flash_cfg_scalar(flash_cfg_get(v, "name"));
            char where[256];
            flash_error_prefix(err, "%s: run variant '%s'", flash_cfg_where(sets, where, sizeof where),
                               name ? name : "?");
        }
    }
    flash_cfg_free(cfg);
    return st;
}

static flash_status check_run(const flash_cfg *root, const flash_cfg *run, flash_schema_for what,
                              const flash_registry *r, bool variant, flash_error *err)
{
    if (flash_cfg_kind(run) == FLASH_CFG_NULL) return FLASH_OK;
    flash_status st = flash_cfg_check_keys(run, "run", run_keys, err);
    if (st) return st;
    const flash_cfg *variants = flash_cfg_get(run, "variants");
    if (!variants) return FLASH_OK;
    if (flash_cfg_kind(variants) != FLASH_CFG_SEQ)
        return flash_cfg_error(variants, err, "run.variants: expected a list of variants");
    for (size_t i = 0; i < flash_cfg_len(variants) && !st; i++) {
        const flash_cfg *v = flash_cfg_at(variants, i);
        if (flash_cfg_kind(v) != FLASH_CFG_MAP)
            return flash_cfg_error(v, err, "expected a variant: {name, model, from, set, snapshot}");
        /* each variant's own config only for flash run: a variant distilled
         * is checked as itself, not as its siblings */
        if ((st = flash_cfg_check_keys(v, "run variant", run_variant_keys, err))) break;
        /* the step of a training snapshot (trainer.h: train.snapshots) */
        const flash_cfg *snap = flash_cfg_get(v, "snapshot");
        long step;
        if (snap && !(st = flash_cfg_int(v, "snapshot", 0, &step, err)) && step < 1)
            st = flash_cfg_error(snap, err, "snapshot: a training step >= 1 of train.snapshots, got %ld", step);
        if (!st && !variant && what == FLASH_FOR_RUN) st = check_variant(root, v, r, err);
    }
    return st;
}

static flash_status check_value(const flash_cfg *root, const top_key *k, const flash_cfg *v, flash_schema_for what,
                                const flash_registry *r, bool variant, flash_error *err)
{
    flash_status st = FLASH_OK;
    long l;
    const char *s;
    int e;
    static const char *const devices[] = {"cpu", "cuda", NULL};
    static const char *const weights[] = {"ema", "raw", NULL};
    static const char *const dtypes[] = {"fp32", "bf16", NULL};
    switch (k->shape) {
    case SHAPE_ANY: return FLASH_OK;
    case SHAPE_INT: return flash_cfg_int(root, k->key, 0, &l, err);
    case SHAPE_STR: return flash_cfg_str(root, k->key, NULL, &s, err);
    case SHAPE_DEVICE: return flash_cfg_enum(root, k->key, devices, 0, &e, err);
    case SHAPE_WEIGHTS: return flash_cfg_enum(root, k->key, weights, 0, &e, err);
    case SHAPE_DTYPE: return flash_cfg_enum(root, k->key, dtypes, 0, &e, err);
    case SHAPE_SLOT: return check_slot(v, k->kind, r, err);
    case SHAPE_SLOTS: return check_slots(v, k->kind, r, err);
    case SHAPE_TRAIN: {
        flash_train_config tc;
        return flash_train_config_read(v, &tc, err);
    }
    case SHAPE_RUN: return check_run(root, v, what, r, variant, err);
    case SHAPE_TEACHER_TRAIN: {
        if ((st = flash_cfg_check_keys(v, "teacher_train", teacher_train_keys, err))) return st;
        const flash_cfg *strategy = flash_cfg_get(v, "strategy"), *train = flash_cfg_get(v, "train");
        if (strategy && (st = check_slot(strategy, FLASH_KIND_STRATEGY, r, err))) return st;
        flash_train_config tc;
        if (train) st = flash_train_config_read(train, &tc, err);
        return st;
    }
    }
    return st;
}

static flash_status check_pipeline(const flash_cfg *root, flash_schema_for what, const flash_registry *r,
                                   bool variant, flash_error *err)
{
    if (flash_cfg_kind(root) != FLASH_CFG_MAP)
        return flash_cfg_error(root, err, "a pipeline config is a map of keys (dataset:, sampler:, ...)");
    /* the known keys and the moved ones, for the suggestion */
    const char *names[N_TOP + N_MOVED + 1];
    for (size_t i = 0; i < N_TOP; i++) names[i] = top_keys[i].key;
    for (size_t i = 0; i < N_MOVED; i++) names[N_TOP + i] = moved[i].key;
    names[N_TOP + N_MOVED] = NULL;
    flash_status st = FLASH_OK;
    for (size_t i = 0; i < flash_cfg_len(root) && !st; i++) {
        const char *key = flash_cfg_key_at(root, i);
        const flash_cfg *v = flash_cfg_at(root, i);
        if (free_form(key)) continue;
        for (size_t m = 0; m < N_MOVED; m++)
            if (strcmp(key, moved[m].key) == 0) return flash_cfg_error(v, err, "%s", moved[m].where);
        const top_key *k = find_top(key);
        if (k) {
            st = check_value(root, k, v, what, r, variant, err);
            continue;
        }
        const char *near = flash_did_you_mean(key, names);
        for (size_t m = 0; near && m < N_MOVED; m++)
            if (strcmp(near, moved[m].key) == 0)
                return flash_cfg_error(v, err, "unknown top-level key '%s' (did you mean '%s'? %s)", key, moved[m].now,
                                       moved[m].where);
        if (near) return flash_cfg_error(v, err, "unknown top-level key '%s' (did you mean '%s'?)", key, near);
        return flash_cfg_error(v, err,
                               "unknown top-level key '%s' (a free-form block for YAML anchors is named x-...; "
                               "see `flash check --help` for the keys)",
                               key);
    }
    if (st) return st;
    const command_schema *c = &commands[what];
    for (size_t i = 0; c->required && c->required[i]; i++)
        if (!flash_cfg_get(root, c->required[i]))
            return flash_cfg_error(root, err, "flash %s needs a '%s:' section", c->name, c->required[i]);
    if (c->one_of) {
        bool any = false;
        for (size_t i = 0; c->one_of[i]; i++) any |= flash_cfg_get(root, c->one_of[i]) != NULL;
        if (!any) return flash_cfg_error(root, err, "flash %s needs a 'model:', 'student:' or 'teacher:' slot", c->name);
    }
    return FLASH_OK;
}

static flash_status check_sweep(const flash_cfg *root, flash_error *err)
{
    flash_status st = flash_cfg_check_keys(root, "sweep", sweep_keys, err);
    if (st) return st;
    const flash_cfg *vs = flash_cfg_get(root, "variants"), *runs = flash_cfg_get(root, "runs");
    for (size_t i = 0; flash_cfg_kind(vs) == FLASH_CFG_SEQ && i < flash_cfg_len(vs) && !st; i++) {
        const flash_cfg *v = flash_cfg_at(vs, i), *rs = flash_cfg_get(v, "resample");
        if ((st = flash_cfg_check_keys(v, "variant", sweep_variant_keys, err))) break;
        for (size_t j = 0; flash_cfg_kind(rs) == FLASH_CFG_SEQ && j < flash_cfg_len(rs) && !st; j++)
            st = flash_cfg_check_keys(flash_cfg_at(rs, j), "resample", sweep_resample_keys, err);
    }
    for (size_t i = 0; !st && flash_cfg_kind(runs) == FLASH_CFG_SEQ && i < flash_cfg_len(runs); i++)
        st = flash_cfg_check_keys(flash_cfg_at(runs, i), "run", sweep_run_keys, err);
    return st;
}

flash_status flash_schema_check(const flash_cfg *root, flash_schema_for what, const flash_registry *registry,
                                flash_error *err)
{
    if ((int)what < 0 || what >= FLASH_FOR_COUNT)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_schema_check: unknown command %d", (int)what);
    if (!root) return flash_error_set(err, FLASH_ERR_CONFIG, "no config");
    if (what == FLASH_FOR_SWEEP) {
        if (flash_cfg_kind(root) != FLASH_CFG_MAP)
            return flash_cfg_error(root, err, "a sweep file is a map (base:, variants:, ...)");
        return check_sweep(root, err);
    }
    return check_pipeline(root, what, registry, false, err);
}
