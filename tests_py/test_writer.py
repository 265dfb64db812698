"""Tests of the synthetic-model writer (qwen3moe.testing) against independent oracles.

Oracles: PyPI gguf (GGUFReader for the container, gguf.quants.dequantize for block bytes) and
our own C++ reader (qwen3moe.inspect); expected tensor tables and type recipes are computed
here from ARCHITECTURE.md section 1, not taken from the writer.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

import qwen3moe  # noqa: E402
from qwen3moe.testing import (  # noqa: E402
    PRESETS,
    ModelConfig,
    default_model_path,
    float_tensors,
    model_tensor_types,
    synth_main,
    write_model,
)
from qwen3moe.testing import gguf_writer as gw  # noqa: E402
from qwen3moe.testing.random_blocks import BlockPool, random_blocks  # noqa: E402

GIB = 2**30
QT = gguf.GGMLQuantizationType

# Relative RMS error bound of dequantised bytes against the float source, per type.
REL_ERR_BOUND = {"Q4_0": 0.11, "Q4_K": 0.10, "Q5_K": 0.05, "Q6_K": 0.025, "Q8_0": 0.008,
                 "F16": 5e-4, "BF16": 3e-3, "F32": 0.0}


# ---- helpers -----------------------------------------------------------------------------


def _reader_value(field):
    """A GGUFReader field as (type name like inspect's, Python value); nested arrays, which
    GGUFReader flattens, give value None."""
    vt = gguf.GGUFValueType(int(field.types[0]))
    if vt != gguf.GGUFValueType.ARRAY:
        return vt.name, field.contents()
    elem = gguf.GGUFValueType(int(field.parts[3][0]))
    tname = f"ARRAY[{elem.name}]"
    if elem == gguf.GGUFValueType.ARRAY:
        return tname, None
    if elem == gguf.GGUFValueType.STRING:
        return tname, field.contents()
    vals = [field.parts[i] for i in field.data]
    return tname, (np.concatenate(vals) if vals else np.zeros(0))


def _values_equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a.astype(np.float64), b.astype(np.float64)))
    if isinstance(a, float) or isinstance(b, float):
        return np.float32(a) == np.float32(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))
    return a == b


def _metadata(path):
    """{key: (type name, value)} by PyPI gguf's reader (GGUF.* header fields left out)."""
    r = gguf.GGUFReader(path)
    return r, {f.name: _reader_value(f) for f in r.fields.values() if not f.name.startswith("GGUF.")}


def assert_readers_agree(path):
    """PyPI GGUFReader and qwen3moe.inspect give the same keys, types, values and tensor table."""
    r, meta = _metadata(path)
    info = qwen3moe.inspect(path)
    assert list(info.metadata) == list(meta), "key order/set differs"
    for k, (tname, val) in meta.items():
        assert info.metadata_types[k] == tname, k
        assert val is None or _values_equal(info.metadata[k], val), k
    assert len(info.tensors) == len(r.tensors)
    for ti, tr in zip(info.tensors, r.tensors):
        assert ti.name == tr.name
        assert ti.type == int(tr.tensor_type)
        assert tuple(ti.shape) == tuple(int(x) for x in tr.shape)
        assert info.data_offset + ti.offset == tr.data_offset
        assert ti.nbytes == int(tr.n_bytes)
    return r, meta, info


def _expected_specs(cfg: ModelConfig, n_vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """The tensor table of ARCHITECTURE.md section 1, written out independently."""
    q, kv = cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim
    out = [("token_embd.weight", (cfg.n_embd, n_vocab))]
    for i in range(cfg.n_layer):
        b = f"blk.{i}."
        out += [
            (b + "attn_norm.weight", (cfg.n_embd,)),
            (b + "attn_q.weight", (cfg.n_embd, q)),
            (b + "attn_k.weight", (cfg.n_embd, kv)),
            (b + "attn_v.weight", (cfg.n_embd, kv)),
            (b + "attn_q_norm.weight", (cfg.head_dim,)),
            (b + "attn_k_norm.weight", (cfg.head_dim,)),
            (b + "attn_output.weight", (q, cfg.n_embd)),
            (b + "ffn_norm.weight", (cfg.n_embd,)),
            (b + "ffn_gate_inp.weight", (cfg.n_embd, cfg.n_expert)),
            (b + "ffn_gate_exps.weight", (cfg.n_embd, cfg.n_ff_exp, cfg.n_expert)),
            (b + "ffn_up_exps.weight", (cfg.n_embd, cfg.n_ff_exp, cfg.n_expert)),
            (b + "ffn_down_exps.weight", (cfg.n_ff_exp, cfg.n_embd, cfg.n_expert)),
        ]
    out.append(("output_norm.weight", (cfg.n_embd,)))
    if not cfg.tied_output:
        out.append(("output.weight", (cfg.n_embd, n_vocab)))
    return out


def _dequant(tensor) -> np.ndarray:
    return gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type).astype(np.float32)


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("w") / "tiny.gguf", "tiny", seed=0)


