"""Tokenizer tests: our pure-Python byte-level BPE against Hugging Face `tokenizers`.

Oracle: HF `tokenizers` on the real Qwen3 tokenizer.json (shared fixtures), and on an HF
tokenizer built from our built-in vocabulary. Also: round trips, streaming decode, errors,
GGUF metadata conversion and chat-template rendering (vs a jinja2 render with HF's settings
written here, and vs hand-checked strings).
"""
from __future__ import annotations

import json
import random
import time
import unicodedata

import jinja2
import jinja2.ext
import pytest
from _fixtures import qwen3_tokenizer_dir
from jinja2.sandbox import ImmutableSandboxedEnvironment

from qwen3moe.chat_template import ChatTemplateError, render_chat_template
from qwen3moe.hf_tokenizer import BUILTIN_CHAT_TEMPLATE, builtin_byte_vocab, gguf_tokenizer_metadata
from qwen3moe.pretokenizer import PreTokenizer, deviant_chars
from qwen3moe.tokenizer import IncrementalDecoder, Tokenizer, bytes_to_unicode
from tokenizer_corpus import build_corpus

QWEN2_HF_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


FIXTURES = qwen3_tokenizer_dir()
needs_fixtures = pytest.mark.skipif(
    FIXTURES is None,
    reason="Qwen3 tokenizer fixtures not found (<repo>/../shared/fixtures/qwen3-tokenizer or $QWEN3MOE_SHARED)",
)


def _hf():
    return pytest.importorskip("tokenizers", reason="Hugging Face `tokenizers` (test oracle) is not installed")


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return build_corpus()


@pytest.fixture(scope="module")
def qwen_md() -> dict:
    if FIXTURES is None:
        pytest.skip("Qwen3 tokenizer fixtures not found")
    return gguf_tokenizer_metadata(
        str(FIXTURES / "tokenizer.json"), str(FIXTURES / "tokenizer_config.json"), vocab_size=151936
    )


@pytest.fixture(scope="module")
def tok(qwen_md) -> Tokenizer:
    return Tokenizer(qwen_md)


@pytest.fixture(scope="module")
def hf_tok():
    tokenizers = _hf()
    if FIXTURES is None:
        pytest.skip("Qwen3 tokenizer fixtures not found")
    return tokenizers.Tokenizer.from_file(str(FIXTURES / "tokenizer.json"))


_HF_FLAGGED: dict = {}


def _hf_with_flags(control_ids: set[int]):
    """HF tokenizer from the fixture whose added tokens are special exactly for `control_ids`."""
    key = frozenset(control_ids)
    if key not in _HF_FLAGGED:
        tokenizers = _hf()
        tj = json.loads((FIXTURES / "tokenizer.json").read_text(encoding="utf-8"))
        for at in tj["added_tokens"]:
            at["special"] = at["id"] in control_ids
        _HF_FLAGGED[key] = tokenizers.Tokenizer.from_str(json.dumps(tj))
    return _HF_FLAGGED[key]


# ------------------------------------------------------------------------------ corpus vs HF


def test_corpus_is_large_and_deterministic(corpus):
    assert len(corpus) >= 500
    assert build_corpus() == corpus
    assert len(set(corpus)) > 480


@needs_fixtures
def test_encode_special_matches_hf(tok, hf_tok, corpus):
    t0 = time.perf_counter()
    ours = [tok.encode(s, special=True) for s in corpus]
    t_ours = time.perf_counter() - t0
    theirs = [e.ids for e in hf_tok.encode_batch(corpus, add_special_tokens=False)]
    bad = [(s, a, b) for s, a, b in zip(corpus, ours, theirs) if a != b]
    print(f"\n[tokenizer] corpus: {len(corpus)} strings, {sum(map(len, corpus))} chars; "
          f"our encode {t_ours:.3f} s")
    assert not bad, f"{len(bad)} of {len(corpus)} differ; first: {bad[0][0]!r}\n ours {bad[0][1]}\n hf   {bad[0][2]}"


