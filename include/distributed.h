/* Data-parallel training over several processes, one GPU each (docs/DISTRIBUTED.md).
 *
 * The launcher (torchrun, Open MPI's mpirun, SLURM's srun) starts the
 * processes and says in the environment who is who; rank 0 then hands the
 * NCCL unique id to the others over a small TCP rendezvous of its own. The
 * rendezvous sockets stay open for the whole run: a rank that dies closes
 * them, and a watchdog thread in every rank makes the run stop within a
 * bounded time with one clear line. A world of one (no launcher) does none
 * of this. */
#ifndef TF_DISTRIBUTED_H
#define TF_DISTRIBUTED_H

#include <stddef.h>

#include "ops.h"

#define DIST_ID_BYTES 128 /* sizeof(ncclUniqueId) */

typedef struct DistState DistState;

typedef struct {
    int rank, world, local_rank;
    const char *launcher;  /* "torchrun", "mpirun", "srun" or "none" */
    char addr[256];        /* rank 0's host: MASTER_ADDR, else 127.0.0.1 */
    int port;              /* the rendezvous port: TF_DIST_PORT, else MASTER_PORT + 1 */
    double timeout_s;      /* TF_DIST_TIMEOUT: rendezvous and NCCL start (default 120) */
    double step_timeout_s; /* TF_DIST_STEP_TIMEOUT: longest wait in one collective (default 600) */
    DistState *st;         /* sockets, communicator, watchdog; NULL until dist_start */
} Dist;

/* Who this process is, from the launcher's environment: torchrun (RANK,
 * WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), Open MPI
 * (OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK) or SLURM (SLURM_PROCID,
 * SLURM_NTASKS, SLURM_LOCALID), in that order of precedence. Without any, a
 * world of one. Returns 0, or -1 with a one-line reason in err (TF_ERRLEN). */
int dist_from_env(Dist *d, char *err);

/* Make GPU local_rank current, before the CUDA backend starts. 0 or -1 with err. */
int dist_select_device(const Dist *d, char *err);

/* Exchange `id` (rank 0 sends its own, the others receive it) and keep the
 * sockets open as the liveness channel. 0 or -1 with err. */
int dist_rendezvous(Dist *d, unsigned char id[DIST_ID_BYTES], char *err);

/* Rendezvous, NCCL communicator on ops' GPU (world > 1 needs the CUDA
 * backend) and the watchdog. Sets NCCL_NVLS_ENABLE=0 unless it is set. A
 * world of one: nothing. 0 or -1 with err. */
int dist_start(Dist *d, const Ops *ops, char *err);

/* Sum n floats of device memory over every rank, in place; on return every
 * rank holds the same sums. A world of one: nothing. A failure ends the
 * process with one line. */
void dist_allreduce_sum(Dist *d, float *buf, size_t n);

/* The same for a few host floats (at most DIST_HOST_FLOATS). */
#define DIST_HOST_FLOATS 8
void dist_allreduce_host(Dist *d, float *vals, int n);

/* The watchdog's own start (dist_start calls it): polls the sockets every
 * fraction of a second and, when a peer goes away without saying goodbye or
 * a collective outlasts step_timeout_s, prints one line, aborts the
 * communicator (when there is one) and exits with status 1. */
void dist_watchdog_start(Dist *d);

/* Mark a collective as begun/ended (what the step timeout measures). */
void dist_busy(Dist *d, int busy);

/* The end of a run (any status): say goodbye on the sockets so that peers
 * do not take this exit for a failure, stop the watchdog, free NCCL. */
void dist_finish(Dist *d);

#endif
