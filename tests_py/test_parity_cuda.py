"""CPU/CUDA parity of the whole model: the falsifiers of the numerics contract on the GPU.

For each test model and activation mode, a CPU model and a CUDA model of the same file are
loaded side by side and must agree bit for bit:

* every captured stage of every layer (differing elements = 0, cosine >= 0.9999, no NaN/Inf),
  on prompts that cross attention tiles and prefill chunks;
* the router's top-k index sets at every layer for every token of >= 16 prompts;
* greedy token streams (>= 16 prompts x 64 tokens) and seeded sampling streams;
* on the GPU alone: two runs bit-identical, prefill == token-by-token decode == chunked prefill;
* out of GPU memory -> qwen3moe.OutOfMemoryError naming sizes, nothing leaked, GPU usable after.

Models: synthetic test models written by qwen3moe.testing (Q4_K_M, and a mix of every weight
type), plus the files named by $QWEN3MOE_PARITY_MODEL (e.g. the full-size coder30b synthetic)
and $QWEN3MOE_MODEL (the real model) when set. $QWEN3MOE_PARITY_PROMPTS / _TOKENS override
the stream counts (defaults 16 / 64). A summary (min cosine over all stages and layers,
differing elements, router and argmax agreement) is printed at the end of the module and, with
$QWEN3MOE_PARITY_REPORT=path, written as JSON.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np
import pytest

import qwen3moe
from qwen3moe import _core

pytestmark = pytest.mark.cuda

N_PROMPTS = int(os.environ.get("QWEN3MOE_PARITY_PROMPTS", "16"))
N_TOKENS = int(os.environ.get("QWEN3MOE_PARITY_TOKENS", "64"))
N_CTX = 768

# ---- summary -----------------------------------------------------------------------------------

_SUMMARY: dict = defaultdict(lambda: {"min_cosine": 1.0, "worst_stage": None, "n_diff": 0, "n_compared": 0,
                                      "nonfinite": 0, "router_tokens": 0, "router_equal": 0,
                                      "streams": 0, "streams_equal": 0, "stream_tokens": 0,
                                      "stream_tokens_equal": 0})


def _summary_lines() -> list[str]:
    lines = ["CPU/CUDA parity summary (per model / activations):"]
    for key, s in sorted(_SUMMARY.items()):
        lines.append(
            f"  {key}: min cosine {s['min_cosine']:.9f} (at {s['worst_stage']}), differing elements "
            f"{s['n_diff']} of {s['n_compared']}, non-finite {s['nonfinite']}, router sets equal "
            f"{s['router_equal']}/{s['router_tokens']} (token, layer) pairs, greedy/sampled streams equal "
            f"{s['streams_equal']}/{s['streams']} ({s['stream_tokens_equal']}/{s['stream_tokens']} tokens)")
    return lines


class _SummaryPlugin:
    """Prints the summary in pytest's terminal summary (shown with or without -s)."""

    def pytest_terminal_summary(self, terminalreporter):
        if _SUMMARY:
            terminalreporter.section("qwen3moe CPU/CUDA parity")
            for line in _summary_lines():
                terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("qwen3moe-parity-summary"):
        pm.register(_SummaryPlugin(), "qwen3moe-parity-summary")
    yield
    path = os.environ.get("QWEN3MOE_PARITY_REPORT")
    if path and _SUMMARY:
        with open(path, "w") as f:
            json.dump(dict(_SUMMARY), f, indent=1)


# ---- models ------------------------------------------------------------------------------------

def _mixed_types(n_layer: int) -> dict:
    """Every weight type in one file: each layer's matrices in one type, embeddings in others."""
    per_layer = ["Q5_K", "Q8_0", "Q4_0", "F16", "BF16", "Q6_K", "Q4_K", "F32"]
    roles = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"]
    types = {f"blk.{i}.{r}": per_layer[i % len(per_layer)] for i in range(n_layer) for r in roles}
    types["token_embd"] = "BF16"
    types["output"] = "Q6_K"
    return types


