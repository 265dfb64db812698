"""Model shapes for synthetic qwen3moe GGUF files: ModelConfig, the presets, the tensor table.

Design: a ModelConfig holds the llama.cpp hyperparameters of a Qwen3-MoE model (names as in
ARCHITECTURE.md) plus the few metadata extras a preset needs; `tensor_specs(config, n_vocab)`
turns it into the exact GGUF tensor table (names, ne with ne[0] contiguous, role, layer).
Presets: `tiny` (CI, a few MB), `small` (a few tens of MB), `coder30b` (exactly the tensor
table and metadata keys of Qwen3-Coder-30B-A3B-Instruct-Q4_K_M.gguf: 579 tensors, 17.28 GiB).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from . import gguf_writer as gw

ARCH = "qwen3moe"


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of a synthetic qwen3moe model."""

    n_layer: int = 4  # transformer blocks (block_count)
    n_embd: int = 256  # residual width (embedding_length)
    n_head: int = 4  # query heads
    n_head_kv: int = 2  # key/value heads (GQA: n_head % n_head_kv == 0)
    head_dim: int = 64  # per-head width (key_length = value_length)
    n_expert: int = 8  # routed experts per layer
    n_expert_used: int = 2  # experts chosen per token (top-k)
    n_ff_exp: int = 256  # expert hidden width (expert_feed_forward_length)
    n_ff: int = 1024  # dense feed_forward_length (metadata only; no dense FFN in qwen3moe)
    n_vocab: int | None = None  # token_embd/output rows; None: the tokenizer's size
    n_ctx_train: int = 4096  # context_length (tokens)
    rope_freq_base: float = 1e7  # rope.freq_base
    rms_eps: float = 1e-6  # attention.layer_norm_rms_epsilon
    tied_output: bool = False  # True: no output.weight (output reuses token_embd)
    outlier_channels: int = 0  # residual channels whose input weight columns are x20
    name: str = "qwen3moe synthetic"  # general.name
    # Extra metadata written after the standard keys: key -> typed gguf_writer.Value.
    extra_metadata: dict = field(default_factory=dict)  # {key: Value}
    # Extra general.* keys written right after general.name (coder30b): key -> Value.
    general_metadata: dict = field(default_factory=dict)  # {key: Value}

    def __post_init__(self) -> None:
        ints = ("n_layer", "n_embd", "n_head", "n_head_kv", "head_dim", "n_expert",
                "n_expert_used", "n_ff_exp", "n_ff", "n_ctx_train")
        for k in ints:
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"ModelConfig.{k} must be a positive integer, got {v!r}")
        if self.n_vocab is not None and (not isinstance(self.n_vocab, int) or self.n_vocab <= 0):
            raise ValueError(f"ModelConfig.n_vocab must be a positive integer or None, got {self.n_vocab!r}")
        if self.n_head % self.n_head_kv:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_head_kv ({self.n_head_kv})")
        if self.n_expert_used > self.n_expert:
            raise ValueError(f"n_expert_used ({self.n_expert_used}) exceeds n_expert ({self.n_expert})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even (RoPE pairs), got {self.head_dim}")
        if not 0 <= self.outlier_channels <= self.n_embd:
            raise ValueError(f"outlier_channels must be in [0, n_embd], got {self.outlier_channels}")
        if not (self.rope_freq_base > 0 and self.rms_eps > 0):
            raise ValueError("rope_freq_base and rms_eps must be positive")

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def fingerprint(self) -> str:
        """Stable hash of every field (for cache keys)."""
        def enc(v: Any) -> Any:
            if isinstance(v, gw.Value):
                return [int(v.type), enc(v.value), None if v.elem_type is None else int(v.elem_type)]
            if isinstance(v, dict):
                return {k: enc(x) for k, x in sorted(v.items())}
            if isinstance(v, (list, tuple)):
                return [enc(x) for x in v]
            return v

        d = {f.name: enc(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the model."""

    name: str  # GGUF name, e.g. "blk.3.ffn_down_exps.weight"
    ne: tuple[int, ...]  # shape, ne[0] contiguous (rows of ne[0] values)
    role: str  # "token_embd", "attn_q", ..., "output" (the name without blk.N. and .weight)
    layer: int | None  # block index, None for global tensors

    @property
    def kind(self) -> str:
        """Role class: norm (1-D, kept F32), router (ffn_gate_inp, kept F32) or matrix."""
        if self.role.endswith("norm"):
            return "norm"
        if self.role == "ffn_gate_inp":
            return "router"
        return "matrix"

    @property
    def shape(self) -> tuple[int, ...]:
        """NumPy shape (ne reversed)."""
        return tuple(reversed(self.ne))


def tensor_specs(config: ModelConfig, n_vocab: int) -> list[TensorSpec]:
    """The GGUF tensor table of a config (ARCHITECTURE.md section 1 names and ne)."""
    c = config
    q_dim = c.n_head * c.head_dim
    kv_dim = c.n_head_kv * c.head_dim
    specs = [TensorSpec("token_embd.weight", (c.n_embd, n_vocab), "token_embd", None)]
    for i in range(c.n_layer):
        def t(role: str, ne: tuple[int, ...]) -> TensorSpec:
            return TensorSpec(f"blk.{i}.{role}.weight", ne, role, i)

        specs += [
            t("attn_norm", (c.n_embd,)),
            t("attn_q", (c.n_embd, q_dim)),
            t("attn_k", (c.n_embd, kv_dim)),
            t("attn_v", (c.n_embd, kv_dim)),
            t("attn_q_norm", (c.head_dim,)),
            t("attn_k_norm", (c.head_dim,)),
            t("attn_output", (q_dim, c.n_embd)),
            t("ffn_norm", (c.n_embd,)),
            t("ffn_gate_inp", (c.n_embd, c.n_expert)),
            t("ffn_gate_exps", (c.n_embd, c.n_ff_exp, c.n_expert)),
            t("ffn_up_exps", (c.n_embd, c.n_ff_exp, c.n_expert)),
            t("ffn_down_exps", (c.n_ff_exp, c.n_embd, c.n_expert)),
        ]
    specs.append(TensorSpec("output_norm.weight", (c.n_embd,), "output_norm", None))
    if not c.tied_output:
        specs.append(TensorSpec("output.weight", (c.n_embd, n_vocab), "output", None))
    return specs


TINY = ModelConfig(
    n_layer=4, n_embd=256, n_head=4, n_head_kv=2, head_dim=64, n_expert=8, n_expert_used=2,
    n_ff_exp=256, n_ff=768, n_ctx_train=4096, rope_freq_base=1e7, rms_eps=1e-6,
    name="qwen3moe tiny (synthetic)",
)

SMALL = ModelConfig(
    n_layer=4, n_embd=512, n_head=8, n_head_kv=2, head_dim=64, n_expert=16, n_expert_used=4,
    n_ff_exp=256, n_ff=1536, n_ctx_train=8192, rope_freq_base=1e7, rms_eps=1e-6,
    name="qwen3moe small (synthetic)",
)

# Qwen3-Coder-30B-A3B-Instruct as converted by llama.cpp's convert_hf_to_gguf.py and quantised
# by llama-quantize (Q4_K_M with an importance matrix, as the published files are): the general.*
# keys convert writes from the HF model card, the qwen3moe.* hyperparameters from config.json
# (shared_expert_intermediate_size 0 gives expert_shared_feed_forward_length 0) and the
# quantize.imatrix.* keys llama-quantize adds (their values here are synthetic: 337 = 48 layers x 7
# matmul weights + output).
CODER30B = ModelConfig(
    n_layer=48, n_embd=2048, n_head=32, n_head_kv=4, head_dim=128, n_expert=128, n_expert_used=8,
    n_ff_exp=768, n_ff=5472, n_vocab=151936, n_ctx_train=262144, rope_freq_base=1e7, rms_eps=1e-6,
    name="Qwen3-Coder-30B-A3B-Instruct",
    general_metadata={
        "general.finetune": gw.string("Instruct"),
        "general.basename": gw.string("Qwen3-Coder-30B-A3B-Instruct"),
        "general.quantized_by": gw.string("Unsloth"),
        "general.size_label": gw.string("30B-A3B"),
        "general.license": gw.string("apache-2.0"),
        "general.license.link": gw.string(
            "https://huggingface.co/Qwen/Qwen3-Coder-30B-A3B-Instruct/blob/main/LICENSE"),
        "general.repo_url": gw.string("https://huggingface.co/unsloth"),
        "general.base_model.count": gw.u32(1),
        "general.base_model.0.name": gw.string("Qwen3 Coder 30B A3B Instruct"),
        "general.base_model.0.organization": gw.string("Qwen"),
        "general.base_model.0.repo_url": gw.string(
            "https://huggingface.co/Qwen/Qwen3-Coder-30B-A3B-Instruct"),
        "general.tags": gw.array(gw.ValueType.STRING, ["unsloth", "qwen3", "qwen"]),
    },
    extra_metadata={
        "qwen3moe.expert_shared_feed_forward_length": gw.u32(0),
        "quantize.imatrix.file": gw.string("Qwen3-Coder-30B-A3B-Instruct-GGUF/imatrix_unsloth.gguf"),
        "quantize.imatrix.dataset": gw.string("unsloth_calibration_Qwen3-Coder-30B-A3B-Instruct.txt"),
        "quantize.imatrix.entries_count": gw.u32(337),
        "quantize.imatrix.chunks_count": gw.u32(154),
    },
)

PRESETS: dict[str, ModelConfig] = {"tiny": TINY, "small": SMALL, "coder30b": CODER30B}

# Default data mode per preset (write_model(data=None)).
DEFAULT_DATA: dict[str, str] = {"tiny": "float", "small": "float", "coder30b": "random"}


def resolve_config(preset_or_config: str | ModelConfig) -> tuple[ModelConfig, str | None]:
    """(config, preset name or None) of a preset name or a ModelConfig."""
    if isinstance(preset_or_config, ModelConfig):
        return preset_or_config, None
    if isinstance(preset_or_config, str) and preset_or_config in PRESETS:
        return PRESETS[preset_or_config], preset_or_config
    raise ValueError(f"unknown preset {preset_or_config!r} (presets: {', '.join(PRESETS)})")
