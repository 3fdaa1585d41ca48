"""The GPU's bf16 matmul rate, measured: TFLOP/s of 8192^3 products on random
data (the peak the benchmark scripts divide by for MFU). Prints one number."""
import time

import torch

N, REPS = 8192, 20
a = torch.randn(N, N, device="cuda", dtype=torch.bfloat16)
b = torch.randn_like(a)
for _ in range(3):
    a @ b
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(REPS):
    a @ b
torch.cuda.synchronize()
print(f"{2 * N**3 * REPS / (time.perf_counter() - t) / 1e12:.1f}")
