/* Atomic file writes, whole-file reads and mkdir -p.
 *
 * An atomic write goes to a temp file created next to the target (rename is
 * only atomic within one file system), is flushed and fsync'ed, renamed over
 * the target, and then the directory is fsync'ed so the rename itself is
 * durable. A crash at any point leaves either the old file or the new one.
 * Only a regular file or a missing path is replaced: what flash does not
 * own (a symlink, a FIFO, a device) is refused, or with --force written
 * through (include/flash/io.h).
 */
#include "flash/flash.h"
#include "runtime/io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Directory part of path ("." when there is none). */
static void dir_of(const char *path, char *dir, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, size, ".");
    } else if (slash == path) {
        snprintf(dir, size, "/");
    } else {
        snprintf(dir, size, "%.*s", (int)(slash - path), path);
    }
}

/* The rename is only durable once the directory entry is on disk. Some file
 * systems refuse fsync on a directory (EINVAL): that is not an error. */
static flash_status fsync_dir(const char *path, flash_error *err)
{
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return flash_error_set(err, FLASH_ERR_IO, "%s: cannot open directory to sync: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL && e != EROFS)
        return flash_error_set(err, FLASH_ERR_IO, "%s: fsync of directory failed: %s", dir, strerror(e));
    return FLASH_OK;
}

static bool g_force;

void flash_io_set_force(bool force)
{
    g_force = force;
}

static const char *file_kind(mode_t m)
{
    return S_ISLNK(m) ? "a symlink" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : S_ISCHR(m) ? "a character device"
           : S_ISBLK(m) ? "a block device" : S_ISDIR(m) ? "a directory" : S_ISREG(m) ? "a file" : "not a regular file";
}

flash_status flash_output_check(const char *path, bool *through, flash_error *err)
{
    *through = false;
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT) return FLASH_OK;
        return flash_error_set(err, FLASH_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (S_ISREG(sb.st_mode)) return FLASH_OK;
    if (S_ISDIR(sb.st_mode))
        return flash_error_set(err, FLASH_ERR_USAGE, "%s is a directory, not an output file", path);
    if (!g_force)
        return flash_error_set(err, FLASH_ERR_USAGE,
                               "%s is %s: flash does not replace what it does not own (--force writes through it)",
                               path, file_kind(sb.st_mode));
    /* forced: through a symlink to what it names, and that must not be a
     * directory either */
    struct stat tb;
    if (stat(path, &tb) == 0 && S_ISDIR(tb.st_mode))
        return flash_error_set(err, FLASH_ERR_USAGE, "%s leads to a directory, not an output file", path);
    *through = true;
    return FLASH_OK;
}

flash_status flash_atomic_open(flash_atomic_file *af, const char *path, flash_error *err)
{
    memset(af, 0, sizeof *af);
    if (!path || !*path)
        return flash_error_set(err, FLASH_ERR_IO, "atomic write: empty path");
    bool through = false;
    flash_status cst = flash_output_check(path, &through, err);
    if (cst) return cst;
    if (through) {
        /* written through (forced): the path stays what it is */
        if (strlen(path) + 1 > sizeof af->path) return flash_error_set(err, FLASH_ERR_IO, "%s: path too long", path);
        memcpy(af->path, path, strlen(path) + 1);
        if (!(af->f = fopen(path, "wb")))
            return flash_error_set(err, FLASH_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
        return FLASH_OK;
    }
    size_t len = strlen(path);
    /* ".tmp.XXXXXX" is 11 characters */
    if (len + 12 > sizeof af->tmp)
        return flash_error_set(err, FLASH_ERR_IO, "%s: path too long", path);
    memcpy(af->path, path, len + 1);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.XXXXXX", path);
    int fd = mkostemp(af->tmp, O_CLOEXEC);
    if (fd < 0) {
        flash_status st =
            flash_error_set(err, FLASH_ERR_IO, "%s: cannot create temp file: %s", path, strerror(errno));
        af->tmp[0] = '\0';
        return st;
    }
    /* mkstemp makes the file 0600; outputs (checkpoints, images) should be
     * readable like any other file. A fixed 0644 rather than the umask:
     * reading the umask means setting it, which races with other threads. A
     * failure here is not fatal: only the mode differs. */
    (void)fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        flash_status st = flash_error_set(err, FLASH_ERR_IO, "%s: fdopen failed: %s", af->tmp, strerror(errno));
        close(fd);
        unlink(af->tmp);
        af->tmp[0] = '\0';
        return st;
    }
    return FLASH_OK;
}

void flash_atomic_abort(flash_atomic_file *af)
{
    if (!af)
        return;
    if (af->f) {
        fclose(af->f);
        af->f = NULL;
    }
    if (af->tmp[0]) {
        unlink(af->tmp);
        af->tmp[0] = '\0';
    }
}

flash_status flash_atomic_commit(flash_atomic_file *af, flash_error *err)
{
    if (af->f && !af->tmp[0]) {
        /* written through: flush; a FIFO or device may refuse fsync */
        FILE *f = af->f;
        af->f = NULL;
        int bad = ferror(f) || fflush(f) != 0;
        if (fclose(f) != 0) bad = 1;
        if (bad) return flash_error_set(err, FLASH_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
        return FLASH_OK;
    }
    if (!af->f || !af->tmp[0])
        return flash_error_set(err, FLASH_ERR_IO, "%s: atomic commit without an open file", af->path);
    FILE *f = af->f;
    af->f = NULL;
    int bad = ferror(f), e = 0;
    if (!bad && fflush(f) != 0) {
        bad = 1;
        e = errno;
    }
    if (!bad && fsync(fileno(f)) != 0) {
        bad = 1;
        e = errno;
    }
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        flash_status st = flash_error_set(err, FLASH_ERR_IO, "%s: write failed: %s", af->path,
                                          e ? strerror(e) : "stream error");
        unlink(af->tmp);
        af->tmp[0] = '\0';
        return st;
    }
    if (rename(af->tmp, af->path) != 0) {
        flash_status st =
            flash_error_set(err, FLASH_ERR_IO, "%s: cannot rename temp file into place: %s", af->path, strerror(errno));
        unlink(af->tmp);
        af->tmp[0] = '\0';
        return st;
    }
    af->tmp[0] = '\0';
    return fsync_dir(af->path, err);
}

flash_status flash_write_file_atomic(const char *path, const void *buf, size_t n, flash_error *err)
{
    flash_atomic_file af;
    flash_status st = flash_atomic_open(&af, path, err);
    if (st)
        return st;
    if (n > 0 && fwrite(buf, 1, n, af.f) != n) {
        st = flash_error_set(err, FLASH_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        flash_atomic_abort(&af);
        return st;
    }
    return flash_atomic_commit(&af, err);
}

int flash_open_input(const char *path, flash_error *err)
{
    /* O_NONBLOCK: opening a FIFO with no writer would wait forever */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        flash_error_set(err, FLASH_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        const mode_t m = sb.st_mode;
        flash_error_set(err, FLASH_ERR_INPUT, "%s is %s, not a file flash reads", path,
                        S_ISDIR(m)                  ? "a directory"
                        : S_ISFIFO(m)               ? "a FIFO"
                        : S_ISCHR(m) || S_ISBLK(m)  ? "a device"
                        : S_ISSOCK(m)               ? "a socket"
                                                    : "not a regular file");
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

FILE *flash_fopen_input(const char *path, flash_error *err)
{
    int fd = flash_open_input(path, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        flash_error_set(err, FLASH_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

flash_status flash_read_file(const char *path, char **buf, size_t *n, flash_error *err)
{
    *buf = NULL;
    if (n)
        *n = 0;
    FILE *f = flash_fopen_input(path, err);
    if (!f) return err ? err->status : FLASH_ERR_INPUT;
    /* Read in growing chunks rather than trusting the size from fstat, so
     * pipes and files that change while being read are handled too. */
    size_t cap = 0, len = 0;
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0)
        cap = (size_t)sb.st_size + 1;
    if (cap < 4096)
        cap = 4096;
    char *data = malloc(cap);
    if (!data) {
        fclose(f);
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap);
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > SIZE_MAX / 2) {
                free(data);
                fclose(f);
                return flash_error_set(err, FLASH_ERR_NOMEM, "%s: file too large", path);
            }
            char *grown = realloc(data, cap * 2);
            if (!grown) {
                free(data);
                fclose(f);
                return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap * 2);
            }
            data = grown;
            cap *= 2;
        }
        size_t got = fread(data + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        int e = errno;
        free(data);
        fclose(f);
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: read failed: %s", path, strerror(e));
    }
    fclose(f);
    data[len] = '\0';
    *buf = data;
    if (n)
        *n = len;
    return FLASH_OK;
}

static flash_status mkdir_one(const char *dir, const char *full, flash_error *err)
{
    if (mkdir(dir, 0777) == 0)
        return FLASH_OK;
    int e = errno;
    struct stat sb;
    if (e == EEXIST && stat(dir, &sb) == 0) {
        if (S_ISDIR(sb.st_mode))
            return FLASH_OK;
        return flash_error_set(err, FLASH_ERR_USAGE, "%s: cannot create directory: '%s' exists and is not a directory",
                               full, dir);
    }
    return flash_error_set(err, FLASH_ERR_IO, "%s: cannot create directory '%s': %s", full, dir, strerror(e));
}

flash_status flash_mkdirs(const char *path, flash_error *err)
{
    if (!path || !*path)
        return flash_error_set(err, FLASH_ERR_IO, "mkdir: empty path");
    /* the folder itself must be flash's to fill: not a symlink (unless
     * forced: then what it names, if a directory), not a file */
    struct stat lb;
    if (lstat(path, &lb) == 0 && !S_ISDIR(lb.st_mode)) {
        struct stat tb;
        const bool to_dir = stat(path, &tb) == 0 && S_ISDIR(tb.st_mode);
        if (!S_ISLNK(lb.st_mode) || !to_dir)
            return flash_error_set(err, FLASH_ERR_USAGE, "%s is %s, not a folder flash can write into", path,
                                   file_kind(lb.st_mode));
        if (!g_force)
            return flash_error_set(err, FLASH_ERR_USAGE,
                                   "%s is a symlink: flash does not write into folders it does not own (--force "
                                   "writes through it)",
                                   path);
        return FLASH_OK;
    }
    size_t len = strlen(path);
    char *p = malloc(len + 1);
    if (!p)
        return flash_error_set(err, FLASH_ERR_NOMEM, "%s: out of memory", path);
    memcpy(p, path, len + 1);
    while (len > 1 && p[len - 1] == '/')
        p[--len] = '\0';
    flash_status st = FLASH_OK;
    for (char *s = p + 1; *s && !st; s++) {
        if (*s != '/' || s[-1] == '/')
            continue;
        *s = '\0';
        st = mkdir_one(p, path, err);
        *s = '/';
    }
    if (!st)
        st = mkdir_one(p, path, err);
    free(p);
    return st;
}
