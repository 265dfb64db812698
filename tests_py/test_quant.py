"""Tests of the quant area (qwen3moe.quant): oracles and falsifiers.

* dequantize is bit-identical to PyPI gguf's gguf.quants.dequantize on random blocks;
* our quantisers round-trip within the bounds documented in cpp/quant/quantize.cpp;
* quantize_q8k equals a NumPy re-implementation of its formula, bit for bit;
* dot_q8k equals an independent Python implementation of the canonical block expressions
  (exact integer sums, float32 steps, fma rounded exactly via fractions), agrees with float64,
  and every SIMD level returns the scalar reference's bits (single- and multi-token);
* canon_dot's SIMD twins equal canon_dot_ref; f16 conversions agree with NumPy; canon_exp's error;
* bad types / shapes raise clear errors.
"""
from __future__ import annotations

from fractions import Fraction

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as G

import qwen3moe
from qwen3moe import _core
from qwen3moe import quant as Q

K_TYPES = ["Q4_K", "Q5_K", "Q6_K"]
DOT_TYPES = ["Q4_0", "Q8_0"] + K_TYPES
LEVELS = Q.simd_levels()

# f16 scale fields (byte offsets inside a block) of each block type
SCALE_FIELDS = {"Q4_0": [0], "Q8_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


@pytest.fixture(autouse=True)
def _restore_simd_level():
    yield
    Q.set_simd_level("auto")


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def assert_same_bits(got, want, msg=""):
    """Bit-identical, except that any NaN equals any NaN (NaN sign/payload is unspecified: x86
    propagates an operand's NaN in an instruction-form-dependent way, CUDA makes a canonical NaN)."""
    g, w = np.asarray(got, np.float32), np.asarray(want, np.float32)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=msg)
    ok = ~np.isnan(w)
    np.testing.assert_array_equal(bits(g[ok]), bits(w[ok]), err_msg=msg)


def random_blocks(rng, t: str, nblk: int, scale: float = 0.02, extreme: bool = False,
                  nonfinite: float = 0.0) -> np.ndarray:
    """Random block bytes of type t; f16 scale fields set to finite values (realistic or extreme),
    then a fraction `nonfinite` of the blocks gets an inf or NaN scale."""
    ts = Q.type_size(t)
    raw = rng.integers(0, 256, size=(nblk, ts), dtype=np.uint8)
    for off in SCALE_FIELDS[t]:
        if extreme:
            choices = np.array([65504.0, -65504.0, 6.1e-5, 5.96e-8, -5.96e-8, 0.0, -0.0, 1.0, 1e-3, 300.0],
                               dtype=np.float16)
            v = rng.choice(choices, size=nblk)
        else:
            v = (rng.standard_normal(nblk) * scale).astype(np.float16)
        raw[:, off:off + 2] = v.view(np.uint8).reshape(nblk, 2)
        bad = rng.random(nblk) < nonfinite
        specials = np.array([np.inf, -np.inf, np.nan], np.float16)
        raw[bad, off:off + 2] = rng.choice(specials, size=int(bad.sum())).view(np.uint8).reshape(-1, 2)
    return raw


# ---- dequantisation vs gguf-py -----------------------------------------------------------

