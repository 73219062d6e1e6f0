/* flash check CONFIG [--for COMMAND] [--set k=v]...: the validation the
 * command will do before it runs (the schema of include/flash/schema.h,
 * then its components created the way the command creates them), and the
 * resolved config on stdout. */
#include "cli.h"
#include "flash/trainer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct check_args {
    const char *config, *for_command;
    flash_options_sets sets;
} check_args;

static const char *const for_commands[] = {"train", "distill", "run", "sample", "eval", "sweep", NULL};

static const flash_opt check_opts[] = {
    FLASH_CHOICE("--for", "COMMAND", check_args, for_command, for_commands,
                 "check as this command will: train, distill, run, sample, eval\n"
                 "or sweep (default: inferred from what the file holds)"),
    FLASH_OPT_SETS(check_args, sets),
    FLASH_OPT_DTYPE_OF(check_args, sets),
    FLASH_OPT_DEVICE_OF(check_args, sets,
                        "Checked\n"
                        "as the other keys are and printed in the resolved config"),
    {0},
};

static const flash_command check_cmd = {
    .name = "check",
    .positional = "CONFIG",
    .positional_offset = offsetof(check_args, config),
    .opts = check_opts,
    .about = "Validates a config exactly as the command that runs it will, before it\n"
             "runs: parses it (following extends:), applies the --set overrides, loads\n"
             "the plugins (built-in, $FLASH_PLUGIN_PATH, the config's plugin_paths),\n"
             "checks every key against the schema of that command (a misspelt key\n"
             "anywhere is an error with a did-you-mean; keys that moved say where),\n"
             "then creates the components the way the command does: train and\n"
             "distill build the whole run (teacher checkpoint loaded, student, sampler,\n"
             "losses), sample its schedule, model and sampler, eval its metrics, and\n"
             "run (or a file for no command in particular) every component slot once.\n"
             "Components are built on the CPU whatever `device:` says (its value is\n"
             "checked), so a config for a GPU checks on a machine without one. A sweep\n"
             "file is planned (its keys, variants and runs). Prints the resolved config\n"
             "as YAML on stdout.\n"
             "\n"
             "--for defaults to what the file holds: top-level variants:/runs:/base: a\n"
             "sweep; run: run; strategy: and student: distill; strategy: train;\n"
             "sampler: sample; metrics: eval.\n"
             "\n"
             "Top-level keys of a pipeline: seed, threads, device, plugin_paths, name,\n"
             "description, schedule, teacher, teacher_checkpoint, teacher_weights,\n"
             "student, model, sampler, strategy, losses, dataset, train, metrics,\n"
             "evaluator, evaluator_checkpoint, run, teacher_train; keys starting with\n"
             "x- are free-form (YAML anchors) and never read. `flash plugins NAME`\n"
             "lists a component's keys.\n",
    .epilogue = "Exit codes: 0 valid, 2 a config problem (reported as file:line:col: key:\n"
                "message) or a bad input file it names, 1 any other failure.\n",
};

/* Slot keys with a fixed kind; other keys ending in "_<kind>" or "<kind>s"
 * also name their kind (teacher_sampler, metrics). */
static const struct {
    const char *key;
    flash_kind kind;
} slot_kinds[] = {
    {"model", FLASH_KIND_MODEL},         {"teacher", FLASH_KIND_MODEL},      {"student", FLASH_KIND_MODEL},
    {"evaluator", FLASH_KIND_MODEL},     {"classifier", FLASH_KIND_MODEL},   {"discriminator", FLASH_KIND_MODEL},
    {"schedule", FLASH_KIND_SCHEDULE},   {"sampler", FLASH_KIND_SAMPLER},    {"loss", FLASH_KIND_LOSS},
    {"losses", FLASH_KIND_LOSS},         {"strategy", FLASH_KIND_STRATEGY},  {"dataset", FLASH_KIND_DATASET},
    {"data", FLASH_KIND_DATASET},        {"metric", FLASH_KIND_METRIC},      {"metrics", FLASH_KIND_METRIC},
};

static int kind_of_key(const char *key)
{
    for (size_t i = 0; i < sizeof slot_kinds / sizeof slot_kinds[0]; i++)
        if (strcmp(key, slot_kinds[i].key) == 0) return (int)slot_kinds[i].kind;
    size_t kl = strlen(key);
    for (int k = 0; k < FLASH_KIND_COUNT; k++) {
        const char *kn = flash_kind_name((flash_kind)k);
        size_t nl = strlen(kn);
        if (kl > nl && strcmp(key + kl - nl, kn) == 0 && key[kl - nl - 1] == '_') return k;
        if (kl == nl + 1 && strncmp(key, kn, nl) == 0 && key[nl] == 's') return k;
    }
    return -1;
}

