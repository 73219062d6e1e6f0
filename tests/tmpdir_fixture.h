/* A temporary directory for the suites that write files (checkpoint, io):
 * a checked fixture's setup makes it with tmpdir_create, tmpdir_remove
 * (the teardown) deletes it with everything in it; tmp_path names a file
 * there and write_bytes writes one plainly.
 *
 * Example:
 *   static void setup(void) { tmpdir_create("/tmp", "flash_test_io"); }
 *   tcase_add_checked_fixture(tc, setup, tmpdir_remove);
 */
#ifndef FLASH_TESTS_TMPDIR_FIXTURE_H
#define FLASH_TESTS_TMPDIR_FIXTURE_H

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static char g_dir[256];

/* g_dir := a new directory base/prefix_XXXXXX */
static inline void tmpdir_create(const char *base, const char *prefix)
{
    snprintf(g_dir, sizeof g_dir, "%s/%s_XXXXXX", base, prefix);
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static inline int tmpdir_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void tmpdir_remove(void)
{
    nftw(g_dir, tmpdir_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* g_dir/name in one of 8 rotating buffers, so a test can hold a few. */
static inline const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

/* Plain write (no fsync): the corruption tests write thousands of files. */
static inline void write_bytes(const char *path, const void *buf, size_t n)
{
    /* Unlink first: truncating a file that has data makes ext4 flush it on
     * close (auto_da_alloc), which makes thousands of rewrites slow. */
    remove(path);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

#endif