@pytest.fixture(scope="module")
def small_path(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("w") / "small.gguf", "small", seed=3)


# ---- whole files: metadata, table, readers -----------------------------------------------


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_metadata_and_table(preset, tiny_path, small_path):
    path = tiny_path if preset == "tiny" else small_path
    cfg = PRESETS[preset]
    r, meta, info = assert_readers_agree(path)
    n_vocab = len(meta["tokenizer.ggml.tokens"][1])
    expect = {
        "general.architecture": ("STRING", "qwen3moe"),
        "general.type": ("STRING", "model"),
        "general.file_type": ("UINT32", 15),
        "general.quantization_version": ("UINT32", 2),
        "qwen3moe.block_count": ("UINT32", cfg.n_layer),
        "qwen3moe.context_length": ("UINT32", cfg.n_ctx_train),
        "qwen3moe.embedding_length": ("UINT32", cfg.n_embd),
        "qwen3moe.feed_forward_length": ("UINT32", cfg.n_ff),
        "qwen3moe.attention.head_count": ("UINT32", cfg.n_head),
        "qwen3moe.attention.head_count_kv": ("UINT32", cfg.n_head_kv),
        "qwen3moe.attention.key_length": ("UINT32", cfg.head_dim),
        "qwen3moe.attention.value_length": ("UINT32", cfg.head_dim),
        "qwen3moe.rope.freq_base": ("FLOAT32", cfg.rope_freq_base),
        "qwen3moe.attention.layer_norm_rms_epsilon": ("FLOAT32", cfg.rms_eps),
        "qwen3moe.expert_count": ("UINT32", cfg.n_expert),
        "qwen3moe.expert_used_count": ("UINT32", cfg.n_expert_used),
        "qwen3moe.expert_feed_forward_length": ("UINT32", cfg.n_ff_exp),
        "tokenizer.ggml.model": ("STRING", "gpt2"),
    }
    for k, (t, v) in expect.items():
        assert meta[k][0] == t, k
        assert _values_equal(meta[k][1], v), (k, meta[k][1], v)
    assert "general.alignment" not in meta  # default alignment: key left out
    assert isinstance(meta["general.name"][1], str) and meta["general.name"][1]
    assert meta["tokenizer.ggml.token_type"][0] == "ARRAY[INT32]"
    assert meta["tokenizer.ggml.tokens"][0] == "ARRAY[STRING]"
    assert 256 <= n_vocab <= 1100  # built-in byte-level vocab
    got = [(t.name, tuple(int(x) for x in t.shape)) for t in r.tensors]
    assert got == _expected_specs(cfg, n_vocab)
    for t in r.tensors:
        assert (info.data_offset + info.tensor(t.name).offset) % 32 == 0
    if preset == "tiny":
        assert os.path.getsize(path) < 20 * 2**20


def test_float_data_dequantises_close_to_source(tiny_path):
    r = gguf.GGUFReader(tiny_path)
    ft = float_tensors("tiny", seed=0)
    assert set(ft) == {t.name for t in r.tensors}
    seen = Counter()
    for t in r.tensors:
        src = ft[t.name]
        y = _dequant(t).reshape(src.shape)
        tn = t.tensor_type.name
        seen[tn] += 1
        if tn == "F32":
            assert np.array_equal(y, src), t.name
        else:
            rel = np.sqrt(np.mean((y - src) ** 2)) / np.sqrt(np.mean(src**2))
            assert rel < REL_ERR_BOUND[tn], (t.name, tn, rel)
    assert seen["Q4_K"] and seen["Q6_K"] and seen["F32"]


