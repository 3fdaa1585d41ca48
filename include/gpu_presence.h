/* Whether this machine has an NVIDIA GPU at all, to word CUDA failures: on a
 * machine without one, CUDA answers "driver version is insufficient", which
 * reads like a broken driver; the user needs to hear that there is no GPU. */
#ifndef TF_GPU_PRESENCE_H
#define TF_GPU_PRESENCE_H

#define GPU_NONE_FOUND "no GPU found (no NVIDIA device or driver on this machine)"

/* 1 when none of the driver's traces exist: its device nodes (/dev/nvidiactl,
 * WSL's /dev/dxg) and its /proc entry. TF_GPU_DEV_ROOT (tests) prefixes the
 * paths looked at. */
int gpu_none_on_host(void);

#endif
