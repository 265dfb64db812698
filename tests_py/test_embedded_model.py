"""The trained embedded model shipped as package data (qwen3moe/data/embedded-q4km.gguf).

Skipped when the file is absent. Checks: our engine's perplexity on the held-out text sample
(data/heldout_sample.txt, PSF-licensed stdlib source the model did not train on) is within 5%
of the HF float model's figure that scripts/eval_embedded_model.py recorded in
data/embedded-model.json (same windows, same tokens), and `qwen3moe run` with no arguments
prints a plausible Python continuation of `def fibonacci(n):`.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import qwen3moe
from qwen3moe.cli import main as cli_main
from qwen3moe.testing import EMBEDDED_MODEL, default_model_path

DATA = EMBEDDED_MODEL.parent
pytestmark = pytest.mark.skipif(not EMBEDDED_MODEL.is_file(), reason=f"no trained model at {EMBEDDED_MODEL}")


def _eval_module():
    path = Path(__file__).resolve().parents[1] / "scripts" / "eval_embedded_model.py"
    spec = importlib.util.spec_from_file_location("eval_embedded_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_default_model_is_the_embedded_one():
    assert default_model_path() == str(EMBEDDED_MODEL) == qwen3moe.default_model_path()


def test_heldout_perplexity_within_5_percent_of_hf_float():
    figures = json.loads((DATA / "embedded-model.json").read_text(encoding="utf-8"))["sample"]
    text = (DATA / figures["file"]).read_text(encoding="utf-8")
    ev = _eval_module()
    with qwen3moe.load(str(EMBEDDED_MODEL), n_ctx=figures["window"], threads=2) as m:
        toks = m.tokenize(text)
        assert len(toks) == figures["n_tokens"]
        ours = ev.score(ev.engine_logits_fn(m), toks, figures["window"])
    hf = figures["hf_float"]["perplexity"]
    print(f"\nheld-out sample: ours (Q4_K_M, q8) ppl {ours['perplexity']:.3f}, top-1 {ours['top1']:.3f}; "
          f"HF float ppl {hf:.3f}")
    assert abs(ours["perplexity"] / hf - 1) <= 0.05
    # the recorded engine figure is reproduced (the engine is deterministic)
    assert ours["perplexity"] == pytest.approx(figures["ours_q4km_cpu"]["perplexity"], rel=1e-6)


def test_run_without_arguments_continues_python(capsys):
    assert cli_main(["run", "-n", "48", "-t", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("def fibonacci(n):")
    cont = out[len("def fibonacci(n):"):]
    assert cont.strip(), "empty continuation"
    ascii_frac = sum(c.isascii() for c in cont) / len(cont)
    assert ascii_frac >= 0.95, f"continuation is {ascii_frac:.0%} ASCII: {cont!r}"
    assert "return" in cont or "(" in cont, f"no Python-looking continuation: {cont!r}"
