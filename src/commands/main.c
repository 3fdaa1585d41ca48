/* tokenformer: train, grow and sample character-level TokenFormer models. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

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

int main(int argc, char **argv) {
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
