"""Exact NumPy re-implementations of the canonical arithmetic (cpp/ops/canon.h and the op
rules in cpp/ops/*.h), used by the tests to check the C++ ops bit for bit.

float32 arithmetic in NumPy is IEEE binary32 (no contraction). The one operation NumPy lacks,
fused multiply-add, is emulated exactly: the product of two float32 values is exact in float64,
the float64 sum is corrected with TwoSum, and the rare float32 rounding ties are resolved with
the sign of the TwoSum error term.
"""
from __future__ import annotations

import math

import numpy as np

F32 = np.float32
LANES = 32
ATTN_TILE = 128


def fma(a, b, c) -> np.ndarray:
    """Correctly rounded float32 a*b + c (elementwise, broadcasting)."""
    a64 = np.asarray(a, dtype=F32).astype(np.float64)
    b64 = np.asarray(b, dtype=F32).astype(np.float64)
    c64 = np.asarray(c, dtype=F32).astype(np.float64)
    p = a64 * b64  # exact: 24 + 24 bits
    with np.errstate(invalid="ignore", over="ignore"):
        s = p + c64
        bb = s - p
        err = (p - (s - bb)) + (c64 - bb)  # s + err == p + c exactly
        r = s.astype(F32)
        diff = s - r.astype(np.float64)
        toward = np.where(diff > 0, F32(np.inf), F32(-np.inf)).astype(F32)
        other = np.nextafter(r, toward)
        half = np.abs(other.astype(np.float64) - r.astype(np.float64)) / 2
        tie = (diff != 0) & (np.abs(diff) == half) & (err != 0)
        # at a float32 tie, the exact value lies on the side of err
        go_other = tie & (np.sign(err) == np.sign(diff))
        r = np.where(go_other, other, r)  # otherwise r: not a tie, a true tie, or err toward r
    return r.astype(F32)


def tree32(p: np.ndarray) -> F32:
    p = p.astype(F32).copy()
    s = LANES // 2
    while s >= 1:
        p[:s] = p[:s] + p[s : 2 * s]
        s //= 2
    return F32(p[0])


