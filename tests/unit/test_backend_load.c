/* The device backend loader (core/tensor/backend_load.c) checks the table a
 * backend returns: its ABI major must be the host's and its size at least
 * the major's first layout; a newer minor loads. The stand-in device
 * (tests/fake_device/) returns a table of another version when
 * FLASH_FAKE_DEVICE_TABLE says so.
 *
 * The loader keeps its result for the life of the process, so every case
 * runs in its own process: Check's fork mode (the default) forks one per
 * test from a parent that never loads a backend.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"
#include "tensor/backend.h"

/* Loads the stand-in as the "cuda" device, its table made as `variant`
 * says (NULL: as built). Returns the context, or NULL with err filled. */
static flash_ctx *open_fake(const char *variant, flash_error *err) {
    ck_assert_int_eq(setenv("FLASH_CUDA_LIB", FLASH_FAKE_DEVICE, 1), 0);
    if (variant)
        ck_assert_int_eq(setenv("FLASH_FAKE_DEVICE_TABLE", variant, 1), 0);
    else
        unsetenv("FLASH_FAKE_DEVICE_TABLE");
    return flash_ctx_create_on("cuda", 1 << 16, err);
}

/* A context on the loaded device computes: the table was read whole. */
static void check_usable(flash_ctx *c) {
    const int shape[1] = {3};
    const float v[3] = {1, 2, 3};
    flash_tensor *x = flash_tensor_from(c, 1, shape, v);
    flash_tensor *y = flash_scale(c, x, 2.0f);
    ck_assert_msg(y && flash_ctx_ok(c), "%s", flash_ctx_error(c));
    float out[3];
    flash_error err = {0};
    ck_assert_msg(flash_tensor_to_host(c, y, out, &err) == FLASH_OK, "%s", err.msg);
    ck_assert(out[0] == 2 && out[1] == 4 && out[2] == 6);
}

static void check_msg_has(const char *msg, const char *part) {
    ck_assert_msg(strstr(msg, part) != NULL, "message lacks '%s': %s", part, msg);
}

START_TEST(test_current_table_loads) {
    flash_error err = {0};
    flash_ctx *c = open_fake(NULL, &err);
    ck_assert_msg(c != NULL, "%s", err.msg);
    check_usable(c);
    flash_ctx_destroy(c);
}
END_TEST

START_TEST(test_newer_minor_loads) {
    flash_error err = {0};
    flash_ctx *c = open_fake("newer_minor", &err);
    ck_assert_msg(c != NULL, "a newer minor with appended fields must load: %s", err.msg);
    check_usable(c);
    flash_ctx_destroy(c);
}
END_TEST

START_TEST(test_other_major_refused) {
    flash_error err = {0};
    ck_assert_ptr_null(open_fake("major", &err));
    ck_assert_int_ne(err.status, FLASH_OK);
    char theirs[32], ours[32];
    snprintf(theirs, sizeof theirs, "backend ABI %d.%d", FLASH_BACKEND_ABI_MAJOR + 1, FLASH_BACKEND_ABI_MINOR);
    snprintf(ours, sizeof ours, "backend ABI %d.%d", FLASH_BACKEND_ABI_MAJOR, FLASH_BACKEND_ABI_MINOR);
    check_msg_has(err.msg, FLASH_FAKE_DEVICE);
    check_msg_has(err.msg, theirs);
    check_msg_has(err.msg, ours);
    ck_assert(!flash_device_available("cuda"));
}
END_TEST

START_TEST(test_short_table_refused) {
    flash_error err = {0};
    ck_assert_ptr_null(open_fake("short", &err));
    char version[32], need[48];
    snprintf(version, sizeof version, "backend ABI %d.%d", FLASH_BACKEND_ABI_MAJOR, FLASH_BACKEND_ABI_MINOR);
    snprintf(need, sizeof need, "needs at least %zu", (size_t)FLASH_BACKEND_MIN_SIZE);
    check_msg_has(err.msg, FLASH_FAKE_DEVICE);
    check_msg_has(err.msg, version);
    check_msg_has(err.msg, need);
}
END_TEST

static Suite *backend_load_suite(void) {
    Suite *s = suite_create("backend_load");
    TCase *tc = tcase_create("abi");
    tcase_add_test(tc, test_current_table_loads);
    tcase_add_test(tc, test_newer_minor_loads);
    tcase_add_test(tc, test_other_major_refused);
    tcase_add_test(tc, test_short_table_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(backend_load_suite());
    /* one process per case: the loader's result is per process */
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
