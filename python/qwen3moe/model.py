"""The qwen3moe engine from Python: `load(path) -> Model`, forward with captures, decode,
sampling and text generation.

    import qwen3moe
    m = qwen3moe.load("model.gguf", n_ctx=2048)          # CPU, q8 activations
    r = m.forward(m.tokenize("def f(x):"), capture=["q", "moe_router_indices"], layers=[0, 3])
    r.logits                       # np.float32 [vocab] (logits="last") or [T, vocab] ("all")
    r.captures["q", 3]             # np.float32 [T, n_head*head_dim]
    m.generate("Hello", max_tokens=32, temperature=0.8, seed=1)

The model keeps a KV cache: `forward` appends its tokens after the `n_past` tokens already
there, `decode(token)` appends one, `reset()` empties it. `forward(prompt)` and token-by-token
`decode` give identical bits at every position (the numerics contract).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence, overload

import numpy as np

from . import _core
from .stages import ALL_STAGES, LAYER_STAGES

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

__all__ = ["Captures", "ForwardResult", "Model", "load"]

_LOGITS_MODES = ("last", "all", "none")


# ---- captures ------------------------------------------------------------------------------


CaptureKey = tuple[str, int | None]  # (stage, layer); layer None for embed, final_norm, logits


class Captures(Mapping[CaptureKey, np.ndarray]):
    """Captured tensors keyed by (stage, layer); layer is None for embed, final_norm, logits.

    `captures["q", 3]`, `captures["embed"]` (= `captures["embed", None]`); each value is a
    NumPy array with one row per token (e.g. [T, n_embd], [T, k, n_ff_exp]).
    """

    def __init__(self, data: Mapping[tuple[str, int | None], np.ndarray] | None = None):
        self._data: dict[tuple[str, int | None], np.ndarray] = {}
        for key, arr in (data or {}).items():
            self._data[self._key(key)] = np.asarray(arr)

    @staticmethod
    def _key(key: Any) -> tuple[str, int | None]:
        if isinstance(key, str):
            return (key, None)
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str):
            layer = key[1]
            return (key[0], None if layer is None else int(layer))
        raise KeyError(f"capture keys are (stage, layer) or a stage name, got {key!r}")

    def __getitem__(self, key: Any) -> np.ndarray:
        k = self._key(key)
        try:
            return self._data[k]
        except KeyError:
            stage, layer = k
            if stage not in ALL_STAGES:
                raise KeyError(f"unknown stage {stage!r}; valid stages: {', '.join(ALL_STAGES)}") from None
            if stage in LAYER_STAGES and layer is None:
                raise KeyError(f"stage {stage!r} is per layer: use captures[{stage!r}, layer]") from None
            raise KeyError(f"({stage!r}, {layer!r}) was not captured; captured: {sorted(self._data, key=_order)}") from None

    def __iter__(self) -> Iterator[tuple[str, int | None]]:
        return iter(sorted(self._data, key=_order))

    def __len__(self) -> int:
        return len(self._data)

    @property
    def stages(self) -> list[str]:
        """Captured stage names, in execution order."""
        present = {s for s, _ in self._data}
        return [s for s in ALL_STAGES if s in present]

    @property
    def layers(self) -> list[int]:
        """Captured layers, ascending."""
        return sorted({l for _, l in self._data if l is not None})

    def to_dict(self) -> dict[tuple[str, int | None], np.ndarray]:
        """A plain dict {(stage, layer): array} (what `qwen3moe.compare` also accepts)."""
        return {k: self._data[k] for k in self}

    def save(self, path: str | os.PathLike) -> None:
        """Write an .npz file: keys "stage" for embed/final_norm/logits, "stage.layer" otherwise."""
        arrays: dict[str, Any] = {(s if l is None else f"{s}.{l}"): a for (s, l), a in self.to_dict().items()}
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Captures":
        """Read a file written by `save`."""
        data: dict[CaptureKey, np.ndarray] = {}
        with np.load(path) as z:
            for name in z.files:
                stage, dot, layer = name.rpartition(".")
                data[(stage, int(layer)) if dot else (name, None)] = z[name]
        return cls(data)

    def __repr__(self) -> str:
        n_tok = next(iter(self._data.values())).shape[0] if self._data else 0
        return f"Captures({len(self)} arrays, {n_tok} tokens, stages={self.stages}, layers={self.layers})"


def _order(key: tuple[str, int | None]) -> tuple:
    stage, layer = key
    pos = ALL_STAGES.index(stage) if stage in ALL_STAGES else len(ALL_STAGES)
    if stage in LAYER_STAGES:
        return (1, layer, pos)
    return (0 if pos == 0 else 2, -1, pos)


@dataclass
class ForwardResult:
    """Result of `Model.forward` / `Model.decode`."""

    logits: np.ndarray | None  # [vocab] (logits="last"), [T, vocab] ("all"), None ("none")
    captures: Captures         # the requested (stage, layer) tensors
    n_tokens: int              # tokens processed by this call


# ---- model ---------------------------------------------------------------------------------


def _token_array(tokens: Any, n_vocab: int) -> np.ndarray:
    if isinstance(tokens, (int, np.integer)) and not isinstance(tokens, bool):
        tokens = [int(tokens)]
    if isinstance(tokens, str):
        raise TypeError("tokens must be token ids; use model.tokenize(text) for text")
    arr = np.asarray(tokens)
    if arr.size == 0:
        raise ValueError("empty input: at least one token is needed")
    if arr.ndim != 1:
        raise ValueError(f"tokens must be a 1-D sequence of token ids, got shape {arr.shape}")
    if arr.dtype.kind not in "iuO" or arr.dtype == np.bool_:
        raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
    for i, t in enumerate(arr.tolist()):
        if not isinstance(t, int) or isinstance(t, bool):
            raise TypeError(f"token ids must be integers, got {t!r} at position {i}")
        if t < 0 or t >= n_vocab:
            raise ValueError(
                f"token id {t} at position {i} is out of range: the vocabulary size is {n_vocab} "
                f"(valid ids 0..{n_vocab - 1})"
            )
    return arr.astype(np.int64)


def _stage_list(capture: Any) -> list[str]:
    if capture is None or capture is False:
        return []
    if capture is True or capture == "all":
        return list(ALL_STAGES)
    if isinstance(capture, str):
        return [capture]
    out = list(capture)
    for s in out:
        if not isinstance(s, str):
            raise TypeError(f"capture stages are names (str), got {s!r}")
    return out


def _layer_list(layers: Any) -> list[int]:
    if layers is None:
        return []  # all layers
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        layers = [int(layers)]
    out = []
    for l in layers:
        if isinstance(l, bool) or not isinstance(l, (int, np.integer)):
            raise TypeError(f"layers are integers, got {l!r}")
        out.append(int(l))
    if not out:
        raise ValueError("layers is empty; pass None for all layers")
    return out


class Model:
    """A loaded qwen3moe model (use `qwen3moe.load`)."""

    def __init__(self, path: str, device: str = "cpu", n_ctx: int = 4096, activations: str = "q8",
                 threads: int | None = None, progress: Any = None, max_vram: int | None = None):
        self.path = os.fspath(path)
        self.device = device
        self.activations = activations
        self._core: Any = _core.Model(self.path, n_ctx=n_ctx, activations=activations,
                                      threads=0 if threads is None else threads, device=device,
                                      progress=_upload_progress(self.path, device, progress),
                                      max_vram=0 if max_vram is None else int(max_vram))
        # Held by generate() for a whole generation, so that a forward/decode/reset/generate from
        # another thread waits instead of interleaving with it in the KV cache (single calls are
        # serialised in _core as well).
        self._session = threading.RLock()
        hp = self._core.hparams()
        self._hp = hp
        self.n_ctx = int(self._core.n_ctx)
        self.threads = int(self._core.threads)
        self._tokenizer: Tokenizer | None = None
        self._metadata: dict | None = None
        self.last_stats: dict | None = None  # timing of the last generate()

    # -- state -------------------------------------------------------------------------------

    def _live(self) -> Any:
        if self._core is None:
            raise RuntimeError("this model is closed")
        return self._core

    @property
    def n_past(self) -> int:
        """Tokens in the KV cache (positions 0 .. n_past-1)."""
        return int(self._live().n_past)

    @property
    def config(self) -> dict:
        """Hyperparameters and load options."""
        cfg = dict(self._hp)
        cfg.update(vocab_size=cfg["n_vocab"], n_ctx=self.n_ctx, activations=self.activations,
                   device=self.device, threads=self.threads)
        return cfg

    @property
    def metadata(self) -> dict:
        """All GGUF metadata as Python values (arrays as lists)."""
        if self._metadata is None:
            self._metadata = self._live().metadata()
        return self._metadata

    def reset(self) -> None:
        """Empty the KV cache (n_past = 0)."""
        core = self._live()
        with self._session:
            core.reset()

    def close(self) -> None:
        """Release the model (its mapping, KV cache and threads). Later calls raise RuntimeError."""
        self._core = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- compute -----------------------------------------------------------------------------

    def forward(self, tokens: Sequence[int] | np.ndarray, capture: Any = None, layers: Any = None,
                logits: str = "last") -> ForwardResult:
        """Run `tokens` after the n_past tokens in the KV cache and append them to it.

        capture: stage name(s) to capture (see `qwen3moe.stages.ALL_STAGES`; "all" for every
        stage); layers: layer index or indices for per-layer stages (None = all layers);
        logits: "last" ([vocab]), "all" ([T, vocab]) or "none".
        Raises ValueError (bad token id, naming the vocabulary size; empty input; context
        overflow, naming n_ctx; unknown stage, listing the valid ones) and IndexError (layer out
        of range, naming n_layer); the model is unchanged after an error.
        """
        core = self._live()
        if logits not in _LOGITS_MODES:
            raise ValueError(f'logits must be "last", "all" or "none", got {logits!r}')
        arr = _token_array(tokens, self._hp["n_vocab"])
        stages = _stage_list(capture)
        layer_list = _layer_list(layers)
        with self._session:
            lg, caps = core.forward(arr, stages, layer_list, logits)
        return ForwardResult(logits=lg, captures=Captures({(s, l): a for s, l, a in caps}), n_tokens=int(arr.size))

    def decode(self, token: int, capture: Any = None, layers: Any = None, logits: str = "last") -> ForwardResult:
        """Run one token (same as forward([token], ...))."""
        if not isinstance(token, (int, np.integer)) or isinstance(token, bool):
            raise TypeError(f"decode takes one token id (int), got {type(token).__name__}")
        return self.forward([int(token)], capture=capture, layers=layers, logits=logits)

    # -- text --------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer built from the file's tokenizer.* metadata (created on first use)."""
        if self._tokenizer is None:
            from .tokenizer import Tokenizer

            self._tokenizer = Tokenizer(self.metadata)
        return self._tokenizer

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """Token ids of `text` (special=True also parses special-token text like <|im_start|>)."""
        return list(self.tokenizer.encode(text, special=special))

    def detokenize(self, ids: Iterable[int]) -> str:
        """Text of token ids."""
        return self.tokenizer.decode(list(ids))

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """Render chat messages with the file's chat template."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)

    @overload
    def generate(self, prompt_or_ids: str | Sequence[int], max_tokens: int = ..., temperature: float = ...,
                 top_k: int = ..., top_p: float = ..., min_p: float = ..., seed: int = ...,
                 stop: str | Sequence[str] | None = ..., stream: Literal[False] = ...) -> str: ...

    @overload
    def generate(self, prompt_or_ids: str | Sequence[int], max_tokens: int = ..., temperature: float = ...,
                 top_k: int = ..., top_p: float = ..., min_p: float = ..., seed: int = ...,
                 stop: str | Sequence[str] | None = ..., *, stream: Literal[True]) -> Iterator[str]: ...

    @overload
    def generate(self, prompt_or_ids: str | Sequence[int], max_tokens: int = ..., temperature: float = ...,
                 top_k: int = ..., top_p: float = ..., min_p: float = ..., seed: int = ...,
                 stop: str | Sequence[str] | None = ..., stream: bool = ...) -> str | Iterator[str]: ...

    def generate(self, prompt_or_ids: str | Sequence[int], max_tokens: int = 128, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0, seed: int = 0,
                 stop: str | Sequence[str] | None = None, stream: bool = False) -> str | Iterator[str]:
        """Generate text after a prompt (a str is tokenized with special-token parsing).

        Starts from an empty KV cache (calls reset()). Sampling is canonical (greedy when
        temperature <= 0; else top_k / min_p / top_p cuts and a counter-based RNG: the same seed
        gives the same tokens). Stops after max_tokens, at an end-of-generation token, at the
        first stop string (the text before it is returned), or when the context is full.
        Returns the text, or with stream=True an iterator of text pieces whose concatenation
        is that text. Afterwards `last_stats` holds n_prompt, prompt_seconds (prompt + first
        token), n_gen and gen_seconds.
        """
        self._live()
        if isinstance(prompt_or_ids, str):
            ids = self.tokenize(prompt_or_ids, special=True)
        else:
            ids = list(prompt_or_ids)
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        if not (0.0 < top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if not (0.0 <= min_p <= 1.0):
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if s]
        arr = _token_array(ids, self._hp["n_vocab"])
        if arr.size > self.n_ctx:
            raise ValueError(f"context overflow: the prompt has {arr.size} tokens, more than n_ctx = {self.n_ctx}")
        it = self._generate(arr, max_tokens, float(temperature), int(top_k), float(top_p), float(min_p),
                            int(seed) & 0xFFFFFFFFFFFFFFFF, stops)
        if stream:
            return it
        return "".join(it)

    def _generate(self, ids: np.ndarray, max_tokens: int, temperature: float, top_k: int, top_p: float,
                  min_p: float, seed: int, stops: list[str]) -> Iterator[str]:
        with self._session:
            yield from self._generate_locked(ids, max_tokens, temperature, top_k, top_p, min_p, seed, stops)

    def _generate_locked(self, ids: np.ndarray, max_tokens: int, temperature: float, top_k: int, top_p: float,
                         min_p: float, seed: int, stops: list[str]) -> Iterator[str]:
        from .tokenizer import IncrementalDecoder

        core = self._live()
        tok = self.tokenizer
        eog = set(int(i) for i in tok.eog_ids)
        dec = IncrementalDecoder(tok)
        core.reset()
        stats = self.last_stats = {"n_prompt": int(ids.size), "prompt_seconds": 0.0, "n_gen": 0, "gen_seconds": 0.0}
        if max_tokens == 0:
            return
        pending = ""  # decoded text not yet yielded (held back while it may start a stop string)
        t0 = time.perf_counter()
        nxt = core.step(ids, temperature, top_k, top_p, min_p, seed, 0)
        t1 = time.perf_counter()
        stats["prompt_seconds"] = t1 - t0
        for i in range(max_tokens):
            stats["n_gen"] = i + 1
            stats["gen_seconds"] = time.perf_counter() - t1
            if nxt in eog:
                break
            pending += dec.feed(nxt)
            out, hit = _split_stop(pending, stops)
            if out:
                yield out
            if hit:
                return
            pending = pending[len(out):]
            if i + 1 == max_tokens or core.n_past >= self.n_ctx:
                break
            nxt = core.step(np.array([nxt], np.int64), temperature, top_k, top_p, min_p, seed, i + 1)
        pending += dec.flush()
        out, hit = _split_stop(pending, stops, final=True)
        if out:
            yield out

    # -- reports -----------------------------------------------------------------------------

    def memory(self) -> dict:
        """Bytes: weights_mapped (file mapping in use), kv_cache, scratch."""
        return dict(self._live().memory())

    @property
    def decode_path(self) -> str:
        """How single-token decode steps run: "op-by-op" (one kernel or parallel region per op),
        or on CUDA "cuda-graph (...)" (the fused decode step replayed as one CUDA graph;
        bit-identical results), or "op-by-op (...)" naming why the fused path is not used
        ("undecided" before the first decode step). The environment variable
        QWEN3MOE_CUDA_GRAPH=0, set before the first decode step, forces the op-by-op path."""
        return str(self._live().decode_path())

    @property
    def weights_bytes(self) -> int:
        """Bytes of the file mapping the weights use."""
        return int(self.memory()["weights_mapped"])

    @property
    def n_params(self) -> int:
        """Parameter count implied by the hyperparameters (embeddings and output included)."""
        hp = self._hp
        e, q, kv, f, ne = hp["n_embd"], hp["n_head"] * hp["head_dim"], hp["n_head_kv"] * hp["head_dim"], hp["n_ff_exp"], hp["n_expert"]
        per_layer = e * (q + 2 * kv) + q * e + e * ne + 3 * e * f * ne + 2 * e + 2 * hp["head_dim"]
        out = 0 if hp["tied_output"] else e * hp["n_vocab"]
        return int(hp["n_layer"] * per_layer + e * hp["n_vocab"] + out + e)

    @property
    def kv_type(self) -> str:
        """Element type of the KV cache: "f16" (q8 mode) or "f32" (f32 reference mode)."""
        return "f16" if self.activations == "q8" else "f32"

    def describe_type(self) -> str:
        """e.g. 'qwen3moe 48L 128x8 Q4_K:433 Q6_K:..' (tensor types with counts)."""
        types = " ".join(f"{k}:{v}" for k, v in sorted(self._live().tensor_types().items()))
        return f"qwen3moe {self._hp['n_layer']}L {self._hp['n_expert']}x{self._hp['n_expert_used']} {types}"

    def device_name(self) -> str:
        """"cpu", or the GPU's name for a CUDA model."""
        if _is_cuda(self.device):
            return str(_core.cuda_device_name(_cuda_index(self.device)))
        return "cpu"

    def driver_version(self) -> str:
        """The CUDA driver version ("13.0") for a CUDA model, else ""."""
        return str(_core.cuda_driver_version()) if _is_cuda(self.device) else ""

    def peak_vram_bytes(self) -> int:
        """GPU memory this model holds at most (weights + KV cache + buffers, which only grow); 0 on CPU."""
        if not _is_cuda(self.device):
            return 0
        m = self.memory()
        return int(m["weights_mapped"] + m["kv_cache"] + m["scratch"])

    def _timer(self) -> Callable[[Callable[[], Any]], float]:
        """A callable timing fn's work in seconds: on CUDA with events on the model's stream
        (recorded after the work queued before fn and after fn's own work; the host waits for
        the second), on the CPU with a monotonic clock."""
        if _is_cuda(self.device):
            core = self._live()

            def cuda_timer(fn: Callable[[], Any]) -> float:
                core.timer_start()
                fn()
                return float(core.timer_stop()) / 1e3

            return cuda_timer

        def cpu_timer(fn: Callable[[], Any]) -> float:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

        return cpu_timer

    def __repr__(self) -> str:
        if self._core is None:
            return f"Model({self.path!r}, closed)"
        hp = self._hp
        mem = self.memory()
        types = ", ".join(f"{k}×{v}" for k, v in sorted(self._live().tensor_types().items()))
        mib = 1 << 20
        return (
            f"Model(architecture=qwen3moe, layers={hp['n_layer']}, experts={hp['n_expert']} "
            f"(top-{hp['n_expert_used']}), n_embd={hp['n_embd']}, vocab={hp['n_vocab']}, types=[{types}], "
            f"device={self.device}, activations={self.activations}, threads={self.threads}, "
            f"n_ctx={self.n_ctx}, n_past={self.n_past}, memory: weights {mem['weights_mapped'] / mib:.1f} MiB "
            f"mapped, KV {mem['kv_cache'] / mib:.1f} MiB, scratch {mem['scratch'] / mib:.1f} MiB)"
        )


