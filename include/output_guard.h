/* Guards for the files a command writes: no writer replaces another run's
 * checkpoint, its own input, or a file that is not a checkpoint.
 *
 * A run writes an output set: DIR/latest.safetensors + DIR/best.safetensors,
 * or STEM.safetensors + STEM.best.safetensors. One lock file per set (an
 * exclusive flock held until exit) keeps two writers out of the same set,
 * whichever of its paths each was given. */
#ifndef TF_OUTPUT_GUARD_H
#define TF_OUTPUT_GUARD_H

#include <stddef.h>

/* The lock file of the set a checkpoint path belongs to: DIR/.tokenformer.lock
 * for DIR/latest.safetensors and DIR/best.safetensors, STEM.lock for
 * STEM.safetensors and STEM.best.safetensors, PATH.lock for any other path. */
void output_set_lock_path(const char *ckpt, char *lock, size_t len);

/* Take the set's lock for the life of the process (creating the lock file),
 * or die naming the pid that holds it. flag names the option in messages. */
void output_set_lock(const char *ckpt, const char *flag);

/* The same for a single write: takes the lock only when the lock file exists
 * (no run ever wrote there otherwise) and dies when another process holds it. */
void output_set_lock_if_present(const char *ckpt, const char *flag);

/* Whether path is named as a run's best checkpoint (best.safetensors or
 * STEM.best.safetensors): never a path to write a latest to. */
int output_is_best_name(const char *path);

/* Whether a and b both exist and are the same file (through any link). */
int output_same_file(const char *a, const char *b);

/* Whether path holds a tokenformer checkpoint (its header's format key). */
int output_is_checkpoint(const char *path);

#endif
