"""Writes the seed corpora of the atheris targets (corpus-tokenizer/, corpus-chat/): a few inputs
per mode, so the fuzzers start from every code path. Deterministic; re-run to regenerate.

    python3 tests_py/fuzz/make_corpus.py
"""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent

TEXTS = [
    "def f(x):\n    return x * 2\n", "Hello, world! 123 4567", "caf\u00e9 cafe\u0301 \uac00\u1100\u1161",
    "\U0001F9D1\U0001F3FF emoji", "  \t\n\n  trailing   ", "<think>\nok\n</think>", "\u4f60\u597d\uff0c\u4e16\u754c",
    "don't I'll we've", "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd", "x" * 300,
]


def seeds_tokenizer() -> list[bytes]:
    out = []
    for i, t in enumerate(TEXTS):
        out.append(bytes([i % 3]) + t.encode("utf-8"))
    out.append(bytes([0]) + b"\xff\xfe invalid \xc3( utf8 \xed\xa0\x80")
    out.append(bytes([1]) + b"<|im_start|>user\nhi<|im_end|>")
    out.append(bytes([3]) + struct.pack("<8I", 0, 1, 255, 256, 151643, 151644, 151668, 0xFFFFFFFF))
    out.append(bytes([3]) + struct.pack("<4I", 0xF0, 0x9F, 0x98, 0x80))
    return out


def seeds_chat() -> list[bytes]:
    out = []
    for i in range(3):
        out.append(bytes([i]) + hashlib.sha256(str(i).encode()).digest() * 4)
    templates = [
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
        "{{ messages[0].content | tojson }}{{ raise_exception('x') if messages|length > 5 }}",
        "{% generation %}{{ strftime_now('%Y') }}{% endgeneration %}",
        "{{ messages.append(1) }}", "{% if %}", "{{ 1 + 'a' }}", "{{ ''.__class__ }}",
        "{% for i in range(3) %}{{ loop.index }}{% break %}{% endfor %}",
    ]
    out += [bytes([3]) + t.encode() for t in templates]
    return out


def write(name: str, seeds: list[bytes]) -> None:
    d = HERE / f"corpus-{name}"
    d.mkdir(exist_ok=True)
    for s in seeds:
        (d / hashlib.sha1(s).hexdigest()).write_bytes(s)


if __name__ == "__main__":
    write("tokenizer", seeds_tokenizer())
    write("chat", seeds_chat())
