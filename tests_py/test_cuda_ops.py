"""Per-op parity of the CUDA kernels with their CPU twins: every output bit-identical.

Each test runs one kernel through ``_core.cuda_ops_<op>`` (upload, launch, download) and the
CPU definition of the same op — the quant API (``qwen3moe.quant``) for quantisation and the
matvec dots, the engine's per-op bindings (``_core.ops``, the cpp/ops functions) for the rest,
and ``_core.cpu_ops_moe_combine`` for the CPU backend's combine rule — over many
shapes and every weight type, and compares the raw bits. A failure names the op, the case,
the number of differing elements and the first one (index, both values and their bits), so
the report says exactly what to look at. Skipped without a CUDA GPU (marker ``cuda``).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import qwen3moe
from qwen3moe import _core
from qwen3moe import quant

pytestmark = pytest.mark.cuda

QUANT_TYPES = ["Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
FLOAT_TYPES = ["F32", "F16", "BF16"]
ALL_TYPES = FLOAT_TYPES + QUANT_TYPES

# Q8K activation block as stored on both sides (quant/blocks.h): 292 bytes, no padding.
Q8K_DTYPE = np.dtype([("d", "<f4"), ("qs", "i1", (256,)), ("bsums", "<i2", (16,))])
assert Q8K_DTYPE.itemsize == 292

# Offsets of the f16 scale fields inside each block type (to make random blocks sane).
_SCALE_FIELDS = {"Q4_0": (18, [0]), "Q8_0": (34, [0]), "Q4_K": (144, [0, 2]), "Q5_K": (176, [0, 2]),
                 "Q6_K": (210, [208])}


def _seed(*parts) -> int:
    """A deterministic seed from the case parameters (str hash() is salted per process)."""
    return zlib.crc32(repr(parts).encode())


# ---- comparison -----------------------------------------------------------------------------

def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    if a.dtype.itemsize == 4:
        return a.view(np.uint32)
    if a.dtype.itemsize == 2:
        return a.view(np.uint16)
    if a.dtype.itemsize == 1:
        return a.view(np.uint8)
    raise TypeError(a.dtype)


def assert_bits_equal(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Bit-for-bit equality with a precise report (count, first index, values, bits)."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != CPU {want.shape}"
    assert got.dtype.itemsize == want.dtype.itemsize, f"{what}: dtype {got.dtype} != CPU {want.dtype}"
    gb, wb = _bits(got), _bits(want)
    diff = gb != wb
    n = int(np.count_nonzero(diff))
    if n:
        first = np.unravel_index(int(np.flatnonzero(diff)[0]), got.shape)
        g, w = got[first], want[first]
        extra = ""
        if got.dtype.kind == "f":
            d = np.abs(got.astype(np.float64) - want.astype(np.float64))
            extra = f"; max |diff| {np.nanmax(d):.3g}"
        pytest.fail(f"{what}: {n} of {got.size} elements differ; first at {tuple(int(i) for i in first)}: "
                    f"CUDA {g!r} (0x{int(gb[first]):x}) vs CPU {w!r} (0x{int(wb[first]):x}){extra}")


# ---- data -----------------------------------------------------------------------------------

def _acts(rng, shape, outliers=True) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    if outliers:  # a few large channels, as in real activations
        flat = x.reshape(-1)
        idx = rng.choice(flat.size, size=max(1, flat.size // 97), replace=False)
        flat[idx] *= np.float32(40.0)
    return x


def _weights(rng, typ: str, n_rows: int, n: int, random_blocks: bool = False) -> np.ndarray:
    """Raw bytes (n_rows, row_bytes) of `typ`: quantised gaussian weights, or (random_blocks)
    uniformly random block bytes with sane f16 scales (covers every scale / bit pattern)."""
    if random_blocks and typ in _SCALE_FIELDS:
        bsize, offs = _SCALE_FIELDS[typ]
        rb = quant.row_bytes(typ, n)
        raw = rng.integers(0, 256, size=(n_rows, rb), dtype=np.uint8)
        blocks = raw.reshape(n_rows, rb // bsize, bsize)
        for off in offs:
            scale = (rng.uniform(1e-4, 2e-2, size=blocks.shape[:2]) * rng.choice([-1, 1], size=blocks.shape[:2]))
            blocks[:, :, off:off + 2] = scale.astype(np.float16).view(np.uint8).reshape(blocks.shape[:2] + (2,))
        return np.ascontiguousarray(blocks.reshape(n_rows, rb))
    w = (rng.standard_normal((n_rows, n)) * 0.02).astype(np.float32)
    return np.ascontiguousarray(quant.quantize(w, typ))


def _q8k_bytes(x: np.ndarray) -> np.ndarray:
    """CPU Q8K blocks of each row of x (rows, n) as raw bytes (rows, n/256*292)."""
    rows, n = x.shape
    out = np.zeros((rows, n // 256), dtype=Q8K_DTYPE)
    for r in range(rows):
        d, qs, bsums = _core.quant_quantize_q8k(np.ascontiguousarray(x[r]))
        out[r]["d"] = d
        out[r]["qs"] = np.asarray(qs).reshape(-1, 256)
        out[r]["bsums"] = np.asarray(bsums).reshape(-1, 16)
    return out.view(np.uint8).reshape(rows, -1)


# ---- CPU references from the engine's per-op bindings (_core.ops) ---------------------------

def cpu_rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return np.stack([np.asarray(_core.ops.rms_norm(row, w, eps), dtype=np.float32) for row in x])


def cpu_rope_tables(n_pos: int, hd: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(_core.ops.rope_table(n_pos, hd, base), dtype=np.float32)  # [2, n_pos, hd/2]
    return np.ascontiguousarray(t[0]), np.ascontiguousarray(t[1])


def cpu_norm_rope(x, w, eps, pos, cos, sin):
    """Per head: rms_norm over hd, then rope_neox at the token's position -> (normed, rotated)."""
    normed = np.empty_like(x)
    out = np.empty_like(x)
    for t in range(x.shape[0]):
        for h in range(x.shape[1]):
            normed[t, h] = _core.ops.rms_norm(x[t, h], w, eps)
        out[t] = _core.ops.rope_neox(normed[t], cos[pos[t]], sin[pos[t]])
    return normed, out


