"""Every example in README.md runs: each ```python block (as a script) and each command line of
each ```bash block, in order, in one scratch directory, on the embedded default model.

Two kinds of lines are not run, by design:
  * `bash scripts/test.sh` -- it is the test suite itself (this test is part of it);
  * `pip install .` (and `pip install ".[extra]"`, any options): installing the checkout. The
    test uses the package that is already installed -- the very one this test imports -- in its
    place; a line such as `pip install . && qwen3moe run` runs its `qwen3moe run` part.
`qwen3moe`, `python` and `python3` are put first on PATH as small wrappers around this test's
interpreter, so the commands run the same qwen3moe whether it is pip-installed or a source
checkout on PYTHONPATH. ```text blocks are illustrations and are not run."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from _subproc import subprocess_env

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)

# The set-up block CI and users copy from; it must stay exactly as it is.
SETUP_BLOCK = """```bash
# 1. the main job: install, then generate text with the embedded default model (a small trained qwen3moe)
pip install . && qwen3moe run

# 2. the whole test suite (Catch2 + pytest; installs what it needs)
bash scripts/test.sh
```"""


def blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(README.read_text()) if kind == lang]


def _is_local_install(segment: str) -> bool:
    """`pip install .`, `python -m pip install ".[test]" -C...`: installs this checkout."""
    words = shlex.split(segment, comments=True)
    while words and words[0] in ("python", "python3", "-m"):
        words = words[1:]
    if words[:2] != ["pip", "install"]:
        return False
    targets = [w for w in words[2:] if not w.startswith("-")]
    return bool(targets) and all(t == "." or t.startswith(".[") for t in targets)


def shell_commands() -> list[str]:
    """Command lines of the ```bash blocks: continuation lines joined, comment lines dropped,
    the test-suite line and local installs removed (see the module docstring)."""
    out = []
    for body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line == "bash scripts/test.sh":
                continue
            parts = [p.strip() for p in line.split("&&")]
            kept = [p for p in parts if not _is_local_install(p)]
            if kept:
                out.append(" && ".join(kept))
    return out


COMMANDS = shell_commands()
PYTHON_BLOCKS = blocks("python")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Scratch directory shared by the commands (run in README order) plus the PATH wrappers."""
    import qwen3moe

    qwen3moe.default_model_path()  # written once here, not by the first command
    d = tmp_path_factory.mktemp("readme")
    bin_dir = d / "bin"
    bin_dir.mkdir()
    wrappers = {"qwen3moe": f'exec "{sys.executable}" -m qwen3moe "$@"',
                "python": f'exec "{sys.executable}" "$@"', "python3": f'exec "{sys.executable}" "$@"'}
    for name, body in wrappers.items():
        p = bin_dir / name
        p.write_text(f"#!/bin/sh\n{body}\n")
        p.chmod(0o755)
    run_dir = d / "run"
    run_dir.mkdir()
    env = subprocess_env()
    env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
    return run_dir, env


def test_setup_block_unchanged():
    assert SETUP_BLOCK in README.read_text()


def test_examples_found():
    assert len(PYTHON_BLOCKS) >= 2
    assert "qwen3moe run" in COMMANDS  # the set-up block's command, without its `pip install .`
    assert not [c for c in COMMANDS if "pip install" in c or "scripts/test.sh" in c]
    for sub in ("run", "parity", "bench", "inspect", "synth"):
        assert any(c.startswith(f"qwen3moe {sub}") for c in COMMANDS), sub


def test_local_install_detection():
    assert _is_local_install("pip install .")
    assert _is_local_install('pip install ".[test]"')
    assert _is_local_install("pip install . -Ccmake.define.QWEN3MOE_CUDA=OFF")
    assert _is_local_install("python -m pip install -q .")
    assert _is_local_install("pip install .   # builds the core, it's quick")
    assert not _is_local_install("pip install numpy")
    assert not _is_local_install("qwen3moe run")


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"python-{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_block(code, workdir):
    run_dir, env = workdir
    script = run_dir / "readme_block.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], cwd=run_dir, env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, f"README python block failed:\n{code}\n--- stderr ---\n{r.stderr}"


@pytest.mark.parametrize("command", COMMANDS, ids=[c[:60] for c in COMMANDS])
def test_shell_command(command, workdir):
    run_dir, env = workdir
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=run_dir, env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"README command failed: {command}\n--- stderr ---\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
