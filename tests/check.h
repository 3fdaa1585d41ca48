/* What every C test prints and how it exits: one "PASS name", "FAIL name:
 * why" or "SKIP name: why" line per check (tests/run_tests.sh counts them),
 * and check_exit() turns the failures into the exit status. Float outputs
 * are compared with check_err() on an error that the test computes
 * (rel_err() for two arrays), against a tolerance named at the call. */
#ifndef TF_TEST_CHECK_H
#define TF_TEST_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* counts[0] passed, counts[1] failed: one pair per test program, however
 * many of its files include this (a weak definition: the linker keeps one). */
__attribute__((weak)) int check_counts_[2];
static inline int *check_counts(void) { return check_counts_; }

static inline int check_failures(void) { return check_counts()[1]; }

/* PASS name, or FAIL name: why (printf-style). Returns ok. */
static inline int check(int ok, const char *name, const char *why_fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int check(int ok, const char *name, const char *why_fmt, ...) {
    check_counts()[ok ? 0 : 1]++;
    if (ok) {
        printf("PASS %s\n", name);
    } else {
        printf("FAIL %s: ", name);
        va_list ap;
        va_start(ap, why_fmt);
        vprintf(why_fmt, ap);
        va_end(ap);
        printf("\n");
    }
    fflush(stdout); /* before a test forks or dies */
    return ok;
}

/* PASS name (what err) when err <= tol, else FAIL; a NaN error fails. */
static inline int check_err(const char *name, const char *what, double err, double tol) {
    int ok = err <= tol;
    check_counts()[ok ? 0 : 1]++;
    if (ok) printf("PASS %s (%s %.2e)\n", name, what, err);
    else printf("FAIL %s: %s %.2e > %.1e\n", name, what, err, tol);
    fflush(stdout);
    return ok;
}

static inline void check_skip(const char *name, const char *why_fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void check_skip(const char *name, const char *why_fmt, ...) {
    printf("SKIP %s: ", name);
    va_list ap;
    va_start(ap, why_fmt);
    vprintf(why_fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* max_i |got_i - want_i| / max_i |want_i| (the absolute difference when want
 * is all zeros); infinite when either holds a NaN or an infinity, so that a
 * poisoned element the op forgot to write fails. */
static inline double rel_err(const float *got, const float *want, size_t n) {
    double maxdiff = 0.0, maxref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (!isfinite(g) || !isfinite(w)) return INFINITY;
        if (fabs(g - w) > maxdiff) maxdiff = fabs(g - w);
        if (fabs(w) > maxref) maxref = fabs(w);
    }
    return maxref > 0.0 ? maxdiff / maxref : maxdiff;
}

/* |got - want| / |want| for one number (absolute when want is 0). */
static inline double rel_err_scalar(double got, double want) {
    if (!isfinite(got) || !isfinite(want)) return INFINITY;
    double d = fabs(got - want);
    return want != 0.0 ? d / fabs(want) : d;
}

/* A summary line and the exit status: 1 when a check failed. */
static inline int check_exit(const char *program) {
    printf("%s: %d passed, %d failed\n", program, check_counts()[0], check_counts()[1]);
    return check_counts()[1] ? 1 : 0;
}

/* The largest relative error, |num - g| / max(|num| + |g|, 1e-2), of the
 * gradient g of loss(ctx) with respect to x[0..n) against central
 * differences of step h, at about `probes` evenly spaced coordinates (each
 * restored after its two evaluations). */
static inline double check_grad_error(float *x, const float *g, size_t n, size_t probes, float h,
                                      double (*loss)(void *ctx), void *ctx) {
    size_t stride = n > probes ? n / probes : 1;
    double worst = 0.0;
    for (size_t i = 0; i < n; i += stride) {
        float saved = x[i];
        x[i] = saved + h;
        double lp = loss(ctx);
        x[i] = saved - h;
        double lm = loss(ctx);
        x[i] = saved;
        double num = (lp - lm) / (2.0 * h);
        worst = fmax(worst, fabs(num - g[i]) / fmax(fabs(num) + fabs(g[i]), 1e-2));
    }
    return worst;
}

#endif
