"""GGUF tokenizer metadata from Hugging Face files, and a tiny built-in byte-level BPE vocabulary.

Design: everything the runtime tokenizer needs is the set of GGUF `tokenizer.*` keys, so this
module only produces those keys (a plain dict), mirroring what llama.cpp's convert_hf_to_gguf
writes for Qwen2/Qwen3 models:
  * tokens in id order, added tokens included, holes / rows past the vocabulary filled with
    `[PAD<id>]` of type UNUSED;
  * token types: normal 1; an added token 3 (control) when HF marks it special or when it
    "looks special" (`<|...|>`, as llama.cpp's converter decides), else 4 (user-defined);
  * merges as "a b" strings; bos/eos/padding ids from tokenizer_config.json (bos and padding
    default to `<|endoftext|>`, as the Qwen config.json sets them); add_bos_token false.
`builtin_byte_vocab` trains a small deterministic BPE over an embedded text sample so test
models need no external tokenizer files.
"""
from __future__ import annotations

import functools
import json
from collections import defaultdict
from typing import Any

from .tokenizer import (
    TOKEN_TYPE_CONTROL,
    TOKEN_TYPE_NORMAL,
    TOKEN_TYPE_UNUSED,
    TOKEN_TYPE_USER_DEFINED,
    bytes_to_unicode,
)
from .pretokenizer import PreTokenizer

__all__ = ["BUILTIN_CHAT_TEMPLATE", "builtin_byte_vocab", "gguf_tokenizer_metadata"]

# Hugging Face's Qwen2 split regex, as tokenizer.json stores it.
QWEN2_HF_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _looks_special(text: str) -> bool:
    # llama.cpp convert_hf_to_gguf's does_token_look_special()
    return (
        text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (text.startswith("<|") and text.endswith("|>"))
        or (text.startswith("<\uff5c") and text.endswith("\uff5c>"))
        or (text.startswith("<unused") and text.endswith(">"))
    )


def _detect_pre(tj: dict) -> str:
    pt = tj.get("pre_tokenizer")

    def is_bytelevel(p: Any, use_regex: bool) -> bool:
        return (
            isinstance(p, dict)
            and p.get("type") == "ByteLevel"
            and bool(p.get("use_regex", True)) == use_regex
            and not p.get("add_prefix_space", False)
        )

    norm = tj.get("normalizer")
    if norm is not None and norm.get("type") != "NFC":
        raise ValueError(f"unsupported normalizer in tokenizer.json (supported: none or NFC): {json.dumps(norm)[:200]}")

    if isinstance(pt, dict) and pt.get("type") == "Sequence":
        seq = pt.get("pretokenizers") or []
        if (
            len(seq) == 2
            and seq[0].get("type") == "Split"
            and (seq[0].get("pattern") or {}).get("Regex") == QWEN2_HF_REGEX
            and str(seq[0].get("behavior", "")).lower() == "isolated"
            and not seq[0].get("invert", False)
            and is_bytelevel(seq[1], False)
        ):
            return "qwen2"
    if is_bytelevel(pt, True):
        return "gpt2"
    raise ValueError(
        "unsupported pre_tokenizer in tokenizer.json (supported: Qwen2 Split regex + ByteLevel, "
        f"or GPT-2 ByteLevel): {json.dumps(pt)[:300]}"
    )


def _token_content(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, dict):
        return v.get("content")
    return str(v)


