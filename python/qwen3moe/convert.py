"""Hugging Face Qwen3MoeForCausalLM directory -> qwen3moe GGUF file (no torch needed).

    convert(hf_dir, out_path, type="Q4_K_M", type_map=None, progress=False) -> str
    qwen3moe convert HF_DIR OUT.gguf --type Q4_K_M [--type-map 'glob=TYPE,...']

Design: config.json becomes a testing.ModelConfig (with clear errors for what the engine does
not run: dense layers, unnormalised top-k, biases, sliding windows, rope scaling); the tensor
table, type recipe, metadata and the GGUF serializer are those of qwen3moe.testing (presets.
tensor_specs, recipes.assign_types, writer.model_metadata, gguf_writer.GGUFWriter), so converted
and synthetic files cannot drift apart. Safetensors shards are read by the small reader below
(8-byte header length, JSON header, raw little-endian bytes; memory-mapped; F32/F16/BF16/F64 to
float32, bf16 by a 16-bit shift). Tensors are streamed one at a time; expert tensors are built
and encoded one expert at a time, so peak memory stays near one expert matrix plus one HF
tensor, far below the checkpoint size.

Name map (HF -> GGUF, ne[0] contiguous = the HF [out, in] row layout as is):
  model.embed_tokens.weight                    token_embd.weight
  model.layers.N.input_layernorm               blk.N.attn_norm
  model.layers.N.self_attn.{q,k,v,o}_proj      blk.N.attn_{q,k,v,output}
  model.layers.N.self_attn.{q,k}_norm          blk.N.attn_{q,k}_norm
  model.layers.N.post_attention_layernorm      blk.N.ffn_norm
  model.layers.N.mlp.gate                      blk.N.ffn_gate_inp
  model.layers.N.mlp.experts.E.{gate,up,down}_proj.weight  stacked into blk.N.ffn_{gate,up,down}_exps
    (or fused, as transformers 5 holds them in memory: mlp.experts.gate_up_proj [E, 2*ff, n_embd]
     with gate first, mlp.experts.down_proj [E, n_embd, ff])
  model.norm                                   output_norm
  lm_head                                      output (absent or tied: no output tensor)
"""
from __future__ import annotations

import json
import mmap
import os
import re
import struct
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .testing import gguf_writer as gw
from .testing.presets import ModelConfig, TensorSpec, tensor_specs
from .testing.recipes import FILE_TYPES, assign_types, override_types
from .testing.writer import encode_floats, model_metadata, tokenizer_metadata

__all__ = ["CONVERT_TYPES", "SafetensorsReader", "config_from_hf", "convert"]

CONVERT_TYPES = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16", "F32")

# ---- safetensors ---------------------------------------------------------------------------

_ST_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2), "F64": ("<f8", 8)}
_MAX_HEADER = 100 * 2**20  # the safetensors format's own limit on the JSON header


