/* NCCL communicator for data-parallel training (src/backends/cuda/nccl_comm.h). The
 * backend runs everything on the legacy default stream, so the all-reduce
 * goes there too and is ordered after the backward pass that wrote the
 * gradients. */
#include "nccl_comm.h"

#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include "common.h"
#include "cuda_libs.h"

struct NcclComm {
    ncclComm_t comm;
    float *scratch; /* nccl_allreduce_host's device floats */
};

#define HOST_FLOATS 8

static int cuda_fail(char *err, const char *what, cudaError_t e) {
    return tf_err(err, "%s: %s", what, cudaGetErrorString(e));
}

static int nccl_fail(char *err, const char *what, ncclResult_t r) {
    return tf_err(err, "%s: %s", what, ncclGetErrorString(r));
}

static int load_nccl(char *err) {
    char why[TF_ERRLEN];
    if (cuda_libs_load(CUDA_LIBS_NCCL, why, sizeof why)) return tf_err(err, "NCCL: %s", why);
    return 0;
}

int nccl_set_device(int device, char *err) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) return cuda_fail(err, "no usable CUDA device (cudaGetDeviceCount)", e);
    /* A launcher that shows each rank only its own GPU (srun --gpus-per-task,
     * CUDA_VISIBLE_DEVICES per rank) leaves one device: that one. */
    if (count == 1) device = 0;
    if (device < 0 || device >= count)
        return tf_err(err, "local rank %d needs GPU %d, but this host shows %d GPU%s", device, device, count,
                      count == 1 ? "" : "s");
    e = cudaSetDevice(device);
    return e == cudaSuccess ? 0 : cuda_fail(err, "cudaSetDevice", e);
}

int nccl_new_id(unsigned char *id, size_t id_bytes, char *err) {
    if (id_bytes != sizeof(ncclUniqueId)) return tf_err(err, "internal: NCCL id size %zu", id_bytes);
    if (load_nccl(err)) return -1;
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) return nccl_fail(err, "ncclGetUniqueId", r);
    memcpy(id, &u, sizeof u);
    return 0;
}

int nccl_comm_start(NcclComm **out, const unsigned char *id, size_t id_bytes, int world, int rank,
                    char *err) {
    if (id_bytes != sizeof(ncclUniqueId)) return tf_err(err, "internal: NCCL id size %zu", id_bytes);
    if (load_nccl(err)) return -1;
    NcclComm *c = calloc(1, sizeof *c);
    if (!c) return tf_err(err, "out of host memory");
    cudaError_t e = cudaMalloc((void **)&c->scratch, HOST_FLOATS * sizeof(float));
    if (e != cudaSuccess) {
        free(c);
        return cuda_fail(err, "cudaMalloc (NCCL scratch)", e);
    }
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclResult_t r = ncclCommInitRank(&c->comm, world, u, rank);
    if (r != ncclSuccess) {
        cudaFree(c->scratch);
        free(c);
        return nccl_fail(err, "ncclCommInitRank", r);
    }
    *out = c;
    return 0;
}

int nccl_allreduce_sum(NcclComm *c, float *buf, size_t n, char *err) {
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, c->comm, cudaStreamPerThread);
    if (r != ncclSuccess) return nccl_fail(err, "ncclAllReduce", r);
    cudaError_t e = cudaStreamSynchronize(cudaStreamPerThread);
    return e == cudaSuccess ? 0 : cuda_fail(err, "after ncclAllReduce", e);
}

int nccl_allreduce_host(NcclComm *c, float *vals, int n, char *err) {
    if (n < 1 || n > HOST_FLOATS) return tf_err(err, "internal: %d host floats to all-reduce", n);
    cudaError_t e = cudaMemcpy(c->scratch, vals, (size_t)n * sizeof(float), cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return cuda_fail(err, "cudaMemcpy", e);
    if (nccl_allreduce_sum(c, c->scratch, (size_t)n, err)) return -1;
    e = cudaMemcpy(vals, c->scratch, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? 0 : cuda_fail(err, "cudaMemcpy", e);
}

int nccl_async_error(NcclComm *c, char *err) {
    ncclResult_t async = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(c->comm, &async);
    if (r != ncclSuccess) return nccl_fail(err, "ncclCommGetAsyncError", r);
    if (async != ncclSuccess && async != ncclInProgress) return nccl_fail(err, "NCCL", async);
    return 0;
}

void nccl_abort(NcclComm *c) {
    if (c) ncclCommAbort(c->comm);
}

void nccl_comm_free(NcclComm *c) {
    if (!c) return;
    ncclCommDestroy(c->comm);
    cudaFree(c->scratch);
    free(c);
}