@needs_fixtures
def test_encode_plain_matches_hf_split_special_tokens(qwen_md, tok, hf_tok, corpus):
    # 1) Types as HF flags them (added non-special -> user-defined) against HF's own
    #    split_special_tokens (encode_special_tokens), which still matches non-special added tokens.
    hf_special = {i for i, at in hf_tok.get_added_tokens_decoder().items() if at.special}
    types = list(qwen_md["tokenizer.ggml.token_type"])
    for i, at in hf_tok.get_added_tokens_decoder().items():
        types[i] = 3 if at.special else 4
    t_hf_flags = Tokenizer(dict(qwen_md, **{"tokenizer.ggml.token_type": types}))
    hf_tok.encode_special_tokens = True
    try:
        theirs = [e.ids for e in hf_tok.encode_batch(corpus, add_special_tokens=False)]
    finally:
        hf_tok.encode_special_tokens = False
    bad = [s for s, b in zip(corpus, theirs) if t_hf_flags.encode(s, special=False) != b]
    assert not bad, f"{len(bad)} differ, first {bad[0]!r}"
    assert len(hf_special) == 14

    # 2) Default (llama.cpp-style) types: <|fim_pad|> etc. are control, so the HF oracle is told so.
    control = {i for i, ty in enumerate(qwen_md["tokenizer.ggml.token_type"]) if ty == 3}
    assert control > hf_special
    hf2 = _hf_with_flags(control)
    hf2.encode_special_tokens = True
    try:
        theirs2 = [e.ids for e in hf2.encode_batch(corpus, add_special_tokens=False)]
    finally:
        hf2.encode_special_tokens = False
    n_with_special_text = 0
    for s, b in zip(corpus, theirs2):
        ours = tok.encode(s, special=False)
        assert ours == b, repr(s)
        assert not control.intersection(ours), f"control id produced with special=False for {s!r}"
        if "<|" in s:
            n_with_special_text += 1
    assert n_with_special_text >= 20


@needs_fixtures
def test_special_false_splits_control_text(tok):
    s = "<|im_start|>user\nhi<|im_end|>"
    plain = tok.encode(s, special=False)
    assert 151644 not in plain and 151645 not in plain
    assert tok.decode(plain) == s
    assert tok.encode(s, special=True)[0] == 151644
    # user-defined tokens are matched either way (as in HF and llama.cpp)
    assert tok.encode("<think>", special=False) == [151667]


@needs_fixtures
def test_round_trip(tok, corpus):
    for s in corpus:
        nfc = unicodedata.normalize("NFC", s)
        assert tok.decode(tok.encode(s, special=True)) == nfc, repr(s)
        assert tok.decode(tok.encode(s, special=False)) == nfc, repr(s)


@needs_fixtures
def test_decode_matches_hf(tok, hf_tok, corpus):
    for s in corpus:
        ids = tok.encode(s, special=True)
        assert tok.decode(ids) == hf_tok.decode(ids, skip_special_tokens=False), repr(s)
    # skip_special: HF skips tokens flagged special; give it our control set.
    control = {i for i in range(151669) if tok.is_special(i)}
    hf = _hf_with_flags(control)
    for s in corpus:
        ids = tok.encode(s, special=True)
        assert tok.decode(ids, skip_special=True) == hf.decode(ids, skip_special_tokens=True), repr(s)


@needs_fixtures
def test_decode_random_ids_matches_hf_lossy(tok, hf_tok):
    # Random ids split UTF-8 characters anywhere; both must replace the same bytes by U+FFFD.
    rng = random.Random(7)
    byte_ids = [tok.token_to_id(u) for u in bytes_to_unicode().values()]
    for _ in range(400):
        n = rng.randint(1, 24)
        ids = [rng.choice(byte_ids) if rng.random() < 0.5 else rng.randrange(151669) for _ in range(n)]
        full = tok.decode(ids)
        assert full == hf_tok.decode(ids, skip_special_tokens=False), ids
        pieces = list(tok.decode_stream(ids))
        assert "".join(pieces) == full, ids


@needs_fixtures
def test_incremental_decoding(tok, corpus):
    for s in corpus:
        ids = tok.encode(s, special=True)
        pieces = list(tok.decode_stream(ids))
        full = tok.decode(ids)
        assert "".join(pieces) == full, repr(s)
        for p in pieces:
            p.encode("utf-8")  # a str piece with a split character would hold a surrogate / fail
            if "\ufffd" not in s:
                assert "\ufffd" not in p, f"split character in piece {p!r} of {s!r}"
    # An emoji's bytes arrive over several tokens: nothing is emitted until it is complete.
    ids = tok.encode("\U0001F9D1\U0001F3FF")  # two 4-byte characters
    dec = IncrementalDecoder(tok)
    out = [dec.feed(i) for i in ids]
    assert "".join(out) + dec.flush() == "\U0001F9D1\U0001F3FF"
    assert all(o in ("", "\U0001F9D1", "\U0001F3FF", "\U0001F9D1\U0001F3FF") for o in out)
    # An incomplete character at the end comes out as U+FFFD on flush (as the full decode does).
    lead = tok.token_to_id(bytes_to_unicode()[0xF0])
    dec = IncrementalDecoder(tok)
    assert dec.feed(lead) == ""
    assert dec.flush() == "\ufffd" == tok.decode([lead])


