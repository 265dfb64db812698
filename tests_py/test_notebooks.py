"""The notebooks run top to bottom (with nbclient, in a fresh kernel that imports the same
qwen3moe as this test), use only the public API, and are committed with their outputs cleared."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from _subproc import subprocess_env

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["per_layer_cosine.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_with_outputs_cleared_and_public_api_only(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear the outputs before committing"
            # public API only: no private modules or names (qwen3moe._core, model._core, ...)
            assert not re.search(r"\b_core\b|qwen3moe\.\w*\._|qwen3moe\._", cell.source), cell.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_runs_top_to_bottom(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute(env=subprocess_env(MPLBACKEND="module://matplotlib_inline.backend_inline"))
    elapsed = time.perf_counter() - t0
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # per-layer 1-cos, router heat map, drill-down
    text = "".join(o.get("text", "") for o in outputs)
    assert "comparing the CPU" in text
    assert any("text/html" in o.get("data", {}) and "<table>" in o.data["text/html"] for o in outputs)
    assert elapsed < 60, f"notebook took {elapsed:.1f} s"