def _q8k_mixed_types(n_layer: int) -> dict:
    """Only Q8K-dot weight types (the fused decode kernels take them all), one per layer."""
    per_layer = ["Q5_K", "Q8_0", "Q4_0", "Q6_K", "Q4_K"]
    roles = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"]
    types = {f"blk.{i}.{r}": per_layer[i % len(per_layer)] for i in range(n_layer) for r in roles}
    types["token_embd"] = "Q8_0"
    types["output"] = "Q5_K"
    return types


def _synthetic_models():
    from qwen3moe.testing import ModelConfig

    wide = ModelConfig(n_layer=8, n_embd=512, n_head=8, n_head_kv=2, head_dim=128, n_expert=32, n_expert_used=8,
                       n_ff_exp=512, n_ff=1536, outlier_channels=4, name="qwen3moe parity (synthetic)")
    # Row lengths that are not powers of two in 256-blocks (n_embd 5, q_dim 5, n_ff_exp 3 blocks:
    # segments with idle lanes in the decode kernels), a GQA group whose width is no multiple of
    # 256 (o-proj quantises its input itself), and every Q8K-dot type on the fused decode path.
    odd = ModelConfig(n_layer=5, n_embd=1280, n_head=10, n_head_kv=2, head_dim=128, n_expert=8, n_expert_used=3,
                      n_ff_exp=768, n_ff=2048, name="qwen3moe parity (odd widths, synthetic)")
    # head_dim 96: the fused attention's q/k norm + RoPE front takes its shared-memory exchange
    # (the NEOX partner of element i < 48 sits in another lane). Used by the (model, activations)
    # CASES and the head-dim fused-decode test, not by the MODEL_IDS tests.
    hd96 = ModelConfig(n_layer=3, n_embd=512, n_head=8, n_head_kv=2, head_dim=96, n_expert=8, n_expert_used=2,
                       n_ff_exp=256, n_ff=1536, name="qwen3moe parity (head_dim 96, synthetic)")
    return {
        "tiny-Q4_K_M": ("tiny", "Q4_K_M"),
        "tiny-mixed": ("tiny", _mixed_types(4)),
        "wide-Q4_K_M": (wide, "Q4_K_M"),
        "odd-q8k-mixed": (odd, _q8k_mixed_types(5)),
        "hd96-Q4_K_M": (hd96, "Q4_K_M"),
    }


MODEL_IDS = [m for m in _synthetic_models() if m != "hd96-Q4_K_M"] + [
    pytest.param("env:QWEN3MOE_PARITY_MODEL", marks=pytest.mark.slow),
    pytest.param("env:QWEN3MOE_MODEL", marks=pytest.mark.slow),
]

# (model, activations) cases: synthetic models in both modes; the large files named by the
# environment in q8 mode (f32 mode too with $QWEN3MOE_PARITY_F32=1: slow on the CPU side).
_ENV_MODES = ["q8", "f32"] if os.environ.get("QWEN3MOE_PARITY_F32") == "1" else ["q8"]
CASES = [pytest.param(m, a, id=f"{m}-{a}") for m in _synthetic_models() for a in ("q8", "f32")] + [
    pytest.param(f"env:{v}", a, id=f"{v}-{a}", marks=pytest.mark.slow)
    for v in ("QWEN3MOE_PARITY_MODEL", "QWEN3MOE_MODEL") for a in _ENV_MODES
]


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory):
    cache: dict[str, str] = {}

    def get(model_id: str) -> str:
        if model_id.startswith("env:"):
            var = model_id[4:]
            path = os.environ.get(var)
            if not path:
                pytest.skip(f"${var} is not set")
            if not os.path.isfile(path):
                pytest.skip(f"${var} = {path!r} is not a file")
            return path
        if model_id not in cache:
            from qwen3moe.testing import write_model

            preset, types = _synthetic_models()[model_id]
            d = tmp_path_factory.mktemp("parity")
            cache[model_id] = write_model(str(d / f"{model_id}.gguf"), preset, seed=7, types=types)
        return cache[model_id]

    return get


@pytest.fixture(scope="module")
def model_pair(model_paths):
    """(cpu_model, cuda_model) per (model id, activations), loaded once and kept side by side."""
    pairs: dict = {}

    def get(model_id: str, activations: str):
        key = (model_id, activations)
        if key not in pairs:
            path = model_paths(model_id)
            cpu = qwen3moe.load(path, device="cpu", n_ctx=N_CTX, activations=activations)
            gpu = qwen3moe.load(path, device="cuda", n_ctx=N_CTX, activations=activations)
            pairs[key] = (cpu, gpu)
        cpu, gpu = pairs[key]
        cpu.reset()
        gpu.reset()
        return cpu, gpu

    yield get
    for cpu, gpu in pairs.values():
        cpu.close()
        gpu.close()


