"""The GGUF reader against the independent oracle, PyPI gguf: files written with
gguf.GGUFWriter (every value type, nested arrays, many tensor types and shapes, custom
alignments) must read back identically through qwen3moe.inspect and gguf.GGUFReader; a
hand-written v2 file parses; format_table reports the real Qwen3-Coder-30B Q4_K_M layout."""
from __future__ import annotations

import os
import sys

import gguf
import numpy as np
import pytest

import qwen3moe
from qwen3moe.gguf import GGUFInfo, format_table, inspect_bytes

sys.path.insert(0, os.path.dirname(__file__))
from _gguf_builder import ARRAY, FLOAT32, GGUF, INT32, STRING, UINT8, UINT32, UINT64, F32, Q4_K  # noqa: E402

VT = gguf.GGUFValueType
QT = gguf.GGMLQuantizationType

SCALARS = [
    ("t.uint8", VT.UINT8, 255),
    ("t.int8", VT.INT8, -128),
    ("t.uint16", VT.UINT16, 65535),
    ("t.int16", VT.INT16, -32768),
    ("t.uint32", VT.UINT32, 4294967295),
    ("t.int32", VT.INT32, -2147483648),
    ("t.float32", VT.FLOAT32, 0.1),
    ("t.uint64", VT.UINT64, 2**64 - 1),
    ("t.int64", VT.INT64, -(2**63)),
    ("t.float64", VT.FLOAT64, -1.0e300),
    ("t.bool_true", VT.BOOL, True),
    ("t.bool_false", VT.BOOL, False),
    ("t.string", VT.STRING, "h\u00e9llo \u4e16\u754c \U0001f600"),
]
ARRAYS = [
    ("a.uint8", VT.UINT8, [0, 1, 255]),
    ("a.int8", VT.INT8, [-128, 0, 127]),
    ("a.uint16", VT.UINT16, [0, 65535]),
    ("a.int16", VT.INT16, [-32768, 32767]),
    ("a.uint32", VT.UINT32, [1, 4294967295]),
    ("a.int32", VT.INT32, [-5, 7, 2147483647]),
    ("a.float32", VT.FLOAT32, [0.5, -1.25, 3.0e38]),
    ("a.uint64", VT.UINT64, [2**64 - 1, 3]),
    ("a.int64", VT.INT64, [-(2**63), 2**63 - 1]),
    ("a.float64", VT.FLOAT64, [1e-300, -2.5]),
    ("a.bool", VT.BOOL, [True, False, True]),
    ("a.string", VT.STRING, ["", "x", "\u00fc\u00f1\u00ee"]),
]
NESTED = {
    "n.ints": [[1, 2, 3], [4], [5, 6]],
    "n.strings": [["a", "b"], ["c"]],
    "n.depth3": [[[1, 2], [3]], [[4]]],
}
TENSORS = [
    # name, numpy array (GGUF shape is reversed numpy shape), raw GGML type or None
    ("f32_2d", np.arange(24, dtype=np.float32).reshape(4, 6), None),
    ("f16_3d", np.linspace(-1, 1, 2 * 3 * 8).astype(np.float16).reshape(2, 3, 8), None),
    ("f64_1d", np.array([1.5, -2.5, 3.25], dtype=np.float64), None),
    ("i8_4d", np.arange(2 * 2 * 2 * 4, dtype=np.int8).reshape(2, 2, 2, 4), None),
    ("i16", np.arange(5, dtype=np.int16), None),
    ("i32", np.arange(7, dtype=np.int32), None),
    ("i64", np.arange(3, dtype=np.int64), None),
    ("bf16_raw", np.zeros((3, 16), dtype=np.uint8), QT.BF16),  # 3 rows of 8 values
    ("q4_k", np.zeros((2, 144 * 2), dtype=np.uint8), QT.Q4_K),  # 2 rows of 512
    ("q6_k", np.zeros((3, 210), dtype=np.uint8), QT.Q6_K),
    ("q8_0_3d", np.zeros((2, 2, 34 * 2), dtype=np.uint8), QT.Q8_0),
    ("q4_0", np.zeros((1, 18), dtype=np.uint8), QT.Q4_0),
    ("q5_k", np.zeros((1, 176), dtype=np.uint8), QT.Q5_K),
    ("blk.0.attn_norm.weight", np.ones(64, dtype=np.float32), None),
]


def write_file(path, alignment: int | None):
    w = gguf.GGUFWriter(str(path), "qwen3moe")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_block_count(2)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(1.0e7)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_expert_count(4)
    w.add_expert_used_count(2)
    w.add_file_type(15)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "ab", "<|endoftext|>"])
    w.add_token_scores([0.0, -1.0, -2.0, -3.0])
    w.add_token_types([1, 1, 1, 3])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(3)
    w.add_chat_template("{{ messages }}")
    for key, vt, val in SCALARS:
        w.add_key_value(key, val, vt)
    for key, vt, val in ARRAYS:
        w.add_key_value(key, val, VT.ARRAY, sub_type=vt)
    for key, val in NESTED.items():
        w.add_key_value(key, val, VT.ARRAY)
    for name, arr, raw in TENSORS:
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def flatten(v):
    if isinstance(v, (list, tuple)):
        return [x for item in v for x in flatten(item)]
    if isinstance(v, np.ndarray):
        return v.tolist()
    return [v]