def cpu_attention(q, k_cache, v_cache, pos, n_head_kv):
    n_tok, n_head, hd = q.shape
    out = np.empty((n_tok, n_head * hd), dtype=np.float32)
    for t in range(n_tok):
        for h in range(n_head):
            g = h // (n_head // n_head_kv)
            k = np.ascontiguousarray(k_cache[: pos[t] + 1, g * hd:(g + 1) * hd])
            v = np.ascontiguousarray(v_cache[: pos[t] + 1, g * hd:(g + 1) * hd])
            out[t, h * hd:(h + 1) * hd] = _core.ops.attention_head(q[t, h], k, v)
    return out


def cpu_router(logits, k):
    res = [_core.ops.moe_router(row, k) for row in logits]
    return (np.stack([np.asarray(r[0], dtype=np.float32) for r in res]),
            np.stack([np.asarray(r[1], dtype=np.int32) for r in res]),
            np.stack([np.asarray(r[2], dtype=np.float32) for r in res]))


def cpu_swiglu(g, u):
    return np.asarray(_core.ops.swiglu(g, u), dtype=np.float32)


# ---- quantize-q8k ---------------------------------------------------------------------------

@pytest.mark.parametrize("rows,n", [(1, 256), (3, 512), (5, 2048), (2, 4096), (17, 768)])
def test_quantize_q8k(rows, n):
    rng = np.random.default_rng(1000 + rows * n)
    x = _acts(rng, (rows, n))
    x[0, :256] = 0.0  # an all-zero block: d = 0, q = 0
    if rows > 1:
        x[1, 3] = np.float32(np.nan)  # NaN never wins amax and quantises to 0 (as the CPU)
    got = _core.cuda_ops_quantize_q8k(x)
    want = _q8k_bytes(x)
    g = got.view(Q8K_DTYPE).reshape(rows, -1)
    w = want.view(Q8K_DTYPE).reshape(rows, -1)
    assert_bits_equal(g["d"], w["d"], f"quantize_q8k d (rows={rows}, n={n})")
    assert_bits_equal(g["qs"], w["qs"], f"quantize_q8k qs (rows={rows}, n={n})")
    assert_bits_equal(g["bsums"], w["bsums"], f"quantize_q8k bsums (rows={rows}, n={n})")


def test_quantize_q8k_edge_values():
    # Ties of the rounding (x*iscale = k + 0.5), the clamp, denormals, huge values.
    x = np.zeros((4, 256), dtype=np.float32)
    x[0] = np.arange(256, dtype=np.float32) - 127.5          # amax 128: many .5 ties after scaling
    x[1] = np.float32(1e-40) * (np.arange(256) % 7 - 3)      # subnormals only
    x[2] = np.float32(3e38) * np.sign(np.arange(256) - 100.5).astype(np.float32)
    x[3, ::2] = 127.0
    x[3, 1::2] = -126.5
    got = _core.cuda_ops_quantize_q8k(x)
    assert_bits_equal(got, _q8k_bytes(x), "quantize_q8k edge values (raw block bytes)")


# ---- matvec, Q8K activations -----------------------------------------------------------------

MATVEC_SHAPES = [(1, 256), (7, 512), (33, 768), (64, 2048), (5, 4096), (3, 256 * 40)]


@pytest.mark.parametrize("typ", QUANT_TYPES)
@pytest.mark.parametrize("n_rows,n", MATVEC_SHAPES)
@pytest.mark.parametrize("random_blocks", [False, True])
def test_matvec_q8k(typ, n_rows, n, random_blocks):
    rng = np.random.default_rng(_seed(typ, n_rows, n, random_blocks))
    w = _weights(rng, typ, n_rows, n, random_blocks)
    x = _acts(rng, (3, n))
    x[1, :256] = 0.0  # a zero activation block (d = 0)
    want = np.asarray(quant.dot_q8k(w, typ, x), dtype=np.float32)  # (3, n_rows)
    # Activations quantised by the CPU: isolates the matvec from the quantiser.
    got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, _q8k_bytes(x))
    assert_bits_equal(got, want, f"matvec_q8k {typ} rows={n_rows} n={n} random_blocks={random_blocks}")
    # End to end with the GPU quantiser.
    got2 = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, _core.cuda_ops_quantize_q8k(x))
    assert_bits_equal(got2, want, f"matvec_q8k (GPU-quantised) {typ} rows={n_rows} n={n}")


@pytest.mark.parametrize("typ", QUANT_TYPES)
def test_matvec_q8k_single_token_matches_multi(typ):
    # The CPU single-token dot (vec_dot_q8k) and each GPU row agree.
    rng = np.random.default_rng(7)
    n_rows, n = 9, 1024
    w = _weights(rng, typ, n_rows, n)
    x = _acts(rng, (n,))
    want = np.asarray(quant.dot_q8k(w, typ, x), dtype=np.float32)
    got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, _q8k_bytes(x[None, :]))[0]
    assert_bits_equal(got, want, f"matvec_q8k single token {typ}")


@pytest.mark.parametrize("typ", QUANT_TYPES)
@pytest.mark.parametrize("act_per_slot", [False, True])
def test_matvec_q8k_expert_ids(typ, act_per_slot):
    # Expert form: slot (t, r) multiplies matrix ids[t, r] (gate/up: shared token input;
    # down: one input per slot). Invalid ids give NaN rows, never a read out of bounds.
    rng = np.random.default_rng(11 + act_per_slot)
    n_mat, n_rows, n, n_tok, k = 6, 40, 512, 4, 3
    w = np.stack([_weights(rng, typ, n_rows, n) for _ in range(n_mat)])
    ids = np.array([[0, 5, 2], [3, 3, 1], [5, 4, 0], [2, 1, 4]], dtype=np.int32)
    x = _acts(rng, (n_tok * k if act_per_slot else n_tok, n))
    got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, _q8k_bytes(x), ids, act_per_slot)
    want = np.zeros((n_tok * k, n_rows), dtype=np.float32)
    for t in range(n_tok):
        for r in range(k):
            xr = x[t * k + r] if act_per_slot else x[t]
            want[t * k + r] = quant.dot_q8k(w[ids[t, r]], typ, xr)
    assert_bits_equal(got, want, f"matvec_q8k expert ids {typ} act_per_slot={act_per_slot}")
    bad = ids.copy()
    bad[1, 2] = n_mat
    got_bad = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, _q8k_bytes(x), bad, act_per_slot)
    assert np.isnan(got_bad[1 * k + 2]).all()
    mask = np.ones(n_tok * k, dtype=bool)
    mask[1 * k + 2] = False
    assert_bits_equal(got_bad[mask], want[mask], f"matvec_q8k other slots beside an invalid id {typ}")


