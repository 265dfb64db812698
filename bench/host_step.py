"""Where the host time of a CUDA decode step goes: `python3 bench/host_step.py MODEL.gguf [n_steps]`.

The bench's tg loop calls `Model.decode(t, logits="last")` once per token, and each call returns
only after the logits are in host memory, so the host's work between two steps is not hidden by
the GPU. This times, per step (medians of 5 runs of n_steps, default 128, at depth 0), wall clock:
  queued      decode(logits="none") back to back, one sync at the end (the GPU's own rate)
  synced      decode(logits="none") + a device sync per step
  last        decode(logits="last") (the bench's loop)
  core_last   the extension's forward directly (no Python wrapper, no ForwardResult)
  core_none_s the extension's forward with logits="none" + a sync (no Python wrapper)
and host-only costs: a 151,936-float array allocated and filled from another, and the wrapper's
Python work. Prints one JSON object."""
import json
import statistics
import sys
import time

import numpy as np

import qwen3moe


def main() -> None:
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    m = qwen3moe.load(path, device="cuda", n_ctx=n + 64)
    core = m._live()
    sync = qwen3moe._core.cuda_synchronize
    toks = list(range(1, n + 1))
    arrs = [np.array([t], dtype=np.int64) for t in toks]

    def run(fn, per_step_sync=False) -> float:
        vals = []
        for _ in range(6):
            m.reset()
            m.forward([1], logits="none")
            sync()
            t0 = time.perf_counter()
            for i in range(n):
                fn(i)
                if per_step_sync:
                    sync()
            sync()
            vals.append((time.perf_counter() - t0) / n * 1e6)
        return statistics.median(vals[1:])

    res = {
        "queued": run(lambda i: m.decode(toks[i], logits="none")),
        "synced": run(lambda i: m.decode(toks[i], logits="none"), True),
        "last": run(lambda i: m.decode(toks[i], logits="last")),
        "core_last": run(lambda i: core.forward(arrs[i], [], [], "last")),
        "core_none_s": run(lambda i: core.forward(arrs[i], [], [], "none"), True),
        "sync_only": run(lambda i: None, True),
    }
    src = np.ones(m.config["vocab_size"], dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(1000):
        a = np.empty_like(src)
        a[:] = src
    res["host_alloc_copy_logits"] = (time.perf_counter() - t0) / 1000 * 1e6
    res["decode_path"] = m.decode_path
    print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in res.items()}))


if __name__ == "__main__":
    main()
