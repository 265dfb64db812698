"""qwen3moe.convert: a Hugging Face Qwen3MoeForCausalLM directory -> GGUF, checked end to end.

A randomly initialised HF model (4 layers, hidden 256, 16 experts top-4, GQA 4/2, qk-norm,
untied output, the built-in byte vocab written as a HF tokenizer.json) is saved with
save_pretrained and converted. Checks:
  * F32: our activations="f32" mode equals HF's float64 forward on every decoder layer output,
    the final norm and the logits: cos >= 0.999999 (measured: 1 - cos ~ 3e-14).
  * Q8_0 / Q4_K_M: min cos over those stages and every position vs HF float64, measured with
    HF's default init (std 0.02; random routers are near ties, so quantisation flips experts):
    Q8_0 f32 mode 0.99803 (q8 mode 0.99798), Q4_K_M f32 mode 0.9690 (q8 0.9685). Bounds: 0.995
    and 0.94. (With init std 0.06 the model is more chaotic: 0.986 / 0.908.)
  * gguf.GGUFReader reads the files: names, shapes, types as the recipe says.
  * llama.cpp loads the Q4_K_M file and agrees with our q8 mode on argmax: measured 96/98
    positions on 4 prompts (min logits cos 0.99908); bound 95%.
  * errors: dense layers, norm_topk_prob false, missing tensors, bad type -> ValueError.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import qwen3moe  # noqa: E402
from qwen3moe import hf_tokenizer  # noqa: E402
from qwen3moe.cli import main as cli_main  # noqa: E402
from qwen3moe.convert import SafetensorsReader, convert  # noqa: E402

pytestmark = pytest.mark.oracle

PROMPTS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "The quick brown fox jumps over the lazy dog.",
    "import numpy as np\nx = np.arange(10)\nprint(x.sum())",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
]


def write_hf_tokenizer(d: str) -> int:
    """The built-in byte vocab as HF tokenizer.json + tokenizer_config.json; returns its size."""
    md = hf_tokenizer.builtin_byte_vocab()
    toks, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(toks) if types[i] == 1}
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(toks) if types[i] == 3]
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": hf_tokenizer.QWEN2_HF_REGEX}, "behavior": "Isolated",
             "invert": False}, bl]},
        "post_processor": None, "decoder": bl,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [m.split(" ") for m in md["tokenizer.ggml.merges"]]},
    }
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None,
                   "add_bos_token": False, "chat_template": md["tokenizer.chat_template"]}, f)
    return len(toks)


def _hf_config(n_vocab: int, **kw):
    base = dict(vocab_size=n_vocab, hidden_size=256, intermediate_size=512, moe_intermediate_size=256,
                num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=64, num_experts=16,
                num_experts_per_tok=4, norm_topk_prob=True, tie_word_embeddings=False, rope_theta=1e6,
                max_position_embeddings=4096)
    base.update(kw)
    return transformers.Qwen3MoeConfig(**base)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("hfmodel"))
    n_vocab = write_hf_tokenizer(d)
    torch.manual_seed(0)
    transformers.Qwen3MoeForCausalLM(_hf_config(n_vocab)).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def hf_ref(hf_dir):
    """HF float64 outputs per prompt: {(stage, layer): array}."""
    model = transformers.Qwen3MoeForCausalLM.from_pretrained(
        hf_dir, dtype=torch.float64, attn_implementation="eager", experts_implementation="eager").eval()
    cache = {}

    def run(toks: list[int]) -> dict:
        key = tuple(toks)
        if key in cache:
            return cache[key]
        caps: dict = {}
        hooks = [layer.register_forward_hook(
            lambda m, i, o, il=il: caps.__setitem__(("layer_out", il), (o[0] if isinstance(o, tuple) else o)[0].numpy()))
            for il, layer in enumerate(model.model.layers)]
        hooks.append(model.model.norm.register_forward_hook(
            lambda m, i, o: caps.__setitem__(("final_norm", None), o[0].numpy())))
        try:
            with torch.no_grad():
                out = model(input_ids=torch.tensor([toks]), use_cache=False)
        finally:
            for h in hooks:
                h.remove()
        caps[("logits", None)] = out.logits[0].numpy()
        cache[key] = caps
        return caps

    return run


@pytest.fixture(scope="module")
def converted(hf_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    return {t: convert(hf_dir, d / f"{t}.gguf", type=t) for t in ("F32", "Q8_0", "Q4_K_M")}


def _cos(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _min_cos(path: str, activations: str, hf_ref) -> tuple[float, object]:
    worst = (1.0, None)
    with qwen3moe.load(path, n_ctx=256, activations=activations, threads=2) as m:
        for prompt in PROMPTS:
            toks = m.tokenize(prompt)
            m.reset()
            r = m.forward(toks, capture=["layer_out", "final_norm"], logits="all")
            ref = hf_ref(toks)
            for key, ours in r.captures.items():
                worst = min(worst, (_cos(ours, ref[key]), key), key=lambda x: x[0])
            for pos in range(len(toks)):
                worst = min(worst, (_cos(r.logits[pos], ref[("logits", None)][pos]), ("logits", pos)),
                            key=lambda x: x[0])
    return worst


def test_f32_conversion_matches_hf_float64(converted, hf_ref):
    c, where = _min_cos(converted["F32"], "f32", hf_ref)
    print(f"\nF32 file, f32 mode vs HF float64: min cos {c:.15f} at {where}")
    assert c >= 0.999999, f"cos {c} at {where}"


@pytest.mark.parametrize("t,bound", [("Q8_0", 0.995), ("Q4_K_M", 0.94)])
def test_quantised_conversion_within_bounds(converted, hf_ref, t, bound):
    for act in ("f32", "q8"):
        c, where = _min_cos(converted[t], act, hf_ref)
        print(f"\n{t} file, {act} mode vs HF float64: min cos {c:.6f} at {where}")
        assert c >= bound, f"{t} {act}: cos {c:.6f} < {bound} at {where}"


def test_gguf_reader_reads_converted(converted, hf_dir):
    gguf = pytest.importorskip("gguf")
    from qwen3moe.testing.recipes import use_more_bits

    r = gguf.GGUFReader(converted["Q4_K_M"])
    types = {t.name: t.tensor_type.name for t in r.tensors}
    shapes = {t.name: [int(x) for x in t.shape] for t in r.tensors}
    assert len(types) == 1 + 4 * 12 + 2
    assert shapes["blk.0.ffn_gate_exps.weight"] == [256, 256, 16]
    assert shapes["blk.0.attn_k.weight"] == [256, 128]
    assert types["output.weight"] == "Q6_K" and types["token_embd.weight"] == "Q4_K"
    for i in range(4):
        assert types[f"blk.{i}.ffn_down_exps.weight"] == ("Q6_K" if use_more_bits(i, 4) else "Q4_K")
        assert types[f"blk.{i}.ffn_gate_inp.weight"] == "F32"
    arch = r.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "qwen3moe"
    assert int(r.fields["qwen3moe.expert_count"].parts[-1][0]) == 16
    # F32 file: the bytes are the checkpoint's floats (HF [out, in] rows = ne[0]-contiguous rows)
    st = SafetensorsReader(hf_dir)
    r32 = {t.name: t for t in gguf.GGUFReader(converted["F32"]).tensors}
    np.testing.assert_array_equal(np.asarray(r32["blk.2.attn_q.weight"].data).reshape(256, 256),
                                  st.get("model.layers.2.self_attn.q_proj.weight"))
    up = np.asarray(r32["blk.1.ffn_up_exps.weight"].data).reshape(16, 256, 256)
    np.testing.assert_array_equal(up[5], st.get("model.layers.1.mlp.experts.5.up_proj.weight"))
    st.close()


def test_llama_cpp_agrees_with_q8_mode(converted):
    llama_cpp = pytest.importorskip("llama_cpp")
    path = converted["Q4_K_M"]
    llm = llama_cpp.Llama(model_path=path, vocab_only=False, logits_all=True, n_ctx=256, n_threads=2,
                          n_gpu_layers=0, verbose=False, seed=0)
    agree = total = 0
    worst = 1.0
    with qwen3moe.load(path, n_ctx=256, activations="q8", threads=2) as m:
        for prompt in PROMPTS:
            toks = m.tokenize(prompt)
            assert toks == llm.tokenize(prompt.encode(), add_bos=False, special=False)
            m.reset()
            mine = m.forward(toks, logits="all").logits
            llm.reset()
            llm.eval(toks)
            theirs = np.array(llm.scores[: len(toks)], dtype=np.float32)
            worst = min(worst, min(_cos(mine[p], theirs[p]) for p in range(len(toks))))
            agree += int(np.sum(mine.argmax(-1) == theirs.argmax(-1)))
            total += len(toks)
    print(f"\nllama.cpp vs q8 mode on the converted Q4_K_M: argmax {agree}/{total}, min logits cos {worst:.6f}")
    assert agree >= 0.95 * total


def test_fused_expert_layout(hf_dir, tmp_path, converted):
    """A checkpoint with transformers-5 fused experts (gate_up_proj [E, 2*ff, n_embd], down_proj
    [E, n_embd, ff]) converts to the same bytes as the per-expert layout."""
    from safetensors.numpy import save_file

    st = SafetensorsReader(hf_dir)
    tensors = {}
    for name in st.names():
        if ".mlp.experts." in name:
            continue
        tensors[name] = st.get(name)
    for il in range(4):
        p = f"model.layers.{il}.mlp.experts."
        gate = np.stack([st.get(f"{p}{e}.gate_proj.weight") for e in range(16)])
        up = np.stack([st.get(f"{p}{e}.up_proj.weight") for e in range(16)])
        tensors[p + "gate_up_proj"] = np.concatenate([gate, up], axis=1)
        tensors[p + "down_proj"] = np.stack([st.get(f"{p}{e}.down_proj.weight") for e in range(16)])
    st.close()
    d = tmp_path / "fused"
    d.mkdir()
    save_file(tensors, str(d / "model.safetensors"))
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (d / f).write_bytes(open(os.path.join(hf_dir, f), "rb").read())
    gguf = pytest.importorskip("gguf")
    out = convert(d, tmp_path / "fused.gguf", type="Q8_0")
    a = {t.name: t for t in gguf.GGUFReader(out).tensors}
    b = {t.name: t for t in gguf.GGUFReader(converted["Q8_0"]).tensors}
    assert sorted(a) == sorted(b)
    for name in a:  # general.name differs (the directory name); every tensor's bytes are equal
        assert a[name].tensor_type == b[name].tensor_type
        assert np.asarray(a[name].data).tobytes() == np.asarray(b[name].data).tobytes(), name


def test_bf16_checkpoint_and_type_map(hf_dir, tmp_path):
    gguf = pytest.importorskip("gguf")
    d = tmp_path / "bf16"
    model = transformers.Qwen3MoeForCausalLM.from_pretrained(hf_dir, dtype=torch.bfloat16)
    model.save_pretrained(d)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (d / f).write_bytes(open(os.path.join(hf_dir, f), "rb").read())
    path = convert(d, tmp_path / "mix.gguf", type="F32", type_map="*ffn_down_exps*=Q8_0,output=BF16")
    r = {t.name: t for t in gguf.GGUFReader(path).tensors}
    assert r["blk.0.ffn_down_exps.weight"].tensor_type.name == "Q8_0"
    assert r["output.weight"].tensor_type.name == "BF16"
    assert r["blk.0.attn_q.weight"].tensor_type.name == "F32"
    want = model.model.layers[3].self_attn.o_proj.weight.detach().float().numpy()
    np.testing.assert_array_equal(np.asarray(r["blk.3.attn_output.weight"].data).reshape(want.shape), want)


def _copy_dir(src: str, dst, config_changes: dict | None = None, drop: str | None = None):
    dst.mkdir()
    for f in os.listdir(src):
        (dst / f).write_bytes(open(os.path.join(src, f), "rb").read())
    if config_changes:
        cfg = json.loads((dst / "config.json").read_text())
        cfg.update(config_changes)
        (dst / "config.json").write_text(json.dumps(cfg))
    if drop:
        from safetensors.numpy import save_file

        st = SafetensorsReader(dst)
        t = {n: st.get(n) for n in st.names() if n != drop}
        st.close()
        save_file(t, str(dst / "model.safetensors"))


@pytest.mark.parametrize("changes,msg", [
    ({"norm_topk_prob": False}, "norm_topk_prob"),
    ({"mlp_only_layers": [1]}, "dense"),
    ({"decoder_sparse_step": 2}, "dense"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}}, "rope"),
    ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, "not a Qwen3-MoE"),
])
def test_unsupported_configs_raise(hf_dir, tmp_path, changes, msg):
    d = tmp_path / "bad"
    _copy_dir(hf_dir, d, config_changes=changes)
    with pytest.raises(ValueError, match=msg):
        convert(d, tmp_path / "x.gguf", type="F32")
    assert not (tmp_path / "x.gguf").exists()


def test_missing_tensor_and_bad_type(hf_dir, tmp_path):
    d = tmp_path / "missing"
    _copy_dir(hf_dir, d, drop="model.layers.2.mlp.experts.7.down_proj.weight")
    with pytest.raises(ValueError, match="experts of layer 2|experts.7.down_proj"):
        convert(d, tmp_path / "x.gguf", type="F32")
    with pytest.raises(ValueError, match="type must be"):
        convert(hf_dir, tmp_path / "x.gguf", type="Q2_K")
    with pytest.raises(FileNotFoundError):
        convert(tmp_path / "nowhere", tmp_path / "x.gguf")


def test_cli_convert(hf_dir, tmp_path, capsys):
    out = tmp_path / "cli.gguf"
    assert cli_main(["convert", hf_dir, str(out), "--type", "q8_0", "-q"]) == 0
    assert "wrote" in capsys.readouterr().out and out.stat().st_size > 0
    assert cli_main(["convert", str(tmp_path / "nowhere"), str(out), "-q"]) == 1
    with pytest.raises(SystemExit) as e:
        cli_main(["convert", hf_dir, str(out), "--type", "Q3_K"])
    assert e.value.code == 2
