/* The plugin registry and loader.
 *
 * Shared objects are opened with dlopen(RTLD_NOW | RTLD_LOCAL), so a plugin
 * with an unresolved symbol fails at load time rather than mid-run, and two
 * plugins never see each other's symbols. Each exports one entry function
 * returning a descriptor; every check below runs on the whole descriptor
 * before any component is added, so a malformed plugin adds nothing.
 * Accepted libraries are never closed (their components' function pointers
 * live as long as the process). */
#include "flash/flash.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FLASH_PLUGIN_SUBDIR
#define FLASH_PLUGIN_SUBDIR "flash/plugins"
#endif

typedef struct flash_reg_entry {
    const flash_component *comp;
    const char *origin; /* owned by the registry's origin list */
} flash_reg_entry;

struct flash_registry {
    flash_reg_entry *v;
    size_t n, cap;
    /* One per accepted descriptor: its origin string and identity, so the
     * same library reached twice (built-in dir and FLASH_PLUGIN_PATH) is
     * registered once. */
    char **origins;
    const flash_plugin_desc **descs;
    size_t n_desc, cap_desc;
};

static const char *const kind_names[FLASH_KIND_COUNT] = {
    [FLASH_KIND_MODEL] = "model",       [FLASH_KIND_SCHEDULE] = "schedule", [FLASH_KIND_SAMPLER] = "sampler",
    [FLASH_KIND_LOSS] = "loss",         [FLASH_KIND_STRATEGY] = "strategy", [FLASH_KIND_DATASET] = "dataset",
    [FLASH_KIND_METRIC] = "metric",
};

/* The size of each kind's struct in ABI 1.0. A plugin built against 1.0
 * carries at least this much; when a kind's struct grows in a later minor
 * version, this table keeps the 1.0 value (the offset of the first appended
 * field), so old plugins keep loading. */
static const size_t kind_min_size[FLASH_KIND_COUNT] = {
    [FLASH_KIND_MODEL] = sizeof(flash_model_api),       [FLASH_KIND_SCHEDULE] = sizeof(flash_schedule_api),
    [FLASH_KIND_SAMPLER] = sizeof(flash_sampler_api),   [FLASH_KIND_LOSS] = sizeof(flash_loss_api),
    [FLASH_KIND_STRATEGY] = sizeof(flash_strategy_api), [FLASH_KIND_DATASET] = sizeof(flash_dataset_api),
    [FLASH_KIND_METRIC] = sizeof(flash_metric_api),
};

/* The first minor of this major each kind's table has its present meaning
 * in. ABI 1.1 replaced the strategy table (one training loop: trained,
 * step(flash_run), after_step), so a strategy built against 1.0 is refused
 * with the version it needs; the other kinds of a 1.0 plugin load. */
/* 1.1 replaced the strategy table; 1.2 doubled flash_metric_result, which
 * strategies (their logged statistics) and metrics fill */
static const uint16_t kind_min_minor[FLASH_KIND_COUNT] = {[FLASH_KIND_STRATEGY] = 2, [FLASH_KIND_METRIC] = 2};

const char *flash_kind_name(flash_kind k)
{
    if ((int)k < 0 || k >= FLASH_KIND_COUNT) return "unknown";
    return kind_names[k];
}

int flash_kind_parse(const char *name)
{
    if (!name) return -1;
    for (int k = 0; k < FLASH_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    return -1;
}

flash_registry *flash_registry_create(void)
{
    return calloc(1, sizeof(flash_registry));
}

void flash_registry_destroy(flash_registry *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_desc; i++) free(r->origins[i]);
    free(r->origins);
    free(r->descs);
    free(r->v);
    free(r);
}

size_t flash_registry_count(const flash_registry *r)
{
    return r ? r->n : 0;
}

const flash_component *flash_registry_at(const flash_registry *r, size_t i, const char **origin)
{
    if (!r || i >= r->n) {
        if (origin) *origin = NULL;
        return NULL;
    }
    if (origin) *origin = r->v[i].origin;
    return r->v[i].comp;
}

