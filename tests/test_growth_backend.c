/* Growth (growth.h) on a model that is not in host memory: every operator
 * (rows added, rows removed, blocks added, d_model doubled) on a backend
 * whose memory the host cannot read as floats must give bit for bit what it
 * gives on the CPU, for every arch. The backend is the CPU's table behind
 * scrambled memory: each 32-bit word stored XOR a key, unscrambled only by
 * to_host. Growth that reads or writes parameters directly (memcpy of
 * rows, memset of moments, new rows written in place) gets garbage or
 * leaves it, and growth that refuses non-CPU models fails outright. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common.h"
#include "growth.h"
#include "model.h"
#include "ops.h"
#include "rng.h"

#define SCRAMBLE_KEY 0x5A3C96E1u

static void scramble_words(void *dst, const void *src, size_t bytes) {
    uint32_t w;
    for (size_t i = 0; i + sizeof w <= bytes; i += sizeof w) {
        memcpy(&w, (const char *)src + i, sizeof w);
        w ^= SCRAMBLE_KEY;
        memcpy((char *)dst + i, &w, sizeof w);
    }
}

static void *scrambled_alloc(const Ops *o, size_t bytes) {
    (void)o;
    void *p = calloc(bytes ? bytes : 1, 1);
    if (p) scramble_words(p, p, bytes); /* alloc's memory reads as zeros */
    return p;
}
static void scrambled_free(const Ops *o, void *p) {
    (void)o;
    free(p);
}
static void scrambled_to_device(const Ops *o, void *dst, const void *src, size_t bytes) {
    (void)o;
    scramble_words(dst, src, bytes);
}
static void scrambled_to_host(const Ops *o, void *dst, const void *src, size_t bytes) {
    (void)o;
    scramble_words(dst, src, bytes);
}
static void scrambled_copy(const Ops *o, void *dst, const void *src, size_t bytes) {
    (void)o;
    memmove(dst, src, bytes);
}
static void scrambled_zero(const Ops *o, void *p, size_t bytes) {
    (void)o;
    memset(p, 0, bytes);
    scramble_words(p, p, bytes);
}

static Ops scrambled_ops(void) {
    Ops o = *ops_cpu();
    o.kind = BACKEND_CUDA; /* not host memory, as far as the model can tell */
    o.name = "scrambled";
    o.alloc = scrambled_alloc;
    o.free = scrambled_free;
    o.to_device = scrambled_to_device;
    o.to_host = scrambled_to_host;
    o.copy = scrambled_copy;
    o.zero = scrambled_zero;
    return o;
}

/* The parameter, first moment and second moment blocks of m, as host floats. */
static float *host_state(const Model *m) {
    size_t n = m->n_param_elems, bytes = n * sizeof(float);
    float *h = malloc(3 * bytes);
    m->ops->to_host(m->ops, h, m->param_mem, bytes);
    m->ops->to_host(m->ops, h + n, m->m_mem, bytes);
    m->ops->to_host(m->ops, h + 2 * n, m->v_mem, bytes);
    return h;
}

/* A small "trained" model of the arch on ops: weights and moments away from
 * their init, drawn from seed the same way on every backend. */
static int trained_model(Model *m, int arch, const Ops *ops) {
    ModelConfig cfg = {.arch = arch, .n_layer = 2, .d_model = 16, .n_head = 2, .n_attn = 12, .n_ffn = 20,
                       .block_size = 8, .vocab_size = 11, .rope_frac = 0.5f};
    char err[TF_ERRLEN];
    if (model_create(m, &cfg, NULL, ops, err)) {
        check(0, "model setup", "%s", err);
        return -1;
    }
    size_t n = m->n_param_elems;
    float *h = malloc(n * sizeof(float));
    Rng r;
    rng_seed(&r, 11);
    float **blocks[3] = {&m->param_mem, &m->m_mem, &m->v_mem};
    for (int b = 0; b < 3; b++) {
        for (size_t i = 0; i < n; i++) h[i] = b == 2 ? 0.01f * rng_uniform(&r) : 0.3f * rng_normal(&r);
        ops->to_device(ops, *blocks[b], h, n * sizeof(float));
    }
    free(h);
    for (int i = 0; i < cfg.n_layer * PATT_PER_LAYER; i++) m->tau[i] = 1.0f + 0.25f * (float)i;
    m->step = 40;
    return 0;
}