@needs_fixtures
def test_unicode_classes_match_hf(hf_tok):
    # Every character whose class differs between the installed `regex` module and Unicode
    # 16.0, every boundary of the frozen tables, and a stride sample of all code points.
    from qwen3moe._unicode_classes import LETTER_RANGES, NUMBER_RANGES

    cps = {ord(c) for c in deviant_chars()}
    for item in (LETTER_RANGES + " " + NUMBER_RANGES).split():
        lo, _, hi = item.partition("-")
        lo_i, hi_i = int(lo, 16), int(hi or lo, 16)
        cps.update((lo_i - 1, lo_i, hi_i, hi_i + 1))
    cps.update(range(0, 0x110000, 97))
    cps = sorted(c for c in cps if 0 <= c < 0x110000 and not 0xD800 <= c < 0xE000)
    text = "".join(f"a{chr(c)}b 1{chr(c)}2 '{chr(c)}x\n" for c in cps)
    pre = PreTokenizer("qwen2")
    b2u = bytes_to_unicode()
    ours = ["".join(b2u[b] for b in w.encode("utf-8")) for w in pre.split(text)]
    theirs = [p for p, _ in hf_tok.pre_tokenizer.pre_tokenize_str(text)]
    assert len(cps) > 15000
    assert ours == theirs


def test_long_words_bpe_paths_agree():
    tk = Tokenizer(builtin_byte_vocab())
    rng = random.Random(3)
    alphabet = "aeinorst_ ()=:.\n"
    for _ in range(200):
        w = "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 120)))
        mapped = "".join(bytes_to_unicode()[b] for b in w.encode())
        assert tk._bpe_short(mapped) == tk._bpe_long(mapped), w


# ------------------------------------------------------------------------------ API and errors


@needs_fixtures
def test_properties(tok):
    assert tok.vocab_size == 151936
    assert tok.bos_id == 151643 and tok.eos_id == 151645 and tok.pad_id == 151643
    assert tok.eog_ids == {151643, 151645, 151662, 151663, 151664}
    assert tok.is_special(151644) and not tok.is_special(151667) and not tok.is_special(9707)
    assert tok.token_to_piece(9707) == b"Hello"
    assert tok.token_to_piece(151644) == b"<|im_start|>"
    assert tok.token_to_piece(151935) == b""  # [PAD151935]: unused
    assert tok.decode([9707, 151935, 1879]) == "Hello world"
    assert tok.token_to_id("<|im_end|>") == 151645
    assert tok.id_to_token(151645) == "<|im_end|>" and tok.id_to_token(9707) == "Hello"
    assert tok.tokens[220] == "Ġ" and len(tok.tokens) == 151936
    assert tok.token_type(151667) == 4 and tok.token_type(151935) == 5
    assert tok.encode("") == []


@needs_fixtures
def test_id_errors(tok):
    for bad in (151936, 10**9, -1):
        for fn in (lambda: tok.decode([1, bad]), lambda: tok.token_to_piece(bad), lambda: tok.is_special(bad),
                   lambda: IncrementalDecoder(tok).feed(bad), lambda: list(tok.decode_stream([bad]))):
            with pytest.raises(ValueError, match="151936"):
                fn()
    with pytest.raises(ValueError, match="integer"):
        tok.decode([1.5])
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode("a\ud800b")
    with pytest.raises(TypeError):
        tok.encode(b"bytes")


