"""The CPU engine end to end on synthetic models (qwen3moe.testing.write_model):
batch invariance (prefill == token-by-token decode, bit for bit, every stage and the logits),
thread-count invariance, q8 vs f32 agreement, the f32 mode against a float64 NumPy forward,
determinism, errors (the model stays usable), unsupported tensor types, captures API, and
generation (greedy, seeded sampling, streaming, stop strings)."""
from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

import qwen3moe
import ref_forward
from qwen3moe.stages import ALL_STAGES, LAYER_STAGES
from qwen3moe.testing import ModelConfig, write_model

PROMPT = [3, 17, 42, 9, 100, 7, 64, 21, 5, 88, 13, 250]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-models")


@pytest.fixture(scope="session")
def tiny_path(model_dir):
    return write_model(model_dir / "tiny-q4km.gguf", "tiny", seed=5, types="Q4_K_M")


@pytest.fixture(scope="session")
def small_path(model_dir):
    return write_model(model_dir / "small-q4km.gguf", "small", seed=6, types="Q4_K_M")


@pytest.fixture(scope="session")
def f32_path(model_dir):
    cfg = ModelConfig(n_layer=4, n_embd=256, n_head=4, n_head_kv=2, head_dim=64, n_expert=16, n_expert_used=4,
                      n_ff_exp=256)
    return write_model(model_dir / "g16-f32.gguf", cfg, seed=7, types="F32")


@pytest.fixture(scope="session")
def tiny(tiny_path):
    m = qwen3moe.load(tiny_path, n_ctx=1024, threads=2)
    yield m
    m.close()


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype == np.float32:
        return bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))
    return bool(np.array_equal(a, b))


def assert_same_captures(a, b, what):
    assert list(a) == list(b), what
    bad = [k for k in a if not same_bits(a[k], b[k])]
    assert not bad, f"{what}: {len(bad)} (stage, layer) differ, first {bad[:4]}"