def gguf_tokenizer_metadata(
    tokenizer_json_path: str,
    tokenizer_config_path: str | None = None,
    *,
    vocab_size: int | None = None,
    control_if_looks_special: bool = True,
) -> dict[str, Any]:
    """GGUF `tokenizer.*` metadata (as llama.cpp's converter writes it) from HF tokenizer files.

    vocab_size: pad the token list to this many ids with `[PAD<id>]` UNUSED tokens (the
    model's embedding rows, e.g. 151936 for Qwen3). control_if_looks_special=False types every
    added non-special token as user-defined (HF's own special flag only).
    """
    with open(tokenizer_json_path, encoding="utf-8") as f:
        tj = json.load(f)
    cfg: dict[str, Any] = {}
    if tokenizer_config_path is not None:
        with open(tokenizer_config_path, encoding="utf-8") as f:
            cfg = json.load(f)

    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"tokenizer.json model type must be 'BPE', got {model.get('type')!r}")
    pre = _detect_pre(tj)

    id_to_tok: dict[int, str] = {}
    for tok, i in model["vocab"].items():
        if i in id_to_tok:
            raise ValueError(f"tokenizer.json: id {i} is used by both {id_to_tok[i]!r} and {tok!r}")
        id_to_tok[i] = tok
    added: dict[int, dict] = {}
    for at in tj.get("added_tokens") or []:
        i = at["id"]
        if i in id_to_tok and id_to_tok[i] != at["content"]:
            raise ValueError(f"tokenizer.json: added token {at['content']!r} reuses id {i} of {id_to_tok[i]!r}")
        id_to_tok[i] = at["content"]
        added[i] = at
    if any(i < 0 for i in id_to_tok):
        raise ValueError("tokenizer.json: negative token id")
    n = max(id_to_tok) + 1
    if vocab_size is not None:
        if vocab_size < n:
            raise ValueError(f"vocab_size={vocab_size} is smaller than the tokenizer's {n} ids")
        n = vocab_size

    tokens: list[str] = []
    types: list[int] = []
    for i in range(n):
        t = id_to_tok.get(i)
        if t is None:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_TYPE_UNUSED)
            continue
        tokens.append(t)
        if i in added:
            if added[i].get("special", False) or (control_if_looks_special and _looks_special(t)):
                types.append(TOKEN_TYPE_CONTROL)
            else:
                types.append(TOKEN_TYPE_USER_DEFINED)
        else:
            types.append(TOKEN_TYPE_NORMAL)

    merges: list[str] = []
    for k, m in enumerate(model.get("merges") or []):
        if isinstance(m, str):
            merges.append(m)
        elif isinstance(m, (list, tuple)) and len(m) == 2:
            merges.append(f"{m[0]} {m[1]}")
        else:
            raise ValueError(f"tokenizer.json: merges[{k}] is neither 'a b' nor ['a', 'b']: {m!r}")

    tok_to_id = {t: i for i, t in reversed(list(enumerate(tokens)))}

    def lookup(name: str) -> int | None:
        text = _token_content(cfg.get(name))
        if text is None:
            return None
        if text not in tok_to_id:
            raise ValueError(f"tokenizer_config.json: {name} {text!r} is not in the vocabulary")
        return tok_to_id[text]

    eot = tok_to_id.get("<|endoftext|>")
    bos = lookup("bos_token")
    eos = lookup("eos_token")
    pad = lookup("pad_token")
    md: dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
    }
    for key, val in (
        ("tokenizer.ggml.eos_token_id", eos if eos is not None else eot),
        ("tokenizer.ggml.padding_token_id", pad if pad is not None else eot),
        ("tokenizer.ggml.bos_token_id", bos if bos is not None else eot),
    ):
        if val is not None:
            md[key] = val
    md["tokenizer.ggml.add_bos_token"] = bool(cfg.get("add_bos_token", False))
    tpl = cfg.get("chat_template")
    if isinstance(tpl, list):  # [{"name": ..., "template": ...}]: the "default" one
        tpl = next((t.get("template") for t in tpl if t.get("name") == "default"), None)
    if isinstance(tpl, str):
        md["tokenizer.chat_template"] = tpl
    return md


# ------------------------------------------------------------------------------------------
# Built-in tiny vocabulary

BUILTIN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Training text for the built-in merges: plain English and Python, written for this project.
_SAMPLE_TEXT = '''
The quick brown fox jumps over the lazy dog. A model reads the text one token at a time,
and every token is a small piece of a word: common words become a single token, while rare
words are spelled out from smaller pieces. This is the idea behind byte pair encoding. We
start with the two hundred and fifty six byte values, count which pairs of neighbouring
symbols appear most often in the training text, and merge the most frequent pair into a new
symbol. Then we count again and repeat, until the vocabulary has the size we want.

It's simple, and it's fast enough for a test. They're counting pairs; we've got a list of
merges; I'm sure you'll see that the order of the merges is what matters when we encode new
text later. She'd say the tokenizer isn't magic: it doesn't know grammar, it only knows
which letters tend to stand together in the language it was trained on.

When the model generates a reply, the tokens are turned back into bytes, and the bytes are
decoded as UTF-8. A token may end in the middle of a character, so a streaming decoder must
hold back the incomplete bytes until the rest of the character arrives. Numbers such as
3.14159, 2048, 151936 and 1e-6 are split into single digits first. Questions? Answers!
Lists: one, two, three; first, second, third. The weather is nice today, isn't it?
Hello, world! Good morning. Thank you very much. See you tomorrow at the station.
The expert router selects eight of one hundred and twenty eight experts for each token,
and the attention layer looks back over the whole context with rotary position encoding.

import os
import sys
import json
from typing import Any, Dict, List, Optional


class Config:
    """Settings for a small model."""

    def __init__(self, n_layer: int = 2, n_embd: int = 64, n_head: int = 4) -> None:
        self.n_layer = n_layer
        self.n_embd = n_embd
        self.n_head = n_head

    def to_dict(self) -> Dict[str, Any]:
        return {"n_layer": self.n_layer, "n_embd": self.n_embd, "n_head": self.n_head}


def load_config(path: str) -> Config:
    with open(path, "r", encoding="utf-8") as f:
        data = json.load(f)
    return Config(**data)


def softmax(values: List[float]) -> List[float]:
    m = max(values)
    exps = [pow(2.718281828, v - m) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def top_k(values: List[float], k: int) -> List[int]:
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return order[:k]


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: model.py CONFIG", file=sys.stderr)
        return 2
    config = load_config(args[0])
    for name, value in config.to_dict().items():
        print(f"{name} = {value}")
    if os.environ.get("DEBUG"):
        print("debug mode is on")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

for i in range(10):
    if i % 2 == 0:
        print(i, "is even")
    else:
        print(i, "is odd")

result = [x * x for x in range(100) if x > 10]
mapping = {key: value for key, value in zip("abc", [1, 2, 3])}
assert len(result) == 89, "unexpected length"
try:
    with open("missing.txt") as handle:
        content = handle.read()
except FileNotFoundError as error:
    content = ""
    print("error:", error)
finally:
    print("done")
'''

