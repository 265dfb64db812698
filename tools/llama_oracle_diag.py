"""Diagnose q8 mode against llama.cpp on a synthetic Q4_K_M model, stage by stage.

Design: writes `preset` at `seed` (Q4_K_M), runs the prompts of tests_py/test_llama_oracle.py
through our engine (q8 and f32 modes, all captures) and through PyPI llama-cpp-python (CPU, the
same settings as the test), and prints what decides whether the two agree:
  - logits: min per-position cosine and argmax agreement for q8-llama, f32-llama, q8-f32;
  - routing: router rows whose expert set differs (q8 vs f32 from our captures; q8 vs llama.cpp
    from llama.cpp's `ffn_moe_topk-N` tensors, read through its graph eval callback) and the
    share of rows whose top-k probability gap (p_k - p_k+1) / p_k is below 1%;
  - per layer: residual RMS, update norms relative to the residual (attn_proj, moe_ffn_out),
    min per-token cosine of layer_out against llama.cpp's `l_out-N`.
Usage: PYTHONPATH=python python3 tools/llama_oracle_diag.py [preset[:seed] ...]  (default small:11)
The eval-callback reader assumes ggml's tensor layout (type at 0, ne at 16, nb at 48), as in
ggml 0.9.x shipped with llama-cpp-python 0.3.x; it is a diagnostic, not a test.
"""
from __future__ import annotations

import ctypes
import os
import sys
import tempfile

import numpy as np

import qwen3moe
from qwen3moe.testing import write_model

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests_py"))
from test_llama_oracle import PROMPTS  # noqa: E402

_WANTED = ("ffn_moe_topk", "l_out")  # llama.cpp graph tensor names (suffix -<layer>)
_DTYPES = {0: np.float32, 1: np.float16, 26: np.int32}  # ggml_type -> NumPy


def _llama_with_captures(path: str):
    """A llama_cpp.Llama on `path` whose graph tensors named in _WANTED land in the returned dict
    {name: [arrays, one per evaluated ubatch]}."""
    import llama_cpp
    from llama_cpp import _internals

    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    lib.ggml_get_name.restype = ctypes.c_char_p
    lib.ggml_get_name.argtypes = [ctypes.c_void_p]
    lib.ggml_nbytes.restype = ctypes.c_size_t
    lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    caps: dict[str, list[np.ndarray]] = {}

    @llama_cpp.ggml_backend_sched_eval_callback
    def on_eval(t, ask, _user):
        name = lib.ggml_get_name(t).decode()
        if name.split("-")[0] not in _WANTED or ask:
            return True
        dt = _DTYPES.get(ctypes.c_int.from_address(t).value)
        if dt is None:
            return True
        ne = [ctypes.c_int64.from_address(t + 16 + 8 * i).value for i in range(4)]
        nb = [ctypes.c_size_t.from_address(t + 48 + 8 * i).value for i in range(4)]
        n = lib.ggml_nbytes(t)
        buf = (ctypes.c_char * n)()
        lib.ggml_backend_tensor_get(t, buf, 0, n)
        raw = np.frombuffer(buf, dtype=np.uint8)
        isz = np.dtype(dt).itemsize
        view = np.lib.stride_tricks.as_strided(raw, shape=(ne[3] * ne[2] * ne[1], ne[0], isz),
                                               strides=(nb[1], nb[0], 1))
        caps.setdefault(name, []).append(view.copy().view(dt)[..., 0])
        return True

    orig = _internals.LlamaContext.__init__

    def init(self, *args, **kwargs):
        params = kwargs["params"] if "params" in kwargs else args[1]
        params.cb_eval = on_eval
        return orig(self, *args, **kwargs)

    _internals.LlamaContext.__init__ = init
    try:
        llm = llama_cpp.Llama(model_path=path, n_ctx=256, logits_all=True, n_threads=2, n_gpu_layers=0,
                              verbose=False, seed=0)
    finally:
        _internals.LlamaContext.__init__ = orig
    llm._qwen3moe_keepalive = on_eval  # the C side holds only a pointer
    return llm, caps


