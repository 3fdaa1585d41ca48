/* tokenformer grow: add or remove Pattention parameter tokens (SPEC section 5). */
#include <stdio.h>

#include "cli.h"
#include "common.h"

int cmd_grow(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tf_die("grow: not implemented yet");
}