class SafetensorsReader:
    """Tensors of a Hugging Face checkpoint directory (model.safetensors, or shards listed by
    model.safetensors.index.json, or every *.safetensors file), memory-mapped, read as float32."""

    def __init__(self, hf_dir: str | os.PathLike):
        d = Path(hf_dir)
        index = d / "model.safetensors.index.json"
        if index.is_file():
            with open(index, encoding="utf-8") as f:
                wm = json.load(f).get("weight_map")
            if not isinstance(wm, dict) or not wm:
                raise ValueError(f"{index}: no weight_map")
            files = sorted({d / v for v in wm.values()})
        else:
            files = sorted(d.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors files in {d}")
        self._where: dict[str, tuple[Path, str, tuple[int, ...], int, int]] = {}  # name -> (file, dtype, shape, begin, end)
        self._maps: dict[Path, mmap.mmap] = {}
        for p in files:
            self._scan(p)

    def _scan(self, p: Path) -> None:
        if not p.is_file():
            raise FileNotFoundError(f"safetensors shard not found: {p}")
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ValueError(f"{p}: too short for a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > min(_MAX_HEADER, size - 8):
                raise ValueError(f"{p}: bad safetensors header length {n}")
            try:
                header = json.loads(f.read(n))
            except ValueError as e:
                raise ValueError(f"{p}: bad safetensors header JSON: {e}") from None
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype = info["dtype"]
                shape = tuple(int(x) for x in info["shape"])
                b, e = (int(x) for x in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{p}: bad header entry for tensor {name!r}") from None
            if dtype not in _ST_DTYPES:
                raise ValueError(f"{p}: tensor {name!r} has dtype {dtype}; supported: {', '.join(_ST_DTYPES)}")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if any(x < 0 for x in shape) or not 0 <= b <= e or e - b != count * _ST_DTYPES[dtype][1] or base + e > size:
                raise ValueError(f"{p}: tensor {name!r}: offsets {b}..{e} do not fit {dtype} {list(shape)} in the file")
            if name in self._where:
                raise ValueError(f"tensor {name!r} appears in both {self._where[name][0]} and {p}")
            self._where[name] = (p, dtype, shape, base + b, base + e)

    def names(self) -> list[str]:
        """Every tensor name in the checkpoint."""
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        """The HF shape of a tensor (row-major, last dim contiguous)."""
        return self._entry(name)[2]

    def _entry(self, name: str):
        try:
            return self._where[name]
        except KeyError:
            raise KeyError(f"tensor {name!r} not in the checkpoint") from None

    def get(self, name: str, index: int | None = None) -> np.ndarray:
        """The tensor as a new float32 array of its HF shape; with `index`, only the sub-array
        tensor[index] (along the first dimension), read without touching the rest."""
        p, dtype, shape, b, e = self._entry(name)
        if index is not None:
            if not shape or not 0 <= index < shape[0]:
                raise IndexError(f"tensor {name!r}: index {index} out of range for shape {list(shape)}")
            step = (e - b) // shape[0]
            b, e, shape = b + index * step, b + (index + 1) * step, shape[1:]
        m = self._maps.get(p)
        if m is None:
            with open(p, "rb") as f:
                m = self._maps[p] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        npdt, _ = _ST_DTYPES[dtype]
        raw = np.frombuffer(m, dtype=npdt, count=(e - b) // np.dtype(npdt).itemsize, offset=b)
        if dtype == "BF16":
            out = (raw.astype(np.uint32) << np.uint32(16)).view(np.float32)
        else:
            out = raw.astype(np.float32)
        return out.reshape(shape)

    def close(self) -> None:
        """Unmap every shard."""
        for m in self._maps.values():
            try:
                m.close()
            except BufferError:  # an array still views it; the map goes with the last one
                pass
        self._maps.clear()


# ---- config --------------------------------------------------------------------------------


def _cfg_get(cfg: Mapping[str, Any], *keys: str, default: Any = None, required: bool = True) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    if default is None and required:
        raise ValueError(f"config.json lacks {keys[0]!r}")
    return default


def config_from_hf(cfg: Mapping[str, Any], name: str = "qwen3moe") -> ModelConfig:
    """A ModelConfig (llama.cpp hparams) from a Qwen3-MoE config.json dict; ValueError for a
    config the qwen3moe engine cannot run as written (it would compute a different function)."""
    mt = cfg.get("model_type")
    arch = cfg.get("architectures") or []
    if mt not in (None, "qwen3_moe") or (arch and "Qwen3MoeForCausalLM" not in arch):
        raise ValueError(f"not a Qwen3-MoE checkpoint: model_type {mt!r}, architectures {arch}")
    n_layer = int(_cfg_get(cfg, "num_hidden_layers"))
    n_embd = int(_cfg_get(cfg, "hidden_size"))
    n_head = int(_cfg_get(cfg, "num_attention_heads"))
    n_head_kv = int(_cfg_get(cfg, "num_key_value_heads", default=n_head))
    head_dim = int(_cfg_get(cfg, "head_dim", default=n_embd // n_head))
    n_expert = int(_cfg_get(cfg, "num_experts", "num_local_experts"))
    n_expert_used = int(_cfg_get(cfg, "num_experts_per_tok"))
    n_ff_exp = int(_cfg_get(cfg, "moe_intermediate_size"))
    n_ff = int(_cfg_get(cfg, "intermediate_size", default=n_ff_exp))
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", None):
        raise ValueError(f"rope scaling {rope_type!r} is not supported (only the default RoPE)")
    theta = float(rope.get("rope_theta") or cfg.get("rope_theta") or 10000.0)
    if not cfg.get("norm_topk_prob", False):
        raise ValueError("norm_topk_prob is false: the engine renormalises the top-k router weights "
                         "(Qwen3-MoE's published models set norm_topk_prob=true)")
    step = int(cfg.get("decoder_sparse_step", 1) or 1)
    mlp_only = list(cfg.get("mlp_only_layers") or [])
    dense = sorted(set(mlp_only) | {i for i in range(n_layer) if (i + 1) % step != 0})
    if n_expert <= 0 or dense:
        raise ValueError(f"layers {dense if dense else 'all'} would be dense MLP layers (decoder_sparse_step="
                         f"{step}, mlp_only_layers={mlp_only}); the engine runs all-MoE models only")
    if cfg.get("attention_bias", False):
        raise ValueError("attention_bias=true is not supported (qwen3moe has no attention biases)")
    if cfg.get("use_sliding_window", False):
        raise ValueError("use_sliding_window=true is not supported")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {cfg.get('hidden_act')!r} is not supported (silu only)")
    if cfg.get("shared_expert_intermediate_size"):
        raise ValueError("shared experts are not part of qwen3moe")
    try:
        return ModelConfig(
            n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv, head_dim=head_dim,
            n_expert=n_expert, n_expert_used=n_expert_used, n_ff_exp=n_ff_exp, n_ff=n_ff,
            n_vocab=int(_cfg_get(cfg, "vocab_size")),
            n_ctx_train=int(_cfg_get(cfg, "max_position_embeddings", default=4096)),
            rope_freq_base=theta, rms_eps=float(_cfg_get(cfg, "rms_norm_eps", default=1e-6)),
            tied_output=bool(cfg.get("tie_word_embeddings", False)), name=name,
        )
    except ValueError as e:
        raise ValueError(f"config.json: {e}") from None


# ---- tensors -------------------------------------------------------------------------------

_LAYER_MAP = {
    "attn_norm": "input_layernorm.weight",
    "attn_q": "self_attn.q_proj.weight",
    "attn_k": "self_attn.k_proj.weight",
    "attn_v": "self_attn.v_proj.weight",
    "attn_output": "self_attn.o_proj.weight",
    "attn_q_norm": "self_attn.q_norm.weight",
    "attn_k_norm": "self_attn.k_norm.weight",
    "ffn_norm": "post_attention_layernorm.weight",
    "ffn_gate_inp": "mlp.gate.weight",
}
_EXPERT_PROJ = {"ffn_gate_exps": "gate_proj", "ffn_up_exps": "up_proj", "ffn_down_exps": "down_proj"}
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")


class _Source:
    """Which HF tensors make each GGUF tensor, and how (checked against the table before writing)."""

    def __init__(self, st: SafetensorsReader, config: ModelConfig):
        self.st = st
        self.c = config
        self.used: set[str] = set()

    def _need(self, name: str, shape: tuple[int, ...], gguf: str) -> str:
        if name not in self.st:
            raise ValueError(f"checkpoint lacks {name!r} (needed for {gguf})")
        if self.st.shape(name) != shape:
            raise ValueError(f"{name}: shape {list(self.st.shape(name))}, expected {list(shape)} for {gguf}")
        self.used.add(name)
        return name

    def plan(self, spec: TensorSpec) -> Callable[[], Iterator[np.ndarray]]:
        """A function yielding float32 slabs (rows of ne[0]) of the GGUF tensor, in file order."""
        shape = spec.shape
        if spec.role == "token_embd":
            n = self._need("model.embed_tokens.weight", shape, spec.name)
            return lambda: iter([self.st.get(n)])
        if spec.role == "output_norm":
            n = self._need("model.norm.weight", shape, spec.name)
            return lambda: iter([self.st.get(n)])
        if spec.role == "output":
            n = self._need("lm_head.weight", shape, spec.name)
            return lambda: iter([self.st.get(n)])
        pre = f"model.layers.{spec.layer}."
        if spec.role in _LAYER_MAP:
            n = self._need(pre + _LAYER_MAP[spec.role], shape, spec.name)
            return lambda: iter([self.st.get(n)])
        if spec.role in _EXPERT_PROJ:
            return self._experts(spec, pre)
        raise ValueError(f"internal: no HF source for {spec.name}")

    def _experts(self, spec: TensorSpec, pre: str) -> Callable[[], Iterator[np.ndarray]]:
        E, rows, cols = spec.shape  # [n_expert, out, in]
        proj = _EXPERT_PROJ[spec.role]
        per = [f"{pre}mlp.experts.{e}.{proj}.weight" for e in range(E)]
        if all(n in self.st for n in per):
            names = [self._need(n, (rows, cols), spec.name) for n in per]
            return lambda: (self.st.get(n) for n in names)
        ff = self.c.n_ff_exp
        fused = pre + ("mlp.experts.down_proj" if spec.role == "ffn_down_exps" else "mlp.experts.gate_up_proj")
        if fused not in self.st:
            missing = [n for n in per if n not in self.st]
            raise ValueError(f"checkpoint lacks experts of layer {spec.layer}: {missing[:3]}"
                             f"{' ...' if len(missing) > 3 else ''} (and no fused {fused!r})")
        if spec.role == "ffn_down_exps":
            if fused in self.st and self.st.shape(fused) == (E, cols, rows) and rows != cols:
                # [E, ff, n_embd] (in, out) layout: transpose each expert
                n = self._need(fused, (E, cols, rows), spec.name)
                return lambda: (np.ascontiguousarray(self.st.get(n, e).T) for e in range(E))
            n = self._need(fused, (E, rows, cols), spec.name)
            return lambda: (self.st.get(n, e) for e in range(E))
        half = slice(0, ff) if spec.role == "ffn_gate_exps" else slice(ff, 2 * ff)
        if fused in self.st and self.st.shape(fused) == (E, cols, 2 * ff) and cols != 2 * ff:
            n = self._need(fused, (E, cols, 2 * ff), spec.name)  # [E, n_embd, 2*ff] layout
            return lambda: (np.ascontiguousarray(self.st.get(n, e)[:, half].T) for e in range(E))
        n = self._need(fused, (E, 2 * ff, cols), spec.name)
        return lambda: (np.ascontiguousarray(self.st.get(n, e)[half]) for e in range(E))


def _encoded(slabs: Callable[[], Iterator[np.ndarray]], t: str) -> Callable[[], Iterator[np.ndarray]]:
    def chunks():
        for x in slabs():
            yield encode_floats(np.ascontiguousarray(x, dtype=np.float32), t)

    return chunks


# ---- convert -------------------------------------------------------------------------------


def convert(hf_dir: str | os.PathLike, out_path: str | os.PathLike, type: str = "Q4_K_M",
            type_map: str | Mapping[str, str] | None = None, progress: bool | Callable[[int], Any] = False) -> str:
    """Convert a Hugging Face Qwen3MoeForCausalLM directory to a qwen3moe GGUF file; returns its path.

    hf_dir: config.json, *.safetensors (one file or shards with model.safetensors.index.json),
        tokenizer.json (+ tokenizer_config.json for bos/eos/pad ids and the chat template).
    type: "Q4_K_M" / "Q5_K_M" (llama.cpp recipes: see qwen3moe.testing.recipes), or every matrix
        in "Q6_K", "Q8_0", "F16", "BF16" (norms and router F32), or "F32" (everything).
    type_map: overrides, {GGUF name or glob: type} or "glob=TYPE,glob=TYPE" (e.g.
        "*ffn_down_exps*=Q8_0,output=Q8_0"); the exact name wins, else the longest glob.
    progress: True for a tqdm bar over the bytes written, or a callable receiving byte counts.
    Raises ValueError (bad or unsupported config/checkpoint/type, naming the field or tensor),
    FileNotFoundError (missing files). Nothing is left at out_path on failure.
    """
    d = Path(hf_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"not a directory: {d}")
    if not isinstance(type, str) or type.upper() not in CONVERT_TYPES:
        raise ValueError(f"type must be one of {', '.join(CONVERT_TYPES)}, got {type!r}")
    type = type.upper()
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"config.json not found in {d}")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    tok_path = d / "tokenizer.json"
    if not tok_path.is_file():
        raise FileNotFoundError(f"tokenizer.json not found in {d}")

    st = SafetensorsReader(d)
    try:
        name = str(cfg.get("_name_or_path") or d.resolve().name)
        config = config_from_hf(cfg, name=name)
        if not config.tied_output and "lm_head.weight" not in st:
            config = config.replace(tied_output=True)  # no lm_head: the output reuses token_embd
        n_vocab = int(config.n_vocab or 0)
        tok_kv = tokenizer_metadata(tok_path, n_vocab)
        specs = tensor_specs(config, n_vocab)
        assigned = assign_types(specs, config.n_layer, type)
        if type_map:
            assigned = override_types(specs, config.n_layer, assigned, type_map)
        ftype = FILE_TYPES[type]  # general.file_type names the recipe, overrides or not

        src = _Source(st, config)
        plans = [(s, src.plan(s)) for s in specs]  # every HF tensor found and shape-checked first
        unused = [n for n in st.names() if n not in src.used and not _IGNORED.match(n)]
        if config.tied_output and "lm_head.weight" in unused:
            unused.remove("lm_head.weight")
        if unused:
            raise ValueError(f"checkpoint has {len(unused)} tensor(s) the qwen3moe layout does not use, "
                             f"e.g. {unused[:3]} (not a plain Qwen3-MoE model?)")

        w = gw.GGUFWriter(out_path)
        for k, v in model_metadata(config, ftype, tok_kv):
            w.add(k, v)
        for s, plan in plans:
            w.add_tensor(s.name, s.ne, assigned[s.name], _encoded(plan, assigned[s.name]))
        if progress is True:
            from tqdm import tqdm

            with tqdm(total=w.total_tensor_bytes(), unit="B", unit_scale=True, unit_divisor=1024,
                      desc=os.path.basename(os.fspath(out_path))) as bar:
                return w.write(progress=bar.update)
        return w.write(progress=progress if callable(progress) else None)
    finally:
        st.close()
