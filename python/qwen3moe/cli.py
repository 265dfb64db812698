"""The `qwen3moe` command line: one entry point, one subcommand per job.

    qwen3moe inspect [FILE]      tensor table and per-type totals of a GGUF file
    qwen3moe synth OUT ...       write a synthetic qwen3moe test model
    qwen3moe run [-m FILE] ...   generate text, streamed (prompt or --chat)

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


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}")
        if v < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
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
    p.add_argument("-c", "--ctx", type=int, default=4096, help="context size in tokens (default: 4096)")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: all)")


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
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus cut in (0, 1] (default: 1)")
    p.add_argument("--min-p", type=_positive(float), default=0.0, help="min-p cut in [0, 1] (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed; same seed, same tokens (default: 0)")
    p.set_defaults(func=_cmd_run)


# ---- main ------------------------------------------------------------------------------

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_run, _add_inspect, _add_synth]


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
    except (GGUFError, UnsupportedTypeError, OutOfMemoryError, FileNotFoundError, ValueError) as e:
        print(f"qwen3moe {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
