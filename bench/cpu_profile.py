"""Where the CPU time goes, per op kind: `python3 bench/cpu_profile.py MODEL.gguf --threads 16`.

Uses the engine's own op profiler (_core.profile_enable / profile_read; steady-clock scopes
around every backend call of the forward, child scopes inside the MoE block, and the thread
pool's per-region statistics), so no external profiler is needed. For a P-token prefill and for
single-token decode steps (logits="last", so the LM head is included; the bench's tg excludes
it) it prints, per op kind summed over layers:

  ms        wall time per step (prefill: per forward; decode: per token)
  %         share of the step's wall time
  GB/s      weight bytes the op read / its wall time (matvec ops only; experts: the routed ones)
  regions   thread-pool parallel regions per step
  eff       busy thread time / (threads x region wall time): 1.0 = every thread busy all the time
  imbal     slowest thread's chunk time / mean chunk time (1.0 = perfectly balanced)
  wake_us   mean latency from publishing a region to the last worker that took a chunk of it starting
  ovh_ms    region wall time not spent in the slowest chunk (publish, wake-up, join), per step

Then (unless --no-variants) the decode/prefill speed under each setting of the CPU tuning knobs
(_core.cpu_tuning_set), so one run on the target machine also picks the settings.
--json FILE writes everything as JSON as well.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

try:  # the installed package, else the source tree (an in-place build: python/qwen3moe/_core*.so)
    import qwen3moe  # noqa: E402
    from qwen3moe import _core as _probe  # noqa: E402,F401
except ImportError:
    sys.modules.pop("qwen3moe", None)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import qwen3moe  # noqa: E402
from qwen3moe import _core  # noqa: E402


def cpu_name() -> str:
    """Model name from /proc/cpuinfo (or the platform string)."""
    from qwen3moe.bench import _cpu_info

    return _cpu_info() or platform.machine()


def thp_mode() -> str:
    """The kernel's transparent huge page setting (e.g. "always [madvise] never")."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def rss_gib() -> float:
    """Resident set size of this process (GiB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def profiled(fn) -> tuple[list[dict], float]:
    """Run fn() once with the profiler on: its counters and its wall time (s)."""
    _core.profile_reset()
    _core.profile_enable(True)
    t0 = time.perf_counter()
    try:
        fn()
    finally:
        wall = time.perf_counter() - t0
        _core.profile_enable(False)
    return _core.profile_read(), wall


def table(rows: list[dict], wall_s: float, steps: int, title: str) -> list[dict]:
    """Print one phase's per-op table; returns the per-step figures."""
    # a parent's bytes are its children's
    for r in rows:
        if r["parent"] is None:
            kids = [c for c in rows if c["parent"] == r["op"]]
            if kids and not r["bytes"]:
                r["bytes"] = sum(c["bytes"] for c in kids)
    wall_ms = wall_s * 1e3 / steps
    top = sum(r["ns"] for r in rows if r["parent"] is None) / 1e6 / steps
    print(f"\n== {title}: {wall_ms:.3f} ms per step (ops {top:.3f} ms, outside ops {wall_ms - top:.3f} ms) ==")
    print(f"{'op':<18}{'ms':>9}{'%':>7}{'GB/s':>8}{'calls':>7}{'regions':>8}{'eff':>6}{'imbal':>7}"
          f"{'wake_us':>8}{'ovh_ms':>8}")
    out = []
    for r in rows:
        if not r["calls"]:
            continue
        ms = r["ns"] / 1e6 / steps
        gbs = r["bytes"] / r["ns"] if r["ns"] and r["bytes"] else 0.0
        nreg = r["regions"]
        eff = r["busy_ns"] / (r["region_ns"] * (r["region_threads"] / nreg)) if nreg and r["region_ns"] else 0.0
        imbal = (r["busy_max_ns"] / (r["busy_ns"] / (r["region_threads"] / nreg))) if nreg and r["busy_ns"] else 0.0
        wake = r["wake_ns"] / nreg / 1e3 if nreg else 0.0
        ovh = (r["region_ns"] - r["busy_max_ns"]) / 1e6 / steps
        name = ("  " if r["parent"] else "") + r["op"]
        print(f"{name:<18}{ms:>9.3f}{100 * ms / wall_ms:>7.1f}{gbs:>8.1f}{r['calls'] / steps:>7.0f}"
              f"{nreg / steps:>8.0f}{eff:>6.2f}{imbal:>7.2f}{wake:>8.2f}{ovh:>8.3f}")
        out.append({"op": r["op"], "parent": r["parent"], "ms": ms, "pct": 100 * ms / wall_ms, "gb_s": gbs,
                    "calls": r["calls"] / steps, "regions": nreg / steps, "eff": eff, "imbal": imbal,
                    "wake_us": wake, "overhead_ms": ovh, "bytes": r["bytes"] / steps})
    return out


