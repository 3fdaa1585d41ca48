/* Data-parallel plumbing on the CPU (src/backends/distributed.c): the launchers'
 * environments, the rendezvous between two local processes handing over a
 * fake 128-byte NCCL id, its timeouts, and the watchdog: a peer that dies,
 * one that says goodbye, a collective that waits too long. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "distributed.h"
#include "check.h"

static const char *const ENV_NAMES[] = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_PROCID",
    "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "TF_DIST_PORT",
    "TF_DIST_TIMEOUT", "TF_DIST_STEP_TIMEOUT"};

static void clear_env(void) {
    for (size_t i = 0; i < sizeof ENV_NAMES / sizeof ENV_NAMES[0]; i++) unsetenv(ENV_NAMES[i]);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- environment */

static void test_env(void) {
    Dist d;
    char err[TF_ERRLEN] = "";
    clear_env();
    check(dist_from_env(&d, err) == 0 && d.world == 1 && d.rank == 0 && !strcmp(d.launcher, "none"),
          "env_none_is_world_1", "%s", err);

    setenv("RANK", "3", 1), setenv("WORLD_SIZE", "4", 1), setenv("LOCAL_RANK", "1", 1);
    setenv("MASTER_ADDR", "node7", 1), setenv("MASTER_PORT", "1234", 1);
    int ok = dist_from_env(&d, err) == 0 && d.rank == 3 && d.world == 4 && d.local_rank == 1 &&
             !strcmp(d.addr, "node7") && d.port == 1235 && !strcmp(d.launcher, "torchrun");
    check(ok, "env_torchrun", "%s", err);
    setenv("TF_DIST_PORT", "4000", 1);
    check(dist_from_env(&d, err) == 0 && d.port == 4000, "env_port_override", "%s", err);
    setenv("RANK", "4", 1);
    check(dist_from_env(&d, err) == -1 && strstr(err, "RANK=4"), "env_rank_out_of_range", "%s", err);
    setenv("TF_DIST_TIMEOUT", "soon", 1), setenv("RANK", "0", 1);
    check(dist_from_env(&d, err) == -1 && strstr(err, "TF_DIST_TIMEOUT"), "env_bad_timeout", "%s", err);

    clear_env();
    setenv("OMPI_COMM_WORLD_RANK", "1", 1), setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1), setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2", 1);
    ok = dist_from_env(&d, err) == 0 && d.rank == 1 && d.world == 2 && d.local_rank == 1 &&
         !strcmp(d.addr, "127.0.0.1") && d.port == 29501 && !strcmp(d.launcher, "mpirun");
    check(ok, "env_mpirun_one_node", "%s", err);
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "1", 1);
    check(dist_from_env(&d, err) == -1 && strstr(err, "MASTER_ADDR"), "env_mpirun_multi_node_needs_addr", "%s", err);

    clear_env();
    setenv("SLURM_PROCID", "5", 1), setenv("SLURM_NTASKS", "8", 1), setenv("SLURM_LOCALID", "1", 1);
    setenv("SLURM_STEP_NODELIST", "gpu[03-05,07],cpu1", 1);
    ok = dist_from_env(&d, err) == 0 && d.rank == 5 && d.world == 8 && d.local_rank == 1 &&
         !strcmp(d.addr, "gpu03") && !strcmp(d.launcher, "srun");
    check(ok, "env_srun", "%s", d.addr);
    clear_env();
}

/* ---------------------------------------------------------------- two processes */

static int g_port;

