/* Data-parallel processes: who is who, the rendezvous that hands out the
 * NCCL id, the liveness watchdog and the collectives (include/distributed.h). */
#define _GNU_SOURCE /* pthread_tryjoin_np */
#include "distributed.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "gpu_presence.h"
#ifdef TF_CUDA
#include "cuda/nccl_comm.h"
#else
typedef struct NcclComm NcclComm;
#endif

#define DEFAULT_MASTER_PORT 29500
#define HELLO_MAGIC 0x54464450u /* "TFDP" */
#define GOODBYE 'B'
#define POLL_MS 200
#define ABORT_GRACE_S 10

struct DistState {
    int n_peers;
    int *fd;           /* rank 0: one per other rank (index rank - 1); others: fd[0] is rank 0 */
    int *peer_rank;
    atomic_int *left;  /* the peer said goodbye */
    NcclComm *_Atomic comm; /* set once started; the watchdog reads it */
    pthread_t watchdog;
    int watchdog_running;
    atomic_int stopping;     /* dist_finish has begun: the watchdog stands down */
    atomic_int busy;         /* a collective is in progress */
    _Atomic double busy_since;
};

/* ---------------------------------------------------------------- environment */

/* An integer environment variable; 1 when set and valid, 0 when unset, -1 when invalid. */
static int env_int(const char *name, long lo, long hi, int *out, char *err) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return tf_err(err, "data parallel: %s='%s' is not an integer in [%ld, %ld]", name, s, lo, hi);
    *out = (int)v;
    return 1;
}

static double env_seconds(const char *name, double dflt, char *err, int *bad) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v > 0.0 && v < 1e7)) {
        tf_err(err, "data parallel: %s='%s' is not a number of seconds > 0", name, s);
        *bad = 1;
    }
    return v;
}

/* The first host of a SLURM node list: "gpu[03-05,07],cpu1" -> "gpu03". */
static void slurm_first_host(const char *list, char *out, size_t len) {
    size_t i = strcspn(list, "[,");
    if (list[i] != '[') {
        snprintf(out, len, "%.*s", (int)i, list);
        return;
    }
    size_t j = strcspn(list + i + 1, "-,]");
    snprintf(out, len, "%.*s%.*s", (int)i, list, (int)j, list + i + 1);
}

typedef struct {
    const char *name, *rank, *world, *local_rank;
} Launcher;

static const Launcher LAUNCHERS[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
};

/* Where rank 0 is: MASTER_ADDR; under SLURM the job's first node; else this
 * host, which is right only when every rank is on one node. */
static int rendezvous_addr(Dist *d, char *err) {
    const char *addr = getenv("MASTER_ADDR");
    if (addr && *addr) {
        snprintf(d->addr, sizeof d->addr, "%s", addr);
        return 0;
    }
    if (!strcmp(d->launcher, "srun")) {
        const char *list = getenv("SLURM_STEP_NODELIST");
        if (!list || !*list) list = getenv("SLURM_JOB_NODELIST");
        if (list && *list) {
            slurm_first_host(list, d->addr, sizeof d->addr);
            return 0;
        }
    }
    int local_size = 0;
    if (!strcmp(d->launcher, "mpirun") &&
        env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1, 1 << 20, &local_size, err) == 1 && local_size != d->world)
        return tf_err(err, "data parallel: mpirun spans several hosts: set MASTER_ADDR to rank 0's host "
                           "(mpirun -x MASTER_ADDR=host0 ...)");
    snprintf(d->addr, sizeof d->addr, "127.0.0.1");
    return 0;
}

