/* tokenformer: train, grow and sample character-level TokenFormer models. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: tokenformer <command> [options]\n"
            "\n"
            "commands:\n"
            "  train FILE     train a model on a UTF-8 text file (default data/input.txt)\n"
            "  sample         generate text from a checkpoint\n"
            "  eval FILE      mean loss of a checkpoint on fixed batches of FILE\n"
            "  grow           add (or remove) parameter tokens of a checkpoint\n"
            "  info           show a checkpoint's config, sizes and training state\n"
            "  bench          time training steps of a preset on random tokens\n"
            "\n"
            "'tokenformer <command> --help' describes each command.\n");
}

/* Idle OpenMP threads of libgomp spin (300,000 rounds before they sleep, by
 * default) at every barrier; with anything else on the cores the spinning
 * threads take the time the working ones need. Sleeping at once
 * (OMP_WAIT_POLICY=passive) costs time on an idle machine; a short spin keeps
 * the idle speed and most of passive's speed under load (scripts/bench_spin.sh,
 * docs/BENCHMARKS.md "Shared machines"). libgomp reads its settings when it
 * is loaded, before main: the process runs itself again with the setting in
 * its environment. A policy or spin count the user set is kept. */
static void bound_openmp_spinning(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", "1000", 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT"); /* no exec (no /proc): run on as the runtime was set up */
}

int main(int argc, char **argv) {
    bound_openmp_spinning(argv);
    /* A file-size limit (ulimit -f) then fails the write with EFBIG, which the
     * writers handle like a full disk (message, temporary file removed). */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } COMMANDS[] = {{"train", cmd_train}, {"sample", cmd_sample}, {"info", cmd_info},
                    {"grow", cmd_grow},   {"eval", cmd_eval},
                    {"bench", cmd_bench}};
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    tf_die("unknown command '%s' (try 'tokenformer --help')", cmd);
}
