"""The `qwen3moe` command line: one entry point, one subcommand per job.

    qwen3moe inspect [FILE]      tensor table and per-type totals of a GGUF file
    qwen3moe synth OUT ...       write a synthetic qwen3moe test model
    qwen3moe run [-m FILE] ...   generate text (streamed)

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


# ---- main ------------------------------------------------------------------------------

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_inspect, _add_synth]


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
