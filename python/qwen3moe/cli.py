"""The `qwen3moe` command line: one entry point, one subcommand per job.

    qwen3moe inspect [FILE]      tensor table and per-type totals of a GGUF file
    qwen3moe synth OUT ...       write a synthetic qwen3moe test model
    qwen3moe run [-m FILE] ...   generate text, streamed (prompt or --chat)
    qwen3moe parity [-m FILE]    CPU vs CUDA (or vs the float reference) per layer and stage
    qwen3moe bench [-m FILE]     llama-bench-style pp/tg throughput
    qwen3moe convert HF_DIR OUT  Hugging Face Qwen3-MoE checkpoint -> GGUF (Q4_K_M, Q8_0, F32 ...)

With no FILE, commands use the embedded default model (a small synthetic qwen3moe model,
written once to the cache on first use). Bad arguments exit with code 2 and a one-line
message; errors in the work itself (a bad file, say) exit with code 1.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line message and exit code 2 on bad arguments."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _default_model(path: str | None) -> str:
    if path:
        return path
    from .testing import default_model_path

    return str(default_model_path())


# ---- inspect ---------------------------------------------------------------------------


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .gguf import format_table, inspect

    info = inspect(_default_model(args.file))
    print(format_table(info))
    return 0


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="print a GGUF file's tensor table and per-type totals",
        description="Print the tensor table (name, type, shape, MiB) and per-type totals of a "
        "GGUF file. Without FILE, the embedded default model.",
    )
    p.add_argument("file", nargs="?", help="GGUF file (default: the embedded default model)")
    p.set_defaults(func=_cmd_inspect)


# ---- synth -----------------------------------------------------------------------------


def _cmd_synth(args: argparse.Namespace) -> int:
    from .testing import write_model

    types = args.types
    path = write_model(
        args.out,
        args.preset,
        seed=args.seed,
        types=types,
        tokenizer=args.tokenizer,
        data=args.data,
        progress=not args.quiet,
    )
    print(path)
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from .testing import PRESETS

    p = sub.add_parser(
        "synth",
        help="write a synthetic qwen3moe GGUF test model",
        description="Write a complete qwen3moe GGUF (metadata, tokenizer, weights) for tests "
        "and benchmarks. Preset coder30b mirrors the real Qwen3-Coder-30B-A3B Q4_K_M file.",
    )
    p.add_argument("out", help="output .gguf path")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model shape (default: tiny)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--types",
        default="Q4_K_M",
        help="type recipe: Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16, BF16, F32 (default: Q4_K_M)",
    )
    p.add_argument("--tokenizer", default=None, help="Hugging Face tokenizer.json to embed (default: built-in vocab)")
    p.add_argument(
        "--data",
        choices=["float", "random", "sparse"],
        default=None,
        help="weights from seeded floats through our quantisers, fast random blocks, or a sparse "
        "file (table only); default: float for small presets, random for coder30b",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)


# ---- run -------------------------------------------------------------------------------


def _positive(kind, minimum=0):
    """argparse type: a number of `kind` that is >= minimum (a usage error otherwise)."""

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}")
        if v != v or v < minimum:  # v != v: NaN
            raise argparse.ArgumentTypeError(f"must be >= {minimum}: {text!r}")
        return v

    return parse


def _fraction(low_open: bool):
    """argparse type: a float in (0, 1] (low_open) or [0, 1]."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}")
        if not ((0.0 < v <= 1.0) if low_open else (0.0 <= v <= 1.0)):
            raise argparse.ArgumentTypeError(f"must be in {'(0, 1]' if low_open else '[0, 1]'}: {text!r}")
        return v

    return parse


def _load_for_cli(args: argparse.Namespace):
    import time

    from . import load

    path = _default_model(args.model)
    t0 = time.perf_counter()
    model = load(path, device=args.device, n_ctx=args.ctx, threads=args.threads)
    return model, time.perf_counter() - t0


def _stream(model, prompt, args, out) -> dict:
    for piece in model.generate(prompt, max_tokens=args.n, temperature=args.temp, top_k=args.top_k,
                                top_p=args.top_p, min_p=args.min_p, seed=args.seed, stream=True):
        out.write(piece)
        out.flush()
    return dict(model.last_stats or {})


def _timing_line(load_s: float, st: dict) -> str:
    pp = st.get("n_prompt", 0) / st["prompt_seconds"] if st.get("prompt_seconds") else 0.0
    n_dec = max(st.get("n_gen", 0) - 1, 0)
    tg = n_dec / st["gen_seconds"] if st.get("gen_seconds") else 0.0
    return (f"[load {load_s:.2f} s | prompt {st.get('n_prompt', 0)} tokens, {pp:.1f} tok/s | "
            f"generated {st.get('n_gen', 0)} tokens, {tg:.1f} tok/s]")