static void rank_env(int rank, int world) {
    clear_env();
    char v[32];
    snprintf(v, sizeof v, "%d", rank);
    setenv("RANK", v, 1), setenv("LOCAL_RANK", v, 1);
    snprintf(v, sizeof v, "%d", world);
    setenv("WORLD_SIZE", v, 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    snprintf(v, sizeof v, "%d", g_port);
    setenv("TF_DIST_PORT", v, 1);
    setenv("TF_DIST_TIMEOUT", "20", 1);
}

static void fake_id(unsigned char *id) {
    for (int i = 0; i < DIST_ID_BYTES; i++) id[i] = (unsigned char)(i * 7 + 3);
}

typedef enum { PLAY_EXCHANGE, PLAY_DIE, PLAY_GOODBYE, PLAY_WAIT, PLAY_BUSY } Play;

/* A rank's part (in a child process): rendezvous, then `play`. Exit
 * status 0 when all went as planned; the watchdog's exit is 1. */
static void run_rank(int rank, int world, Play play, const char *err_path) {
    if (!freopen(err_path, "w", stderr)) _exit(3);
    alarm(60); /* nothing here may hang the test */
    rank_env(rank, world);
    if (play == PLAY_BUSY) setenv("TF_DIST_STEP_TIMEOUT", "1", 1);
    Dist d;
    char err[TF_ERRLEN];
    unsigned char id[DIST_ID_BYTES], want[DIST_ID_BYTES];
    fake_id(want);
    memset(id, 0, sizeof id);
    if (rank == 0) memcpy(id, want, sizeof id);
    if (dist_from_env(&d, err) || dist_rendezvous(&d, id, err)) {
        fprintf(stderr, "%s\n", err);
        _exit(2);
    }
    if (memcmp(id, want, sizeof id)) _exit(4);
    if (play == PLAY_DIE) _exit(0); /* no goodbye */
    dist_watchdog_start(&d);
    if (play == PLAY_BUSY) dist_busy(&d, 1);
    if (play == PLAY_WAIT || play == PLAY_BUSY) sleep(30); /* the watchdog should end this first */
    if (play == PLAY_GOODBYE) usleep(1500 * 1000); /* the peer leaves meanwhile: no alarm */
    dist_finish(&d);
    _exit(0);
}

static pid_t spawn(int rank, int world, Play play, const char *err_path) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) run_rank(rank, world, play, err_path);
    return pid;
}