int dist_from_env(Dist *d, char *err) {
    memset(d, 0, sizeof *d);
    d->world = 1;
    d->launcher = "none";
    const Launcher *l = NULL;
    for (size_t i = 0; i < sizeof LAUNCHERS / sizeof LAUNCHERS[0] && !l; i++) {
        const char *w = getenv(LAUNCHERS[i].world);
        if (w && *w) l = &LAUNCHERS[i];
    }
    d->timeout_s = 120.0;
    d->step_timeout_s = 600.0;
    if (!l) return 0;
    d->launcher = l->name;
    int r;
    if ((r = env_int(l->world, 1, 1 << 20, &d->world, err)) < 0) return -1;
    if ((r = env_int(l->rank, 0, 1 << 20, &d->rank, err)) <= 0)
        return r < 0 ? -1 : tf_err(err, "data parallel: %s is set but %s is not", l->world, l->rank);
    if ((r = env_int(l->local_rank, 0, 1 << 20, &d->local_rank, err)) < 0) return -1;
    if (r == 0) d->local_rank = d->rank;
    if (d->rank >= d->world)
        return tf_err(err, "data parallel: %s=%d is not below %s=%d", l->rank, d->rank, l->world, d->world);
    if (d->world == 1) return 0;
    int bad = 0;
    d->timeout_s = env_seconds("TF_DIST_TIMEOUT", 120.0, err, &bad);
    if (!bad) d->step_timeout_s = env_seconds("TF_DIST_STEP_TIMEOUT", 600.0, err, &bad);
    if (bad) return -1;
    int master_port = DEFAULT_MASTER_PORT;
    if (env_int("MASTER_PORT", 1, 65534, &master_port, err) < 0) return -1;
    d->port = master_port + 1; /* torchrun's own store listens on MASTER_PORT */
    if ((r = env_int("TF_DIST_PORT", 1, 65535, &d->port, err)) < 0) return -1;
    return rendezvous_addr(d, err);
}

/* ---------------------------------------------------------------- sockets */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Read or write exactly n bytes before `deadline`; 0, or -1 (errno ETIMEDOUT on time out, EPIPE on EOF). */
static int io_all(int fd, void *buf, size_t n, int writing, double deadline) {
    unsigned char *p = buf;
    while (n > 0) {
        double left = deadline - now_s();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {fd, writing ? POLLOUT : POLLIN, 0};
        int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        ssize_t k = writing ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k < 0) return -1;
        if (k == 0) {
            errno = EPIPE;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

typedef struct {
    uint32_t magic;
    int32_t rank, world;
} Hello;

static int listen_on(int port, char *err) {
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int v6 = fd >= 0;
    if (!v6) fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return tf_err(err, "data parallel: socket: %s", strerror(errno));
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (v6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* IPv4 peers too */
        struct sockaddr_in6 a;
        memset(&a, 0, sizeof a);
        a.sin6_family = AF_INET6;
        a.sin6_addr = in6addr_any;
        a.sin6_port = htons((uint16_t)port);
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_ANY);
        a.sin_port = htons((uint16_t)port);
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        return tf_err(err, "data parallel: rank 0 cannot listen on port %d: %s (another run there? set "
                           "TF_DIST_PORT or MASTER_PORT)", port, strerror(e));
    }
    return fd;
}

/* Rank 0: accept every other rank, check its hello, send it the id. */
static int serve_rendezvous(Dist *d, const unsigned char *id, char *err) {
    int lfd = listen_on(d->port, err);
    if (lfd < 0) return -1;
    DistState *s = d->st;
    double deadline = now_s() + d->timeout_s;
    int joined = 0;
    while (joined < s->n_peers) {
        double left = deadline - now_s();
        struct pollfd pfd = {lfd, POLLIN, 0};
        int pr = left > 0 ? poll(&pfd, 1, (int)(left * 1000) + 1) : 0;
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) {
            close(lfd);
            return tf_err(err, "data parallel: only %d of the %d other ranks reached rank 0 on port %d within "
                               "%g s (TF_DIST_TIMEOUT)", joined, s->n_peers, d->port, d->timeout_s);
        }
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        Hello h;
        if (io_all(fd, &h, sizeof h, 0, deadline) || h.magic != HELLO_MAGIC) {
            close(fd); /* not one of ours (a port scan, a stale run): keep waiting */
            continue;
        }
        if (h.world != d->world || h.rank <= 0 || h.rank >= d->world || s->fd[h.rank - 1] >= 0) {
            close(fd);
            close(lfd);
            return tf_err(err, "data parallel: a process claiming rank %d of %d reached rank 0 (world %d): two "
                               "runs on port %d? set TF_DIST_PORT", (int)h.rank, (int)h.world, d->world, d->port);
        }
        Hello back = {HELLO_MAGIC, 0, d->world};
        if (io_all(fd, &back, sizeof back, 1, deadline) || io_all(fd, (void *)id, DIST_ID_BYTES, 1, deadline)) {
            close(fd);
            close(lfd);
            return tf_err(err, "data parallel: rank %d went away during the rendezvous", (int)h.rank);
        }
        s->fd[h.rank - 1] = fd;
        s->peer_rank[h.rank - 1] = h.rank;
        joined++;
    }
    close(lfd);
    return 0;
}

