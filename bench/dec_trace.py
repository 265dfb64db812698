"""Phase trace of the fused decode step's kernels (one layer): `python3 bench/dec_trace.py
MODEL.gguf [depth] [n_steps] [--json OUT]`.

Sets QWEN3MOE_CUDA_DEC_TRACE=1 (the kernels' thread 0 of each block stamps %globaltimer and the SM
clock at fixed phase marks, decode-ops.h), runs `depth` tokens of context and n_steps decode
steps, and prints for the last layer of the last step, per kernel and mark, the time after the
first kernel's wait (µs) at which the first / median / last block passed the mark, and the
median per-block time since the previous mark from the SM clock (µs at `--ghz`, default 1.98).
The values are the same as without the trace."""
import json
import os
import sys

import numpy as np

os.environ["QWEN3MOE_CUDA_DEC_TRACE"] = "1"
import qwen3moe  # noqa: E402

KERNELS = [
    ("norm+q/k/v", ["start", "wait", "norm", "staged", "end"]),
    ("attention", ["start", "wait", "q/k rope", "scores", "sync1+m", "values", "sync2", "end"]),
    ("o-proj", ["start", "wait", "quantise", "staged", "end"]),
    ("router", ["start", "wait", "norm", "staged", "logits", "gathered", "top-k", "end"]),
    ("gate/up", ["start", "wait", "staged", "dots", "gathered", "end"]),
    ("down", ["start", "wait", "staged", "dots", "end"]),
]


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out_json = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    ghz = float(sys.argv[sys.argv.index("--ghz") + 1]) if "--ghz" in sys.argv else 1.98
    args = [a for a in args if a not in (out_json, str(ghz))]
    path, depth = args[0], int(args[1]) if len(args) > 1 else 0
    n_steps = int(args[2]) if len(args) > 2 else 8
    m = qwen3moe.load(path, device="cuda", n_ctx=depth + n_steps + 64)
    toks = np.random.default_rng(0).integers(1, 1000, size=depth + n_steps + 1).tolist()
    m.forward(toks[: max(depth, 1)], logits="none")
    for t in toks[:n_steps]:
        m.decode(t, logits="last")
    tr = m._live().decode_trace()
    if tr is None:
        sys.exit(f"no trace: {m.decode_path}")
    tr = tr.astype(np.int64)  # [kernel, block, mark, (ns, clock)]
    t0 = None
    res = {"depth": depth, "decode_path": m.decode_path, "kernels": {}}
    for k, (name, marks) in enumerate(KERNELS):
        ns, clk = tr[k, :, :, 0], tr[k, :, :, 1]
        live = ns[:, 0] > 0
        if not live.any():
            continue
        if t0 is None:
            t0 = ns[live, 1].min()
        print(f"{name}: {int(live.sum())} blocks")
        rows = []
        for j, mk in enumerate(marks):
            have = live & (ns[:, j] > 0)
            if not have.any():
                continue
            t = (ns[have, j] - t0) / 1e3
            d = (clk[have, j] - clk[have, j - 1]) / (ghz * 1e3) if j else np.zeros(1)
            row = {"mark": mk, "blocks": int(have.sum()), "first_us": float(t.min()),
                   "median_us": float(np.median(t)), "last_us": float(t.max()),
                   "phase_median_us": float(np.median(d))}
            rows.append(row)
            print(f"  {mk:10s} {row['blocks']:4d}  first {row['first_us']:8.2f}  median {row['median_us']:8.2f}"
                  f"  last {row['last_us']:8.2f}  phase {row['phase_median_us']:6.2f}")
        res["kernels"][name] = rows
    if out_json:
        json.dump(res, open(out_json, "w"), indent=1)


if __name__ == "__main__":
    main()
