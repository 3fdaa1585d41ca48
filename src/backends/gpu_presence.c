/* Whether this machine has an NVIDIA GPU (include/gpu_presence.h). */
#define _POSIX_C_SOURCE 200809L
#include "gpu_presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int gpu_none_on_host(void) {
    static const char *const TRACES[] = {"/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/proc/driver/nvidia"};
    const char *root = getenv("TF_GPU_DEV_ROOT");
    for (size_t i = 0; i < sizeof TRACES / sizeof TRACES[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s%s", root ? root : "", TRACES[i]);
        if (access(path, F_OK) == 0) return 0;
    }
    return 1;
}