def canon_dot(a, b) -> F32:
    a = np.asarray(a, dtype=F32).ravel()
    b = np.asarray(b, dtype=F32).ravel()
    n = a.size
    m = -(-n // LANES)
    pa = np.zeros(m * LANES, F32)
    pb = np.zeros(m * LANES, F32)
    pa[:n] = a
    pb[:n] = b
    pa = pa.reshape(m, LANES)
    pb = pb.reshape(m, LANES)
    acc = np.zeros(LANES, F32)
    for i in range(m):
        # padded elements are 0*0: fma(0, 0, acc) == acc (acc never -0.0 problematic: +0 start)
        acc = fma(pa[i], pb[i], acc)
    return tree32(acc)


def canon_sum(a) -> F32:
    """32-lane rule with +; padding with +0.0 is exact (a lane started at +0.0 is never -0.0)."""
    a = np.asarray(a, dtype=F32).ravel()
    n = a.size
    m = -(-n // LANES)
    pa = np.zeros(m * LANES, F32)
    pa[:n] = a
    pa = pa.reshape(m, LANES)
    acc = np.zeros(LANES, F32)
    for i in range(m):
        acc = (acc + pa[i]).astype(F32)
    return tree32(acc)


def canon_exp(x) -> np.ndarray:
    """canon_exp elementwise (vectorised; same operation sequence as ops/canon.h)."""
    x = np.asarray(x, dtype=F32)
    shape = x.shape
    x = x.ravel()
    with np.errstate(over="ignore", invalid="ignore"):
        xc = np.clip(x, F32(-103.972076416015625), F32(88.72283935546875)).astype(F32)
        n = np.rint((xc * F32(1.44269502162933349609375)).astype(F32)).astype(F32)
        r = fma(n, F32(-0.693145751953125), xc)
        r = fma(n, F32(-1.428606765330187045e-06), r)
        p = np.full(x.shape, F32(1.98412698e-4), F32)
        for c in (1.38888889e-3, 8.33333333e-3, 4.16666667e-2, 1.66666667e-1, 0.5, 1.0, 1.0):
            p = fma(p, r, F32(c))
        ni = n.astype(np.int64)
        hi = ni > 127
        p = np.where(hi, (p * F32(2.0)).astype(F32), p)
        ni = np.where(hi, ni - 1, ni)
        lo = ni < -126
        p = np.where(lo, (p * F32(5.42101086242752217e-20)).astype(F32), p)
        ni = np.where(lo, ni + 64, ni)
        scale = ((ni + 127).astype(np.uint32) << np.uint32(23)).view(F32)
        out = (p * scale).astype(F32)
        out = np.where(x > F32(88.72283935546875), F32(np.inf), out)
        out = np.where(x < F32(-103.972076416015625), F32(0.0), out)
        out = np.where(np.isnan(x), x, out).astype(F32)
    return out.reshape(shape)


def canon_silu(x) -> np.ndarray:
    x = np.asarray(x, dtype=F32)
    return (x / (F32(1.0) + canon_exp(-x))).astype(F32)


def rms_norm(x, w, eps) -> np.ndarray:
    x = np.asarray(x, dtype=F32)
    w = np.asarray(w, dtype=F32)
    ss = canon_dot(x, x)
    mean = F32(ss / F32(x.size))
    sc = F32(F32(1.0) / np.sqrt(F32(mean + F32(eps))))
    return ((x * sc) * w).astype(F32)


def rope_table(n_pos: int, hd: int, base: float) -> np.ndarray:
    """[2, n_pos, hd/2]: theta = pos * pow(base, -2.0*i/hd) in double (libm), rounded."""
    half = hd // 2
    out = np.zeros((2, n_pos, half), F32)
    inv = [math.pow(base, -2.0 * i / hd) for i in range(half)]
    for p in range(n_pos):
        for i in range(half):
            th = float(p) * inv[i]
            out[0, p, i] = math.cos(th)
            out[1, p, i] = math.sin(th)
    return out


def rope_neox(x, c, s) -> np.ndarray:
    x = np.asarray(x, dtype=F32)
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    y = np.empty_like(x)
    y[..., :h] = fma(a, c, -(b * s))
    y[..., h:] = fma(a, s, b * c)
    return y


def attention_head(q, k, v) -> np.ndarray:
    """q [hd]; k, v [n_kv, hd] float32 (already converted from f16 if the cache is f16)."""
    q = np.asarray(q, dtype=F32)
    hd = q.size
    scale = F32(F32(1.0) / np.sqrt(F32(hd)))
    n_kv = k.shape[0]
    s = np.array([F32(canon_dot(q, k[t]) * scale) for t in range(n_kv)], dtype=F32)
    m = s.max()
    e = canon_exp(s - m)
    Z = F32(0.0)
    A = np.zeros(hd, F32)
    for t0 in range(0, n_kv, ATTN_TILE):
        z = F32(0.0)
        a = np.zeros(hd, F32)
        for t in range(t0, min(t0 + ATTN_TILE, n_kv)):
            z = F32(z + e[t])
            a = fma(e[t], v[t], a)
        Z = F32(Z + z)
        A = (A + a).astype(F32)
    return (A / Z).astype(F32)


def softmax(l) -> np.ndarray:
    l = np.asarray(l, dtype=F32)
    e = canon_exp(l - l.max())
    z = canon_sum(e)
    return (e / z).astype(F32)


def router_topk(p, k):
    p = np.asarray(p, dtype=F32)
    order = np.lexsort((np.arange(p.size), -p.astype(np.float64)))[:k]
    S = F32(0.0)
    for i in order:
        S = F32(S + p[i])
    w = (p[order] / S).astype(F32)
    return order.astype(np.int32), w


def swiglu(g, u) -> np.ndarray:
    return (canon_silu(g) * np.asarray(u, dtype=F32)).astype(F32)


# ---- sampler ----------------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def rng_uniform(seed: int, counter: int) -> F32:
    x = _splitmix64(seed + (counter + 1) * 0x9E3779B97F4A7C15)
    return F32(F32(x >> 40) * F32(2.0**-24))


def sample(logits, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, seed=0, counter=0) -> int:
    l = np.asarray(logits, dtype=F32)
    ok = ~np.isnan(l)
    if not temperature > 0:
        cand = np.where(ok)[0]
        if cand.size == 0:
            return 0
        best = cand[0]
        for i in cand:
            if l[i] > l[best]:
                best = i
        return int(best)
    T = F32(temperature)
    ids = np.where(ok)[0]
    s = (l[ids] / T).astype(F32)
    order = np.lexsort((ids, -s.astype(np.float64)))
    ids, s = ids[order], s[order]
    if top_k > 0:
        ids, s = ids[:top_k], s[:top_k]
    mx = s[0]
    e = canon_exp(s - mx)
    Z = F32(0.0)
    for v in e:
        Z = F32(Z + v)
    p = (e / Z).astype(F32)
    n = p.size
    if min_p > 0:
        cut = F32(F32(min_p) * p[0])
        keep = 1
        while keep < n and not (p[keep] < cut):
            keep += 1
        n = keep
    if top_p < 1:
        c = F32(0.0)
        keep = n
        for j in range(n):
            c = F32(c + p[j])
            if c >= F32(top_p):
                keep = j + 1
                break
        n = keep
    z2 = F32(0.0)
    for j in range(n):
        z2 = F32(z2 + p[j])
    target = F32(rng_uniform(seed, counter) * z2)
    c = F32(0.0)
    last = int(ids[0])
    for j in range(n):
        c = F32(c + p[j])
        if p[j] > 0:
            last = int(ids[j])
        if target < c:
            return int(ids[j])
    return last
