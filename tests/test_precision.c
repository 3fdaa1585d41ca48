/* The model's precision (model.h): a run setting the model carries, which
 * types its attention tensors where they are allocated, set on the backend
 * through the model and checked at every pass. On the CPU, with a stand-in
 * backend (the CPU's table with a settable precision) for what only CUDA
 * has: bf16 attention tensors. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "model.h"
#include "ops.h"
#include "check.h"

/* ---------------------------------------------------------------- a backend with bf16 */

/* The CPU's table, but honouring every precision as CUDA does (its ops still
 * compute in fp32: the tests below run none under bf16). */
static int g_standin_precision;
static int standin_set_precision(const Ops *ops, int precision) {
    g_standin_precision = precision;
    return precision;
}
static DType standin_attn_dtype(const Ops *ops) { return matmul_precision_attn_dtype(g_standin_precision); }

static const Ops *standin(void) {
    static Ops t;
    t = *ops_cpu();
    t.name = "standin";
    t.set_precision = standin_set_precision;
    t.attn_dtype = standin_attn_dtype;
    g_standin_precision = MATMUL_FP32;
    return &t;
}

static ModelConfig small_config(void) {
    ModelConfig c = preset_find("tiny")->model;
    c.n_layer = 1, c.d_model = 16, c.n_head = 2, c.n_attn = 12, c.n_ffn = 20, c.block_size = 8;
    c.vocab_size = 11, c.dropout = 0.0f;
    return c;
}

static void create_or_die(Model *m, const Ops *ops) {
    char err[TF_ERRLEN];
    ModelConfig c = small_config();
    if (model_create(m, &c, NULL, ops, err)) tf_die("test_precision: %s", err);
    model_init_weights(m, 3);
}

/* ---------------------------------------------------------------- the tests */

static void test_cpu_is_fp32_only(void) {
    Model m;
    char err[TF_ERRLEN] = "";
    create_or_die(&m, ops_cpu());
    check(m.precision == MATMUL_FP32 && m.attn_dtype == DTYPE_F32, "model_starts_fp32", "%s %s",
          matmul_precision_name(m.precision), dtype_name(m.attn_dtype));
    int rc = model_set_precision(&m, MATMUL_BF16, err);
    check(rc == -1 && strstr(err, "cpu backend does not compute in bf16") && m.precision == MATMUL_FP32,
          "cpu_refuses_bf16", "rc=%d '%s'", rc, err);
    rc = model_set_precision(&m, MATMUL_FP32, err);
    check(rc == 0, "cpu_takes_fp32", "%s", err);
    model_free(&m);
}

/* Under bf16 the attention tensors are typed BF16 where they are
 * allocated: the activations and the KV cache take half the bytes. */
static void test_buffers_typed_at_allocation(void) {
    const Ops *o = standin();
    char err[TF_ERRLEN] = "";
    size_t bytes[2];
    DType act[2], cache[2];
    for (int i = 0; i < 2; i++) {
        Model m;
        KVCache kv;
        create_or_die(&m, o);
        if (model_set_precision(&m, i ? MATMUL_BF16 : MATMUL_FP32, err) ||
            model_alloc_activations(&m, 2, 8, err) || model_kv_alloc(&m, &kv, 2, err))
            tf_die("test_precision: %s", err);
        act[i] = m.attn_dtype;
        cache[i] = kv.dtype;
        bytes[i] = (size_t)((char *)kv.v[0] - (char *)kv.k[0]);
        model_kv_free(&m, &kv);
        model_free(&m);
    }
    check(act[0] == DTYPE_F32 && act[1] == DTYPE_BF16, "activations_typed_by_precision", "%s, %s",
          dtype_name(act[0]), dtype_name(act[1]));
    check(cache[0] == DTYPE_F32 && cache[1] == DTYPE_BF16, "kv_cache_typed_by_precision", "%s, %s",
          dtype_name(cache[0]), dtype_name(cache[1]));
    check(bytes[1] * 2 == bytes[0], "bf16_kv_cache_half_the_bytes", "%zu vs %zu", bytes[1], bytes[0]);
}

/* A model made from another (growth) computes at its source's precision. */
static void test_created_like_keeps_precision(void) {
    const Ops *o = standin();
    char err[TF_ERRLEN] = "";
    Model src, dst;
    create_or_die(&src, o);
    if (model_set_precision(&src, MATMUL_BF16, err)) tf_die("test_precision: %s", err);
    ModelConfig c = small_config();
    if (model_create_like(&dst, &src, &c, NULL, err)) tf_die("test_precision: %s", err);
    check(dst.precision == MATMUL_BF16 && dst.attn_dtype == DTYPE_BF16, "created_like_keeps_precision",
          "%s", matmul_precision_name(dst.precision));
    model_free(&dst);
    model_free(&src);
}

/* Once allocated, the activations keep their type: another precision is
 * refused, not half applied. */
static void test_precision_fixed_after_allocation(void) {
    Model m;
    char err[TF_ERRLEN] = "";
    create_or_die(&m, standin());
    if (model_alloc_activations(&m, 2, 8, err)) tf_die("test_precision: %s", err);
    int rc = model_set_precision(&m, MATMUL_BF16, err);
    check(rc == -1 && strstr(err, "after the activations were allocated") && m.attn_dtype == DTYPE_F32,
          "precision_refused_after_allocation", "rc=%d '%s'", rc, err);
    model_free(&m);
}

/* Run fn in a child with stderr captured; its exit status and stderr. */
static int in_child(void (*fn)(void), char *out, size_t len) {
    int fd[2];
    if (pipe(fd)) tf_die("test_precision: pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        fn();
        _exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < len && (r = read(fd[0], out + n, len - 1 - n)) > 0) n += (size_t)r;
    out[n] = '\0';
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The backend switched to bf16 behind the model's back (as another model on
 * the same backend would): the pass stops with an internal error, before
 * any op reads the fp32 buffers as bf16. */
static void forward_after_backend_switch(void) {
    const Ops *o = standin();
    Model m;
    char err[TF_ERRLEN];
    create_or_die(&m, o);
    if (model_alloc_activations(&m, 2, 8, err)) tf_die("%s", err);
    int tok[16] = {0};
    o->set_precision(o, MATMUL_BF16);
    model_forward(&m, tok, tok, 2, 8, 0, 0);
}

static void alloc_after_backend_switch(void) {
    const Ops *o = standin();
    Model m;
    char err[TF_ERRLEN];
    create_or_die(&m, o);
    o->set_precision(o, MATMUL_BF16); /* not through the model: its precision is fp32 */
    if (model_alloc_activations(&m, 2, 8, err)) tf_die("%s", err);
}

static void test_dtype_mismatch_is_an_error(void) {
    char out[2048];
    int rc = in_child(forward_after_backend_switch, out, sizeof out);
    check(rc == 1 && strstr(out, "internal error") && strstr(out, "F32 attention tensors") &&
              strstr(out, "now computes them in BF16"),
          "forward_refuses_other_backend_dtype", "exit %d, stderr '%s'", rc, out);
    rc = in_child(alloc_after_backend_switch, out, sizeof out);
    check(rc == 1 && strstr(out, "internal error") && strstr(out, "model_set_precision"),
          "alloc_refuses_other_backend_dtype", "exit %d, stderr '%s'", rc, out);
}

int main(void) {
    test_cpu_is_fp32_only();
    test_buffers_typed_at_allocation();
    test_created_like_keeps_precision();
    test_precision_fixed_after_allocation();
    test_dtype_mismatch_is_an_error();
    return check_exit("test_precision");
}