def test_metadata_errors():
    md = builtin_byte_vocab()
    cases = [
        ({"tokenizer.ggml.model": "llama"}, "tokenizer.ggml.model"),
        ({"tokenizer.ggml.pre": "llama3"}, "llama3"),
        ({"tokenizer.ggml.tokens": []}, "tokens"),
        ({"tokenizer.ggml.token_type": [1, 2]}, "token_type"),
        ({"tokenizer.ggml.token_type": [9] * len(md["tokenizer.ggml.tokens"])}, "token_type\\[0\\]"),
        ({"tokenizer.ggml.merges": ["ab"]}, "merges\\[0\\]"),
        ({"tokenizer.ggml.merges": ["Ġ zzzz"]}, "not in the vocabulary"),
        ({"tokenizer.ggml.bos_token_id": 100000}, "bos_token_id"),
        ({"tokenizer.ggml.tokens": md["tokenizer.ggml.tokens"][1:]}, "token_type"),
    ]
    for patch, msg in cases:
        with pytest.raises(ValueError, match=msg):
            Tokenizer({**md, **patch})
    no_merges = dict(md)
    del no_merges["tokenizer.ggml.merges"]
    with pytest.raises(ValueError, match="merges"):
        Tokenizer(no_merges)
    few = dict(md, **{"tokenizer.ggml.tokens": md["tokenizer.ggml.tokens"][100:],
                      "tokenizer.ggml.token_type": md["tokenizer.ggml.token_type"][100:],
                      "tokenizer.ggml.merges": []})
    with pytest.raises(ValueError, match="byte"):
        Tokenizer(few)


def test_bytes_token_strings_accepted():
    md = builtin_byte_vocab()
    md2 = dict(md, **{"tokenizer.ggml.tokens": [t.encode() for t in md["tokenizer.ggml.tokens"]],
                      "tokenizer.ggml.merges": [m.encode() for m in md["tokenizer.ggml.merges"]]})
    s = "def f(x): return x  # ok"
    assert Tokenizer(md2).encode(s) == Tokenizer(md).encode(s)


# ------------------------------------------------------------------------------ GGUF metadata


@needs_fixtures
def test_gguf_metadata_from_hf(qwen_md):
    md = qwen_md
    assert set(md) == {
        "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.chat_template",
    }
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == "qwen2"
    toks, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    assert len(toks) == len(types) == 151936
    tj = json.loads((FIXTURES / "tokenizer.json").read_text(encoding="utf-8"))
    for t, i in tj["model"]["vocab"].items():
        assert toks[i] == t and types[i] == 1
    for at in tj["added_tokens"]:
        assert toks[at["id"]] == at["content"]
        looks = at["content"].startswith("<|") and at["content"].endswith("|>")
        assert types[at["id"]] == (3 if at["special"] or looks else 4)
    assert toks[151669] == "[PAD151669]" and set(types[151669:]) == {5}
    assert md["tokenizer.ggml.merges"][:2] == ["Ġ Ġ", "ĠĠ ĠĠ"]
    assert len(md["tokenizer.ggml.merges"]) == len(tj["model"]["merges"]) == 151387
    assert (md["tokenizer.ggml.eos_token_id"], md["tokenizer.ggml.padding_token_id"],
            md["tokenizer.ggml.bos_token_id"]) == (151645, 151643, 151643)
    assert md["tokenizer.ggml.add_bos_token"] is False
    cfg = json.loads((FIXTURES / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert md["tokenizer.chat_template"] == cfg["chat_template"]



def test_gguf_metadata_from_small_hf_json(tmp_path):
    # An HF tokenizer.json made by `tokenizers` from the built-in vocabulary, plus added tokens.
    tokenizers = _hf()
    md = builtin_byte_vocab()
    hf = _hf_from_metadata(md)
    hf.add_tokens([tokenizers.AddedToken("<|looks|>", special=False, normalized=False),
                   tokenizers.AddedToken("<think>", special=False, normalized=False)])
    tj = json.loads(hf.to_str())
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(tj), encoding="utf-8")
    cfg = tmp_path / "tokenizer_config.json"
    cfg.write_text(json.dumps({"eos_token": {"content": "<|im_end|>"}, "pad_token": None, "bos_token": None,
                               "add_bos_token": False,
                               "chat_template": [{"name": "default", "template": "T"}, {"name": "x", "template": "X"}]}))

    got = gguf_tokenizer_metadata(str(p), str(cfg), vocab_size=800)
    n = len(md["tokenizer.ggml.tokens"])
    assert got["tokenizer.ggml.tokens"][:n] == md["tokenizer.ggml.tokens"]
    assert got["tokenizer.ggml.tokens"][n:n + 2] == ["<|looks|>", "<think>"]
    assert got["tokenizer.ggml.tokens"][n + 2] == f"[PAD{n + 2}]" and len(got["tokenizer.ggml.tokens"]) == 800
    assert got["tokenizer.ggml.token_type"][:n] == md["tokenizer.ggml.token_type"]
    assert got["tokenizer.ggml.token_type"][n:n + 3] == [3, 4, 5]  # looks special -> control (llama.cpp)
    assert got["tokenizer.ggml.merges"] == md["tokenizer.ggml.merges"]
    assert got["tokenizer.ggml.pre"] == "qwen2" and got["tokenizer.chat_template"] == "T"
    assert (got["tokenizer.ggml.eos_token_id"], got["tokenizer.ggml.bos_token_id"],
            got["tokenizer.ggml.padding_token_id"]) == (767, 765, 765)
    assert got["tokenizer.ggml.add_bos_token"] is False

    hf_flags = gguf_tokenizer_metadata(str(p), control_if_looks_special=False)
    assert hf_flags["tokenizer.ggml.token_type"][n:] == [4, 4]
    assert hf_flags["tokenizer.ggml.eos_token_id"] == 765  # no config: <|endoftext|>
    assert "tokenizer.chat_template" not in hf_flags and len(hf_flags["tokenizer.ggml.tokens"]) == n + 2

    # merges stored as "a b" strings (older tokenizer.json files) give the same result
    tj_str = dict(tj, model=dict(tj["model"], merges=[" ".join(m) for m in tj["model"]["merges"]]))
    p.write_text(json.dumps(tj_str), encoding="utf-8")
    assert gguf_tokenizer_metadata(str(p), str(cfg), vocab_size=800) == got

    with pytest.raises(ValueError, match="vocab_size"):
        gguf_tokenizer_metadata(str(p), vocab_size=10)
    for bad, msg in (({"pre_tokenizer": {"type": "Whitespace"}}, "pre_tokenizer"),
                     ({"model": dict(tj["model"], type="WordPiece")}, "BPE"),
                     ({"normalizer": {"type": "Lowercase"}}, "normalizer"),
                     ({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}},
                      "pre_tokenizer"),
                     ({"model": dict(tj["model"], merges=[["a", "b", "c"]])}, "merges\\[0\\]")):
        p.write_text(json.dumps(dict(tj, **bad)), encoding="utf-8")
        with pytest.raises(ValueError, match=msg):
            gguf_tokenizer_metadata(str(p))
    cfg.write_text(json.dumps({"eos_token": "<|nope|>"}))
    p.write_text(json.dumps(tj), encoding="utf-8")
    with pytest.raises(ValueError, match="nope"):
        gguf_tokenizer_metadata(str(p), str(cfg))


