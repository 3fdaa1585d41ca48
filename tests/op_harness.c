/* The harness of tests/op_cases.h: buffers on each side, the three modes
 * and the coverage check. The cases themselves are in tests/op_cases.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "op_cases.h"

void *op_xmalloc(size_t bytes) {
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) {
        fprintf(stderr, "op tests: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* fp32 <-> bf16 bits on the host, rounding to nearest even (NaN stays NaN). */
static uint16_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if (isnan(x)) return 0x7fc0;
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float bf16_value(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* MODE_GRAD draws normal values (as the finite-difference checks always
 * have); the comparisons draw uniform ones away from 0 (non-zero data). */
float op_rand(OpHarness *h, float scale) {
    if (h->mode == MODE_GRAD) return scale * rng_normal(&h->rng);
    float u;
    do u = 2.0f * rng_uniform(&h->rng) - 1.0f;
    while (fabsf(u) < 1e-3f);
    return u * scale;
}

CaseRun op_run_new(OpHarness *h, const OpCase *c, int mode) {
    CaseRun r = {.c = c, .h = h, .mode = mode};
    for (int i = 0; i < OP_MAX_BUFS; i++) r.at[i] = -1;
    return r;
}

int op_buf(CaseRun *r, BufSpec s) {
    if (r->nb == OP_MAX_BUFS) {
        fprintf(stderr, "op tests: more than %d buffers in a case\n", OP_MAX_BUFS);
        exit(1);
    }
    r->spec[r->nb] = s;
    return r->nb++;
}

int op_in(CaseRun *r, const char *name, size_t n, float scale, int attn) {
    return op_buf(r, (BufSpec){.name = name, .n = n, .fill = FILL_RANDOM, .scale = scale,
                               .attn = attn, .loss_with = -1, .grad_of = -1});
}

int op_out(CaseRun *r, const char *name, size_t n, int attn, int compare) {
    return op_buf(r, (BufSpec){.name = name, .n = n, .fill = FILL_POISON, .attn = attn,
                               .compare = compare, .loss_with = -1, .grad_of = -1});
}

int op_dout(CaseRun *r, const char *name, int of, int attn) {
    int i = op_in(r, name, r->spec[of].n, 1.0f, attn);
    r->spec[of].loss_with = i;
    return i;
}

int op_grad(CaseRun *r, const char *name, size_t n, int of, int attn, int fill) {
    int i = op_buf(r, (BufSpec){.name = name, .n = n, .fill = fill, .scale = 1.0f, .attn = attn,
                                .compare = 2, .loss_with = -1, .grad_of = of});
    if (fill == FILL_RANDOM && r->mode != MODE_BACKEND) r->spec[i].fill = FILL_ZERO;
    return i;
}

int op_state(CaseRun *r, const char *name, size_t n_ref, size_t n_tgt) {
    return op_buf(r, (BufSpec){.name = name, .n = n_ref, .n_side = {n_ref, n_tgt},
                               .fill = FILL_ZERO, .loss_with = -1, .grad_of = -1});
}

int op_ints(CaseRun *r, const char *name, size_t n) {
    int *v = op_xmalloc(n * sizeof(int));
    return op_buf(r, (BufSpec){.name = name, .n = n, .fill = FILL_INTS, .ints = v,
                               .loss_with = -1, .grad_of = -1});
}

const Ops *op_ops(const CaseRun *r, int side) { return r->h->side[side]; }

static size_t side_elems(const CaseRun *r, int side, int i) {
    const BufSpec *s = &r->spec[i];
    return s->n_side[side] ? s->n_side[side] : s->n;
}

static size_t elem_bytes(const CaseRun *r, int side, int i) {
    return side == SIDE_TGT && r->half[i] ? 2 : 4;
}

float *op_f(CaseRun *r, int side, int i) { return i < 0 ? NULL : r->mem[side][i]; }
int *op_i(CaseRun *r, int side, int i) { return i < 0 ? NULL : r->mem[side][i]; }

float *op_values(CaseRun *r, int side, int i) {
    const Ops *o = op_ops(r, side);
    size_t n = side_elems(r, side, i);
    float *h = op_xmalloc(n * sizeof(float));
    if (elem_bytes(r, side, i) == 4) {
        o->to_host(o, h, r->mem[side][i], n * sizeof(float));
        return h;
    }
    uint16_t *bits = op_xmalloc(n * 2);
    o->to_host(o, bits, r->mem[side][i], n * 2);
    for (size_t e = 0; e < n; e++) h[e] = bf16_value(bits[e]);
    free(bits);
    return h;
}

/* Copies host values to buffer i of a side, as bf16 where it is half. */
static void upload(CaseRun *r, int side, int i, const float *h) {
    const Ops *o = op_ops(r, side);
    size_t n = side_elems(r, side, i);
    if (elem_bytes(r, side, i) == 4) {
        o->to_device(o, r->mem[side][i], h, n * sizeof(float));
        return;
    }
    uint16_t *bits = op_xmalloc(n * 2);
    for (size_t e = 0; e < n; e++) bits[e] = bf16_bits(h[e]);
    o->to_device(o, r->mem[side][i], bits, n * 2);
    free(bits);
}

/* Random values for buffer i; where the target holds bf16 they are rounded
 * to bf16 first, so that both sides see the same input. */
static float *random_values(CaseRun *r, int i) {
    const BufSpec *s = &r->spec[i];
    if (s->n_side[SIDE_REF] != s->n_side[SIDE_TGT]) {
        fprintf(stderr, "op tests: %s: random values need one size on both sides\n", s->name);
        exit(1);
    }
    float *h = op_xmalloc(s->n * sizeof(float));
    for (size_t e = 0; e < s->n; e++) {
        h[e] = op_rand(r->h, s->scale);
        if (s->positive) h[e] = fabsf(h[e]);
        h[e] += s->offset;
        if (r->half[i]) h[e] = bf16_value(bf16_bits(h[e]));
    }
    return h;
}

void op_refill(CaseRun *r, int i) {
    float *h = random_values(r, i);
    for (int side = 0; side < SIDES; side++)
        if (r->mem[side][i]) upload(r, side, i, h);
    free(h);
}

static void fill(CaseRun *r, int i) {
    const BufSpec *s = &r->spec[i];
    for (int side = 0; side < SIDES; side++) {
        if (!r->mem[side][i]) continue;
        const Ops *o = op_ops(r, side);
        if (s->fill == FILL_INTS) o->to_device(o, r->mem[side][i], s->ints, s->n * sizeof(int));
        if (s->fill == FILL_POISON && side == SIDE_TGT && r->mode == MODE_BACKEND) {
            size_t n = side_elems(r, side, i);
            float *nan = op_xmalloc(n * sizeof(float));
            for (size_t e = 0; e < n; e++) nan[e] = NAN;
            upload(r, side, i, nan);
            free(nan);
        }
    }
    if (s->fill == FILL_RANDOM) op_refill(r, i);
}

void op_alloc(CaseRun *r) {
    for (int i = 0; i < r->nb; i++) {
        const Ops *t = op_ops(r, SIDE_TGT);
        r->half[i] = r->spec[i].attn && t && r->mode != MODE_GRAD && t->attn_dtype(t) == DTYPE_BF16;
        for (int side = 0; side < SIDES; side++) {
            const Ops *o = op_ops(r, side);
            if (!o) continue;
            size_t bytes = (side_elems(r, side, i) + 1) * elem_bytes(r, side, i);
            r->mem[side][i] = o->alloc(o, bytes);
            if (!r->mem[side][i]) {
                fprintf(stderr, "op tests: %s alloc of %zu bytes failed\n", o->name, bytes);
                exit(1);
            }
        }
        fill(r, i);
    }
}

void op_free(CaseRun *r) {
    for (int i = 0; i < r->nb; i++) {
        for (int side = 0; side < SIDES; side++)
            if (r->mem[side][i]) op_ops(r, side)->free(op_ops(r, side), r->mem[side][i]);
        free(r->spec[i].ints);
    }
    r->nb = 0;
}

/* "<kind>_<label>" */
void op_case_name(const OpCase *c, char *buf, size_t len) {
    char label[128] = "";
    if (c->kind->label) c->kind->label(c, label, sizeof label);
    snprintf(buf, len, "%s%s%s", c->kind->name, label[0] ? "_" : "", label);
}

double op_case_tol(const OpCase *c) {
    if (c->tol > 0) return c->tol;
    return c->prec == MATMUL_FP32 ? OP_TOL_FP32 : OP_TOL_BF16;
}

/* The target's buffer i against the reference's (infinite when they differ in size). */
double op_err(CaseRun *r, int i) {
    if (side_elems(r, SIDE_TGT, i) != side_elems(r, SIDE_REF, i)) return INFINITY;
    float *got = op_values(r, SIDE_TGT, i), *want = op_values(r, SIDE_REF, i);
    double e = rel_err(got, want, side_elems(r, SIDE_REF, i));
    free(got);
    free(want);
    return e;
}

int op_compare(CaseRun *r, int i, double tol) {
    char name[256];
    op_case_name(r->c, name, sizeof name);
    size_t len = strlen(name);
    snprintf(name + len, sizeof name - len, "_%s", r->spec[i].name);
    return check_err(name, "rel err", op_err(r, i), tol);
}

static void compare_phase(CaseRun *r, int phase) {
    for (int i = 0; i < r->nb; i++)
        if (r->spec[i].compare == phase)
            op_compare(r, i, r->spec[i].tol > 0 ? r->spec[i].tol : op_case_tol(r->c));
    if (phase == 1 && r->c->kind->scalar) {
        char name[256];
        op_case_name(r->c, name, sizeof name);
        size_t len = strlen(name);
        snprintf(name + len, sizeof name - len, "_%s", r->c->kind->scalar);
        check_err(name, "rel err", rel_err_scalar(r->scalar[SIDE_TGT], r->scalar[SIDE_REF]),
                  op_case_tol(r->c));
    }
}

static void run_sides(CaseRun *r, void (*dir)(const Ops *, CaseRun *, int)) {
    for (int side = 0; side < SIDES; side++)
        if (op_ops(r, side)) dir(op_ops(r, side), r, side);
}

static void run_backend(OpHarness *h, const OpCase *c) {
    const Ops *t = h->side[SIDE_TGT];
    t->set_precision(t, c->prec); /* before the buffers: it sets their types */
    CaseRun r = op_run_new(h, c, MODE_BACKEND);
    c->kind->declare(&r);
    op_alloc(&r);
    run_sides(&r, c->kind->forward);
    compare_phase(&r, 1);
    if (c->kind->backward) {
        run_sides(&r, c->kind->backward);
        compare_phase(&r, 2);
    }
    if (c->kind->extra) c->kind->extra(&r);
    t->set_precision(t, MATMUL_FP32);
    op_free(&r);
}

/* ---------------------------------------------------------------- MODE_GRAD */

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* The loss whose gradient backward computes: what forward returns, or the
 * sum of dot(output, its upstream gradient). */
static double case_loss(CaseRun *r) {
    r->c->kind->forward(op_ops(r, SIDE_REF), r, SIDE_REF);
    if (r->c->kind->scalar) return r->scalar[SIDE_REF];
    double l = 0;
    for (int i = 0; i < r->nb; i++)
        if (r->spec[i].loss_with >= 0)
            l += dot(op_f(r, SIDE_REF, i), op_f(r, SIDE_REF, r->spec[i].loss_with), r->spec[i].n);
    return l;
}

/* Central differences at up to `probes` coordinates of x against the
 * analytic gradient g; the worst relative error must stay under tol. */
static double case_loss_of(void *r) { return case_loss(r); }

static void check_grad(CaseRun *r, const char *name, float *x, const float *g, size_t n) {
    size_t probes = r->c->probes ? (size_t)r->c->probes : 60;
    check_err(name, "max rel err", check_grad_error(x, g, n, probes, 1e-2f, case_loss_of, r), r->c->tol);
}

static void run_grad(OpHarness *h, const OpCase *c) {
    CaseRun r = op_run_new(h, c, MODE_GRAD);
    c->kind->declare(&r);
    op_alloc(&r);
    case_loss(&r);
    for (int i = 0; i < r.nb; i++)
        if (r.spec[i].grad_of >= 0) memset(op_f(&r, SIDE_REF, i), 0, r.spec[i].n * sizeof(float));
    if (c->kind->backward) c->kind->backward(op_ops(&r, SIDE_REF), &r, SIDE_REF);
    char base[200], name[256];
    op_case_name(c, base, sizeof base);
    for (int i = 0; i < r.nb; i++) {
        int of = r.spec[i].grad_of;
        if (of < 0) continue;
        float *g = op_values(&r, SIDE_REF, i); /* forward may reuse nothing of it, but keep a copy */
        snprintf(name, sizeof name, "gradcheck %s_%s", base, r.spec[i].name);
        check_grad(&r, name, op_f(&r, SIDE_REF, of), g, r.spec[of].n);
        free(g);
    }
    case_loss(&r); /* outputs of the unperturbed inputs again, for extra */
    if (c->kind->extra) c->kind->extra(&r);
    op_free(&r);
}

/* ---------------------------------------------------------------- MODE_TIME */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Microseconds of the fastest of `reps` calls of dir (after one untimed
 * call): the least disturbed by other processes on a shared machine. */
static double time_direction(CaseRun *r, void (*dir)(const Ops *, CaseRun *, int), int reps) {
    const Ops *o = op_ops(r, SIDE_TGT);
    dir(o, r, SIDE_TGT);
    o->synchronize(o);
    double best = INFINITY;
    for (int k = 0; k < reps; k++) {
        double t0 = now_s();
        dir(o, r, SIDE_TGT);
        o->synchronize(o);
        best = fmin(best, now_s() - t0);
    }
    return 1e6 * best;
}

static void fwd_then_bwd(const Ops *o, CaseRun *r, int side) {
    r->c->kind->forward(o, r, side);
    r->c->kind->backward(o, r, side);
}

static void run_time(OpHarness *h, const OpCase *c) {
    const Ops *t = h->side[SIDE_TGT];
    t->set_precision(t, c->prec);
    CaseRun r = op_run_new(h, c, MODE_TIME);
    c->kind->declare(&r);
    op_alloc(&r);
    double fwd = time_direction(&r, c->kind->forward, h->reps);
    /* backward consumes what forward saved (ops.h): time both, subtract */
    double both = c->kind->backward ? time_direction(&r, fwd_then_bwd, h->reps) : fwd;
    char name[256];
    op_case_name(c, name, sizeof name);
    printf("%-72s %-5s %12.1f %12.1f\n", name, matmul_precision_name(c->prec), fwd,
           c->kind->backward ? both - fwd : 0.0);
    t->set_precision(t, MATMUL_FP32);
    op_free(&r);
}

/* ---------------------------------------------------------------- running */

static int selected(const OpHarness *h, const OpCase *c) {
    if (!(c->modes & (h->mode == MODE_TIME ? MODE_BACKEND : h->mode))) return 0;
    if (h->mode == MODE_TIME && c->kind->custom) return 0;
    if (c->large && h->quick) return 0;
    return !h->only || strncmp(c->kind->name, h->only, strlen(h->only)) == 0;
}

/* The CPU backend computes in fp32 only: against itself, the other
 * precisions would compare nothing. */
static int precision_runs(const OpHarness *h, const OpCase *c) {
    return h->mode == MODE_GRAD || c->prec == MATMUL_FP32 || !ops_is_cpu(h->side[SIDE_TGT]);
}

/* Each case draws from its own generator, seeded by the run's seed and the
 * case's name: a case sees the same inputs run alone (--only) or with the
 * table, whatever cases are added before it. */
static void seed_case(OpHarness *h, const OpCase *c) {
    char name[256];
    op_case_name(c, name, sizeof name);
    uint64_t x = h->seed ^ 0x9e3779b97f4a7c15ULL;
    for (const char *p = name; *p; p++) x = (x ^ (unsigned char)*p) * 0x100000001b3ULL; /* FNV-1a */
    rng_seed(&h->rng, x);
}

void op_cases_run(OpHarness *h) {
    int skipped_prec = 0;
    if (h->mode == MODE_TIME)
        printf("%-72s %-5s %12s %12s\n", "case", "prec", "forward_us", "backward_us");
    for (int i = 0; i < OP_N_CASES; i++) {
        const OpCase *c = &OP_CASES[i];
        if (!selected(h, c)) continue;
        if (!precision_runs(h, c)) {
            skipped_prec++;
            continue;
        }
        seed_case(h, c);
        if (c->kind->custom) c->kind->custom(h, c);
        else if (h->mode == MODE_GRAD) run_grad(h, c);
        else if (h->mode == MODE_BACKEND) run_backend(h, c);
        else run_time(h, c);
    }
    if (skipped_prec)
        check_skip("reduced_precision_cases", "%d cases: the %s backend computes in fp32 only",
                   skipped_prec, h->side[SIDE_TGT]->name);
}

/* ---------------------------------------------------------------- the programs */

static const Ops *backend_named(const char *program, const char *name) {
    char why[256] = "";
    const Ops *o = strcmp(name, "cpu") == 0 ? ops_cpu() : NULL;
    if (strcmp(name, "cuda") == 0) o = ops_cuda(why, sizeof why);
    else if (!o) snprintf(why, sizeof why, "unknown backend '%s' (cpu or cuda)", name);
    if (!o) check_skip(program, "%s", why[0] ? why : "no usable GPU");
    return o;
}

static void usage(const char *program) {
    fprintf(stderr,
            "usage: %s [--backend cpu|cuda] [--time] [--reps N] [--only KIND] [--drop KIND]\n"
            "  (none)        every op's backward against finite differences on the CPU,\n"
            "                then the coverage check\n"
            "  --backend B   every case of backend B against the CPU (B = cpu: the harness itself)\n"
            "  --time        microseconds per case on --backend (default cpu), not a test\n"
            "  --only KIND   the cases of the kinds whose name starts with KIND\n"
            "  --drop KIND   the coverage check as if KIND had no cases (it must fail)\n"
            "environment: TF_TEST_SEED (the comparisons' seed), TF_TEST_QUICK=1 (no large cases)\n",
            program);
}

int op_tests_main(int argc, char **argv, const char *program, int mode, const char *backend) {
    const char *drop = NULL, *seed_env = getenv("TF_TEST_SEED"), *quick = getenv("TF_TEST_QUICK");
    OpHarness h = {.mode = mode, .reps = 20};
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--time")) h.mode = MODE_TIME;
        else if (!strcmp(argv[i], "--backend") && next) backend = argv[++i], h.mode = h.mode == MODE_TIME ? MODE_TIME : MODE_BACKEND;
        else if (!strcmp(argv[i], "--reps") && next && atoi(next) > 0) h.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && next) h.only = argv[++i];
        else if (!strcmp(argv[i], "--drop") && next) drop = argv[++i];
        else {
            usage(program);
            return 2;
        }
    }
    h.quick = quick && *quick && strcmp(quick, "0") != 0;
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : h.mode == MODE_GRAD ? 42 : 20241031ULL;
    h.seed = seed;
    h.side[SIDE_REF] = h.mode == MODE_TIME ? NULL : ops_cpu();
    if (h.mode != MODE_GRAD) {
        h.side[SIDE_TGT] = backend_named(program, backend ? backend : "cpu");
        if (!h.side[SIDE_TGT]) return 0;
        printf("%s: %s on %s (seed %llu)\n", program,
               h.mode == MODE_TIME ? "timing" : "comparing against the cpu", h.side[SIDE_TGT]->name,
               (unsigned long long)seed);
    }
    op_cases_run(&h);
    if (h.mode == MODE_GRAD) op_coverage_check(drop);
    if (h.side[SIDE_TGT]) h.side[SIDE_TGT]->synchronize(h.side[SIDE_TGT]);
    return h.mode == MODE_TIME ? 0 : check_exit(program);
}
