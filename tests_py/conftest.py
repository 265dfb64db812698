"""Shared pytest fixtures: fixture paths, GPU skip logic."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The ../shared folder beside the checkout (or $QWEN3MOE_SHARED)."""
    env = os.environ.get("QWEN3MOE_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def qwen3_tokenizer_dir() -> Path:
    return shared_dir() / "fixtures" / "qwen3-tokenizer"


@pytest.fixture(scope="session")
def qwen3_tokenizer_json() -> Path:
    p = qwen3_tokenizer_dir() / "tokenizer.json"
    if not p.exists():
        pytest.skip(f"real Qwen3 tokenizer fixture not found at {p}")
    return p


def pytest_collection_modifyitems(config, items):
    import qwen3moe

    if qwen3moe.cuda_available():
        return
    reason = "no usable CUDA GPU (qwen3moe.cuda_available() is False)"
    if not qwen3moe._core.built_with_cuda:
        reason = "qwen3moe was built without the CUDA backend"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        # The marker itself, not item.keywords: keywords also hold directory names (a checkout
        # folder named "cuda" would otherwise skip every test).
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