def _prompts(n_vocab: int, n: int, seed: int, lo: int = 3, hi: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n_vocab, size=int(rng.integers(lo, hi + 1)), dtype=np.int64) for _ in range(n)]


def _n_vocab(model) -> int:
    return int(model.config["n_vocab"])


# ---- comparison helpers ------------------------------------------------------------------------

def _record_compare(key: str, cpu_caps, gpu_caps) -> list[str]:
    """Compare two capture sets; record the summary; return failure lines (empty when equal)."""
    s = _SUMMARY[key]
    problems = []
    for row in qwen3moe.compare(cpu_caps, gpu_caps):
        where = f"{row.stage}" + ("" if row.layer is None else f"[layer {row.layer}]")
        s["n_compared"] += row.n
        s["n_diff"] += row.n_diff
        if row.cosine < s["min_cosine"]:
            s["min_cosine"] = float(row.cosine)
            s["worst_stage"] = where
        if row.n_diff:
            problems.append(f"{where}: {row.n_diff} of {row.n} elements differ, cosine {row.cosine:.9f}, "
                            f"max|diff| {row.max_abs_diff:.3g}")
        elif row.cosine < 0.9999:
            problems.append(f"{where}: cosine {row.cosine:.9f} < 0.9999")
        if row.sets_equal is False:
            problems.append(f"{where}: expert sets differ from token {row.first_diff_token}")
    for name, caps in (("CPU", cpu_caps), ("CUDA", gpu_caps)):
        for (stage, layer), arr in caps.items():
            arr = np.asarray(arr)
            if arr.dtype.kind == "f":
                bad = int(np.count_nonzero(~np.isfinite(arr)))
                if bad:
                    s["nonfinite"] += bad
                    problems.append(f"{name} {stage}[{layer}]: {bad} NaN/Inf values")
    return problems


def _assert_captures_identical(a, b, what: str) -> None:
    keys_a, keys_b = set(a.keys()), set(b.keys())
    assert keys_a == keys_b, f"{what}: captured keys differ: {sorted(keys_a ^ keys_b)}"
    for k in sorted(keys_a, key=str):
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.shape == y.shape, f"{what}: {k} shapes {x.shape} != {y.shape}"
        bx = x.view(np.uint32) if x.dtype.itemsize == 4 else x
        by = y.view(np.uint32) if y.dtype.itemsize == 4 else y
        n = int(np.count_nonzero(bx != by))
        if n:
            i = np.unravel_index(int(np.flatnonzero(bx != by)[0]), x.shape)
            pytest.fail(f"{what}: {k}: {n} of {x.size} elements differ; first at {tuple(map(int, i))}: "
                        f"{x[i]!r} vs {y[i]!r}")


def _greedy_stream(model, prompt: np.ndarray, n: int, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, seed=0):
    """n tokens from the engine's canonical sampler (greedy for temperature 0), ignoring EOG."""
    core = model._core
    core.reset()
    out = [int(core.step(prompt, temperature, top_k, top_p, min_p, seed, 0))]
    for i in range(1, n):
        if core.n_past >= model.n_ctx:
            break
        out.append(int(core.step(np.array([out[-1]], np.int64), temperature, top_k, top_p, min_p, seed, i)))
    return out


# ---- tests -------------------------------------------------------------------------------------

ACTIVATIONS = ["q8", "f32"]


