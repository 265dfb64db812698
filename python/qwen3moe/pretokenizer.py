"""Pre-tokenization for byte-level BPE: NFC normalisation and the Qwen2 / GPT-2 split regex.

Design: Hugging Face `tokenizers` (the reference) runs the split regex with Oniguruma, whose
character tables are Unicode 16.0. The `regex` module follows the newest Unicode, so its
\\p{L}/\\p{N} may also match letters assigned later (Unicode 17.0 in regex 2026.x), or miss
16.0 ones in an old release. Exact and fast together:
  * the native pattern (\\p{L}, \\p{N}) is used for text that holds no "deviant" character;
  * deviant characters are those whose \\p{L}/\\p{N} membership in the installed `regex`
    differs from the frozen Unicode 16.0 tables in `_unicode_classes.py`; they are found once
    per process (one regex pass over all code points, ~0.1 s, on first non-ASCII text);
  * text containing one is split with an equivalent pattern built from the frozen tables
    (slower: ~10x on non-ASCII characters, so it is used only where needed).
Splitting follows HF's "Isolated" behaviour: every match and every gap between matches is a word.
"""
from __future__ import annotations

import array
import functools
import unicodedata

import regex  # type: ignore[import-untyped,unused-ignore]

from ._unicode_classes import LETTER_RANGES, NUMBER_RANGES

__all__ = ["PRE_TOKENIZERS", "PreTokenizer"]

# name -> (pattern template, NFC normalisation). Atoms: {L} one letter, {N} one number,
# {X} one char that is not \r, \n, letter or number, {Y} one char that is not \s, letter or number.
_QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|{X}?{L}+|{N}| ?{Y}+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?{L}+| ?{N}+| ?{Y}+|\s+(?!\S)|\s+"
PRE_TOKENIZERS = {"qwen2": (_QWEN2, True), "gpt2": (_GPT2, False), "default": (_GPT2, False)}

_NATIVE_ATOMS = {"L": r"\p{L}", "N": r"\p{N}", "X": r"[^\r\n\p{L}\p{N}]", "Y": r"[^\s\p{L}\p{N}]"}


def _parse_ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split():
        lo, _, hi = item.partition("-")
        out.append((int(lo, 16), int(hi or lo, 16)))
    return out


def _class_body(ranges: list[tuple[int, int]]) -> str:
    # Larger ranges first: the regex module tests a big set's ranges in order.
    ordered = sorted(ranges, key=lambda r: (r[0] - r[1], r[0]))
    return "".join(f"\\U{a:08X}" + (f"-\\U{b:08X}" if b != a else "") for a, b in ordered)


def _exact_atoms() -> dict[str, str]:
    # ASCII is decided by cheap ASCII classes; only non-ASCII characters consult the tables.
    lr = [r for r in _parse_ranges(LETTER_RANGES) if r[0] >= 0x80]
    nr = [r for r in _parse_ranges(NUMBER_RANGES) if r[0] >= 0x80]
    lb, nb = _class_body(lr), _class_body(nr)
    nonascii = r"(?=[^\x00-\x7f])"
    return {
        "L": rf"(?:[A-Za-z]|{nonascii}[{lb}])",
        "N": rf"(?:[0-9]|{nonascii}[{nb}])",
        "X": rf"(?:[^\r\nA-Za-z0-9\x80-\U0010FFFF]|{nonascii}[^{lb}{nb}])",
        "Y": rf"(?:[^\sA-Za-z0-9\x80-\U0010FFFF]|{nonascii}[^\s{lb}{nb}])",
    }


@functools.lru_cache(maxsize=None)
def _compiled(pre: str, exact: bool) -> "regex.Pattern[str]":
    template = PRE_TOKENIZERS[pre][0]
    atoms = _exact_atoms() if exact else _NATIVE_ATOMS
    return regex.compile(template.replace("{L}", atoms["L"]).replace("{N}", atoms["N"])
                         .replace("{X}", atoms["X"]).replace("{Y}", atoms["Y"]))


def _spans_to_set(spans: list[tuple[int, int]]) -> set[int]:
    out: set[int] = set()
    for a, b in spans:
        out.update(range(a, b + 1))
    return out


@functools.lru_cache(maxsize=None)
def deviant_chars() -> frozenset[str]:
    """Characters whose \\p{L}/\\p{N} class in the installed `regex` differs from Unicode 16.0."""
    every = array.array("I", range(0x110000)).tobytes().decode("utf-32-le", "surrogatepass")
    native: dict[str, list[tuple[int, int]]] = {"L": [], "N": []}
    for m in regex.finditer(r"(\p{L}+)|(\p{N}+)", every):
        native["L" if m.group(1) else "N"].append((m.start(), m.end() - 1))
    frozen = {"L": _parse_ranges(LETTER_RANGES), "N": _parse_ranges(NUMBER_RANGES)}
    dev: set[int] = set()
    for k in ("L", "N"):
        if native[k] != frozen[k]:
            dev |= _spans_to_set(native[k]) ^ _spans_to_set(frozen[k])
    return frozenset(chr(c) for c in dev)


class PreTokenizer:
    """Normalise (NFC for "qwen2") and split text into BPE words, exactly as HF tokenizers does."""

    def __init__(self, pre: str):
        """`pre` is a GGUF `tokenizer.ggml.pre` name: "qwen2", "gpt2" or "default" (GPT-2)."""
        if pre not in PRE_TOKENIZERS:
            raise ValueError(
                f"tokenizer.ggml.pre {pre!r} is not supported (supported: {', '.join(sorted(PRE_TOKENIZERS))})"
            )
        self.pre = pre
        self.nfc = PRE_TOKENIZERS[pre][1]
        self._native = _compiled(pre, False)

    def normalize(self, text: str) -> str:
        """NFC for the Qwen2 pre-tokenizer; GPT-2 has no normaliser."""
        return unicodedata.normalize("NFC", text) if self.nfc else text

    def split(self, text: str) -> list[str]:
        """Words of (already normalised) `text`; their concatenation is `text`."""
        if text.isascii() or deviant_chars().isdisjoint(text):
            pattern = self._native
        else:
            pattern = _compiled(self.pre, True)
        words = []
        pos = 0
        for m in pattern.finditer(text):
            s, e = m.span()
            if s > pos:
                words.append(text[pos:s])
            if e > s:
                words.append(text[s:e])
            pos = e
        if pos < len(text):
            words.append(text[pos:])
        return words