@pytest.mark.parametrize("types", ["Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "F16", "BF16", "F32"])
def test_type_recipes_dequantise(types, tmp_path):
    p = write_model(tmp_path / "m.gguf", "tiny", seed=5, types=types)
    r = gguf.GGUFReader(p)
    ft = float_tensors("tiny", seed=5)
    expect_matrix = {"Q5_K_M": None, "Q6_K": "Q6_K", "Q8_0": "Q8_0", "Q4_0": "Q4_0", "F16": "F16",
                     "BF16": "BF16", "F32": "F32"}[types]
    for t in r.tensors:
        tn = t.tensor_type.name
        is_matrix = len(t.shape) > 1 and "ffn_gate_inp" not in t.name
        if not is_matrix:
            assert tn == "F32", t.name
        elif expect_matrix:
            assert tn == expect_matrix, t.name
        else:
            assert tn in ("Q5_K", "Q6_K"), t.name
        src = ft[t.name]
        y = _dequant(t).reshape(src.shape)
        rel = np.sqrt(np.mean((y - src) ** 2)) / np.sqrt(np.mean(src**2))
        assert rel <= REL_ERR_BOUND[tn], (t.name, tn, rel)
    ftype = {"Q5_K_M": 17, "Q6_K": 18, "Q8_0": 7, "Q4_0": 2, "F16": 1, "BF16": 32, "F32": 0}[types]
    assert r.fields["general.file_type"].contents() == ftype


def test_float_source_spreads_and_outliers():
    cfg = PRESETS["tiny"].replace(outlier_channels=3)
    ft = float_tensors(cfg, seed=9, n_vocab=300)
    base = float_tensors("tiny", seed=9, n_vocab=300)
    q = ft["blk.1.attn_q.weight"]  # (rows, n_embd)
    col_std = q.std(axis=0)
    big = np.argsort(col_std)[-3:]
    s = 0.02 * np.sqrt(2048 / cfg.n_embd)  # matrix std: 0.02 at the real width 2048
    assert np.allclose(col_std[big] / s, 20, rtol=0.35)
    assert np.median(col_std) == pytest.approx(s, rel=0.15)
    # only the outlier columns change
    rest = np.setdiff1d(np.arange(cfg.n_embd), big)
    assert np.array_equal(q[:, rest], base["blk.1.attn_q.weight"][:, rest])
    assert np.array_equal(ft["blk.1.attn_output.weight"], base["blk.1.attn_output.weight"])
    n = base["blk.0.attn_norm.weight"]
    assert n.min() >= 0.9 and n.max() <= 1.1 and abs(n.mean() - 1) < 0.02
    router = base["blk.0.ffn_gate_inp.weight"]
    assert router.shape == (cfg.n_expert, cfg.n_embd)
    emb = base["token_embd.weight"]
    assert np.sqrt(np.mean(emb.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=0.05)  # residual starts O(1)
    s_down = 0.25 * 0.02 * np.sqrt(2048 / cfg.n_ff_exp) * 1.01**2  # residual writers: small, growing with depth
    assert base["blk.2.ffn_down_exps.weight"].std() == pytest.approx(s_down, rel=0.02)
    s_o = 0.25 * 0.02 * np.sqrt(2048 / (cfg.n_head * cfg.head_dim)) * 1.01**3
    assert base["blk.3.attn_output.weight"].std() == pytest.approx(s_o, rel=0.02)
    assert base["output.weight"].std() == pytest.approx(0.02 * np.sqrt(2048 / cfg.n_embd), rel=0.02)
    c30 = float_tensors("coder30b", seed=9)
    assert c30["blk.0.attn_k.weight"].std() == pytest.approx(0.02, rel=0.02)  # realistic at full width


def _rms_normed(x, w):
    x = x.astype(np.float64)
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-6) * w


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_float_source_structure(preset):
    """The trained-like structure of float-mode models (float_source docstring): embeddings lie
    along their token cluster's centroid, routers prefer the cluster's experts by a clear margin
    (top-k near ties are rare), and the output head predicts a bigram next token confidently."""
    cfg = PRESETS[preset]
    ft = float_tensors(preset, seed=9, n_vocab=400)
    st = ft.structure
    emb = ft["token_embd.weight"].astype(np.float64)
    u = st.centroids.astype(np.float64)
    assert np.allclose(u @ u.T, np.eye(st.n_cluster), atol=1e-5)
    own = np.sum(emb * u[st.token_cluster], axis=1) / np.linalg.norm(emb, axis=1)
    assert np.median(own) == pytest.approx(np.sqrt(0.5), abs=0.05)
    k = cfg.n_expert_used
    for layer in range(cfg.n_layer):
        x = _rms_normed(emb, ft[f"blk.{layer}.ffn_norm.weight"])
        logits = x @ ft[f"blk.{layer}.ffn_gate_inp.weight"].astype(np.float64).T
        sets = st.router_sets(layer, cfg.n_expert, k)
        assert (sets.sum(1) == k).all()
        top = np.argsort(-logits, axis=1, kind="stable")
        chosen = np.zeros_like(logits, dtype=bool)
        np.put_along_axis(chosen, top[:, :k], True, axis=1)
        agree = (chosen == sets[st.token_cluster]).all(1).mean()
        assert agree >= 0.9, (layer, agree)  # mostly the cluster's experts; some tokens differ
        srt = np.take_along_axis(logits, top, axis=1)
        rel_gap = 1 - np.exp(srt[:, k] - srt[:, k - 1])  # (p_k - p_k+1) / p_k
        assert np.mean(rel_gap < 0.01) <= 0.01, layer
        assert 0.5 <= np.median(rel_gap) <= 0.99, layer  # decisive, yet the (k+1)-th is not negligible
        w = np.exp(srt[:, :k] - srt[:, :1])
        w /= w.sum(1, keepdims=True)
        assert np.median(w[:, 0]) < 0.9  # the k-th expert still carries weight: no one-hot routing
    lg = _rms_normed(emb, ft["output_norm.weight"]) @ ft["output.weight"].astype(np.float64).T
    nxt = (np.arange(lg.shape[0]) + st.next_shift) % lg.shape[0]
    assert np.mean(lg.argmax(1) == nxt) >= 0.95
    peak = (lg[np.arange(lg.shape[0]), nxt] - lg.mean(1)) / lg.std(1)
    assert 3.5 <= np.median(peak) <= 6.5


# ---- recipes ----------------------------------------------------------------------------


def _more_bits_layers_48() -> set[int]:
    # llama.cpp use_more_bits for 48 layers, written out: 0-5, 8, 11, ..., 41, 42-47.
    return set(range(0, 6)) | set(range(8, 42, 3)) | set(range(42, 48))


@pytest.mark.parametrize("recipe,base", [("Q4_K_M", "Q4_K"), ("Q5_K_M", "Q5_K")])
def test_km_recipe_48_layers(recipe, base):
    types = model_tensor_types("coder30b", recipe)
    six = _more_bits_layers_48()
    assert six == {0, 1, 2, 3, 4, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35, 38, 41, 42, 43, 44, 45, 46, 47}
    assert types["token_embd.weight"] == base
    assert types["output.weight"] == "Q6_K"
    assert types["output_norm.weight"] == "F32"
    for i in range(48):
        b = f"blk.{i}."
        for role in ("attn_norm", "attn_q_norm", "attn_k_norm", "ffn_norm", "ffn_gate_inp"):
            assert types[b + role + ".weight"] == "F32"
        for role in ("attn_q", "attn_k", "attn_output", "ffn_gate_exps", "ffn_up_exps"):
            assert types[b + role + ".weight"] == base
        for role in ("attn_v", "ffn_down_exps"):
            assert types[b + role + ".weight"] == ("Q6_K" if i in six else base), (i, role)
    if recipe == "Q4_K_M":
        assert Counter(types.values()) == {"F32": 241, "Q4_K": 289, "Q6_K": 49}


def test_type_mapping_globs(tmp_path):
    types = model_tensor_types("tiny", {"*": "Q8_0", "blk.*.ffn_*_exps": "Q4_K", "blk.1.ffn_down_exps": "Q6_K",
                                        "*_norm*": "F32", "output.weight": "F16", "blk.*.ffn_gate_inp": "F32",
                                        "blk.?.attn_norm": "F32", "*ffn_norm*": "F32", "output_norm": "F32"})
    assert types["blk.1.ffn_down_exps.weight"] == "Q6_K"  # exact name beats globs
    assert types["blk.0.ffn_down_exps.weight"] == "Q4_K"  # longer glob beats "*"
    assert types["blk.0.attn_q.weight"] == "Q8_0"
    assert types["output.weight"] == "F16"
    assert types["blk.2.attn_q_norm.weight"] == "F32"
    # command-line form
    p = write_model(tmp_path / "m.gguf", "tiny", types="*=Q8_0,output=Q6_K")
    r = gguf.GGUFReader(p)
    got = {t.name: t.tensor_type.name for t in r.tensors}
    assert got["output.weight"] == "Q6_K" and got["blk.0.attn_k.weight"] == "Q8_0"
    assert got["blk.0.attn_norm.weight"] == "Q8_0"  # an explicit "*" covers norms (256 % 32 == 0)
    assert r.fields["general.file_type"].contents() == 7


def test_bad_types_and_shapes_raise(tmp_path):
    out = tmp_path / "bad.gguf"
    for types in ("Q2_K", "IQ4_XS", "Q4_K_S", "nonsense", {"*": "Q3_K"}, {"*": "Q4_K", "output": "MXFP4"}):
        with pytest.raises(ValueError, match="unsupported type"):
            write_model(out, "tiny", types=types)
    with pytest.raises(ValueError, match="attn_q_norm"):
        write_model(out, "tiny", types={"*": "Q4_K"})  # 64-value norms are not 256-multiples
    with pytest.raises(ValueError, match="token_embd.weight.*multiple"):
        write_model(out, PRESETS["tiny"].replace(n_embd=320, n_head=5, n_head_kv=1), types="Q4_K_M")
    with pytest.raises(ValueError, match="ffn_down_exps"):
        write_model(out, PRESETS["tiny"].replace(n_ff_exp=96), types="Q6_K")
    with pytest.raises(ValueError, match="token_embd.weight.*no entry"):
        write_model(out, "tiny", types={"blk.*.attn_norm": "F32"})  # matrix left unmatched
    with pytest.raises(ValueError, match="bad types entry"):
        write_model(out, "tiny", types="*=Q8_0,output")
    with pytest.raises(ValueError, match="unknown preset"):
        write_model(out, "huge")
    with pytest.raises(ValueError, match="data must be"):
        write_model(out, "tiny", data="zeros")
    with pytest.raises(ValueError):
        ModelConfig(n_head=6, n_head_kv=4)
    with pytest.raises(ValueError):
        ModelConfig(n_expert=4, n_expert_used=8)
    with pytest.raises(ValueError, match="more than the model's n_vocab"):
        write_model(out, PRESETS["tiny"].replace(n_vocab=100))
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir()]  # no temp files left behind


# ---- coder30b ---------------------------------------------------------------------------


CODER30B_KEYS = [
    "general.architecture", "general.type", "general.name", "general.finetune", "general.basename",
    "general.quantized_by", "general.size_label", "general.license", "general.license.link",
    "general.repo_url", "general.base_model.count", "general.base_model.0.name",
    "general.base_model.0.organization", "general.base_model.0.repo_url", "general.tags",
    "qwen3moe.block_count", "qwen3moe.context_length", "qwen3moe.embedding_length",
    "qwen3moe.feed_forward_length", "qwen3moe.attention.head_count", "qwen3moe.attention.head_count_kv",
    "qwen3moe.rope.freq_base", "qwen3moe.attention.layer_norm_rms_epsilon", "qwen3moe.expert_used_count",
    "qwen3moe.attention.key_length", "qwen3moe.attention.value_length", "general.file_type",
    "qwen3moe.expert_count", "qwen3moe.expert_feed_forward_length",
    "qwen3moe.expert_shared_feed_forward_length", "general.quantization_version",
]


def _check_coder30b_sparse(path, meta, r):
    cfg = PRESETS["coder30b"]
    assert [k for k in meta if not k.startswith(("tokenizer.", "quantize."))] == CODER30B_KEYS
    assert [k for k in meta if k.startswith("quantize.")] == [
        "quantize.imatrix.file", "quantize.imatrix.dataset", "quantize.imatrix.entries_count",
        "quantize.imatrix.chunks_count"]
    vals = {k: v for k, (_, v) in meta.items()}
    assert vals["qwen3moe.context_length"] == 262144 and vals["qwen3moe.feed_forward_length"] == 5472
    assert vals["qwen3moe.block_count"] == 48 and vals["qwen3moe.expert_count"] == 128
    assert np.float32(vals["qwen3moe.rope.freq_base"]) == np.float32(1e7)
    assert np.float32(vals["qwen3moe.attention.layer_norm_rms_epsilon"]) == np.float32(1e-6)
    assert vals["general.file_type"] == 15
    assert len(vals["tokenizer.ggml.tokens"]) == 151936
    assert len(vals["tokenizer.ggml.token_type"]) == 151936
    assert len(r.tensors) == 579
    assert Counter(t.tensor_type.name for t in r.tensors) == {"F32": 241, "Q4_K": 289, "Q6_K": 49}
    assert [(t.name, tuple(int(x) for x in t.shape)) for t in r.tensors] == _expected_specs(cfg, 151936)
    total = sum(int(t.n_bytes) for t in r.tensors)
    assert total / GIB == pytest.approx(17.28, abs=0.005)
    st = os.stat(path)
    assert st.st_size >= total + r.tensors[0].data_offset
    assert st.st_blocks * 512 < 64 * 2**20  # sparse: the data section was never written


def test_coder30b_sparse(tmp_path):
    p = write_model(tmp_path / "c30.gguf", "coder30b", data="sparse")
    r, meta, info = assert_readers_agree(p)
    _check_coder30b_sparse(p, meta, r)
    assert info.total_bytes == sum(int(t.n_bytes) for t in r.tensors)
    toks = meta["tokenizer.ggml.tokens"][1]
    assert toks[-1] == "[PAD151935]"
    assert int(meta["tokenizer.ggml.token_type"][1][-1]) == 5


def test_coder30b_sparse_real_tokenizer(tmp_path, qwen3_tokenizer_json):
    p = write_model(tmp_path / "c30t.gguf", "coder30b", data="sparse", tokenizer=qwen3_tokenizer_json)
    r, meta, _ = assert_readers_agree(p)
    _check_coder30b_sparse(p, meta, r)
    toks = meta["tokenizer.ggml.tokens"][1]
    tt = meta["tokenizer.ggml.token_type"][1]
    assert toks[151644] == "<|im_start|>" and toks[151645] == "<|im_end|>"
    assert toks[151669] == "[PAD151669]" and int(tt[151669]) == 5 and int(tt[151668]) != 5
    assert len(meta["tokenizer.ggml.merges"][1]) == 151387
    assert meta["tokenizer.ggml.eos_token_id"][1] == 151645
    assert meta["tokenizer.ggml.pre"][1] == "qwen2"


def test_tiny_with_real_tokenizer(tmp_path, qwen3_tokenizer_json):
    cfg = PRESETS["tiny"].replace(n_layer=1)
    p = write_model(tmp_path / "t.gguf", cfg, tokenizer=qwen3_tokenizer_json.parent, types="Q8_0")
    info = qwen3moe.inspect(p)  # (PyPI GGUFReader is slow on a 151k vocab; coder30b covers it)
    n = len(info.metadata["tokenizer.ggml.tokens"])
    assert n == 151669  # no n_vocab in the config: the tokenizer's own size
    assert info.tensors[0].name == "token_embd.weight" and tuple(info.tensors[0].shape) == (cfg.n_embd, n)
    assert info.tensor("output.weight").shape == (cfg.n_embd, n)
    assert info.metadata["tokenizer.ggml.tokens"][151645] == "<|im_end|>"


# ---- random mode ------------------------------------------------------------------------


@pytest.mark.parametrize("t", ["F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"])
def test_random_blocks_valid(t):
    b = random_blocks(t, 4096, np.random.default_rng(7))
    y = gguf.quants.dequantize(b, QT[t]).astype(np.float64)
    assert np.isfinite(y).all()
    assert y.std() == pytest.approx(0.02, rel=0.05)
    assert abs(y.mean()) < 0.003
    pool = BlockPool(t, seed=1, pool_bytes=1 << 20)
    starts = {pool.start_block(i) for i in range(600)}
    assert len(starts) == 600


def test_random_mode_file(tmp_path):
    types = {"*": "Q4_K", "*norm*": "F32", "*ffn_gate_inp": "F32", "*attn_q": "Q8_0", "*attn_k": "Q4_0", "*attn_v": "Q5_K", "*attn_output": "F16",
             "*ffn_down_exps": "Q6_K", "*ffn_up_exps": "BF16", "output": "F32", "token_embd": "Q6_K"}
    p = write_model(tmp_path / "r.gguf", "small", seed=2, types=types, data="random")
    r, _, _ = assert_readers_agree(p)
    digests = Counter()
    for t in r.tensors:
        y = _dequant(t)
        assert np.isfinite(y).all(), t.name
        if "norm" in t.name:
            assert 0.9 <= y.min() and y.max() <= 1.1, t.name
        elif "ffn_gate_inp" in t.name:  # float-source router: random part (std 1 per logit) + cluster part
            c = PRESETS["small"]
            m = 64 * c.n_expert_used / c.n_expert  # clusters choosing an expert, on average
            want = np.sqrt(1.0 + 6.0**2 * m / (0.5 * c.n_embd))
            assert y.std() * np.sqrt(c.n_embd) == pytest.approx(want, rel=0.15)
        else:
            assert y.std() == pytest.approx(0.02, rel=0.1), t.name
        digests[hashlib.sha256(np.asarray(t.data).tobytes()).hexdigest()] += 1
    assert max(digests.values()) == 1  # no two tensors byte-identical
    q = write_model(tmp_path / "r2.gguf", "small", seed=2, types=types, data="random")
    assert _sha(p) == _sha(q)
    s = write_model(tmp_path / "r3.gguf", "small", seed=3, types=types, data="random")
    assert _sha(p) != _sha(s)


# ---- determinism, default model, command line -------------------------------------------


def test_determinism(tmp_path, tiny_path):
    again = write_model(tmp_path / "again.gguf", "tiny", seed=0)
    assert _sha(again) == _sha(tiny_path)
    other = write_model(tmp_path / "other.gguf", "tiny", seed=1)
    assert _sha(other) != _sha(tiny_path)
    a, b = float_tensors("tiny", 0), float_tensors("tiny", 0)
    assert np.array_equal(a["blk.3.ffn_up_exps.weight"], b["blk.3.ffn_up_exps.weight"])


def test_default_model_path(tmp_path, monkeypatch):
    from qwen3moe.testing import EMBEDDED_MODEL, synthetic_default_model_path

    monkeypatch.setenv("QWEN3MOE_CACHE", str(tmp_path / "cache"))
    if EMBEDDED_MODEL.is_file():  # the trained model ships as package data: it is the default
        assert default_model_path() == str(EMBEDDED_MODEL) == qwen3moe.default_model_path()
    p = synthetic_default_model_path()
    assert Path(p).is_file() and Path(p).parent == tmp_path / "cache"
    assert Path(p).name.startswith(f"tiny-{qwen3moe.__version__}-")
    mtime = os.stat(p).st_mtime_ns
    assert synthetic_default_model_path() == p and os.stat(p).st_mtime_ns == mtime
    assert [x.name for x in (tmp_path / "cache").iterdir()] == [Path(p).name]  # no temp files
    ref = write_model(tmp_path / "ref.gguf", "tiny", seed=1234, types="Q4_K_M")
    assert _sha(ref) == _sha(p)
    if not EMBEDDED_MODEL.is_file():
        assert default_model_path() == p == qwen3moe.default_model_path()


def test_synth_main(tmp_path, capsys):
    out = tmp_path / "s.gguf"
    assert synth_main([str(out), "--preset", "tiny", "--seed", "4", "--types", "Q8_0", "-q"]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert _sha(out) == _sha(write_model(tmp_path / "s2.gguf", "tiny", seed=4, types="Q8_0"))
    assert synth_main([str(tmp_path / "x.gguf"), "--types", "Q3_K", "-q"]) == 2
    assert "unsupported type" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synth_main([str(tmp_path / "y.gguf"), "--preset", "nope"])


# ---- the serializer on its own ----------------------------------------------------------


def test_gguf_writer_all_value_types(tmp_path):
    p = tmp_path / "v.gguf"
    w = gw.GGUFWriter(p, alignment=64)
    w.add("general.architecture", "test")
    w.add("t.u8", gw.u8(255))
    w.add("t.i8", gw.i8(-128))
    w.add("t.u16", gw.u16(65535))
    w.add("t.i16", gw.i16(-32768))
    w.add("t.u32", gw.u32(2**32 - 1))
    w.add("t.i32", gw.i32(-(2**31)))
    w.add("t.u64", gw.u64(2**64 - 1))
    w.add("t.i64", gw.i64(-(2**63)))
    w.add("t.f32", gw.f32(1.5))
    w.add("t.f64", gw.f64(-2.25))
    w.add("t.bool", gw.boolean(True))
    w.add("t.str", gw.string("héllo"))
    w.add("t.arr_i32", gw.array(gw.ValueType.INT32, [1, -2, 3]))
    w.add("t.arr_f32", gw.array(gw.ValueType.FLOAT32, np.array([0.5, 1.5], np.float32)))
    w.add("t.arr_str", gw.array(gw.ValueType.STRING, ["a", "", "ü"]))
    w.add("t.arr_bool", gw.array(gw.ValueType.BOOL, [True, False]))
    w.add("t.arr_empty", gw.array(gw.ValueType.UINT8, []))
    w.add("t.arr_nested", gw.array(gw.ValueType.ARRAY, [gw.array(gw.ValueType.INT32, [7]),
                                                        gw.array(gw.ValueType.STRING, ["x", "y"])]))
    w.add("t.plain_list", ["p", "q"])
    a = np.arange(64, dtype=np.float32)
    w.add_tensor("a", (64,), "F32", a)
    w.add_tensor("b", (32, 2), "Q8_0", lambda: (bytes(34) for _ in range(2)))
    w.add_tensor("c", (3,), "F16", np.array([1, 2, 3], np.float16).tobytes())
    w.write()
    r = gguf.GGUFReader(p)
    f = r.fields
    assert f["general.alignment"].contents() == 64
    assert [gguf.GGUFValueType(t).name for t in f["t.u64"].types] == ["UINT64"]
    assert f["t.u64"].contents() == 2**64 - 1 and f["t.i64"].contents() == -(2**63)
    assert f["t.i8"].contents() == -128 and f["t.u16"].contents() == 65535
    assert f["t.f64"].contents() == -2.25 and f["t.bool"].contents() is True
    assert f["t.str"].contents() == "héllo"
    assert list(f["t.arr_i32"].contents()) == [1, -2, 3]
    assert f["t.arr_str"].contents() == ["a", "", "ü"]
    assert f["t.plain_list"].contents() == ["p", "q"]
    assert r.tensors[0].data_offset % 64 == 0 and r.tensors[1].data_offset % 64 == 0
    assert np.array_equal(r.tensors[0].data, a)
    assert np.array_equal(r.tensors[2].data, np.array([1, 2, 3], np.float16))
    info = qwen3moe.inspect(p)
    assert info.alignment == 64
    assert info.metadata["t.arr_nested"][1] == ["x", "y"]
    assert info.metadata_types["t.u8"] == "UINT8" and info.metadata_types["t.arr_bool"] == "ARRAY[BOOL]"
    assert_readers_agree(p)


def test_gguf_writer_rejects_bad_input(tmp_path):
    w = gw.GGUFWriter(tmp_path / "x.gguf")
    w.add("general.architecture", "qwen3moe")
    with pytest.raises(ValueError, match="duplicate metadata key"):
        w.add("general.architecture", "x")
    with pytest.raises(ValueError, match="cannot infer"):
        w.add("my.count", 3)
    with pytest.raises(ValueError, match="out of range"):
        w.add("qwen3moe.block_count", -1)
    with pytest.raises(ValueError, match="out of range"):
        w.add("t.u8", gw.u8(256))
    with pytest.raises(ValueError):
        w.add("t.arr", gw.array(gw.ValueType.INT8, [1000]))
    with pytest.raises(ValueError, match="multiple"):
        w.add_tensor("q", (100, 2), "Q4_K", bytes(10))
    with pytest.raises(ValueError, match="needs"):
        w.add_tensor("f", (4,), "F32", bytes(12))
    with pytest.raises(ValueError, match="n_dims"):
        w.add_tensor("g", (1, 1, 1, 1, 1), "F32", bytes(4))
    with pytest.raises(ValueError, match="unknown GGML type"):
        w.add_tensor("h", (4,), "Q9_9", bytes(4))
    w.add_tensor("ok", (4,), "F32", lambda: iter([bytes(8)]))  # yields too few bytes
    with pytest.raises(ValueError, match="duplicate tensor"):
        w.add_tensor("ok", (4,), "F32", bytes(16))
    with pytest.raises(ValueError, match="yielded 8 bytes"):
        w.write()
    assert list(tmp_path.iterdir()) == []  # failed writes leave nothing behind
    with pytest.raises(ValueError, match="power of two"):
        gw.GGUFWriter(tmp_path / "y.gguf", alignment=48)


def test_gguf_writer_sparse(tmp_path):
    p = tmp_path / "s.gguf"
    w = gw.GGUFWriter(p)
    w.add("general.architecture", "qwen3moe")
    w.add_tensor("big", (4096, 4096, 8), "Q6_K")
    w.add_tensor("small", (5,), "F32")
    w.write(sparse=True)
    r = gguf.GGUFReader(p)
    assert int(r.tensors[0].n_bytes) == 4096 * 4096 * 8 // 256 * 210
    assert os.path.getsize(p) == r.tensors[1].data_offset + 32  # 20 bytes padded to 32
    assert not np.asarray(r.tensors[1].data).any()
    with pytest.raises(ValueError, match="no data"):
        w.write()


# ---- llama.cpp accepts the files ---------------------------------------------------------


def test_llama_cpp_loads_our_files(tmp_path, tiny_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(tiny_path), n_ctx=64, logits_all=True, n_threads=2, verbose=False)
    toks = llm.tokenize(b"def f(x):\n    return x * 2", add_bos=False)
    llm.eval(toks)
    scores = np.array(llm.scores[: len(toks)], dtype=np.float32)
    assert np.isfinite(scores).all() and scores.std() > 0.1
    del llm
    # coder30b widths and vocab, two layers, sparse: llama.cpp's own tensor-shape checks pass
    cfg = PRESETS["coder30b"].replace(n_layer=2)
    p = write_model(tmp_path / "c2.gguf", cfg, data="sparse")
    lib = llama_cpp.llama_cpp
    load = getattr(lib, "llama_model_load_from_file", None) or lib.llama_load_model_from_file
    free = getattr(lib, "llama_model_free", None) or lib.llama_free_model
    params = lib.llama_model_default_params()
    params.use_mmap = True
    model = load(str(p).encode(), params)
    assert model, "llama.cpp refused the coder30b-shaped file"
    try:
        n_params = lib.llama_model_n_params(model)
        expect = sum(int(np.prod(ne)) for _, ne in _expected_specs(cfg, 151936))
        assert n_params == expect
    finally:
        free(model)
    # the full 48-layer file: llama.cpp reads its metadata and vocabulary
    full = write_model(tmp_path / "c48.gguf", "coder30b", data="sparse")
    vocab = llama_cpp.Llama(model_path=str(full), vocab_only=True, verbose=False)
    assert vocab.n_vocab() == 151936
