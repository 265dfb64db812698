"""write_model: a synthetic qwen3moe GGUF file of any shape, type mix and data mode.

Design: resolve the config and tokenizer, build the tensor table and type assignment (errors
before any byte is written), declare metadata in llama.cpp's key order and value types, then
stream tensors through gguf_writer.GGUFWriter. Data modes:
  "float"  seeded float tensors (float_source) quantised slab by slab with qwen3moe.quant
           on a thread pool (results written in file order, so bytes do not depend on it)
  "random" random valid blocks from per-type pools (random_blocks), no quantiser: fast for
           big presets; norms (and other small F32/F16/BF16 non-matrix tensors) still come
           from the float source so they stay near 1
  "sparse" header only, file extended with truncate (tensor bytes read as zeros)
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from . import gguf_writer as gw
from .float_source import Structure, generate_slab, model_structure, slab_layout
from .presets import ARCH, DEFAULT_DATA, ModelConfig, TensorSpec, resolve_config, tensor_specs
from .random_blocks import BlockPool
from .recipes import assign_types, file_type

DATA_MODES = ("float", "random", "sparse")
TOKEN_TYPE_UNUSED = 5  # llama.cpp token type of padding entries ("[PAD<id>]")


def _unwrap(v: Any) -> Any:
    return v.value if isinstance(v, gw.Value) else v


def tokenizer_metadata(tokenizer: str | os.PathLike | None, n_vocab: int | None) -> dict[str, Any]:
    """GGUF tokenizer keys: the built-in byte vocab (tokenizer=None) or a tokenizer.json (a file
    or a directory holding one; tokenizer_config.json beside it is used when present), padded
    to `n_vocab` entries with "[PAD<id>]" tokens of type UNUSED as convert_hf_to_gguf does."""
    from .. import hf_tokenizer

    if tokenizer is None:
        kv = dict(hf_tokenizer.builtin_byte_vocab())
    else:
        p = Path(tokenizer)
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {p}")
        cfg = p.with_name("tokenizer_config.json")
        kv = dict(hf_tokenizer.gguf_tokenizer_metadata(str(p), str(cfg) if cfg.is_file() else None))
    if "tokenizer.ggml.tokens" not in kv:
        raise ValueError("tokenizer metadata lacks tokenizer.ggml.tokens")
    tokens = list(_unwrap(kv["tokenizer.ggml.tokens"]))
    if n_vocab is None or n_vocab == len(tokens):
        return kv
    if len(tokens) > n_vocab:
        raise ValueError(f"tokenizer has {len(tokens)} tokens, more than the model's n_vocab {n_vocab}")
    n_pad = n_vocab - len(tokens)
    kv["tokenizer.ggml.tokens"] = tokens + [f"[PAD{i}]" for i in range(len(tokens), n_vocab)]
    if "tokenizer.ggml.token_type" in kv:
        tt = np.asarray(_unwrap(kv["tokenizer.ggml.token_type"]), dtype=np.int32)
        kv["tokenizer.ggml.token_type"] = np.concatenate([tt, np.full(n_pad, TOKEN_TYPE_UNUSED, np.int32)])
    if "tokenizer.ggml.scores" in kv:
        sc = np.asarray(_unwrap(kv["tokenizer.ggml.scores"]), dtype=np.float32)
        kv["tokenizer.ggml.scores"] = np.concatenate([sc, np.full(n_pad, -1000.0, np.float32)])
    return kv


def _bf16_bytes(x: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype("<u2")


def encode_floats(x: np.ndarray, type_name: str) -> np.ndarray:
    """Bytes of float32 rows (last dim) in a GGML type: F32/F16/BF16 by NumPy (round to
    nearest even), block types by qwen3moe.quant.quantize."""
    if type_name == "F32":
        return np.ascontiguousarray(x, dtype="<f4")
    if type_name == "F16":
        return x.astype("<f2")
    if type_name == "BF16":
        return _bf16_bytes(x)
    from .. import quant

    return np.asarray(quant.quantize(np.ascontiguousarray(x, dtype=np.float32), type_name), dtype=np.uint8)


def model_metadata(config: ModelConfig, ftype: int, tok_kv: dict[str, Any]) -> list[tuple[str, Any]]:
    """GGUF metadata (key, typed value) of a qwen3moe model in llama.cpp's key order: general.*,
    the qwen3moe.* hyperparameters of `config`, general.file_type `ftype`, then the tokenizer keys."""
    c = config
    a = ARCH
    kv: list[tuple[str, Any]] = [
        ("general.architecture", gw.string(a)),
        ("general.type", gw.string("model")),
        ("general.name", gw.string(c.name)),
    ]
    kv += list(c.general_metadata.items())
    kv += [
        (f"{a}.block_count", gw.u32(c.n_layer)),
        (f"{a}.context_length", gw.u32(c.n_ctx_train)),
        (f"{a}.embedding_length", gw.u32(c.n_embd)),
        (f"{a}.feed_forward_length", gw.u32(c.n_ff)),
        (f"{a}.attention.head_count", gw.u32(c.n_head)),
        (f"{a}.attention.head_count_kv", gw.u32(c.n_head_kv)),
        (f"{a}.rope.freq_base", gw.f32(c.rope_freq_base)),
        (f"{a}.attention.layer_norm_rms_epsilon", gw.f32(c.rms_eps)),
        (f"{a}.expert_used_count", gw.u32(c.n_expert_used)),
        (f"{a}.attention.key_length", gw.u32(c.head_dim)),
        (f"{a}.attention.value_length", gw.u32(c.head_dim)),
        ("general.file_type", gw.u32(ftype)),
        (f"{a}.expert_count", gw.u32(c.n_expert)),
        (f"{a}.expert_feed_forward_length", gw.u32(c.n_ff_exp)),
    ]
    kv += [(k, v) for k, v in c.extra_metadata.items() if k.startswith(a + ".")]
    kv.append(("general.quantization_version", gw.u32(2)))
    kv += list(tok_kv.items())
    kv += [(k, v) for k, v in c.extra_metadata.items() if not k.startswith(a + ".")]
    return kv


def _float_source(config: ModelConfig, seed: int, spec: TensorSpec, t: str, structure: Structure,
                  pool: Executor | None, depth: int) -> Callable:
    """Chunks of a tensor from the float source: slabs generated and quantised on `pool`
    threads (NumPy's generator and the quantisers release the GIL), `depth` slabs ahead,
    yielded in file order."""
    def job(k: int, rows: int) -> np.ndarray:
        return encode_floats(generate_slab(config, seed, spec, k, rows, structure), t)

    def chunks():
        todo = iter(enumerate(slab_layout(spec)))
        if pool is None:
            for k, (_, _, rows) in todo:
                yield job(k, rows)
            return
        ahead: deque = deque()
        for k, (_, _, rows) in todo:
            ahead.append(pool.submit(job, k, rows))
            if len(ahead) >= depth:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()

    return chunks


def write_model(
    path: str | os.PathLike,
    preset_or_config: str | ModelConfig = "tiny",
    seed: int = 0,
    types: str | Mapping[str, str] | None = "Q4_K_M",
    tokenizer: str | os.PathLike | None = None,
    data: str | None = None,
    progress: bool | Callable[[int], Any] = False,
    alignment: int = gw.DEFAULT_ALIGNMENT,
) -> str:
    """Write a synthetic qwen3moe GGUF file and return its path.

    preset_or_config: "tiny", "small", "coder30b" or a ModelConfig.
    types: "Q4_K_M" / "Q5_K_M" (llama.cpp recipes), a single type name ("Q8_0", "Q6_K",
        "F16", "BF16", "F32", "Q4_0", "Q4_K", "Q5_K"), or {name or glob: type}.
    tokenizer: None (built-in byte vocab) or a tokenizer.json path / its directory.
    data: "float" (seeded floats quantised by qwen3moe.quant), "random" (random valid blocks),
        "sparse" (header only, sparse file); None: the preset's default ("random" for coder30b,
        else "float").
    progress: True for a tqdm bar, or a callable receiving byte counts.
    Raises ValueError for unknown presets/types/modes, unsupported types, row lengths that are
    not a multiple of the block size (naming the tensor), or a tokenizer larger than n_vocab.
    """
    config, preset = resolve_config(preset_or_config)
    if data is None:
        data = DEFAULT_DATA.get(preset, "float") if preset else "float"
    if data not in DATA_MODES:
        raise ValueError(f"data must be one of {DATA_MODES}, got {data!r}")
    seed = int(seed)
    tok_kv = tokenizer_metadata(tokenizer, config.n_vocab)
    n_vocab = len(_unwrap(tok_kv["tokenizer.ggml.tokens"]))
    specs = tensor_specs(config, n_vocab)
    assigned = assign_types(specs, config.n_layer, types)
    ftype = file_type(types, assigned, specs)

    w = gw.GGUFWriter(path, alignment=alignment)
    for k, v in model_metadata(config, ftype, tok_kv):
        w.add(k, v)

    structure = model_structure(config, seed, n_vocab)
    workers = max(1, min(os.cpu_count() or 1, 32))
    executor = ThreadPoolExecutor(workers) if data == "float" and workers > 1 else None
    pools: dict[str, BlockPool] = {}
    for index, spec in enumerate(specs):
        t = assigned[spec.name]
        src: gw.DataSource = None
        if data == "float" or (data == "random" and spec.kind != "matrix" and t in ("F32", "F16", "BF16")):
            src = _float_source(config, seed, spec, t, structure, executor, 2 * workers)
        elif data == "random":
            if t not in pools:
                pools[t] = BlockPool(t, seed)
            nbytes = gw.tensor_nbytes(t, spec.ne, spec.name)
            src = (lambda p=pools[t], n=nbytes, i=index: p.stream(n, i))
        w.add_tensor(spec.name, spec.ne, t, src)

    try:
        if data == "sparse":
            return w.write(sparse=True)
        if progress is True:
            from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

            with tqdm(total=w.total_tensor_bytes(), unit="B", unit_scale=True, unit_divisor=1024,
                      desc=os.path.basename(os.fspath(path))) as bar:
                return w.write(progress=bar.update)
        return w.write(progress=progress if callable(progress) else None)
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def model_tensor_types(preset_or_config: str | ModelConfig, types: str | Mapping[str, str] | None = "Q4_K_M",
                       n_vocab: int = 1024) -> dict[str, str]:
    """{tensor name: type} that write_model would use (n_vocab only sets token_embd/output rows)."""
    config, _ = resolve_config(preset_or_config)
    specs = tensor_specs(config, config.n_vocab or n_vocab)
    return assign_types(specs, config.n_layer, types)
