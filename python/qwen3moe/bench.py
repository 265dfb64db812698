"""llama-bench-style benchmarks: `qwen3moe bench FILE [-p 512] [-n 128] [--depth 0,4096] [-r 5]`.

Tests, for each depth d (tokens already in the KV cache before the timed work):
  pp<P> @ d<d>   prompt processing: one forward of P tokens after d tokens of context
  tg<N> @ d<d>   text generation: N single-token decode steps after d tokens of context

Each test runs once untimed (warm-up), then `repetitions` timed runs; the context fill is never
timed. On CUDA each sample is the time between two CUDA events on the model's stream (recorded
after the queued context fill and after the timed work); on the CPU a monotonic clock. Results
carry the fields llama-bench writes (n_prompt, n_gen, n_depth, avg_ns, stddev_ns, avg_ts,
stddev_ts, samples_ns, samples_ts, ...), plus the medians (median_ns, median_ts), so the two can
be tabled side by side.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


@dataclass
class BenchResult:
    """One test's figures, with llama-bench's field names."""

    model_filename: str
    model_type: str
    model_size: int
    model_n_params: int
    backends: str
    gpu_info: str
    cpu_info: str
    driver: str
    n_threads: int
    type_k: str
    type_v: str
    n_prompt: int
    n_gen: int
    n_depth: int
    test_time: str
    avg_ns: int
    stddev_ns: int
    avg_ts: float
    stddev_ts: float
    samples_ns: list = field(default_factory=list)
    samples_ts: list = field(default_factory=list)
    peak_vram_bytes: int = 0
    peak_rss_bytes: int = 0
    timer: str = ""
    median_ns: int = 0
    median_ts: float = 0.0
    decode_path: str = ""

    @property
    def name(self) -> str:
        """llama-bench's test name, e.g. "pp512", "tg128 @ d4096"."""
        t = f"pp{self.n_prompt}" if self.n_prompt else f"tg{self.n_gen}"
        return t + (f" @ d{self.n_depth}" if self.n_depth else "")


def _peak_rss() -> int:
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except Exception:  # pragma: no cover - non-POSIX
        return 0


def _cpu_info() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _tokens(n: int, vocab: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, size=n).tolist()


def run_bench(
    model: Any,
    n_prompt: Sequence[int] = (512,),
    n_gen: Sequence[int] = (128,),
    depths: Sequence[int] = (0,),
    repetitions: int = 5,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Run pp/tg tests on a loaded model; returns one BenchResult per (test, depth)."""
    cfg = model.config
    vocab = int(cfg["vocab_size"])
    timer = model._timer()  # callable(fn) -> elapsed seconds of fn's device work
    results: list[BenchResult] = []

    def fill(depth: int) -> None:
        model.reset()
        if depth:
            model.forward(_tokens(depth, vocab, 1), logits="none")

    tests = [(p, 0) for p in n_prompt if p > 0] + [(0, g) for g in n_gen if g > 0]
    for depth in depths:
        for p, g in tests:
            need = depth + p + g
            if need > model.n_ctx:
                raise ValueError(f"test needs {need} tokens of context but the model was loaded with n_ctx={model.n_ctx}")
            toks = _tokens(max(p, g), vocab, 2)

            def work() -> None:
                # As llama-bench: the LM head runs for the last token of each step and the
                # logits reach host memory.
                if p:
                    model.forward(toks[:p], logits="last")
                else:
                    for t in toks[:g]:
                        model.decode(t, logits="last")

            samples = []
            for rep in range(repetitions + 1):
                fill(depth)
                sec = timer(work)
                if rep > 0:  # the first run is the warm-up
                    samples.append(sec)
                if progress:
                    progress(f"{'pp' if p else 'tg'}{p or g} @ d{depth}: run {rep}/{repetitions}")
            ns = [int(s * 1e9) for s in samples]
            ts = [(p or g) / s for s in samples]
            results.append(
                BenchResult(
                    model_filename=os.path.basename(model.path),
                    model_type=model.describe_type(),
                    model_size=int(model.weights_bytes),
                    model_n_params=int(model.n_params),
                    backends="CUDA" if model.device == "cuda" else "CPU",
                    gpu_info=model.device_name() if model.device == "cuda" else "",
                    cpu_info=_cpu_info(),
                    driver=model.driver_version() if model.device == "cuda" else "",
                    n_threads=int(model.threads),
                    type_k=model.kv_type,
                    type_v=model.kv_type,
                    n_prompt=p,
                    n_gen=g,
                    n_depth=depth,
                    test_time=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    avg_ns=int(statistics.mean(ns)),
                    stddev_ns=int(statistics.stdev(ns)) if len(ns) > 1 else 0,
                    avg_ts=statistics.mean(ts),
                    stddev_ts=statistics.stdev(ts) if len(ts) > 1 else 0.0,
                    samples_ns=ns,
                    samples_ts=ts,
                    peak_vram_bytes=int(model.peak_vram_bytes()) if model.device == "cuda" else 0,
                    peak_rss_bytes=_peak_rss(),
                    timer="cuda-events" if model.device.startswith("cuda") else "perf_counter",
                    median_ns=int(statistics.median(ns)),
                    median_ts=statistics.median(ts),
                    decode_path=model.decode_path,
                )
            )
    return results


def format_results(results: Sequence[BenchResult]) -> str:
    """A llama-bench-like markdown table."""
    if not results:
        return "(no tests)"
    r0 = results[0]
    head = f"model: {r0.model_filename} ({r0.model_type}, {r0.model_size / 2**30:.2f} GiB, " \
           f"{r0.model_n_params / 1e9:.2f} B params) | backend: {r0.backends}" + \
           (f" ({r0.gpu_info}, driver {r0.driver})" if r0.gpu_info else f" ({r0.cpu_info}, {r0.n_threads} threads)")
    lines = [head, "", "| test | t/s (mean ± std) | t/s (median) | samples |", "| --- | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r.name} | {r.avg_ts:.2f} ± {r.stddev_ts:.2f} | {r.median_ts:.2f} | {len(r.samples_ts)} |")
    lines.append(f"\ntimer: {r0.timer}; decode: {results[-1].decode_path}")
    peak = max(r.peak_vram_bytes for r in results)
    if peak:
        lines.append(f"\npeak VRAM: {peak / 2**30:.2f} GiB")
    lines.append(f"peak RSS: {max(r.peak_rss_bytes for r in results) / 2**30:.2f} GiB")
    return "\n".join(lines)


def to_json(results: Sequence[BenchResult]) -> str:
    """Results as a JSON array of objects with llama-bench's field names."""
    return json.dumps([asdict(r) for r in results], indent=2)


def perf_counter_timer(fn: Callable[[], None]) -> float:
    """Seconds of wall time spent in fn (CPU backend)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
