/* One table of op cases (tests/op_cases.c) run in three modes:
 *   MODE_GRAD     on the CPU: each backward against central finite
 *                 differences of its forward (tests/test_ops.c);
 *   MODE_BACKEND  a backend at a matmul precision against the CPU on the
 *                 same inputs (tests/test_cuda_ops.c, `test_ops --backend`);
 *   MODE_TIME     time per case on one backend (`test_ops --time`).
 *
 * A case names an op kind (OpKind: the Ops entries it exercises, the
 * buffers it needs, its forward and backward through a given Ops table) and
 * the shapes and switches of one run (OpCase.a, read by the kind). The
 * harness allocates the declared buffers on each side, fills them, runs the
 * kind's directions and compares (MODE_BACKEND), differentiates
 * (MODE_GRAD) or times (MODE_TIME). Properties that are no forward/backward
 * comparison (a dropout rate, a recorded decode step) are a kind's `extra`
 * or a `custom` case. Adding an op: a kind with a case in each mode, or an
 * OP_EXEMPT line (tests/op_cases.c) saying why not; test_ops fails until
 * every Ops entry has one or the other. */
#ifndef TF_TEST_OP_CASES_H
#define TF_TEST_OP_CASES_H

#include <stddef.h>

#include "ops.h"
#include "rng.h"

typedef enum { MODE_GRAD = 1, MODE_BACKEND = 2, MODE_TIME = 4 } OpMode;

/* The reference (CPU) and the backend under test; MODE_GRAD runs on
 * SIDE_REF alone, MODE_TIME on SIDE_TGT alone. */
enum { SIDE_REF = 0, SIDE_TGT = 1, SIDES = 2 };

#define OP_MAX_BUFS 24
#define OP_TOL_FP32 2e-5 /* fp32 against fp32 (different summation orders) */
#define OP_TOL_BF16 2e-2 /* bf16 operands (8 significant bits), fp32 sums */

/* How the harness fills a buffer before a case runs. */
typedef enum {
    FILL_RANDOM, /* uniform in +-scale, away from 0 (MODE_GRAD: normal, std scale), plus offset */
    FILL_POISON, /* an output the op must overwrite: NaN on the target, 0 on the CPU */
    FILL_ZERO,
    FILL_INTS    /* ints: the values the declaration gives (ints) */
} FillKind;

typedef struct {
    const char *name;  /* check names end in it */
    size_t n;          /* elements */
    size_t n_side[SIDES]; /* elements per side where backends ask for different sizes */
    int fill;          /* FillKind */
    float scale, offset;
    int positive;      /* FILL_RANDOM: absolute values (before the offset) */
    int attn;          /* an attention tensor: bf16 on the target under bf16 (ops.h) */
    int compare;       /* MODE_BACKEND: 1 after forward, 2 after backward, 0 never */
    double tol;        /* MODE_BACKEND tolerance; 0: the case's */
    int loss_with;     /* MODE_GRAD: the loss sums dot(this, buffer loss_with); -1 none */
    int grad_of;       /* MODE_GRAD: the gradient of that buffer (zeroed first); -1 none */
    int *ints;         /* FILL_INTS values (n), freed by the harness */
} BufSpec;

typedef struct OpCase OpCase;
typedef struct OpKind OpKind;
typedef struct OpHarness OpHarness;

/* One case while it runs: its buffers on each side. */
typedef struct {
    const OpCase *c;
    OpHarness *h;
    int mode;
    BufSpec spec[OP_MAX_BUFS];
    int nb;
    void *mem[SIDES][OP_MAX_BUFS]; /* backend memory of each side */
    int half[OP_MAX_BUFS];         /* the target side holds bf16 */
    float scalar[SIDES];           /* what forward returned, for ops returning a float */
    int at[OP_MAX_BUFS];           /* the kind's named buffer slots: index or -1 */
    float host[8];                 /* the kind's host numbers (Pattention's tau) */
} CaseRun;

/* A run of case c in a mode, no buffers yet, every slot -1. */
CaseRun op_run_new(OpHarness *h, const OpCase *c, int mode);

struct OpKind {
    const char *name;    /* check names start with it */
    const char *entries; /* the Ops entries it exercises, space-separated */
    /* "G3_N37_..." from the case's switches: check names carry it */
    void (*label)(const OpCase *c, char *buf, size_t len);
    void (*declare)(CaseRun *r); /* add the buffers (op_buf) */
    void (*forward)(const Ops *o, CaseRun *r, int side);
    void (*backward)(const Ops *o, CaseRun *r, int side); /* NULL: forward only */
    /* Properties beyond the comparisons, after both directions (NULL: none). */
    void (*extra)(CaseRun *r);
    /* Ops returning a float: the check-name suffix of that value, which
     * MODE_BACKEND compares and MODE_GRAD takes as the loss; NULL: none. */
    const char *scalar;
    /* Instead of all the above: a case that runs itself (memory, recordings). */
    void (*custom)(OpHarness *h, const OpCase *c);
};

