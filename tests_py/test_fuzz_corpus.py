"""Replays the committed fuzz corpora (tests_py/fuzz/corpus-*) through the atheris targets'
checks, so every input a fuzzer once crashed on (and every seed) stays a regression test in the
ordinary pytest run. Skipped without atheris (`pip install atheris`; CI installs it)."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"


@pytest.fixture(scope="module")
def targets():
    pytest.importorskip("atheris")
    sys.path.insert(0, str(FUZZ))
    try:
        yield {"tokenizer": importlib.import_module("fuzz_tokenizer"),
               "chat": importlib.import_module("fuzz_chat_template")}
    finally:
        sys.path.remove(str(FUZZ))


@pytest.mark.parametrize("name", ["tokenizer", "chat"])
def test_corpus_replays_clean(targets, name):
    files = sorted((FUZZ / f"corpus-{name}").iterdir())
    assert len(files) >= 5
    for f in files:
        targets[name].TestOneInput(f.read_bytes())


def test_chat_template_python_errors_become_chat_template_error():
    # Found by fuzz_chat_template (mode 3): Python exceptions raised by template code escaped
    # render_chat_template as TypeError/AttributeError/...; the template is untrusted file data.
    from qwen3moe.chat_template import ChatTemplateError, render_chat_template

    for src in ("{{ 1 + 'a' }}", "{{ messages[0].content + 1 }}", "{{ (1).bit_length(1, 2) }}", "{{ 1 / 0 }}"):
        with pytest.raises(ChatTemplateError):
            render_chat_template(src, [{"role": "user", "content": "hi"}])