def cos(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    return float(a @ b / (na * nb))


# ---- batch invariance -----------------------------------------------------------------------


@pytest.mark.parametrize("activations", ["q8", "f32"])
def test_prefill_equals_decode_every_stage(tiny_path, activations):
    m = qwen3moe.load(tiny_path, n_ctx=64, activations=activations, threads=2)
    full = m.forward(PROMPT, capture="all", logits="all")
    assert m.n_past == len(PROMPT)
    assert full.logits.shape == (len(PROMPT), m.config["n_vocab"])
    assert set(full.captures.stages) == set(ALL_STAGES)
    m.reset()
    for i, tok in enumerate(PROMPT):
        step = m.decode(tok, capture="all")
        assert m.n_past == i + 1
        assert same_bits(step.logits, full.logits[i]), f"logits at position {i}"
        for key, arr in step.captures.items():
            assert same_bits(arr[0], full.captures[key][i]), f"{key} at position {i}"
    # uneven chunks: 5 + 1 + 6 tokens
    m.reset()
    parts = [m.forward(PROMPT[:5], capture="all", logits="all"), m.forward(PROMPT[5:6], capture="all", logits="all"),
             m.forward(PROMPT[6:], capture="all", logits="all")]
    for key in full.captures:
        joined = np.concatenate([p.captures[key] for p in parts])
        assert same_bits(joined, full.captures[key]), key
    assert same_bits(np.concatenate([p.logits for p in parts]), full.logits)


def test_long_prompt_chunks_and_last_logits(tiny_path):
    """A prompt longer than one internal batch (512) gives the same bits as two calls."""
    m = qwen3moe.load(tiny_path, n_ctx=700, threads=2)
    vocab = m.config["n_vocab"]
    toks = [(i * 37 + 11) % vocab for i in range(600)]
    a = m.forward(toks, capture=["layer_out", "moe_router_indices"], layers=[3], logits="all")
    m.reset()
    b1 = m.forward(toks[:250], capture=["layer_out", "moe_router_indices"], layers=[3], logits="none")
    b2 = m.forward(toks[250:], capture=["layer_out", "moe_router_indices"], layers=[3], logits="last")
    assert b1.logits is None
    assert same_bits(b2.logits, a.logits[-1])
    for key in a.captures:
        assert same_bits(np.concatenate([b1.captures[key], b2.captures[key]]), a.captures[key]), key


# ---- threads / determinism ------------------------------------------------------------------


def test_thread_count_invariance(tiny_path):
    results = []
    for threads in (1, 2, 4):
        with qwen3moe.load(tiny_path, n_ctx=64, threads=threads) as m:
            assert m.threads == threads
            r = m.forward(PROMPT, capture="all", logits="all")
            d = m.decode(PROMPT[0], capture="all")
            results.append((r, d))
    for r, d in results[1:]:
        assert_same_captures(r.captures, results[0][0].captures, "prefill")
        assert same_bits(r.logits, results[0][0].logits)
        assert_same_captures(d.captures, results[0][1].captures, "decode")
        assert same_bits(d.logits, results[0][1].logits)


def test_cpu_tuning_knobs_invariance(small_path):
    """Every CPU tuning knob setting (prefetch in decode and prefill, weights copy, few-token dots,
    static/dynamic pool partition, MoE row weights, AMX tiles from 1 / 8 tokens or never) x SIMD
    level x threads gives the same captures
    and logits; bad knob names/values raise ValueError."""
    core = qwen3moe._core
    base = core.cpu_tuning()
    assert set(base) == {"prefetch", "prefetch_prefill", "weights_copy", "few_tokens", "chunks", "chunks_decode",
                         "row_pairs", "token_chunk", "row_batch", "amx_tokens"}
    levels = [lv for lv in ("scalar", "avx2", "avx512vnni") if core.quant_simd_level_available(lv)]
    prompt = [(7 * i + 3) % 700 for i in range(37)]  # 37 tokens: few-token chunks and full ones
    configs = [dict(base, prefetch=0, prefetch_prefill=0, weights_copy=0, few_tokens=0, chunks=0,
                    chunks_decode=0, row_pairs=0, token_chunk=0, row_batch=0, amx_tokens=0),
               dict(base, prefetch=4096, prefetch_prefill=2048, weights_copy=1, few_tokens=1, chunks=3,
                    chunks_decode=2, row_pairs=5, token_chunk=1, row_batch=1, amx_tokens=1),
               dict(base, prefetch=1024, prefetch_prefill=64, weights_copy=0, few_tokens=1, chunks=64,
                    chunks_decode=64, row_pairs=1024, token_chunk=40960, row_batch=1, amx_tokens=8)]
    ref = None
    try:
        for cfg in configs:
            for k, v in cfg.items():
                core.cpu_tuning_set(k, v)
            assert core.cpu_tuning() == cfg
            for level in levels:
                core.quant_set_simd_level(level)
                for threads in (1, 2, 3):
                    with qwen3moe.load(small_path, n_ctx=64, threads=threads) as m:
                        r = m.forward(prompt, capture="all", logits="all")
                        d = m.decode(prompt[0], capture="all")
                    if ref is None:
                        ref = (r, d)
                        continue
                    what = f"{cfg} {level} threads={threads}"
                    assert_same_captures(r.captures, ref[0].captures, "prefill " + what)
                    assert same_bits(r.logits, ref[0].logits), what
                    assert_same_captures(d.captures, ref[1].captures, "decode " + what)
                    assert same_bits(d.logits, ref[1].logits), what
    finally:
        core.quant_set_simd_level("auto")
        for k, v in base.items():
            core.cpu_tuning_set(k, v)
    for name, value in (("prefetch", -1), ("prefetch", 1 << 20), ("prefetch_prefill", -1), ("weights_copy", 2), ("few_tokens", -1),
                        ("chunks", -1), ("chunks", 65), ("chunks_decode", -1), ("row_pairs", -1),
                        ("row_pairs", 1025), ("token_chunk", -1), ("row_batch", 2), ("amx_tokens", -1),
                        ("amx_tokens", (1 << 20) + 1), ("nope", 0)):
        with pytest.raises(ValueError):
            core.cpu_tuning_set(name, value)
    assert core.cpu_tuning() == base


def test_op_profiler_counts_ops(tiny_path):
    """The op profiler: off by default (no counts), then per-op calls, times, weight bytes and
    pool regions for a forward; reset clears them."""
    core = qwen3moe._core
    core.profile_reset()
    with qwen3moe.load(tiny_path, n_ctx=64, threads=2) as m:
        n_layer = int(m._core.hparams()["n_layer"])
        m.forward(PROMPT, logits="last")
        assert all(r["calls"] == 0 for r in core.profile_read())  # off: nothing recorded
        core.profile_enable(True)
        try:
            m.reset()
            m.forward(PROMPT, logits="last")
        finally:
            core.profile_enable(False)
    rows = {r["op"]: r for r in core.profile_read()}
    assert rows["qkv"]["calls"] == n_layer and rows["experts"]["calls"] == n_layer
    assert rows["experts.gate_up"]["parent"] == "experts" and rows["qkv"]["parent"] is None
    assert rows["lm_head"]["calls"] == 1 and rows["lm_head"]["bytes"] > 0
    assert rows["experts.down"]["bytes"] > 0 and rows["experts"]["ns"] >= rows["experts.down"]["ns"]
    assert all(r["ns"] > 0 for r in rows.values() if r["calls"])
    assert rows["qkv"]["regions"] >= 1 and rows["qkv"]["busy_ns"] > 0
    core.profile_reset()
    assert all(r["calls"] == 0 and r["ns"] == 0 for r in core.profile_read())


def test_two_runs_identical(tiny_path, tiny):
    tiny.reset()
    a = tiny.forward(PROMPT, capture="all", logits="all")
    tiny.reset()
    b = tiny.forward(PROMPT, capture="all", logits="all")
    assert_same_captures(a.captures, b.captures, "rerun")
    with qwen3moe.load(tiny_path, n_ctx=64, threads=1) as other:
        c = other.forward(PROMPT, capture="all", logits="all")
    assert_same_captures(a.captures, c.captures, "second load")
    assert same_bits(a.logits, c.logits)


# ---- q8 vs f32, f32 vs float64 --------------------------------------------------------------


def _q8_f32_compare(path):
    """q8 vs f32 per (stage, layer). Routing is a discrete decision: where the 8-bit activation
    noise (~0.5% per quantised matvec) flips a near tie between the k-th and (k+1)-th expert,
    the two modes run different experts for that token from then on. So the cosine is taken
    over the tokens whose expert sets agreed at every layer so far, with the per-expert rows
    (kept in rank order) aligned by expert id; the flips themselves are counted and must be
    near ties."""
    with qwen3moe.load(path, n_ctx=64, activations="q8") as m8, qwen3moe.load(path, n_ctx=64, activations="f32") as m32:
        a = m8.forward(PROMPT, capture="all", logits="all").captures
        b = m32.forward(PROMPT, capture="all", logits="all").captures
    T, n_layer = len(PROMPT), max(a.layers) + 1
    on_path = np.ones(T, bool)  # tokens routed identically at every layer so far
    worst, worst_all, flips, rows, max_gap = (1.0, None), (1.0, None), 0, 0, 0.0
    for key in [("embed", None)] + [(s, l) for l in range(n_layer) for s in LAYER_STAGES] + [("final_norm", None), ("logits", None)]:
        stage, layer = key
        x, y = a[key], b[key]
        if stage == "moe_router_indices":
            same = (np.sort(x, 1) == np.sort(y, 1)).all(1)
            p = -np.sort(-b["moe_router_probs", layer], axis=1)
            k = x.shape[1]
            for t in np.nonzero(on_path & ~same)[0]:  # a flip on a so-far identical path
                max_gap = max(max_gap, float((p[t, k - 1] - p[t, k]) / p[t, k - 1]))
            flips += int(np.sum(~same))
            rows += T
            on_path = on_path & same
            continue
        if stage.startswith("moe_expert_") or stage == "moe_router_weights":
            ia, ib = a["moe_router_indices", layer], b["moe_router_indices", layer]
            order = np.array([[list(ia[t]).index(e) if e in ia[t] else 0 for e in ib[t]] for t in range(T)])
            x = np.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), 1)
        worst_all = min(worst_all, (cos(x, y), key), key=lambda r: r[0])
        worst = min(worst, (cos(x[on_path], y[on_path]), key), key=lambda r: r[0])
    return worst, worst_all, flips, rows, max_gap, int(on_path.sum())


