/* The CUDA libraries, loaded on first use.
 *
 * Linking cuBLAS/cuBLASLt makes the dynamic linker map several hundred MB of
 * libraries before main(), for every command. Instead, the cuBLAS, cuBLASLt
 * and NCCL functions the backend calls are defined here with the headers'
 * prototypes; each forwards through a pointer resolved with dlsym the first
 * time any function of its group is called. Adding an entry point is one line
 * in a table below (its library, return type, name, parameters, arguments). */
#define _POSIX_C_SOURCE 200809L
#include "cuda_libs.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <nccl.h>

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---------------------------------------------------------------- libraries */

typedef enum { LIB_CUBLASLT, LIB_CUBLAS, LIB_NCCL, LIB_COUNT } Lib;

/* Only the major version the headers describe is tried: another major has
 * other enum values and struct sizes (cublasLtMatmulHeuristicResult_t), so a
 * fallback to it would fail in obscure ways. The unversioned name is a
 * developer's symlink, accepted when its version checks out. */
typedef struct {
    const char *what;
    const char *names[2];
    CudaLibGroup group;
    int (*check)(void *handle, const char *file, char *why, size_t why_len);
} LibSpec;

static int check_cublaslt(void *handle, const char *file, char *why, size_t why_len);
static int check_cublas(void *handle, const char *file, char *why, size_t why_len);

static const LibSpec LIBS[LIB_COUNT] = {
    [LIB_CUBLASLT] = {"cuBLASLt",
                      {"libcublasLt.so." STR(CUBLAS_VER_MAJOR), "libcublasLt.so"},
                      CUDA_LIBS_CUBLAS,
                      check_cublaslt},
    [LIB_CUBLAS] = {"cuBLAS",
                    {"libcublas.so." STR(CUBLAS_VER_MAJOR), "libcublas.so"},
                    CUDA_LIBS_CUBLAS,
                    check_cublas},
    [LIB_NCCL] = {"NCCL", {"libnccl.so." STR(NCCL_MAJOR), "libnccl.so"}, CUDA_LIBS_NCCL, NULL},
};

/* ------------------------------------------------------------- entry points */

/* X(library, return type, name, (parameters), (arguments)) */
#define CUBLAS_ENTRY_POINTS(X)                                                                     \
    X(LIB_CUBLAS, cublasStatus_t, cublasCreate_v2, (cublasHandle_t * handle), (handle))            \
    X(LIB_CUBLAS, cublasStatus_t, cublasDestroy_v2, (cublasHandle_t handle), (handle))             \
    X(LIB_CUBLAS, cublasStatus_t, cublasSetStream_v2, (cublasHandle_t handle, cudaStream_t streamId), \
      (handle, streamId))                                                                         \
    X(LIB_CUBLAS, cublasStatus_t, cublasGemmEx,                                                    \
      (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,    \
       int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,       \
       cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,       \
       cublasComputeType_t computeType, cublasGemmAlgo_t algo),                                   \
      (handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc, \
       computeType, algo))                                                                        \
    X(LIB_CUBLAS, cublasStatus_t, cublasGemmStridedBatchedEx,                                      \
      (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,    \
       int k, const void *alpha, const void *A, cudaDataType Atype, int lda,                      \
       long long int strideA, const void *B, cudaDataType Btype, int ldb, long long int strideB,  \
       const void *beta, void *C, cudaDataType Ctype, int ldc, long long int strideC,             \
       int batchCount, cublasComputeType_t computeType, cublasGemmAlgo_t algo),                   \
      (handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB,    \
       beta, C, Ctype, ldc, strideC, batchCount, computeType, algo))                              \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtCreate, (cublasLtHandle_t * lightHandle),              \
      (lightHandle))                                                                              \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatmul,                                                \
      (cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc, const void *alpha,         \
       const void *A, cublasLtMatrixLayout_t Adesc, const void *B, cublasLtMatrixLayout_t Bdesc,  \
       const void *beta, const void *C, cublasLtMatrixLayout_t Cdesc, void *D,                    \
       cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo, void *workspace,           \
       size_t workspaceSizeInBytes, cudaStream_t stream),                                         \
      (lightHandle, computeDesc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc, algo,       \
       workspace, workspaceSizeInBytes, stream))                                                  \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatmulAlgoGetHeuristic,                                \
      (cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,                          \
       cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc,  \
       cublasLtMatrixLayout_t Ddesc, cublasLtMatmulPreference_t preference,                       \
       int requestedAlgoCount, cublasLtMatmulHeuristicResult_t heuristicResultsArray[],           \
       int *returnAlgoCount),                                                                     \
      (lightHandle, operationDesc, Adesc, Bdesc, Cdesc, Ddesc, preference, requestedAlgoCount,    \
       heuristicResultsArray, returnAlgoCount))                                                   \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtDestroy, (cublasLtHandle_t lightHandle), (lightHandle)) \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t matmulDesc),   \
      (matmulDesc))                                                                               \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatrixLayoutDestroy,                                   \
      (cublasLtMatrixLayout_t matLayout), (matLayout))                                            \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatmulDescCreate,                                      \
      (cublasLtMatmulDesc_t * matmulDesc, cublasComputeType_t computeType,                        \
       cudaDataType_t scaleType),                                                                 \
      (matmulDesc, computeType, scaleType))                                                       \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatmulDescSetAttribute,                                \
      (cublasLtMatmulDesc_t matmulDesc, cublasLtMatmulDescAttributes_t attr, const void *buf,     \
       size_t sizeInBytes),                                                                       \
      (matmulDesc, attr, buf, sizeInBytes))                                                       \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatmulPreferenceCreate,                                \
      (cublasLtMatmulPreference_t * pref), (pref))                                                \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatmulPreferenceDestroy,                               \
      (cublasLtMatmulPreference_t pref), (pref))                                                  \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatmulPreferenceSetAttribute,                          \
      (cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,                \
       const void *buf, size_t sizeInBytes),                                                      \
      (pref, attr, buf, sizeInBytes))                                                             \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatrixLayoutCreate,                                    \
      (cublasLtMatrixLayout_t * matLayout, cudaDataType type, uint64_t rows, uint64_t cols,       \
       int64_t ld),                                                                               \
      (matLayout, type, rows, cols, ld))                                                          \
    X(LIB_CUBLASLT, cublasStatus_t, cublasLtMatrixLayoutSetAttribute,                              \
      (cublasLtMatrixLayout_t matLayout, cublasLtMatrixLayoutAttribute_t attr, const void *buf,   \
       size_t sizeInBytes),                                                                       \
      (matLayout, attr, buf, sizeInBytes))