@pytest.mark.parametrize("model_id,activations", CASES)
def test_every_stage_every_layer(model_pair, model_id, activations):
    cpu, gpu = model_pair(model_id, activations)
    key = f"{model_id}/{activations}"
    nv = _n_vocab(cpu)
    # Short prompts and one across attention tiles (kAttnTile = 128), each followed by a 5-token
    # continuation over the existing KV cache (after the long prompt, the continuation takes the
    # GPU's split-K decode attention: few rows, positions >= 256).
    prompts = _prompts(nv, 3, seed=1) + [np.random.default_rng(2).integers(0, nv, size=300, dtype=np.int64)]
    problems = []
    for i, p in enumerate(prompts):
        cpu.reset()
        gpu.reset()
        rc = cpu.forward(p, capture="all", logits="all")
        rg = gpu.forward(p, capture="all", logits="all")
        problems += [f"prompt {i}: {x}" for x in _record_compare(key, rc.captures, rg.captures)]
        cont = np.random.default_rng(100 + i).integers(0, nv, size=5, dtype=np.int64)
        rc2 = cpu.forward(cont, capture="all", logits="all")
        rg2 = gpu.forward(cont, capture="all", logits="all")
        problems += [f"prompt {i} continuation: {x}" for x in _record_compare(key, rc2.captures, rg2.captures)]
        assert rc.logits is not None and rg.logits is not None
        np.testing.assert_array_equal(rc.logits.view(np.uint32), rg.logits.view(np.uint32))
    assert not problems, f"{key}: CPU and CUDA differ:\n" + "\n".join(problems[:40])


@pytest.mark.parametrize("model_id,activations", CASES)
def test_router_sets_every_layer(model_pair, model_id, activations):
    cpu, gpu = model_pair(model_id, activations)
    key = f"{model_id}/{activations}"
    s = _SUMMARY[key]
    failures = []
    for i, p in enumerate(_prompts(_n_vocab(cpu), N_PROMPTS, seed=11)):
        cpu.reset()
        gpu.reset()
        stages = ["moe_router_indices", "moe_router_weights"]
        rc = cpu.forward(p, capture=stages, logits="none").captures
        rg = gpu.forward(p, capture=stages, logits="none").captures
        for layer in rc.layers:
            ic, ig = rc["moe_router_indices", layer], rg["moe_router_indices", layer]
            for t in range(ic.shape[0]):
                s["router_tokens"] += 1
                if set(ic[t].tolist()) == set(ig[t].tolist()):
                    s["router_equal"] += 1
                else:
                    failures.append(f"prompt {i} token {t} layer {layer}: CPU {ic[t].tolist()} CUDA {ig[t].tolist()}")
            if not np.array_equal(ic, ig):  # ranks too
                failures.append(f"prompt {i} layer {layer}: rank order differs")
            wc, wg = rc["moe_router_weights", layer], rg["moe_router_weights", layer]
            if not np.array_equal(wc.view(np.uint32), wg.view(np.uint32)):
                failures.append(f"prompt {i} layer {layer}: router weights differ")
    assert not failures, f"{key}: router differs:\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("model_id,activations", CASES)
def test_greedy_streams(model_pair, model_id, activations):
    cpu, gpu = model_pair(model_id, activations)
    key = f"{model_id}/{activations}"
    s = _SUMMARY[key]
    failures = []
    for i, p in enumerate(_prompts(_n_vocab(cpu), N_PROMPTS, seed=21)):
        a = _greedy_stream(cpu, p, N_TOKENS)
        b = _greedy_stream(gpu, p, N_TOKENS)
        s["streams"] += 1
        s["stream_tokens"] += len(a)
        same = sum(1 for x, y in zip(a, b) if x == y)
        s["stream_tokens_equal"] += same
        if a == b:
            s["streams_equal"] += 1
        else:
            first = next(j for j, (x, y) in enumerate(zip(a, b)) if x != y)
            failures.append(f"prompt {i}: streams diverge at token {first}: CPU {a[first:first + 5]} "
                            f"CUDA {b[first:first + 5]}")
    assert not failures, f"{key}: greedy streams differ:\n" + "\n".join(failures)


@pytest.mark.parametrize("model_id", MODEL_IDS[:2])
def test_sampling_same_seed_same_tokens(model_pair, model_id):
    cpu, gpu = model_pair(model_id, "q8")
    key = f"{model_id}/q8"
    s = _SUMMARY[key]
    for i, p in enumerate(_prompts(_n_vocab(cpu), 4, seed=31)):
        kw = dict(temperature=0.9, top_k=20, top_p=0.95, min_p=0.01, seed=1000 + i)
        a = _greedy_stream(cpu, p, 32, **kw)
        b = _greedy_stream(gpu, p, 32, **kw)
        c = _greedy_stream(gpu, p, 32, **kw)
        s["streams"] += 1
        s["stream_tokens"] += len(a)
        s["stream_tokens_equal"] += sum(1 for x, y in zip(a, b) if x == y)
        s["streams_equal"] += int(a == b)
        assert b == c, f"prompt {i}: two sampled CUDA runs with one seed differ"
        assert a == b, f"prompt {i}: sampled streams differ: CPU {a} CUDA {b}"


