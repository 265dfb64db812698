"""Timeline of the fused decode step, kernel by kernel, with programmatic dependent launch on:
`python3 bench/dec_timeline.py MODEL.gguf [depth] [n_steps] [--json OUT]`.

Records n_steps decode steps (default 16) after `depth` tokens of context through torch.profiler's
CUPTI hook (nsys is not installed on the device), and prints for each kernel of a layer (by its
position in the step) the medians over layers and steps of:
  dur     its own start-to-end time,
  gap     its start minus the previous kernel's end (negative: it overlapped its predecessor),
  marg    its end minus the previous kernel's end (what it adds to the step),
plus the step's span (first kernel start to last end) and the wall time per step outside the
profiler. The marginal times are what a change to one kernel can win."""
import json
import statistics
import sys
import tempfile
import time

import numpy as np
import torch  # noqa: F401  (CUPTI via torch.profiler)
from torch.profiler import ProfilerActivity, profile

import qwen3moe


def short(name: str) -> str:
    n = name.replace("(anonymous namespace)::", "").split("(")[0].split("<")[0]
    return n.replace("void ", "").split("::")[-1]


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out_json = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    if out_json in args:
        args.remove(out_json)
    path = args[0]
    depth = int(args[1]) if len(args) > 1 else 0
    n_steps = int(args[2]) if len(args) > 2 else 16
    m = qwen3moe.load(path, device="cuda", n_ctx=depth + n_steps + 64)
    rng = np.random.default_rng(0)
    toks = rng.integers(1, 1000, size=depth + n_steps + 1).astype(np.int32).tolist()
    m.reset()
    m.forward(toks[: max(depth, 1)], logits="none")
    for t in toks[:4]:  # warm-up: graph capture
        m.decode(t, logits="last")
    m.reset()
    m.forward(toks[: max(depth, 1)], logits="none")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for t in toks[:n_steps]:
            m.decode(t, logits="last")
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        prof.export_chrome_trace(f.name)
        trace = json.load(open(f.name))
    ev = sorted((e for e in trace["traceEvents"] if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    # Steps start at the embedding kernel.
    steps, cur = [], []
    for e in ev:
        if "embed" in e["name"] and cur:
            steps.append(cur)
            cur = []
        cur.append(e)
    if cur:
        steps.append(cur)
    rows = {}
    spans = []
    for st in steps:
        spans.append(st[-1]["ts"] + st[-1]["dur"] - st[0]["ts"])
        prev_end = st[0]["ts"] + st[0]["dur"]
        names = [short(e["name"]) for e in st[1:]]
        n_layer = names.count(names[0])  # the first kernel of a layer runs once per layer
        per_layer = names.index(names[0], 1) if n_layer > 1 else len(names)
        body = n_layer * per_layer  # the layers' kernels, then the LM head's
        for i, e in enumerate(st[1:], 1):
            end = e["ts"] + e["dur"]
            key = (f"{(i - 1) % per_layer}:" if i <= body else "tail:") + names[i - 1]
            r = rows.setdefault(key, {"dur": [], "gap": [], "marg": [], "first": i})
            r["dur"].append(e["dur"])
            r["gap"].append(e["ts"] - prev_end)
            r["marg"].append(end - prev_end)
            prev_end = max(prev_end, end)
    med = statistics.median
    def wall(mode: str, sync: bool = False) -> float:  # host wall time per step, outside the profiler
        m.reset()
        m.forward(toks[: max(depth, 1)], logits="none")
        qwen3moe._core.cuda_synchronize()
        t0 = time.perf_counter()
        for t in toks[:n_steps]:
            m.decode(t, logits=mode)
            if sync:
                qwen3moe._core.cuda_synchronize()
        qwen3moe._core.cuda_synchronize()
        return (time.perf_counter() - t0) / n_steps * 1e6

    # "none" lets the host queue steps ahead (pure GPU time); "none" + a sync per step exposes
    # the launch latency; "last" adds the LM head and the logits copy.
    wall_last, wall_none, wall_sync = wall("last"), wall("none"), wall("none", True)
    res = {"depth": depth, "steps": len(steps), "span_us": med(spans), "wall_us_per_step": wall_last,
           "wall_us_per_step_no_logits": wall_none, "wall_us_per_step_no_logits_synced": wall_sync,
           "decode_path": m.decode_path, "kernels": {}}
    print(f"depth {depth}: {len(steps)} steps, span median {med(spans):.1f} us, wall {wall_last:.1f} us/step "
          f"(no logits: {wall_none:.1f}, synced: {wall_sync:.1f}); {m.decode_path}")
    print(f"{'kernel':34s} {'n/step':>6s} {'dur':>7s} {'gap':>7s} {'marg':>7s} {'marg/step':>9s}")
    for k, r in sorted(rows.items(), key=lambda kv: kv[1]["first"]):
        n = len(r["dur"]) / max(1, len(steps))
        d = {"per_step": n, "dur": med(r["dur"]), "gap": med(r["gap"]), "marg": med(r["marg"]),
             "marg_sum_per_step": sum(r["marg"]) / max(1, len(steps))}
        res["kernels"][k] = d
        print(f"{k[:34]:34s} {n:6.1f} {d['dur']:7.2f} {d['gap']:7.2f} {d['marg']:7.2f} {d['marg_sum_per_step']:9.1f}")
    if out_json:
        json.dump(res, open(out_json, "w"), indent=1)


if __name__ == "__main__":
    main()