static int connect_once(const char *addr, int port, char *why, size_t len) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(addr, service, &hints, &res);
    if (g != 0) {
        snprintf(why, len, "%s", gai_strerror(g));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            snprintf(why, len, "%s", strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* The other ranks: connect to rank 0 (retrying until the timeout, since it
 * may start later), say who we are, receive the id. */
static int join_rendezvous(Dist *d, unsigned char *id, char *err) {
    double deadline = now_s() + d->timeout_s;
    char why[256] = "no answer";
    int fd;
    while ((fd = connect_once(d->addr, d->port, why, sizeof why)) < 0) {
        if (now_s() >= deadline)
            return tf_err(err, "data parallel: rank %d could not reach rank 0 at %s:%d within %g s "
                               "(TF_DIST_TIMEOUT): %s", d->rank, d->addr, d->port, d->timeout_s, why);
        usleep(100 * 1000);
    }
    Hello h = {HELLO_MAGIC, d->rank, d->world}, back;
    if (io_all(fd, &h, sizeof h, 1, deadline) || io_all(fd, &back, sizeof back, 0, deadline) ||
        back.magic != HELLO_MAGIC || io_all(fd, id, DIST_ID_BYTES, 0, deadline)) {
        int e = errno;
        close(fd);
        return tf_err(err, "data parallel: rank %d: rendezvous with rank 0 at %s:%d failed: %s", d->rank,
                      d->addr, d->port, e == EPIPE ? "rank 0 closed the connection (a different world size?)"
                                                   : strerror(e));
    }
    d->st->fd[0] = fd;
    d->st->peer_rank[0] = 0;
    return 0;
}

static DistState *state_new(int n_peers) {
    DistState *s = calloc(1, sizeof *s);
    s->n_peers = n_peers;
    s->fd = malloc(sizeof(int) * (size_t)n_peers);
    s->peer_rank = calloc((size_t)n_peers, sizeof(int));
    s->left = calloc((size_t)n_peers, sizeof(atomic_int));
    if (!s->fd || !s->peer_rank || !s->left) tf_die("out of host memory");
    for (int i = 0; i < n_peers; i++) s->fd[i] = -1;
    return s;
}

static void state_free(DistState *s) {
    for (int i = 0; i < s->n_peers; i++)
        if (s->fd[i] >= 0) close(s->fd[i]);
    free(s->fd);
    free(s->peer_rank);
    free((void *)s->left);
    free(s);
}

int dist_rendezvous(Dist *d, unsigned char id[DIST_ID_BYTES], char *err) {
    if (d->world <= 1) return 0;
    d->st = state_new(d->rank == 0 ? d->world - 1 : 1);
    int rc = d->rank == 0 ? serve_rendezvous(d, id, err) : join_rendezvous(d, id, err);
    if (rc != 0) {
        state_free(d->st);
        d->st = NULL;
        return rc;
    }
    int one = 1;
    for (int i = 0; i < d->st->n_peers; i++) setsockopt(d->st->fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

/* ---------------------------------------------------------------- watchdog */

static void *abort_comm(void *arg) {
#ifdef TF_CUDA
    nccl_abort(arg);
#else
    (void)arg;
#endif
    return NULL;
}

/* One line, then the communicator aborted (a GPU kernel may be waiting on a
 * dead peer), and out: abort gets a bounded time, as it can itself hang. */
static void fail_run(Dist *d, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail_run(Dist *d, const char *fmt, ...) {
    /* The watchdog and the main thread (whose collective the abort ends) may
     * both get here: the first says it and exits, the other waits for that. */
    static atomic_int failing;
    if (atomic_exchange(&failing, 1))
        for (;;) pause();
    char msg[TF_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "tokenformer: error: data parallel (rank %d of %d): %s; stopping this rank\n", d->rank,
            d->world, msg);
    fflush(stderr);
    NcclComm *comm = d->st ? atomic_load(&d->st->comm) : NULL;
    if (comm) {
        pthread_t t;
        if (pthread_create(&t, NULL, abort_comm, comm) == 0) {
            double until = now_s() + ABORT_GRACE_S;
            while (now_s() < until && pthread_tryjoin_np(t, NULL) != 0) usleep(50 * 1000);
        }
    }
    _exit(1);
}

/* A peer's socket is readable: its goodbye, or EOF / an error (it died). */
static void check_peer(Dist *d, int i) {
    DistState *s = d->st;
    char c;
    ssize_t k = recv(s->fd[i], &c, 1, MSG_DONTWAIT);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (k == 1 && c == GOODBYE) {
        atomic_store(&s->left[i], 1);
        return;
    }
    if (atomic_load(&s->left[i]) && k == 0) return; /* closed after its goodbye */
    if (atomic_load(&s->stopping)) return;
    int r = s->peer_rank[i];
    if (r == 0)
        fail_run(d, "rank 0 went away (its process ended or its host became unreachable)");
    fail_run(d, "rank %d went away (its process ended or its host became unreachable)", r);
}

static void *watchdog_main(void *arg) {
    Dist *d = arg;
    DistState *s = d->st;
    struct pollfd *pfd = calloc((size_t)s->n_peers, sizeof *pfd);
    if (!pfd) tf_die("out of host memory");
    while (!atomic_load(&s->stopping)) {
        int n = 0;
        for (int i = 0; i < s->n_peers; i++) {
            pfd[i].fd = atomic_load(&s->left[i]) ? -1 : s->fd[i]; /* poll ignores fd -1 */
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
            n++;
        }
        int pr = poll(pfd, (nfds_t)n, POLL_MS);
        if (atomic_load(&s->stopping)) break;
        for (int i = 0; pr > 0 && i < n; i++)
            if (pfd[i].revents) check_peer(d, i);
        if (atomic_load(&s->busy)) {
            double waited = now_s() - atomic_load(&s->busy_since);
            for (int i = 0; i < s->n_peers; i++)
                if (atomic_load(&s->left[i]))
                    fail_run(d, "rank %d ended its run while this one waits for it in a collective",
                             s->peer_rank[i]);
            if (waited > d->step_timeout_s)
                fail_run(d, "a collective has waited %.0f s for the other ranks (TF_DIST_STEP_TIMEOUT=%g)",
                         waited, d->step_timeout_s);
        }
#ifdef TF_CUDA
        char err[TF_ERRLEN];
        NcclComm *comm = atomic_load(&s->comm);
        if (comm && nccl_async_error(comm, err)) fail_run(d, "%s", err);
#endif
    }
    free(pfd);
    return NULL;
}

void dist_watchdog_start(Dist *d) {
    if (!d->st || d->st->watchdog_running) return;
    if (pthread_create(&d->st->watchdog, NULL, watchdog_main, d) != 0) tf_die("data parallel: cannot start the watchdog thread");
    d->st->watchdog_running = 1;
}

void dist_busy(Dist *d, int busy) {
    if (!d->st) return;
    if (busy) atomic_store(&d->st->busy_since, now_s());
    atomic_store(&d->st->busy, busy);
}

/* ---------------------------------------------------------------- device and NCCL */

/* The one line for a launcher on a machine without GPUs (whatever CUDA said). */
static int no_gpu_for_ranks(const Dist *d, char *err) {
    return tf_err(err, "data-parallel training (%s, world %d) needs one GPU per process, and no GPU was found on this "
                       "machine; run without the launcher's variables to train on the CPU", d->launcher, d->world);
}

int dist_select_device(const Dist *d, char *err) {
    if (d->world <= 1) return 0;
    if (gpu_none_on_host()) return no_gpu_for_ranks(d, err);
#ifdef TF_CUDA
    return nccl_set_device(d->local_rank, err);
#else
    return tf_err(err, "data parallel (%s, world %d) needs a CUDA build of tokenformer", d->launcher, d->world);
#endif
}

int dist_start(Dist *d, const Ops *ops, char *err) {
    if (d->world <= 1) return 0;
    if (ops->kind != BACKEND_CUDA)
        return tf_err(err, "data parallel (%s, world %d) runs on GPUs only: give --device cuda", d->launcher,
                      d->world);
#ifdef TF_CUDA
    /* NVLink multicast (NVLS) is left off: it has hung or failed on shared
     * machines, and an all-reduce of one block does not need it. */
    setenv("NCCL_NVLS_ENABLE", "0", 0);
    unsigned char id[DIST_ID_BYTES];
    memset(id, 0, sizeof id);
    if (d->rank == 0 && nccl_new_id(id, sizeof id, err)) return -1;
    if (dist_rendezvous(d, id, err)) return -1;
    dist_watchdog_start(d);
    /* ncclCommInitRank waits for every rank: the step timeout covers it too. */
    dist_busy(d, 1);
    NcclComm *comm = NULL;
    int rc = nccl_comm_start(&comm, id, sizeof id, d->world, d->rank, err);
    dist_busy(d, 0);
    atomic_store(&d->st->comm, comm);
    return rc;
#else
    return tf_err(err, "data parallel needs a CUDA build of tokenformer");
#endif
}

void dist_allreduce_sum(Dist *d, float *buf, size_t n) {
    if (d->world <= 1) return;
#ifdef TF_CUDA
    char err[TF_ERRLEN];
    dist_busy(d, 1);
    if (nccl_allreduce_sum(atomic_load(&d->st->comm), buf, n, err)) fail_run(d, "%s", err);
    dist_busy(d, 0);
#else
    (void)buf, (void)n;
#endif
}

void dist_allreduce_host(Dist *d, float *vals, int n) {
    if (d->world <= 1) return;
#ifdef TF_CUDA
    char err[TF_ERRLEN];
    dist_busy(d, 1);
    if (nccl_allreduce_host(atomic_load(&d->st->comm), vals, n, err)) fail_run(d, "%s", err);
    dist_busy(d, 0);
#else
    (void)vals, (void)n;
#endif
}

void dist_finish(Dist *d) {
    DistState *s = d->st;
    if (!s) return;
    atomic_store(&s->stopping, 1);
    if (s->watchdog_running) pthread_join(s->watchdog, NULL);
    char bye = GOODBYE;
    for (int i = 0; i < s->n_peers; i++)
        if (s->fd[i] >= 0) {
            ssize_t ignored = send(s->fd[i], &bye, 1, MSG_NOSIGNAL);
            (void)ignored;
        }
#ifdef TF_CUDA
    nccl_comm_free(atomic_load(&s->comm));
#endif
    state_free(s);
    d->st = NULL;
}
