"""Byte-level BPE tokenizer for Qwen2/Qwen3 GGUF files, in pure Python.

Design: the tokenizer is built from the GGUF tokenizer metadata (`tokenizer.ggml.*` keys), so
the same object serves real model files, synthetic test files and Hugging Face tokenizer.json
(via `hf_tokenizer.gguf_tokenizer_metadata`). Encoding follows Hugging Face `tokenizers`
(the reference the Qwen models were trained with) step by step:

  1. added tokens (GGUF types control/unknown/user-defined) are cut out of the raw text,
     leftmost-longest; with `special=False` only user-defined ones are (as HF's
     `split_special_tokens` and llama.cpp's `parse_special=false` do);
  2. each remaining segment is NFC-normalised (pre-tokenizer "qwen2" only; GPT-2 has none);
  3. the split regex cuts it into words ("Isolated" behaviour: gaps are words too);
  4. each word's UTF-8 bytes are mapped to the GPT-2 byte-unicode alphabet and merged by
     BPE: repeatedly the adjacent pair of lowest merge rank, leftmost first (HF's order);
  5. words are cached (bounded dict), so repeated words cost one lookup.

Steps 2-3 live in `pretokenizer.py`, which pins the letter/number classes to Unicode 16.0 (HF's
Oniguruma tables) whatever Unicode version the installed `regex` module has.

Decoding joins every token's bytes and decodes UTF-8 once with U+FFFD replacement (as HF's
ByteLevel decoder does with `from_utf8_lossy`); `IncrementalDecoder` does the same piece by
piece without ever splitting a character.
"""
from __future__ import annotations

import codecs
import heapq
import operator
from typing import Any, Iterable, Iterator, Mapping, Sequence

import regex  # type: ignore[import-untyped,unused-ignore]

from .pretokenizer import PreTokenizer

__all__ = [
    "IncrementalDecoder",
    "Tokenizer",
    "TOKEN_TYPE_NORMAL",
    "TOKEN_TYPE_UNKNOWN",
    "TOKEN_TYPE_CONTROL",
    "TOKEN_TYPE_USER_DEFINED",
    "TOKEN_TYPE_UNUSED",
    "TOKEN_TYPE_BYTE",
    "bytes_to_unicode",
]

# GGUF token types (tokenizer.ggml.token_type), as in llama.cpp's llama_token_type.
TOKEN_TYPE_NORMAL = 1
TOKEN_TYPE_UNKNOWN = 2
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4
TOKEN_TYPE_UNUSED = 5
TOKEN_TYPE_BYTE = 6
_VALID_TYPES = frozenset(range(1, 7))

# Token texts that end generation (llama.cpp's list: EOT-like tokens, plus the FIM
# pad / repo / file-separator tokens that llama.cpp also treats as end-of-generation).
_EOG_TEXTS = frozenset(
    {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
        "<|fim_pad|>", "<|fim_repo|>", "<|repo_name|>", "<|file_sep|>",
    }
)