@pytest.mark.parametrize("activations", ACTIVATIONS)
def test_cuda_two_runs_identical(model_pair, activations):
    _, gpu = model_pair("tiny-mixed", activations)
    p = _prompts(_n_vocab(gpu), 1, seed=41, lo=30, hi=30)[0]
    r1 = gpu.forward(p, capture="all", logits="all")
    gpu.reset()
    r2 = gpu.forward(p, capture="all", logits="all")
    _assert_captures_identical(r1.captures, r2.captures, "two CUDA runs")
    np.testing.assert_array_equal(r1.logits.view(np.uint32), r2.logits.view(np.uint32))


@pytest.mark.parametrize("activations", ACTIVATIONS)
@pytest.mark.parametrize("model_id", ["tiny-mixed", "wide-Q4_K_M"])
def test_cuda_prefill_equals_decode(model_pair, model_id, activations):
    _, gpu = model_pair(model_id, activations)
    p = _prompts(_n_vocab(gpu), 1, seed=51, lo=24, hi=24)[0]
    full = gpu.forward(p, capture="all", logits="all")
    # token by token
    gpu.reset()
    steps = [gpu.forward(p[t:t + 1], capture="all", logits="all") for t in range(len(p))]
    dec = {k: np.concatenate([np.asarray(r.captures[k]) for r in steps]) for k in full.captures.keys()}
    _assert_captures_identical(full.captures.to_dict(), dec, "prefill vs token-by-token decode (CUDA)")
    np.testing.assert_array_equal(full.logits.view(np.uint32),
                                  np.stack([r.logits[0] for r in steps]).view(np.uint32))
    # uneven chunks
    gpu.reset()
    parts = [gpu.forward(p[a:b], capture="all", logits="all") for a, b in ((0, 7), (7, 8), (8, 24))]
    chunked = {k: np.concatenate([np.asarray(r.captures[k]) for r in parts]) for k in full.captures.keys()}
    _assert_captures_identical(full.captures.to_dict(), chunked, "prefill vs chunked prefill (CUDA)")


def _fused_decode_vs_cpu(cpu, gpu, prompt: np.ndarray, n_steps: int) -> list[str]:
    """Prefill `prompt` on both, then n_steps single-token decodes (the CPU's greedy tokens)
    with logits; returns a description of every step whose logits differ in any bit."""
    failures = []
    a = cpu.forward(prompt, logits="last")
    b = gpu.forward(prompt, logits="last")
    for step in range(n_steps + 1):
        if not np.array_equal(a.logits.view(np.uint32), b.logits.view(np.uint32)):
            diff = int(np.count_nonzero(a.logits.view(np.uint32) != b.logits.view(np.uint32)))
            failures.append(f"position {cpu.n_past - 1}: {diff} logits differ")
            break
        if step == n_steps or cpu.n_past >= cpu.n_ctx:
            break
        tok = int(np.argmax(a.logits[0]))
        a = cpu.decode(tok, logits="last")
        b = gpu.decode(tok, logits="last")
    return failures


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_fused_decode_logits_every_step(model_pair, model_id):
    # Decode steps without captures run the fused CUDA-graph step (decode_path says so); their
    # logits must equal the CPU's in every bit at every position.
    cpu, gpu = model_pair(model_id, "q8")
    failures = []
    for i, p in enumerate(_prompts(_n_vocab(cpu), 4, seed=71)):
        cpu.reset()
        gpu.reset()
        failures += [f"prompt {i}: {f}" for f in _fused_decode_vs_cpu(cpu, gpu, p, 24)]
    # tiny-mixed has F16/BF16/F32 matrices, which the fused kernels do not take: op-by-op there.
    expected = "op-by-op (a weight type" if model_id == "tiny-mixed" else "cuda-graph"
    assert gpu.decode_path.startswith(expected), gpu.decode_path
    assert not failures, "decode differs from the CPU:\n" + "\n".join(failures)


