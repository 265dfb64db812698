"""A float64 NumPy reference of the qwen3moe forward (independent of the engine: weights are
read and dequantised with PyPI `gguf`), returning every capture stage. Used by the tests to
check the f32 mode against float64 math, and by the HF oracle test to cross-check the oracle.
"""
from __future__ import annotations

import numpy as np


def load_weights(path) -> tuple[dict, dict]:
    """(hparams, {tensor name: float64 array in NumPy order, i.e. shape reversed from ne})."""
    import gguf
    from gguf.quants import dequantize

    r = gguf.GGUFReader(str(path))
    meta = {}
    for name, f in r.fields.items():
        if name.startswith("qwen3moe."):
            meta[name[len("qwen3moe."):]] = f.contents()
    w = {}
    for t in r.tensors:
        arr = dequantize(t.data, t.tensor_type)
        shape = tuple(int(x) for x in reversed(list(t.shape)))
        w[t.name] = np.asarray(arr, dtype=np.float64).reshape(shape)
    hp = dict(
        n_layer=int(meta["block_count"]),
        n_embd=int(meta["embedding_length"]),
        n_head=int(meta["attention.head_count"]),
        n_head_kv=int(meta["attention.head_count_kv"]),
        head_dim=int(meta.get("attention.key_length", int(meta["embedding_length"]) // int(meta["attention.head_count"]))),
        n_expert=int(meta["expert_count"]),
        n_expert_used=int(meta["expert_used_count"]),
        n_ff_exp=int(meta["expert_feed_forward_length"]),
        rope_freq_base=float(meta.get("rope.freq_base", 10000.0)),
        rms_eps=float(meta["attention.layer_norm_rms_epsilon"]),
    )
    return hp, w


def _rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def forward(hp: dict, w: dict, tokens) -> dict:
    """All stages for a prompt at positions 0..T-1: {(stage, layer): array}; float64."""
    T = len(tokens)
    E, H, HKV, HD = hp["n_embd"], hp["n_head"], hp["n_head_kv"], hp["head_dim"]
    K, eps = hp["n_expert_used"], np.float64(np.float32(hp["rms_eps"]))
    half = HD // 2
    inv = np.float64(np.float32(hp["rope_freq_base"])) ** (-2.0 * np.arange(half) / HD)
    theta = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(theta), np.sin(theta)

    def rope(x):  # x [T, heads, HD]
        a, b = x[..., :half], x[..., half:]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)

    out = {}
    x = w["token_embd.weight"][np.asarray(tokens)]
    out[("embed", None)] = x
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for il in range(hp["n_layer"]):
        b = f"blk.{il}."
        h = _rms(x, w[b + "attn_norm.weight"], eps)
        q = h @ w[b + "attn_q.weight"].T
        k = h @ w[b + "attn_k.weight"].T
        v = h @ w[b + "attn_v.weight"].T
        qn = _rms(q.reshape(T, H, HD), w[b + "attn_q_norm.weight"], eps)
        kn = _rms(k.reshape(T, HKV, HD), w[b + "attn_k_norm.weight"], eps)
        qr, kr = rope(qn), rope(kn)
        g = H // HKV
        att = np.empty((T, H, HD))
        vv = v.reshape(T, HKV, HD)
        for hh in range(H):
            s = qr[:, hh, :] @ kr[:, hh // g, :].T / np.sqrt(HD) + mask
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            att[:, hh, :] = p @ vv[:, hh // g, :]
        att = att.reshape(T, H * HD)
        proj = att @ w[b + "attn_output.weight"].T
        ffn_inp = x + proj
        fn = _rms(ffn_inp, w[b + "ffn_norm.weight"], eps)
        logits = fn @ w[b + "ffn_gate_inp.weight"].T
        pr = np.exp(logits - logits.max(axis=1, keepdims=True))
        pr /= pr.sum(axis=1, keepdims=True)
        idx = np.stack([np.lexsort((np.arange(pr.shape[1]), -pr[t]))[:K] for t in range(T)])
        wts = np.take_along_axis(pr, idx, 1)
        wts = wts / wts.sum(axis=1, keepdims=True)
        gate = np.empty((T, K, hp["n_ff_exp"]))
        up = np.empty_like(gate)
        eo = np.empty((T, K, E))
        for t in range(T):
            for r in range(K):
                e = idx[t, r]
                gate[t, r] = w[b + "ffn_gate_exps.weight"][e] @ fn[t]
                up[t, r] = w[b + "ffn_up_exps.weight"][e] @ fn[t]
        sw = gate / (1 + np.exp(-gate)) * up
        for t in range(T):
            for r in range(K):
                eo[t, r] = w[b + "ffn_down_exps.weight"][idx[t, r]] @ sw[t, r]
        moe = np.einsum("tk,tkd->td", wts, eo)
        x = ffn_inp + moe
        for name, val in [("attn_norm", h), ("q", q), ("k", k), ("v", v), ("q_normed", qn.reshape(T, -1)),
                          ("k_normed", kn.reshape(T, -1)), ("q_rope", qr.reshape(T, -1)), ("k_rope", kr.reshape(T, -1)),
                          ("attn_out", att), ("attn_proj", proj), ("ffn_inp", ffn_inp), ("ffn_norm", fn),
                          ("moe_router_logits", logits), ("moe_router_probs", pr), ("moe_router_indices", idx),
                          ("moe_router_weights", wts), ("moe_expert_gate", gate), ("moe_expert_up", up),
                          ("moe_expert_swiglu", sw), ("moe_expert_out", eo), ("moe_ffn_out", moe), ("layer_out", x)]:
            out[(name, il)] = val
    fin = _rms(x, w["output_norm.weight"], eps)
    out[("final_norm", None)] = fin
    outw = w.get("output.weight", w["token_embd.weight"])
    out[("logits", None)] = fin @ outw.T
    return out
