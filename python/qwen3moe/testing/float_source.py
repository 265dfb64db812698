"""Seeded float source of every tensor of a synthetic model (data="float").

Design: each tensor is cut into slabs (one per expert for 3-D tensors, and rows grouped so a
slab holds at most SLAB_VALUES values); slab k of tensor `name` is drawn from
numpy.random.default_rng(SeedSequence([seed, crc32(name), k])), so a tensor's values depend only
on (seed, name, shape), the writer can quantise slab by slab in bounded memory, and tests get
the exact same floats through `float_tensors(...)[name]`.

Spreads (chosen so activations stay O(1) through many layers):
  token_embd N(0, 0.03); matrices (attn_q/k/v/output, experts, output) N(0, s^2) with
  s = 0.02 * sqrt(2048 / fan_in) (fan_in = ne[0]): 0.02 at the real model's width 2048, larger
  for narrow test models so every block (attention and MoE alike) adds an O(0.1..1) update;
  norms 1 + U(-0.1, 0.1); router rows N(0, (1.5 / sqrt(n_embd))^2), i.e. router logits of
  std ~1.5 for RMS-normalised inputs: top-k decisive but not degenerate.
  outlier_channels = c > 0: c residual channels (seeded choice) get x20 weights in the input
  columns of every matrix that reads the residual stream (attn_q/k/v, ffn_gate/up_exps, output).
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Iterator

import numpy as np

from .presets import ModelConfig, TensorSpec, tensor_specs

SLAB_VALUES = 1 << 22  # at most this many values per generated slab
EMBD_STD = 0.03
MATRIX_STD = 0.02  # at fan-in MATRIX_STD_FAN_IN
MATRIX_STD_FAN_IN = 2048
NORM_SPREAD = 0.1
ROUTER_LOGIT_STD = 1.5
OUTLIER_SCALE = 20.0
_OUTLIER_ROLES = ("attn_q", "attn_k", "attn_v", "ffn_gate_exps", "ffn_up_exps", "output")


def matrix_std(fan_in: int) -> float:
    """Standard deviation of a weight matrix with rows of `fan_in` values."""
    return MATRIX_STD * math.sqrt(MATRIX_STD_FAN_IN / fan_in)


def outlier_channel_indices(config: ModelConfig, seed: int) -> np.ndarray:
    """The residual channels scaled by outlier_channels (sorted; empty when 0)."""
    if config.outlier_channels == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0071E5]))
    return np.sort(rng.choice(config.n_embd, config.outlier_channels, replace=False))


def _rows_per_slab(row_len: int) -> int:
    return max(1, SLAB_VALUES // row_len)


def slab_layout(spec: TensorSpec) -> list[tuple[int, int, int]]:
    """[(expert or 0, first row, n rows)] of the slabs of a tensor, in file order."""
    if len(spec.ne) == 1:
        return [(0, 0, 1)]
    row_len, n_rows = spec.ne[0], spec.ne[1]
    n_mat = spec.ne[2] if len(spec.ne) == 3 else 1
    rps = _rows_per_slab(row_len)
    return [(e, r, min(rps, n_rows - r)) for e in range(n_mat) for r in range(0, n_rows, rps)]


def generate_slab(config: ModelConfig, seed: int, spec: TensorSpec, k: int, rows: int,
                  outliers: np.ndarray) -> np.ndarray:
    """Slab k of a tensor (`rows` rows of ne[0] values; 1-D for norms), float32."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(spec.name.encode()), k]))
    n = spec.ne[0]
    if spec.kind == "norm":
        return (1.0 + NORM_SPREAD * (2.0 * rng.random(n) - 1.0)).astype(np.float32)
    if spec.kind == "router":
        std = ROUTER_LOGIT_STD / math.sqrt(config.n_embd)
    elif spec.role == "token_embd":
        std = EMBD_STD
    else:
        std = matrix_std(n)
    x = rng.standard_normal((rows, n), dtype=np.float32) * np.float32(std)
    if outliers.size and spec.role in _OUTLIER_ROLES and n == config.n_embd:
        x[:, outliers] *= np.float32(OUTLIER_SCALE)
    return x


def iter_slabs(config: ModelConfig, seed: int, spec: TensorSpec,
               outliers: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The float32 slabs of a tensor in file order: (n rows, ne[0]) arrays (1-D for norms)."""
    if outliers is None:
        outliers = outlier_channel_indices(config, seed)
    for k, (_, _, rows) in enumerate(slab_layout(spec)):
        yield generate_slab(config, seed, spec, k, rows, outliers)


class FloatTensors(Mapping):
    """Lazy {GGUF tensor name: float32 array (NumPy shape = ne reversed)}."""

    def __init__(self, config: ModelConfig, seed: int, n_vocab: int):
        self.config = config  # the model
        self.seed = seed  # generation seed
        self.n_vocab = n_vocab  # token_embd/output rows
        self.specs = {s.name: s for s in tensor_specs(config, n_vocab)}  # name -> TensorSpec
        self._outliers = outlier_channel_indices(config, seed)

    def __getitem__(self, name: str) -> np.ndarray:
        spec = self.specs[name]
        parts = list(iter_slabs(self.config, self.seed, spec, self._outliers))
        if len(spec.ne) == 1:
            return parts[0]
        return np.concatenate(parts, axis=0).reshape(spec.shape)

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)


def float_tensors(preset_or_config: str | ModelConfig, seed: int = 0, *, n_vocab: int | None = None,
                  tokenizer=None) -> FloatTensors:
    """The exact float source of every tensor write_model(..., seed, data="float") quantises.

    The vocabulary size is `n_vocab`, else the config's, else the size of `tokenizer` (a
    tokenizer.json path, or None for the built-in vocab), as in write_model.
    """
    from .presets import resolve_config

    config, _ = resolve_config(preset_or_config)
    if n_vocab is None:
        n_vocab = config.n_vocab
    if n_vocab is None:
        from .writer import tokenizer_metadata

        n_vocab = len(tokenizer_metadata(tokenizer, None)["tokenizer.ggml.tokens"])
    return FloatTensors(config, int(seed), int(n_vocab))