const flash_component *flash_registry_find(const flash_registry *r, flash_kind kind, const char *name)
{
    if (!r || !name) return NULL;
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].comp->kind == kind && strcmp(r->v[i].comp->name, name) == 0) return r->v[i].comp;
    return NULL;
}

static const char *find_origin(const flash_registry *r, flash_kind kind, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].comp->kind == kind && strcmp(r->v[i].comp->name, name) == 0) return r->v[i].origin;
    return NULL;
}

/* Checks one component of a descriptor; i is its index for messages. */
static flash_status check_component(const flash_registry *r, const flash_plugin_desc *d, size_t i,
                                    const char *origin, const char *pv, flash_error *err)
{
    const flash_component *c = d->components[i];
    if (!c)
        return flash_error_set(err, FLASH_ERR_PLUGIN, "%s: plugin '%s' %s (ABI %u.%u, host ABI %d.%d): component %zu is NULL",
                               origin, d->name ? d->name : "?", pv, d->abi_major, d->abi_minor, FLASH_ABI_MAJOR,
                               FLASH_ABI_MINOR, i);
    const char *cname = c->name ? c->name : "(unnamed)";
    if ((int)c->kind < 0 || c->kind >= FLASH_KIND_COUNT)
        return flash_error_set(err, FLASH_ERR_PLUGIN,
                               "%s: plugin '%s' %s (ABI %u.%u, host ABI %d.%d): component '%s' has unknown kind %d "
                               "(this flash knows kinds 0..%d)",
                               origin, d->name ? d->name : "?", pv, d->abi_major, d->abi_minor, FLASH_ABI_MAJOR,
                               FLASH_ABI_MINOR, cname, (int)c->kind, FLASH_KIND_COUNT - 1);
    if (c->size < kind_min_size[c->kind])
        return flash_error_set(err, FLASH_ERR_PLUGIN,
                               "%s: plugin '%s' %s (ABI %u.%u, host ABI %d.%d): %s '%s' is %u bytes, ABI %d.0 needs at "
                               "least %zu (a short struct: rebuild the plugin against this flash's headers)",
                               origin, d->name ? d->name : "?", pv, d->abi_major, d->abi_minor, FLASH_ABI_MAJOR,
                               FLASH_ABI_MINOR, kind_names[c->kind], cname, c->size, FLASH_ABI_MAJOR,
                               kind_min_size[c->kind]);
    if (d->abi_minor < kind_min_minor[c->kind])
        return flash_error_set(err, FLASH_ERR_PLUGIN,
                               "%s: plugin '%s' %s (ABI %u.%u, host ABI %d.%d): %s '%s' needs ABI %d.%u or later (a "
                               "%s's table or the structs it fills changed then): rebuild the plugin against this "
                               "flash's headers",
                               origin, d->name ? d->name : "?", pv, d->abi_major, d->abi_minor, FLASH_ABI_MAJOR,
                               FLASH_ABI_MINOR, kind_names[c->kind], c->name ? c->name : "(unnamed)", FLASH_ABI_MAJOR,
                               kind_min_minor[c->kind], kind_names[c->kind]);
    if (!c->name || !c->name[0])
        return flash_error_set(err, FLASH_ERR_PLUGIN, "%s: plugin '%s' %s: %s component %zu has no name", origin,
                               d->name ? d->name : "?", pv, kind_names[c->kind], i);
    if (!c->create)
        return flash_error_set(err, FLASH_ERR_PLUGIN, "%s: plugin '%s' %s: %s '%s' has no create function", origin,
                               d->name ? d->name : "?", pv, kind_names[c->kind], cname);
    const char *prev = find_origin(r, c->kind, c->name);
    if (prev)
        return flash_error_set(err, FLASH_ERR_PLUGIN, "%s: duplicate %s '%s': already registered by %s", origin,
                               kind_names[c->kind], c->name, prev);
    for (size_t j = 0; j < i; j++) {
        const flash_component *o = d->components[j];
        if (o->kind == c->kind && strcmp(o->name, c->name) == 0)
            return flash_error_set(err, FLASH_ERR_PLUGIN, "%s: duplicate %s '%s': listed twice in plugin '%s'", origin,
                                   kind_names[c->kind], c->name, d->name ? d->name : "?");
    }
    return FLASH_OK;
}

