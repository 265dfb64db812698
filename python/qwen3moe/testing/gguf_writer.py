"""Streaming GGUF v3 writer (our own; independent of PyPI gguf, which is used as an oracle).

Design: the caller declares metadata (explicitly typed values) and tensor infos (name, ne,
GGML type, data source); `write()` computes every offset up front, writes the header, then
streams tensor data one tensor (one chunk) at a time, so memory stays bounded by the largest
chunk a data source yields, never by the model. A tensor's data is raw bytes / a NumPy array
(its bytes are written as they are) or a callable returning an iterable of byte chunks.
`write(sparse=True)` writes only the header and extends the file with `truncate`, leaving a
sparse file of the right size whose tensor bytes read as zeros (for table checks of huge files).
The file is written to a temporary name beside `path` and renamed on success.

Layout (little-endian): magic "GGUF", u32 version 3, u64 n_tensors, u64 n_kv, the key/value
pairs, the tensor infos (name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset), zero padding
to `alignment`, then the data section; each tensor starts at an aligned offset relative to the
data section and is followed by zero padding to the alignment.
"""
from __future__ import annotations

import enum
import fnmatch
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, Union

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32


class ValueType(enum.IntEnum):
    """GGUF metadata value types (gguf_type)."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# struct code, numpy little-endian dtype, (min, max) for integer types.
_SCALAR = {
    ValueType.UINT8: ("<B", "<u1", (0, 2**8 - 1)),
    ValueType.INT8: ("<b", "<i1", (-(2**7), 2**7 - 1)),
    ValueType.UINT16: ("<H", "<u2", (0, 2**16 - 1)),
    ValueType.INT16: ("<h", "<i2", (-(2**15), 2**15 - 1)),
    ValueType.UINT32: ("<I", "<u4", (0, 2**32 - 1)),
    ValueType.INT32: ("<i", "<i4", (-(2**31), 2**31 - 1)),
    ValueType.UINT64: ("<Q", "<u8", (0, 2**64 - 1)),
    ValueType.INT64: ("<q", "<i8", (-(2**63), 2**63 - 1)),
    ValueType.FLOAT32: ("<f", "<f4", None),
    ValueType.FLOAT64: ("<d", "<f8", None),
    ValueType.BOOL: ("<B", "<u1", None),
}


@dataclass(frozen=True)
class Value:
    """A typed metadata value. For ARRAY, `elem_type` gives the element type."""

    type: ValueType  # the GGUF value type
    value: Any  # Python scalar / str / sequence (arrays)
    elem_type: ValueType | None = None  # ARRAY only: element type (not ARRAY)


def u8(v: int) -> Value:
    """UINT8 value."""
    return Value(ValueType.UINT8, int(v))


def i8(v: int) -> Value:
    """INT8 value."""
    return Value(ValueType.INT8, int(v))


def u16(v: int) -> Value:
    """UINT16 value."""
    return Value(ValueType.UINT16, int(v))


def i16(v: int) -> Value:
    """INT16 value."""
    return Value(ValueType.INT16, int(v))


def u32(v: int) -> Value:
    """UINT32 value (the GGUF convention for counts and token ids)."""
    return Value(ValueType.UINT32, int(v))


def i32(v: int) -> Value:
    """INT32 value."""
    return Value(ValueType.INT32, int(v))


def u64(v: int) -> Value:
    """UINT64 value."""
    return Value(ValueType.UINT64, int(v))


def i64(v: int) -> Value:
    """INT64 value."""
    return Value(ValueType.INT64, int(v))


def f32(v: float) -> Value:
    """FLOAT32 value (the GGUF convention for hyperparameters such as rope.freq_base)."""
    return Value(ValueType.FLOAT32, float(v))


def f64(v: float) -> Value:
    """FLOAT64 value."""
    return Value(ValueType.FLOAT64, float(v))


def boolean(v: bool) -> Value:
    """BOOL value."""
    return Value(ValueType.BOOL, bool(v))


def string(v: str) -> Value:
    """STRING value (UTF-8)."""
    return Value(ValueType.STRING, str(v))


def array(elem_type: ValueType, values: Sequence[Any] | np.ndarray) -> Value:
    """ARRAY value of `elem_type` elements (nested arrays: pass Value elements)."""
    return Value(ValueType.ARRAY, values, ValueType(elem_type))


# GGML tensor types: name -> (id, values per block, bytes per block). All ids llama.cpp assigns
# (mirrors cpp/quant/ggml-types.h) so files with any type can be sized.
GGML_TYPES: dict[str, tuple[int, int, int]] = {
    "F32": (0, 1, 4),
    "F16": (1, 1, 2),
    "Q4_0": (2, 32, 18),
    "Q4_1": (3, 32, 20),
    "Q5_0": (6, 32, 22),
    "Q5_1": (7, 32, 24),
    "Q8_0": (8, 32, 34),
    "Q8_1": (9, 32, 36),
    "Q2_K": (10, 256, 84),
    "Q3_K": (11, 256, 110),
    "Q4_K": (12, 256, 144),
    "Q5_K": (13, 256, 176),
    "Q6_K": (14, 256, 210),
    "Q8_K": (15, 256, 292),
    "IQ2_XXS": (16, 256, 66),
    "IQ2_XS": (17, 256, 74),
    "IQ3_XXS": (18, 256, 98),
    "IQ1_S": (19, 256, 50),
    "IQ4_NL": (20, 32, 18),
    "IQ3_S": (21, 256, 110),
    "IQ2_S": (22, 256, 82),
    "IQ4_XS": (23, 256, 136),
    "I8": (24, 1, 1),
    "I16": (25, 1, 2),
    "I32": (26, 1, 4),
    "I64": (27, 1, 8),
    "F64": (28, 1, 8),
    "IQ1_M": (29, 256, 56),
    "BF16": (30, 1, 2),
    "TQ1_0": (34, 256, 54),
    "TQ2_0": (35, 256, 66),
    "MXFP4": (39, 32, 17),
}
GGML_TYPE_NAMES: dict[int, str] = {v[0]: k for k, v in GGML_TYPES.items()}


def ggml_type_id(t: str | int) -> int:
    """GGML type id of a type name ("Q4_K") or id; ValueError for unknown types."""
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        if int(t) not in GGML_TYPE_NAMES:
            raise ValueError(f"unknown GGML type id {int(t)}")
        return int(t)
    if isinstance(t, str) and t.upper() in GGML_TYPES:
        return GGML_TYPES[t.upper()][0]
    raise ValueError(f"unknown GGML type {t!r}")


def ggml_type_name(t: str | int) -> str:
    """Canonical name of a GGML type given by name or id."""
    return GGML_TYPE_NAMES[ggml_type_id(t)]


def tensor_nbytes(ggml_type: str | int, ne: Sequence[int], name: str = "tensor") -> int:
    """Bytes a tensor of this type and shape occupies; ValueError if ne[0] is not a
    multiple of the type's block size."""
    tname = ggml_type_name(ggml_type)
    _, blck, tsize = GGML_TYPES[tname]
    ne = [int(x) for x in ne]
    if ne[0] % blck:
        raise ValueError(
            f"tensor {name!r}: row length ne[0]={ne[0]} is not a multiple of the "
            f"{tname} block size {blck}"
        )
    n = 1
    for x in ne:
        n *= x
    return n // blck * tsize