@pytest.mark.parametrize("which", ["tiny", "small"])
def test_q8_vs_f32_agree(which, tiny_path, small_path):
    path = tiny_path if which == "tiny" else small_path
    (c, key), (c_all, key_all), flips, rows, gap, n_path = _q8_f32_compare(path)
    print(f"\n{which}: q8 vs f32 min cos {c:.6f} at {key} over the {n_path}/{len(PROMPT)} tokens routed "
          f"identically; including re-routed tokens {c_all:.6f} at {key_all}; router rows with a different "
          f"expert set {flips}/{rows}, largest relative top-k gap at a flip {gap:.4f}")
    assert c >= 0.999, f"q8 vs f32 cos {c:.6f} at {key}"
    assert n_path >= len(PROMPT) // 2
    assert flips <= rows // 4
    assert gap < 0.1, "a router flip at a probability gap that is not a near tie"


def test_f32_mode_matches_float64_reference(f32_path):
    hp, w = ref_forward.load_weights(f32_path)
    ref = ref_forward.forward(hp, w, PROMPT)
    with qwen3moe.load(f32_path, n_ctx=64, activations="f32") as m:
        r = m.forward(PROMPT, capture="all", logits="all")
    worst = (1.0, None)
    for key, arr in r.captures.items():
        if key[0] == "moe_router_indices":
            assert np.array_equal(arr, ref[key]), key
            continue
        c = cos(arr, ref[key])
        worst = min(worst, (c, key), key=lambda r: r[0])
    print(f"\nf32 mode vs float64 NumPy: min cos {worst[0]:.12f} (1 - cos = {1 - worst[0]:.2e}) at {worst[1]}")
    assert worst[0] >= 0.999999
    ref_logits = ref[("logits", None)]
    assert np.max(np.abs(r.logits - ref_logits)) <= 1e-5 * np.max(np.abs(ref_logits))
    assert np.array_equal(r.logits.argmax(-1), ref_logits.argmax(-1))


