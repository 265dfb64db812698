"""Shared pytest fixtures: fixture paths, GPU skip logic."""
from __future__ import annotations

from pathlib import Path

import pytest
from _fixtures import qwen3_tokenizer_dir


@pytest.fixture(scope="session")
def qwen3_tokenizer_json() -> Path:
    d = qwen3_tokenizer_dir()
    if d is None:
        pytest.skip("real Qwen3 tokenizer fixture not found (../shared/fixtures/qwen3-tokenizer)")
    return d / "tokenizer.json"


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
