"""qwen3moe: run the Qwen3 mixture-of-experts LLM from a GGUF file on CPU and CUDA.

CPU and CUDA execute one canonical sequence of float operations, so their results are
bit-identical (see the numerics contract in the README).

Public API (everything else is private):
    load(path, device="cpu", n_ctx=4096, activations="q8", threads=None) -> Model
    Model                   forward (with captures), decode, reset, generate, tokenize, config
    Captures                captured tensors keyed (stage, layer); .save / Captures.load (.npz)
    inspect(path)           -> GGUFInfo: metadata dict + tensor table
    compare(a, b)           -> per (stage, layer) cosine / max|diff| / rel L2 / differing bits
    cuda_available()        -> bool
    default_model_path()    -> path of the embedded default model (written on first use)
    GGUFError, UnsupportedTypeError, OutOfMemoryError
    quant                   -> dequantise / quantise helpers (for tests and study)
    testing                 -> test-model writer (write_model, presets)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import _core
from ._core import GGUFError, OutOfMemoryError, UnsupportedTypeError
from .compare import Comparison, StageDiff, compare  # binds the function over the submodule of the same name
from .model import Captures, ForwardResult, Model, load

__version__ = "0.1.0"

GGUFError.__doc__ = ("A malformed or hostile GGUF file (or metadata the model cannot use); the message names the "
                     "field and byte offset. A ValueError.")
UnsupportedTypeError.__doc__ = ("A tensor type the engine cannot compute with (or an unknown type id); the message "
                                "names the tensor and type. A ValueError.")
OutOfMemoryError.__doc__ = "A device or host allocation failed; the model stays usable. A MemoryError."

if TYPE_CHECKING:  # what the lazy attributes below resolve to, for type checkers
    from . import quant as quant, testing as testing
    from .gguf import inspect as inspect
    from .testing import default_model_path as default_model_path

__all__ = [
    "Captures",
    "Comparison",
    "ForwardResult",
    "GGUFError",
    "Model",
    "StageDiff",
    "OutOfMemoryError",
    "UnsupportedTypeError",
    "compare",
    "cuda_available",
    "default_model_path",
    "inspect",
    "load",
    "quant",
    "testing",
    "__version__",
]


def cuda_available() -> bool:
    """True when this build has the CUDA backend and a usable NVIDIA GPU is present."""
    return bool(_core.built_with_cuda) and _core.cuda_device_count() > 0


def __getattr__(name: str):
    # Lazy submodules and functions that live in their own files.
    if name in ("quant", "testing"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name == "inspect":
        from .gguf import inspect

        return inspect
    if name == "default_model_path":
        from .testing import default_model_path

        return default_model_path
    raise AttributeError(f"module 'qwen3moe' has no attribute {name!r}")