# ---- errors ---------------------------------------------------------------------------------


def _fresh_logits(path, toks):
    with qwen3moe.load(path, n_ctx=32, threads=2) as m:
        return m.forward(toks, logits="all").logits


def test_bad_inputs_raise_and_model_stays_usable(tiny_path):
    m = qwen3moe.load(tiny_path, n_ctx=32, threads=2)
    vocab, n_layer = m.config["n_vocab"], m.config["n_layer"]
    m.forward(PROMPT[:4])
    assert m.n_past == 4
    with pytest.raises(ValueError, match=f"vocabulary size is {vocab}"):
        m.forward([1, vocab])
    with pytest.raises(ValueError, match=f"vocabulary size is {vocab}"):
        m.decode(-1)
    with pytest.raises(ValueError, match=f"vocabulary size is {vocab}"):
        m.forward(np.array([2**40], dtype=np.int64))
    with pytest.raises(ValueError, match="empty"):
        m.forward([])
    with pytest.raises(ValueError, match="n_ctx = 32"):
        m.forward([1] * 29)
    with pytest.raises(ValueError, match="valid stages: embed, attn_norm"):
        m.forward([1], capture=["q", "not_a_stage"])
    with pytest.raises(IndexError, match=f"n_layer = {n_layer}"):
        m.forward([1], capture="q", layers=[n_layer])
    with pytest.raises(IndexError, match=f"n_layer = {n_layer}"):
        m.forward([1], capture="q", layers=-1)
    with pytest.raises(ValueError, match="logits"):
        m.forward([1], logits="first")
    with pytest.raises(TypeError):
        m.forward([1.5, 2.0])
    with pytest.raises(TypeError):
        m.decode("a")
    assert m.n_past == 4  # nothing changed
    # the state is intact: continuing gives the same bits as an uninterrupted run
    rest = m.forward(PROMPT[4:10], logits="all").logits
    assert same_bits(rest, _fresh_logits(tiny_path, PROMPT[:10])[4:])
    # filling the context exactly works; one more token does not
    m.forward([1] * (32 - m.n_past), logits="none")
    assert m.n_past == 32
    with pytest.raises(ValueError, match="n_ctx = 32"):
        m.decode(1)
    m.reset()
    assert same_bits(m.forward(PROMPT[:3], logits="all").logits, _fresh_logits(tiny_path, PROMPT[:3]))
    m.close()
    with pytest.raises(RuntimeError, match="closed"):
        m.forward([1])


