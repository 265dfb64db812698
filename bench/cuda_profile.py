"""Per-kernel GPU time of one CUDA prefill (and a few decode steps) via torch.profiler's CUPTI
hook (no nsys needed): `python3 bench/cuda_profile.py MODEL.gguf [n_prompt] [depth] [n_decode]`.

Profiles one n_prompt-token prefill at the given depth (none when n_prompt is 0), then n_decode
(default 8) single-token decode steps, and prints the kernels by total device time. Needs torch in the same interpreter (the device's
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
    n_dec = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    m = qwen3moe.load(path, device="cuda", n_ctx=depth + max(p, 1) + n_dec + 64)
    rng = np.random.default_rng(0)
    toks = rng.integers(1, 1000, size=max(p, n_dec, 1) + depth).astype(np.int32).tolist()
    m.reset()
    m.forward(toks[:max(p, 1)], logits="none")  # warm-up
    for t in toks[:n_dec]:
        m.decode(t, logits="last")
    m.reset()
    if depth:
        m.forward(toks[-depth:], logits="none")
    elif not p:
        m.forward(toks[:1], logits="none")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        if p:
            m.forward(toks[:p], logits="none")
        for t in toks[:n_dec]:
            m.decode(t, logits="last")
    # Wall time per decode step outside the profiler (host launch cost included).
    import time
    dev_sync = qwen3moe._core.cuda_synchronize
    dev_sync(0)
    t0 = time.perf_counter()
    for t in toks[:n_dec]:
        m.decode(t, logits="last")
    dev_sync(0)
    print(f"decode wall: {(time.perf_counter() - t0) * 1e3 / max(n_dec, 1):.3f} ms/token over {n_dec} steps "
          f"(depth {depth + max(p, 1) + n_dec})")
    avg = prof.key_averages()
    for key in ("self_device_time_total", "self_cuda_time_total", "cuda_time_total"):
        try:  # the column's name depends on the torch version
            print(avg.table(sort_by=key, row_limit=25, max_name_column_width=90))
            break
        except (AttributeError, KeyError, ValueError):
            continue


if __name__ == "__main__":
    main()