static int is_slot(const flash_cfg *n)
{
    return flash_cfg_kind(n) == FLASH_CFG_MAP && flash_cfg_get(n, "plugin") != NULL;
}

/* The kind of a slot whose key does not say: the kind of its plugin, when
 * exactly one kind has a component of that name. */
static flash_status kind_of_plugin(const flash_registry *r, const flash_cfg *slot, int *kind, flash_error *err)
{
    const flash_cfg *pn = flash_cfg_get(slot, "plugin");
    const char *name = flash_cfg_scalar(pn);
    if (!name || !name[0]) return flash_cfg_error(pn, err, "expected a plugin name");
    int found = -1, count = 0;
    size_t n = flash_registry_count(r);
    const char **names = calloc(n + 1, sizeof *names);
    if (!names) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const flash_component *c = flash_registry_at(r, i, NULL);
        names[i] = c->name;
        if (strcmp(c->name, name) == 0) {
            if (found != (int)c->kind) count++;
            found = (int)c->kind;
        }
    }
    flash_status st = FLASH_OK;
    if (count == 0) {
        const char *near = flash_did_you_mean(name, names);
        st = near ? flash_cfg_error(pn, err, "no plugin component named '%s' (did you mean '%s'?)", name, near)
                  : flash_cfg_error(pn, err, "no plugin component named '%s' (see 'flash plugins')", name);
    } else if (count > 1) {
        st = flash_cfg_error(pn, err,
                             "'%s' names components of several kinds: name the slot after its kind "
                             "(model, sampler, loss, ...)",
                             name);
    }
    free(names);
    *kind = found;
    return st;
}

typedef struct check_item {
    const flash_cfg *slot;
    int kind;
    int order; /* schedules first, then the teacher, then the rest */
} check_item;

static int cmp_item(const void *a, const void *b)
{
    const check_item *x = a, *y = b;
    return x->order - y->order;
}

typedef struct item_list {
    check_item *v;
    size_t n, cap;
} item_list;

static flash_status add_slot(const flash_registry *r, item_list *l, const char *key, const flash_cfg *slot,
                             int top, flash_error *err)
{
    int kind = kind_of_key(key);
    flash_status st = kind >= 0 ? FLASH_OK : kind_of_plugin(r, slot, &kind, err);
    if (st) return st;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        check_item *v = realloc(l->v, cap * sizeof *v);
        if (!v) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
        l->v = v;
        l->cap = cap;
    }
    int order = kind == FLASH_KIND_SCHEDULE ? 0 : top && strcmp(key, "teacher") == 0 ? 1 : 2;
    l->v[l->n] = (check_item){slot, kind, order * 100000 + (int)l->n};
    l->n++;
    return FLASH_OK;
}

/* Slots of a map: its values that are slots, lists of slots, and (one level
 * of grouping at a time) the slots inside plain maps such as
 * `target: {sampler: {plugin: ddim}}`. A slot's own nested slots are
 * its component's business. */
static flash_status collect_map(const flash_registry *r, item_list *l, const flash_cfg *map, int top,
                                flash_error *err)
{
    flash_status st = FLASH_OK;
    for (size_t i = 0; i < flash_cfg_len(map) && !st; i++) {
        const char *key = flash_cfg_key_at(map, i);
        const flash_cfg *v = flash_cfg_at(map, i);
        if (top && strncmp(key, "x-", 2) == 0) continue; /* free-form: anchors, checked where they are used */
        if (is_slot(v)) {
            st = add_slot(r, l, key, v, top, err);
        } else if (flash_cfg_kind(v) == FLASH_CFG_SEQ && flash_cfg_len(v) > 0) {
            int all = 1;
            for (size_t j = 0; j < flash_cfg_len(v); j++) all &= is_slot(flash_cfg_at(v, j));
            for (size_t j = 0; all && j < flash_cfg_len(v) && !st; j++)
                st = add_slot(r, l, key, flash_cfg_at(v, j), top, err);
        } else if (flash_cfg_kind(v) == FLASH_CFG_MAP) {
            st = collect_map(r, l, v, 0, err);
        }
    }
    return st;
}

