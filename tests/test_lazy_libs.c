/* The loader of the GPU libraries (src/backends/cuda/cuda_libs.c), without a GPU:
 * cuBLAS/cuBLASLt open and every entry point resolves; NCCL too when it is
 * installed; a library that cannot be found gives one line naming the files
 * looked for. A CPU-only build prints one SKIP line. */
#include <stdio.h>
#include <string.h>

#include "check.h"

#ifndef TF_CUDA
int main(void) {
    check_skip("test_lazy_libs", "built without CUDA (nvcc not found or CUDA=0)");
    return 0;
}
#else
#include "cuda_libs.h"

static void cublas_loads(void) {
    char why[512] = "";
    int rc = cuda_libs_load(CUDA_LIBS_CUBLAS, why, sizeof why);
    check(rc == 0, "lazy_libs_cublas_loads", "%s", why);
    check(cuda_libs_error()[0] == '\0', "lazy_libs_no_error_after_load", "%s", cuda_libs_error());
    check(cuda_libs_load(CUDA_LIBS_CUBLAS, why, sizeof why) == rc, "lazy_libs_load_once",
          "a second load answered differently");
}

static void nccl_loads_when_installed(void) {
    char why[512] = "";
    if (cuda_libs_load(CUDA_LIBS_NCCL, why, sizeof why) == 0) {
        check(1, "lazy_libs_nccl_loads", "-");
        return;
    }
    if (strstr(why, "cannot load NCCL (looked for libnccl.so.")) {
        check_skip("lazy_libs_nccl_loads", "%s", why);
        return;
    }
    check(0, "lazy_libs_nccl_loads", "%s", why);
}

static void missing_library_names_files(void) {
    const char *names[] = {"libtf-no-such-lib.so.7", "libtf-no-such-lib.so"};
    char why[512] = "";
    void *h = cuda_libs_open_first("NoSuchLib", names, 2, why, sizeof why);
    int ok = !h && strstr(why, "cannot load NoSuchLib") &&
             strstr(why, "libtf-no-such-lib.so.7, libtf-no-such-lib.so") && !strchr(why, '\n');
    check(ok, "lazy_libs_missing_named", "%s", why[0] ? why : "no message");
}

int main(void) {
    cublas_loads();
    nccl_loads_when_installed();
    missing_library_names_files();
    return check_exit("test_lazy_libs");
}
#endif
