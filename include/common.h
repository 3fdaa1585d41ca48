/* Shared helpers: error reporting, checked allocation, timing. */
#ifndef TF_COMMON_H
#define TF_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define TF_ERRLEN 512

/* Print "tokenformer: error: ..." as one line on stderr and exit(1).
 * Used only at command level; library code returns -1 and fills an
 * error buffer so that callers can clean up (temporary files) first. */
void tf_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void tf_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Dies unless path is absent or a regular file: a writer must never replace
 * a device node, a FIFO or a directory with its output. */
void tf_require_writable_target(const char *flag, const char *path);
/* A command's last word on stdout: flushes it and, when a write failed (disk
 * full, closed pipe), says so on stderr and returns a failing status. */
int tf_finish_stdout(int status);
/* printf into a caller's error buffer (size TF_ERRLEN); returns -1 for `return tf_err(...)`. */
int tf_err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocation that names what it failed to allocate instead of crashing. */
void *tf_malloc(size_t bytes, const char *what);
void *tf_calloc(size_t n, size_t size, const char *what);
void *tf_realloc(void *old, size_t bytes, const char *what);

double tf_now_seconds(void);

/* Multiply sizes, returning -1 on overflow (for user-controlled shapes). */
int tf_mul_overflows(size_t a, size_t b, size_t *out);

/* Parse helpers for CLI flags: whole string must be a number in [lo, hi]. */
int tf_parse_int(const char *s, long lo, long hi, long *out);
int tf_parse_float(const char *s, double lo, double hi, double *out);

#endif
