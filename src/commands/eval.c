/* tokenformer eval: mean loss of a checkpoint on fixed, seeded batches. */
#include <stdio.h>

#include "cli.h"
#include "common.h"

int cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tf_die("eval: not implemented yet");
}
