"""Seeded float source of every tensor of a synthetic model (data="float").

Design: each tensor is cut into slabs (one per expert for 3-D tensors, and rows grouped so a
slab holds at most SLAB_VALUES values); slab k of tensor `name` is drawn from
numpy.random.default_rng(SeedSequence([seed, crc32(name), k])), so a tensor's values depend only
on (seed, name, shape) and the model's small seeded `Structure` (output.weight also reuses
token_embd's Gaussian rows, regenerated from their slab seeds); the writer can quantise slab by
slab in bounded memory, and tests get the exact same floats through `float_tensors(...)[name]`.

The model is built to behave like a trained one where numerics are concerned (an untrained
Gaussian model is chaotic: tiny 8-bit-activation or f16 rounding differences flip near-tie
expert choices and near-tie argmaxes and are amplified by O(1) per-layer updates; measured in
tests_py/test_llama_oracle.py's docstring). Structure (`model_structure`, seeded by seed only):
  token clusters   each token belongs to one of n_cluster = min(64, n_embd, n_vocab) clusters with
                   orthonormal centroid directions u_j;
  residual stream  token_embd rows = EMBD_STD * (sqrt(1 - w) g_t + sqrt(w n_embd) u_cluster(t)),
                   g_t ~ N(0, I), w = EMBD_CLUSTER_SHARE: RMS EMBD_STD = 1. The residual writers
                   (attn_output, ffn_down_exps) have std RESIDUAL_WRITE_GAIN * s * DEPTH_GROWTH^layer,
                   so each block adds an update of ~0.1 of the residual stream's norm and the
                   stream grows with depth (by ~sqrt(1 + 0.1^2) per block) instead of being
                   replaced at every layer;
  routers          (ffn_gate_inp) every layer gives each cluster a set of n_expert_used experts;
                   router row e = ROUTER_CLUSTER_LOGIT / sqrt(w n_embd) * sum of the centroids of the
                   clusters that chose e, plus N(0, ROUTER_LOGIT_STD^2 / n_embd): a token's own
                   experts get a logit bump of ~ROUTER_CLUSTER_LOGIT over a random spread of std
                   ~ROUTER_LOGIT_STD, so top-k choices are decisive (as trained routers are:
                   ~0.2% of router rows have a top-k probability gap < 1%, against 2-4% for
                   Gaussian routers) while the weights within the top k vary from token to token;
  output head      output row v = s (sqrt(1 - c^2) h_v + c g_(v - shift)), h_v ~ N(0, I), with
                   c = OUTPUT_NEXT_TOKEN_LOGIT / sqrt((1 - w) n_embd): a bigram "next token" of
                   token t is t + shift (mod n_vocab), whose logit stands ~OUTPUT_NEXT_TOKEN_LOGIT
                   logit standard deviations above the rest (confident, like trained LMs);
                   tied_output models keep token_embd as output.
Spreads: other matrices (attn_q/k/v, ffn_gate/up_exps) N(0, s^2) with
  s = 0.02 * sqrt(2048 / fan_in) (fan_in = ne[0]): 0.02 at the real model's width 2048, larger for
  narrow test models so each block's input projections have unit gain; norms 1 + U(-0.1, 0.1).
  outlier_channels = c > 0: c residual channels (seeded choice) get x20 weights in the input
  columns of every matrix that reads the residual stream (attn_q/k/v, ffn_gate/up_exps, output).
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

from .presets import ModelConfig, TensorSpec, tensor_specs

SLAB_VALUES = 1 << 22  # at most this many values per generated slab
EMBD_STD = 1.0  # token_embd RMS: the residual stream starts at O(1)
EMBD_CLUSTER_SHARE = 0.5  # w: share of a token embedding's variance along its cluster centroid
MATRIX_STD = 0.02  # at fan-in MATRIX_STD_FAN_IN
MATRIX_STD_FAN_IN = 2048
RESIDUAL_WRITE_GAIN = 0.25  # attn_output / ffn_down_exps std relative to matrix_std(fan_in) at layer 0
DEPTH_GROWTH = 1.01  # residual writers' std grows by this factor per layer (residual grows ~sqrt(1.01) per block)
NORM_SPREAD = 0.1
N_CLUSTERS = 64  # token clusters (at most n_embd and n_vocab)
ROUTER_CLUSTER_LOGIT = 6.0  # router logit bump of the experts a token's cluster chose
ROUTER_LOGIT_STD = 1.0  # std of the random part of the router logits (RMS-normalised input)
OUTPUT_NEXT_TOKEN_LOGIT = 5.0  # next-token logit peak, in logit standard deviations
OUTLIER_SCALE = 20.0
_OUTLIER_ROLES = ("attn_q", "attn_k", "attn_v", "ffn_gate_exps", "ffn_up_exps", "output")
_RESIDUAL_WRITERS = ("attn_output", "ffn_down_exps")


def matrix_std(fan_in: int) -> float:
    """Standard deviation of a weight matrix with rows of `fan_in` values."""
    return MATRIX_STD * math.sqrt(MATRIX_STD_FAN_IN / fan_in)


def residual_write_std(fan_in: int, layer: int) -> float:
    """Standard deviation of a residual writer (attn_output, ffn_down_exps) of block `layer`."""
    return RESIDUAL_WRITE_GAIN * matrix_std(fan_in) * DEPTH_GROWTH ** layer


def outlier_channel_indices(config: ModelConfig, seed: int) -> np.ndarray:
    """The residual channels scaled by outlier_channels (sorted; empty when 0)."""
    if config.outlier_channels == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0071E5]))
    return np.sort(rng.choice(config.n_embd, config.outlier_channels, replace=False))


@dataclass(frozen=True, eq=False)
class Structure:
    """The seeded cross-tensor structure of a synthetic model (see the module docstring)."""

    outliers: np.ndarray  # [outlier_channels] int64: residual channels with x20 input weights
    centroids: np.ndarray  # [n_cluster, n_embd] float32: orthonormal cluster directions u_j
    token_cluster: np.ndarray  # [n_vocab] int64: cluster of each token
    next_shift: int  # bigram: token t's predicted next token is (t + next_shift) % n_vocab
    seed: int  # generation seed (router expert sets are drawn from it per layer)

    @property
    def n_cluster(self) -> int:
        """Number of token clusters."""
        return int(self.centroids.shape[0])

    def router_sets(self, layer: int, n_expert: int, k: int) -> np.ndarray:
        """[n_cluster, n_expert] bool: the k experts each cluster prefers at block `layer`."""
        return _router_sets(self.seed, layer, self.n_cluster, n_expert, k)


@lru_cache(maxsize=64)
def _router_sets(seed: int, layer: int, n_cluster: int, n_expert: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x40A7E, layer]))
    sets = np.zeros((n_cluster, n_expert), dtype=bool)
    for j in range(n_cluster):
        sets[j, rng.choice(n_expert, k, replace=False)] = True
    sets.setflags(write=False)
    return sets


def model_structure(config: ModelConfig, seed: int, n_vocab: int) -> Structure:
    """The Structure of (config, seed, n_vocab): outlier channels, token clusters, bigram shift."""
    n_cluster = max(1, min(N_CLUSTERS, config.n_embd, n_vocab))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC1A55]))
    q, _ = np.linalg.qr(rng.standard_normal((config.n_embd, n_cluster)))
    centroids = np.ascontiguousarray(q.T, dtype=np.float32)
    token_cluster = rng.integers(0, n_cluster, n_vocab)
    next_shift = int(rng.integers(1, n_vocab)) if n_vocab > 1 else 0
    return Structure(outlier_channel_indices(config, seed), centroids, token_cluster, next_shift, int(seed))


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


def _slab_rng(seed: int, name: str, k: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode()), k]))


def _embd_gaussian_rows(seed: int, n_embd: int, n_vocab: int, rows: np.ndarray) -> np.ndarray:
    """g_t (the Gaussian part of token_embd rows, before scaling) for the token ids `rows`."""
    rps = _rows_per_slab(n_embd)
    out = np.empty((rows.size, n_embd), dtype=np.float32)
    slab_of = rows // rps
    for k in np.unique(slab_of):
        n = min(rps, n_vocab - int(k) * rps)
        g = _slab_rng(seed, "token_embd.weight", int(k)).standard_normal((n, n_embd), dtype=np.float32)
        sel = slab_of == k
        out[sel] = g[rows[sel] - int(k) * rps]
    return out


def generate_slab(config: ModelConfig, seed: int, spec: TensorSpec, k: int, rows: int,
                  structure: Structure) -> np.ndarray:
    """Slab k of a tensor (`rows` rows of ne[0] values; 1-D for norms), float32."""
    rng = _slab_rng(seed, spec.name, k)
    n = spec.ne[0]
    if spec.kind == "norm":
        return (1.0 + NORM_SPREAD * (2.0 * rng.random(n) - 1.0)).astype(np.float32)
    w = EMBD_CLUSTER_SHARE
    if spec.kind == "router":
        x = rng.standard_normal((rows, n), dtype=np.float32) * np.float32(ROUTER_LOGIT_STD / math.sqrt(n))
        sets = structure.router_sets(spec.layer or 0, spec.ne[1], config.n_expert_used)
        first = slab_layout(spec)[k][1]
        chosen = sets[:, first:first + rows].T.astype(np.float32)  # [rows, n_cluster]
        x += np.float32(ROUTER_CLUSTER_LOGIT / math.sqrt(w * n)) * (chosen @ structure.centroids)
        return x
    x = rng.standard_normal((rows, n), dtype=np.float32)
    if spec.role == "token_embd":
        first = slab_layout(spec)[k][1]
        u = structure.centroids[structure.token_cluster[first:first + rows]]
        x = np.float32(EMBD_STD) * (np.float32(math.sqrt(1.0 - w)) * x + np.float32(math.sqrt(w * n)) * u)
        return x.astype(np.float32)
    if spec.role in _RESIDUAL_WRITERS:
        return x * np.float32(residual_write_std(n, spec.layer or 0))
    if spec.role == "output":
        n_vocab = spec.ne[1]
        first = slab_layout(spec)[k][1]
        c = min(0.9, OUTPUT_NEXT_TOKEN_LOGIT / math.sqrt((1.0 - w) * n))
        prev = (np.arange(first, first + rows) - structure.next_shift) % n_vocab
        g = _embd_gaussian_rows(seed, n, n_vocab, prev)
        x = np.float32(math.sqrt(1.0 - c * c)) * x + np.float32(c) * g
    x *= np.float32(matrix_std(n))
    if structure.outliers.size and spec.role in _OUTLIER_ROLES and n == config.n_embd:
        x[:, structure.outliers] *= np.float32(OUTLIER_SCALE)
    return x


def iter_slabs(config: ModelConfig, seed: int, spec: TensorSpec,
               structure: Structure | None = None, n_vocab: int | None = None) -> Iterator[np.ndarray]:
    """The float32 slabs of a tensor in file order: (n rows, ne[0]) arrays (1-D for norms).
    `structure` defaults to model_structure(config, seed, n_vocab or config.n_vocab)."""
    if structure is None:
        nv = n_vocab if n_vocab is not None else config.n_vocab
        if nv is None:
            raise ValueError("iter_slabs needs structure or n_vocab when the config has no n_vocab")
        structure = model_structure(config, seed, nv)
    for k, (_, _, rows) in enumerate(slab_layout(spec)):
        yield generate_slab(config, seed, spec, k, rows, structure)


class FloatTensors(Mapping):
    """Lazy {GGUF tensor name: float32 array (NumPy shape = ne reversed)}."""

    def __init__(self, config: ModelConfig, seed: int, n_vocab: int):
        self.config = config  # the model
        self.seed = seed  # generation seed
        self.n_vocab = n_vocab  # token_embd/output rows
        self.specs = {s.name: s for s in tensor_specs(config, n_vocab)}  # name -> TensorSpec
        self.structure = model_structure(config, seed, n_vocab)  # clusters, router sets, outliers

    def __getitem__(self, name: str) -> np.ndarray:
        spec = self.specs[name]
        parts = list(iter_slabs(self.config, self.seed, spec, self.structure))
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