def _assert_fresh_fused_decode(path: str, seed: int, prompt_len: int, n_steps: int) -> None:
    """Fresh CPU and CUDA models of `path` (with the environment as set by the caller): a
    prompt_len-token prefill then n_steps fused decode steps, logits equal in every bit."""
    cpu = qwen3moe.load(path, device="cpu", n_ctx=N_CTX)
    gpu = qwen3moe.load(path, device="cuda", n_ctx=N_CTX)
    try:
        p = np.random.default_rng(seed).integers(0, _n_vocab(cpu), size=prompt_len, dtype=np.int64)
        failures = _fused_decode_vs_cpu(cpu, gpu, p, n_steps)
        assert gpu.decode_path.startswith("cuda-graph"), gpu.decode_path
        assert not failures, "\n".join(failures)
    finally:
        cpu.close()
        gpu.close()


@pytest.mark.parametrize("switches", [{"QWEN3MOE_CUDA_DEC_NEXT_NORM": "1"}, {"QWEN3MOE_CUDA_DEC_ATTN_Q8": "0"},
                                      {"QWEN3MOE_CUDA_PDL": "0"}, {"QWEN3MOE_CUDA_DEC_CLUSTER": "0"},
                                      {"QWEN3MOE_CUDA_DEC_SEGMENTS": "1"}, {"QWEN3MOE_CUDA_DEC_TRACE": "1"}])
def test_fused_decode_variants(model_paths, monkeypatch, switches):
    # The fused step's A/B variants (bench/decode_ab.sh) compute the same values as the default.
    for k, v in switches.items():
        monkeypatch.setenv(k, v)
    _assert_fresh_fused_decode(model_paths("wide-Q4_K_M"), seed=91, prompt_len=120, n_steps=24)


@pytest.mark.parametrize("attn", [{"QWEN3MOE_CUDA_DECODE_CLUSTER": "0", "QWEN3MOE_CUDA_DECODE_SPLIT": "1"},
                                  {"QWEN3MOE_CUDA_DECODE_CLUSTER": "0", "QWEN3MOE_CUDA_DECODE_SPLIT": "3"},
                                  {"QWEN3MOE_CUDA_DECODE_CLUSTER": "0"},
                                  {"QWEN3MOE_CUDA_DECODE_CLUSTER": "1"}, {"QWEN3MOE_CUDA_DECODE_CLUSTER": "3"},
                                  {"QWEN3MOE_CUDA_DECODE_CLUSTER": "16"},
                                  {"QWEN3MOE_CUDA_DECODE_CLUSTER_MAX_POS": "300"}, {}],
                         ids=["2launch-split1", "2launch-split3", "2launch", "cluster1", "cluster3", "cluster16",
                              "switch-at-300", "default"])
def test_fused_decode_across_attention_tiles(model_paths, monkeypatch, attn):
    # Positions 250..330 cross key tiles 2 and 3. The two-launch attention with 1 or 3 blocks per
    # KV head loops each block over several tiles (the long-context case of the fixed grid); the
    # one-launch cluster attention with 1, 3 or 16 blocks per cluster deals the 32-key runs and
    # the tiles out round robin (1: one block does everything; 3: uneven shares); switch-at-300
    # moves from the cluster graph to the two-launch one mid-run (the long-context choice).
    for k, v in attn.items():
        monkeypatch.setenv(k, v)
    _assert_fresh_fused_decode(model_paths("wide-Q4_K_M"), seed=81, prompt_len=250, n_steps=80)