flash_status flash_registry_add(flash_registry *r, const flash_plugin_desc *d, const char *origin, flash_error *err)
{
    if (!origin) origin = "(built in)";
    if (!r) return flash_error_set(err, FLASH_ERR_USAGE, "%s: no registry to add the plugin to", origin);
    if (!d)
        return flash_error_set(err, FLASH_ERR_PLUGIN, "%s: the plugin entry returned no descriptor (host ABI %d.%d)",
                               origin, FLASH_ABI_MAJOR, FLASH_ABI_MINOR);
    for (size_t i = 0; i < r->n_desc; i++)
        if (r->descs[i] == d) return FLASH_OK; /* the same library reached by two paths */

    const char *pname = d->name ? d->name : "?";
    const char *pv = d->version ? d->version : "?";
    if (d->abi_major != FLASH_ABI_MAJOR)
        return flash_error_set(err, FLASH_ERR_PLUGIN,
                               "%s: plugin '%s' %s was built for flash ABI %u.%u, this flash has ABI %d.%d "
                               "(the major version must match: rebuild the plugin)",
                               origin, pname, pv, d->abi_major, d->abi_minor, FLASH_ABI_MAJOR, FLASH_ABI_MINOR);
    if (d->abi_minor > FLASH_ABI_MINOR)
        return flash_error_set(err, FLASH_ERR_PLUGIN,
                               "%s: plugin '%s' %s was built for flash ABI %u.%u, newer than this flash's ABI %d.%d "
                               "(upgrade flash or rebuild the plugin)",
                               origin, pname, pv, d->abi_major, d->abi_minor, FLASH_ABI_MAJOR, FLASH_ABI_MINOR);
    if (d->n_components > 0 && !d->components)
        return flash_error_set(err, FLASH_ERR_PLUGIN, "%s: plugin '%s' %s lists %zu components but no table", origin,
                               pname, pv, d->n_components);
    for (size_t i = 0; i < d->n_components; i++) {
        flash_status st = check_component(r, d, i, origin, pv, err);
        if (st) return st;
    }

    /* Reserve everything first so a failed allocation adds nothing. */
    if (r->n + d->n_components > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        while (cap < r->n + d->n_components) cap *= 2;
        flash_reg_entry *v = realloc(r->v, cap * sizeof *v);
        if (!v) return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory registering plugin", origin);
        r->v = v;
        r->cap = cap;
    }
    if (r->n_desc == r->cap_desc) {
        size_t cap = r->cap_desc ? r->cap_desc * 2 : 16;
        char **o = realloc(r->origins, cap * sizeof *o);
        if (!o) return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory registering plugin", origin);
        r->origins = o;
        const flash_plugin_desc **ds = realloc(r->descs, cap * sizeof *ds);
        if (!ds) return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory registering plugin", origin);
        r->descs = ds;
        r->cap_desc = cap;
    }
    char *own = strdup(origin);
    if (!own) return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory registering plugin", origin);
    r->origins[r->n_desc] = own;
    r->descs[r->n_desc] = d;
    r->n_desc++;
    for (size_t i = 0; i < d->n_components; i++) r->v[r->n++] = (flash_reg_entry){d->components[i], own};
    return FLASH_OK;
}