def _rowcos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def diagnose(preset: str = "small", seed: int = 11) -> dict:
    """Print and return the diagnosis of one synthetic model (see the module docstring)."""
    path = os.path.join(tempfile.mkdtemp(prefix="qwen3moe-diag-"), f"{preset}-{seed}.gguf")
    write_model(path, preset, seed=seed, types="Q4_K_M")
    m8 = qwen3moe.load(path, activations="q8", n_ctx=256)
    m32 = qwen3moe.load(path, activations="f32", n_ctx=256)
    llm, caps = _llama_with_captures(path)
    n_layer, k = m8.config["n_layer"], m8.config["n_expert_used"]
    acc: dict = {}

    def add(key, v):
        acc.setdefault(key, []).append(np.asarray(v))

    for prompt in PROMPTS:
        toks = m8.tokenize(prompt)
        m8.reset()
        m32.reset()
        a = m8.forward(toks, capture="all", logits="all")
        b = m32.forward(toks, capture="all", logits="all")
        caps.clear()
        llm.reset()
        llm.eval(toks)
        th = np.array(llm.scores[: len(toks)], dtype=np.float32)
        add("cos q8-llama", _rowcos(a.logits, th))
        add("cos f32-llama", _rowcos(b.logits, th))
        add("cos q8-f32", _rowcos(a.logits, b.logits))
        add("argmax q8-llama", a.logits.argmax(1) == th.argmax(1))
        add("argmax f32-llama", b.logits.argmax(1) == th.argmax(1))
        add("argmax q8-f32", a.logits.argmax(1) == b.logits.argmax(1))
        ca, cb = a.captures, b.captures
        for layer in range(n_layer):
            mine = np.sort(ca["moe_router_indices", layer], 1)
            add(("flip q8-f32", layer), (mine != np.sort(cb["moe_router_indices", layer], 1)).any(1))
            theirs = np.sort(np.concatenate(caps[f"ffn_moe_topk-{layer}"]), 1)
            add(("flip q8-llama", layer), (mine != theirs).any(1))
            p = -np.sort(-ca["moe_router_probs", layer], 1)
            add(("gap", layer), (p[:, k - 1] - p[:, k]) / p[:, k - 1])
            x_in = cb["embed"] if layer == 0 else cb["layer_out", layer - 1]
            add(("rms", layer), np.sqrt(np.mean(x_in.astype(np.float64) ** 2, 1)))
            add(("upd attn", layer), np.linalg.norm(cb["attn_proj", layer], axis=1) / np.linalg.norm(x_in, axis=1))
            add(("upd moe", layer), np.linalg.norm(cb["moe_ffn_out", layer], axis=1)
                / np.linalg.norm(cb["ffn_inp", layer], axis=1))
            add(("l_out cos", layer), _rowcos(ca["layer_out", layer], np.concatenate(caps[f"l_out-{layer}"])))
    r = {key: np.concatenate(v) for key, v in acc.items()}
    n = r["cos q8-llama"].size
    rows = n * n_layer
    out = {"preset": preset, "seed": seed, "positions": n}
    print(f"{preset} seed {seed}: {n} positions, {rows} router rows")
    for pair in ("q8-llama", "f32-llama", "q8-f32"):
        out[f"min cos {pair}"] = float(r[f"cos {pair}"].min())
        out[f"argmax {pair}"] = int(r[f"argmax {pair}"].sum())
        print(f"  logits {pair:10s} min cos {out[f'min cos {pair}']:.6f}  argmax agreement {out[f'argmax {pair}']}/{n}")
    for pair in ("q8-llama", "q8-f32"):
        out[f"flips {pair}"] = int(sum(r[("flip " + pair, layer)].sum() for layer in range(n_layer)))
        print(f"  router rows with a different expert set {pair}: {out[f'flips {pair}']}/{rows}")
    gaps = np.concatenate([r["gap", layer] for layer in range(n_layer)])
    out["near ties"] = float(np.mean(gaps < 0.01))
    print(f"  router top-k gap < 1%: {out['near ties']:.2%} of rows, median gap {np.median(gaps):.3f}")
    for layer in range(n_layer):
        print(f"  layer {layer}: residual RMS {r['rms', layer].mean():.3f}, update/residual attn "
              f"{r['upd attn', layer].mean():.3f} moe {r['upd moe', layer].mean():.3f}, "
              f"layer_out vs llama.cpp min cos {r['l_out cos', layer].min():.7f}")
    llm.close()
    m8.close()
    m32.close()
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["small:11"]:
        name, _, s = arg.partition(":")
        diagnose(name, int(s) if s else 11)