@pytest.mark.parametrize("split", ["5", "40"])
def test_fused_decode_two_launch_many_tiles(model_paths, monkeypatch, split):
    # Positions 1100..1115: 9 key tiles, more than one batch of the last block's tile combine
    # (8 tiles per round trip); 5 blocks per KV head loop over several items, 40 leave some idle.
    monkeypatch.setenv("QWEN3MOE_CUDA_DECODE_CLUSTER", "0")
    monkeypatch.setenv("QWEN3MOE_CUDA_DECODE_SPLIT", split)
    path = model_paths("wide-Q4_K_M")
    cpu = qwen3moe.load(path, device="cpu", n_ctx=1200)
    gpu = qwen3moe.load(path, device="cuda", n_ctx=1200)
    try:
        p = np.random.default_rng(71).integers(0, _n_vocab(cpu), size=1100, dtype=np.int64)
        failures = _fused_decode_vs_cpu(cpu, gpu, p, 16)
        assert gpu.decode_path.startswith("cuda-graph"), gpu.decode_path
        assert not failures, "\n".join(failures)
    finally:
        cpu.close()
        gpu.close()


@pytest.mark.parametrize("attn", [{}, {"QWEN3MOE_CUDA_DECODE_CLUSTER": "0"}], ids=["cluster", "2launch"])
def test_fused_decode_head_dim_not_multiple_of_64(model_paths, monkeypatch, attn):
    # head_dim 96: the attention front's RoPE partners exchange through shared memory (both
    # attention kernels); the group's 4 x 96 outputs are no whole Q8K blocks either.
    for k, v in attn.items():
        monkeypatch.setenv(k, v)
    _assert_fresh_fused_decode(model_paths("hd96-Q4_K_M"), seed=57, prompt_len=40, n_steps=40)


def test_fused_decode_phase_trace(model_paths, monkeypatch):
    # QWEN3MOE_CUDA_DEC_TRACE=1: every block of each traced kernel stamps its phase marks in
    # order (bench/dec_trace.py reads them); without it there is no trace.
    path = model_paths("wide-Q4_K_M")
    gpu = qwen3moe.load(path, device="cuda", n_ctx=64)
    try:
        gpu.forward([1, 2, 3], logits="none")
        gpu.decode(4, logits="last")
        assert gpu._live().decode_trace() is None
    finally:
        gpu.close()
    monkeypatch.setenv("QWEN3MOE_CUDA_DEC_TRACE", "1")
    gpu = qwen3moe.load(path, device="cuda", n_ctx=64)
    try:
        gpu.forward([1, 2, 3], logits="none")
        for t in (4, 5):
            gpu.decode(t, logits="last")
        tr = gpu._live().decode_trace()
        assert tr is not None and tr.ndim == 4 and tr.shape[1:] == (512, 8, 2), None if tr is None else tr.shape
        for k in (0, 2, 5):  # q/k/v, o-proj, down: marks 0..4 in every block
            ns = tr[k, :, :5, 0].astype(np.int64)
            live = ns[:, 0] > 0
            assert live.any(), k
            assert (np.diff(ns[live], axis=1) >= 0).all(), f"kernel {k}: marks out of order"
    finally:
        gpu.close()


def test_fused_decode_can_be_switched_off(model_paths, monkeypatch):
    monkeypatch.setenv("QWEN3MOE_CUDA_GRAPH", "0")
    gpu = qwen3moe.load(model_paths("tiny-Q4_K_M"), device="cuda", n_ctx=64)
    try:
        assert gpu.decode_path.startswith("undecided")
        gpu.forward([1, 2, 3], logits="last")
        gpu.decode(4, logits="last")
        assert gpu.decode_path == "op-by-op (QWEN3MOE_CUDA_GRAPH=0)"
    finally:
        gpu.close()


@pytest.mark.parametrize("activations", ACTIVATIONS)
def test_cuda_long_prefill_equals_split_k_decode(model_pair, activations):
    # Rows past position 256 decoded one at a time take the split-K attention path; the same
    # rows inside one prefill take the one-block-per-head path. Identical bits required.
    _, gpu = model_pair("wide-Q4_K_M", activations)
    p = np.random.default_rng(61).integers(0, _n_vocab(gpu), size=300, dtype=np.int64)
    stages = ["attn_out", "layer_out", "moe_router_indices"]
    full = gpu.forward(p, capture=stages, logits="all")
    gpu.reset()
    head = gpu.forward(p[:290], capture=stages, logits="all")
    steps = [head] + [gpu.forward(p[t:t + 1], capture=stages, logits="all") for t in range(290, 300)]
    dec = {k: np.concatenate([np.asarray(r.captures[k]) for r in steps]) for k in full.captures.keys()}
    _assert_captures_identical(full.captures.to_dict(), dec, "long prefill vs split-K decode (CUDA)")
    np.testing.assert_array_equal(full.logits.view(np.uint32),
                                  np.concatenate([r.logits for r in steps]).view(np.uint32))