# Value types of well-known keys (llama.cpp / gguf-py conventions), used when a plain Python
# value is given. `{arch}` matches any architecture prefix; patterns are fnmatch globs.
_KEY_TYPES: list[tuple[str, Any]] = [
    ("general.architecture", ValueType.STRING),
    ("general.type", ValueType.STRING),
    ("general.quantization_version", ValueType.UINT32),
    ("general.alignment", ValueType.UINT32),
    ("general.file_type", ValueType.UINT32),
    ("general.base_model.count", ValueType.UINT32),
    ("general.dataset.count", ValueType.UINT32),
    ("general.tags", (ValueType.ARRAY, ValueType.STRING)),
    ("general.languages", (ValueType.ARRAY, ValueType.STRING)),
    ("general.*", ValueType.STRING),
    ("{arch}.vocab_size", ValueType.UINT32),
    ("{arch}.context_length", ValueType.UINT32),
    ("{arch}.embedding_length", ValueType.UINT32),
    ("{arch}.block_count", ValueType.UINT32),
    ("{arch}.feed_forward_length", ValueType.UINT32),
    ("{arch}.expert_feed_forward_length", ValueType.UINT32),
    ("{arch}.expert_shared_feed_forward_length", ValueType.UINT32),
    ("{arch}.expert_count", ValueType.UINT32),
    ("{arch}.expert_used_count", ValueType.UINT32),
    ("{arch}.attention.head_count", ValueType.UINT32),
    ("{arch}.attention.head_count_kv", ValueType.UINT32),
    ("{arch}.attention.key_length", ValueType.UINT32),
    ("{arch}.attention.value_length", ValueType.UINT32),
    ("{arch}.attention.layer_norm_rms_epsilon", ValueType.FLOAT32),
    ("{arch}.attention.layer_norm_epsilon", ValueType.FLOAT32),
    ("{arch}.rope.freq_base", ValueType.FLOAT32),
    ("{arch}.rope.dimension_count", ValueType.UINT32),
    ("{arch}.rope.scaling.type", ValueType.STRING),
    ("{arch}.rope.scaling.factor", ValueType.FLOAT32),
    ("{arch}.rope.scaling.original_context_length", ValueType.UINT32),
    ("tokenizer.ggml.model", ValueType.STRING),
    ("tokenizer.ggml.pre", ValueType.STRING),
    ("tokenizer.ggml.tokens", (ValueType.ARRAY, ValueType.STRING)),
    ("tokenizer.ggml.token_type", (ValueType.ARRAY, ValueType.INT32)),
    ("tokenizer.ggml.scores", (ValueType.ARRAY, ValueType.FLOAT32)),
    ("tokenizer.ggml.merges", (ValueType.ARRAY, ValueType.STRING)),
    ("tokenizer.ggml.*_token_id", ValueType.UINT32),
    ("tokenizer.ggml.token_type_count", ValueType.UINT32),
    ("tokenizer.ggml.add_*", ValueType.BOOL),
    ("tokenizer.ggml.remove_extra_whitespaces", ValueType.BOOL),
    ("tokenizer.chat_template", ValueType.STRING),
    ("tokenizer.chat_template.*", ValueType.STRING),
    ("quantize.imatrix.file", ValueType.STRING),
    ("quantize.imatrix.dataset", ValueType.STRING),
    ("quantize.imatrix.entries_count", ValueType.UINT32),
    ("quantize.imatrix.chunks_count", ValueType.UINT32),
]