_WORD_CACHE_MAX = 200_000  # words; the cache is cleared when it grows past this
_SHORT_WORD = 48  # symbols; longer words use the heap-based merge loop


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable unicode character map (printable Latin-1 bytes map to themselves)."""
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + n)
            n += 1
    return out


_B2U = bytes_to_unicode()
_U2B = {u: b for b, u in _B2U.items()}
_BYTE_TRANS = str.maketrans({chr(b): u for b, u in _B2U.items()})  # latin-1 char -> alphabet char


def _as_str_list(values: Sequence[Any], key: str) -> list[str]:
    # GGUF string arrays may come as str or as UTF-8 bytes.
    out = list(values)
    if all(type(v) is str for v in out):
        return out
    for i, v in enumerate(out):
        if isinstance(v, (bytes, bytearray)):
            try:
                out[i] = bytes(v).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{key}[{i}] is not valid UTF-8") from None
        elif not isinstance(v, str):
            raise ValueError(f"{key}[{i}] must be a string, got {type(v).__name__}")
    return out


def _meta_ids(md: Mapping[str, Any], key: str, n: int) -> int | None:
    v = md.get(key)
    if v is None:
        return None
    try:
        i = operator.index(v)
    except TypeError:
        raise ValueError(f"{key} must be an integer, got {type(v).__name__}") from None
    if not 0 <= i < n:
        raise ValueError(f"{key} = {i} is out of range: the vocabulary has {n} tokens (ids 0..{n - 1})")
    return i


class Tokenizer:
    """Byte-level BPE tokenizer (GGUF `tokenizer.ggml.model == "gpt2"`), e.g. Qwen2/Qwen3.

    Build it from a GGUF metadata mapping (`Tokenizer(metadata)`), or from Hugging Face files
    with `Tokenizer.from_hf(tokenizer_json, tokenizer_config)`.
    """

    def __init__(self, metadata: Mapping[str, Any]):
        """Build from GGUF tokenizer metadata; raises ValueError on missing or malformed keys."""
        model = metadata.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise ValueError(f"tokenizer.ggml.model must be 'gpt2' (byte-level BPE), got {model!r}")
        pre = metadata.get("tokenizer.ggml.pre", "default")
        if isinstance(pre, bytes):
            pre = pre.decode("utf-8")
        self._pre = PreTokenizer(str(pre))
        self.pre = str(pre)

        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is None or len(tokens) == 0:
            raise ValueError("tokenizer.ggml.tokens is missing or empty")
        toks = _as_str_list(tokens, "tokenizer.ggml.tokens")
        n = len(toks)
        self._tokens = toks

        types = metadata.get("tokenizer.ggml.token_type")
        if types is None:
            ttypes = [TOKEN_TYPE_NORMAL] * n
        else:
            if len(types) != n:
                raise ValueError(
                    f"tokenizer.ggml.token_type has {len(types)} entries but tokenizer.ggml.tokens has {n}"
                )
            ttypes = [int(x) for x in types]
            if not _VALID_TYPES.issuperset(ttypes):
                bad = next(i for i, x in enumerate(ttypes) if x not in _VALID_TYPES)
                raise ValueError(f"tokenizer.ggml.token_type[{bad}] = {ttypes[bad]} is not a GGUF token type (1..6)")
        self._types = ttypes

        # Text -> id for BPE symbols (added tokens included, as in HF's vocab); the first id wins
        # when a text occurs twice.
        vocab = dict(zip(reversed(toks), range(n - 1, -1, -1)))
        self._vocab = vocab
        missing = [b for b, u in _B2U.items() if u not in vocab]
        if missing:
            raise ValueError(
                f"byte-level vocabulary lacks the token for byte 0x{missing[0]:02X} "
                f"({_B2U[missing[0]]!r}); {len(missing)} of 256 byte tokens are missing"
            )

        merges = metadata.get("tokenizer.ggml.merges")
        if merges is None:
            raise ValueError("tokenizer.ggml.merges is missing")
        split = [m.partition(" ") for m in _as_str_list(merges, "tokenizer.ggml.merges")]
        bad_r = next((r for r, (a, sep, b) in enumerate(split) if not (sep and a and b) or " " in b), None)
        if bad_r is not None:
            raise ValueError(f"tokenizer.ggml.merges[{bad_r}] = {''.join(split[bad_r])!r} is not of the form 'a b'")
        bad_r = next((r for r, (a, _, b) in enumerate(split) if a + b not in vocab), None)
        if bad_r is not None:
            a, _, b = split[bad_r]
            raise ValueError(
                f"tokenizer.ggml.merges[{bad_r}] = '{a} {b}': merged token {a + b!r} is not in the vocabulary"
            )
        # rank of each pair; the first occurrence wins for a repeated merge
        self._ranks = dict(zip(((a, b) for a, _, b in reversed(split)), range(len(split) - 1, -1, -1)))

        self.bos_id = _meta_ids(metadata, "tokenizer.ggml.bos_token_id", n)
        self.eos_id = _meta_ids(metadata, "tokenizer.ggml.eos_token_id", n)
        self.pad_id = _meta_ids(metadata, "tokenizer.ggml.padding_token_id", n)
        self.add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", False))
        self.chat_template = metadata.get("tokenizer.chat_template")

        eog = {i for i, t in enumerate(toks) if t in _EOG_TEXTS}
        if self.eos_id is not None:
            eog.add(self.eos_id)
        self.eog_ids: frozenset[int] = frozenset(eog)

        # Added tokens, cut out of the raw text before BPE. Longer first => leftmost-longest.
        def alternation(kinds: tuple[int, ...]) -> "regex.Pattern[str] | None":
            texts = sorted({t for i, t in enumerate(toks) if ttypes[i] in kinds and t}, key=lambda s: (-len(s), s))
            return regex.compile("|".join(regex.escape(t) for t in texts)) if texts else None

        self._added_all = alternation((TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_USER_DEFINED))
        self._added_user = alternation((TOKEN_TYPE_USER_DEFINED,))
        self._added_ids: dict[str, int] = {}
        for i, t in enumerate(toks):
            if ttypes[i] in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_USER_DEFINED) and t:
                self._added_ids.setdefault(t, i)

        self._cache: dict[str, tuple[int, ...]] = {}
        self._piece_cache: dict[int, bytes] = {}
        self._tokens_tuple: tuple[str, ...] | None = None

    # ---------------------------------------------------------------- construction helpers
    @classmethod
    def from_hf(cls, tokenizer_json_path: str, tokenizer_config_path: str | None = None, **kwargs: Any) -> "Tokenizer":
        """Build from a Hugging Face tokenizer.json (+ optional tokenizer_config.json)."""
        from .hf_tokenizer import gguf_tokenizer_metadata

        return cls(gguf_tokenizer_metadata(tokenizer_json_path, tokenizer_config_path, **kwargs))

    # ---------------------------------------------------------------- properties
    @property
    def vocab_size(self) -> int:
        """Number of token ids (rows of the embedding), including added and unused tokens."""
        return len(self._tokens)

    @property
    def tokens(self) -> tuple[str, ...]:
        """Token texts in id order (GGUF form: byte-level alphabet for normal tokens)."""
        if self._tokens_tuple is None:
            self._tokens_tuple = tuple(self._tokens)
        return self._tokens_tuple

    def id_to_token(self, token_id: int) -> str:
        """Vocabulary text of one token id (GGUF form, e.g. "Ġhello")."""
        return self._tokens[self._check_id(token_id)]

    def token_type(self, token_id: int) -> int:
        """GGUF token type of an id (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte)."""
        return self._types[self._check_id(token_id)]

    def is_special(self, token_id: int) -> bool:
        """True for control (and unknown) tokens: those `decode(skip_special=True)` drops."""
        return self._types[self._check_id(token_id)] in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN)

    def token_to_id(self, text: str) -> int | None:
        """Id of a token given its vocabulary text (added tokens first), or None."""
        i = self._added_ids.get(text)
        return i if i is not None else self._vocab.get(text)

    def _check_id(self, token_id: Any) -> int:
        try:
            i = operator.index(token_id)
        except TypeError:
            raise ValueError(f"token id must be an integer, got {type(token_id).__name__}") from None
        n = len(self._tokens)
        if not 0 <= i < n:
            raise ValueError(f"token id {i} is out of range: vocab_size is {n} (valid ids 0..{n - 1})")
        return i

    # ---------------------------------------------------------------- encoding
    def _bpe_short(self, word: str) -> list[str]:
        syms = list(word)
        ranks = self._ranks
        while len(syms) > 1:
            best = None
            best_i = -1
            for i in range(len(syms) - 1):
                r = ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            syms[best_i : best_i + 2] = [syms[best_i] + syms[best_i + 1]]
        return syms

    def _bpe_long(self, word: str) -> list[str]:
        # Same order as _bpe_short (lowest rank, then leftmost), in O(n log n): a doubly linked
        # list of symbols and a heap of candidate pairs keyed by (rank, left symbol index).
        syms = list(word)
        n = len(syms)
        ranks = self._ranks
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        alive = [True] * n
        heap = []
        for i in range(n - 1):
            r = ranks.get((syms[i], syms[i + 1]))
            if r is not None:
                heap.append((r, i, syms[i], syms[i + 1]))
        heapq.heapify(heap)
        while heap:
            r, i, a, b = heapq.heappop(heap)
            if not alive[i] or syms[i] != a:
                continue
            j = nxt[i]
            if j < 0 or syms[j] != b:
                continue
            syms[i] = a + b
            alive[j] = False
            k = nxt[j]
            nxt[i] = k
            if k >= 0:
                prv[k] = i
                r2 = ranks.get((syms[i], syms[k]))
                if r2 is not None:
                    heapq.heappush(heap, (r2, i, syms[i], syms[k]))
            p = prv[i]
            if p >= 0:
                r2 = ranks.get((syms[p], syms[i]))
                if r2 is not None:
                    heapq.heappush(heap, (r2, p, syms[p], syms[i]))
        return [syms[i] for i in range(n) if alive[i]]

    def _encode_word(self, word: str) -> tuple[int, ...]:
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        mapped = word.encode("utf-8").decode("latin-1").translate(_BYTE_TRANS)
        syms = self._bpe_short(mapped) if len(mapped) <= _SHORT_WORD else self._bpe_long(mapped)
        vocab = self._vocab
        ids = tuple(vocab[s] for s in syms)
        if len(self._cache) >= _WORD_CACHE_MAX:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def _encode_text(self, text: str, out: list[int]) -> None:
        if not text:
            return
        enc = self._encode_word
        for w in self._pre.split(self._pre.normalize(text)):
            out.extend(enc(w))

    def encode(self, text: str, special: bool = False) -> list[int]:
        """Token ids of `text` (no BOS is added).

        special=True: control and user-defined token texts (e.g. `<|im_start|>`) become their
        ids. special=False: control tokens are tokenized as plain text; user-defined tokens
        (e.g. `<think>`) are still matched, as HF (`split_special_tokens`) and llama.cpp do.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() expects str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text is not encodable as UTF-8 (lone surrogate at index {e.start})") from None
        out: list[int] = []
        added = self._added_all if special else self._added_user
        if added is None:
            self._encode_text(text, out)
            return out
        pos = 0
        for m in added.finditer(text):
            self._encode_text(text[pos : m.start()], out)
            out.append(self._added_ids[m.group()])
            pos = m.end()
        self._encode_text(text[pos:], out)
        return out

    # ---------------------------------------------------------------- decoding
    def token_to_piece(self, token_id: int) -> bytes:
        """The bytes token `token_id` contributes to decoded text (unused tokens give b"")."""
        i = self._check_id(token_id)
        p = self._piece_cache.get(i)
        if p is None:
            p = self._piece_cache[i] = self._make_piece(i)
        return p

    def _make_piece(self, i: int) -> bytes:
        t, ty = self._tokens[i], self._types[i]
        if ty == TOKEN_TYPE_UNUSED:
            return b""
        if ty in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_USER_DEFINED):
            return t.encode("utf-8")
        if ty == TOKEN_TYPE_BYTE and len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            try:
                return bytes([int(t[3:5], 16)])
            except ValueError:
                pass
        try:
            return bytes(_U2B[c] for c in t)
        except KeyError:
            # Not in the byte alphabet: HF's ByteLevel decoder then uses the text's own bytes.
            return t.encode("utf-8")

    def _pieces(self, ids: Iterable[int], skip_special: bool) -> Iterator[bytes]:
        for tid in ids:
            i = self._check_id(tid)
            if skip_special and self._types[i] in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN):
                continue
            yield self.token_to_piece(i)

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of a token id sequence; invalid UTF-8 becomes U+FFFD (as HF decodes).

        skip_special=True drops control tokens (HF's skip_special_tokens).
        """
        return b"".join(self._pieces(ids, skip_special)).decode("utf-8", "replace")

    def decode_stream(self, ids: Iterable[int], skip_special: bool = False) -> Iterator[str]:
        """Yield text pieces while consuming ids one by one; never splits a UTF-8 character.

        The concatenation of the pieces equals `decode(ids, skip_special)`.
        """
        dec = IncrementalDecoder(self, skip_special=skip_special)
        for tid in ids:
            s = dec.feed(tid)
            if s:
                yield s
        s = dec.flush()
        if s:
            yield s

    # ---------------------------------------------------------------- chat
    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        template: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Render a chat with the GGUF chat template (or `template`) exactly as HF transformers does.

        Extra keyword arguments (tools=..., enable_thinking=..., documents=...) are passed to
        the template. bos_token / eos_token / pad_token are set from this vocabulary.
        """
        from .chat_template import render_chat_template

        tpl = template if template is not None else self.chat_template
        if tpl is None:
            raise ValueError("no chat template: the metadata has no tokenizer.chat_template and none was given")
        special = {}
        for name, tid in (("bos_token", self.bos_id), ("eos_token", self.eos_id), ("pad_token", self.pad_id)):
            if tid is not None:
                special[name] = self._tokens[tid]
        return render_chat_template(tpl, messages, add_generation_prompt=add_generation_prompt, **{**special, **kwargs})

    def __repr__(self) -> str:
        return (
            f"Tokenizer(pre={self.pre!r}, vocab_size={self.vocab_size}, merges={len(self._ranks)}, "
            f"bos_id={self.bos_id}, eos_id={self.eos_id}, eog_ids={sorted(self.eog_ids)})"
        )


class IncrementalDecoder:
    """Streaming detokenizer: `feed(id)` returns the text completed by that token.

    Bytes of an incomplete UTF-8 character are held back until the character is complete;
    invalid bytes become U+FFFD exactly as in `Tokenizer.decode`. Call `flush()` at the end.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False):
        """Start an empty stream over `tokenizer`'s vocabulary."""
        self._tok = tokenizer
        self._skip = skip_special
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, token_id: int) -> str:
        """Consume one token id; return the newly completed text (possibly empty)."""
        i = self._tok._check_id(token_id)
        if self._skip and self._tok.is_special(i):
            return ""
        return self._dec.decode(self._tok.token_to_piece(i), final=False)

    def flush(self) -> str:
        """End the stream: held-back incomplete bytes come out as U+FFFD."""
        return self._dec.decode(b"", final=True)
