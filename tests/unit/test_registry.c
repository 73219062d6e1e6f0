/* The plugin registry and loader: descriptors built here are refused for
 * each ABI violation with a message naming the file and both versions; a
 * good one is found by kind and name; the built-in plugins load from the
 * build tree; slots are created with located, suggesting errors. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"

static flash_status t_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)cfg;
    (void)env;
    (void)err;
    *self = malloc(1);
    return *self ? FLASH_OK : FLASH_ERR_NOMEM;
}

static void t_destroy(void *self)
{
    free(self);
}

static const char *const t_keys[] = {"weight", NULL};

/* A loss table of the full ABI-1.0 size. */
#define LOSS(var, name) \
    static flash_loss_api var = {.head = {sizeof(flash_loss_api), FLASH_KIND_LOSS, name, "test", t_keys, t_create, t_destroy}}

static flash_plugin_desc one(const flash_component *const *comps, size_t n)
{
    return (flash_plugin_desc){FLASH_ABI_MAJOR, FLASH_ABI_MINOR, "testplug", "0.1", comps, n};
}

static flash_registry *r;
static flash_error err;

static void setup(void)
{
    r = flash_registry_create();
    ck_assert_ptr_nonnull(r);
    memset(&err, 0, sizeof err);
}

static void teardown(void)
{
    flash_registry_destroy(r);
}

#define ck_msg_has(s) ck_assert_msg(strstr(err.msg, (s)) != NULL, "message lacks '%s': %s", (s), err.msg)

START_TEST(test_good_found_by_kind_and_name)
{
    LOSS(a, "t_loss");
    static flash_dataset_api d = {
        .head = {sizeof(flash_dataset_api), FLASH_KIND_DATASET, "t_loss", "same name, other kind", NULL, t_create,
                 t_destroy}};
    const flash_component *comps[] = {&a.head, &d.head};
    flash_plugin_desc desc = one(comps, 2);
    ck_assert_int_eq(flash_registry_add(r, &desc, "good.so", &err), FLASH_OK);
    ck_assert_uint_eq(flash_registry_count(r), 2);
    ck_assert_ptr_eq(flash_registry_find(r, FLASH_KIND_LOSS, "t_loss"), &a.head);
    ck_assert_ptr_eq(flash_registry_find(r, FLASH_KIND_DATASET, "t_loss"), &d.head);
    ck_assert_ptr_null(flash_registry_find(r, FLASH_KIND_SAMPLER, "t_loss"));
    ck_assert_ptr_null(flash_registry_find(r, FLASH_KIND_LOSS, "other"));
    const char *origin = NULL;
    ck_assert_ptr_eq(flash_registry_at(r, 1, &origin), &d.head);
    ck_assert_str_eq(origin, "good.so");
    ck_assert_ptr_null(flash_registry_at(r, 2, &origin));
    /* the same descriptor reached again (two paths to one library) is a no-op */
    ck_assert_int_eq(flash_registry_add(r, &desc, "good-again.so", &err), FLASH_OK);
    ck_assert_uint_eq(flash_registry_count(r), 2);
}
END_TEST

START_TEST(test_abi_major_mismatch)
{
    LOSS(a, "t_loss");
    const flash_component *comps[] = {&a.head};
    flash_plugin_desc desc = one(comps, 1);
    desc.abi_major = 99;
    ck_assert_int_eq(flash_registry_add(r, &desc, "/p/major.so", &err), FLASH_ERR_PLUGIN);
    ck_assert_int_eq(err.status, FLASH_ERR_PLUGIN);
    ck_msg_has("/p/major.so");
    char want[32];
    snprintf(want, sizeof want, "ABI 99.%d", FLASH_ABI_MINOR);
    ck_msg_has(want);
    snprintf(want, sizeof want, "ABI %d.%d", FLASH_ABI_MAJOR, FLASH_ABI_MINOR);
    ck_msg_has(want);
    ck_assert_uint_eq(flash_registry_count(r), 0);
}
END_TEST