def timed(m, toks: list[int], p: int, n_dec: int, reps: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s without LM head), best of reps (the bench's tg uses logits="none")."""
    pp, tg = [], []
    for _ in range(reps):
        m.reset()
        t0 = time.perf_counter()
        m.forward(toks[:p], logits="none")
        pp.append(p / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for t in toks[p:p + n_dec]:
            m.decode(t, logits="none")
        tg.append(n_dec / (time.perf_counter() - t0))
    return max(pp), max(tg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", "-t", type=int, default=None, help="CPU threads (default: all)")
    ap.add_argument("--prompt", "-p", type=int, default=64, help="prefill tokens (default 64)")
    ap.add_argument("--decode", "-n", type=int, default=16, help="decode steps per repetition (default 16)")
    ap.add_argument("--reps", "-r", type=int, default=2, help="profiled repetitions (default 2)")
    ap.add_argument("--no-variants", action="store_true", help="skip the tuning-knob comparison")
    ap.add_argument("--thread-variants", default="8,12",
                    help="also time these thread counts with the default tuning (comma list; '' = none)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = ap.parse_args()

    t0 = time.perf_counter()
    m = qwen3moe.load(a.model, device="cpu", threads=a.threads, n_ctx=a.prompt + a.decode + 64)
    hp = m._core.hparams()
    n_vocab = int(hp["n_vocab"])
    n_threads = m.threads
    print(f"model {a.model}: {hp['n_layer']} layers, load {time.perf_counter() - t0:.2f} s; threads {m.threads}; "
          f"simd {_core.quant_simd_level()}; cpu {cpu_name()} ({os.cpu_count()} logical CPUs); "
          f"tuning {_core.cpu_tuning()}; THP {thp_mode()}")
    rng = np.random.default_rng(0)
    toks = rng.integers(1, min(n_vocab, 20000), size=a.prompt + a.decode).astype(np.int64).tolist()
    # warm-up: touches (page-faults) the weights the profiled runs read
    t0 = time.perf_counter()
    m.reset()
    m.forward(toks[:a.prompt], logits="last")
    for t in toks[a.prompt:a.prompt + a.decode]:
        m.decode(t, logits="last")
    print(f"warm-up {time.perf_counter() - t0:.2f} s")

    def prefill() -> None:
        m.forward(toks[:a.prompt], logits="last")

    def decode() -> None:
        for t in toks[a.prompt:a.prompt + a.decode]:
            m.decode(t, logits="last")

    report: dict = {"model": a.model, "threads": m.threads, "simd": _core.quant_simd_level(), "cpu": cpu_name(),
                    "tuning": _core.cpu_tuning()}
    pre_wall = dec_wall = 0.0
    pre_acc: list[dict] = []
    dec_acc: list[dict] = []
    for _ in range(a.reps):
        m.reset()
        r, w = profiled(prefill)
        pre_acc.append(r)
        pre_wall += w
        r, w = profiled(decode)  # decode continues from the prefill's KV cache
        dec_acc.append(r)
        dec_wall += w

    def merge(acc: list[list[dict]]) -> list[dict]:
        out = [dict(r) for r in acc[0]]
        for rows in acc[1:]:
            for o, r in zip(out, rows):
                for k, v in r.items():
                    if isinstance(v, int) and not isinstance(v, bool):
                        o[k] += v
        return out

    pre_rows, dec_rows = merge(pre_acc), merge(dec_acc)
    report["prefill"] = table(pre_rows, pre_wall, a.reps, f"prefill of {a.prompt} tokens (per forward)")
    report["prefill_ms"] = pre_wall * 1e3 / a.reps
    report["decode"] = table(dec_rows, dec_wall, a.reps * a.decode,
                             f"decode (per token, logits=last, KV depth {a.prompt}..{a.prompt + a.decode})")
    report["decode_ms"] = dec_wall * 1e3 / (a.reps * a.decode)
    lm = next((r["ms"] for r in report["decode"] if r["op"] == "lm_head"), 0.0)
    print(f"\nprefill {a.prompt / (report['prefill_ms'] / 1e3):.1f} tok/s; decode {1e3 / report['decode_ms']:.2f} tok/s "
          f"with LM head, ~{1e3 / (report['decode_ms'] - lm):.2f} tok/s without (the bench's tg)")

    if not a.no_variants:
        base = _core.cpu_tuning()
        variants = [dict(base)]
        for k, vals in _core.cpu_tuning_choices().items():
            for v in vals:
                if v != base[k]:
                    variants.append({**base, k: v})
        # knobs read at load (weights_copy) need their own model: group the variants by them
        variants.sort(key=lambda v: v.get("weights_copy", 0) != base.get("weights_copy", 0))
        print(f"\n== tuning variants (pp{a.prompt} / tg{a.decode} tok/s, best of 2, logits=none) ==")
        report["variants"] = []
        loaded_copy = base.get("weights_copy", 0)
        for var in variants:
            for k, v in var.items():
                _core.cpu_tuning_set(k, v)
            if var.get("weights_copy", 0) != loaded_copy:
                m.close()
                t0 = time.perf_counter()
                m = qwen3moe.load(a.model, device="cpu", threads=a.threads, n_ctx=a.prompt + a.decode + 64)
                print(f"(reloaded with weights_copy={var['weights_copy']}: {time.perf_counter() - t0:.2f} s; "
                      f"transparent huge pages: {thp_mode()}; RSS now {rss_gib():.2f} GiB)")
                loaded_copy = var["weights_copy"]
                timed(m, toks, a.prompt, a.decode, 1)  # warm-up
            pp, tg = timed(m, toks, a.prompt, a.decode, 2)
            print(f"{json.dumps(var):<60} pp {pp:8.2f}  tg {tg:7.2f}", flush=True)
            report["variants"].append({"tuning": var, "pp": pp, "tg": tg})
        for k, v in base.items():
            _core.cpu_tuning_set(k, v)
        tv = [int(x) for x in a.thread_variants.split(",") if x.strip()]
        if tv:
            m.close()
            report["thread_variants"] = []
            print(f"\n== thread counts (default tuning {base}) ==")
            for th in tv + [n_threads]:
                mt = qwen3moe.load(a.model, device="cpu", threads=th, n_ctx=a.prompt + a.decode + 64)
                timed(mt, toks, a.prompt, a.decode, 1)  # warm-up (pool spin-up)
                pp, tg = timed(mt, toks, a.prompt, a.decode, 2)
                mt.close()
                print(f"threads {th:>3}: pp {pp:8.2f}  tg {tg:7.2f}", flush=True)
                report["thread_variants"].append({"threads": th, "pp": pp, "tg": tg})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