@pytest.mark.parametrize("typ", QUANT_TYPES)
@pytest.mark.parametrize("act_per_slot", [False, True])
def test_matvec_q8k_prefill_tiles_and_groups(typ, act_per_slot):
    # Prefill shapes: more tokens than one slot tile (16), rows not a multiple of the row tile
    # (16), a skewed routing (expert 0 spans several tiles, expert 3 gets no slot) and an
    # invalid id; the grouped (sorted by expert on the GPU) and ungrouped launches agree with
    # the CPU bit for bit.
    rng = np.random.default_rng(_seed(typ, act_per_slot, 99))
    n_mat, n_rows, n, n_tok, k = 5, 37, 768, 45, 3
    w = np.stack([_weights(rng, typ, n_rows, n, random_blocks=True) for _ in range(n_mat)])
    ids = rng.choice([0, 0, 0, 1, 2, 4], size=(n_tok, k)).astype(np.int32)
    ids[7, 1] = n_mat  # invalid
    ids[8, 0] = -1     # invalid
    x = _acts(rng, (n_tok * k if act_per_slot else n_tok, n))
    xq = _q8k_bytes(x)
    want = np.full((n_tok * k, n_rows), np.nan, dtype=np.float32)
    for e in range(n_mat):
        slots = [s for s in range(n_tok * k) if ids[s // k, s % k] == e]
        if slots:
            rows = x[slots] if act_per_slot else x[[s // k for s in slots]]
            want[slots] = np.asarray(quant.dot_q8k(w[e], typ, rows), dtype=np.float32).reshape(len(slots), n_rows)
    for group in (True, False):
        got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, xq, ids, act_per_slot, group)
        assert np.isnan(got[7 * k + 1]).all() and np.isnan(got[8 * k + 0]).all()
        assert_bits_equal(got, want, f"matvec_q8k prefill {typ} act_per_slot={act_per_slot} group={group}")
    # Dense multi-token: 45 tokens over one matrix (tiles of 16 with a tail).
    got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w[1], n, _q8k_bytes(x[:n_tok]))
    assert_bits_equal(got, np.asarray(quant.dot_q8k(w[1], typ, x[:n_tok]), dtype=np.float32),
                      f"matvec_q8k dense 45 tokens {typ}")


@pytest.mark.parametrize("typ", QUANT_TYPES)
@pytest.mark.parametrize("n_tok", [2, 5, 16, 33, 100, 300])
def test_matvec_q8k_mma_prefill(typ, n_tok):
    # The int8 tensor-core prefill path (cuda/matvec-mma.cu: dense launches and grouped expert
    # launches) against the CPU dot: rows not a multiple of the 16-row warp tile or the 128-row
    # block tile, n = 768 (3 blocks: most canonical lanes empty), very uneven routing (expert 0
    # takes most slots, experts 2 and 5 none), invalid ids, activation rows per token and per slot.
    rng = np.random.default_rng(_seed(typ, n_tok, 2024))
    n_mat, n_rows, n, k = 6, 141, 768, 3
    w = np.stack([_weights(rng, typ, n_rows, n, random_blocks=(e % 2 == 1)) for e in range(n_mat)])
    n_slots = n_tok * k
    ids = rng.choice([0] * 12 + [1, 3, 4], size=(n_tok, k)).astype(np.int32)
    ids[n_tok // 2, 1] = n_mat if n_tok > 2 else ids[n_tok // 2, 1]  # invalid (past the end)
    ids[0, 2] = -3                                                   # invalid (negative)
    for act_per_slot in (False, True):
        x = _acts(rng, (n_slots if act_per_slot else n_tok, n))
        x[0, :256] = 0.0  # a zero activation block (d = 0)
        x[-1, 256:512] = 3.0  # saturated blocks: every q = +-127, bsums at their extremes
        x[1, :256] = -0.5
        xq = _q8k_bytes(x)
        want = _want_grouped(w, typ, x, ids, act_per_slot)
        got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, xq, ids, act_per_slot, True)
        assert np.isnan(got[2]).all()
        assert_bits_equal(got, want, f"matvec_q8k mma grouped {typ} n_tok={n_tok} act_per_slot={act_per_slot}")
    # Dense: n_tok token rows over one matrix; a longer row (n = 256 * 37: lanes with two blocks).
    for nn, rows in ((2048, 77), (256 * 37, 19)):
        wd = _weights(rng, typ, rows, nn, random_blocks=True)
        xd = _acts(rng, (n_tok, nn))
        got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), wd, nn, _q8k_bytes(xd))
        want = np.asarray(quant.dot_q8k(wd, typ, xd), dtype=np.float32).reshape(n_tok, rows)
        assert_bits_equal(got, want, f"matvec_q8k mma dense {typ} n_tok={n_tok} rows={rows} n={nn}")


