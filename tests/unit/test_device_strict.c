/* The stand-in device (tests/fake_device/) is strict: the host cannot read
 * or write its memory, as it cannot a GPU's. A host access outside the
 * backend's entries kills the process with SIGSEGV at the access, which is
 * what makes the device tests (test_cuda_parity, test_distill's device
 * case, tests/integration/device_*.sh) catch a host access to device
 * memory instead of passing on the CPU's shared memory. Through the API
 * (flash_tensor_from_host / _to_host, ops) the same data goes in and out.
 *
 * Each case runs the device code in a forked child, so that the child's
 * end (a signal or an exit status) is what is checked.
 */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "flash/flash.h"

#define FAKE_DEVICE FLASH_BINARY_DIR "/tests/tools/libflash_fake_device.so"

typedef enum { HOST_WRITE, HOST_READ, PARAMS_READ, THROUGH_API } device_use;

static flash_ctx *open_device(void) {
    if (setenv("FLASH_CUDA_LIB", FAKE_DEVICE, 1) != 0) _exit(90);
    flash_error err = {0};
    flash_ctx *c = flash_ctx_create_on("cuda", 1 << 20, &err);
    if (!c) {
        fprintf(stderr, "cannot open the stand-in device: %s\n", err.msg);
        _exit(91);
    }
    return c;
}

/* What the child does; exits 0 when it got through. */
static void child(device_use use) {
    flash_ctx *c = open_device();
    const int shape[2] = {4, 8};
    float host[32];
    for (int i = 0; i < 32; i++) host[i] = (float)i;
    flash_tensor *t = flash_tensor_new(c, 2, shape);
    if (!t) _exit(92);
    volatile float sink = 0;
    switch (use) {
    case HOST_WRITE:
        t->data[3] = 1.0f;
        break;
    case HOST_READ:
        sink = t->data[3];
        break;
    case PARAMS_READ: {
        flash_params *p = flash_params_create();
        flash_tensor *w = flash_params_add(p, "w", 2, shape);
        flash_error err = {0};
        if (!w || flash_params_finalize(p, &err) != FLASH_OK ||
            flash_params_to_device(p, "cuda", &err) != FLASH_OK)
            _exit(93);
        sink = w->data[0];
        break;
    }
    case THROUGH_API: {
        flash_error err = {0};
        float back[32];
        /* fresh device memory is garbage (NaN here), as cudaMalloc's is, not zeros */
        if (flash_tensor_to_host(c, t, back, &err) != FLASH_OK || !isnan(back[0])) _exit(94);
        if (flash_tensor_from_host(c, t, host, &err) != FLASH_OK) _exit(95);
        flash_tensor *y = flash_scale(c, flash_add(c, t, flash_tensor_from(c, 2, shape, host)), 0.5f);
        if (!y || !flash_ctx_ok(c) || flash_tensor_to_host(c, y, back, &err) != FLASH_OK) _exit(96);
        for (int i = 0; i < 32; i++)
            if (back[i] != host[i]) _exit(97);
        break;
    }
    }
    (void)sink;
    flash_ctx_destroy(c);
    _exit(0);
}

/* Runs child(use) in a process of its own; returns its wait status and
 * what it wrote to stderr. */
static int run_child(device_use use, char *err_text, size_t err_size) {
    int pipefd[2];
    ck_assert_int_eq(pipe(pipefd), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], STDERR_FILENO);
        child(use);
    }
    close(pipefd[1]);
    size_t got = 0;
    ssize_t n;
    while ((n = read(pipefd[0], err_text + got, err_size - 1 - got)) > 0 && got + (size_t)n < err_size - 1)
        got += (size_t)n;
    if (n > 0) got += (size_t)n;
    err_text[got] = '\0';
    close(pipefd[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void expect_segv(device_use use, const char *what) {
    char err[8192];
    int status = run_child(use, err, sizeof err);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
                  "%s: the child was not killed by SIGSEGV (%s %d): %s", what,
                  WIFSIGNALED(status) ? "signal" : "exit status",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), err);
    ck_assert_msg(strstr(err, "touched device memory") != NULL, "%s: the stand-in did not say why: %s", what, err);
}

START_TEST(test_host_write_faults) { expect_segv(HOST_WRITE, "a host write to an arena tensor"); }
END_TEST

START_TEST(test_host_read_faults) { expect_segv(HOST_READ, "a host read of an arena tensor"); }
END_TEST

START_TEST(test_host_read_of_parameters_faults) { expect_segv(PARAMS_READ, "a host read of moved parameters"); }
END_TEST

START_TEST(test_api_copies_work) {
    char err[8192];
    int status = run_child(THROUGH_API, err, sizeof err);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "through the API: %s %d: %s",
                  WIFSIGNALED(status) ? "signal" : "exit status",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), err);
}
END_TEST

static Suite *device_strict_suite(void) {
    Suite *s = suite_create("device_strict");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_host_write_faults);
    tcase_add_test(tc, test_host_read_faults);
    tcase_add_test(tc, test_host_read_of_parameters_faults);
    tcase_add_test(tc, test_api_copies_work);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(device_strict_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
