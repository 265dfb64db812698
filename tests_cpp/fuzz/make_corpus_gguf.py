"""Regenerates the seed corpus of fuzz-gguf (tests_cpp/fuzz/corpus-gguf/): small valid files
(v3 with every value type, v2, a GGUFWriter file) and a few malformed ones from the hostile
test cases. Run from the repository root: PYTHONPATH=python python3 tests_cpp/fuzz/make_corpus_gguf.py"""
from __future__ import annotations

import os
import sys
import tempfile

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(root, "tests_py"))
from _gguf_builder import F32, GGUF, Q4_K, STRING, UINT32, valid_small  # noqa: E402
import test_gguf_hostile  # noqa: E402
import test_gguf_reader  # noqa: E402

out = os.path.join(root, "tests_cpp", "fuzz", "corpus-gguf")
os.makedirs(out, exist_ok=True)


def save(name: str, data: bytes) -> None:
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


save("valid-small-v3", valid_small().build())
g = valid_small()
g.version = 2
save("valid-small-v2", g.build())
g = GGUF()
g.kv("general.architecture", STRING, "qwen3moe").kv("qwen3moe.block_count", UINT32, 1)
g.tensor("a", [8], F32).tensor("b", [256, 1], Q4_K)
save("valid-minimal", g.build())
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "w.gguf")
    test_gguf_reader.write_file(p, 32)
    with open(p, "rb") as f:
        save("valid-gguf-writer", f.read())
for name, data, _ in test_gguf_hostile.CASES:
    if name in ("n_kv 2^64-1", "array count 2^64-1", "nested arrays depth 9", "ne product wraps",
                "overlapping tensors (partial)", "misaligned offset", "alignment 3", "duplicate key",
                "wrong type tokenizer.ggml.token_type", "tensor bytes fewer than type x shape need"):
        save("invalid-" + "".join(c if c.isalnum() else "-" for c in name), data)
print(sorted(os.listdir(out)))
