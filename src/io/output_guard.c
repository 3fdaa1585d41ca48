/* Output locks and overwrite checks (include/output_guard.h). */
#define _POSIX_C_SOURCE 200809L
#include "output_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common.h"
#include "safetensors.h"

#define ST_SUFFIX ".safetensors"
#define BEST_SUFFIX ".best.safetensors"

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

void output_set_lock_path(const char *ckpt, char *lock, size_t len) {
    const char *base = base_name(ckpt);
    int dir_len = (int)(base - ckpt);
    if (!strcmp(base, "latest" ST_SUFFIX) || !strcmp(base, "best" ST_SUFFIX))
        snprintf(lock, len, "%.*s.tokenformer.lock", dir_len, ckpt);
    else if (ends_with(base, BEST_SUFFIX))
        snprintf(lock, len, "%.*s.lock", (int)(strlen(ckpt) - strlen(BEST_SUFFIX)), ckpt);
    else if (ends_with(base, ST_SUFFIX))
        snprintf(lock, len, "%.*s.lock", (int)(strlen(ckpt) - strlen(ST_SUFFIX)), ckpt);
    else
        snprintf(lock, len, "%s.lock", ckpt);
}

/* The pid a lock file records, for the message ("unknown" if none). */
static void read_holder(int fd, char *holder, size_t len) {
    ssize_t n = pread(fd, holder, len - 1, 0);
    holder[n > 0 ? n : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    if (!*holder) snprintf(holder, len, "unknown");
}

static void record_holder(int fd, const char *lock) {
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        tf_warn("cannot record this process's pid in %s: %s", lock, strerror(errno));
}

/* flock fd or die; the fd then stays open (and locked) until exit. */
static void lock_or_die(int fd, const char *ckpt, const char *lock, const char *flag) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        record_holder(fd, lock);
        return;
    }
    int e = errno;
    if (e != EWOULDBLOCK) tf_die("%s: cannot lock '%s': %s", flag, lock, strerror(e));
    char holder[32];
    read_holder(fd, holder, sizeof holder);
    tf_die("%s: %s is in use by another process (pid %s holds %s, the lock of its output set); "
           "give another path or wait for it", flag, ckpt, holder, lock);
}

void output_set_lock(const char *ckpt, const char *flag) {
    char lock[4200];
    output_set_lock_path(ckpt, lock, sizeof lock);
    tf_require_writable_target(flag, lock);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) tf_die("%s: cannot create the lock file '%s': %s", flag, lock, strerror(errno));
    lock_or_die(fd, ckpt, lock, flag);
}

void output_set_lock_if_present(const char *ckpt, const char *flag) {
    char lock[4200];
    output_set_lock_path(ckpt, lock, sizeof lock);
    int fd = open(lock, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT) return;
    if (fd < 0) tf_die("%s: cannot open the lock file '%s': %s", flag, lock, strerror(errno));
    lock_or_die(fd, ckpt, lock, flag);
}

int output_is_best_name(const char *path) {
    const char *base = base_name(path);
    return !strcmp(base, "best" ST_SUFFIX) || ends_with(base, BEST_SUFFIX);
}

int output_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int output_is_checkpoint(const char *path) {
    char format[64];
    return st_peek_meta(path, "format", format, sizeof format) == 0 && !strcmp(format, CHECKPOINT_FORMAT);
}