def _known_key_type(key: str) -> Any:
    for pattern, vt in _KEY_TYPES:
        if pattern.startswith("{arch}."):
            head, _, rest = key.partition(".")
            if head and not head.startswith(("general", "tokenizer", "quantize")) and fnmatch.fnmatchcase(
                rest, pattern[len("{arch}.") :]
            ):
                return vt
        elif fnmatch.fnmatchcase(key, pattern):
            return vt
    return None


def typed_value(key: str, value: Any) -> Value:
    """The typed Value for `key`: a Value is kept as it is; a plain Python value is typed by
    the GGUF key conventions (counts u32, epsilons f32, token_type i32 ...). A plain int or
    float for an unknown key is ambiguous and raises ValueError (give a typed Value)."""
    if isinstance(value, Value):
        return value
    vt = _known_key_type(key)
    if isinstance(vt, tuple):
        if isinstance(value, (str, bytes)):
            raise ValueError(f"metadata key {key!r} expects an array, got a string")
        return Value(ValueType.ARRAY, value, vt[1])
    if vt is not None:
        return Value(vt, value)
    if isinstance(value, bool):
        return Value(ValueType.BOOL, value)
    if isinstance(value, str):
        return Value(ValueType.STRING, value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return Value(ValueType.ARRAY, list(value), ValueType.STRING)
    raise ValueError(
        f"metadata key {key!r}: cannot infer the GGUF type of {type(value).__name__} "
        f"value; pass a typed value (u32(), i32(), f32(), array() ...)"
    )


def _pack_string(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _pack_scalar(vt: ValueType, v: Any, key: str) -> bytes:
    code, _, rng = _SCALAR[vt]
    if vt == ValueType.BOOL:
        if not isinstance(v, (bool, np.bool_, int, np.integer)) or int(v) not in (0, 1):
            raise ValueError(f"metadata key {key!r}: BOOL value must be True/False, got {v!r}")
        return struct.pack(code, int(bool(v)))
    if rng is not None:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"metadata key {key!r}: {vt.name} value must be an integer, got {v!r}")
        v = int(v)
        if not rng[0] <= v <= rng[1]:
            raise ValueError(f"metadata key {key!r}: value {v} out of range for {vt.name}")
        return struct.pack(code, v)
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"metadata key {key!r}: {vt.name} value must be a number, got {v!r}")
    return struct.pack(code, float(v))


