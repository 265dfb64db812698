"""Per-op tests of the CPU engine (qwen3moe._core.ops): each op against a float64 NumPy
reference (tolerance) and against an exact NumPy re-implementation of its canonical order
(canon_numpy.py): RMSNorm, RoPE (tables and rotation), attention (tile rule, f32 and f16
caches), softmax, router top-k ties and weights, SwiGLU, exp, the matvec rule, embedding,
the sampler, and the thread pool's partition."""
from __future__ import annotations

import numpy as np
import pytest

import canon_numpy as cn
from qwen3moe import _core

ops = _core.ops
F32 = np.float32
RNG = np.random.default_rng(1234)


def bits(a):
    a = np.ascontiguousarray(a, dtype=F32)
    return a.view(np.uint32)


def assert_bits(a, b, what=""):
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    assert a.shape == b.shape, what
    diff = np.nonzero(bits(a) != bits(b))[0] if a.ndim <= 1 else np.argwhere(bits(a) != bits(b))
    assert len(diff) == 0, f"{what}: {len(diff)} values differ, first at {diff[0]}: {a.flat[0] if False else ''}"


def rel_err(a, ref):
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(a - ref)) / max(np.max(np.abs(ref)), 1e-30))


# ---- exp / silu ---------------------------------------------------------------------------


def test_canon_exp_exact_and_accurate():
    x = np.concatenate([RNG.uniform(-110, 90, 4000), [0.0, -0.0, 88.7, -103.9, -104.0, 89.0, -1e-8, 1e-8]]).astype(F32)
    got = ops.canon_exp(x)
    assert_bits(got, cn.canon_exp(x), "canon_exp")
    ref = np.exp(x.astype(np.float64))
    ok = (ref > 1.2e-38) & (ref < 3.0e38)
    rel = np.abs(got[ok] - ref[ok]) / ref[ok]
    assert rel.max() < 4e-7
    assert got[x == F32(89.0)][0] == np.inf and got[x == F32(-104.0)][0] == 0.0


# ---- RMSNorm ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 31, 64, 128, 1000, 2048])
def test_rms_norm(n):
    x = (RNG.standard_normal(n) * RNG.uniform(0.01, 10)).astype(F32)
    w = RNG.uniform(0.5, 1.5, n).astype(F32)
    eps = 1e-6
    got = ops.rms_norm(x, w, eps)
    assert_bits(got, cn.rms_norm(x, w, eps), f"rms_norm n={n}")
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt(np.mean(x64 * x64) + eps) * w
    assert rel_err(got, ref) < 2e-6


def test_rms_norm_zero_vector():
    got = ops.rms_norm(np.zeros(64, F32), np.ones(64, F32), 1e-6)
    assert np.all(got == 0)


# ---- RoPE ---------------------------------------------------------------------------------


def test_rope_table_exact():
    t = ops.rope_table(40, 16, 1e6)
    assert t.shape == (2, 40, 8)
    assert_bits(t, cn.rope_table(40, 16, 1e6), "rope table")
    # float64 definition
    i = np.arange(8)
    theta = np.arange(40)[:, None] * (1e6 ** (-2.0 * i / 16))[None, :]
    assert np.max(np.abs(t[0] - np.cos(theta))) < 1e-7 and np.max(np.abs(t[1] - np.sin(theta))) < 1e-7


@pytest.mark.parametrize("hd", [2, 16, 128])
def test_rope_neox(hd):
    t = ops.rope_table(300, hd, 1e7)
    x = RNG.standard_normal((4, hd)).astype(F32)
    for pos in [0, 1, 7, 299]:
        c, s = t[0, pos], t[1, pos]
        got = ops.rope_neox(x, c, s)
        assert_bits(got, cn.rope_neox(x, c, s), f"rope hd={hd} pos={pos}")
        h = hd // 2
        x64 = x.astype(np.float64)
        th = pos * (1e7 ** (-2.0 * np.arange(h) / hd))
        ref = np.concatenate([x64[:, :h] * np.cos(th) - x64[:, h:] * np.sin(th),
                              x64[:, :h] * np.sin(th) + x64[:, h:] * np.cos(th)], axis=1)
        assert np.max(np.abs(got - ref)) < 1e-5
    assert_bits(ops.rope_neox(x, t[0, 0], t[1, 0]), x, "rope at position 0 is the identity")


# ---- attention ----------------------------------------------------------------------------


def _attn_ref64(q, k, v):
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    s = k @ q / np.sqrt(q.size)
    e = np.exp(s - s.max())
    return (e / e.sum()) @ v


@pytest.mark.parametrize("n_kv", [1, 2, 127, 128, 129, 300])
def test_attention_f32_cache(n_kv):
    hd = 32
    q = RNG.standard_normal(hd).astype(F32)
    k = RNG.standard_normal((n_kv, hd)).astype(F32)
    v = RNG.standard_normal((n_kv, hd)).astype(F32)
    got = ops.attention_head(q, k, v)
    assert_bits(got, cn.attention_head(q, k, v), f"attention n_kv={n_kv}")
    assert np.max(np.abs(got - _attn_ref64(q, k, v))) < 2e-6
    if n_kv == 1:
        assert_bits(got, v[0], "one key: the output is V")