_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _train_merges(text: str, n_merges: int) -> list[tuple[str, str]]:
    # Deterministic BPE training: words from the Qwen2 split regex (NFC), byte-level alphabet;
    # each step merges the most frequent adjacent pair (ties: lexicographically smallest pair).
    b2u = bytes_to_unicode()
    counts: dict[str, int] = defaultdict(int)
    pre = PreTokenizer("qwen2")
    for w in pre.split(pre.normalize(text)):
        counts["".join(b2u[b] for b in w.encode("utf-8"))] += 1
    words = [list(w) for w in sorted(counts)]
    freqs = [counts[w] for w in sorted(counts)]
    pair_count: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for wi, syms in enumerate(words):
        for a, b in zip(syms, syms[1:]):
            pair_count[(a, b)] += freqs[wi]
            where[(a, b)].add(wi)

    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        live = [(c, p) for p, c in pair_count.items() if c > 0]
        if not live:
            raise ValueError(
                f"n_merges={n_merges} exceeds the {len(merges)} merges learnable from the built-in sample"
            )
        best_count = max(c for c, _ in live)
        pair = min(p for c, p in live if c == best_count)
        merges.append(pair)
        a, b = pair
        for wi in sorted(where.pop(pair, ())):
            syms = words[wi]
            f = freqs[wi]
            for x, y in zip(syms, syms[1:]):  # remove this word's old pairs
                pair_count[(x, y)] -= f
            out: list[str] = []
            i = 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[wi] = out
            for x, y in zip(out, out[1:]):  # add its new pairs
                pair_count[(x, y)] += f
                where[(x, y)].add(wi)
        pair_count.pop(pair, None)
    return merges


@functools.lru_cache(maxsize=8)
def _builtin(n_merges: int) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]  # id == byte value
    seen = set(tokens)
    merges = _train_merges(_SAMPLE_TEXT, n_merges)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    types = [TOKEN_TYPE_NORMAL] * len(tokens) + [TOKEN_TYPE_CONTROL] * len(_SPECIALS)
    tokens.extend(_SPECIALS)
    return tuple(tokens), tuple(types), tuple(f"{a} {b}" for a, b in merges)


def builtin_byte_vocab(n_merges: int = 509) -> dict[str, Any]:
    """GGUF tokenizer metadata of a small built-in byte-level BPE vocabulary (for tiny test models).

    256 byte tokens (id = byte value, GPT-2 byte-unicode form), the tokens of `n_merges`
    deterministic merges learned from an embedded English/Python sample, then the control
    tokens <|endoftext|>, <|im_start|>, <|im_end|>; pre-tokenizer "qwen2"; ChatML template.
    The default gives a 768-token vocabulary.
    """
    if not isinstance(n_merges, int) or n_merges < 0:
        raise ValueError(f"n_merges must be a non-negative int, got {n_merges!r}")
    tokens, types, merges = _builtin(n_merges)
    tokens_l = list(tokens)
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "qwen2",
        "tokenizer.ggml.tokens": tokens_l,
        "tokenizer.ggml.token_type": list(types),
        "tokenizer.ggml.merges": list(merges),
        "tokenizer.ggml.bos_token_id": tokens_l.index("<|endoftext|>"),
        "tokenizer.ggml.eos_token_id": tokens_l.index("<|im_end|>"),
        "tokenizer.ggml.padding_token_id": tokens_l.index("<|endoftext|>"),
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": BUILTIN_CHAT_TEMPLATE,
    }