struct OpCase {
    const OpKind *kind;
    int modes;    /* the OpMode bits it runs in */
    int prec;     /* MODE_BACKEND: the target's MatmulPrecision */
    int a[12];    /* shapes and switches, as the kind reads them */
    float f[3];   /* numbers a kind reads (alpha, beta; a dropout p; an input scale) */
    double tol;   /* MODE_GRAD: relative error of the gradients; MODE_BACKEND: 0 = by precision */
    int probes;   /* MODE_GRAD: coordinates probed per gradient */
    int large;    /* realistic sizes: skipped under TF_TEST_QUICK */
};

struct OpHarness {
    int mode;
    const Ops *side[SIDES]; /* SIDE_REF: the CPU; SIDE_TGT: the backend under test */
    uint64_t seed;          /* of the run (TF_TEST_SEED); each case seeds rng from it */
    Rng rng;
    int quick;              /* skip the large cases (sanitizer runs) */
    int reps;               /* MODE_TIME repetitions */
    const char *only;       /* run only kinds whose name starts with it (NULL: all) */
};

extern const OpCase OP_CASES[];
extern const int OP_N_CASES;

/* The command line of tests/test_ops.c and tests/test_cuda_ops.c: runs the
 * cases of `mode` on `backend` (NULL: cpu) unless flags say otherwise
 * (--help lists them); returns the exit status. */
int op_tests_main(int argc, char **argv, const char *program, int mode, const char *backend);

/* Runs every case of h->mode; failures are counted by check.h. */
void op_cases_run(OpHarness *h);

/* Every Ops entry has a MODE_GRAD case and a MODE_BACKEND case, or an
 * exemption with its reason: one PASS/FAIL line per entry. `drop` names a
 * kind whose cases are left out (to show that the check fails), or NULL. */
void op_coverage_check(const char *drop);

/* ---- for the kinds (tests/op_cases.c); tests/op_harness.c has them ----
 * Declaring buffers (each returns the buffer's index): */
int op_buf(CaseRun *r, BufSpec spec);
/* an input, random in +-scale */
int op_in(CaseRun *r, const char *name, size_t n, float scale, int attn);
/* an output compared after direction `compare` (1 forward, 2 backward; 0 never) */
int op_out(CaseRun *r, const char *name, size_t n, int attn, int compare);
/* the upstream gradient of output `of` (random; the MODE_GRAD loss pairs them) */
int op_dout(CaseRun *r, const char *name, int of, int attn);
/* the gradient of input `of` (-1: of nothing the harness differentiates),
 * compared after backward; fill FILL_RANDOM (what it accumulates onto; 0
 * in MODE_GRAD) or FILL_POISON (overwritten) */
int op_grad(CaseRun *r, const char *name, size_t n, int of, int attn, int fill);
/* state a backend lays out its own way, sized per side, zero */
int op_state(CaseRun *r, const char *name, size_t n_ref, size_t n_tgt);
/* n ints, whose values the kind writes to r->spec[i].ints */
int op_ints(CaseRun *r, const char *name, size_t n);

/* Running: */
const Ops *op_ops(const CaseRun *r, int side); /* NULL: the mode has no such side */
float *op_f(CaseRun *r, int side, int i);      /* buffer i in the side's memory; NULL for -1 */
int *op_i(CaseRun *r, int side, int i);
/* Buffer i's values on a side, as host floats (from bf16 where half): free() them. */
float *op_values(CaseRun *r, int side, int i);
void op_refill(CaseRun *r, int i); /* new random values, on both sides */
float op_rand(OpHarness *h, float scale);
void *op_xmalloc(size_t bytes); /* zero-filled; exits when out of memory */

/* Checking (MODE_BACKEND): the target's buffer i against the reference's. */
double op_err(CaseRun *r, int i);
int op_compare(CaseRun *r, int i, double tol); /* a PASS/FAIL line named after the case */
void op_case_name(const OpCase *c, char *buf, size_t len);
double op_case_tol(const OpCase *c);

/* For custom cases: allocate and fill the declared buffers, and free them. */
void op_alloc(CaseRun *r);
void op_free(CaseRun *r);

#endif