typedef enum { GROW_ROWS, SHRINK_ROWS, ADD_BLOCKS, DOUBLE_WIDTH } Operator;
static const char *OPERATOR_NAMES[] = {"grow rows", "shrink rows", "add blocks", "double d_model"};

/* Runs the operator on src into dst. Row changes touch the FFN (every arch)
 * and, where they are Pattentions, the attention sites. */
static int apply(Operator op, const Model *src, Model *dst, char *err) {
    int n_patt = src->cfg.n_layer * PATT_PER_LAYER, delta[2 * PATT_PER_LAYER] = {0};
    float *importance[2 * PATT_PER_LAYER] = {0};
    int tokenformer = model_has_tau(&src->cfg), rc;
    for (int p = 0; p < n_patt; p++)
        if (tokenformer || p % PATT_PER_LAYER == PATT_FFN) delta[p] = op == SHRINK_ROWS ? -(1 + p % 3) : 2 + p % 3;
    switch (op) {
    case GROW_ROWS:
    case SHRINK_ROWS: {
        for (int p = 0; p < n_patt; p++) {
            int n = model_patt_rows(src, p / PATT_PER_LAYER, p % PATT_PER_LAYER);
            importance[p] = malloc(sizeof(float) * (size_t)n);
            for (int j = 0; j < n; j++) importance[p][j] = (float)((j * 7 + p) % n);
        }
        GrowSpec g = {.delta = delta, .key_scale = 0.02f, .tau_reset = 1, .seed = 5, .importance = importance};
        rc = model_resize(src, dst, &g, err);
        for (int p = 0; p < n_patt; p++) free(importance[p]);
        return rc;
    }
    case ADD_BLOCKS:
        return growth_add_layers(src, dst, 2, LAYER_INIT_COPY_ZERO_OUT, GROW_AT_INTERLEAVE, 9, err);
    case DOUBLE_WIDTH:
        return growth_double_d_model(src, dst, 0.01f, 3, err);
    }
    return -1;
}

static int same_segments(const Model *a, const Model *b) {
    for (int i = 0; i < a->n_params; i++) {
        const Param *p = &a->params[i], *q = &b->params[i];
        if (p->n_seg != q->n_seg || memcmp(p->seg, q->seg, sizeof(RowSegment) * (size_t)p->n_seg)) return 0;
    }
    return 1;
}

static void compare_operator(int arch, Operator op, const Ops *scrambled) {
    char name[128], err[TF_ERRLEN];
    snprintf(name, sizeof name, "%s %s on a non-host backend matches the CPU", arch_name(arch),
             OPERATOR_NAMES[op]);
    if (op == SHRINK_ROWS && arch != ARCH_TOKENFORMER) return; /* tokenformer only (growth.h) */
    Model src_cpu, src_dev, dst_cpu, dst_dev;
    if (trained_model(&src_cpu, arch, ops_cpu())) return;
    if (trained_model(&src_dev, arch, scrambled)) return model_free(&src_cpu);
    if (apply(op, &src_cpu, &dst_cpu, err)) {
        check(0, name, "on the CPU: %s", err);
    } else {
        if (apply(op, &src_dev, &dst_dev, err)) {
            check(0, name, "%s", err);
        } else {
            float *a = host_state(&dst_cpu), *b = host_state(&dst_dev);
            int n_patt = dst_cpu.cfg.n_layer * PATT_PER_LAYER;
            int same = dst_cpu.n_param_elems == dst_dev.n_param_elems &&
                       !memcmp(a, b, 3 * dst_cpu.n_param_elems * sizeof(float)) &&
                       !memcmp(dst_cpu.tau, dst_dev.tau, sizeof(float) * (size_t)n_patt) &&
                       same_segments(&dst_cpu, &dst_dev);
            check(same, name, "parameters, moments, tau or segments differ");
            free(a);
            free(b);
            model_free(&dst_dev);
        }
        model_free(&dst_cpu);
    }
    model_free(&src_cpu);
    model_free(&src_dev);
}

int main(void) {
    Ops scrambled = scrambled_ops();
    int archs[] = {ARCH_TOKENFORMER, ARCH_TRANSFORMER, ARCH_TRANSFORMERPP};
    for (int a = 0; a < 3; a++)
        for (int op = GROW_ROWS; op <= DOUBLE_WIDTH; op++) compare_operator(archs[a], (Operator)op, &scrambled);
    return check_exit("test_growth_backend");
}