def _cmd_run(args: argparse.Namespace) -> int:
    out = sys.stdout
    model, load_s = _load_for_cli(args)
    with model:
        if not args.chat:
            prompt = args.prompt if args.prompt is not None else "def fibonacci(n):"
            out.write(prompt)
            out.flush()
            try:
                st = _stream(model, prompt, args, out)
            except KeyboardInterrupt:
                st = dict(model.last_stats or {})
                out.write("\n[interrupted]")
            out.write("\n")
            print(_timing_line(load_s, st), file=sys.stderr)
            return 0
        messages: list[dict] = []
        print("chat mode: type a message; /exit or Ctrl-D to quit", file=sys.stderr)
        while True:
            try:
                user = input("> ")
            except (EOFError, KeyboardInterrupt):
                print(file=sys.stderr)
                return 0
            if user.strip() in ("/exit", "/quit"):
                return 0
            if not user.strip():
                continue
            messages.append({"role": "user", "content": user})
            prompt = model.apply_chat_template(messages, add_generation_prompt=True)
            reply = []

            class _Tee:
                def write(self, s: str) -> None:
                    reply.append(s)
                    out.write(s)

                def flush(self) -> None:
                    out.flush()

            try:
                st = _stream(model, prompt, args, _Tee())
            except KeyboardInterrupt:
                st = dict(model.last_stats or {})
                out.write(" [interrupted]")
            out.write("\n")
            print(_timing_line(load_s, st), file=sys.stderr)
            messages.append({"role": "assistant", "content": "".join(reply)})


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", default=None, help="GGUF file (default: the embedded default model)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="backend (default: cpu)")
    p.add_argument("-c", "--ctx", type=_positive(int, 1), default=4096, help="context size in tokens (default: 4096)")
    p.add_argument("-t", "--threads", type=_positive(int, 1), default=None, help="CPU threads (default: all)")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="generate text, streamed (plain prompt or multi-turn chat)",
        description="Generate text with a qwen3moe model, streaming it as it is produced, then print a "
        "timing line (load, prompt tok/s, decode tok/s) to stderr. Ctrl-C stops generation cleanly.",
    )
    _add_model_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-p", "--prompt", default=None, help="prompt text (default: 'def fibonacci(n):')")
    g.add_argument("--chat", action="store_true", help="interactive chat with the file's chat template (/exit quits)")
    p.add_argument("-n", type=_positive(int), default=64, help="max tokens to generate (default: 64)")
    p.add_argument("--temp", type=_positive(float), default=0.0, help="temperature; 0 = greedy (default: 0)")
    p.add_argument("--top-k", type=_positive(int), default=0, help="top-k cut; 0 = off (default: 0)")
    p.add_argument("--top-p", type=_fraction(True), default=1.0, help="nucleus cut in (0, 1] (default: 1)")
    p.add_argument("--min-p", type=_fraction(False), default=0.0, help="min-p cut in [0, 1] (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed; same seed, same tokens (default: 0)")
    p.set_defaults(func=_cmd_run)


# ---- parity ----------------------------------------------------------------------------


def _stage_list(text: str) -> list[str]:
    from .stages import ALL_STAGES

    stages = [s for s in text.split(",") if s]
    unknown = [s for s in stages if s not in ALL_STAGES]
    if unknown or not stages:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {unknown}; valid: {', '.join(ALL_STAGES)}")
    return stages