flash_status flash_registry_load_file(flash_registry *r, const char *path, flash_error *err)
{
    if (!path) return flash_error_set(err, FLASH_ERR_USAGE, "no plugin path given");
    /* dlopen searches the library path for a bare name; a plugin path is a file. */
    char buf[PATH_MAX];
    const char *open_path = path;
    if (!strchr(path, '/')) {
        if (snprintf(buf, sizeof buf, "./%s", path) >= (int)sizeof buf)
            return flash_error_set(err, FLASH_ERR_PLUGIN, "%s: path too long", path);
        open_path = buf;
    }
    dlerror();
    void *h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        /* dlerror usually repeats the path: keep only the reason. */
        size_t pl = strlen(open_path);
        if (why && strncmp(why, open_path, pl) == 0 && why[pl] == ':' && why[pl + 1] == ' ') why += pl + 2;
        return flash_error_set(err, FLASH_ERR_PLUGIN, "%s: cannot load plugin (host ABI %d.%d): %s", path,
                               FLASH_ABI_MAJOR, FLASH_ABI_MINOR, why ? why : "unknown dlopen error");
    }
    dlerror();
    void *sym = dlsym(h, FLASH_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        dlclose(h);
        return flash_error_set(err, FLASH_ERR_PLUGIN,
                               "%s: not a flash plugin: it exports no '%s' (plugin ABI unknown, host ABI %d.%d; "
                               "declare it with FLASH_PLUGIN(desc))",
                               path, FLASH_PLUGIN_ENTRY_SYMBOL, FLASH_ABI_MAJOR, FLASH_ABI_MINOR);
    }
    /* POSIX guarantees a data pointer from dlsym converts to a function pointer. */
    flash_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const flash_plugin_desc *d = entry();
    flash_status st = flash_registry_add(r, d, path, err);
    if (st) dlclose(h);
    return st;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_so_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

flash_status flash_registry_load_dir(flash_registry *r, const char *dir, flash_error *err)
{
    if (!dir) return flash_error_set(err, FLASH_ERR_USAGE, "no plugin directory given");
    DIR *dp = opendir(dir);
    if (!dp) {
        if (errno == ENOENT || errno == ENOTDIR) return FLASH_OK;
        return flash_error_set(err, FLASH_ERR_IO, "%s: cannot read plugin directory: %s", dir, strerror(errno));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    flash_status st = FLASH_OK;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (!has_so_suffix(e->d_name)) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn) {
                st = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory listing plugins", dir);
                break;
            }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name))) {
            st = flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory listing plugins", dir);
            break;
        }
        n++;
    }
    closedir(dp);
    if (!st && n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && !st; i++) {
        char path[PATH_MAX];
        size_t dl = strlen(dir);
        const char *sep = dl && dir[dl - 1] == '/' ? "" : "/";
        if (snprintf(path, sizeof path, "%s%s%s", dir, sep, names[i]) >= (int)sizeof path) {
            st = flash_error_set(err, FLASH_ERR_PLUGIN, "%s/%s: path too long", dir, names[i]);
            break;
        }
        st = flash_registry_load_file(r, path, err);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

const char *flash_plugin_dir(void)
{
    static char dir[PATH_MAX];
    const char *env = getenv("FLASH_PLUGIN_DIR");
    if (env && env[0]) return env;
    if (dir[0]) return dir;
    /* Where libflash itself lives: the build tree and an install share the
     * layout lib/libflash.so + lib/flash/plugins/. */
    Dl_info info;
    void *self;
    const char *(*fn)(void) = flash_plugin_dir;
    memcpy(&self, &fn, sizeof self);
    if (dladdr(self, &info) && info.dli_fname) {
        /* canonical, so listings show /prefix/lib/... rather than bin/../lib */
        char real[PATH_MAX];
        const char *lib = realpath(info.dli_fname, real) ? real : info.dli_fname;
        const char *slash = strrchr(lib, '/');
        if (slash) {
            int len = (int)(slash - lib);
            if (snprintf(dir, sizeof dir, "%.*s/%s", len, lib, FLASH_PLUGIN_SUBDIR) < (int)sizeof dir) return dir;
        }
    }
    snprintf(dir, sizeof dir, "%s", FLASH_PLUGIN_SUBDIR);
    return dir;
}

/* A FLASH_PLUGIN_PATH entry or a plugin_paths item: a directory or a file. */
static flash_status load_path(flash_registry *r, const char *path, int must_exist, flash_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (!must_exist) return FLASH_OK;
        return flash_error_set(err, FLASH_ERR_CONFIG, "no such plugin file or directory '%s'", path);
    }
    if (S_ISDIR(sb.st_mode)) return flash_registry_load_dir(r, path, err);
    return flash_registry_load_file(r, path, err);
}

