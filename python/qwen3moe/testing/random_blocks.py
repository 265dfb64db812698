"""Random but valid quantised blocks, straight into bytes (no quantiser call), for big test files.

Design: per GGML type, one vectorised NumPy pass builds a pool of random blocks whose f16 scales
are realistic (finite, values of std ~`std` after dequantisation, no NaN/Inf anywhere); tensors
are streamed out of the pool starting at a per-tensor rotating block offset, so writing costs
only memory copies and no two tensors are byte-identical. The pool holds a prime number of
blocks, so offsets `(index * stride) % n_blocks` are distinct for every tensor index below it.

Scale recipe per type (v = dequantised value, q = the random quant):
  Q8_0  v = d*q, q ~ round(N(0, 40)) clipped to +-127
  Q4_0  v = d*(q-8), q uniform 0..15
  Q4_K  v = d*sc*q - dmin*m, sc uniform 32..63, dmin = 8d, m = round(7.5 sc/8): mean ~0
  Q5_K  as Q4_K with 5-bit q, dmin = 16d, m = round(15.5 sc/16)
  Q6_K  v = d*sc*(q-32), |sc| uniform 16..127 with random sign
  F32/F16/BF16  v ~ N(0, std)
with the block scale d log-normally spread (sigma 0.3) around the value that makes the
expected square of v equal std^2.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from .gguf_writer import GGML_TYPES

DEFAULT_STD = 0.02
POOL_BYTES = 16 << 20  # target pool size per type
_D_SIGMA = 0.3  # log-normal spread of block scales
SUPPORTED = ("F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K")


def _largest_prime_at_most(n: int) -> int:
    n = max(n, 2)
    while True:
        if n < 4 or (n % 2 and all(n % p for p in range(3, math.isqrt(n) + 1, 2))):
            return n
        n -= 1


def _f16_bytes(x: np.ndarray) -> np.ndarray:
    return x.astype("<f2").view(np.uint8).reshape(len(x), 2)


def _block_scales(rng: np.random.Generator, n: int, base: float) -> np.ndarray:
    """Per-block scale d: log-normal around `base` such that E[d^2] = base^2."""
    z = rng.standard_normal(n)
    return base * np.exp(_D_SIGMA * z - _D_SIGMA**2)


def _pack_k_scales(sc: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Pack 8 six-bit scales and mins per block into the 12-byte K-quant layout."""
    sc = sc.astype(np.uint8)
    m = m.astype(np.uint8)
    out = np.empty((sc.shape[0], 12), np.uint8)
    out[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = (m[:, 0:4] & 63) | ((m[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 15) | ((m[:, 4:8] & 15) << 4)
    return out


def _k_quant(rng, n, std, nbits: int, tsize: int) -> np.ndarray:
    levels = 1 << nbits
    qmean = (levels - 1) / 2.0
    qvar = (levels * levels - 1) / 12.0
    k = float(levels // 2)  # dmin = k*d (a power of two: exact in f16)
    sc_set = np.arange(32, 64)
    m_set = np.rint(sc_set * qmean / k)
    e2 = np.mean(sc_set**2 * qvar + (sc_set * qmean - k * m_set) ** 2)
    d = _block_scales(rng, n, std / math.sqrt(e2))
    d16 = d.astype("<f2")
    sc = rng.integers(32, 64, size=(n, 8))
    m = np.rint(sc * qmean / k)
    out = np.empty((n, tsize), np.uint8)
    out[:, 0:2] = d16.view(np.uint8).reshape(n, 2)
    out[:, 2:4] = _f16_bytes(d16.astype(np.float32) * k)
    out[:, 4:16] = _pack_k_scales(sc, m)
    out[:, 16:] = rng.integers(0, 256, size=(n, tsize - 16), dtype=np.uint8)
    return out


def random_blocks(type_name: str, n_blocks: int, rng: np.random.Generator, std: float = DEFAULT_STD) -> np.ndarray:
    """`n_blocks` random valid blocks of `type_name` as uint8 (n_blocks, type_size); plain
    types (F32/F16/BF16) have one value per block."""
    t = type_name.upper()
    if t not in SUPPORTED:
        raise ValueError(f"random blocks: unsupported type {type_name!r} (supported: {', '.join(SUPPORTED)})")
    n = int(n_blocks)
    tsize = GGML_TYPES[t][2]
    if t in ("F32", "F16", "BF16"):
        x = (rng.standard_normal(n, dtype=np.float32) * np.float32(std)).astype(np.float32)
        if t == "F32":
            return x.view(np.uint8).reshape(n, 4)
        if t == "F16":
            return _f16_bytes(x)
        u = x.view(np.uint32)
        bf = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype("<u2")
        return bf.view(np.uint8).reshape(n, 2)
    if t == "Q8_0":
        q = np.clip(np.rint(rng.standard_normal((n, 32)) * 40.0), -127, 127).astype(np.int8)
        e2 = 40.0**2
        d = _block_scales(rng, n, std / math.sqrt(e2))
        out = np.empty((n, tsize), np.uint8)
        out[:, 0:2] = _f16_bytes(d)
        out[:, 2:] = q.view(np.uint8)
        return out
    if t == "Q4_0":
        d = _block_scales(rng, n, std / math.sqrt(21.25 + 0.25))
        out = np.empty((n, tsize), np.uint8)
        out[:, 0:2] = _f16_bytes(d)
        out[:, 2:] = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
        return out
    if t == "Q4_K":
        return _k_quant(rng, n, std, 4, tsize)
    if t == "Q5_K":
        return _k_quant(rng, n, std, 5, tsize)
    # Q6_K: ql[128] qh[64] scales[16] (int8) d (f16)
    sc_set = np.arange(16, 128)
    e2 = float(np.mean(sc_set.astype(np.float64) ** 2)) * (341.25 + 0.25)
    d = _block_scales(rng, n, std / math.sqrt(e2))
    sc = rng.integers(16, 128, size=(n, 16)) * rng.choice(np.array([-1, 1]), size=(n, 16))
    out = np.empty((n, tsize), np.uint8)
    out[:, 0:192] = rng.integers(0, 256, size=(n, 192), dtype=np.uint8)
    out[:, 192:208] = sc.astype(np.int8).view(np.uint8)
    out[:, 208:210] = _f16_bytes(d)
    return out


class BlockPool:
    """A pool of random valid blocks of one type, streamed out with rotating offsets."""

    def __init__(self, type_name: str, seed: int, pool_bytes: int = POOL_BYTES, std: float = DEFAULT_STD):
        self.type_name = type_name.upper()  # GGML type name, e.g. "Q4_K"
        self.type_size = GGML_TYPES[self.type_name][2]  # bytes per block
        self.n_blocks = _largest_prime_at_most(max(pool_bytes // self.type_size, 1009))  # prime
        rng = np.random.default_rng(np.random.SeedSequence([seed, GGML_TYPES[self.type_name][0], 0x5EED]))
        blocks = random_blocks(self.type_name, self.n_blocks, rng, std).reshape(-1)
        self.nbytes = blocks.nbytes  # pool size in bytes
        self._buf = np.concatenate([blocks, blocks])  # doubled: any window of nbytes is contiguous
        self._stride = max(1, int(self.n_blocks * 0.6180339887))  # blocks; coprime with the prime n_blocks

    def start_block(self, index: int) -> int:
        """Rotating start block of the index-th tensor (distinct for index < n_blocks)."""
        return (index * self._stride) % self.n_blocks

    def stream(self, nbytes: int, index: int, chunk_bytes: int = 8 << 20) -> Iterator[memoryview]:
        """Chunks totalling `nbytes` (a multiple of the block size) for the index-th tensor."""
        if nbytes % self.type_size:
            raise ValueError(f"{nbytes} bytes is not a whole number of {self.type_name} blocks")
        chunk = max(self.type_size, min(chunk_bytes, self.nbytes) // self.type_size * self.type_size)
        pos = self.start_block(index) * self.type_size
        mv = memoryview(self._buf.data)
        left = nbytes
        while left:
            take = min(left, chunk)
            yield mv[pos : pos + take]
            pos = (pos + take) % self.nbytes
            left -= take