@pytest.mark.parametrize("n_kv", [5, 200])
def test_attention_f16_cache(n_kv):
    hd = 16
    q = RNG.standard_normal(hd).astype(F32)
    k = RNG.standard_normal((n_kv, hd)).astype(np.float16)
    v = RNG.standard_normal((n_kv, hd)).astype(np.float16)
    got = ops.attention_head(q, k.view(np.uint16), v.view(np.uint16))
    assert_bits(got, cn.attention_head(q, k.astype(F32), v.astype(F32)), "attention f16")
    assert np.max(np.abs(got - _attn_ref64(q, k.astype(F32), v.astype(F32)))) < 2e-6


def test_attention_kq_scale():
    for hd in (64, 128, 96):
        assert ops.attention_kq_scale(hd) == F32(F32(1.0) / np.sqrt(F32(hd)))


# ---- softmax / router ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 8, 33, 128])
def test_softmax(n):
    l = (RNG.standard_normal(n) * 3).astype(F32)
    got = ops.softmax(l)
    assert_bits(got, cn.softmax(l), "softmax")
    e = np.exp(l.astype(np.float64) - l.max())
    assert rel_err(got, e / e.sum()) < 1e-6


def test_router_topk_ties_lower_index_first():
    p = np.array([0.1, 0.3, 0.05, 0.3, 0.2, 0.3, 0.05], F32)
    idx, w = ops.router_topk(p, 4)
    assert idx.tolist() == [1, 3, 5, 4]
    ref_idx, ref_w = cn.router_topk(p, 4)
    assert idx.tolist() == ref_idx.tolist()
    assert_bits(w, ref_w, "router weights")
    idx, _ = ops.router_topk(np.full(16, 1 / 16, F32), 5)
    assert idx.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n,k", [(128, 8), (1000, 64), (4096, 16), (5000, 12)])
def test_router_topk_many_experts_and_ties(n, k):
    # Up to 4096 experts take the bitmap of picked experts, more the scan of the picked ranks:
    # both must give the reference order (descending p, ties to the lower index).
    for _ in range(3):
        p = RNG.integers(0, 6, n).astype(F32) / F32(8)  # few distinct values: many ties
        idx, w = ops.router_topk(p, k)
        ref_idx, ref_w = cn.router_topk(p, k)
        assert idx.tolist() == ref_idx.tolist()
        assert_bits(w, ref_w, "router weights")


@pytest.mark.parametrize("n,k", [(16, 4), (128, 8), (8, 8), (5, 1)])
def test_moe_router(n, k):
    for _ in range(5):
        l = (RNG.standard_normal(n) * 2).astype(F32)
        l[RNG.integers(0, n, 3)] = l[0]  # ties
        p, idx, w = ops.moe_router(l, k)
        assert_bits(p, cn.softmax(l), "router probs")
        ref_idx, ref_w = cn.router_topk(p, k)
        assert idx.tolist() == ref_idx.tolist()
        assert_bits(w, ref_w, "router weights")
        p64 = np.exp(l - l.max()).astype(np.float64)
        p64 /= p64.sum()
        assert abs(float(w.astype(np.float64).sum()) - 1.0) < 1e-6
        assert np.all(np.diff(p[idx]) <= 0)


# ---- SwiGLU -------------------------------------------------------------------------------


def test_swiglu():
    g = (RNG.standard_normal(777) * 4).astype(F32)
    u = RNG.standard_normal(777).astype(F32)
    got = ops.swiglu(g, u)
    assert_bits(got, cn.swiglu(g, u), "swiglu")
    g64 = g.astype(np.float64)
    ref = g64 / (1 + np.exp(-g64)) * u
    assert np.max(np.abs(got - ref)) < 1e-5


# ---- matvec rule --------------------------------------------------------------------------


def _quantize(type_name, w):
    gq = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType as Q

    qt = getattr(Q, type_name)
    data = gq.quantize(w, qt)
    return int(qt), np.ascontiguousarray(data.reshape(w.shape[0], -1)), gq.dequantize(data, qt).astype(F32)


def test_matvec_f32_weights_exact():
    w = RNG.standard_normal((37, 300)).astype(F32)
    x = RNG.standard_normal((3, 300)).astype(F32)
    raw = w.view(np.uint8).reshape(37, -1)
    for mode in ("q8", "f32"):  # float weights use vec_dot_f32act in both modes
        y = ops.matvec(0, raw, 300, x, mode=mode)
        ref = np.array([[cn.canon_dot(w[r], x[t]) for r in range(37)] for t in range(3)], F32)
        assert_bits(y, ref, f"F32 matvec {mode}")


def test_matvec_f16_weights_exact():
    w = RNG.standard_normal((20, 256)).astype(np.float16)
    x = RNG.standard_normal((2, 256)).astype(F32)
    y = ops.matvec(1, w.view(np.uint8).reshape(20, -1), 256, x, mode="q8", threads=2)
    wf = w.astype(F32)
    ref = np.array([[cn.canon_dot(wf[r], x[t]) for r in range(20)] for t in range(2)], F32)
    assert_bits(y, ref, "F16 matvec")