def test_cpu_and_cuda_models_coexist(model_paths):
    path = model_paths("tiny-Q4_K_M")
    a = qwen3moe.load(path, device="cuda", n_ctx=64)
    b = qwen3moe.load(path, device="cpu", n_ctx=64)
    c = qwen3moe.load(path, device="cuda", n_ctx=64)
    p = np.array([1, 2, 3, 4, 5], dtype=np.int64)
    la, lb, lc = (m.forward(p).logits for m in (a, b, c))
    np.testing.assert_array_equal(la.view(np.uint32), lb.view(np.uint32))
    np.testing.assert_array_equal(la.view(np.uint32), lc.view(np.uint32))
    a.close()
    np.testing.assert_array_equal(c.forward(p[:1]).logits.view(np.uint32),
                                  b.forward(p[:1]).logits.view(np.uint32))


def test_cuda_bad_input_leaves_model_usable(model_paths):
    m = qwen3moe.load(model_paths("tiny-Q4_K_M"), device="cuda", n_ctx=16)
    nv = _n_vocab(m)
    with pytest.raises(ValueError, match="out of range"):
        m.forward([1, nv])
    assert m.n_past == 0
    with pytest.raises(ValueError, match="n_ctx"):
        m.forward(list(range(17)))
    ref = qwen3moe.load(model_paths("tiny-Q4_K_M"), device="cpu", n_ctx=16)
    np.testing.assert_array_equal(m.forward([3, 4]).logits.view(np.uint32), ref.forward([3, 4]).logits.view(np.uint32))


def test_cuda_out_of_memory_is_clean(tmp_path):
    from qwen3moe.testing import ModelConfig, write_model

    # A small (sparse, all-zero) file whose KV cache cannot fit on any GPU:
    # 2 x 32 layers x n_ctx 2^19 x kv_dim 4096 x 2 bytes (f16) = 256 GiB.
    cfg = ModelConfig(n_layer=32, n_embd=256, n_head=16, n_head_kv=16, head_dim=256, n_expert=2, n_expert_used=1,
                      n_ff_exp=256, n_ff=256, name="qwen3moe oom (synthetic)")
    path = write_model(str(tmp_path / "oom.gguf"), cfg, seed=1, types="Q8_0", data="sparse")
    free0, _ = _core.cuda_mem_info(0)
    with pytest.raises(qwen3moe.OutOfMemoryError, match="MiB"):
        qwen3moe.load(path, device="cuda", n_ctx=1 << 19)
    free1, _ = _core.cuda_mem_info(0)
    assert free1 >= free0 - (64 << 20), f"GPU memory leaked after a failed load: {free0 - free1} bytes"
    # The GPU is still usable: the same file at a small context loads and matches the CPU.
    m = qwen3moe.load(path, device="cuda", n_ctx=32)
    ref = qwen3moe.load(path, device="cpu", n_ctx=32)
    np.testing.assert_array_equal(m.forward([1, 2, 3]).logits.view(np.uint32),
                                  ref.forward([1, 2, 3]).logits.view(np.uint32))


def test_cuda_bench_uses_events_and_the_fused_decode(model_paths):
    from qwen3moe.bench import run_bench

    gpu = qwen3moe.load(model_paths("tiny-Q4_K_M"), device="cuda", n_ctx=256)
    try:
        res = run_bench(gpu, n_prompt=[32], n_gen=[8], depths=[0, 64], repetitions=3)
        assert [(r.n_prompt, r.n_gen, r.n_depth) for r in res] == [(32, 0, 0), (0, 8, 0), (32, 0, 64), (0, 8, 64)]
        for r in res:
            assert r.timer == "cuda-events" and len(r.samples_ns) == 3 and min(r.samples_ns) > 0
            assert min(r.samples_ts) <= r.median_ts <= max(r.samples_ts)
            assert r.peak_vram_bytes > 0
        assert res[-1].decode_path.startswith("cuda-graph"), res[-1].decode_path
    finally:
        gpu.close()