def compare_with_oracle(path, info: GGUFInfo):
    r = gguf.GGUFReader(str(path))
    oracle_fields = [(k, f) for k, f in r.fields.items() if not k.startswith("GGUF.")]
    assert [k for k, _ in oracle_fields] == list(info.metadata.keys())
    for key, f in oracle_fields:
        mine = info.metadata[key]
        main = f.types[0]
        if main == VT.ARRAY:
            assert info.metadata_types[key].startswith("ARRAY[" + VT(f.types[1]).name), key
            if f.types[1] == VT.ARRAY:
                assert flatten(mine) == f.contents(), key
            elif f.types[1] == VT.STRING:
                assert isinstance(mine, list) and mine == f.contents(), key
            else:
                assert isinstance(mine, np.ndarray), key
                expected_dtype = gguf.GGUFReader.gguf_scalar_to_np[VT(f.types[1])]
                assert mine.dtype == expected_dtype, key
                assert mine.tolist() == f.contents(), key
        else:
            assert info.metadata_types[key] == main.name, key
            assert type(mine) is type(f.contents()) or (main == VT.BOOL and isinstance(mine, bool)), key
            assert mine == f.contents(), key
    assert info.alignment == r.alignment
    assert info.data_offset == r.data_offset
    assert len(info.tensors) == len(r.tensors)
    for mine, t in zip(info.tensors, r.tensors):
        assert mine.name == t.name
        assert mine.type == int(t.tensor_type)
        assert mine.type_name == t.tensor_type.name
        assert mine.shape == tuple(int(d) for d in t.shape)
        assert mine.nbytes == int(t.n_bytes)
        assert info.data_offset + mine.offset == t.data_offset
    return r


@pytest.mark.parametrize("alignment", [None, 1, 64, 256, 4096])
def test_writer_file_matches_gguf_reader(tmp_path, alignment):
    path = tmp_path / "w.gguf"
    write_file(path, alignment)
    info = qwen3moe.inspect(path)
    assert info.version == 3
    assert info.alignment == (alignment or 32)
    assert info.data_offset % info.alignment == 0
    assert info.file_size == os.path.getsize(path)
    assert info.architecture == "qwen3moe"
    r = compare_with_oracle(path, info)
    # every value we wrote comes back exactly (float32 through float32 rounding)
    for key, vt, val in SCALARS:
        got = info.metadata[key]
        assert got == (float(np.float32(val)) if vt == VT.FLOAT32 else val), key
    for key, vt, val in ARRAYS:
        got = info.metadata[key]
        want = np.array(val, dtype=np.float32).tolist() if vt == VT.FLOAT32 else val
        assert (got if isinstance(got, list) else got.tolist()) == want, key
    assert [a.tolist() for a in info.metadata["n.ints"]] == NESTED["n.ints"]
    assert info.metadata["n.strings"] == NESTED["n.strings"]
    assert [[a.tolist() for a in inner] for inner in info.metadata["n.depth3"]] == NESTED["n.depth3"]
    # shapes in ne order, sizes from the type table; tensor bytes identical to the oracle's view
    blob = path.read_bytes()
    for mine, t in zip(info.tensors, r.tensors):
        got = blob[info.data_offset + mine.offset: info.data_offset + mine.offset + mine.nbytes]
        assert got == np.asarray(t.data).tobytes(), mine.name
    assert info.tensor("q4_k").shape == (512, 2)
    assert info.tensor("q8_0_3d").shape == (64, 2, 2)
    assert info.tensor("i8_4d").shape == (4, 2, 2, 2)
    # bytes parse identically to the file
    again = inspect_bytes(blob)
    assert again.tensors == info.tensors and list(again.metadata) == list(info.metadata)


def test_v2_file_parses(tmp_path):
    g = GGUF(version=2)
    g.kv("general.architecture", STRING, "qwen3moe")
    g.kv("qwen3moe.block_count", UINT32, 1)
    g.kv("x.list", ARRAY, (INT32, [1, 2, 3]))
    g.kv("x.empty", ARRAY, (FLOAT32, []))
    g.kv("x.nested_empty", ARRAY, (ARRAY, [(UINT8, []), (STRING, [])]))
    g.tensor("a", [8], F32).tensor("b", [256, 2], Q4_K)
    data = g.build()
    path = tmp_path / "v2.gguf"
    path.write_bytes(data)
    info = qwen3moe.inspect(path)
    assert info.version == 2
    assert info.metadata["qwen3moe.block_count"] == 1
    assert info.metadata["x.list"].tolist() == [1, 2, 3]
    assert info.metadata["x.empty"].size == 0 and info.metadata["x.empty"].dtype == np.float32
    assert [len(x) for x in info.metadata["x.nested_empty"]] == [0, 0]
    assert [(t.name, t.type_name, t.shape, t.offset, t.nbytes) for t in info.tensors] == [
        ("a", "F32", (8,), 0, 32), ("b", "Q4_K", (256, 2), 32, 288)]
    # the oracle reads v2 too and agrees on the tensor table
    r = gguf.GGUFReader(str(path))
    assert [t.name for t in r.tensors] == ["a", "b"]
    assert r.data_offset == info.data_offset