def _want_grouped(w, typ, x, ids, act_per_slot):
    """CPU reference of a grouped expert matvec over w (n_mat, n_rows, row_bytes): slot
    s = (token s // k, rank s % k) uses matrix ids[token, rank] (NaN rows for ids outside
    [0, n_mat)) and activation row s (act_per_slot) or its token's row."""
    n_mat, n_rows = w.shape[0], w.shape[1]
    n_tok, k = ids.shape
    n_slots = n_tok * k
    want = np.full((n_slots, n_rows), np.nan, dtype=np.float32)
    for e in range(n_mat):
        slots = [s for s in range(n_slots) if ids[s // k, s % k] == e]
        if slots:
            rows = x[slots] if act_per_slot else x[[s // k for s in slots]]
            want[slots] = np.asarray(quant.dot_q8k(w[e], typ, rows), dtype=np.float32).reshape(len(slots), n_rows)
    return want


@pytest.fixture(params=["new", "old"])
def mma_variant(request):
    """Runs a test under each int8 tensor-core prefill kernel (wide / 16-slot), restoring the choice."""
    prev = _core.cuda_ops_mma_variant(request.param)
    yield request.param
    _core.cuda_ops_mma_variant(prev)


@pytest.mark.parametrize("typ", QUANT_TYPES)
@pytest.mark.parametrize("n_tok", [1, 7, 8, 9, 31, 32, 33, 64, 100])
def test_matvec_q8k_mma_slots_and_variants(typ, n_tok, mma_variant):
    # Both tensor-core kernels (matvec-mma-wide.cu's 128 x 32 / 64 x 64 tiles, matvec-mma.cu's
    # 16-slot units) against the CPU dot around every tile edge: slot counts 1 .. 100 (units of 8,
    # 16, 32, 64 full, partial, one past), rows 1, 33, 130 (warp tile 32, block tiles 64 / 128),
    # row lengths 256 / 768 / 2048 / 4096 (tree depths 3, 4) and 256 * 20 (depth 5, lanes 20..31
    # empty), grouped experts with an uneven routing and invalid ids.
    rng = np.random.default_rng(_seed(typ, n_tok, mma_variant, 77))
    n_mat, k = 5, 4
    for n_rows, n in ((33, 768), (130, 2048), (1, 256), (70, 4096), (40, 256 * 20)):
        w = np.stack([_weights(rng, typ, n_rows, n, random_blocks=(e % 2 == 0)) for e in range(n_mat)])
        n_slots = n_tok * k
        ids = rng.choice([0] * 10 + [1, 2, 4], size=(n_tok, k)).astype(np.int32)
        ids[n_tok // 2, 0] = n_mat  # invalid
        ids[-1, k - 1] = -1         # invalid
        for act_per_slot in (False, True):
            x = _acts(rng, (n_slots if act_per_slot else n_tok, n))
            x[0, :256] = 0.0
            x[-1, -256:] = 3.0
            xq = _q8k_bytes(x)
            want = _want_grouped(w, typ, x, ids, act_per_slot)
            got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, xq, ids, act_per_slot, True)
            assert np.isnan(got[(n_tok // 2) * k]).all() and np.isnan(got[n_slots - 1]).all()
            assert_bits_equal(got, want, f"matvec_q8k mma[{mma_variant}] grouped {typ} n_tok={n_tok} "
                                         f"rows={n_rows} n={n} act_per_slot={act_per_slot}")
        xd = _acts(rng, (n_tok, n))
        got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w[3], n, _q8k_bytes(xd))
        want = np.asarray(quant.dot_q8k(w[3], typ, xd), dtype=np.float32).reshape(n_tok, n_rows)
        assert_bits_equal(got, want, f"matvec_q8k mma[{mma_variant}] dense {typ} n_tok={n_tok} rows={n_rows} n={n}")


@pytest.mark.parametrize("typ", QUANT_TYPES)
@pytest.mark.parametrize("a_offset,w_offset", [(0, 0), (4, 0), (8, 4), (12, 8), (292, 12)])
def test_matvec_q8k_mma_alignment(typ, a_offset, w_offset):
    # The wide kernel stages activation blocks as 16-byte windows when `a` is 16-byte aligned and
    # word by word when not, the weights as windows at any 4-byte offset: both land each block at
    # its address mod 16 in shared memory, and both must give the CPU's bits. Offsets 4, 8, 12
    # (292 = one block, 4 mod 16) move `a` off the 16-byte grid; row lengths 768 (3 blocks:
    # per-slot window offsets differ between slots) and 2048; grouped experts and dense tokens.
    # Q4_K / Q5_K weights must be 16-byte aligned (their blocks are then staged without windows):
    # they move by 16 bytes per 4 of the others, and a 4-byte offset is refused.
    if typ in ("Q4_K", "Q5_K"):
        if w_offset:
            with pytest.raises(ValueError, match="16-byte aligned"):
                _core.cuda_ops_matvec_q8k(quant.type_id(typ), np.zeros((1, 144 if typ == "Q4_K" else 176), np.uint8),
                                          256, np.zeros((2, 292), np.uint8), w_offset=w_offset)
        w_offset *= 4
    rng = np.random.default_rng(_seed(typ, a_offset, w_offset, 99))
    n_mat, k, n_tok = 4, 4, 37
    for n_rows, n in ((130, 768), (70, 2048)):
        w = np.stack([_weights(rng, typ, n_rows, n, random_blocks=(e % 2 == 0)) for e in range(n_mat)])
        ids = rng.choice([0, 0, 0, 1, 3], size=(n_tok, k)).astype(np.int32)
        for act_per_slot in (False, True):
            x = _acts(rng, (n_tok * k if act_per_slot else n_tok, n))
            want = _want_grouped(w, typ, x, ids, act_per_slot)
            got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, _q8k_bytes(x), ids, act_per_slot, True,
                                            a_offset=a_offset, w_offset=w_offset)
            assert_bits_equal(got, want, f"matvec_q8k mma grouped {typ} rows={n_rows} n={n} a_offset={a_offset} "
                                         f"w_offset={w_offset} act_per_slot={act_per_slot}")
        xd = _acts(rng, (n_tok, n))
        got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w[2], n, _q8k_bytes(xd), a_offset=a_offset,
                                        w_offset=w_offset)
        want = np.asarray(quant.dot_q8k(w[2], typ, xd), dtype=np.float32).reshape(n_tok, n_rows)
        assert_bits_equal(got, want, f"matvec_q8k mma dense {typ} rows={n_rows} n={n} a_offset={a_offset} "
                                     f"w_offset={w_offset}")


def test_matvec_q8k_offsets_validated():
    with pytest.raises(ValueError, match="multiples of 4"):
        _core.cuda_ops_matvec_q8k(quant.type_id("Q4_K"), np.zeros((1, 144), dtype=np.uint8), 256,
                                  np.zeros((2, 292), dtype=np.uint8), a_offset=2)


def test_matvec_q8k_rejects_float_types():
    w = np.zeros((2, 256 * 4), dtype=np.uint8)
    with pytest.raises(qwen3moe.UnsupportedTypeError):
        _core.cuda_ops_matvec_q8k(quant.type_id("F32"), w, 256, np.zeros((1, 292), dtype=np.uint8))


# ---- matvec, f32 activations -------------------------------------------------------------------

@pytest.mark.parametrize("typ", ALL_TYPES)
@pytest.mark.parametrize("n_rows,n", [(1, 256), (7, 512), (33, 768), (64, 2048), (3, 256 * 40)])
def test_matvec_f32act(typ, n_rows, n):
    rng = np.random.default_rng(_seed(typ, n_rows, n))
    w = _weights(rng, typ, n_rows, n, random_blocks=(n_rows % 2 == 1))
    x = _acts(rng, (2, n))
    got = _core.cuda_ops_matvec_f32act(quant.type_id(typ), w, n, x)
    want = np.stack([np.asarray(quant.dot_f32(w, typ, x[t]), dtype=np.float32) for t in range(2)])
    assert_bits_equal(got, want, f"matvec_f32act {typ} rows={n_rows} n={n}")


@pytest.mark.parametrize("n", [1, 31, 32, 33, 100, 2048])
def test_matvec_f32act_f32_any_length(n):
    # F32 rows (the router) of any length: canon_dot with a tail.
    rng = np.random.default_rng(n)
    w = rng.standard_normal((5, n)).astype(np.float32)
    x = rng.standard_normal((1, n)).astype(np.float32)
    got = _core.cuda_ops_matvec_f32act(quant.type_id("F32"), w.view(np.uint8), n, x)
    want = np.array([[quant.canon_dot(w[r], x[0]) for r in range(5)]], dtype=np.float32)
    assert_bits_equal(got, want, f"matvec_f32act F32 n={n}")


@pytest.mark.parametrize("n_rows,n,n_tok", [(128, 2048, 512), (128, 2048, 37), (33, 800, 17), (5, 96, 2),
                                           (40, 32, 300), (7, 100, 9)])
def test_matvec_f32act_f32_prefill_rows(n_rows, n, n_tok):
    # F32 rows x many tokens without expert ids (the prefill router; blocks of 16 rows x 16
    # tokens, chunks of 256 values with a partial last chunk; n % 32 != 0 takes the tiled path).
    rng = np.random.default_rng(_seed(n_rows, n, n_tok))
    w = rng.standard_normal((n_rows, n)).astype(np.float32)
    w[3 % n_rows, 5 % n] = np.float32(-0.0)
    x = (rng.standard_normal((n_tok, n)) * 3).astype(np.float32)
    x[n_tok // 2] = 0.0  # a zero token: every lane partial stays +0.0f
    got = _core.cuda_ops_matvec_f32act(quant.type_id("F32"), w.view(np.uint8), n, x)
    small = n_tok * n_rows <= 4096
    rows = range(n_rows) if small else sorted({r for r in (0, 1, 15, 16, 31, 32, 77, n_rows - 1) if r < n_rows})
    toks = range(n_tok) if small else sorted({t for t in (0, 1, 15, 16, n_tok // 2, n_tok - 1) if t < n_tok})
    want = np.array([[quant.canon_dot(w[r], x[t]) for r in rows] for t in toks], dtype=np.float32)
    assert_bits_equal(got[np.ix_(list(toks), list(rows))], want, f"matvec_f32act F32 prefill rows={n_rows} n={n} tok={n_tok}")
    # Every row of every token against the one-token launch (the decode shape).
    one = np.concatenate([_core.cuda_ops_matvec_f32act(quant.type_id("F32"), w.view(np.uint8), n, x[t:t + 1])
                          for t in range(0, n_tok, max(1, n_tok // 8))])
    assert_bits_equal(got[::max(1, n_tok // 8)], one, f"matvec_f32act F32 prefill vs one token rows={n_rows} n={n}")


@pytest.mark.parametrize("typ", ["F32", "BF16", "Q4_K", "Q6_K"])
def test_matvec_f32act_expert_ids(typ):
    rng = np.random.default_rng(5)
    n_mat, n_rows, n, n_tok, k = 5, 24, 512, 3, 2
    w = np.stack([_weights(rng, typ, n_rows, n) for _ in range(n_mat)])
    ids = np.array([[4, 0], [1, 1], [2, 3]], dtype=np.int32)
    x = _acts(rng, (n_tok * k, n))
    got = _core.cuda_ops_matvec_f32act(quant.type_id(typ), w, n, x, ids, True)
    want = np.stack([np.asarray(quant.dot_f32(w[ids[s // k, s % k]], typ, x[s]), dtype=np.float32)
                     for s in range(n_tok * k)])
    assert_bits_equal(got, want, f"matvec_f32act expert ids {typ}")


@pytest.mark.parametrize("typ", ["F32", "F16", "Q4_K", "Q8_0"])
def test_matvec_f32act_prefill_tiles_and_groups(typ):
    rng = np.random.default_rng(_seed(typ, 77))
    n_mat, n_rows, n, n_tok, k = 4, 21, 512, 23, 2
    w = np.stack([_weights(rng, typ, n_rows, n) for _ in range(n_mat)])
    ids = rng.choice([0, 0, 1, 3], size=(n_tok, k)).astype(np.int32)
    ids[2, 1] = 9  # invalid
    x = _acts(rng, (n_tok * k, n))
    want = np.stack([np.asarray(quant.dot_f32(w[ids[s // k, s % k]], typ, x[s]), dtype=np.float32)
                     if 0 <= ids[s // k, s % k] < n_mat else np.full(n_rows, np.nan, dtype=np.float32)
                     for s in range(n_tok * k)])
    for group in (True, False):
        got = _core.cuda_ops_matvec_f32act(quant.type_id(typ), w, n, x, ids, True, group)
        assert np.isnan(got[2 * k + 1]).all()
        assert_bits_equal(got, want, f"matvec_f32act prefill {typ} group={group}")
    got = _core.cuda_ops_matvec_f32act(quant.type_id(typ), w[0], n, x[:n_tok])
    want0 = np.stack([np.asarray(quant.dot_f32(w[0], typ, x[t]), dtype=np.float32) for t in range(n_tok)])
    assert_bits_equal(got, want0, f"matvec_f32act dense 23 tokens {typ}")


# ---- rms-norm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,n", [(1, 128), (3, 2048), (9, 4096), (4, 100), (2, 33)])
def test_rms_norm(rows, n):
    rng = np.random.default_rng(rows * 31 + n)
    x = _acts(rng, (rows, n))
    w = (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    for eps in (1e-6, 1e-5):
        got = _core.cuda_ops_rms_norm(x, w, eps)
        want = cpu_rms_norm(x, w, eps)
        assert_bits_equal(got, want, f"rms_norm rows={rows} n={n} eps={eps}")


@pytest.mark.parametrize("rows,n", [(1, 2048), (3, 4096), (5, 256), (2, 2304)])
def test_rms_norm_q8k_fused(rows, n):
    # The fused RMSNorm + Q8K launch gives the CPU's norm output and the CPU's Q8K blocks of it.
    rng = np.random.default_rng(rows * 17 + n)
    x = _acts(rng, (rows, n))
    x[0, :256] = 0.0  # an all-zero block of the output (d = 0)
    w = (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    y, yq = _core.cuda_ops_rms_norm_q8k(x, w, 1e-6)
    want = cpu_rms_norm(x, w, 1e-6)
    assert_bits_equal(y, want, f"rms_norm_q8k rows={rows} n={n} (f32)")
    assert_bits_equal(yq, _q8k_bytes(want), f"rms_norm_q8k rows={rows} n={n} (Q8K bytes)")


# ---- qk-norm-rope (+ KV store) -----------------------------------------------------------------

@pytest.mark.parametrize("n_tok,n_heads,hd", [(1, 32, 128), (5, 4, 128), (3, 8, 64), (2, 2, 256)])
@pytest.mark.parametrize("cache_type", ["f32", "f16"])
def test_norm_rope(n_tok, n_heads, hd, cache_type):
    rng = np.random.default_rng(n_tok * 1000 + n_heads * 10 + hd)
    n_pos = 300
    cos, sin = cpu_rope_tables(n_pos, hd, 1e7)
    x = _acts(rng, (n_tok, n_heads, hd))
    w = (1.0 + 0.2 * rng.standard_normal(hd)).astype(np.float32)
    pos = np.sort(rng.choice(n_pos, size=n_tok, replace=False)).astype(np.int32)
    normed, out, cache = _core.cuda_ops_norm_rope(x, w, 1e-6, pos, cos, sin, cache_type)
    want_normed, want_out = cpu_norm_rope(x, w, 1e-6, pos, cos, sin)
    what = f"norm_rope n_tok={n_tok} heads={n_heads} hd={hd}"
    assert_bits_equal(normed, want_normed, what + " (normed)")
    assert_bits_equal(out, want_out, what + " (rotated)")
    want_cache = np.zeros((n_pos, n_heads * hd), dtype=np.float32)
    want_cache[pos] = want_out.reshape(n_tok, -1)
    if cache_type == "f16":
        want_cache = quant.f32_to_f16_bits(want_cache)
    assert_bits_equal(cache, want_cache, what + f" ({cache_type} cache rows)")


@pytest.mark.parametrize("f16", [False, True])
def test_kv_store(f16):
    rng = np.random.default_rng(3)
    n_ctx, row = 50, 512
    x = _acts(rng, (6, row))
    x[0, 0] = np.float32(70000.0)  # overflows f16 -> inf (as the CPU)
    x[0, 1] = np.float32(3e-8)     # f16 subnormal range
    pos = np.array([0, 7, 8, 9, 30, 49], dtype=np.int32)
    got = _core.cuda_ops_kv_store(x, pos, n_ctx, f16)
    want = np.zeros((n_ctx, row), dtype=np.float32)
    want[pos] = x
    if f16:
        want = quant.f32_to_f16_bits(want)
    assert_bits_equal(got, want, f"kv_store f16={f16}")


# ---- attention ---------------------------------------------------------------------------------

@pytest.mark.parametrize("split", [1, 2], ids=["one-block-per-head", "split-K"])
@pytest.mark.parametrize("cache_f16", [False, True])
@pytest.mark.parametrize("n_head,n_head_kv,hd,positions", [
    (4, 1, 128, [0]),
    (8, 2, 128, [0, 1, 2, 3]),
    (32, 4, 128, [126, 127, 128, 129]),    # tile boundary (kAttnTile = 128)
    (4, 4, 64, [300, 511]),                # several tiles, partial last tile
    (2, 1, 256, [1000]),
    (6, 3, 96, [255, 256, 257]),
])
def test_attention(split, cache_f16, n_head, n_head_kv, hd, positions):
    rng = np.random.default_rng(n_head * 7 + hd + len(positions))
    n_ctx = max(positions) + 3
    pos = np.array(positions, dtype=np.int32)
    q = (rng.standard_normal((len(pos), n_head, hd)) * 2).astype(np.float32)
    k = (rng.standard_normal((n_ctx, n_head_kv * hd)) * 2).astype(np.float32)
    v = rng.standard_normal((n_ctx, n_head_kv * hd)).astype(np.float32)
    if cache_f16:
        k[::7, ::5] *= np.float32(1e-6)  # f16 subnormals (the device widens them in hardware)
        v[::3, ::4] *= np.float32(1e-6)
        k, v = quant.f32_to_f16_bits(k), quant.f32_to_f16_bits(v)
    want = cpu_attention(q, k, v, pos, n_head_kv)
    # split=1: scores kept in shared memory (largest position known) and recomputed (unknown).
    for known in ((True, False) if split == 1 else (True,)):
        got = _core.cuda_ops_attention(q, k, v, pos, n_head_kv, split, known)
        assert_bits_equal(got, want, f"attention (split={split}, known_max_pos={known}) heads={n_head}/{n_head_kv} "
                                     f"hd={hd} pos={positions} f16={cache_f16}")


def test_attention_peaked_scores():
    # Large scores: most e_j underflow to 0; the max key dominates.
    rng = np.random.default_rng(99)
    n_head, n_kv, hd, n_ctx = 4, 2, 128, 200
    q = (rng.standard_normal((2, n_head, hd)) * 30).astype(np.float32)
    k = (rng.standard_normal((n_ctx, n_kv * hd)) * 30).astype(np.float32)
    v = rng.standard_normal((n_ctx, n_kv * hd)).astype(np.float32)
    pos = np.array([150, 199], dtype=np.int32)
    want = cpu_attention(q, k, v, pos, n_kv)
    for split in (1, 2):
        got = _core.cuda_ops_attention(q, k, v, pos, n_kv, split)
        assert_bits_equal(got, want, f"attention with peaked scores (split={split})")


def test_attention_auto_split_long_context():
    # Decode-like: one query row at a long position takes the split-K path under split=0.
    rng = np.random.default_rng(123)
    n_head, n_kv, hd, n_ctx = 8, 2, 128, 2100
    q = rng.standard_normal((1, n_head, hd)).astype(np.float32)
    k = quant.f32_to_f16_bits(rng.standard_normal((n_ctx, n_kv * hd)).astype(np.float32))
    v = quant.f32_to_f16_bits(rng.standard_normal((n_ctx, n_kv * hd)).astype(np.float32))
    pos = np.array([2099], dtype=np.int32)
    want = cpu_attention(q, k, v, pos, n_kv)
    for split in (0, 1, 2):
        assert_bits_equal(_core.cuda_ops_attention(q, k, v, pos, n_kv, split), want, f"attention n_ctx 2100 split={split}")


# ---- attention: the tiled prefill kernel ------------------------------------------------------

def _cpu_attention_rows(q, k_cache, v_cache, pos, n_head_kv):
    """cpu_attention, with NaN rows for positions outside [0, n_ctx) (as the device writes)."""
    n_tok, n_head, hd = q.shape
    ok = (pos >= 0) & (pos < k_cache.shape[0])
    out = np.full((n_tok, n_head * hd), np.nan, dtype=np.float32)
    if ok.any():
        out[ok] = cpu_attention(q[ok], k_cache, v_cache, pos[ok], n_head_kv)
    return out


def assert_attention_equal(got, want, what):
    """Bit equality where the CPU row is a number; NaN exactly where the CPU has NaN (the NaN
    payload of the device's arithmetic is the canonical one, not the host's)."""
    got, want = np.asarray(got), np.asarray(want)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert (nan_g == nan_w).all(), (f"{what}: NaN at {int(np.count_nonzero(nan_g != nan_w))} places differ "
                                    f"(first {np.argwhere(nan_g != nan_w)[0].tolist()})")
    assert_bits_equal(np.where(nan_w, 0, got), np.where(nan_w, 0, want), what)


def _attn_case(n_tok, n_head, n_head_kv, hd, layout, cache_f16, seed):
    """Random q / K / V and positions of the given layout; returns q, k, v, pos (int32)."""
    rng = np.random.default_rng(seed)
    if layout == "from0":
        pos = np.arange(n_tok)
    elif layout == "depth1000":
        pos = 1000 + np.arange(n_tok)
    elif layout == "shuffled":  # out of order, gaps, repeats
        pos = rng.integers(0, 3 * n_tok + 200, size=n_tok)
        pos[: n_tok // 4] = pos[n_tok // 4: 2 * (n_tok // 4)]
    elif layout == "invalid":  # contiguous, some rows outside [0, n_ctx)
        pos = 37 + np.arange(n_tok)
    else:
        raise ValueError(layout)
    pos = pos.astype(np.int32)
    n_ctx = int(pos.max()) + 3
    if layout == "invalid":
        pos[1] = -1
        pos[n_tok // 2] = n_ctx
        pos[-1] = n_ctx + 100
    q = (rng.standard_normal((n_tok, n_head, hd)) * 2).astype(np.float32)
    k = (rng.standard_normal((n_ctx, n_head_kv * hd)) * 2).astype(np.float32)
    v = rng.standard_normal((n_ctx, n_head_kv * hd)).astype(np.float32)
    if cache_f16:
        k[::7, ::5] *= np.float32(1e-6)  # f16 subnormals
        v[::3, ::4] *= np.float32(1e-6)
        k, v = quant.f32_to_f16_bits(k), quant.f32_to_f16_bits(v)
    return q, k, v, pos


@pytest.mark.parametrize("cache_f16", [False, True])
@pytest.mark.parametrize("n_tok,n_head,n_head_kv,hd,layout", [
    (9, 8, 1, 128, "from0"),        # GQA 8 (the 30B layout), one row block
    (16, 4, 2, 64, "depth1000"),    # GQA 2 at a depth: full tiles before the diagonal
    (100, 4, 4, 128, "from0"),      # GQA 1, many row blocks
    (300, 16, 2, 128, "from0"),     # several key tiles, blocks with rows of many positions
    (100, 2, 1, 256, "depth1000"),  # head_dim 256
    (16, 8, 1, 96, "shuffled"),     # out-of-order / repeated positions, head_dim not 32 * 2^k
    (40, 8, 2, 200, "shuffled"),    # head_dim 200: the last 32-chunk partial
    (24, 6, 3, 32, "invalid"),      # positions < 0 or >= n_ctx give NaN rows
    (33, 8, 8, 128, "invalid"),
])
def test_attention_tiled(cache_f16, n_tok, n_head, n_head_kv, hd, layout):
    q, k, v, pos = _attn_case(n_tok, n_head, n_head_kv, hd, layout, cache_f16, _seed(n_tok, n_head, hd, layout))
    invalid = layout == "invalid"
    want = _cpu_attention_rows(q, k, v, pos, n_head_kv)
    # split 0: auto (n_tok > 8 takes the tiled kernel, scores cached in scratch); 1: the tiled
    # kernel recomputing its scores; 3: the tiled kernel forced (cache sized by the known largest
    # position, or by n_ctx); 4: the old one-block-per-(token, head) kernel, which must agree too.
    for split in (0, 1, 3, 4):
        for known in ((True, False) if split == 3 else (True,)):
            got = _core.cuda_ops_attention(q, k, v, pos, n_head_kv, split, known, allow_invalid_pos=invalid)
            what = (f"tiled attention split={split} known={known} n_tok={n_tok} heads={n_head}/{n_head_kv} "
                    f"hd={hd} {layout} f16={cache_f16}")
            if invalid:
                assert np.isnan(got[~((pos >= 0) & (pos < k.shape[0]))]).all(), what
                assert_attention_equal(got, want, what)
            else:
                assert_bits_equal(got, want, what)


@pytest.mark.parametrize("n_tok,positions", [(1, [0]), (3, [5, 0, 130]), (8, list(range(120, 128)))])
def test_attention_tiled_small_batches(n_tok, positions):
    # The tiled kernel forced onto decode-sized batches (partial row blocks, one position).
    rng = np.random.default_rng(n_tok)
    n_head, n_kv, hd = 8, 2, 128
    pos = np.array(positions, dtype=np.int32)
    n_ctx = int(pos.max()) + 1
    q = rng.standard_normal((n_tok, n_head, hd)).astype(np.float32)
    k = quant.f32_to_f16_bits(rng.standard_normal((n_ctx, n_kv * hd)).astype(np.float32))
    v = quant.f32_to_f16_bits(rng.standard_normal((n_ctx, n_kv * hd)).astype(np.float32))
    want = cpu_attention(q, k, v, pos, n_kv)
    assert_bits_equal(_core.cuda_ops_attention(q, k, v, pos, n_kv, 3), want, f"tiled attention positions={positions}")


@pytest.mark.parametrize("cache_f16", [False, True])
def test_attention_tiled_nonfinite(cache_f16):
    # NaN / inf in a few keys and values: NaN keys never win the max (except at position 0),
    # inf scores, NaN e_j; every row must match the CPU (NaN where the CPU has NaN).
    n_tok, n_head, n_kv, hd = 40, 8, 2, 128
    q, k, v, pos = _attn_case(n_tok, n_head, n_kv, hd, "from0", False, 4242)
    k[5, 3] = np.inf                 # kv head 0: +-inf score at key 5
    k[17, hd + 9] = np.nan           # kv head 1: NaN score at key 17
    k[0, 2 * hd - 1] = np.nan        # kv head 1: NaN s_0 (the CPU's max starts from it)
    v[11, 4] = np.inf
    v[29, hd + 100] = np.nan
    k[23, 7] = np.float32(3e38)      # finite but huge: inf partials
    if cache_f16:
        k, v = quant.f32_to_f16_bits(k), quant.f32_to_f16_bits(v)
    want = cpu_attention(q, k, v, pos, n_kv)
    assert np.isnan(want).any() and not np.isnan(want).all()
    for split in (0, 4):
        got = _core.cuda_ops_attention(q, k, v, pos, n_kv, split)
        assert_attention_equal(got, want, f"tiled attention with NaN/inf keys split={split} f16={cache_f16}")


def test_attention_tiled_peaked_scores():
    # Large scores: most e_j underflow to 0 (exp range limits) across several tiles.
    rng = np.random.default_rng(7)
    n_tok, n_head, n_kv, hd = 20, 8, 2, 128
    pos = (250 + np.arange(n_tok)).astype(np.int32)
    n_ctx = int(pos.max()) + 1
    q = (rng.standard_normal((n_tok, n_head, hd)) * 30).astype(np.float32)
    k = (rng.standard_normal((n_ctx, n_kv * hd)) * 30).astype(np.float32)
    v = rng.standard_normal((n_ctx, n_kv * hd)).astype(np.float32)
    want = cpu_attention(q, k, v, pos, n_kv)
    assert_bits_equal(_core.cuda_ops_attention(q, k, v, pos, n_kv, 0), want, "tiled attention, peaked scores")


def test_attention_bad_split():
    q = np.zeros((2, 2, 32), dtype=np.float32)
    k = np.zeros((4, 32), dtype=np.float32)
    with pytest.raises(ValueError, match="split"):
        _core.cuda_ops_attention(q, k, k, np.array([0, 1], dtype=np.int32), 1, 5)


# ---- router ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_tok,n_expert,k", [(1, 128, 8), (7, 128, 8), (3, 64, 4), (2, 8, 8), (4, 1000, 16),
                                              (2, 33, 1)])
def test_router(n_tok, n_expert, k):
    rng = np.random.default_rng(n_tok * 131 + n_expert + k)
    logits = (rng.standard_normal((n_tok, n_expert)) * 3).astype(np.float32)
    got_p, got_i, got_w = _core.cuda_ops_router(logits, k)
    want_p, want_i, want_w = cpu_router(logits, k)
    what = f"router n_tok={n_tok} n_expert={n_expert} k={k}"
    assert_bits_equal(got_p, want_p, what + " (probs)")
    assert_bits_equal(got_i, want_i, what + " (indices)")
    assert_bits_equal(got_w, want_w, what + " (weights)")


def test_router_ties():
    # Equal logits -> equal probabilities: the lower index must win, in order.
    logits = np.zeros((3, 128), dtype=np.float32)
    logits[1, [5, 9, 77, 100]] = 2.0
    logits[2, ::3] = 1.0
    got = _core.cuda_ops_router(logits, 8)
    want = cpu_router(logits, 8)
    assert_bits_equal(got[1], want[1], "router ties (indices)")
    assert_bits_equal(got[2], want[2], "router ties (weights)")
    assert list(got[1][0]) == list(range(8))
    assert list(got[1][2]) == list(range(0, 24, 3))


def test_router_nan_logit():
    # A NaN logit makes Z and so every probability NaN; the CPU order then takes the lowest
    # indices. Checks that the GPU reproduces the same (NaN-aware) selection, not a crash.
    logits = np.ones((2, 64), dtype=np.float32)
    logits[0, 10] = np.float32(np.nan)
    logits[1, 0] = np.float32(np.nan)
    got = _core.cuda_ops_router(logits, 4)
    want = cpu_router(logits, 4)
    assert_bits_equal(got[1], want[1], "router with a NaN logit (indices)")
    assert np.isnan(got[0]).all() and np.isnan(want[0]).all()


# ---- swiglu, moe-combine, add, embed -----------------------------------------------------------

@pytest.mark.parametrize("n", [1, 768, 8 * 768 * 3 + 5])
def test_swiglu(n):
    rng = np.random.default_rng(n)
    g = (rng.standard_normal(n) * 4).astype(np.float32)
    u = rng.standard_normal(n).astype(np.float32)
    if n >= 4:  # exp underflow / overflow ranges of silu, and signed zeros
        g[:4] = [-120.0, 95.0, 0.0, -0.0]
    got = _core.cuda_ops_swiglu(g, u)
    want = cpu_swiglu(g, u)
    assert_bits_equal(got, want, f"swiglu n={n}")


@pytest.mark.parametrize("n_tok,k,n", [(1, 8, 2048), (5, 8, 512), (3, 1, 100), (2, 16, 64)])
def test_moe_combine(n_tok, k, n):
    rng = np.random.default_rng(n_tok + k + n)
    y = rng.standard_normal((n_tok, k, n)).astype(np.float32)
    w = rng.dirichlet(np.ones(k), size=n_tok).astype(np.float32)
    res = rng.standard_normal((n_tok, n)).astype(np.float32)
    got_moe, got_out = _core.cuda_ops_moe_combine(y, w, res)
    want_moe, want_out = _core.cpu_ops_moe_combine(y, w, res)
    assert_bits_equal(got_moe, want_moe, f"moe_combine moe n_tok={n_tok} k={k} n={n}")
    assert_bits_equal(got_out, want_out, f"moe_combine out n_tok={n_tok} k={k} n={n}")


def test_add():
    rng = np.random.default_rng(0)
    a = _acts(rng, (3000,))
    b = _acts(rng, (3000,))
    assert_bits_equal(_core.cuda_ops_add(a, b), a + b, "add")


@pytest.mark.parametrize("typ", ALL_TYPES)
def test_embed(typ):
    rng = np.random.default_rng(len(typ))
    n_vocab, n = 50, 512
    table = _weights(rng, typ, n_vocab, n, random_blocks=True)
    tokens = np.array([0, 49, 7, 7, 23], dtype=np.int32)
    got = _core.cuda_ops_embed(quant.type_id(typ), table, n, tokens)
    want = quant.dequantize(table, typ, (n_vocab, n))[tokens]
    assert_bits_equal(got, want, f"embed {typ}")
    with pytest.raises(IndexError):
        _core.cuda_ops_embed(quant.type_id(typ), table, n, np.array([n_vocab], dtype=np.int32))
