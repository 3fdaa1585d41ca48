#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Messages echo names and values read from files: control bytes (an ESC
 * sequence, a newline) are written as \xHH so that a message stays one
 * plain line and cannot drive the terminal. */
static void put_message(const char *prefix, const char *fmt, va_list ap) {
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fputs(prefix, stderr);
    for (const unsigned char *c = (const unsigned char *)msg; *c; c++) {
        if (*c < 0x20 || *c == 0x7f) fprintf(stderr, "\\x%02X", *c);
        else fputc(*c, stderr);
    }
    fputc('\n', stderr);
}

void tf_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    put_message("tokenformer: error: ", fmt, ap);
    va_end(ap);
    exit(1);
}

void tf_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    put_message("tokenformer: warning: ", fmt, ap);
    va_end(ap);
}

void tf_require_writable_target(const char *flag, const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        tf_die("%s: '%s' exists and is not a regular file (%s); give a new path or a regular file",
               flag, path, S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" :
               S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : "a special file");
}

int tf_finish_stdout(int status) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return status;
    int e = errno;
    fprintf(stderr, "tokenformer: error: writing to standard output failed: %s\n", e ? strerror(e) : "I/O error");
    return status ? status : 1;
}

int tf_err(char *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, TF_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void *tf_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) tf_die("out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *tf_calloc(size_t n, size_t size, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) tf_die("out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

void *tf_realloc(void *old, size_t bytes, const char *what) {
    void *p = realloc(old, bytes ? bytes : 1);
    if (!p) tf_die("out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

double tf_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int tf_mul_overflows(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

int tf_parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int tf_parse_float(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}
