"""q8 mode against llama.cpp (PyPI llama-cpp-python, CPU) on the same Q4_K_M test GGUF.

Both engines quantise activations to 8-bit 256-blocks for K-quant products and keep an f16 KV
cache, so they should agree closely: logits cos >= 0.999 at every position of 8 prompts and
the same argmax at >= 99% of positions.
"""
from __future__ import annotations

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

import qwen3moe  # noqa: E402
from qwen3moe.testing import write_model  # noqa: E402

PROMPTS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "The quick brown fox jumps over the lazy dog.",
    "import numpy as np\nx = np.arange(10)\nprint(x.sum())",
    "for (int i = 0; i < n; ++i) { total += a[i] * b[i]; }",
    "SELECT name, count(*) FROM users GROUP BY name ORDER BY 2 DESC;",
    "Once upon a time, in a land far away, there lived a curious engineer.",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144",
]


@pytest.fixture(scope="module")
def q4km_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama") / "small-q4km.gguf"
    write_model(path, "small", seed=11, types="Q4_K_M")
    return path


def _cos(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_q8_logits_match_llama_cpp(q4km_path):
    ours = qwen3moe.load(str(q4km_path), activations="q8", n_ctx=256)
    llm = llama_cpp.Llama(model_path=str(q4km_path), n_ctx=256, logits_all=True, n_threads=2,
                          n_gpu_layers=0, verbose=False, seed=0)
    worst = 1.0
    agree = total = 0
    for prompt in PROMPTS:
        toks = ours.tokenize(prompt)
        assert toks == llm.tokenize(prompt.encode(), add_bos=False, special=False)
        ours.reset()
        mine = ours.forward(toks, logits="all").logits
        llm.reset()
        llm.eval(toks)
        theirs = np.array(llm.scores[: len(toks)], dtype=np.float32)
        assert mine.shape == theirs.shape
        for pos in range(len(toks)):
            c = _cos(mine[pos], theirs[pos])
            worst = min(worst, c)
            assert c >= 0.999, f"prompt {prompt!r} position {pos}: logits cos {c:.6f} < 0.999"
            agree += int(np.argmax(mine[pos]) == np.argmax(theirs[pos]))
            total += 1
    print(f"\nllama.cpp vs q8: min logits cos {worst:.6f}, argmax agreement {agree}/{total}")
    assert agree >= 0.99 * total, f"argmax agreement {agree}/{total} < 99%"