def test_uint64_and_invalid_utf8_string_values():
    g = GGUF()
    g.kv("x.big", UINT64, 2**64 - 1)
    g.kv("x.raw", STRING, b"\xff\xfeabc")  # not UTF-8: comes back as bytes, not an error
    info = inspect_bytes(g.build())
    assert info.metadata["x.big"] == 2**64 - 1
    assert info.metadata["x.raw"] == b"\xff\xfeabc"
    assert info.tensors == [] and info.total_bytes == 0


def coder30b_tensor_table():
    """(name, ne, type) of Qwen3-Coder-30B-A3B-Instruct Q4_K_M (ARCHITECTURE.md section 1)."""
    n_layer, n_embd, vocab, n_expert, n_ff_exp = 48, 2048, 151936, 128, 768
    q4k, q6k, f32 = 12, 14, 0

    def q6_layer(i):
        return i < n_layer // 8 or i >= 7 * n_layer // 8 or (i - n_layer // 8) % 3 == 2

    t = [("token_embd.weight", [n_embd, vocab], q4k)]
    for i in range(n_layer):
        p = f"blk.{i}."
        t += [
            (p + "attn_norm.weight", [n_embd], f32),
            (p + "attn_q.weight", [n_embd, 4096], q4k),
            (p + "attn_k.weight", [n_embd, 512], q4k),
            (p + "attn_v.weight", [n_embd, 512], q6k if q6_layer(i) else q4k),
            (p + "attn_output.weight", [4096, n_embd], q4k),
            (p + "attn_q_norm.weight", [128], f32),
            (p + "attn_k_norm.weight", [128], f32),
            (p + "ffn_norm.weight", [n_embd], f32),
            (p + "ffn_gate_inp.weight", [n_embd, n_expert], f32),
            (p + "ffn_gate_exps.weight", [n_embd, n_ff_exp, n_expert], q4k),
            (p + "ffn_up_exps.weight", [n_embd, n_ff_exp, n_expert], q4k),
            (p + "ffn_down_exps.weight", [n_ff_exp, n_embd, n_expert], q6k if q6_layer(i) else q4k),
        ]
    t += [("output_norm.weight", [n_embd], f32), ("output.weight", [n_embd, vocab], q6k)]
    return t


def test_format_table_coder30b_layout(tmp_path):
    """The real model's tensor table in a sparse file (header written, data left as a hole)."""
    g = GGUF()
    g.kv("general.architecture", STRING, "qwen3moe")
    g.kv("qwen3moe.block_count", UINT32, 48)
    for name, ne, ttype in coder30b_tensor_table():
        g.tensor(name, ne, ttype, offset=0)
    # place tensors ourselves (the builder writes no data for sizes this large)
    off = 0
    for ti in g.tensors:
        ti.offset = off
        from _gguf_builder import tensor_nbytes
        off += (tensor_nbytes(ti.ne, ti.type) + 31) // 32 * 32
    g.data_size = 0
    header = g.build()
    data_offset = (len(header) + 31) // 32 * 32
    path = tmp_path / "coder30b-layout.gguf"
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(data_offset + off)  # sparse: no disk space used
    info = qwen3moe.inspect(path)
    assert len(info.tensors) == 579
    counts = info.type_counts()
    assert {k: v[0] for k, v in counts.items()} == {"F32": 241, "Q4_K": 289, "Q6_K": 49}
    assert f"{info.total_bytes / 2**30:.2f}" == "17.28"
    text = format_table(info)
    assert "579 tensors: 241 F32, 289 Q4_K, 49 Q6_K, 17.28 GiB" in text
    row = next(line for line in text.splitlines() if line.startswith("blk.0.ffn_down_exps.weight"))
    assert row.split()[1:] == ["Q6_K", "768", "x", "2048", "x", "128", f"{165150720 / 2**20:.2f}"]
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.split() == ["total", "579", f"{info.total_bytes / 2**20:.2f}", "17.28"]


def test_format_table_small():
    g = GGUF()
    g.kv("general.architecture", STRING, "qwen3moe")
    g.tensor("a", [1024, 256], F32).tensor("b", [256, 4], Q4_K)
    info = inspect_bytes(g.build())
    text = format_table(info)
    lines = text.splitlines()
    assert any(line.split() == ["a", "F32", "1024", "x", "256", "1.00"] for line in lines)
    assert any(line.split() == ["b", "Q4_K", "256", "x", "4", "0.00"] for line in lines)
    assert "2 tensors: 1 F32, 1 Q4_K, 0.00 GiB" in text
    assert info.type_counts() == {"F32": (1, 1024 * 256 * 4), "Q4_K": (1, 4 * 144)}
