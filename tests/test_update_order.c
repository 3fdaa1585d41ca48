/* model_update on a grown model (rows in several segments, each with its own
 * bias correction) makes one adamw_ranges call whose ranges walk the
 * parameter block in memory order, every range starting where the last one
 * ended. The CUDA backend keeps a bf16 copy of the weights that adamw
 * extends only over adjacent ranges (ops.h): ranges in any other order leave
 * most weights without a copy, and a grown model then trains slower than the
 * same size from scratch; one call per range costs a launch each. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common.h"
#include "growth.h"
#include "model.h"
#include "ops.h"

#define MAX_CALLS 4096
static struct {
    const float *p[MAX_CALLS];
    size_t n[MAX_CALLS];
    int t[MAX_CALLS];
    int count, batches; /* ranges, adamw_ranges calls */
} calls;

static void recording_adamw_ranges(const Ops *o, const AdamwRange *r, int n, float b1, float b2, float eps,
                                   float grad_scale) {
    (void)o;
    for (int k = 0; k < n; k++, calls.count++)
        if (calls.count < MAX_CALLS) {
            calls.p[calls.count] = r[k].p;
            calls.n[calls.count] = r[k].n;
            calls.t[calls.count] = r[k].t;
        }
    calls.batches++;
    ops_cpu()->adamw_ranges(ops_cpu(), r, n, b1, b2, eps, grad_scale);
}

/* The step counts the recorded ranges use, as a bit set (bit t for step t < 32). */
static unsigned steps_used(void) {
    unsigned set = 0;
    for (int i = 0; i < calls.count && i < MAX_CALLS; i++) set |= calls.t[i] < 32 ? 1u << calls.t[i] : 1u << 31;
    return set;
}

/* "" when the recorded calls walk [m->param_mem, + n_param_elems) in order,
 * else what breaks the walk. */
static const char *walk_error(const Model *m, char *buf, size_t len) {
    const float *next = m->param_mem;
    if (calls.count > MAX_CALLS) return "too many calls to record";
    for (int i = 0; i < calls.count; i++) {
        if (calls.p[i] != next) {
            snprintf(buf, len, "range %d of %d starts at element %td, the last ended at %td", i, calls.count,
                     calls.p[i] - m->param_mem, next - m->param_mem);
            return buf;
        }
        next += calls.n[i];
    }
    if (next != m->param_mem + m->n_param_elems) {
        snprintf(buf, len, "the ranges end at element %td of %zu", next - m->param_mem, m->n_param_elems);
        return buf;
    }
    return "";
}

static ModelConfig small_config(int arch) {
    return (ModelConfig){.arch = arch, .n_layer = 2, .d_model = 16, .n_head = 2, .n_attn = 12, .n_ffn = 20,
                         .block_size = 8, .vocab_size = 11, .rope_frac = 0.5f};
}

/* One model_update with adamw_ranges recorded (calls); "" when the ranges walk
 * the parameter block in order, else what breaks the walk. */
static const char *recorded_update(Model *m, char *why, size_t len) {
    Ops recording = *ops_cpu();
    recording.adamw_ranges = recording_adamw_ranges;
    m->ops = &recording;
    TrainConfig tc = preset_find("tiny")->train;
    calls.count = calls.batches = 0;
    model_update(m, 1e-3f, &tc, 1.0f);
    m->ops = ops_cpu();
    return walk_error(m, why, len);
}

/* The arch's small model grown twice (rows born at steps 0, 3 and 7): FFN rows
 * on every arch, the attention rows too on tokenformer. */