def _cmd_parity(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from . import compare, cuda_available, load
    from .stages import ALL_STAGES

    path = _default_model(args.model)
    stages = args.stages or list(ALL_STAGES)
    use_gpu = cuda_available() and not args.cpu_only
    a = load(path, device="cpu", n_ctx=args.ctx, activations="q8", threads=args.threads)
    if use_gpu:
        b = load(path, device="cuda", n_ctx=args.ctx, activations="q8")
        title = "CPU (q8) vs CUDA (q8): the numerics contract says bit-identical"
    else:
        b = load(path, device="cpu", n_ctx=args.ctx, activations="f32", threads=args.threads)
        why = "no usable CUDA GPU" if not args.cpu_only else "--cpu-only"
        title = (f"{why}: CPU q8 engine vs the float reference (activations='f32'); "
                 "differences are the documented 8-bit activation noise")
    toks = a.tokenize(args.prompt, special=True)
    ra = a.forward(toks, capture=stages, logits="all")
    rb = b.forward(toks, capture=stages, logits="all")
    cmp = compare(ra.captures, rb.captures)
    argmax_a = np.argmax(ra.logits, axis=-1)
    argmax_b = np.argmax(rb.logits, axis=-1)
    agree = int(np.sum(argmax_a == argmax_b))
    if args.json:
        print(json.dumps({"title": title, "model": path, "n_tokens": len(toks), "rows": cmp.to_list(),
                          "min_cosine": cmp.min_cosine, "n_diff": cmp.n_diff,
                          "routers_agree": cmp.routers_agree, "argmax_agree": agree}, indent=1))
    else:
        print(title)
        print(f"model: {path}   prompt: {len(toks)} tokens")
        print(cmp)
        bad = [r for r in cmp if r.sets_equal is False]
        routers = ("router top-k sets agree at every layer" if not bad else
                   "router top-k sets differ at layer(s) " +
                   ", ".join(f"{r.layer} (first token {r.first_diff_token})" for r in bad))
        print(f"{routers}; argmax agrees at {agree}/{len(toks)} positions")
    if args.plot:
        _plot_parity(cmp, args.plot, title)
    return 0


def _plot_parity(cmp, out: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    by_stage: dict = {}
    for r in cmp:
        if r.layer is not None and r.sets_equal is None:
            by_stage.setdefault(r.stage, []).append((r.layer, 1.0 - r.cosine))
    for stage, pts in by_stage.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [max(p[1], 1e-16) for p in pts], marker=".", label=stage)
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("1 - cosine (floor 1e-16 = identical)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def _add_parity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "parity",
        help="per-layer, per-stage comparison of CPU and CUDA (or CPU and the float reference)",
        description="Run one prompt through two engines and compare every captured stage of every "
        "layer: cosine, max |diff|, relative L2, differing elements, router and argmax agreement. "
        "With a GPU: CPU vs CUDA. Without one: the CPU q8 engine vs the float reference (f32 mode).",
    )
    _add_model_args(p)
    p.add_argument("--prompt", default="def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
                   help="prompt text")
    p.add_argument("--stages", type=_stage_list, default=None, help="comma-separated stage names (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="also plot 1-cos per layer and stage")
    p.add_argument("--cpu-only", action="store_true", help="compare against the float reference even with a GPU")
    p.set_defaults(func=_cmd_parity)


# ---- bench -----------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals or any(v < 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return vals


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import format_results, run_bench, to_json

    need = max(args.depth) + max(max(args.p), max(args.n))
    from . import load

    path = _default_model(args.model)
    model = load(path, device=args.device, n_ctx=max(args.ctx, need), threads=args.threads)
    with model:
        res = run_bench(model, n_prompt=args.p, n_gen=args.n, depths=args.depth, repetitions=args.r,
                        progress=None if args.json else (lambda m: print(m, file=sys.stderr)))
    print(to_json(res) if args.json else format_results(res))
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="llama-bench-style prompt (pp) and generation (tg) throughput",
        description="Benchmark prompt processing (pp) and token generation (tg), optionally after a "
        "filled context (--depth). One warm-up run, then -r timed runs; mean ± std tok/s. "
        "JSON output uses llama-bench's field names.",
    )
    _add_model_args(p)
    p.add_argument("-p", type=_int_list, default=[512], help="prompt sizes, comma-separated (default: 512)")
    p.add_argument("-n", type=_int_list, default=[128], help="generation lengths, comma-separated (default: 128)")
    p.add_argument("--depth", type=_int_list, default=[0], help="context depths, comma-separated (default: 0)")
    p.add_argument("-r", type=_positive(int, 1), default=5, help="timed repetitions (default: 5)")
    p.add_argument("--json", action="store_true", help="print JSON (llama-bench fields)")
    p.set_defaults(func=_cmd_bench)


# ---- convert ---------------------------------------------------------------------------


def _cmd_convert(args: argparse.Namespace) -> int:
    import os

    from .convert import convert

    path = convert(args.hf_dir, args.out, type=args.type, type_map=args.type_map, progress=not args.quiet)
    print(f"wrote {path} ({os.path.getsize(path) / 2**20:.2f} MiB)")
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    from .convert import CONVERT_TYPES

    p = sub.add_parser(
        "convert",
        help="convert a Hugging Face Qwen3-MoE checkpoint directory to GGUF",
        description="Convert a Hugging Face Qwen3MoeForCausalLM directory (config.json, *.safetensors, "
        "tokenizer.json, tokenizer_config.json) to a qwen3moe GGUF file, streaming tensor by tensor.",
    )
    p.add_argument("hf_dir", help="Hugging Face model directory")
    p.add_argument("out", help="output .gguf path")
    p.add_argument("--type", type=str.upper, choices=CONVERT_TYPES, default="Q4_K_M",
                   help="type recipe (default: Q4_K_M)")
    p.add_argument("--type-map", default=None, metavar="GLOB=TYPE,...",
                   help="per-tensor overrides, e.g. '*ffn_down_exps*=Q8_0,output=Q8_0'")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_convert)


# ---- main ------------------------------------------------------------------------------

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_run, _add_parity, _add_bench, _add_inspect, _add_synth,
                                                                 _add_convert]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="qwen3moe",
        description="Run, inspect and test the Qwen3 mixture-of-experts LLM from GGUF files.",
    )
    parser.add_argument("--version", action="version", version=f"qwen3moe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from . import GGUFError, OutOfMemoryError, UnsupportedTypeError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (GGUFError, UnsupportedTypeError, OutOfMemoryError, OSError, ValueError, IndexError, RuntimeError) as e:
        # Errors in the work itself (bad file, no GPU, out of memory): one line, exit code 1.
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"qwen3moe {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
