"""Byte-level GGUF builder for tests: writes exactly the bytes asked for, including malformed
ones (wrong counts, lengths, types, shapes, offsets), and records where each field landed so
fuzzers can aim mutations at counts, lengths and offsets.

Values are given as (type_id, python_value); arrays as (ARRAY, (elem_type, [items])) where
nested items are themselves (elem_type, [items]) for elem_type ARRAY. Raw bytes can be
spliced anywhere with Raw(b"...").
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_FMT = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i", FLOAT32: "<f",
        BOOL: "<B", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

# GGML type ids and (block size, bytes per block)
F32, F16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 8, 12, 13, 14, 30
TYPE_SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
              9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
              15: (256, 292), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2)}


@dataclass
class Raw:
    """Bytes written verbatim in place of an encoded value."""

    data: bytes


def u32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def gstr(s: str | bytes, length: int | None = None) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return u64(len(b) if length is None else length) + b


class Writer:
    """Appends bytes and records (offset, width, label) of each count/length/type field."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.fields: list[tuple[int, int, str]] = []

    def put(self, b: bytes, label: str | None = None) -> None:
        if label is not None:
            self.fields.append((len(self.buf), len(b), label))
        self.buf += b

    def string(self, s: str | bytes, label: str, length: int | None = None) -> None:
        b = s.encode() if isinstance(s, str) else s
        self.put(u64(len(b) if length is None else length), label + ".len")
        self.put(b)

    def value(self, vtype: int, v, label: str) -> None:
        if isinstance(v, Raw):
            self.put(v.data)
        elif vtype == STRING:
            self.string(v, label)
        elif vtype == ARRAY:
            etype, items = v
            self.put(u32(etype), label + ".etype")
            self.put(u64(len(items)), label + ".count")
            for k, item in enumerate(items):
                self.value(etype, item, f"{label}[{k}]")
        else:
            self.put(struct.pack(_FMT[vtype], v), label if vtype in (UINT32, UINT64, BOOL) else None)


@dataclass
class Tensor:
    name: str
    ne: list[int]
    type: int = F32
    offset: int | None = None  # None: next aligned position
    n_dims: int | None = None  # None: len(ne)
    name_len: int | None = None  # override the encoded name length


def tensor_nbytes(ne: list[int], ttype: int) -> int:
    bs, ts = TYPE_SIZES[ttype]
    n = 1
    for d in ne[1:]:
        n *= d
    return ne[0] // bs * ts * n


@dataclass
class GGUF:
    """A GGUF image under construction. build() returns the bytes (and .fields their map)."""

    version: int = 3
    magic: bytes = b"GGUF"
    kvs: list[tuple[str | bytes, int, object]] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    n_kv: int | None = None  # override the header count
    n_tensors: int | None = None  # override the header count
    alignment: int = 32  # used to place data (set general.alignment yourself)
    data_size: int | None = None  # override the data-section length
    fields: list[tuple[int, int, str]] = field(default_factory=list)

    def kv(self, key: str | bytes, vtype: int, value) -> "GGUF":
        self.kvs.append((key, vtype, value))
        return self

    def tensor(self, name: str, ne: list[int], ttype: int = F32, **kw) -> "GGUF":
        self.tensors.append(Tensor(name, ne, ttype, **kw))
        return self

    def build(self) -> bytes:
        w = Writer()
        w.put(self.magic, "magic")
        w.put(u32(self.version), "version")
        w.put(u64(len(self.tensors) if self.n_tensors is None else self.n_tensors), "n_tensors")
        w.put(u64(len(self.kvs) if self.n_kv is None else self.n_kv), "n_kv")
        for k, (key, vtype, value) in enumerate(self.kvs):
            w.string(key, f"kv{k}.key")
            w.put(u32(vtype), f"kv{k}.type")
            w.value(vtype, value, f"kv{k}.value")
        a = self.alignment
        end = 0
        for t, ti in enumerate(self.tensors):
            nb = ti.name.encode()
            w.string(nb, f"t{t}.name", length=ti.name_len)
            w.put(u32(len(ti.ne) if ti.n_dims is None else ti.n_dims), f"t{t}.n_dims")
            for d, ne in enumerate(ti.ne):
                w.put(u64(ne), f"t{t}.ne{d}")
            w.put(u32(ti.type), f"t{t}.type")
            if ti.offset is None:
                off = (end + a - 1) // a * a
            else:
                off = ti.offset
            w.put(u64(off), f"t{t}.offset")
            try:
                t_end = off + tensor_nbytes(ti.ne, ti.type)
            except (KeyError, ZeroDivisionError):
                t_end = 0
            if t_end <= 1 << 22:  # hostile sizes/offsets: no data written for them
                end = max(end, t_end)
        if self.tensors:
            pad = (-len(w.buf)) % a
            w.put(b"\0" * pad)
            size = end if self.data_size is None else self.data_size
            # deterministic non-zero data so mutations of data bytes are visible
            w.put(bytes((i * 37 + 11) & 0xFF for i in range(size)))
        self.fields = w.fields
        return bytes(w.buf)


def valid_small() -> GGUF:
    """A small valid file touching every value type, nested arrays, a tokenizer and several
    tensor types, with general.alignment 64."""
    g = GGUF(alignment=64)
    g.kv("general.architecture", STRING, "qwen3moe")
    g.kv("general.alignment", UINT32, 64)
    g.kv("general.name", STRING, "tiny \u00e9\u4e2d")
    g.kv("qwen3moe.block_count", UINT32, 2)
    g.kv("qwen3moe.rope.freq_base", FLOAT32, 1e7)
    g.kv("qwen3moe.attention.layer_norm_rms_epsilon", FLOAT32, 1e-6)
    g.kv("qwen3moe.expert_count", UINT32, 4)
    g.kv("x.u8", UINT8, 200)
    g.kv("x.i8", INT8, -100)
    g.kv("x.u16", UINT16, 60000)
    g.kv("x.i16", INT16, -30000)
    g.kv("x.i32", INT32, -2_000_000_000)
    g.kv("x.u64", UINT64, 2**63 + 5)
    g.kv("x.i64", INT64, -(2**62))
    g.kv("x.f64", FLOAT64, 3.141592653589793)
    g.kv("x.bool", BOOL, 1)
    g.kv("x.empty", ARRAY, (INT32, []))
    g.kv("x.nested", ARRAY, (ARRAY, [(INT16, [1, -2, 3]), (STRING, ["a", "bc"]), (ARRAY, [(UINT8, [9])])]))
    g.kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["<s>", "a", "b", "ab"]))
    g.kv("tokenizer.ggml.scores", ARRAY, (FLOAT32, [0.0, -1.0, -2.0, -3.0]))
    g.kv("tokenizer.ggml.token_type", ARRAY, (INT32, [3, 1, 1, 1]))
    g.kv("tokenizer.ggml.merges", ARRAY, (STRING, ["a b"]))
    g.kv("tokenizer.ggml.bos_token_id", UINT32, 0)
    g.tensor("token_embd.weight", [256, 2], Q4_K)
    g.tensor("blk.0.attn_norm.weight", [8], F32)
    g.tensor("blk.0.attn_q.weight", [32, 2, 1], Q8_0)
    g.tensor("output.weight", [4, 3], F16)
    return g
