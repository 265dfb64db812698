"""Where the tests find ../shared (the real Qwen3 tokenizer fixture); one place for every test."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The ../shared folder beside the checkout (or $QWEN3MOE_SHARED)."""
    env = os.environ.get("QWEN3MOE_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def qwen3_tokenizer_dir() -> Path | None:
    """The folder holding the real tokenizer.json + tokenizer_config.json, or None when absent.
    $QWEN3MOE_SHARED may name the shared folder or the tokenizer folder itself."""
    candidates = [shared_dir() / "fixtures" / "qwen3-tokenizer"]
    env = os.environ.get("QWEN3MOE_SHARED")
    if env:
        candidates.append(Path(env))
    for c in candidates:
        if (c / "tokenizer.json").is_file() and (c / "tokenizer_config.json").is_file():
            return c
    return None