def _split_stop(text: str, stops: list[str], final: bool = False) -> tuple[str, bool]:
    """(text that may be yielded now, whether a stop string was found)."""
    if not stops:
        return text, False
    first = -1
    for s in stops:
        j = text.find(s)
        if j >= 0 and (first < 0 or j < first):
            first = j
    if first >= 0:
        return text[:first], True
    if final:
        return text, False
    hold = 0  # longest suffix of text that is a proper prefix of a stop string
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:n]):
                hold = n
                break
    return text[: len(text) - hold], False


def load(path: str | os.PathLike, device: str = "cpu", n_ctx: int = 4096, activations: str = "q8",
         threads: int | None = None, progress: Any = None, max_vram: int | None = None) -> Model:
    """Load a qwen3moe GGUF file.

    device: "cpu", or "cuda" / "cuda:N" (the GPU backend: weights, KV cache and every op on
    the GPU, bit-identical to the CPU; RuntimeError when this build has no CUDA backend or no
    GPU is usable); n_ctx: KV cache positions; activations: "q8" (8-bit activations into
    quantised matmuls, f16 KV cache: the fast, canonical mode) or "f32" (dequantised weights ×
    f32 activations, f32 KV cache: the reference mode); threads: CPU threads (None = all
    hardware threads); progress (CUDA): weight upload progress — None shows a tqdm bar for
    files of 256 MiB or more, True always, False never, or a callable(done_bytes, total_bytes);
    max_vram (CUDA): bytes of GPU memory the model may use at most (None = the free memory):
    a model whose plan (weights + KV cache + buffers) needs more raises OutOfMemoryError before
    anything is allocated.
    Threads and Ctrl-C: compute releases the GIL; calls on one model from several threads are
    serialised (a generate() holds the model until it ends); KeyboardInterrupt stops a forward
    within about one layer and leaves the model as before the call.
    Raises GGUFError (malformed file or metadata), UnsupportedTypeError (a tensor type that
    cannot be computed with), OutOfMemoryError (the model does not fit on the GPU; the message
    gives the sizes), ValueError (bad argument), FileNotFoundError.
    """
    path = os.fspath(path)
    if device != "cpu" and not _is_cuda(device):
        raise ValueError(f'device must be "cpu", "cuda" or "cuda:N", got {device!r}')
    if _is_cuda(device):
        _check_cuda(device)
    if activations not in ("q8", "f32"):
        raise ValueError(f'activations must be "q8" or "f32", got {activations!r}')
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, (int, np.integer)) or n_ctx < 1:
        raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    if max_vram is not None and (isinstance(max_vram, bool) or not isinstance(max_vram, (int, np.integer)) or max_vram < 1):
        raise ValueError(f"max_vram must be a positive number of bytes or None, got {max_vram!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    return Model(path, device=device, n_ctx=int(n_ctx), activations=activations, threads=threads, progress=progress,
                 max_vram=max_vram)