START_TEST(test_abi_minor_too_new)
{
    LOSS(a, "t_loss");
    const flash_component *comps[] = {&a.head};
    flash_plugin_desc desc = one(comps, 1);
    desc.abi_minor = FLASH_ABI_MINOR + 1;
    ck_assert_int_eq(flash_registry_add(r, &desc, "minor.so", &err), FLASH_ERR_PLUGIN);
    char want[32];
    snprintf(want, sizeof want, "ABI %d.%d", FLASH_ABI_MAJOR, FLASH_ABI_MINOR + 1);
    ck_msg_has("minor.so");
    ck_msg_has(want);
    snprintf(want, sizeof want, "ABI %d.%d", FLASH_ABI_MAJOR, FLASH_ABI_MINOR);
    ck_msg_has(want);
    ck_assert_uint_eq(flash_registry_count(r), 0);
}
END_TEST

START_TEST(test_older_minor_accepted)
{
    /* A plugin built against an older minor loads: one declaring 1.0 on
     * this host of a later minor. */
    ck_assert_int_ge(FLASH_ABI_MINOR, 1);
    LOSS(a, "t_loss");
    const flash_component *comps[] = {&a.head};
    flash_plugin_desc desc = one(comps, 1);
    desc.abi_minor = 0;
    ck_assert_int_eq(flash_registry_add(r, &desc, "old.so", &err), FLASH_OK);
    ck_assert_ptr_eq(flash_registry_find(r, FLASH_KIND_LOSS, "t_loss"), &a.head);
}
END_TEST

/* ABI 1.1 replaced the strategy table and 1.2 the metric result that
 * strategies and metrics fill: a 1.0 or 1.1 strategy is refused, naming
 * the version it needs, and nothing of its plugin is added; the same
 * strategy built against 1.2 loads. A 1.1 metric is refused too. */
