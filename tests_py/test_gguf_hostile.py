"""Hostile GGUF input (ARCHITECTURE.md section 6): handcrafted malformed files, one per known
attack, each must raise qwen3moe.GGUFError naming the field; then >= 10,000 random mutations
and every truncation of a valid file, run in a subprocess under an address-space limit, each
must load or raise GGUFError (no crash, no hang, no allocation beyond a small bound)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import qwen3moe
from qwen3moe.gguf import inspect_bytes

sys.path.insert(0, os.path.dirname(__file__))
from _gguf_builder import (  # noqa: E402
    ARRAY, BOOL, F16, F32, FLOAT32, FLOAT64, GGUF, INT8, INT32, Q4_K, Q8_0, Raw, STRING, UINT8, UINT32,
    UINT64, gstr, u32, u64, valid_small,
)

M64 = 2**64 - 1


def base(**kw) -> GGUF:
    """A minimal valid file: architecture key plus one F32 tensor."""
    g = GGUF(**kw)
    g.kv("general.architecture", STRING, "qwen3moe")
    return g


def with_tensor(g: GGUF, **kw) -> GGUF:
    g.tensor("w", [4, 2], F32, **kw)
    return g


def nested(depth: int):
    v = (INT32, [1])
    for _ in range(depth - 1):
        v = (ARRAY, [v])
    return v


def tokens(n: int):
    return (STRING, [f"t{i}" for i in range(n)])


def case_list() -> list[tuple[str, bytes, list[str]]]:
    c: list[tuple[str, bytes, list[str]]] = []

    def add(name: str, data: bytes, *needles: str) -> None:
        c.append((name, data, list(needles)))

    valid = with_tensor(base()).build()
    # --- header ---
    add("empty file", b"", "magic")
    add("3 bytes", b"GGU", "magic")
    add("bad magic", b"GGUX" + valid[4:], "bad magic")
    add("version 1", base(version=1).build(), "version 1")
    add("version 4", base(version=4).build(), "version 4")
    add("version big-endian", base(version=0x03000000).build(), "version", "big-endian")
    add("truncated in version", valid[:6], "version", "truncated")
    add("truncated in n_tensors", valid[:12], "n_tensors", "truncated")
    add("truncated in n_kv", valid[:20], "n_kv", "truncated")
    add("n_kv 2^64-1", base(n_kv=M64).build(), "n_kv")
    add("n_kv 2^60", base(n_kv=2**60).build(), "n_kv")
    add("n_kv beyond records", base(n_kv=3).build(), "key #1", "truncated")
    add("n_tensors 2^64-1", base(n_tensors=M64).build(), "n_tensors")
    add("n_tensors beyond records", with_tensor(base(n_tensors=2)).build()[:-32], "tensor #1")
    # --- keys and values ---
    g = base()
    g.kvs.insert(0, (b"k", UINT8, Raw(b"")))
    data = g.build()
    key_len_at = 24
    add("key length 2^64-1", data[:key_len_at] + u64(M64) + data[key_len_at + 8:], "key length", "at byte 24")
    add("key length > 65535", base().kv("k" * 70000, UINT8, 1).build(), "key length", "limit")
    add("empty key", base().kv("", UINT8, 1).build(), "key is empty")
    add("key not UTF-8", base().kv(b"bad\xff\xfe", UINT8, 1).build(), "key", "UTF-8")
    add("key with NUL", base().kv(b"a\0b", UINT8, 1).build(), "NUL")
    add("unknown value type 13", base().kv("x.t", 13, Raw(b"\0" * 8)).build(), "x.t", "value type id 13")
    add("value type 0xFFFFFFFF", base().kv("x.t", 0xFFFFFFFF, Raw(b"")).build(), "x.t", "value type")
    add("string length 2^63", base().kv("x.s", STRING, Raw(u64(2**63) + b"abc")).build(), "x.s", "string length")
    add("string past EOF", base().kv("x.s", STRING, Raw(u64(100) + b"abc")).build(), "x.s", "string length 100")
    add("array count 2^64-1", base().kv("x.a", ARRAY, Raw(u32(UINT8) + u64(M64))).build(), "x.a", "array count")
    add("array INT32 count > bytes/4", base().kv("x.a", ARRAY, Raw(u32(INT32) + u64(5) + b"\0" * 12)).build(),
        "x.a", "array count 5")
    add("array of strings count > bytes/8",
        base().kv("x.a", ARRAY, Raw(u32(STRING) + u64(4) + gstr("ab") + gstr("c"))).build(), "x.a", "array count 4")
    add("array element type 13", base().kv("x.a", ARRAY, Raw(u32(13) + u64(1) + b"\0" * 8)).build(),
        "x.a", "array element type")
    add("nested arrays depth 9", base().kv("x.deep", ARRAY, nested(9)).build(), "x.deep", "nested deeper")
    add("nested array bomb (array of 2^40 arrays)",
        base().kv("x.bomb", ARRAY, Raw(u32(ARRAY) + u64(2**40) + u32(UINT8) + u64(0))).build(), "x.bomb", "array count")
    add("array element truncated", base().kv("x.a", ARRAY, (STRING, ["abc", Raw(u64(50))])).build(),
        "x.a", "element [1]", "string length 50")
    add("bool value 2", base().kv("x.b", BOOL, 2).build(), "x.b", "BOOL value 2")
    add("duplicate key", base().kv("x.d", UINT8, 1).kv("x.d", UINT8, 2).build(), "x.d", "duplicate key")
    add("truncated inside value", base().kv("general.name", STRING, "hello world").build()[:-5],
        "general.name", "string length")
    # --- alignment ---
    add("alignment 0", with_tensor(base().kv("general.alignment", UINT32, 0)).build(), "general.alignment", "alignment is 0")
    add("alignment 3", with_tensor(base().kv("general.alignment", UINT32, 3)).build(), "general.alignment", "power of two")
    add("alignment 2^31", with_tensor(base().kv("general.alignment", UINT32, 2**31)).build(), "general.alignment", "limit")
    add("alignment UINT64", with_tensor(base().kv("general.alignment", UINT64, 32)).build(), "general.alignment", "UINT32")
    add("alignment STRING", with_tensor(base().kv("general.alignment", STRING, "32")).build(), "general.alignment", "UINT32")
    # --- known keys with the wrong value type ---
    wrong = [
        ("general.architecture", UINT32, 7, "STRING"),
        ("general.file_type", UINT8, 15, "UINT32"),
        ("qwen3moe.block_count", INT32, 48, "unsigned"),
        ("qwen3moe.expert_count", FLOAT32, 128.0, "unsigned"),
        ("qwen3moe.attention.head_count_kv", ARRAY, (INT8, [4, 4]), "unsigned"),
        ("qwen3moe.rope.freq_base", FLOAT64, 1e7, "FLOAT32"),
        ("qwen3moe.attention.layer_norm_rms_epsilon", UINT32, 1, "FLOAT32"),
        ("tokenizer.ggml.tokens", ARRAY, (UINT8, [1, 2]), "ARRAY of STRING"),
        ("tokenizer.ggml.scores", ARRAY, (FLOAT64, [0.5]), "ARRAY of FLOAT32"),
        ("tokenizer.ggml.token_type", ARRAY, (INT8, [1, 1, 1]), "ARRAY of INT32"),
        ("tokenizer.ggml.merges", STRING, "a b", "ARRAY of STRING"),
        ("tokenizer.ggml.bos_token_id", INT32, 1, "UINT32"),
        ("tokenizer.ggml.eos_token_id", UINT64, 1, "UINT32"),
        ("tokenizer.chat_template", ARRAY, (STRING, ["x"]), "STRING"),
    ]
    for key, vtype, value, needle in wrong:
        g = GGUF() if key == "general.architecture" else base()
        add(f"wrong type {key}", g.kv(key, vtype, value).build(), key, needle)
    add("scores length != tokens length",
        base().kv("tokenizer.ggml.tokens", ARRAY, tokens(3)).kv("tokenizer.ggml.scores", ARRAY, (FLOAT32, [0.0] * 2)).build(),
        "tokenizer.ggml.scores", "differs")
    add("token_type length != tokens length",
        base().kv("tokenizer.ggml.tokens", ARRAY, tokens(3)).kv("tokenizer.ggml.token_type", ARRAY, (INT32, [1] * 4)).build(),
        "tokenizer.ggml.token_type", "differs")
    add("token_type without tokens", base().kv("tokenizer.ggml.token_type", ARRAY, (INT32, [1])).build(),
        "tokenizer.ggml.token_type", "without")
    # --- tensor infos ---
    add("tensor name length 2^64-1", with_tensor(base(), name_len=M64).build(), "tensor #0", "tensor name length")
    add("tensor name > 64 bytes", base().tensor("n" * 65, [4]).build(), "tensor #0", "limit of 64")
    add("empty tensor name", base().tensor("", [4]).build(), "tensor name is empty")
    add("tensor name not UTF-8 (overlong)", _raw_tensor_name_file(b"\xc0\xaf"), "tensor #0", "UTF-8")
    add("tensor name not UTF-8 (surrogate)", _raw_tensor_name_file(b"\xed\xa0\x80"), "tensor #0", "UTF-8")
    add("duplicate tensor name", base().tensor("w", [4]).tensor("w", [4]).build(), "tensor 'w'", "duplicate tensor name")
    add("n_dims 0", with_tensor(base(), n_dims=0).build(), "tensor 'w'", "n_dims 0")
    add("n_dims 5", base().tensor("w", [1, 1, 1, 1, 4]).build(), "tensor 'w'", "n_dims 5")
    add("n_dims 0xFFFFFFFF", with_tensor(base(), n_dims=0xFFFFFFFF).build(), "tensor 'w'", "n_dims 4294967295")
    add("ne 0", base().tensor("w", [4, 0]).build(), "tensor 'w'", "ne[1] is 0")
    add("ne >= 2^63", base().tensor("w", [2**63, 1]).build(), "tensor 'w'", "ne[0]", "INT64_MAX")
    add("ne product wraps", base().tensor("w", [2**32, 2**32, 2]).build(), "tensor 'w'", "overflows")
    add("byte size overflows", base().tensor("w", [2**61], 28).build(), "tensor 'w'", "byte size")
    add("truncated inside ne", cut(base().tensor("w", [4, 2]), "t0.ne1", 3), "tensor 'w'", "ne[1]", "truncated")
    add("truncated inside type", cut(base().tensor("w", [4, 2]), "t0.type", 2), "tensor 'w'", "type", "truncated")
    add("truncated inside offset", cut(base().tensor("w", [4, 2]), "t0.offset", 7), "tensor 'w'", "offset", "truncated")
    add("truncated inside key", cut(base().kv("x.long", UINT8, 1), "kv1.key.len", 12), "key #1", "key length 6")
    add("truncated inside array", cut(base().kv("x.a", ARRAY, (STRING, ["a", "b" * 15, "c" * 18])), "kv1.value.count",
                                      8 + 9 + 8 + 10), "x.a", "element [1]", "string length 15")
    add("type id 40", base().tensor("w", [4], 40).build(), "tensor 'w'", "type id 40")
    add("type id 31 (removed)", base().tensor("w", [32], 31).build(), "tensor 'w'", "type id 31")
    add("type id 0xFFFFFFFF", base().tensor("w", [4], 0xFFFFFFFF).build(), "tensor 'w'", "type id 4294967295")
    add("ne[0] not a multiple of the block", base().tensor("w", [100, 2], Q4_K).build(), "tensor 'w'", "block size 256")
    # --- tensor data placement ---
    add("offset past EOF", with_tensor(base(), offset=1 << 30).build(), "tensor 'w'", "past end of file")
    add("offset 2^64-32 (wraps)", with_tensor(base(), offset=2**64 - 32).build(), "tensor 'w'", "past end of file")
    add("tensor bytes fewer than type x shape need", with_tensor(base(data_size=31)).build(), "tensor 'w'",
        "size 32 past end of file")
    add("no data section", cut(with_tensor(base()), "t0.offset", 8), "tensor 'w'", "past end of file")
    add("misaligned offset", base().tensor("a", [4]).tensor("w", [4], offset=20).build(), "tensor 'w'",
        "not a multiple of the alignment 32")
    add("overlapping tensors (same offset)", base().tensor("a", [8]).tensor("w", [8], offset=0).build(), "tensor 'w'",
        "overlaps tensor 'a'")
    add("overlapping tensors (partial)", base().tensor("a", [16], F32).tensor("w", [8], F32, offset=32).build(),
        "tensor 'w'", "overlaps")
    add("Q8_0 tensor truncated", base().tensor("q", [64, 2], Q8_0).build()[:-1], "tensor 'q'", "past end of file")
    add("F16 data 1 byte short", base(data_size=7).tensor("h", [4], F16).build(), "tensor 'h'", "past end of file")
    return c


def _raw_tensor_name_file(name: bytes) -> bytes:
    g = base()
    g.tensor("x", [4])
    data = g.build()
    # replace the 1-byte name "x" with `name` (length field precedes it)
    pos = data.index(gstr("x"))
    return data[:pos] + gstr(name) + data[pos + 9:]


def cut(g: GGUF, label: str, extra: int) -> bytes:
    """The file built from g, cut `extra` bytes after the start of field `label`."""
    data = g.build()
    at = next(off for off, _, lab in g.fields if lab == label)
    return data[: at + extra]


CASES = case_list()


def test_case_count():
    assert len(CASES) >= 30
    assert len({name for name, _, _ in CASES}) == len(CASES)


def test_valid_base_files_load():
    # the builders used for the hostile cases produce valid files when left alone
    info = inspect_bytes(with_tensor(base()).build())
    assert [t.name for t in info.tensors] == ["w"]
    assert inspect_bytes(valid_small().build()).architecture == "qwen3moe"


@pytest.mark.parametrize("name,data,needles", CASES, ids=[c[0] for c in CASES])
def test_hostile_bytes(name, data, needles):
    with pytest.raises(qwen3moe.GGUFError) as ei:
        inspect_bytes(data)
    msg = str(ei.value)
    assert msg.startswith("GGUF: ")
    assert "[at byte " in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


@pytest.mark.parametrize("name,data,needles", CASES[::3], ids=[c[0] for c in CASES[::3]])
def test_hostile_files(tmp_path, name, data, needles):
    # the same through the mmap path
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    with pytest.raises(qwen3moe.GGUFError) as ei:
        qwen3moe.inspect(p)
    for needle in needles:
        assert needle in str(ei.value)


def test_not_a_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        qwen3moe.inspect(tmp_path / "missing.gguf")
    with pytest.raises(qwen3moe.GGUFError, match="not a regular file"):
        qwen3moe.inspect(tmp_path)


def test_gguf_error_is_value_error():
    assert issubclass(qwen3moe.GGUFError, ValueError)


def test_random_mutations_in_subprocess():
    """>= 10,000 mutations + every truncation, in a child under RLIMIT_AS; see _gguf_fuzz_child."""
    child = os.path.join(os.path.dirname(__file__), "_gguf_fuzz_child.py")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(qwen3moe.__file__))] +
                                        env.get("PYTHONPATH", "").split(os.pathsep))
    proc = subprocess.run([sys.executable, child, "--mutations", "30000", "--seed", "1234"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"child failed rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["failures"] == []
    assert summary["mutations"] >= 30000
    assert summary["truncations"] == summary["file_size"]
    # the mutations must exercise both outcomes
    assert summary["loaded"] > 100 and summary["rejected"] > 1000
    assert summary["max_seconds"] < 1.0
