"""Per-kernel GPU time of one CUDA prefill (and a few decode steps) via torch.profiler's CUPTI
hook (no nsys needed): `python3 bench/cuda_profile.py MODEL.gguf [n_prompt] [depth]`.

Profiles one n_prompt-token prefill at the given depth, then 8 single-token decode steps, and
prints the kernels by total device time. Needs torch in the same interpreter (the device's
/opt/torch venv); nsys is not installed there."""
import sys

import numpy as np
import torch  # noqa: F401  (CUPTI via torch.profiler)
from torch.profiler import ProfilerActivity, profile

import qwen3moe


def main() -> None:
    path = sys.argv[1]
    p = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    depth = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    m = qwen3moe.load(path, device="cuda", n_ctx=depth + p + 64)
    rng = np.random.default_rng(0)
    toks = rng.integers(1, 1000, size=p + depth).astype(np.int32).tolist()
    m.reset()
    m.forward(toks[:p], logits="none")  # warm-up
    m.reset()
    if depth:
        m.forward(toks[p:p + depth], logits="none")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        m.forward(toks[:p], logits="none")
        for t in toks[:8]:
            m.decode(t, logits="none")
    avg = prof.key_averages()
    for key in ("self_device_time_total", "self_cuda_time_total", "cuda_time_total"):
        try:  # the column's name depends on the torch version
            print(avg.table(sort_by=key, row_limit=25, max_name_column_width=90))
            break
        except (AttributeError, KeyError, ValueError):
            continue


if __name__ == "__main__":
    main()