def test_load_errors(tiny_path, tmp_path):
    if not qwen3moe.cuda_available():  # without a CUDA build, or a build without a usable GPU
        with pytest.raises(RuntimeError, match="CUDA backend not built/available|no usable CUDA GPU"):
            qwen3moe.load(tiny_path, device="cuda")
    with pytest.raises(ValueError, match="activations"):
        qwen3moe.load(tiny_path, activations="int4")
    with pytest.raises(ValueError, match="n_ctx"):
        qwen3moe.load(tiny_path, n_ctx=0)
    with pytest.raises(FileNotFoundError):
        qwen3moe.load(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="device"):
        qwen3moe.load(tiny_path, device="tpu")


def _tensor_type_offset(path, name):
    import gguf

    r = gguf.GGUFReader(str(path))
    for t in r.tensors:
        if t.name == name:
            # tensor info: u64 name length, name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset
            return t.field.offset + 8 + len(name.encode()) + 4 + 8 * len(t.shape)
    raise KeyError(name)


def _patched_copy(src, dst, name, new_type):
    shutil.copy(src, dst)
    off = _tensor_type_offset(src, name)
    with open(dst, "r+b") as f:
        f.seek(off)
        old = struct.unpack("<I", f.read(4))[0]
        f.seek(off)
        f.write(struct.pack("<I", new_type))
    return old


def test_unsupported_tensor_type(tiny_path, tmp_path):
    # F32 router -> I32 (same bytes per value, so the file stays well formed)
    bad = tmp_path / "i32.gguf"
    assert _patched_copy(tiny_path, bad, "blk.1.ffn_gate_inp.weight", 26) == 0
    with pytest.raises(qwen3moe.UnsupportedTypeError,
                       match=r"tensor 'blk\.1\.ffn_gate_inp\.weight' has type I32, which qwen3moe cannot compute with"):
        qwen3moe.load(bad, n_ctx=16)


