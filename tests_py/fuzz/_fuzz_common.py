"""Shared setup of the atheris fuzz targets (tests_py/fuzz/fuzz_*.py).

The tokenizer under test is the real Qwen3 vocabulary (../shared/fixtures/qwen3-tokenizer) when
the fixture exists, else the builtin byte-level test vocabulary (qwen3moe.hf_tokenizer), so the
targets run on any checkout. Run them through `bench/fuzz.sh TARGET SECONDS`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _shared_dir() -> Path:
    env = os.environ.get("QWEN3MOE_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def load_tokenizer():
    """(tokenizer, description): the real Qwen3 tokenizer if present, else the builtin vocab."""
    from qwen3moe.hf_tokenizer import builtin_byte_vocab
    from qwen3moe.tokenizer import Tokenizer

    fx = _shared_dir() / "fixtures" / "qwen3-tokenizer"
    if (fx / "tokenizer.json").exists() and os.environ.get("QWEN3MOE_FUZZ_BUILTIN_VOCAB") != "1":
        cfg = fx / "tokenizer_config.json"
        return Tokenizer.from_hf(str(fx / "tokenizer.json"), str(cfg) if cfg.exists() else None), "qwen3"
    return Tokenizer(builtin_byte_vocab()), "builtin"


def say(msg: str) -> None:
    print(f"[fuzz] {msg}", file=sys.stderr, flush=True)