START_TEST(test_old_strategy_refused)
{
    static flash_strategy_api s = {.head = {sizeof(flash_strategy_api), FLASH_KIND_STRATEGY, "t_strategy", "test",
                                            NULL, t_create, t_destroy}};
    LOSS(a, "t_loss");
    const flash_component *comps[] = {&a.head, &s.head};
    flash_plugin_desc desc = one(comps, 2);
    desc.abi_minor = 0;
    ck_assert_int_eq(flash_registry_add(r, &desc, "old_strategy.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("old_strategy.so");
    ck_msg_has("strategy 't_strategy' needs ABI 1.2 or later");
    ck_assert_ptr_null(flash_registry_find(r, FLASH_KIND_LOSS, "t_loss"));
    desc.abi_minor = 1;
    ck_assert_int_eq(flash_registry_add(r, &desc, "old_strategy.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("needs ABI 1.2 or later");
    static flash_metric_api m = {.head = {sizeof(flash_metric_api), FLASH_KIND_METRIC, "t_metric", "test", NULL,
                                          t_create, t_destroy}};
    const flash_component *mc[] = {&m.head};
    flash_plugin_desc md = one(mc, 1);
    md.abi_minor = 1;
    ck_assert_int_eq(flash_registry_add(r, &md, "old_metric.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("metric 't_metric' needs ABI 1.2 or later");
    desc.abi_minor = 2;
    ck_assert_int_eq(flash_registry_add(r, &desc, "new_strategy.so", &err), FLASH_OK);
    ck_assert_ptr_eq(flash_registry_find(r, FLASH_KIND_STRATEGY, "t_strategy"), &s.head);
}
END_TEST

START_TEST(test_equal_minor_accepted)
{
    LOSS(a, "t_loss");
    const flash_component *comps[] = {&a.head};
    flash_plugin_desc desc = one(comps, 1);
    ck_assert_int_eq(flash_registry_add(r, &desc, "same.so", &err), FLASH_OK);
}
END_TEST

START_TEST(test_short_struct)
{
    static flash_loss_api a = {
        .head = {sizeof(flash_component), FLASH_KIND_LOSS, "short", "test", NULL, t_create, t_destroy}};
    const flash_component *comps[] = {&a.head};
    flash_plugin_desc desc = one(comps, 1);
    ck_assert_int_eq(flash_registry_add(r, &desc, "short.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("short.so");
    ck_msg_has("'short'");
    ck_msg_has("short struct");
    ck_msg_has("ABI 1.0");
    ck_assert_uint_eq(flash_registry_count(r), 0);
}
END_TEST

START_TEST(test_duplicate_names_both_files)
{
    LOSS(a, "dup");
    LOSS(b, "dup");
    const flash_component *ca[] = {&a.head}, *cb[] = {&b.head};
    flash_plugin_desc da = one(ca, 1), db = one(cb, 1);
    ck_assert_int_eq(flash_registry_add(r, &da, "/x/first.so", &err), FLASH_OK);
    ck_assert_int_eq(flash_registry_add(r, &db, "/y/second.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("/x/first.so");
    ck_msg_has("/y/second.so");
    ck_msg_has("duplicate loss 'dup'");
    ck_assert_uint_eq(flash_registry_count(r), 1);
    ck_assert_ptr_eq(flash_registry_find(r, FLASH_KIND_LOSS, "dup"), &a.head);
}
END_TEST

START_TEST(test_duplicate_within_one_plugin)
{
    LOSS(a, "dup");
    LOSS(b, "dup");
    const flash_component *c[] = {&a.head, &b.head};
    flash_plugin_desc d = one(c, 2);
    ck_assert_int_eq(flash_registry_add(r, &d, "twice.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("listed twice");
    ck_assert_uint_eq(flash_registry_count(r), 0);
}
END_TEST

START_TEST(test_unknown_kind)
{
    static flash_loss_api a = {.head = {sizeof(flash_loss_api), (flash_kind)(FLASH_KIND_COUNT + 3), "alien", "test",
                                        NULL, t_create, t_destroy}};
    const flash_component *comps[] = {&a.head};
    flash_plugin_desc desc = one(comps, 1);
    ck_assert_int_eq(flash_registry_add(r, &desc, "alien.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("alien.so");
    ck_msg_has("unknown kind");
    ck_assert_uint_eq(flash_registry_count(r), 0);
}
END_TEST

START_TEST(test_malformed_components)
{
    static flash_loss_api noname = {
        .head = {sizeof(flash_loss_api), FLASH_KIND_LOSS, NULL, "test", NULL, t_create, t_destroy}};
    static flash_loss_api nocreate = {
        .head = {sizeof(flash_loss_api), FLASH_KIND_LOSS, "nocreate", "test", NULL, NULL, t_destroy}};
    const flash_component *c1[] = {&noname.head}, *c2[] = {&nocreate.head}, *c3[] = {NULL};
    flash_plugin_desc d1 = one(c1, 1), d2 = one(c2, 1), d3 = one(c3, 1), d4 = one(NULL, 2);
    ck_assert_int_eq(flash_registry_add(r, &d1, "noname.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("has no name");
    ck_assert_int_eq(flash_registry_add(r, &d2, "nocreate.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("no create");
    ck_assert_int_eq(flash_registry_add(r, &d3, "null.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("is NULL");
    ck_assert_int_eq(flash_registry_add(r, &d4, "notable.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("no table");
    ck_assert_int_eq(flash_registry_add(r, NULL, "nodesc.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("nodesc.so");
    ck_msg_has("no descriptor");
    ck_assert_uint_eq(flash_registry_count(r), 0);
}
END_TEST

START_TEST(test_bad_plugin_adds_nothing)
{
    LOSS(a, "fine");
    static flash_loss_api b = {.head = {8, FLASH_KIND_LOSS, "tiny", "test", NULL, t_create, t_destroy}};
    const flash_component *comps[] = {&a.head, &b.head};
    flash_plugin_desc desc = one(comps, 2);
    ck_assert_int_ne(flash_registry_add(r, &desc, "half.so", &err), FLASH_OK);
    ck_assert_uint_eq(flash_registry_count(r), 0);
    ck_assert_ptr_null(flash_registry_find(r, FLASH_KIND_LOSS, "fine"));
}
END_TEST

START_TEST(test_kind_names)
{
    for (int k = 0; k < FLASH_KIND_COUNT; k++) ck_assert_int_eq(flash_kind_parse(flash_kind_name((flash_kind)k)), k);
    ck_assert_str_eq(flash_kind_name(FLASH_KIND_SAMPLER), "sampler");
    ck_assert_str_eq(flash_kind_name(FLASH_KIND_METRIC), "metric");
    ck_assert_int_eq(flash_kind_parse("samplers"), -1);
    ck_assert_int_eq(flash_kind_parse(NULL), -1);
    ck_assert_str_eq(flash_kind_name((flash_kind)99), "unknown");
}
END_TEST

START_TEST(test_load_file_failures)
{
    /* a missing file, a file that is not a shared object, and a shared object
     * without the entry symbol (libflash itself): refused, no crash */
    ck_assert_int_eq(flash_registry_load_file(r, "/nonexistent/x.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("/nonexistent/x.so");
    ck_assert_int_eq(flash_registry_load_file(r, FLASH_SOURCE_DIR "/CMakeLists.txt", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("CMakeLists.txt");
    ck_assert_int_eq(flash_registry_load_file(r, FLASH_BINARY_DIR "/lib/libflash.so", &err), FLASH_ERR_PLUGIN);
    ck_msg_has("flash_plugin_entry");
    ck_msg_has("libflash.so");
    ck_assert_uint_eq(flash_registry_count(r), 0);
    /* a missing directory is not an error */
    ck_assert_int_eq(flash_registry_load_dir(r, "/nonexistent/dir", &err), FLASH_OK);
}
END_TEST

START_TEST(test_builtin_dir_and_default)
{
    /* libflash finds the build tree's plugins next to itself */
    unsetenv("FLASH_PLUGIN_DIR");
    unsetenv("FLASH_PLUGIN_PATH");
    const char *dir = flash_plugin_dir();
    ck_assert_ptr_nonnull(strstr(dir, "lib/flash/plugins"));
    ck_assert_int_eq(flash_registry_load_default(r, NULL, &err), FLASH_OK);
    const char *origin = NULL;
    const flash_component *mse = flash_registry_find(r, FLASH_KIND_LOSS, "mse");
    ck_assert_ptr_nonnull(mse);
    ck_assert_ptr_nonnull(flash_registry_find(r, FLASH_KIND_DATASET, "toy2d"));
    size_t n = flash_registry_count(r);
    for (size_t i = 0; i < n; i++)
        if (flash_registry_at(r, i, &origin) == mse) break;
    ck_assert_ptr_nonnull(strstr(origin, "flash_losses.so"));
    /* loading the same directory again through FLASH_PLUGIN_PATH adds nothing */
    setenv("FLASH_PLUGIN_PATH", dir, 1);
    ck_assert_int_eq(flash_registry_load_default(r, NULL, &err), FLASH_OK);
    ck_assert_uint_eq(flash_registry_count(r), n);
    unsetenv("FLASH_PLUGIN_PATH");
    /* FLASH_PLUGIN_DIR replaces the built-in directory */
    setenv("FLASH_PLUGIN_DIR", "/nonexistent/plugins", 1);
    ck_assert_str_eq(flash_plugin_dir(), "/nonexistent/plugins");
    unsetenv("FLASH_PLUGIN_DIR");
}
END_TEST

/* Creates the slot under `key` of a YAML text with the built-in plugins. */
static flash_status create_from(const char *yaml, const char *key, flash_kind kind, flash_instance *inst)
{
    flash_cfg *root = NULL;
    flash_status st = flash_cfg_parse_string(yaml, "t.yaml", &root, &err);
    ck_assert_msg(st == FLASH_OK, "%s", err.msg);
    ck_assert_int_eq(flash_registry_load_default(r, NULL, &err), FLASH_OK);
    flash_env env = {.size = sizeof env, .registry = r, .root = root};
    st = flash_instance_create(&env, kind, flash_cfg_get(root, key), inst, &err);
    flash_cfg_free(root);
    return st;
}

START_TEST(test_instance_errors)
{
    flash_instance inst;
    ck_assert_int_eq(create_from("loss: {plugin: mes}\n", "loss", FLASH_KIND_LOSS, &inst), FLASH_ERR_CONFIG);
    ck_msg_has("t.yaml:1:");
    ck_msg_has("no loss named 'mes' (did you mean 'mse'?)");
    ck_assert_ptr_null(inst.comp);

    ck_assert_int_eq(create_from("loss:\n  plugin: mse\n  wieght: 2\n", "loss", FLASH_KIND_LOSS, &inst),
                     FLASH_ERR_CONFIG);
    ck_msg_has("t.yaml:3:");
    ck_msg_has("loss 'mse'");
    ck_msg_has("'wieght'");
    ck_msg_has("did you mean 'weight'");

    ck_assert_int_eq(create_from("loss:\n  weight: 2\n", "loss", FLASH_KIND_LOSS, &inst), FLASH_ERR_CONFIG);
    ck_msg_has("t.yaml:2:");
    ck_msg_has("no 'plugin:' key");
    ck_msg_has("mse");

    ck_assert_int_eq(create_from("loss: 3\n", "loss", FLASH_KIND_LOSS, &inst), FLASH_ERR_CONFIG);
    ck_msg_has("t.yaml:1:");

    ck_assert_int_eq(create_from("loss: {plugin: mse, weight: heavy}\n", "loss", FLASH_KIND_LOSS, &inst),
                     FLASH_ERR_CONFIG);
    ck_msg_has("t.yaml:1:");
    ck_msg_has("weight");

    ck_assert_int_eq(create_from("x: 1\n", "loss", FLASH_KIND_LOSS, &inst), FLASH_ERR_CONFIG);
    ck_msg_has("no loss configured");
}
END_TEST

START_TEST(test_instance_good)
{
    flash_instance inst;
    ck_assert_int_eq(create_from("loss: {plugin: mse, weight: 0.5}\n", "loss", FLASH_KIND_LOSS, &inst), FLASH_OK);
    ck_assert_ptr_nonnull(inst.comp);
    ck_assert_str_eq(inst.comp->name, "mse");
    ck_assert_ptr_nonnull(FLASH_API(&inst, flash_loss_api)->compute);
    flash_instance_destroy(&inst);
    ck_assert_ptr_null(inst.self);
    flash_instance_destroy(&inst); /* twice is harmless */
    flash_instance_destroy(NULL);
}
END_TEST

static Suite *registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("descriptors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_good_found_by_kind_and_name);
    tcase_add_test(tc, test_abi_major_mismatch);
    tcase_add_test(tc, test_abi_minor_too_new);
    tcase_add_test(tc, test_equal_minor_accepted);
    tcase_add_test(tc, test_older_minor_accepted);
    tcase_add_test(tc, test_old_strategy_refused);
    tcase_add_test(tc, test_short_struct);
    tcase_add_test(tc, test_duplicate_names_both_files);
    tcase_add_test(tc, test_duplicate_within_one_plugin);
    tcase_add_test(tc, test_unknown_kind);
    tcase_add_test(tc, test_malformed_components);
    tcase_add_test(tc, test_bad_plugin_adds_nothing);
    tcase_add_test(tc, test_kind_names);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("loading");
    tcase_add_checked_fixture(tl, setup, teardown);
    tcase_add_test(tl, test_load_file_failures);
    tcase_add_test(tl, test_builtin_dir_and_default);
    tcase_add_test(tl, test_instance_errors);
    tcase_add_test(tl, test_instance_good);
    suite_add_tcase(s, tl);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(registry_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
