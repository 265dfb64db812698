"""Tokenizer vs llama.cpp (PyPI llama-cpp-python) on a vocab-only GGUF file.

We write a vocab-only GGUF (arch qwen3moe, minimal hparams, the tokenizer keys from
`gguf_tokenizer_metadata` / `builtin_byte_vocab`) with PyPI `gguf.GGUFWriter`, load it with
`llama_cpp.Llama(path, vocab_only=True)` and compare `llm.tokenize(..., special=True)` with
our `encode(..., special=True)` on the shared corpus. llama.cpp does not NFC-normalise, so both
sides get NFC-normalised text. The writer itself is checked here without llama.cpp too
(read back with `gguf.GGUFReader`; the Tokenizer built from what was read must equal ours).
"""
from __future__ import annotations

import ctypes
import pathlib
import unicodedata

import pytest
from _fixtures import qwen3_tokenizer_dir

from qwen3moe.hf_tokenizer import builtin_byte_vocab, gguf_tokenizer_metadata
from qwen3moe.tokenizer import Tokenizer
from tokenizer_corpus import build_corpus

gguf = pytest.importorskip("gguf", reason="PyPI `gguf` (GGUF writer/reader) is not installed")

# Token texts llama.cpp also treats as end-of-generation, for non-Qwen model families.
LLAMA_ONLY_EOG_TEXTS = {"</s>", "[EOT]", "[EOS]", "<eos>", "<turn|>", "<|tool_response>", "<|return|>",
                        "<|call|>", "<|flush|>", "<|calls|>"}


FIXTURES = qwen3_tokenizer_dir()


def _metadata(which: str) -> dict:
    if which == "builtin":
        return builtin_byte_vocab()
    if FIXTURES is None:
        pytest.skip("Qwen3 tokenizer fixtures not found (<repo>/../shared/fixtures/qwen3-tokenizer or $QWEN3MOE_SHARED)")
    return gguf_tokenizer_metadata(
        str(FIXTURES / "tokenizer.json"), str(FIXTURES / "tokenizer_config.json"), vocab_size=151936
    )


def write_vocab_gguf(path: pathlib.Path, md: dict) -> None:
    """A vocab-only qwen3moe GGUF: minimal hparams + the tokenizer keys of `md`, no tensors."""
    w = gguf.GGUFWriter(str(path), "qwen3moe")
    w.add_name("qwen3moe-vocab-only")
    # llama.cpp skips hparams when vocab_only is set; a well-formed file still carries them.
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_key_length(16)
    w.add_value_length(16)
    w.add_expert_count(4)
    w.add_expert_used_count(2)
    w.add_expert_feed_forward_length(32)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1e7)
    w.add_tokenizer_model(md["tokenizer.ggml.model"])
    w.add_tokenizer_pre(md["tokenizer.ggml.pre"])
    w.add_token_list(md["tokenizer.ggml.tokens"])
    w.add_token_types(md["tokenizer.ggml.token_type"])
    w.add_token_merges(md["tokenizer.ggml.merges"])
    for key, add in (("tokenizer.ggml.bos_token_id", w.add_bos_token_id),
                     ("tokenizer.ggml.eos_token_id", w.add_eos_token_id),
                     ("tokenizer.ggml.padding_token_id", w.add_pad_token_id)):
        if md.get(key) is not None:
            add(md[key])
    w.add_add_bos_token(bool(md.get("tokenizer.ggml.add_bos_token", False)))
    if md.get("tokenizer.chat_template"):
        w.add_chat_template(md["tokenizer.chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_tokenizer_metadata(path: pathlib.Path) -> dict:
    """The `tokenizer.*` keys of a GGUF file, read with PyPI gguf's GGUFReader."""
    r = gguf.GGUFReader(str(path))
    out = {}
    for name, f in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            et = f.types[-1]
            if et == gguf.GGUFValueType.STRING:
                out[name] = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            else:
                out[name] = [int(f.parts[i][0]) for i in f.data]
        elif vt == gguf.GGUFValueType.STRING:
            out[name] = bytes(f.parts[f.data[0]]).decode("utf-8")
        elif vt == gguf.GGUFValueType.BOOL:
            out[name] = bool(f.parts[f.data[0]][0])
        else:
            out[name] = int(f.parts[f.data[0]][0])
    return out


def _llama_piece(llama_cpp, vocab, token_id: int) -> bytes:
    # llama_token_to_piece with a buffer large enough for any token (the high-level
    # Llama.detokenize uses a 32-byte buffer and drops longer pieces).
    size = 256
    while True:
        buf = (ctypes.c_char * size)()
        n = llama_cpp.llama_token_to_piece(vocab, llama_cpp.llama_token(token_id), buf, size, 0, True)
        if n >= 0:
            return bytes(buf[:n])
        size = -n


@pytest.mark.parametrize("which", ["builtin", "qwen3"])
def test_vocab_gguf_writer_round_trip(tmp_path, which):
    md = _metadata(which)
    path = tmp_path / f"{which}-vocab.gguf"
    write_vocab_gguf(path, md)
    back = read_tokenizer_metadata(path)
    assert back == md
    s = "<|im_start|>user\nHello, wörld! 123 😀<|im_end|>"
    assert Tokenizer(back).encode(s, special=True) == Tokenizer(md).encode(s, special=True)


@pytest.mark.oracle
@pytest.mark.parametrize("which", ["builtin", "qwen3"])
def test_llama_cpp_tokenize_matches(tmp_path, which):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (llama.cpp oracle) is not installed")
    md = _metadata(which)
    path = tmp_path / f"{which}-vocab.gguf"
    write_vocab_gguf(path, md)
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    tok = Tokenizer(md)
    vocab = llm._model.vocab
    assert llm.n_vocab() == tok.vocab_size
    assert llm.token_eos() == tok.eos_id
    assert llm.token_bos() == tok.bos_id
    # llama.cpp's end-of-generation set: ours, plus tokens llama.cpp adds by text for other model
    # families (e.g. "</s>" for PaddleOCR, a plain text token in the Qwen vocabulary).
    llama_eog = {i for i in range(tok.vocab_size) if llama_cpp.llama_vocab_is_eog(vocab, i)}
    assert tok.eog_ids <= llama_eog
    assert {tok.tokens[i] for i in llama_eog - tok.eog_ids} <= LLAMA_ONLY_EOG_TEXTS

    corpus = [unicodedata.normalize("NFC", s) for s in build_corpus()]
    bad = []
    for s in corpus:
        ours = tok.encode(s, special=True)
        theirs = list(llm.tokenize(s.encode("utf-8"), add_bos=False, special=True))
        if ours != theirs:
            bad.append((s, ours, theirs))
            continue
        # token_to_piece (special=True renders control tokens) gives the same bytes as ours
        assert b"".join(_llama_piece(llama_cpp, vocab, i) for i in theirs) == s.encode("utf-8"), repr(s)
        assert all(_llama_piece(llama_cpp, vocab, i) == tok.token_to_piece(i) for i in ours), repr(s)
    msg = "\n".join(f"{s!r}\n  ours  {a[:24]}\n  llama {b[:24]}" for s, a, b in bad[:8])
    assert not bad, f"{len(bad)} of {len(corpus)} strings tokenize differently:\n{msg}"