static int grown_model(Model *out, int arch, char *err) {
    ModelConfig cfg = small_config(arch);
    Model a, b;
    if (model_create(&a, &cfg, NULL, ops_cpu(), err)) return -1;
    model_init_weights(&a, 1);
    int n_patt = cfg.n_layer * PATT_PER_LAYER, delta[2 * PATT_PER_LAYER] = {0};
    for (int p = 0; p < n_patt; p++)
        if (model_has_tau(&cfg) || p % PATT_PER_LAYER == PATT_FFN) delta[p] = 2 + p % 3;
    GrowSpec g = {.delta = delta, .key_scale = 0.02f, .tau_reset = 1, .seed = 5};
    a.step = 3;
    int rc = model_resize(&a, &b, &g, err);
    model_free(&a);
    if (rc) return -1;
    b.step = 7;
    rc = model_resize(&b, out, &g, err);
    model_free(&b);
    return rc;
}

/* With the rows born before the latest grow frozen, every gradient 1: the
 * norm counts the trainable rows only (model_grad_norm zeroes the others). */
static void check_frozen_norm(Model *m, int arch) {
    char name[128];
    snprintf(name, sizeof name, "%s_grown_grad_norm_counts_trainable_rows_only", arch_name(arch));
    model_freeze_old(m);
    for (size_t i = 0; i < m->n_grad_elems; i++) m->grad_mem[i] = 1.0f;
    size_t trainable = 0;
    for (int i = 0; i < m->n_params; i++) {
        const Param *p = &m->params[i];
        size_t rows = p->t.ndim == 2 ? (size_t)p->t.shape[0] : 1;
        for (int s = 0; s < p->n_seg; s++) {
            size_t end = s + 1 < p->n_seg ? (size_t)p->seg[s + 1].row_start : rows;
            if (!p->seg[s].frozen) trainable += (end - (size_t)p->seg[s].row_start) * model_param_row_elems(p);
        }
    }
    float norm = model_grad_norm(m), want = sqrtf((float)trainable);
    check(trainable > 0 && trainable < m->n_grad_elems && fabsf(norm - want) <= 1e-5f * want, name,
          "norm %g, sqrt(%zu trainable of %zu) = %g", norm, trainable, m->n_grad_elems, want);
}

static void check_update_order(int arch) {
    char name[128], err[TF_ERRLEN], why[160];
    Model m;
    snprintf(name, sizeof name, "%s_grown_update_walks_memory_in_order", arch_name(arch));
    if (grown_model(&m, arch, err)) {
        check(0, name, "%s", err);
        return;
    }
    const char *e = recorded_update(&m, why, sizeof why);
    check(!e[0], name, "%s", e);
    snprintf(name, sizeof name, "%s_grown_update_one_call_steps_8_5_1", arch_name(arch));
    /* model.step 8 after the update: rows born at 0, 3 and 7 take steps 8, 5 and 1 */
    unsigned want = 1u << 8 | 1u << 5 | 1u << 1;
    check(calls.batches == 1 && steps_used() == want, name, "%d adamw_ranges calls, step set 0x%x (want 0x%x)",
          calls.batches, steps_used(), want);
    check_frozen_norm(&m, arch);
    model_free(&m);
}

/* A model never grown: one call of two ranges (decayed, then not) over the whole block. */
static void check_uniform_update(int arch) {
    char name[128], err[TF_ERRLEN], why[160];
    ModelConfig cfg = small_config(arch);
    Model m;
    snprintf(name, sizeof name, "%s_uniform_update_one_call_two_ranges", arch_name(arch));
    if (model_create(&m, &cfg, NULL, ops_cpu(), err)) {
        check(0, name, "%s", err);
        return;
    }
    model_init_weights(&m, 1);
    const char *e = recorded_update(&m, why, sizeof why);
    check(!e[0] && calls.batches == 1 && calls.count == 2 && steps_used() == 1u << 1, name,
          "%s; %d calls of %d ranges, step set 0x%x", e, calls.batches, calls.count, steps_used());
    model_free(&m);
}

int main(void) {
    int archs[3] = {ARCH_TOKENFORMER, ARCH_TRANSFORMER, ARCH_TRANSFORMERPP};
    for (int i = 0; i < 3; i++) check_update_order(archs[i]);
    for (int i = 0; i < 3; i++) check_uniform_update(archs[i]);
    return check_exit("test_update_order");
}
