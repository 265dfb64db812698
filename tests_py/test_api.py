"""The Python API as a user meets it: names exported from `qwen3moe`, a readable repr, the context
manager and close(), captures indexing and saving, the Jupyter HTML table, docstrings on every
public function, and type annotations good enough that mypy --strict passes on a user script."""
from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import qwen3moe
from _subproc import subprocess_env

PUBLIC_MODULES = ["qwen3moe", "qwen3moe.model", "qwen3moe.compare", "qwen3moe.quant", "qwen3moe.gguf",
                  "qwen3moe.testing", "qwen3moe.bench", "qwen3moe.tokenizer", "qwen3moe.stages"]


@pytest.fixture(scope="module")
def path() -> str:
    return qwen3moe.default_model_path()


def test_top_level_names():
    for name in qwen3moe.__all__:
        assert getattr(qwen3moe, name) is not None, name
    assert qwen3moe.Captures is qwen3moe.model.Captures
    assert qwen3moe.Comparison is type(qwen3moe.compare({}, {}))
    assert issubclass(qwen3moe.GGUFError, ValueError) and issubclass(qwen3moe.OutOfMemoryError, MemoryError)


def test_repr_config_context_manager_close(path):
    with qwen3moe.load(path, n_ctx=64, threads=1) as m:
        text = repr(m)
        cfg = m.config
        n_layer = qwen3moe.inspect(path).metadata["qwen3moe.block_count"]
        assert text.startswith(f"Model(architecture=qwen3moe, layers={n_layer}") and "n_past=0" in text
        assert cfg["n_layer"] == n_layer and cfg["n_ctx"] == 64 and cfg["device"] == "cpu" and cfg["threads"] == 1
        m.forward([1, 2, 3])
        assert "n_past=3" in repr(m)
    assert repr(m).endswith("closed)")
    with pytest.raises(RuntimeError, match="closed"):
        m.forward([1])
    m.close()  # a second close is harmless
    m2 = qwen3moe.load(path, n_ctx=16, threads=1)
    m2.close()
    with pytest.raises(RuntimeError, match="closed"):
        m2.generate("x", max_tokens=1)


def test_captures_indexing_and_save(path, tmp_path):
    with qwen3moe.load(path, n_ctx=64, threads=1) as m:
        r = m.forward(m.tokenize("def f(x):"), capture="all")
        caps = r.captures
        n_tok = r.n_tokens
        n_layer = m.config["n_layer"]
        last = n_layer - 1
        assert caps["moe_ffn_out", last].shape == (n_tok, m.config["n_embd"])
        assert caps["logits"].shape == (n_tok, m.config["vocab_size"])
        assert caps.stages == list(qwen3moe.stages.ALL_STAGES) and caps.layers == list(range(n_layer))
        assert f"{n_tok} tokens" in repr(caps)
        d = caps.to_dict()
        assert isinstance(d, dict) and len(d) == 3 + n_layer * 22
        assert d[("moe_ffn_out", last)] is caps["moe_ffn_out", last]
        out = tmp_path / "caps.npz"
        caps.save(out)
        with np.load(out) as z:
            assert f"moe_ffn_out.{last}" in z.files and "embed" in z.files
            assert np.array_equal(z[f"moe_ffn_out.{last}"], caps["moe_ffn_out", last])
        back = qwen3moe.Captures.load(out)
        assert qwen3moe.compare(caps, back).all_identical
        with pytest.raises(KeyError, match="unknown stage"):
            caps["moe_ffn", last]


def test_comparison_html(path):
    with qwen3moe.load(path, n_ctx=64, threads=1) as a, qwen3moe.load(path, n_ctx=64, activations="f32", threads=1) as b:
        toks = a.tokenize("x = 1")
        cmp = qwen3moe.compare(a.forward(toks, capture=["layer_out"]).captures,
                               b.forward(toks, capture=["layer_out"]).captures)
    n_layer = qwen3moe.inspect(path).metadata["qwen3moe.block_count"]
    html = cmp._repr_html_()
    assert html.count("<tr") == 1 + n_layer and "layer_out" in html
    assert 'style="background' in html  # q8 vs f32 differ: rows are highlighted
    assert repr(cmp).startswith(f"<Comparison {n_layer} pairs")


def _public_callables():
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        names = getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]
        for name in names:
            obj = getattr(mod, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", "").split(".")[0] not in ("qwen3moe", "_core"):
                continue
            yield f"{modname}.{name}", obj
            if inspect.isclass(obj):
                for attr, val in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    fn = val.fget if isinstance(val, property) else getattr(val, "__func__", val)
                    if inspect.isfunction(fn) or isinstance(val, property):
                        yield f"{modname}.{name}.{attr}", fn


def test_docstrings_on_every_public_function():
    seen = list(_public_callables())
    assert len(seen) > 50
    missing = [name for name, obj in seen if not (getattr(obj, "__doc__", None) or "").strip()]
    assert not missing, f"public functions without a docstring: {missing}"


USER_SCRIPT = '''\
"""A user's script: every call below must type-check under mypy --strict and run."""
import numpy as np

import qwen3moe


def main() -> None:
    path: str = qwen3moe.default_model_path()
    info = qwen3moe.inspect(path)
    n_tensors: int = len(info.tensors)
    with qwen3moe.load(path, n_ctx=64, threads=1) as model:
        n_layer: int = model.config["n_layer"]
        ids: list[int] = model.tokenize("def f(x):")
        r = model.forward(ids, capture=["q", "moe_router_indices"], layers=[0, n_layer - 1])
        q: np.ndarray = r.captures["q", n_layer - 1]
        stages: list[str] = r.captures.stages
        assert r.logits is not None
        top: int = int(np.argmax(r.logits))
        text: str = model.generate("Hello", max_tokens=4)
        pieces: list[str] = [p.upper() for p in model.generate("Hello", max_tokens=4, stream=True)]
        with qwen3moe.load(path, n_ctx=64, activations="f32", threads=1) as ref:
            cmp = qwen3moe.compare(r.captures, ref.forward(ids, capture="all").captures)
        worst: float = cmp.min_cosine
        print(n_tensors, q.shape, stages, top, repr(text), len(pieces), worst, cmp.worst(1)[0].stage)
    try:
        qwen3moe.inspect("missing.gguf")
    except (FileNotFoundError, qwen3moe.GGUFError) as e:
        print("error:", e)
    ok: bool = qwen3moe.cuda_available()
    print(ok)


if __name__ == "__main__":
    main()
'''


def test_user_script_type_checks_and_runs(tmp_path):
    pytest.importorskip("mypy")
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    env = subprocess_env()
    pkg_root = Path(qwen3moe.__file__).resolve().parents[1]
    site = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    if pkg_root not in site:
        # Source checkout (PYTHONPATH=python): mypy does not read PYTHONPATH; silence the package's
        # own diagnostics as mypy does for installed packages, so only the user's code is judged.
        env["MYPYPATH"] = str(pkg_root)
        extra = ["--follow-imports=silent"]
    else:
        extra = []
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", *extra, str(script)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                         env=subprocess_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert "error: no such file" in run.stdout