#define NCCL_ENTRY_POINTS(X)                                                                       \
    X(LIB_NCCL, ncclResult_t, ncclGetUniqueId, (ncclUniqueId * uniqueId), (uniqueId))              \
    X(LIB_NCCL, ncclResult_t, ncclCommInitRank,                                                    \
      (ncclComm_t * comm, int nranks, ncclUniqueId commId, int rank),                              \
      (comm, nranks, commId, rank))                                                               \
    X(LIB_NCCL, ncclResult_t, ncclAllReduce,                                                       \
      (const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,               \
       ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream),                                     \
      (sendbuff, recvbuff, count, datatype, op, comm, stream))                                    \
    X(LIB_NCCL, ncclResult_t, ncclCommDestroy, (ncclComm_t comm), (comm))                          \
    X(LIB_NCCL, ncclResult_t, ncclCommAbort, (ncclComm_t comm), (comm))                            \
    X(LIB_NCCL, ncclResult_t, ncclCommGetAsyncError, (ncclComm_t comm, ncclResult_t * asyncError), \
      (comm, asyncError))                                                                         \
    X(LIB_NCCL, ncclResult_t, ncclGroupStart, (void), ())                                          \
    X(LIB_NCCL, ncclResult_t, ncclGroupEnd, (void), ())

/* The pointers, all null until their group loads. */
#define DECLARE_POINTER(lib, ret, name, params, args) static ret(*p_##name) params;
CUBLAS_ENTRY_POINTS(DECLARE_POINTER)
NCCL_ENTRY_POINTS(DECLARE_POINTER)
static const char *(*p_ncclGetErrorString)(ncclResult_t result);

typedef struct {
    Lib lib;
    const char *name;
    void **slot;
} EntryPoint;

/* Function and object pointers share one representation on every platform
 * dlsym exists on (POSIX requires it); the cast goes through void **. */
#define ENTRY(lib, ret, name, params, args) {lib, #name, (void **)&p_##name},
static const EntryPoint ENTRY_POINTS[] = {
    CUBLAS_ENTRY_POINTS(ENTRY) NCCL_ENTRY_POINTS(ENTRY){LIB_NCCL, "ncclGetErrorString",
                                                         (void **)&p_ncclGetErrorString},
};

/* ------------------------------------------------------------------ loading */

static void *g_handles[LIB_COUNT];
static int g_status[CUDA_LIBS_GROUPS];            /* 0 loaded, -1 failed */
static char g_why[CUDA_LIBS_GROUPS][384];         /* reason of a failed load */
static const char *g_last_error = "";
static pthread_once_t g_once[CUDA_LIBS_GROUPS] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};

void *cuda_libs_open_first(const char *what, const char *const *names, int n, char *why,
                           size_t why_len) {
    char first_error[256] = "";
    for (int i = 0; i < n; i++) {
        if (!names[i]) continue;
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
        const char *e = dlerror();
        if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s", e ? e : "not found");
    }
    char tried[256] = "";
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof tried; i++)
        if (names[i])
            used += (size_t)snprintf(tried + used, sizeof tried - used, "%s%s", used ? ", " : "",
                                     names[i]);
    snprintf(why, why_len, "cannot load %s (looked for %s): %s", what, tried, first_error);
    return NULL;
}