/* Exit status of pid, or -1 when it ran past `within` seconds (then killed). */
static int wait_status(pid_t pid, double within, double *took) {
    double t0 = now_s();
    int st;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        if (now_s() - t0 > within) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            *took = now_s() - t0;
            return -1;
        }
        usleep(20 * 1000);
    }
    *took = now_s() - t0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int file_has(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static int lines_in(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static char g_dir[256];

static void path_of(char *out, const char *name) { snprintf(out, 300, "%s/%s", g_dir, name); }

static void test_exchange(void) {
    char e0[300], e1[300], why[600];
    path_of(e0, "x0.err"), path_of(e1, "x1.err");
    g_port++;
    /* rank 1 first: it must retry until rank 0 listens */
    pid_t p1 = spawn(1, 2, PLAY_EXCHANGE, e1);
    usleep(300 * 1000);
    pid_t p0 = spawn(0, 2, PLAY_EXCHANGE, e0);
    double t0, t1;
    int s0 = wait_status(p0, 20, &t0), s1 = wait_status(p1, 20, &t1);
    snprintf(why, sizeof why, "statuses %d and %d (4: wrong id)", s0, s1);
    check(s0 == 0 && s1 == 0, "rendezvous_exchanges_id", "%s", why);
}

static void test_dead_peer(void) {
    char e0[300], e1[300], why[600];
    path_of(e0, "d0.err"), path_of(e1, "d1.err");
    g_port++;
    pid_t p0 = spawn(0, 2, PLAY_WAIT, e0);
    pid_t p1 = spawn(1, 2, PLAY_DIE, e1);
    double t0, t1;
    int s1 = wait_status(p1, 20, &t1), s0 = wait_status(p0, 15, &t0);
    snprintf(why, sizeof why, "rank 0 status %d after %.1f s (rank 1: %d)", s0, t0, s1);
    check(s0 == 1 && t0 < 5 && file_has(e0, "rank 1 went away") && lines_in(e0) == 1,
          "dead_peer_stops_rank0", "%s", why);

    /* and the other way round: rank 0 dies, rank 1 notices */
    path_of(e0, "r0.err"), path_of(e1, "r1.err");
    g_port++;
    p1 = spawn(1, 2, PLAY_WAIT, e1);
    p0 = spawn(0, 2, PLAY_DIE, e0);
    s0 = wait_status(p0, 20, &t0), s1 = wait_status(p1, 15, &t1);
    snprintf(why, sizeof why, "rank 1 status %d after %.1f s", s1, t1);
    check(s1 == 1 && t1 < 5 && file_has(e1, "rank 0 went away"), "dead_rank0_stops_peer", "%s", why);
}

static void test_goodbye(void) {
    char e0[300], e1[300], why[600];
    path_of(e0, "g0.err"), path_of(e1, "g1.err");
    g_port++;
    pid_t p0 = spawn(0, 2, PLAY_GOODBYE, e0);
    pid_t p1 = spawn(1, 2, PLAY_EXCHANGE, e1); /* finishes at once, saying goodbye */
    double t0, t1;
    int s1 = wait_status(p1, 20, &t1), s0 = wait_status(p0, 20, &t0);
    snprintf(why, sizeof why, "statuses %d and %d", s0, s1);
    check(s0 == 0 && s1 == 0 && lines_in(e0) == 0, "goodbye_is_not_a_failure", "%s", why);
}

static void test_step_timeout(void) {
    char e0[300], e1[300], why[600];
    path_of(e0, "s0.err"), path_of(e1, "s1.err");
    g_port++;
    pid_t p0 = spawn(0, 2, PLAY_BUSY, e0); /* waits in a "collective" that never ends */
    pid_t p1 = spawn(1, 2, PLAY_WAIT, e1);
    double t0, t1;
    int s0 = wait_status(p0, 15, &t0), s1 = wait_status(p1, 15, &t1);
    snprintf(why, sizeof why, "statuses %d (%.1f s) and %d (%.1f s)", s0, t0, s1, t1);
    check(s0 == 1 && t0 < 5 && file_has(e0, "TF_DIST_STEP_TIMEOUT") && s1 == 1 && file_has(e1, "rank 0 went away"),
          "step_timeout_stops_every_rank", "%s", why);
}

static void test_rendezvous_timeout(void) {
    char err[TF_ERRLEN] = "", why[TF_ERRLEN + 64];
    unsigned char id[DIST_ID_BYTES];
    Dist d;
    g_port++;
    rank_env(1, 2);
    setenv("TF_DIST_TIMEOUT", "1", 1);
    double t = now_s();
    int rc = dist_from_env(&d, err) || dist_rendezvous(&d, id, err);
    t = now_s() - t;
    snprintf(why, sizeof why, "rc %d after %.1f s: %s", rc, t, err);
    check(rc && t < 4 && strstr(err, "could not reach rank 0 at 127.0.0.1"), "rendezvous_timeout_peer", "%s", why);

    g_port++;
    rank_env(0, 3);
    setenv("TF_DIST_TIMEOUT", "1", 1);
    t = now_s();
    rc = dist_from_env(&d, err) || dist_rendezvous(&d, id, err);
    t = now_s() - t;
    snprintf(why, sizeof why, "rc %d after %.1f s: %s", rc, t, err);
    check(rc && t < 4 && strstr(err, "only 0 of the 2 other ranks"), "rendezvous_timeout_rank0", "%s", why);
    clear_env();
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/tf_dist_XXXXXX");
    if (!mkdtemp(g_dir)) {
        check(0, "distributed", "mkdtemp");
        return 1;
    }
    g_port = 20000 + (int)(getpid() % 4000) * 10; /* apart from other runs of this test */
    test_env();
    test_rendezvous_timeout();
    test_exchange();
    test_dead_peer();
    test_goodbye();
    test_step_timeout();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd)) { /* leaving a folder in /tmp is no test failure */
    }
    return check_exit("test_distributed");
}