# ------------------------------------------------------------------------------ built-in vocabulary


def _hf_from_metadata(md: dict):
    """An HF byte-level BPE tokenizer with the same vocab/merges/pre-tokenizer as `md`."""
    tokenizers = _hf()
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    toks, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(toks) if types[i] == 1}
    merges = [tuple(m.split(" ")) for m in md["tokenizer.ggml.merges"]]
    hf = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    hf.normalizer = normalizers.NFC()
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(QWEN2_HF_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = decoders.ByteLevel()
    hf.add_tokens([tokenizers.AddedToken(toks[i], special=True, normalized=False)
                   for i in range(len(toks)) if types[i] == 3])
    return hf


def _random_unicode(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            out.append(chr(rng.randrange(0x20, 0x7F)))
        elif r < 0.6:
            out.append(rng.choice(" \n\t\r"))
        else:
            c = rng.randrange(0x80, 0x110000)
            if 0xD800 <= c < 0xE000:
                c = 0xFFFD
            out.append(chr(c))
    return "".join(out)


def test_builtin_vocab_shape_and_determinism():
    md = builtin_byte_vocab()
    toks, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    assert len(toks) == 768 and 512 <= len(toks) <= 1024
    b2u = bytes_to_unicode()
    assert toks[:256] == [b2u[b] for b in range(256)]
    assert toks[-3:] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] and types[-3:] == [3, 3, 3]
    assert len(md["tokenizer.ggml.merges"]) == 509 and len(set(md["tokenizer.ggml.merges"])) == 509
    assert builtin_byte_vocab() == md
    assert builtin_byte_vocab(100)["tokenizer.ggml.merges"] == md["tokenizer.ggml.merges"][:100]
    assert len(builtin_byte_vocab(0)["tokenizer.ggml.tokens"]) == 259
    with pytest.raises(ValueError, match="n_merges"):
        builtin_byte_vocab(100000)
    with pytest.raises(ValueError, match="n_merges"):
        builtin_byte_vocab(-1)
    tk = Tokenizer(md)
    assert tk.eos_id == 767 and tk.bos_id == 765 and tk.eog_ids == {765, 767}
    # merges compress English/Python: fewer tokens than bytes
    s = "def main(self) -> None:\n    return the_value\n"
    assert len(tk.encode(s)) < len(s.encode()) / 2


def test_builtin_vocab_round_trip_bytes():
    tk = Tokenizer(builtin_byte_vocab())
    rng = random.Random(11)
    for _ in range(300):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        for s in (raw.decode("utf-8", "replace"), raw.decode("latin-1"), _random_unicode(rng, rng.randint(0, 40))):
            s = unicodedata.normalize("NFC", s)
            ids = tk.encode(s)
            assert b"".join(tk.token_to_piece(i) for i in ids) == s.encode("utf-8")
            assert tk.decode(ids) == s
            assert "".join(tk.decode_stream(ids)) == s


def test_builtin_vocab_matches_hf(corpus):
    md = builtin_byte_vocab()
    tk = Tokenizer(md)
    hf = _hf_from_metadata(md)
    rng = random.Random(5)
    texts = list(corpus) + [_random_unicode(rng, rng.randint(1, 60)) for _ in range(300)]
    theirs = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    for s, b in zip(texts, theirs):
        assert tk.encode(s, special=True) == b, repr(s)
    for s in texts[:200]:
        ids = tk.encode(s, special=True)
        assert tk.decode(ids) == hf.decode(ids, skip_special_tokens=False)


def test_gpt2_pretokenizer_matches_hf(corpus, tmp_path):
    # pre "gpt2": GPT-2's split regex (HF ByteLevel with use_regex=True), no normaliser.
    tokenizers = _hf()
    from tokenizers import pre_tokenizers

    md = dict(builtin_byte_vocab(), **{"tokenizer.ggml.pre": "gpt2"})
    tk = Tokenizer(md)
    hf = _hf_from_metadata(md)
    hf.normalizer = None
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    rng = random.Random(9)
    texts = list(corpus) + [_random_unicode(rng, rng.randint(1, 60)) for _ in range(200)]
    theirs = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    for s, b in zip(texts, theirs):
        assert tk.encode(s, special=True) == b, repr(s)
    assert tk.decode(tk.encode("cafe\u0301")) == "cafe\u0301"  # no NFC for GPT-2
    p = tmp_path / "tokenizer.json"
    p.write_text(hf.to_str(), encoding="utf-8")
    assert gguf_tokenizer_metadata(str(p))["tokenizer.ggml.pre"] == "gpt2"
    assert isinstance(tokenizers.Tokenizer.from_file(str(p)), tokenizers.Tokenizer)


def test_builtin_chat_template():
    tk = Tokenizer(builtin_byte_vocab())
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    out = tk.apply_chat_template(msgs)
    assert out == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>assistant\n"
    assert tk.encode(out, special=True).count(tk.token_to_id("<|im_start|>")) == 3
    assert tk.apply_chat_template(msgs, add_generation_prompt=False).endswith("Hello!<|im_end|>\n")
    assert BUILTIN_CHAT_TEMPLATE == tk.chat_template


# ------------------------------------------------------------------------------ chat template


def _hf_reference_render(template: str, messages, add_generation_prompt=True, tools=None, documents=None, **kw):
    """jinja2 render with transformers' settings (its _compile_jinja_template / render path)."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: "FIXED"
    return env.from_string(template).render(
        messages=messages, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt, **kw
    )


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Météo pour une ville — «unicode» stays raw",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "noop", "description": "  does nothing  ",
                                      "parameters": {"type": "object", "properties": {}}}},
]

CHATS = {
    "two_turn": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                 {"role": "user", "content": "Tell me a joke."}],
    "system": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}],
    "thinking_history": [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "<think>\nreason 2\n</think>\n\nA2"},
    ],
    "tools": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Zürich?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "c"}}},
            {"type": "function", "function": {"name": "noop", "arguments": "{\"raw\": 1}"}}]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "ok"},
        {"role": "assistant", "content": "It is 21 °C.", "reasoning_content": "easy"},
    ],
    "unicode": [{"role": "user", "content": "日本語 🇯🇵 «quotes» \"dq\" \n\n tabs\t"}],
}


@needs_fixtures
@pytest.mark.parametrize("name", sorted(CHATS))
@pytest.mark.parametrize("gen", [True, False])
def test_fixture_template_matches_reference_render(tok, name, gen):
    msgs = CHATS[name]
    tools = TOOLS if name == "tools" else None
    for extra in ({}, {"enable_thinking": False}):
        ours = tok.apply_chat_template(msgs, add_generation_prompt=gen, tools=tools, **extra)
        ref = _hf_reference_render(tok.chat_template, msgs, add_generation_prompt=gen, tools=tools,
                                   bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>", **extra)
        assert ours == ref


@needs_fixtures
def test_fixture_template_hand_checked(tok):
    two = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
           {"role": "user", "content": "How are you?"}]
    assert tok.apply_chat_template(two) == (
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nHow are you?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert tok.apply_chat_template(two, enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    sys_chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(sys_chat, add_generation_prompt=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n")
    # The last assistant turn after the last user query is rendered with its reasoning block.
    last = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nx\n</think>\n\nHey"}]
    assert tok.apply_chat_template(last, add_generation_prompt=False) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nx\n</think>\n\nHey<|im_end|>\n")
    # Tools: JSON with raw (non-ASCII) characters, keys in insertion order.
    out = tok.apply_chat_template([{"role": "user", "content": "x"}], tools=TOOLS[:1])
    assert '{"type": "function", "function": {"name": "get_weather", "description": "Météo' in out
    assert "<tools>\n{" in out and "</tools>" in out
    # the rendered prompt tokenizes with its control tokens
    ids = tok.encode(tok.apply_chat_template(two), special=True)
    assert ids[0] == 151644 and ids.count(151645) == 3


# A Qwen3-Coder-style template (XML tool declarations and calls) exercising the Jinja features
# that template relies on: macros, `is mapping`, `|items`, `|tojson|safe`, `|string`, `|trim`,
# `~`, loop.previtem / loop.nextitem, `is defined`, namespace, loop controls, raise_exception.
CODER_STYLE = """{% macro render_list(items, tag) %}
{%- if items is defined and items is sequence and items | length > 0 %}{{- '\\n<' ~ tag ~ '>' ~ (items | tojson | safe) ~ '</' ~ tag ~ '>' }}{% endif %}
{% endmacro %}
{%- if messages[0].role == 'system' %}{%- set system_message = messages[0].content %}{%- set loop_messages = messages[1:] %}
{%- else %}{%- set loop_messages = messages %}{%- endif %}
{%- if not tools is defined or tools is none %}{%- set tools = [] %}{%- endif %}
{%- if system_message is defined or tools | length > 0 %}
    {{- '<|im_start|>system\\n' ~ (system_message if system_message is defined else 'You are a coder.') }}
{%- endif %}
{%- if tools | length > 0 %}
    {{- '\\n\\n<tools>' }}
    {%- for tool in tools %}
        {%- if tool.function is defined %}{%- set tool = tool.function %}{%- endif %}
        {{- '\\n<function>\\n<name>' ~ tool.name ~ '</name>\\n<description>' ~ (tool.description | trim) ~ '</description>' }}
        {%- for pname, pfields in tool.parameters.properties | items %}
            {{- '\\n<parameter>\\n<name>' ~ pname ~ '</name>' }}
            {%- if pfields is mapping %}
                {%- for k, v in pfields.items() if k not in ['description'] %}
                    {%- if v is mapping %}{{- '\\n<' ~ k ~ '>' ~ (v | tojson | safe) ~ '</' ~ k ~ '>' }}
                    {%- else %}{{- '\\n<' ~ k ~ '>' ~ (v | string) ~ '</' ~ k ~ '>' }}{%- endif %}
                {%- endfor %}
            {%- endif %}
            {{- '\\n</parameter>' }}
        {%- endfor %}
        {{- render_list(tool.parameters.required, 'required') }}
        {{- '\\n</function>' }}
    {%- endfor %}
    {{- '\\n</tools>' }}
{%- endif %}
{%- if system_message is defined or tools | length > 0 %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- for message in loop_messages %}
    {%- if message.role == 'bad' %}{{- raise_exception('bad role') }}{%- endif %}
    {%- if message.role == 'stop' %}{% break %}{%- endif %}
    {%- if message.role == 'skip' %}{% continue %}{%- endif %}
    {%- if message.role == 'assistant' and message.tool_calls is defined and message.tool_calls | length > 0 %}
        {{- '<|im_start|>assistant' }}
        {%- if message.content is string and message.content | trim | length > 0 %}{{- '\\n' + message.content | trim + '\\n' }}{%- endif %}
        {%- for tc in message.tool_calls %}
            {%- if tc.function is defined %}{%- set tc = tc.function %}{%- endif %}
            {{- '\\n<tool_call>\\n<function=' + tc.name + '>\\n' }}
            {%- for an, av in tc.arguments | items %}
                {{- '<parameter=' + an + '>\\n' + (av if av is string else av | tojson) + '\\n</parameter>\\n' }}
            {%- endfor %}
            {{- '</function>\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.previtem and loop.previtem.role != 'tool' %}{{- '<|im_start|>user\\n' }}{%- endif %}
        {{- '<tool_response>\\n' + message.content + '\\n</tool_response>\\n' }}
        {%- if loop.last or loop.nextitem.role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

CODER_CHAT = [
    {"role": "system", "content": "You write code."},
    {"role": "user", "content": "List files"},
    {"role": "assistant", "content": " Sure. ", "tool_calls": [
        {"function": {"name": "shell", "arguments": {"cmd": "ls -la", "opts": {"all": True, "n": 3}, "xs": [1, "é"]}}}]},
    {"role": "tool", "content": "a.py\nb.py"},
    {"role": "tool", "content": "done"},
    {"role": "skip", "content": "ignored"},
    {"role": "user", "content": "Thanks"},
]
CODER_TOOLS = [{"type": "function", "function": {
    "name": "shell", "description": "\n Run a shell command \n",
    "parameters": {"type": "object", "properties": {
        "cmd": {"type": "string", "description": "command"},
        "opts": {"type": "object", "properties": {"all": {"type": "boolean"}}, "default": None},
        "xs": {"type": "array", "items": {"type": "integer"}}},
        "required": ["cmd"]}}}]


def test_coder_style_template_matches_reference_render():
    for tools in (CODER_TOOLS, None):
        for gen in (True, False):
            ours = render_chat_template(CODER_STYLE, CODER_CHAT, add_generation_prompt=gen, tools=tools)
            ref = _hf_reference_render(CODER_STYLE, CODER_CHAT, add_generation_prompt=gen, tools=tools)
            assert ours == ref
    ours = render_chat_template(CODER_STYLE, CODER_CHAT, tools=CODER_TOOLS)
    assert "<function=shell>\n<parameter=cmd>\nls -la\n</parameter>\n<parameter=opts>\n" in ours
    assert '{"all": true, "n": 3}' in ours and '[1, "é"]' in ours
    assert "<|im_start|>user\n<tool_response>\na.py\nb.py\n</tool_response>\n<tool_response>\ndone\n" in ours
    assert "ignored" not in ours
    assert "<required>[\"cmd\"]</required>" in ours
    stopped = render_chat_template(CODER_STYLE, [{"role": "user", "content": "a"}, {"role": "stop", "content": ""},
                                                 {"role": "user", "content": "zzz"}])
    assert "zzz" not in stopped


def test_chat_template_errors_and_globals():
    with pytest.raises(ChatTemplateError, match="bad role"):
        render_chat_template(CODER_STYLE, [{"role": "bad", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="compile"):
        render_chat_template("{% if %}", [])
    with pytest.raises(ChatTemplateError):  # the sandbox is immutable
        render_chat_template("{{ messages.append(1) }}", [])
    assert len(render_chat_template("{{ strftime_now('%Y') }}", [])) == 4
    assert render_chat_template("{% generation %}x{{ 1 }}{% endgeneration %}", []) == "x1"
    assert render_chat_template("{{ {'b': 1, 'a': 'é<'} | tojson }}", []) == '{"b": 1, "a": "é<"}'
    assert render_chat_template("{{ x | tojson(indent=2) }}", [], x=[1]) == "[\n  1\n]"
    tk = Tokenizer(dict(builtin_byte_vocab(), **{"tokenizer.chat_template": None}))
    with pytest.raises(ValueError, match="chat template"):
        tk.apply_chat_template([{"role": "user", "content": "x"}])
    assert tk.apply_chat_template([{"role": "user", "content": "x"}], template="{{ eos_token }}") == "<|im_end|>"