def test_unsupported_iq_type(tiny_path, tmp_path):
    """A file whose blk.2.ffn_down_exps is IQ2_XXS (written with PyPI gguf.GGUFWriter)."""
    gguf = pytest.importorskip("gguf")
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quant_shape_to_byte_shape

    r = gguf.GGUFReader(str(tiny_path))
    out = tmp_path / "iq.gguf"
    w = gguf.GGUFWriter(str(out), "qwen3moe")
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = f.types[0]
        sub = f.types[1] if vtype == gguf.GGUFValueType.ARRAY and len(f.types) > 1 else None
        w.add_key_value(name, f.contents(), vtype, sub_type=sub)
    target = "blk.2.ffn_down_exps.weight"
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(list(t.shape)))
        if t.name == target:
            nbytes = quant_shape_to_byte_shape(shape, Q.IQ2_XXS)
            data = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8)
            w.add_tensor(t.name, data, raw_dtype=Q.IQ2_XXS)
        else:  # quantised data comes as [rows, bytes per row]; gguf derives the shape from it
            w.add_tensor(t.name, np.ascontiguousarray(t.data).reshape(*t.data.shape), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(qwen3moe.UnsupportedTypeError,
                       match=r"tensor 'blk\.2\.ffn_down_exps\.weight' has type IQ2_XXS, which qwen3moe cannot compute with"):
        qwen3moe.load(out, n_ctx=16)


def test_q8_mode_needs_rows_of_256(tmp_path):
    cfg = ModelConfig(n_layer=1, n_embd=96, n_head=2, n_head_kv=1, head_dim=48, n_expert=4, n_expert_used=2,
                      n_ff_exp=64)
    path = write_model(tmp_path / "q8_0-96.gguf", cfg, seed=1, types="Q8_0")
    with pytest.raises(qwen3moe.UnsupportedTypeError, match=r"tensor '.*' has type Q8_0 with rows of (96|64|48) values"):
        qwen3moe.load(path, n_ctx=16, activations="q8")
    with qwen3moe.load(path, n_ctx=16, activations="f32") as m:  # the f32 mode computes it
        assert np.all(np.isfinite(m.forward([1, 2, 3]).logits))


# ---- captures API ---------------------------------------------------------------------------


def test_captures_api_and_shapes(tiny, tmp_path):
    tiny.reset()
    cfg = tiny.config
    T, E, k = 5, cfg["n_embd"], cfg["n_expert_used"]
    r = tiny.forward(PROMPT[:T], capture=["embed", "q", "moe_router_indices", "moe_expert_gate", "logits"], layers=[1, 3])
    caps = r.captures
    assert caps.stages == ["embed", "q", "moe_router_indices", "moe_expert_gate", "logits"]
    assert caps.layers == [1, 3]
    assert caps["embed"].shape == (T, E) and caps["embed", None] is caps["embed"]
    assert caps["q", 3].shape == (T, cfg["n_head"] * cfg["head_dim"])
    assert caps["moe_router_indices", 1].dtype == np.int32 and caps["moe_router_indices", 1].shape == (T, k)
    assert caps["moe_expert_gate", 1].shape == (T, k, cfg["n_ff_exp"])
    assert caps["logits"].shape == (T, cfg["n_vocab"])
    assert same_bits(caps["logits"][-1], r.logits)  # logits="last" is the last captured row
    with pytest.raises(KeyError, match="not captured"):
        caps["q", 0]
    with pytest.raises(KeyError, match="per layer"):
        caps["q"]
    assert len(caps) == 1 + 3 * 2 + 1
    d = caps.to_dict()
    assert set(d) == set(caps.keys())
    p = tmp_path / "caps.npz"
    caps.save(p)
    back = qwen3moe.model.Captures.load(p)
    assert list(back) == list(caps)
    for key in caps:
        assert same_bits(back[key], caps[key])
    cmp = qwen3moe.compare(caps, back)
    assert len(cmp) == len(caps) and cmp.all_identical
    assert len(tiny.forward([1], capture=None).captures) == 0


def test_repr_and_config(tiny):
    s = repr(tiny)
    for part in ("qwen3moe", "layers=4", "experts=8", "Q4_K", "device=cpu", "MiB"):
        assert part in s
    cfg = tiny.config
    assert cfg["n_layer"] == 4 and cfg["vocab_size"] == cfg["n_vocab"] and cfg["activations"] == "q8"
    assert tiny.memory()["weights_mapped"] > 0


# ---- generation -----------------------------------------------------------------------------


def test_generate_greedy_deterministic(tiny):
    ids = PROMPT[:6]
    a = tiny.generate(ids, max_tokens=12)
    b = tiny.generate(ids, max_tokens=12)
    assert isinstance(a, str) and a == b
    # greedy = argmax of the logits at each step
    tiny.reset()
    toks = list(ids)
    logits = tiny.forward(toks).logits
    expect = []
    eog = set(tiny.tokenizer.eog_ids)
    for _ in range(12):
        t = int(np.argmax(logits))
        if t in eog:
            break
        expect.append(t)
        logits = tiny.decode(t).logits
    assert a == tiny.detokenize(expect)


def test_generate_seeded_sampling(tiny):
    ids = PROMPT[:4]
    kw = dict(max_tokens=16, temperature=1.5, top_k=50, top_p=0.95)
    a = tiny.generate(ids, seed=1, **kw)
    assert a == tiny.generate(ids, seed=1, **kw)
    others = {tiny.generate(ids, seed=s, **kw) for s in (2, 3, 4)}
    assert any(o != a for o in others)


def test_generate_stream_and_stop(tiny):
    ids = PROMPT[:4]
    kw = dict(max_tokens=20, temperature=1.0, seed=5)
    full = tiny.generate(ids, **kw)
    pieces = list(tiny.generate(ids, stream=True, **kw))
    assert "".join(pieces) == full
    if len(full) >= 4:
        stop = full[2:4]
        cut = tiny.generate(ids, stop=stop, **kw)
        assert cut == full[: full.find(stop)]
        assert "".join(tiny.generate(ids, stop=[stop, "\x00never"], stream=True, **kw)) == cut
    assert tiny.generate(ids, max_tokens=0) == ""
    with pytest.raises(ValueError):
        tiny.generate(ids, top_p=0.0)
    with pytest.raises(ValueError, match="n_ctx = 1024"):
        tiny.generate([1] * 1025, stream=True)
    assert tiny.generate(ids, max_tokens=5) == tiny.generate(ids, max_tokens=5)  # still usable