static flash_status collect(const flash_cli_pipeline *p, check_item **items, size_t *n, flash_error *err)
{
    *items = NULL;
    *n = 0;
    if (flash_cfg_kind(p->root) != FLASH_CFG_MAP)
        return flash_cfg_error(p->root, err, "a pipeline config is a map of keys (dataset:, sampler:, ...)");
    item_list l = {0};
    flash_status st = collect_map(p->registry, &l, p->root, 1, err);
    if (st) {
        free(l.v);
        return st;
    }
    if (l.n) qsort(l.v, l.n, sizeof *l.v, cmp_item);
    *items = l.v;
    *n = l.n;
    return FLASH_OK;
}

/* Every component slot created once (flash run's check, and a file for no
 * command in particular); *made counts them. */
static flash_status create_every_slot(const flash_cli_pipeline *p, size_t *made_count, flash_error *err)
{
    check_item *items = NULL;
    size_t n = 0, made = 0;
    flash_instance *inst = NULL;
    flash_status st = collect(p, &items, &n, err);
    long seed = 0;
    if (!st && !(inst = calloc(n + 1, sizeof *inst))) st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    if (!st) st = flash_cfg_int(p->root, "seed", 0, &seed, err);
    flash_env env = {.size = sizeof env, .registry = p->registry, .seed = (uint64_t)seed, .root = p->root};
    for (size_t i = 0; !st && i < n; i++) {
        if ((st = flash_instance_create(&env, (flash_kind)items[i].kind, items[i].slot, &inst[i], err))) break;
        made++;
        if (items[i].kind == FLASH_KIND_SCHEDULE && !env.schedule) env.schedule = &inst[i];
        if (items[i].order / 100000 == 1) env.teacher = &inst[i];
    }
    *made_count = made;
    while (made > 0) flash_instance_destroy(&inst[--made]);
    free(inst);
    free(items);
    return st;
}

/* flash sample's components: the schedule, the model (model, else student,
 * else teacher) and the sampler. */
static flash_status create_for_sample(const flash_cli_pipeline *p, size_t *made, flash_error *err)
{
    long seed;
    flash_status st = flash_cfg_int(p->root, "seed", 0, &seed, err);
    if (st) return st;
    flash_env env = {.size = sizeof env, .registry = p->registry, .seed = (uint64_t)seed, .root = p->root};
    const flash_cfg *model = flash_cfg_get(p->root, "model");
    if (!model) model = flash_cfg_get(p->root, "student");
    if (!model) model = flash_cfg_get(p->root, "teacher");
    flash_instance sched = {0}, m = {0}, sampler = {0};
    if (!(st = flash_instance_create(&env, FLASH_KIND_SCHEDULE, flash_cfg_get(p->root, "schedule"), &sched, err))) {
        env.schedule = &sched;
        if (!(st = flash_instance_create(&env, FLASH_KIND_MODEL, model, &m, err)))
            st = flash_instance_create(&env, FLASH_KIND_SAMPLER, flash_cfg_get(p->root, "sampler"), &sampler, err);
    }
    *made = (sched.comp != NULL) + (m.comp != NULL) + (sampler.comp != NULL);
    flash_instance_destroy(&sampler);
    flash_instance_destroy(&m);
    flash_instance_destroy(&sched);
    return st;
}

/* flash eval's components: each metric. */
static flash_status create_for_eval(const flash_cli_pipeline *p, size_t *made, flash_error *err)
{
    long seed;
    flash_status st = flash_cfg_int(p->root, "seed", 0, &seed, err);
    flash_env env = {.size = sizeof env, .registry = p->registry, .seed = (uint64_t)seed, .root = p->root};
    const flash_cfg *metrics = flash_cfg_get(p->root, "metrics");
    if (!st && (flash_cfg_kind(metrics) != FLASH_CFG_SEQ || flash_cfg_len(metrics) == 0))
        st = flash_cfg_error(metrics ? metrics : p->root, err, "flash eval needs a 'metrics:' list of metric slots");
    *made = 0;
    for (size_t i = 0; !st && i < flash_cfg_len(metrics); i++) {
        flash_instance m = {0};
        if ((st = flash_instance_create(&env, FLASH_KIND_METRIC, flash_cfg_at(metrics, i), &m, err))) break;
        flash_instance_destroy(&m);
        (*made)++;
    }
    return st;
}

/* flash train's and flash distill's build: the run opened as the command
 * opens it (nothing written), then closed. */
