"""Quantisation helpers of qwen3moe (for tests, test-model writing and study).

Everything here wraps the C++ core that the engine itself uses:

* GGML block formats: ``dequantize`` (bit-identical to PyPI ``gguf.quants.dequantize``) and
  ``quantize`` for F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K.
* The activation format of the numerics contract, Q8K (256 values, one float scale):
  ``quantize_q8k``, and the canonical weight x Q8K row dots ``dot_q8k`` / ``dot_q8k_blocks``.
* The f32-activation reference dots ``dot_f32`` and the canonical helpers ``canon_dot``,
  ``canon_exp``, ``canon_silu``, ``f32_to_f16_bits``, ``f16_bits_to_f32``.
* ``simd_level`` / ``set_simd_level``: every level returns identical bits; forcing one is for tests.

Types are given by name (``"Q4_K"``, case-insensitive) or GGML id (``12``); an unknown or
unsupported type raises ``qwen3moe.UnsupportedTypeError`` naming it. Shapes follow NumPy order:
the last dimension is the contiguous row (GGUF ``ne[0]``).
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from . import _core
from ._core import UnsupportedTypeError

__all__ = [
    "TYPES",
    "SUPPORTED",
    "type_id",
    "type_name",
    "block_size",
    "type_size",
    "row_bytes",
    "dequantize",
    "quantize",
    "quantize_q8k",
    "dot_q8k",
    "dot_q8k_blocks",
    "dot_q8k_tiles",
    "tiles_available",
    "dot_f32",
    "canon_dot",
    "canon_exp",
    "canon_silu",
    "f32_to_f16_bits",
    "f16_bits_to_f32",
    "simd_level",
    "set_simd_level",
    "simd_levels",
]

TypeLike = Union[str, int]

#: GGML type name -> type id, for every id GGUF defines.
TYPES: dict[str, int] = dict(sorted(_core.quant_types().items(), key=lambda kv: kv[1]))

#: Names of the types this engine can dequantise, quantise and compute with.
SUPPORTED: tuple[str, ...] = tuple(n for n, i in TYPES.items() if _core.quant_type_supported(i))

_SIMD_LEVELS = ("scalar", "avx2", "avx512vnni")


def type_id(type: TypeLike) -> int:
    """GGML type id of ``type`` (a name such as ``"Q4_K"`` or an id); raises UnsupportedTypeError if unknown."""
    if isinstance(type, (int, np.integer)) and not isinstance(type, bool):
        t = int(type)
        if t not in TYPES.values():
            raise UnsupportedTypeError(f"unknown tensor type id {t}")
        return t
    if isinstance(type, str):
        found = TYPES.get(type.upper())
        if found is None:
            raise UnsupportedTypeError(f"unknown tensor type {type!r}")
        return found
    raise TypeError(f"tensor type must be a name or an integer id, not {type!r}")


def type_name(type: TypeLike) -> str:
    """Name of a GGML type id (``12`` -> ``"Q4_K"``); unknown ids give ``"type#<id>"``."""
    if isinstance(type, str):
        return _core.quant_type_name(type_id(type))
    return _core.quant_type_name(int(type))


def block_size(type: TypeLike) -> int:
    """Values per block of ``type`` (1 for F32/F16/BF16, 32 for Q4_0/Q8_0, 256 for K-quants)."""
    return int(_core.quant_block_size(type_id(type)))


def type_size(type: TypeLike) -> int:
    """Bytes per block of ``type``."""
    return int(_core.quant_type_size(type_id(type)))


def row_bytes(type: TypeLike, n: int) -> int:
    """Bytes of a row of ``n`` values of ``type``; ``n`` must be a multiple of the block size."""
    return int(_core.quant_row_bytes(type_id(type), int(n)))


def _supported_id(type: TypeLike) -> int:
    t = type_id(type)
    if not _core.quant_type_supported(t):
        raise UnsupportedTypeError(f"unsupported tensor type {_core.quant_type_name(t)}")
    return t


def _raw_bytes(raw) -> np.ndarray:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        arr = np.frombuffer(raw, dtype=np.uint8)
    else:
        arr = np.asarray(raw)
    if arr.dtype != np.uint8:
        raise TypeError(f"raw tensor data must be bytes or a uint8 array, not {arr.dtype}")
    arr = np.ascontiguousarray(arr).reshape(-1)
    if arr.ctypes.data % 16:  # block structs hold uint16 fields: give the kernels an aligned copy
        arr = arr.copy()
    return arr


def _shape_tuple(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 0 for s in shape):
        raise ValueError(f"bad tensor shape {shape}")
    return shape


def dequantize(raw, type: TypeLike, shape: Union[int, Sequence[int]]) -> np.ndarray:
    """Dequantise raw GGUF tensor bytes to float32.

    ``raw``: ``bytes`` or a uint8 array holding exactly the tensor's bytes; ``type``: its GGML
    type; ``shape``: the tensor shape in NumPy order (last dimension contiguous, a multiple of
    the block size). Returns a float32 array of ``shape``, bit-identical to
    ``gguf.quants.dequantize``.
    """
    t = _supported_id(type)
    shape = _shape_tuple(shape)
    data = _raw_bytes(raw)
    if shape[-1] % block_size(t):
        raise ValueError(f"last dimension {shape[-1]} is not a multiple of the {type_name(t)} block size {block_size(t)}")
    n = int(np.prod(shape, dtype=np.int64))
    return _core.quant_dequantize(data, t, n).reshape(shape)


def quantize(x, type: TypeLike) -> np.ndarray:
    """Quantise a float32 array to GGML ``type``; rows are the last dimension.

    Returns the raw bytes as a uint8 array of shape ``x.shape[:-1] + (row_bytes(type, x.shape[-1]),)``.
    The quantisers are qwen3moe's own (documented error bounds in cpp/quant/quantize.cpp); the
    output is standard GGUF data.
    """
    t = _supported_id(type)
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim == 0:
        raise ValueError("quantize needs at least a 1-D array")
    if arr.shape[-1] % block_size(t):
        raise ValueError(f"last dimension {arr.shape[-1]} is not a multiple of the {type_name(t)} block size {block_size(t)}")
    out = _core.quant_quantize(arr.reshape(-1), t)
    return out.reshape(arr.shape[:-1] + (row_bytes(t, arr.shape[-1]),))


def quantize_q8k(x) -> tuple[np.ndarray, np.ndarray]:
    """Quantise activations to Q8K blocks of 256 values (the canonical activation format).

    Per block: ``amax = max|x|``; ``d = amax/127`` and ``q = clamp(rint(x * (127/amax)), ±127)``
    (round half to even; NaN -> 0), or ``d = 0, q = 0`` when ``amax == 0``. ``len(x)`` must be a
    multiple of 256. Returns ``(d float32[nblk], qs int8[nblk, 256])``.
    """
    arr = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    d, qs, _bsums = _core.quant_quantize_q8k(arr)
    return d, qs


def _weight_rows(w_raw, t: int, n: int) -> np.ndarray:
    data = _raw_bytes(w_raw)
    rb = row_bytes(t, n)
    if rb == 0 or data.size % rb:
        raise ValueError(f"{data.size} bytes is not a whole number of {type_name(t)} rows of {n} values")
    return data


def dot_q8k(w_raw, type: TypeLike, x) -> np.ndarray:
    """Canonical dot of each weight row with Q8K-quantised activations (the engine's matvec).

    ``w_raw``: raw bytes of R rows of ``type`` with ``n`` values each (``n = x.shape[-1]``, a
    multiple of 256); ``type``: Q4_0, Q8_0, Q4_K, Q5_K or Q6_K. ``x`` (float32) is quantised with
    ``quantize_q8k`` first. For a 1-D ``x`` returns float32[R]; for ``x`` of shape (T, n) returns
    float32[T, R], computed by the multi-token kernel (bit-identical to T single-token dots).
    """
    t = _supported_id(type)
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim not in (1, 2):
        raise ValueError("dot_q8k expects x of shape (n,) or (n_tok, n)")
    n = arr.shape[-1]
    w = _weight_rows(w_raw, t, n)
    if arr.ndim == 1:
        return _core.quant_dot_q8k(w, t, arr, 1, True)[0]
    return _core.quant_dot_q8k(w, t, arr.reshape(-1), arr.shape[0], False)


def tiles_available() -> bool:
    """Whether this machine runs the AMX int8 tile kernels (Intel AMX-INT8, granted by the OS,
    with the avx512vnni SIMD level selected); the CPU engine then uses them for prefill batches."""
    return bool(_core.quant_q8k_tiles_available())


def dot_q8k_tiles(w_raw, type: TypeLike, x) -> np.ndarray:
    """``dot_q8k`` of a batch ``x`` (T, n) on the AMX tiles: float32[T, R], the same bits.

    Raises ValueError where the tile kernels do not apply (no AMX, a type other than Q4_K/Q6_K,
    or rows longer than 8192 values).
    """
    t = _supported_id(type)
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError("dot_q8k_tiles expects x of shape (n_tok, n)")
    w = _weight_rows(w_raw, t, arr.shape[1])
    return _core.quant_dot_q8k_tiles(w, t, arr.reshape(-1), arr.shape[0])


def dot_q8k_blocks(w_raw, type: TypeLike, d, qs) -> np.ndarray:
    """Canonical dot of each weight row with explicit Q8K blocks.

    ``d``: float32[nblk] scales, ``qs``: int8[nblk, 256] values in -127..127 (the block sums are
    derived). Rows have ``256 * nblk`` values. Returns float32[R].
    """
    t = _supported_id(type)
    d = np.ascontiguousarray(d, dtype=np.float32).reshape(-1)
    qs = np.ascontiguousarray(qs, dtype=np.int8)
    w = _weight_rows(w_raw, t, 256 * d.size)
    return _core.quant_dot_q8k_blocks(w, t, d, qs.reshape(-1))


def dot_f32(w_raw, type: TypeLike, x) -> np.ndarray:
    """Canonical dot of each dequantised weight row with float32 activations ``x`` (1-D).

    The f32 reference mode: ``canon_dot(dequantize(row), x)`` per row. Any supported type.
    Returns float32[R].
    """
    t = _supported_id(type)
    arr = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    w = _weight_rows(w_raw, t, arr.size)
    return _core.quant_dot_f32(w, t, arr)


def canon_dot(a, b) -> np.float32:
    """The canonical 32-lane dot product of two float32 vectors (see ops/canon.h)."""
    return np.float32(_core.quant_canon_dot(np.ascontiguousarray(a, dtype=np.float32).reshape(-1),
                                            np.ascontiguousarray(b, dtype=np.float32).reshape(-1)))


def _elementwise(fn, x) -> np.ndarray:
    arr = np.ascontiguousarray(x, dtype=np.float32)
    return fn(arr.reshape(-1)).reshape(arr.shape)


def canon_exp(x) -> np.ndarray:
    """The shared exp (range reduction + polynomial with explicit fma), elementwise on float32."""
    return _elementwise(_core.quant_canon_exp, x)


def canon_silu(x) -> np.ndarray:
    """The shared SiLU ``x / (1 + canon_exp(-x))``, elementwise on float32."""
    return _elementwise(_core.quant_canon_silu, x)


def f32_to_f16_bits(x) -> np.ndarray:
    """float32 -> IEEE half bit patterns (uint16), round to nearest even, overflow to inf."""
    return _elementwise(_core.quant_f32_to_f16_bits, x)


def f16_bits_to_f32(h) -> np.ndarray:
    """IEEE half bit patterns (uint16) -> float32 (exact)."""
    arr = np.ascontiguousarray(h, dtype=np.uint16)
    return _core.quant_f16_bits_to_f32(arr.reshape(-1)).reshape(arr.shape)


def simd_level() -> str:
    """The kernel set in use: ``"avx512vnni"``, ``"avx2"`` or ``"scalar"``."""
    return _core.quant_simd_level()


def set_simd_level(name: str) -> None:
    """Force a kernel set (``"scalar"``, ``"avx2"``, ``"avx512vnni"``, or ``"auto"`` for the best).

    All levels give identical bits; this exists for tests and benchmarks. Raises ValueError if
    the CPU lacks the level. Process-wide.
    """
    _core.quant_set_simd_level(str(name))


def simd_levels() -> list[str]:
    """The kernel sets this CPU can run, slowest first."""
    return [lv for lv in _SIMD_LEVELS if _core.quant_simd_level_available(lv)]