def _pack_array_body(elem: ValueType, values: Any, key: str) -> bytes:
    """Element type, count and elements of an array value."""
    if elem == ValueType.STRING:
        if isinstance(values, (str, bytes)):
            raise ValueError(f"metadata key {key!r}: string array expected, got a string")
        enc = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]
        lens = np.fromiter((len(b) for b in enc), dtype="<u8", count=len(enc))
        parts = [struct.pack("<IQ", int(elem), len(enc))]
        lb = lens.tobytes()
        parts.extend(x for i, b in enumerate(enc) for x in (lb[8 * i : 8 * i + 8], b))
        return b"".join(parts)
    if elem == ValueType.ARRAY:
        parts = [struct.pack("<IQ", int(elem), len(values))]
        for v in values:
            if not isinstance(v, Value) or v.type != ValueType.ARRAY or v.elem_type is None:
                raise ValueError(f"metadata key {key!r}: nested array elements must be array() values")
            parts.append(_pack_array_body(v.elem_type, v.value, key))
        return b"".join(parts)
    if elem not in _SCALAR:
        raise ValueError(f"metadata key {key!r}: bad array element type {elem!r}")
    _, dt, rng = _SCALAR[elem]
    arr = np.asarray(values)
    if arr.ndim != 1 and arr.size != 0:
        raise ValueError(f"metadata key {key!r}: array values must be one-dimensional")
    arr = arr.reshape(-1)
    if arr.size and elem == ValueType.BOOL:
        if arr.dtype != np.bool_ and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"metadata key {key!r}: BOOL array values must be 0/1")
    elif arr.size and rng is not None:
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ValueError(f"metadata key {key!r}: {elem.name} array needs integer values")
        if int(arr.min()) < rng[0] or int(arr.max()) > rng[1]:
            raise ValueError(f"metadata key {key!r}: array value out of range for {elem.name}")
    elif arr.size and not (np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"metadata key {key!r}: {elem.name} array needs numeric values")
    return struct.pack("<IQ", int(elem), arr.size) + arr.astype(dt).tobytes()


def encode_kv(key: str, value: Value) -> bytes:
    """Bytes of one key/value pair."""
    vt = ValueType(value.type)
    out = _pack_string(key) + struct.pack("<I", int(vt))
    if vt == ValueType.STRING:
        if not isinstance(value.value, (str, bytes)):
            raise ValueError(f"metadata key {key!r}: STRING value must be str, got {value.value!r}")
        return out + _pack_string(value.value)
    if vt == ValueType.ARRAY:
        if value.elem_type is None:
            raise ValueError(f"metadata key {key!r}: array without element type")
        return out + _pack_array_body(ValueType(value.elem_type), value.value, key)
    return out + _pack_scalar(vt, value.value, key)


# A tensor data source: raw bytes, an array (its bytes as stored), or a callable returning an
# iterable of chunks (bytes-like or arrays) whose concatenation is the tensor's bytes.
DataSource = Union[bytes, bytearray, memoryview, np.ndarray, Callable[[], Iterable[Any]], None]


@dataclass
class TensorInfo:
    """One tensor of the file."""

    name: str  # GGUF tensor name, e.g. "blk.0.attn_q.weight"
    ne: tuple[int, ...]  # shape, ne[0] contiguous (1..4 dims)
    type_id: int  # GGML type id
    nbytes: int  # exact byte size for type and shape
    data: DataSource  # where the bytes come from (None: sparse only)
    offset: int = 0  # relative to the data section, aligned (set by the writer)


def _as_bytes_view(chunk: Any) -> memoryview:
    if isinstance(chunk, np.ndarray):
        return np.ascontiguousarray(chunk).data.cast("B")
    return memoryview(chunk).cast("B")