@pytest.mark.parametrize("t", DOT_TYPES)
@pytest.mark.parametrize("extreme", [False, True])
def test_dequantize_bit_identical_to_gguf(t, extreme):
    rng = np.random.default_rng(11 + DOT_TYPES.index(t) + 100 * extreme)
    nblk = 4096
    raw = random_blocks(rng, t, nblk, extreme=extreme)
    bs = Q.block_size(t)
    rows = 8
    ours = Q.dequantize(raw, t, (rows, nblk * bs // rows))
    ref = gguf.quants.dequantize(raw.reshape(rows, -1), G[t])
    assert ours.shape == ref.shape == (rows, nblk * bs // rows)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(bits(ours), bits(ref))


def test_dequantize_plain_types_all_bit_patterns():
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    raw16 = h.view(np.uint8)
    for t in ("F16", "BF16"):
        ours = Q.dequantize(raw16, t, (256, 256))
        ref = gguf.quants.dequantize(raw16.reshape(256, 512), G[t])
        np.testing.assert_array_equal(bits(ours), bits(ref))
    x = np.random.default_rng(3).integers(0, 2**32, size=4096, dtype=np.uint32).view(np.float32)
    ours = Q.dequantize(x.view(np.uint8), "F32", (4096,))
    np.testing.assert_array_equal(bits(ours), x.view(np.uint32))


def test_dequantize_accepts_bytes_and_type_ids():
    rng = np.random.default_rng(5)
    raw = random_blocks(rng, "Q4_K", 2)
    a = Q.dequantize(raw.tobytes(), "q4_k", 512)
    b = Q.dequantize(raw, Q.TYPES["Q4_K"], (2, 256))
    np.testing.assert_array_equal(bits(a), bits(b.reshape(-1)))


# ---- quantiser round trips -----------------------------------------------------------------

# (bound on relative RMS error) — measured values are in cpp/quant/quantize.cpp's comment
ROUND_TRIP_BOUNDS = {"F16": 3e-4, "BF16": 2.5e-3, "Q8_0": 6e-3, "Q6_K": 0.02, "Q5_K": 0.04,
                     "Q4_K": 0.08, "Q4_0": 0.10}


@pytest.mark.parametrize("t", list(ROUND_TRIP_BOUNDS))
def test_quantize_round_trip(t):
    rng = np.random.default_rng(21)
    x = rng.standard_normal((256, 1024)).astype(np.float32)
    raw = Q.quantize(x, t)
    assert raw.dtype == np.uint8 and raw.shape == (256, Q.row_bytes(t, 1024))
    y = Q.dequantize(raw, t, x.shape)
    # the independent dequantiser reads our bytes the same way
    ref = raw.view(np.float16).astype(np.float32) if t == "F16" else gguf.quants.dequantize(raw, G[t])
    np.testing.assert_array_equal(bits(y), bits(ref.reshape(x.shape)))
    err = np.linalg.norm(y - x) / np.linalg.norm(x)
    assert err < ROUND_TRIP_BOUNDS[t], f"{t}: relative RMS error {err:.5f}"
    # a quantiser that ignored its input would fail this: error is far below the signal
    assert np.corrcoef(x.reshape(-1), y.reshape(-1))[0, 1] > 1 - 4 * ROUND_TRIP_BOUNDS[t] ** 2 - 1e-6


@pytest.mark.parametrize("t", ["Q8_0", "Q4_0"] + K_TYPES)
def test_quantize_edge_inputs(t):
    n = 1024
    zeros = np.zeros(n, np.float32)
    np.testing.assert_array_equal(Q.dequantize(Q.quantize(zeros, t), t, n), zeros)
    rng = np.random.default_rng(4)
    cases = {
        "constant": np.full(n, 0.75, np.float32),
        "positive": np.abs(rng.standard_normal(n)).astype(np.float32) + 1.0,
        "negative": -np.abs(rng.standard_normal(n)).astype(np.float32) - 1.0,
        "outlier": np.where(np.arange(n) == 77, 1000.0, rng.standard_normal(n) * 0.01).astype(np.float32),
        "tiny": (rng.standard_normal(n) * 1e-6).astype(np.float32),
        "beyond_f16": (rng.standard_normal(n) * 1e7).astype(np.float32),
    }
    for name, x in cases.items():
        y = Q.dequantize(Q.quantize(x, t), t, n)
        assert np.isfinite(y).all(), (t, name)
        if name in ("constant", "positive", "negative", "outlier"):
            err = np.linalg.norm(y - x) / np.linalg.norm(x)
            assert err < 0.1, (t, name, err)


def test_bf16_and_f16_rounding():
    x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-9, -2.5, 3.4e38, 1e-40], np.float32)
    bf = Q.quantize(x, "BF16").view(np.uint16)
    u = x.view(np.uint32).astype(np.uint64)
    expect = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
    np.testing.assert_array_equal(bf, expect)
    np.testing.assert_array_equal(Q.quantize(x, "F16").view(np.uint16), Q.f32_to_f16_bits(x))


# ---- Q8K activation quantiser ----------------------------------------------------------------

def q8k_numpy(x: np.ndarray):
    """The quant.h formula in NumPy float32: iscale = 127/amax, q = rint(x*iscale) clamped, d = amax/127."""
    xb = x.reshape(-1, 256).astype(np.float32)
    with np.errstate(all="ignore"):
        amax = np.nanmax(np.abs(xb), axis=1, initial=np.float32(0)).astype(np.float32)
        iscale = np.float32(127.0) / amax
        v = xb * iscale[:, None]
        r = np.rint(v)
        r = np.where(np.isnan(r), np.float32(0), r)
        q = np.clip(r, -127, 127).astype(np.int8)
        d = amax / np.float32(127.0)
    zero = amax == 0
    q[zero] = 0
    d[zero] = 0
    return d.astype(np.float32), q


def q8k_edge_inputs(rng) -> np.ndarray:
    blocks = [
        np.zeros(256, np.float32),                                   # all zero
        np.where(np.arange(256) == 9, 1e30, 1e-3).astype(np.float32),  # one huge value
        -np.abs(rng.standard_normal(256)).astype(np.float32),        # negatives
        (np.arange(256) - 128 + 0.5).astype(np.float32) * np.float32(127 / 127.5),  # halves
        np.arange(-127, 129, dtype=np.float32),                       # amax = 128: iscale not exact
        np.concatenate([[127, -127, 0.5, -0.5], np.arange(-126, 126) + 0.5]).astype(np.float32),  # ties, iscale 1
        np.full(256, -0.0, np.float32),                               # negative zeros
        np.where(np.arange(256) % 7 == 0, np.nan, 1.0).astype(np.float32),  # NaN -> 0
        np.full(256, 3.0e-39, np.float32),                            # subnormal inputs
        np.where(np.arange(256) == 3, np.inf, 2.0).astype(np.float32),  # inf
    ]
    return np.concatenate(blocks + [rng.standard_normal(256 * 30).astype(np.float32) * 3])


@pytest.mark.parametrize("level", LEVELS)
def test_quantize_q8k_matches_numpy_formula(level):
    Q.set_simd_level(level)
    rng = np.random.default_rng(7)
    x = q8k_edge_inputs(rng)
    d, qs = Q.quantize_q8k(x)
    d_ref, q_ref = q8k_numpy(x)
    np.testing.assert_array_equal(bits(d), bits(d_ref))
    np.testing.assert_array_equal(qs, q_ref)
    _, _, bsums = _core.quant_quantize_q8k(x)
    np.testing.assert_array_equal(bsums, q_ref.astype(np.int32).reshape(-1, 16, 16).sum(axis=2))
    assert d[0] == 0 and (qs[0] == 0).all()
    assert qs[1][9] == 127 and (qs[1][np.arange(256) != 9] == 0).all()
    assert (qs[2] <= 0).all() and qs[2].min() == -127
    with pytest.raises(ValueError, match="multiple of 256"):
        Q.quantize_q8k(np.zeros(100, np.float32))


# ---- canonical dot: independent Python implementation --------------------------------------

def f32(v) -> np.float32:
    return np.float32(v)


def round_to_f32(exact: Fraction) -> np.float32:
    """Correctly rounded (nearest even) float32 of an exact rational (finite range)."""
    c = np.float32(float(exact))
    best = c
    for cand in (np.nextafter(c, np.float32(-np.inf)), np.nextafter(c, np.float32(np.inf))):
        db, dc = abs(Fraction(float(best)) - exact), abs(Fraction(float(cand)) - exact)
        if dc < db or (dc == db and int(cand.view(np.uint32)) % 2 == 0):
            best = cand
    return np.float32(best)


def fma32(a, b, c) -> np.float32:
    a, b, c = f32(a), f32(b), f32(c)
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if exact == 0:
        prod_neg = (np.signbit(a) != np.signbit(b)) and (a == 0 or b == 0)
        return np.float32(-0.0) if (prod_neg and np.signbit(c)) else np.float32(0.0)
    return round_to_f32(exact)


def tree32(p: list) -> np.float32:
    p = [f32(v) for v in p]
    s = 16
    while s >= 1:
        for lane in range(s):
            p[lane] = f32(p[lane] + p[lane + s])
        s //= 2
    return p[0]


def k4_scale_min(sc12: np.ndarray):
    s = sc12.astype(np.int64)
    sc = [s[j] & 63 if j < 4 else (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4) for j in range(8)]
    m = [s[j + 4] & 63 if j < 4 else (s[j + 4] >> 4) | ((s[j] >> 6) << 4) for j in range(8)]
    return sc, m


def f16(raw: np.ndarray, off: int) -> np.float32:
    return raw[off:off + 2].view(np.float16).astype(np.float32)[0]


def block_contribution(t: str, wblk: np.ndarray, da: np.float32, a: np.ndarray) -> np.float32:
    """c_b of quant/dot-canon.h for one activation block (a: int64[256] Q8K values)."""
    if t in ("Q4_K", "Q5_K"):
        d, dmin = f16(wblk, 0), f16(wblk, 2)
        sc, m = k4_scale_min(wblk[4:16])
        if t == "Q4_K":
            qs = wblk[16:144].astype(np.int64)
            codes = np.concatenate([np.concatenate([qs[32 * c:32 * c + 32] & 15, qs[32 * c:32 * c + 32] >> 4])
                                    for c in range(4)])
        else:
            qh = wblk[16:48].astype(np.int64)
            qs = wblk[48:176].astype(np.int64)
            low = np.concatenate([np.concatenate([qs[32 * c:32 * c + 32] & 15, qs[32 * c:32 * c + 32] >> 4])
                                  for c in range(4)])
            high = np.concatenate([(qh >> j) & 1 for j in range(8)])
            codes = low | (high << 4)
        isum = sum(int(sc[j]) * int(np.dot(codes[32 * j:32 * j + 32], a[32 * j:32 * j + 32])) for j in range(8))
        msum = sum(int(m[j]) * int(a[32 * j:32 * j + 32].sum()) for j in range(8))
        return fma32(f32(da * d), f32(isum), -f32(f32(da * dmin) * f32(msum)))
    if t == "Q6_K":
        ql = wblk[0:128].astype(np.int64)
        qh = wblk[128:192].astype(np.int64)
        scales = wblk[192:208].view(np.int8).astype(np.int64)
        d = f16(wblk, 208)
        codes = []
        for h in range(2):
            for s in range(4):
                lo = ql[64 * h + 32 * (s & 1):64 * h + 32 * (s & 1) + 32]
                lo = lo & 15 if s < 2 else lo >> 4
                codes.append(lo | (((qh[32 * h:32 * h + 32] >> (2 * s)) & 3) << 4))
        q = np.concatenate(codes) - 32
        isum = sum(int(scales[j]) * int(np.dot(q[16 * j:16 * j + 16], a[16 * j:16 * j + 16])) for j in range(16))
        return f32(f32(da * d) * f32(isum))
    # Q8_0 / Q4_0: wblk holds the 8 weight blocks covering the activation block
    ts = Q.type_size(t)
    inner = np.float32(0.0)
    for k in range(8):
        blk = wblk[k * ts:(k + 1) * ts]
        dk = f16(blk, 0)
        if t == "Q8_0":
            q = blk[2:34].view(np.int8).astype(np.int64)
        else:
            qs = blk[2:18].astype(np.int64)
            q = np.concatenate([qs & 15, qs >> 4]) - 8
        inner = fma32(dk, f32(int(np.dot(q, a[32 * k:32 * k + 32]))), inner)
    return f32(da * inner)


def dot_python(t: str, wrow: np.ndarray, d: np.ndarray, qs: np.ndarray) -> np.float32:
    """The canonical row value: lane b % 32 accumulates c_b in ascending b, then the tree."""
    per_blk = Q.row_bytes(t, 256)
    lanes = [np.float32(0.0)] * 32
    for b in range(d.size):
        c = block_contribution(t, wrow[b * per_blk:(b + 1) * per_blk], d[b], qs[b].astype(np.int64))
        lanes[b % 32] = f32(lanes[b % 32] + c)
    return tree32(lanes)


@pytest.mark.parametrize("t", DOT_TYPES)
def test_dot_q8k_matches_python_canonical_expression(t):
    rng = np.random.default_rng(31 + DOT_TYPES.index(t))
    for n, rows in ((2048, 3), (256 * 37, 1)):  # 37 blocks: lanes wrap past 32
        bs = Q.block_size(t)
        w = random_blocks(rng, t, rows * n // bs).reshape(rows, -1)
        x = (rng.standard_normal(n) * np.exp(rng.standard_normal(n))).astype(np.float32)
        d, qs = Q.quantize_q8k(x)
        got = Q.dot_q8k(w, t, x)
        for r in range(rows):
            want = dot_python(t, w[r], d, qs)
            assert bits(got[r]) == bits(want), (t, n, r, got[r], want)


@pytest.mark.parametrize("t", DOT_TYPES)
def test_dot_q8k_close_to_float64(t):
    rng = np.random.default_rng(41)
    n, rows = 4096, 64
    w = Q.quantize(rng.standard_normal((rows, n)).astype(np.float32), t)
    x = rng.standard_normal(n).astype(np.float32)
    got = Q.dot_q8k(w, t, x).astype(np.float64)
    d, qs = Q.quantize_q8k(x)
    xq = (qs.astype(np.float64) * d[:, None].astype(np.float64)).reshape(-1)
    wd = Q.dequantize(w, t, (rows, n)).astype(np.float64)
    exact = wd @ xq
    scale = np.abs(wd) @ np.abs(xq)
    assert np.all(np.abs(got - exact) <= 2e-6 * scale), np.max(np.abs(got - exact) / scale)
    # and the Q8K activation error itself is small against the f32-activation reference
    ref = Q.dot_f32(w, t, x).astype(np.float64)
    assert np.all(np.abs(got - ref) <= 0.02 * scale)


# ---- every SIMD level == scalar ---------------------------------------------------------------

def extreme_activations(rng, n: int) -> np.ndarray:
    x = rng.standard_normal(n).astype(np.float32) * np.exp(3 * rng.standard_normal(n)).astype(np.float32)
    x[rng.integers(0, n)] = np.float32(1e30)
    if n >= 1024:
        x[:256] = 0.0                                   # an all-zero block
        x[256:512] = np.float32(1e30) * np.sign(rng.standard_normal(256)).astype(np.float32)
        x[512:768] = rng.standard_normal(256).astype(np.float32) * np.float32(1e-38)
    return x


@pytest.mark.parametrize("t", DOT_TYPES)
def test_simd_levels_bit_identical(t):
    rng = np.random.default_rng(51 + DOT_TYPES.index(t))
    bs = Q.block_size(t)
    results = {}
    for n, rows in ((256, 64), (2048, 48), (256 * 41, 8)):
        w_norm = random_blocks(rng, t, rows * n // bs).reshape(rows, -1)
        w_ext = random_blocks(rng, t, rows * n // bs, extreme=True, nonfinite=0.02).reshape(rows, -1)
        xs = [rng.standard_normal(n).astype(np.float32), extreme_activations(rng, n)]
        X = np.stack([extreme_activations(rng, n) for _ in range(11)])
        for level in LEVELS:
            Q.set_simd_level(level)
            assert Q.simd_level() == level
            out = []
            for w in (w_norm, w_ext):
                out += [Q.dot_q8k(w, t, x) for x in xs]
                multi = Q.dot_q8k(w, t, X)
                single = np.stack([Q.dot_q8k(w, t, X[i]) for i in range(X.shape[0])])
                assert_same_bits(multi, single, "multi-token != single-token")  # batch invariance
                out.append(multi)
            results.setdefault(n, {})[level] = out
    for n, by_level in results.items():
        for level in LEVELS[1:]:
            for got, want in zip(by_level[level], by_level["scalar"]):
                assert_same_bits(got, want, f"{t} n={n} level={level}")
        # the extreme data must not be all overflow: most rows stay finite
        allv = np.concatenate([o.reshape(-1) for o in by_level["scalar"]])
        assert np.isfinite(allv).sum() > allv.size // 4


@pytest.mark.skipif(not Q.tiles_available(), reason="no AMX-INT8 tiles on this machine")
@pytest.mark.parametrize("t", ["Q4_K", "Q6_K"])
def test_amx_tiles_bit_identical(t):
    """The AMX tile kernels against the multi-token (and so the single-token) dots: partial row
    and token tiles, every row length up to the 32-block limit, extreme and non-finite scales,
    all-zero and saturated activation blocks."""
    rng = np.random.default_rng(90 + K_TYPES.index(t))
    bs = Q.block_size(t)
    for n, rows, n_tok in ((256, 1, 1), (256, 17, 5), (768, 40, 16), (1024, 3, 40), (2048, 33, 17),
                           (4096, 16, 64), (8192, 5, 3), (2048, 100, 33)):
        for extreme in (False, True):
            w = random_blocks(rng, t, rows * n // bs, extreme=extreme, nonfinite=0.02 if extreme else 0.0)
            w = w.reshape(rows, -1)
            X = np.stack([extreme_activations(rng, n) if i % 2 else rng.standard_normal(n).astype(np.float32)
                          for i in range(n_tok)])
            if n_tok > 2:
                X[2] = 0.0
            got = Q.dot_q8k_tiles(w, t, X)
            assert got.shape == (n_tok, rows)
            assert_same_bits(got, Q.dot_q8k(w, t, X), f"{t} n={n} rows={rows} n_tok={n_tok} extreme={extreme}")
            if not extreme:
                assert np.isfinite(got).all() and np.abs(got).max() > 0
    w = random_blocks(rng, t, 33 * 256 // bs).reshape(1, -1)
    with pytest.raises(ValueError, match="tile kernel"):
        Q.dot_q8k_tiles(w, t, rng.standard_normal((2, 33 * 256)).astype(np.float32))


@pytest.mark.skipif(Q.tiles_available(), reason="this machine has AMX tiles")
def test_amx_tiles_unavailable_raise():
    rng = np.random.default_rng(3)
    w = random_blocks(rng, "Q4_K", 2).reshape(2, -1)
    with pytest.raises(ValueError, match="tile kernel"):
        Q.dot_q8k_tiles(w, "Q4_K", rng.standard_normal((3, 256)).astype(np.float32))


@pytest.mark.parametrize("t", ["F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"])
def test_dot_f32_is_canon_dot_of_dequantised_rows(t):
    rng = np.random.default_rng(61)
    n, rows = 1024 + (0 if Q.block_size(t) > 1 else 37), 6
    if Q.block_size(t) == 1:
        w = Q.quantize(rng.standard_normal((rows, n)).astype(np.float32), t)
    else:
        w = random_blocks(rng, t, rows * n // Q.block_size(t)).reshape(rows, -1)
    x = rng.standard_normal(n).astype(np.float32)
    wd = Q.dequantize(w, t, (rows, n))
    per_level = []
    for level in LEVELS:
        Q.set_simd_level(level)
        got = Q.dot_f32(w, t, x)
        np.testing.assert_array_equal(bits(got), bits([_core.quant_canon_dot_ref(wd[r], x) for r in range(rows)]))
        per_level.append(bits(got))
    assert all(np.array_equal(p, per_level[0]) for p in per_level)


@pytest.mark.parametrize("level", LEVELS)
def test_canon_dot_simd_equals_reference(level):
    Q.set_simd_level(level)
    rng = np.random.default_rng(71)
    for n in (0, 1, 5, 16, 17, 31, 32, 33, 48, 63, 64, 65, 100, 1000, 4097):
        a = (rng.standard_normal(n) * np.exp(2 * rng.standard_normal(n))).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        assert bits(Q.canon_dot(a, b)) == bits(_core.quant_canon_dot_ref(a, b)), (level, n)
    # Products that round to -0.0: every lane touched at least once holds -0.0, and lanes the
    # tail does not reach must keep it (an extra "+ 0" would make them +0.0 and the sum +0.0).
    for n in (1, 7, 20, 32, 33, 50, 63, 64, 65, 101):
        a = np.full(n, -1e-30, np.float32)
        b = np.full(n, 1e-30, np.float32)
        got, want = Q.canon_dot(a, b), _core.quant_canon_dot_ref(a, b)
        assert bits(got) == bits(want), (level, n)
        assert np.signbit(want) == (n >= 32), (level, n)


# ---- canonical helpers ---------------------------------------------------------------------------

def test_f32_to_f16_matches_numpy():
    rng = np.random.default_rng(81)
    random_bits = rng.integers(0, 2**32, size=900_000, dtype=np.uint64).astype(np.uint32)
    # values near every f16 rounding boundary: the f16 grid's midpoints and their neighbours
    h = np.arange(0, 0x7C00, dtype=np.uint32).astype(np.uint16)
    lo = h.view(np.float16).astype(np.float64)
    hi = (h + 1).astype(np.uint16).view(np.float16).astype(np.float64)
    mid = ((lo + hi) / 2).astype(np.float32)  # exact ties for normal and subnormal f16
    near = np.concatenate([mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(0))])
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65519.99, 65520.0, 1e9, 5.96e-8,
                         2.98e-8, 2.9802322e-08, 2.9802326e-08, 1e-45, -1e-45], np.float32)
    x = np.concatenate([random_bits.view(np.float32), near, -near, specials])
    assert x.size > 1_000_000
    with np.errstate(all="ignore"):
        ref = x.astype(np.float16).view(np.uint16)
    got = Q.f32_to_f16_bits(x)
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], ref[~nan])
    assert np.isnan(got[nan].view(np.float16)).all()  # NaN stays NaN (payload may be quieted)


def test_f16_to_f32_all_patterns():
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    np.testing.assert_array_equal(bits(Q.f16_bits_to_f32(h)), bits(h.view(np.float16).astype(np.float32)))


def test_canon_exp_accuracy():
    x = np.linspace(-87.0, 88.0, 2_000_001, dtype=np.float32)
    x = np.concatenate([x, np.random.default_rng(91).uniform(-87, 88, 500_000).astype(np.float32)])
    got = Q.canon_exp(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    rel = np.abs(got - ref) / ref
    assert rel.max() < 4e-7, rel.max()
    assert Q.canon_exp(np.float32(0.0)) == 1.0
    assert np.isinf(Q.canon_exp(np.float32(89.0))) and Q.canon_exp(np.float32(-104.0)) == 0.0
    assert np.isnan(Q.canon_exp(np.float32(np.nan)))


def test_canon_silu():
    x = np.linspace(-30, 30, 100_001, dtype=np.float32)
    got = Q.canon_silu(x).astype(np.float64)
    x64 = x.astype(np.float64)
    ref = x64 / (1 + np.exp(-x64))
    assert np.all(np.abs(got - ref) <= 1e-6 * np.abs(ref) + 1e-30)
    # it is exactly x / (1 + canon_exp(-x)) in float32
    want = x / (np.float32(1) + Q.canon_exp(-x))
    np.testing.assert_array_equal(bits(Q.canon_silu(x)), bits(want))


# ---- type table and errors -----------------------------------------------------------------------

def test_type_table():
    assert Q.TYPES["Q4_K"] == 12 and Q.TYPES["BF16"] == 30 and Q.TYPES["Q6_K"] == 14
    assert set(Q.SUPPORTED) == {"F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"}
    for name, tid in Q.TYPES.items():
        assert Q.type_name(tid) == name
        # gguf-py still lists Q8_1 with the old float layout (40 bytes); ggml's block_q8_1 is
        # two halves + 32 codes = 36 bytes, which our table follows.
        if hasattr(G, name) and G[name] in gguf.GGML_QUANT_SIZES and name != "Q8_1":
            assert (Q.block_size(name), Q.type_size(name)) == gguf.GGML_QUANT_SIZES[G[name]], name
    assert Q.type_name(77) == "type#77"
    assert Q.row_bytes("Q4_K", 2048) == 8 * 144
    assert Q.row_bytes("Q6_K", 256) == 210 and Q.row_bytes("Q8_0", 64) == 68 and Q.row_bytes("BF16", 3) == 6


def test_bad_types_raise_naming_the_type():
    raw = np.zeros(20, np.uint8)
    with pytest.raises(qwen3moe.UnsupportedTypeError, match="Q4_1"):
        Q.dequantize(raw, "Q4_1", 32)
    with pytest.raises(qwen3moe.UnsupportedTypeError, match="IQ2_XXS"):
        _core.quant_dequantize(np.zeros(66, np.uint8), Q.TYPES["IQ2_XXS"], 256)  # C++ check, not Python's
    with pytest.raises(qwen3moe.UnsupportedTypeError, match="Q9_Z"):
        Q.dequantize(raw, "Q9_Z", 32)
    with pytest.raises(qwen3moe.UnsupportedTypeError, match="77"):
        Q.quantize(np.zeros(32, np.float32), 77)
    with pytest.raises(qwen3moe.UnsupportedTypeError, match="type#77"):
        _core.quant_dequantize(raw, 77, 32)
    with pytest.raises(qwen3moe.UnsupportedTypeError, match="F16"):
        Q.dot_q8k(np.zeros(512, np.uint8), "F16", np.zeros(256, np.float32))
    with pytest.raises(qwen3moe.UnsupportedTypeError, match="Q2_K"):
        Q.quantize(np.zeros(256, np.float32), "Q2_K")
    assert issubclass(qwen3moe.UnsupportedTypeError, ValueError)


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match="multiple"):
        Q.dequantize(np.zeros(144, np.uint8), "Q4_K", 100)
    with pytest.raises(ValueError, match="bytes"):
        Q.dequantize(np.zeros(143, np.uint8), "Q4_K", 256)
    with pytest.raises(ValueError, match="multiple"):
        Q.quantize(np.zeros(100, np.float32), "Q8_0")
    with pytest.raises(ValueError, match="256"):
        Q.dot_q8k(np.zeros(2 * 34 * 4, np.uint8), "Q8_0", np.zeros(128, np.float32))
    with pytest.raises(ValueError, match="rows"):
        Q.dot_q8k(np.zeros(145, np.uint8), "Q4_K", np.zeros(256, np.float32))
    with pytest.raises(ValueError, match="-127"):
        Q.dot_q8k_blocks(np.zeros(144, np.uint8), "Q4_K", np.ones(1, np.float32), np.full((1, 256), -128, np.int8))
    with pytest.raises(ValueError, match="length"):
        Q.canon_dot(np.zeros(3, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="level"):
        Q.set_simd_level("sse9")


def test_dot_q8k_blocks_extreme_codes():
    """Saturating codes (+-127 everywhere) against every weight type: no int16 saturation anywhere."""
    rng = np.random.default_rng(101)
    for t in DOT_TYPES:
        bs, ts = Q.block_size(t), Q.type_size(t)
        w = np.full((256 // bs * 2, ts), 0xFF, np.uint8)  # maximal codes and scales
        for off in SCALE_FIELDS[t]:
            w[:, off:off + 2] = np.array([1.0], np.float16).view(np.uint8)
        if t == "Q6_K":
            w[:, 192:208] = np.array([-128], np.int8).view(np.uint8)  # scale -128
        d = np.array([1.0, 2.0], np.float32)
        for fill in (127, -127):
            qs = np.full((2, 256), fill, np.int8)
            outs = []
            for level in LEVELS:
                Q.set_simd_level(level)
                outs.append(Q.dot_q8k_blocks(w.reshape(-1), t, d, qs))
            for o in outs[1:]:
                np.testing.assert_array_equal(bits(o), bits(outs[0]))
            want = dot_python(t, w.reshape(-1), d, qs)
            assert bits(outs[0][0]) == bits(want), (t, fill, outs[0], want)
        qs = rng.integers(-127, 128, size=(2, 256)).astype(np.int8)
        assert bits(Q.dot_q8k_blocks(w.reshape(-1), t, d, qs)[0]) == bits(dot_python(t, w.reshape(-1), d, qs))