flash_status flash_registry_load_default(flash_registry *r, const flash_cfg *root, flash_error *err)
{
    flash_status st = flash_registry_load_dir(r, flash_plugin_dir(), err);
    if (st) return st;

    /* Like PATH: colon-separated, empty and missing entries are skipped. */
    const char *env = getenv("FLASH_PLUGIN_PATH");
    if (env && env[0]) {
        char *copy = strdup(env);
        if (!copy) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory reading FLASH_PLUGIN_PATH");
        char *save = NULL;
        for (char *tok = strtok_r(copy, ":", &save); tok && !st; tok = strtok_r(NULL, ":", &save))
            st = load_path(r, tok, 0, err);
        free(copy);
        if (st) {
            flash_error_prefix(err, "FLASH_PLUGIN_PATH");
            return st;
        }
    }

    const flash_cfg *paths = root ? flash_cfg_get(root, "plugin_paths") : NULL;
    if (!paths || flash_cfg_kind(paths) == FLASH_CFG_NULL) return FLASH_OK;
    if (flash_cfg_kind(paths) != FLASH_CFG_SEQ)
        return flash_cfg_error(paths, err, "expected a list of plugin files or directories");
    for (size_t i = 0; i < flash_cfg_len(paths); i++) {
        const flash_cfg *item = flash_cfg_at(paths, i);
        const char *p = flash_cfg_scalar(item);
        if (!p || !p[0]) return flash_cfg_error(item, err, "expected a plugin file or directory");
        /* Relative to the file the entry was written in (a base config's
         * plugin_paths stay relative to the base). */
        char full[PATH_MAX];
        const char *file = flash_cfg_file(item);
        const char *slash = file ? strrchr(file, '/') : NULL;
        if (p[0] != '/' && slash) {
            int len = (int)(slash - file);
            if (snprintf(full, sizeof full, "%.*s/%s", len, file, p) >= (int)sizeof full)
                return flash_cfg_error(item, err, "path too long");
        } else if (snprintf(full, sizeof full, "%s", p) >= (int)sizeof full) {
            return flash_cfg_error(item, err, "path too long");
        }
        struct stat sb;
        if (stat(full, &sb) != 0)
            return flash_cfg_error(item, err, "no such plugin file or directory '%s'", full);
        st = S_ISDIR(sb.st_mode) ? flash_registry_load_dir(r, full, err) : flash_registry_load_file(r, full, err);
        if (st) {
            char where[512];
            flash_cfg_where(item, where, sizeof where);
            flash_error_prefix(err, "%s: %s", where, flash_cfg_keypath(item));
            return st;
        }
    }
    return FLASH_OK;
}

/* ---- instances ---------------------------------------------------------- */

/* Whether a message already starts with a place: "file:line:col: " as
 * flash_cfg_error writes it, or "--set: " for a command-line override. */
static int has_location(const char *msg)
{
    if (strncmp(msg, "--set", 5) == 0) return 1;
    const char *p = msg;
    while (*p && *p != ' ') p++;
    /* p is at the first space: the token before it must end in ":L:C:" */
    if (p - msg < 5 || p[-1] != ':') return 0;
    const char *q = p - 2;
    int fields = 0;
    while (fields < 2) {
        const char *digits_end = q;
        while (q > msg && *q >= '0' && *q <= '9') q--;
        if (q == digits_end || *q != ':') return 0;
        q--;
        fields++;
    }
    return 1;
}