static flash_status build_run(const flash_cli_pipeline *p, flash_schema_for what, flash_error *err)
{
    flash_train_opts o = {.size = sizeof o, .root = p->root, .registry = p->registry,
                          .command = what == FLASH_FOR_DISTILL ? "flash distill" : "flash train"};
    flash_run *run = NULL;
    flash_status st = flash_train_open(&o, &run, err);
    flash_train_close(run);
    return st;
}

/* A sweep file: planned as flash sweep plans it (nothing written). */
static int check_sweep(const char *config)
{
    flash_error err = {0};
    flash_sweep *s = NULL;
    flash_sweep_opts o = {.size = sizeof o, .path = config, .flash_exe = "flash", .jobs = 1};
    flash_status st = flash_sweep_plan(&o, &s, &err);
    flash_sweep_free(s);
    if (st) return flash_cli_fail("check", &err);
    fprintf(stderr, "flash check: %s: ok for flash sweep\n", config);
    return FLASH_EXIT_OK;
}

int flash_cmd_check(int argc, char **argv)
{
    check_args a = {0};
    int rc;
    if (!flash_options_parse(&check_cmd, argc, argv, &a, &rc)) return rc;
    const char *config = a.config;
    struct stat sb;
    if (stat(config, &sb) != 0) {
        fprintf(stderr, "flash check: %s: cannot open config: %s\n", config, strerror(errno));
        return FLASH_EXIT_USAGE;
    }

    flash_error err = {0};
    flash_cli_pipeline p;
    flash_cli_pipeline_machine_checks(false);
    flash_status st = flash_cli_pipeline_load(&p, config, &a.sets, &err);
    if (st) {
        /* A file the config names (extends:, plugin_paths:) that cannot be
         * read is a problem of the config. */
        if (st == FLASH_ERR_IO) err.status = FLASH_ERR_CONFIG;
        return flash_cli_fail("check", &err);
    }
    flash_schema_for what = a.for_command ? (flash_schema_for)flash_schema_parse(a.for_command)
                                          : flash_schema_infer(p.root);
    if (what == FLASH_FOR_SWEEP) {
        flash_cli_pipeline_free(&p);
        if (a.sets.n) return flash_cli_usage("check", "%s", "--set and --device apply to pipelines, not sweep files");
        return check_sweep(config);
    }
    size_t made = 0;
    bool built = false;
    if ((st = flash_schema_check(p.root, what, p.registry, &err))) goto done;
    if (what != FLASH_FOR_ANY && what != FLASH_FOR_SAMPLE && (st = flash_pipeline_threads(p.root, &err))) goto done;
    /* the components on the CPU: the device's value is checked above, its
     * presence is the machine's business, not the config's */
    if (flash_cfg_get(p.root, "device") && (st = flash_cfg_set(p.root, "device=cpu", &err))) goto done;
    switch (what) {
    case FLASH_FOR_TRAIN:
    case FLASH_FOR_DISTILL:
        st = build_run(&p, what, &err);
        built = true;
        break;
    case FLASH_FOR_SAMPLE: st = create_for_sample(&p, &made, &err); break;
    case FLASH_FOR_EVAL: st = create_for_eval(&p, &made, &err); break;
    default: st = create_every_slot(&p, &made, &err); break;
    }
    if (st) goto done;
    /* the config as given (device included), resolved */
    flash_cli_pipeline_free(&p);
    if ((st = flash_cli_pipeline_load(&p, config, &a.sets, &err))) goto done;
    char *yaml = flash_cfg_to_yaml(p.root);
    if (!yaml) {
        st = flash_error_set(&err, FLASH_ERR_NOMEM, "out of memory writing the resolved config");
        goto done;
    }
    fputs(yaml, stdout);
    free(yaml);
    if (what == FLASH_FOR_ANY)
        fprintf(stderr, "flash check: %s: ok, %zu component%s created\n", config, made, made == 1 ? "" : "s");
    else if (built)
        fprintf(stderr, "flash check: %s: ok for flash %s (its run built)\n", config, flash_schema_name(what));
    else
        fprintf(stderr, "flash check: %s: ok for flash %s, %zu component%s created\n", config,
                flash_schema_name(what), made, made == 1 ? "" : "s");
done:
    flash_cli_pipeline_free(&p);
    if (st == FLASH_ERR_IO) err.status = FLASH_ERR_CONFIG;
    return st ? flash_cli_fail("check", &err) : FLASH_EXIT_OK;
}