# ---- CUDA device (the cuda backend, cuda/cuda-backend.cu) --------------------------------------


def _is_cuda(device: Any) -> bool:
    if not isinstance(device, str):
        return False
    if device == "cuda":
        return True
    return device.startswith("cuda:") and device[5:].isdigit() and len(device) <= 8


def _cuda_index(device: str) -> int:
    return 0 if device == "cuda" else int(device[5:])


def _check_cuda(device: str) -> None:
    if not _core.built_with_cuda:
        raise RuntimeError('device="cuda": CUDA backend not built/available in this qwen3moe build; use device="cpu"')
    n = int(_core.cuda_device_count())
    if n == 0:
        raise RuntimeError(f"device={device!r}: no usable CUDA GPU (no device or no driver); use device=\"cpu\"")
    if _cuda_index(device) >= n:
        raise ValueError(f"device={device!r}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")


def _upload_progress(path: str, device: str, progress: Any) -> Callable[[int, int], None] | None:
    """The weight-upload callback handed to the CUDA backend (None on CPU or when disabled)."""
    if not _is_cuda(device) or progress is False:
        return None
    if callable(progress):
        return progress
    if progress is None and os.path.getsize(path) < (256 << 20):
        return None
    from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

    bar: list = []

    def update(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=f"weights -> {device}", leave=False))
        bar[0].update(done - bar[0].n)
        if done >= total:
            bar[0].close()

    return update