static int check_cublaslt(void *handle, const char *file, char *why, size_t why_len) {
    size_t (*get_version)(void);
    *(void **)&get_version = dlsym(handle, "cublasLtGetVersion");
    if (!get_version) {
        snprintf(why, why_len, "%s is too old: it lacks cublasLtGetVersion", file);
        return -1;
    }
    size_t v = get_version();
    if (v / 10000 == CUBLAS_VER_MAJOR) return 0;
    snprintf(why, why_len, "%s is cuBLASLt %zu.%zu; this tokenformer was built for %d.x", file,
             v / 10000, v / 100 % 100, CUBLAS_VER_MAJOR);
    return -1;
}

static int check_cublas(void *handle, const char *file, char *why, size_t why_len) {
    cublasStatus_t (*get_property)(libraryPropertyType, int *);
    *(void **)&get_property = dlsym(handle, "cublasGetProperty");
    if (!get_property) {
        snprintf(why, why_len, "%s is too old: it lacks cublasGetProperty", file);
        return -1;
    }
    int major = -1, minor = -1;
    get_property(MAJOR_VERSION, &major);
    get_property(MINOR_VERSION, &minor);
    if (major == CUBLAS_VER_MAJOR) return 0;
    snprintf(why, why_len, "%s is cuBLAS %d.%d; this tokenformer was built for %d.x", file, major,
             minor, CUBLAS_VER_MAJOR);
    return -1;
}

/* The file a handle came from, for messages. */
static const char *loaded_file(const LibSpec *spec, void *handle) {
    for (int i = 0; i < 2; i++) {
        if (!spec->names[i]) continue;
        void *again = dlopen(spec->names[i], RTLD_NOW | RTLD_NOLOAD);
        if (again) dlclose(again);
        if (again == handle) return spec->names[i];
    }
    return spec->names[0];
}

static int open_library(Lib lib, char *why, size_t why_len) {
    const LibSpec *spec = &LIBS[lib];
    void *h = cuda_libs_open_first(spec->what, spec->names, 2, why, why_len);
    if (!h) return -1;
    if (spec->check && spec->check(h, loaded_file(spec, h), why, why_len) != 0) {
        dlclose(h);
        return -1;
    }
    g_handles[lib] = h;
    return 0;
}

static int resolve_entry_points(CudaLibGroup group, char *why, size_t why_len) {
    for (size_t i = 0; i < sizeof ENTRY_POINTS / sizeof ENTRY_POINTS[0]; i++) {
        const EntryPoint *ep = &ENTRY_POINTS[i];
        if (LIBS[ep->lib].group != group) continue;
        void *f = dlsym(g_handles[ep->lib], ep->name);
        if (!f) {
            snprintf(why, why_len, "%s (%s) is too old: it lacks %s", LIBS[ep->lib].what,
                     loaded_file(&LIBS[ep->lib], g_handles[ep->lib]), ep->name);
            return -1;
        }
        *ep->slot = f;
    }
    return 0;
}

static void load_group(CudaLibGroup group) {
    char *why = g_why[group];
    size_t why_len = sizeof g_why[group];
    int rc = 0;
    for (int lib = 0; lib < LIB_COUNT && rc == 0; lib++)
        if (LIBS[lib].group == group) rc = open_library((Lib)lib, why, why_len);
    if (rc == 0) rc = resolve_entry_points(group, why, why_len);
    if (rc != 0) {
        /* Nothing half-loaded stays callable. */
        for (size_t i = 0; i < sizeof ENTRY_POINTS / sizeof ENTRY_POINTS[0]; i++)
            if (LIBS[ENTRY_POINTS[i].lib].group == group) *ENTRY_POINTS[i].slot = NULL;
        g_last_error = why;
    }
    g_status[group] = rc;
}

static void load_cublas(void) { load_group(CUDA_LIBS_CUBLAS); }
static void load_nccl(void) { load_group(CUDA_LIBS_NCCL); }

static int group_ready(CudaLibGroup group) {
    static void (*const loaders[CUDA_LIBS_GROUPS])(void) = {load_cublas, load_nccl};
    pthread_once(&g_once[group], loaders[group]);
    return g_status[group] == 0;
}

int cuda_libs_load(CudaLibGroup group, char *why, size_t why_len) {
    if (group_ready(group)) return 0;
    if (why && why_len) snprintf(why, why_len, "%s", g_why[group]);
    return -1;
}

const char *cuda_libs_error(void) { return g_last_error; }

/* ----------------------------------------------------------------- wrappers */

#define CUBLAS_WRAPPER(lib, ret, name, params, args)                                               \
    ret name params {                                                                              \
        if (!group_ready(CUDA_LIBS_CUBLAS)) return CUBLAS_STATUS_NOT_INITIALIZED;                  \
        return p_##name args;                                                                      \
    }
CUBLAS_ENTRY_POINTS(CUBLAS_WRAPPER)

#define NCCL_WRAPPER(lib, ret, name, params, args)                                                 \
    ret name params {                                                                              \
        if (!group_ready(CUDA_LIBS_NCCL)) return ncclSystemError;                                  \
        return p_##name args;                                                                      \
    }
NCCL_ENTRY_POINTS(NCCL_WRAPPER)

const char *ncclGetErrorString(ncclResult_t result) {
    if (!group_ready(CUDA_LIBS_NCCL)) return g_why[CUDA_LIBS_NCCL];
    return p_ncclGetErrorString(result);
}
