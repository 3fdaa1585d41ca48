/* An Ops table that times every compute op of another one: each call is
 * bracketed by synchronize() and a host clock, so the numbers are per op
 * (launch latency included) rather than overlapped. For `tokenformer bench
 * --profile`; never used in training. */
#ifndef TF_PROFILE_H
#define TF_PROFILE_H

#include <stdio.h>

#include "ops.h"

/* The wrapped table (one at a time; memory ops pass straight through). */
const Ops *ops_profiled(const Ops *inner);
void profile_reset(void);
/* Table of ops by total time, per `steps` steps, biggest first, and the
 * share of the steps' wall time (wall_seconds, all steps; 0: not shown)
 * that the ops account for. */
void profile_print(FILE *f, int steps, double wall_seconds);

#endif
