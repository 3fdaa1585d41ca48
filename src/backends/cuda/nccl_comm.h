/* The NCCL side of data parallelism (src/backends/cuda/nccl.c), used by
 * src/backends/distributed.c. Only in CUDA builds. Every function returns 0, or -1
 * with a one-line reason in err (TF_ERRLEN). */
#ifndef TF_NCCL_COMM_H
#define TF_NCCL_COMM_H

#include <stddef.h>

typedef struct NcclComm NcclComm;

/* Make GPU `device` current for this process (before the backend starts);
 * with a single visible GPU, that one. */
int nccl_set_device(int device, char *err);
/* A fresh NCCL unique id (128 bytes), on rank 0. */
int nccl_new_id(unsigned char *id, size_t id_bytes, char *err);
/* Join the communicator of `world` ranks named by id, on the current GPU. */
int nccl_comm_start(NcclComm **out, const unsigned char *id, size_t id_bytes, int world, int rank,
                    char *err);
/* Sum n floats of device memory in place over every rank, on the stream the
 * backend works on, and wait for the result. */
int nccl_allreduce_sum(NcclComm *c, float *buf, size_t n, char *err);
/* The same for n <= 8 host floats (through a small device buffer). */
int nccl_allreduce_host(NcclComm *c, float *vals, int n, char *err);
/* An asynchronous error NCCL has seen (a peer gone, a network failure): 0
 * while none, -1 with the reason. Safe from another thread. */
int nccl_async_error(NcclComm *c, char *err);
/* Tear down at once, pending operations included (the watchdog's way out). */
void nccl_abort(NcclComm *c);
/* The orderly end. */
void nccl_comm_free(NcclComm *c);

#endif