@pytest.mark.parametrize("type_name", ["Q8_0", "Q4_0"])
def test_matvec_quantised(type_name):
    n_rows, n = 64, 512
    w = (RNG.standard_normal((n_rows, n)) * 0.05).astype(F32)
    x = RNG.standard_normal((5, n)).astype(F32)
    t, raw, wd = _quantize(type_name, w)
    ref64 = x.astype(np.float64) @ wd.astype(np.float64).T
    # f32 mode: exactly canon_dot(dequantised row, x)
    y32 = ops.matvec(t, raw, n, x, mode="f32")
    ref = np.array([[cn.canon_dot(wd[r], x[k]) for r in range(n_rows)] for k in range(5)], F32)
    assert_bits(y32, ref, "f32 mode = canon_dot(dequantised, x)")
    assert_bits(ops.matvec(t, raw, n, x, mode="f32", single=True), y32, "f32 single == multi")
    # q8 mode: close to float64, and independent of threads and of multi-token reuse
    y8 = ops.matvec(t, raw, n, x, mode="q8", threads=1)
    scale = np.abs(ref64).max()
    assert np.max(np.abs(y8 - ref64)) < 0.02 * scale
    for threads in (2, 3, 4):
        assert_bits(ops.matvec(t, raw, n, x, mode="q8", threads=threads), y8, f"q8 threads={threads}")
    assert_bits(ops.matvec(t, raw, n, x, mode="q8", single=True), y8, "q8 single == multi")
    for k in range(5):  # batch invariance: one token alone gives the same bits
        assert_bits(ops.matvec(t, raw, n, x[k : k + 1], mode="q8")[0], y8[k], f"q8 token {k} alone")


def test_embed_is_dequantised_row():
    w = (RNG.standard_normal((10, 256)) * 0.1).astype(F32)
    t, raw, wd = _quantize("Q8_0", w)
    for tok in (0, 3, 9):
        assert_bits(ops.embed(t, raw, 256, tok), wd[tok], f"embed {tok}")
    assert_bits(ops.embed(0, w.view(np.uint8).reshape(10, -1), 256, 4), w[4], "embed F32")


# ---- sampler ------------------------------------------------------------------------------


def test_greedy_ties_lowest_id():
    l = np.array([0.5, 2.0, -1.0, 2.0, np.nan, 2.0], F32)
    assert ops.sample(l) == 1
    assert cn.sample(l) == 1
    assert ops.sample(np.array([np.nan, np.nan], F32)) == 0


def test_rng_uniform_matches_definition():
    for seed in (0, 1, 42, 2**63 + 5):
        for c in range(50):
            u = ops.rng_uniform(seed, c)
            assert 0.0 <= u < 1.0
            assert F32(u) == cn.rng_uniform(seed, c)


@pytest.mark.parametrize(
    "params",
    [
        dict(temperature=1.0),
        dict(temperature=0.7, top_k=40),
        dict(temperature=1.3, top_p=0.9),
        dict(temperature=0.9, min_p=0.05),
        dict(temperature=1.0, top_k=10, top_p=0.8, min_p=0.02),
        dict(temperature=2.0, top_k=1),
    ],
)
def test_sampler_matches_definition(params):
    l = (RNG.standard_normal(500) * 3).astype(F32)
    l[[10, 20, 30]] = l.max()  # ties at the top
    draws = []
    for seed in (0, 7):
        for c in range(30):
            got = ops.sample(l, seed=seed, counter=c, **params)
            assert got == cn.sample(l, seed=seed, counter=c, **params), (seed, c)
            draws.append(got)
    if params.get("top_k") == 1:
        assert set(draws) == {10}
    else:
        assert len(set(draws)) > 1


def test_sampler_deterministic_and_seeded():
    l = (RNG.standard_normal(1000)).astype(F32)
    a = [ops.sample(l, temperature=1.0, seed=3, counter=c) for c in range(40)]
    b = [ops.sample(l, temperature=1.0, seed=3, counter=c) for c in range(40)]
    d = [ops.sample(l, temperature=1.0, seed=4, counter=c) for c in range(40)]
    assert a == b and a != d


def test_sampler_distribution():
    l = np.log(np.array([0.5, 0.25, 0.125, 0.125], F32))
    draws = np.array([ops.sample(l, temperature=1.0, seed=9, counter=c) for c in range(4000)])
    freq = np.bincount(draws, minlength=4) / draws.size
    assert np.max(np.abs(freq - [0.5, 0.25, 0.125, 0.125])) < 0.03


@pytest.mark.parametrize("bad", [dict(top_p=0.0), dict(top_p=1.5), dict(min_p=-0.1), dict(top_k=-1)])
def test_sampler_bad_params(bad):
    with pytest.raises(ValueError):
        ops.sample(np.zeros(4, F32), temperature=1.0, **bad)


# ---- thread pool --------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_thread_pool_covers_each_index_once(threads):
    for n in (0, 1, 2, 5, 7, 100, 1001):
        hits = ops.thread_pool_sum(threads, n)
        assert hits.shape == (n,) and np.all(hits == 1)