class GGUFWriter:
    """Streaming GGUF v3 writer. Add metadata with `add`, tensors with `add_tensor`, then
    `write()` (or `write(sparse=True)`)."""

    def __init__(self, path: str | os.PathLike, *, alignment: int = DEFAULT_ALIGNMENT):
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a positive power of two, got {alignment!r}")
        self.path = os.fspath(path)
        self.alignment = alignment
        self.kv: dict[str, Value] = {}
        self._kv_bytes: dict[str, bytes] = {}  # encoded pairs, in insertion order
        self.tensors: list[TensorInfo] = []
        self._tensor_names: set[str] = set()
        if alignment != DEFAULT_ALIGNMENT:
            self.kv["general.alignment"] = u32(alignment)
            self._kv_bytes["general.alignment"] = encode_kv("general.alignment", u32(alignment))

    def add(self, key: str, value: Any) -> None:
        """Add a metadata key (typed Value, or a plain value typed by key conventions)."""
        if not isinstance(key, str) or not key:
            raise ValueError("metadata key must be a non-empty string")
        if key in self.kv and not (key == "general.alignment" and self.alignment != DEFAULT_ALIGNMENT):
            raise ValueError(f"duplicate metadata key {key!r}")
        tv = typed_value(key, value)
        if key == "general.alignment":
            if tv.type != ValueType.UINT32 or int(tv.value) != self.alignment:
                raise ValueError("general.alignment must be u32 and equal to the writer's alignment")
        self._kv_bytes[key] = encode_kv(key, tv)  # validates: errors name the key at the call site
        self.kv[key] = tv

    def add_tensor(
        self,
        name: str,
        ne: Sequence[int],
        ggml_type: str | int,
        data: DataSource = None,
    ) -> TensorInfo:
        """Declare a tensor: `ne` with ne[0] contiguous; `data` raw bytes / array / callable
        yielding chunks (None only for sparse files)."""
        if not isinstance(name, str) or not name:
            raise ValueError("tensor name must be a non-empty string")
        if name in self._tensor_names:
            raise ValueError(f"duplicate tensor name {name!r}")
        ne_t = tuple(int(x) for x in ne)
        if not 1 <= len(ne_t) <= 4:
            raise ValueError(f"tensor {name!r}: n_dims must be 1..4, got {len(ne_t)}")
        if any(x <= 0 for x in ne_t):
            raise ValueError(f"tensor {name!r}: every ne must be positive, got {list(ne_t)}")
        tid = ggml_type_id(ggml_type)
        nbytes = tensor_nbytes(tid, ne_t, name)
        if isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
            n = _as_bytes_view(data).nbytes
            if n != nbytes:
                raise ValueError(
                    f"tensor {name!r}: data has {n} bytes, {ggml_type_name(tid)} {list(ne_t)} needs {nbytes}"
                )
        elif data is not None and not callable(data):
            raise ValueError(f"tensor {name!r}: data must be bytes, an array or a callable")
        info = TensorInfo(name, ne_t, tid, nbytes, data)
        self.tensors.append(info)
        self._tensor_names.add(name)
        return info

    def _align(self, n: int) -> int:
        return (n + self.alignment - 1) // self.alignment * self.alignment

    def layout(self) -> tuple[bytes, int]:
        """(header bytes incl. padding to the data section, total file size); sets offsets."""
        parts = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.kv))]
        parts.extend(self._kv_bytes[k] for k in self.kv)
        off = 0
        for t in self.tensors:
            t.offset = off
            parts.append(_pack_string(t.name))
            parts.append(struct.pack("<I", len(t.ne)) + struct.pack(f"<{len(t.ne)}Q", *t.ne))
            parts.append(struct.pack("<IQ", t.type_id, t.offset))
            off = self._align(off + t.nbytes)
        header = b"".join(parts)
        header += b"\0" * (self._align(len(header)) - len(header))
        return header, len(header) + off

    def total_tensor_bytes(self) -> int:
        """Sum of the tensors' byte sizes (without padding)."""
        return sum(t.nbytes for t in self.tensors)

    def write(self, *, sparse: bool = False, progress: Callable[[int], Any] | None = None) -> str:
        """Write the file. `sparse`: header only, then extend with truncate (tensor bytes read
        as zeros). `progress(n)` is called with each number of data bytes written."""
        header, total = self.layout()
        if not sparse:
            for t in self.tensors:
                if t.data is None:
                    raise ValueError(f"tensor {t.name!r} has no data (only sparse files may omit it)")
        d = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".gguf", dir=d)
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                f.write(header)
                if sparse:
                    f.truncate(total)
                else:
                    for t in self.tensors:
                        self._write_tensor(f, t, progress)
                    if f.tell() != total:
                        raise RuntimeError(f"internal: wrote {f.tell()} bytes, expected {total}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return self.path

    def _write_tensor(self, f, t: TensorInfo, progress) -> None:
        src = t.data
        if src is None:
            raise ValueError(f"tensor {t.name!r} has no data source (only a sparse file can be written)")
        chunks = [src] if isinstance(src, (bytes, bytearray, memoryview, np.ndarray)) else src()
        written = 0
        for c in chunks:
            mv = _as_bytes_view(c)
            if written + mv.nbytes > t.nbytes:
                raise ValueError(f"tensor {t.name!r}: data source yields more than {t.nbytes} bytes")
            f.write(mv)
            written += mv.nbytes
            if progress is not None:
                progress(mv.nbytes)
        if written != t.nbytes:
            raise ValueError(f"tensor {t.name!r}: data source yielded {written} bytes, expected {t.nbytes}")
        pad = self._align(t.nbytes) - t.nbytes
        if pad:
            f.write(b"\0" * pad)

