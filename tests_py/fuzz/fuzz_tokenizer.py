"""atheris (libFuzzer for Python) target: the pure-Python tokenizer on arbitrary input.

Input bytes: the first byte picks the mode, the rest is the payload.
  * encode: payload decoded as UTF-8 (invalid bytes -> surrogateescape, so lone surrogates
    reach encode too); encode(special=True/False) must return ids in range, or raise
    ValueError for text that is not valid Unicode; decode(encode(s)) == NFC(s) for text
    without added-token text (segments are normalised one by one, so the property is exact
    there); decode_stream pieces concatenate to decode.
  * decode: payload read as little-endian uint32 ids (some out of range): decode must give a
    str or raise ValueError naming the id; the incremental decoder agrees with decode.
Any other exception, or a broken property, is a crash (atheris reports it with the input).

    bench/fuzz.sh tokenizer 60            # or: python3 tests_py/fuzz/fuzz_tokenizer.py CORPUS
"""
from __future__ import annotations

import struct
import sys
import unicodedata

import atheris

with atheris.instrument_imports():
    import qwen3moe.hf_tokenizer  # noqa: F401  (instrumented: the vocabulary builder)
    import qwen3moe.pretokenizer  # noqa: F401
    from _fuzz_common import load_tokenizer, say
    from qwen3moe.tokenizer import IncrementalDecoder

TOK, KIND = load_tokenizer()
N = TOK.vocab_size
ADDED = [t for t in TOK._added_ids]  # added-token texts: the round trip is exact without them


def check_encode(text: str, special: bool) -> None:
    try:
        ids = TOK.encode(text, special=special)
    except ValueError:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return  # lone surrogate: rejected with a clear ValueError, as documented
        raise
    assert all(isinstance(i, int) and 0 <= i < N for i in ids), ids
    out = TOK.decode(ids)
    if not any(a in text for a in ADDED):  # one segment: normalised as a whole
        assert out == unicodedata.normalize("NFC", text), (text, ids, out)
    assert "".join(TOK.decode_stream(ids)) == out


def check_decode(raw: bytes) -> None:
    n = len(raw) // 4
    ids = [v % (N + 8) for v in struct.unpack(f"<{n}I", raw[: 4 * n])]
    try:
        full = TOK.decode(ids)
    except ValueError as e:
        assert any(i >= N for i in ids) and "out of range" in str(e), (ids, e)
        return
    dec = IncrementalDecoder(TOK)
    assert "".join(dec.feed(i) for i in ids) + dec.flush() == full, ids
    skip = TOK.decode(ids, skip_special=True)
    assert isinstance(skip, str)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode, payload = data[0] % 4, data[1:]
    if mode < 3:
        text = payload.decode("utf-8", "surrogateescape")
        check_encode(text, special=(mode == 1))
        if mode == 2:  # also through the added-token path with text mixed in
            check_encode("<|im_start|>" + text + "<|im_end|>", special=True)
    else:
        check_decode(payload)


def main() -> None:
    say(f"tokenizer fuzz target: {KIND} vocabulary, {N} ids")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