flash_status flash_instance_create(flash_env *env, flash_kind kind, const flash_cfg *slot, flash_instance *out,
                                   flash_error *err)
{
    if (out) *out = (flash_instance){0};
    if (!out) return flash_error_set(err, FLASH_ERR_USAGE, "flash_instance_create: no output instance");
    const char *kname = flash_kind_name(kind);
    if ((int)kind < 0 || kind >= FLASH_KIND_COUNT)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_instance_create: unknown kind %d", (int)kind);
    if (!slot) return flash_error_set(err, FLASH_ERR_CONFIG, "no %s configured (a map with 'plugin: NAME')", kname);
    if (flash_cfg_kind(slot) != FLASH_CFG_MAP)
        return flash_cfg_error(slot, err, "expected a %s: a map with 'plugin: NAME' and its settings", kname);
    const flash_cfg *pnode = flash_cfg_get(slot, "plugin");
    const flash_registry *r = env ? env->registry : NULL;

    /* Names of this kind, for the suggestion and the list. */
    size_t total = flash_registry_count(r), nk = 0;
    const char **names = calloc(total + 1, sizeof *names);
    if (!names) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    char avail[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < total; i++) {
        const flash_component *c = flash_registry_at(r, i, NULL);
        if (c->kind != kind) continue;
        names[nk++] = c->name;
        int w = snprintf(avail + used, sizeof avail - used, "%s%s", used ? ", " : "", c->name);
        if (w > 0 && (size_t)w < sizeof avail - used) used += (size_t)w;
    }
    if (!nk) snprintf(avail, sizeof avail, "none loaded");

    flash_status st;
    const char *pname = pnode ? flash_cfg_scalar(pnode) : NULL;
    if (!pnode) {
        st = flash_cfg_error(slot, err, "the %s has no 'plugin:' key (available: %s)", kname, avail);
        free(names);
        return st;
    }
    if (!pname || !pname[0]) {
        st = flash_cfg_error(pnode, err, "expected the name of a %s plugin (available: %s)", kname, avail);
        free(names);
        return st;
    }
    const flash_component *comp = flash_registry_find(r, kind, pname);
    if (!comp) {
        const char *near = flash_did_you_mean(pname, names);
        if (near)
            st = flash_cfg_error(pnode, err, "no %s named '%s' (did you mean '%s'?)", kname, pname, near);
        else
            st = flash_cfg_error(pnode, err, "no %s named '%s' (available: %s)", kname, pname, avail);
        free(names);
        return st;
    }
    free(names);

    char what[256];
    snprintf(what, sizeof what, "%s '%s'", kname, comp->name);
    static const char *const no_keys[] = {NULL};
    st = flash_cfg_check_keys(slot, what, comp->keys ? comp->keys : no_keys, err);
    if (st) return st;

    if (err) {
        err->status = FLASH_OK;
        err->msg[0] = '\0';
    }
    void *self = NULL;
    st = comp->create(slot, env, &self, err);
    if (st) {
        char where[512];
        flash_cfg_where(slot, where, sizeof where);
        if (err && !err->msg[0]) {
            flash_cfg_error(slot, err, "%s: create failed (%s)", what, flash_status_name(st));
        } else if (err && !has_location(err->msg)) {
            /* The plugin's message lacks a location: say where the slot is. */
            const char *kp = flash_cfg_keypath(slot);
            if (kp && kp[0])
                flash_error_prefix(err, "%s: %s: %s", where, kp, what);
            else
                flash_error_prefix(err, "%s: %s", where, what);
        }
        if (err) err->status = st;
        return st;
    }
    out->comp = comp;
    out->self = self;
    return FLASH_OK;
}

void flash_instance_destroy(flash_instance *inst)
{
    if (!inst) return;
    if (inst->comp && inst->comp->destroy && inst->self) inst->comp->destroy(inst->self);
    inst->comp = NULL;
    inst->self = NULL;
}
