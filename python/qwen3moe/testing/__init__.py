"""qwen3moe.testing: synthetic qwen3moe GGUF models for tests, benchmarks and study.

    write_model(path, preset_or_config, seed=0, types="Q4_K_M", tokenizer=None, data=None)
    ModelConfig, PRESETS ("tiny", "small", "coder30b")
    float_tensors(preset_or_config, seed)   the exact float source of data="float" files
    default_model_path()                    the embedded default model: the trained
                                            qwen3moe/data/embedded-q4km.gguf when shipped,
                                            else the synthetic tiny one (fixed seed, cached)
    synth_main(argv)                        `qwen3moe synth` command line

The GGUF serializer itself is `qwen3moe.testing.gguf_writer` (streaming, sparse mode).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from .float_source import float_tensors
from .presets import PRESETS, ModelConfig, tensor_specs
from .recipes import RECIPES, SUPPORTED_TYPES
from .writer import model_tensor_types, write_model

__all__ = [
    "ModelConfig",
    "PRESETS",
    "default_model_path",
    "synthetic_default_model_path",
    "float_tensors",
    "model_tensor_types",
    "synth_main",
    "tensor_specs",
    "write_model",
]

# Bump when what write_model produces for a given config/seed changes.
WRITER_FORMAT_VERSION = 2
DEFAULT_MODEL_PRESET = "tiny"
DEFAULT_MODEL_SEED = 1234
DEFAULT_MODEL_TYPES = "Q4_K_M"


def _cache_dir() -> Path:
    env = os.environ.get("QWEN3MOE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "qwen3moe"


def _default_model_key() -> str:
    """Hash of everything the default model's bytes depend on: package version, writer format,
    the preset, seed and types, the built-in vocab and the quantisers' output on a probe."""
    import numpy as np

    from .. import __version__, hf_tokenizer, quant
    from .writer import _unwrap

    h = hashlib.sha256()
    h.update(json.dumps([__version__, WRITER_FORMAT_VERSION, DEFAULT_MODEL_PRESET, DEFAULT_MODEL_SEED,
                         DEFAULT_MODEL_TYPES]).encode())
    h.update(PRESETS[DEFAULT_MODEL_PRESET].fingerprint().encode())
    vocab = hf_tokenizer.builtin_byte_vocab()
    for k in sorted(vocab):
        h.update(k.encode())
        h.update(repr(_unwrap(vocab[k])).encode())
    probe = np.sin(np.arange(256, dtype=np.float32) * 0.37).reshape(1, 256) * np.float32(0.05)
    for t in ("Q4_K", "Q6_K"):
        h.update(np.asarray(quant.quantize(probe, t), dtype=np.uint8).tobytes())
    return h.hexdigest()[:16]


EMBEDDED_MODEL = Path(__file__).resolve().parent.parent / "data" / "embedded-q4km.gguf"


def default_model_path() -> str:
    """Path of the embedded default model: the trained model shipped as package data
    (qwen3moe/data/embedded-q4km.gguf, see data/README.md) when present; otherwise the synthetic
    `tiny` preset (seed 1234, Q4_K_M, built-in vocab), written on first use to $QWEN3MOE_CACHE
    or ~/.cache/qwen3moe/ (atomically: temp file + rename) and returned as is on later calls."""
    if EMBEDDED_MODEL.is_file():
        return str(EMBEDDED_MODEL)
    return synthetic_default_model_path()


def synthetic_default_model_path() -> str:
    """Path of the synthetic default model (`tiny`, seed 1234, Q4_K_M), cached as described in
    default_model_path."""
    from .. import __version__

    d = _cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{DEFAULT_MODEL_PRESET}-{__version__}-{_default_model_key()}.gguf"
    if not path.is_file():
        write_model(path, DEFAULT_MODEL_PRESET, seed=DEFAULT_MODEL_SEED, types=DEFAULT_MODEL_TYPES)
    return str(path)


def synth_main(argv: list[str] | None = None) -> int:
    """`qwen3moe synth OUT --preset tiny|small|coder30b [--seed N] [--types T] [--tokenizer PATH]
    [--data float|random|sparse] [-q]`; returns the exit status (2 for bad arguments)."""
    ap = argparse.ArgumentParser(prog="qwen3moe synth", description="Write a synthetic qwen3moe GGUF model.")
    ap.add_argument("out", help="output .gguf path")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--types", default="Q4_K_M",
                    help=f"recipe ({', '.join(RECIPES)}), a single type ({', '.join(SUPPORTED_TYPES)}) "
                         "or PATTERN=TYPE,PATTERN=TYPE (globs over tensor names)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (or its directory); default: built-in vocab")
    ap.add_argument("--data", choices=("float", "random", "sparse"), default=None,
                    help="tensor data (default: random for coder30b, else float)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        path = write_model(args.out, args.preset, seed=args.seed, types=args.types,
                           tokenizer=args.tokenizer, data=args.data, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as e:
        print(f"qwen3moe synth: error: {e}", file=sys.stderr)
        return 2
    size = os.path.getsize(path)
    print(f"wrote {path} ({size / 2**30:.2f} GiB)" if size >= 2**30 else f"wrote {path} ({size / 2**20:.2f} MiB)")
    return 0
