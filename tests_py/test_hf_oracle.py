"""The f32 mode against Hugging Face transformers' Qwen3MoeForCausalLM in float64.

The HF model is built from the dequantised weights of a synthetic test model (4 layers,
16 experts, top-4, GQA 4/2, qk-norm; F32 and Q8_0 weights) and run in float64 with every stage
hooked. Our activations="f32" mode must match it: cosine >= 0.999999 for every stage and layer,
logits max error <= 1e-5 of max |logit|, identical router top-k sets and identical argmax.

Stages HF computes inside a module are read with hooks; RoPE outputs by wrapping
apply_rotary_pos_emb; router probabilities / top-k / weights follow from HF's router logits
(softmax and top-k in float64); per-expert stages come from the float64 NumPy forward
(ref_forward.py), which this test first checks against HF on every stage both produce.
HF's rotary embedding computes its angles in float32 and its RMSNorm upcasts to float32 only;
both are replaced by float64 versions of the same definitions during the run (theta =
pos * base^(-2i/hd)), so the oracle is float64 except HF's float32 softmaxes.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import qwen3moe  # noqa: E402
import ref_forward  # noqa: E402
from qwen3moe.testing import ModelConfig, write_model  # noqa: E402

pytestmark = pytest.mark.oracle

CFG = ModelConfig(n_layer=4, n_embd=256, n_head=4, n_head_kv=2, head_dim=64, n_expert=16, n_expert_used=4,
                  n_ff_exp=256, rope_freq_base=1e6)
PROMPTS = [[3, 17, 42, 9, 100, 7, 64, 21, 5, 88, 13, 250, 1, 2, 4, 8], [200, 199, 7, 7, 7, 30]]


def _cos(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _build_hf(hp: dict, w: dict, n_vocab: int):
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    from transformers.models.qwen3_moe import modeling_qwen3_moe as mq

    cfg = Qwen3MoeConfig(
        vocab_size=n_vocab, hidden_size=hp["n_embd"], intermediate_size=4 * hp["n_embd"],
        moe_intermediate_size=hp["n_ff_exp"], num_hidden_layers=hp["n_layer"],
        num_attention_heads=hp["n_head"], num_key_value_heads=hp["n_head_kv"], head_dim=hp["head_dim"],
        num_experts=hp["n_expert"], num_experts_per_tok=hp["n_expert_used"], norm_topk_prob=True,
        decoder_sparse_step=1, mlp_only_layers=[], rms_norm_eps=hp["rms_eps"], rope_theta=hp["rope_freq_base"],
        max_position_embeddings=4096, tie_word_embeddings=False, attention_bias=False,
        attention_dropout=0.0, output_router_logits=False, attn_implementation="eager",
        experts_implementation="eager",  # transformers 5: the per-expert loop (grouped_mm has no float64)
    )
    torch.manual_seed(0)
    model = Qwen3MoeForCausalLM(cfg).to(torch.float64).eval()
    sd = model.state_dict()
    new = {}
    for key, t in sd.items():
        new[key] = torch.from_numpy(_hf_tensor(key, tuple(t.shape), hp, w))
    model.load_state_dict(new, strict=True)
    return model, mq


def _hf_tensor(key: str, shape: tuple, hp: dict, w: dict) -> np.ndarray:
    """The GGUF tensor (float64, dequantised) for one HF state-dict entry."""
    if key == "model.embed_tokens.weight":
        return w["token_embd.weight"]
    if key == "model.norm.weight":
        return w["output_norm.weight"]
    if key == "lm_head.weight":
        return w.get("output.weight", w["token_embd.weight"])
    parts = key.split(".")
    il = int(parts[2])
    b = f"blk.{il}."
    rest = ".".join(parts[3:])
    simple = {
        "input_layernorm.weight": "attn_norm", "post_attention_layernorm.weight": "ffn_norm",
        "self_attn.q_proj.weight": "attn_q", "self_attn.k_proj.weight": "attn_k",
        "self_attn.v_proj.weight": "attn_v", "self_attn.o_proj.weight": "attn_output",
        "self_attn.q_norm.weight": "attn_q_norm", "self_attn.k_norm.weight": "attn_k_norm",
        "mlp.gate.weight": "ffn_gate_inp",
    }
    if rest in simple:
        arr = w[b + simple[rest] + ".weight"]
    elif rest.startswith("mlp.experts.") and rest.endswith("_proj.weight"):  # per-expert modules
        e = int(parts[5])
        proj = parts[6]
        arr = w[b + {"gate_proj": "ffn_gate_exps", "up_proj": "ffn_up_exps", "down_proj": "ffn_down_exps"}[proj] + ".weight"][e]
    elif rest == "mlp.experts.gate_up_proj":  # fused experts: [n_expert, 2*n_ff, n_embd], gate first
        arr = np.concatenate([w[b + "ffn_gate_exps.weight"], w[b + "ffn_up_exps.weight"]], axis=1)
        if arr.shape != shape:
            arr = arr.transpose(0, 2, 1)
    elif rest == "mlp.experts.down_proj":  # fused: [n_expert, n_embd, n_ff]
        arr = w[b + "ffn_down_exps.weight"]
        if arr.shape != shape:
            arr = arr.transpose(0, 2, 1)
    else:
        raise KeyError(f"no GGUF tensor for HF parameter {key} {shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    assert arr.shape == shape, f"{key}: HF shape {shape}, GGUF gives {arr.shape}"
    return arr


def _run_hf(model, mq, hp: dict, w: dict, tokens: list[int]) -> dict:
    """Every stage HF exposes, float64, keyed (stage, layer)."""
    T, HD, base = len(tokens), hp["head_dim"], hp["rope_freq_base"]
    caps: dict = {}
    hooks = []
    cur = {"layer": None}

    def out_hook(name, il, fn=lambda o: o):
        def h(mod, inp, out):
            caps[(name, il)] = fn(out[0] if isinstance(out, tuple) else out).detach().reshape(T, -1).numpy().copy()
        return h

    def in_hook(name, il):
        def h(mod, inp):
            caps[(name, il)] = inp[0].detach().reshape(T, -1).numpy().copy()
        return h

    def layer_pre(il):
        def h(mod, args, kwargs=None):
            cur["layer"] = il
        return h

    m = model.model
    hooks.append(m.embed_tokens.register_forward_hook(out_hook("embed", None)))
    for il, layer in enumerate(m.layers):
        a = layer.self_attn
        hooks.append(layer.register_forward_pre_hook(layer_pre(il)))
        hooks.append(layer.input_layernorm.register_forward_hook(out_hook("attn_norm", il)))
        hooks.append(a.q_proj.register_forward_hook(out_hook("q", il)))
        hooks.append(a.k_proj.register_forward_hook(out_hook("k", il)))
        hooks.append(a.v_proj.register_forward_hook(out_hook("v", il)))
        hooks.append(a.q_norm.register_forward_hook(out_hook("q_normed", il)))
        hooks.append(a.k_norm.register_forward_hook(out_hook("k_normed", il)))
        hooks.append(a.o_proj.register_forward_pre_hook(in_hook("attn_out", il)))
        hooks.append(a.o_proj.register_forward_hook(out_hook("attn_proj", il)))
        hooks.append(layer.post_attention_layernorm.register_forward_pre_hook(in_hook("ffn_inp", il)))
        hooks.append(layer.post_attention_layernorm.register_forward_hook(out_hook("ffn_norm", il)))
        # the gate's input (= ffn_norm output as HF passes it); logits follow in float64 below
        # (HF versions differ in what the gate module returns)
        hooks.append(layer.mlp.gate.register_forward_pre_hook(in_hook("_gate_in", il)))
        hooks.append(layer.mlp.register_forward_hook(out_hook("moe_ffn_out", il)))
        hooks.append(layer.register_forward_hook(out_hook("layer_out", il)))
    hooks.append(m.norm.register_forward_hook(out_hook("final_norm", None)))

    orig_rope = mq.apply_rotary_pos_emb

    def rope_spy(q, k, cos, sin, *args, **kwargs):
        qe, ke = orig_rope(q, k, cos, sin, *args, **kwargs)
        il = cur["layer"]
        # [B, heads, T, hd] -> [T, heads*hd]
        caps[("q_rope", il)] = qe.detach()[0].transpose(0, 1).reshape(T, -1).numpy().copy()
        caps[("k_rope", il)] = ke.detach()[0].transpose(0, 1).reshape(T, -1).numpy().copy()
        return qe, ke

    rot = m.rotary_emb

    def rope_f64(x, position_ids):
        inv = torch.tensor(float(base), dtype=torch.float64) ** (-2.0 * torch.arange(0, HD // 2, dtype=torch.float64) / HD)
        freqs = position_ids.to(torch.float64)[..., None] * inv
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def rms_f64(self, x):  # HF's RMSNorm upcasts to float32 only; keep float64 throughout
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.variance_epsilon))

    mq.apply_rotary_pos_emb = rope_spy
    orig_fwd = rot.forward
    rot.forward = rope_f64
    orig_rms = mq.Qwen3MoeRMSNorm.forward
    mq.Qwen3MoeRMSNorm.forward = rms_f64
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([tokens]), use_cache=False)
    finally:
        mq.apply_rotary_pos_emb = orig_rope
        rot.forward = orig_fwd
        mq.Qwen3MoeRMSNorm.forward = orig_rms
        for h in hooks:
            h.remove()
    caps[("logits", None)] = out.logits[0].detach().numpy().copy()
    # router: logits -> probs -> top-k (ties lower index) -> renormalised weights, in float64
    K = hp["n_expert_used"]
    for il in range(hp["n_layer"]):
        lg = caps.pop(("_gate_in", il)) @ w[f"blk.{il}.ffn_gate_inp.weight"].T
        caps[("moe_router_logits", il)] = lg
        p = np.exp(lg - lg.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        idx = np.stack([np.lexsort((np.arange(p.shape[1]), -p[t]))[:K] for t in range(T)])
        wt = np.take_along_axis(p, idx, 1)
        caps[("moe_router_probs", il)] = p
        caps[("moe_router_indices", il)] = idx
        caps[("moe_router_weights", il)] = wt / wt.sum(axis=1, keepdims=True)
    return caps


@pytest.fixture(scope="module", params=["F32", "Q8_0"])
def oracle_model(request, tmp_path_factory):
    path = write_model(tmp_path_factory.mktemp("hf") / f"oracle-{request.param}.gguf", CFG, seed=21,
                       types=request.param)
    hp, w = ref_forward.load_weights(path)
    n_vocab = w["token_embd.weight"].shape[0]
    model, mq = _build_hf(hp, w, n_vocab)
    return path, hp, w, model, mq


@pytest.mark.parametrize("prompt", range(len(PROMPTS)))
def test_f32_mode_matches_hf_float64(oracle_model, prompt):
    path, hp, w, model, mq = oracle_model
    toks = PROMPTS[prompt]
    hf = _run_hf(model, mq, hp, w, toks)
    ref = ref_forward.forward(hp, w, toks)
    # 1. the NumPy float64 forward agrees with HF wherever both have the stage (HF computes its
    #    attention and router softmaxes in float32, hence ~1e-7 relative differences)
    for key, arr in hf.items():
        if key[0] == "moe_router_indices":
            assert np.array_equal(arr, ref[key]), key
        else:
            assert _cos(arr, ref[key]) >= 1 - 1e-10, key
            assert np.max(np.abs(arr - ref[key].reshape(arr.shape))) <= 1e-5 * np.max(np.abs(arr)), key
    oracle = dict(ref)
    oracle.update(hf)
    # 2. our f32 mode against the oracle, every stage and layer
    with qwen3moe.load(path, n_ctx=64, activations="f32", threads=2) as m:
        r = m.forward(toks, capture="all", logits="all")
    worst = (1.0, None)
    for key, ours in r.captures.items():
        want = oracle[key]
        if key[0] == "moe_router_indices":
            assert np.array_equal(ours, want), f"router indices differ at {key}"
            continue
        c = _cos(ours, want)
        worst = min(worst, (c, key), key=lambda r: r[0])
        assert c >= 0.999999, f"{key}: cos {c:.9f}"
    want = oracle[("logits", None)]
    err = np.max(np.abs(r.logits.astype(np.float64) - want)) / np.max(np.abs(want))
    print(f"\nf32 mode vs HF float64 ({path}): min cos {worst[0]:.12f} (1 - cos = {1 - worst[0]:.2e}) at {worst[1]}, logits max rel err {err:.2e}")
    assert err <= 1e-5, f"logits max relative error {err:.3e}"
    assert np.array_equal(r.logits.argmax(-1), want.argmax(-1))
