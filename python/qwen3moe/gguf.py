"""GGUF inspection: the validated C++ reader's view of a file as plain Python data.

``inspect(path)`` memory-maps and validates a GGUF file (v2/v3) and returns a ``GGUFInfo``
(header fields, ordered metadata dict, tensor table). Malformed or hostile files raise
``qwen3moe.GGUFError`` with a message naming the field and byte offset.
``format_table(info)`` renders the ``qwen3moe inspect`` report.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from . import _core
from ._core import GGUFError

__all__ = ["GGUFError", "GGUFInfo", "TensorInfo", "format_table", "inspect", "inspect_bytes"]

_MIB = 1024.0**2
_GIB = 1024.0**3


@dataclass(frozen=True)
class TensorInfo:
    """One tensor-info record: ``shape`` in GGUF ``ne`` order (ne[0] contiguous),
    ``offset`` relative to the data section, ``nbytes`` the exact size for type and shape."""

    name: str
    type: int  # GGML type id
    type_name: str  # "Q4_K"
    shape: tuple[int, ...]  # ne[0], ne[1], ...
    offset: int  # bytes from the start of the data section
    nbytes: int  # bytes

    @property
    def n_elements(self) -> int:
        """Number of values (product of the shape)."""
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(repr=False)
class GGUFInfo:
    """Parsed header of a GGUF file: metadata (key -> value, file order) and tensor table."""

    path: str | None
    version: int
    alignment: int  # bytes
    data_offset: int  # absolute byte offset of the data section
    file_size: int  # bytes
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_types: dict[str, str] = field(default_factory=dict)  # key -> "UINT32", "ARRAY[STRING]"
    tensors: list[TensorInfo] = field(default_factory=list)

    @property
    def architecture(self) -> str | None:
        """``general.architecture`` or None."""
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    @property
    def total_bytes(self) -> int:
        """Sum of all tensors' byte sizes."""
        return sum(t.nbytes for t in self.tensors)

    def type_counts(self) -> dict[str, tuple[int, int]]:
        """Tensor type name -> (number of tensors, total bytes), ordered by GGML type id."""
        acc: dict[int, list[Any]] = {}
        for t in self.tensors:
            entry = acc.setdefault(t.type, [t.type_name, 0, 0])
            entry[1] += 1
            entry[2] += t.nbytes
        return {name: (count, nbytes) for _, (name, count, nbytes) in sorted(acc.items())}

    def __repr__(self) -> str:
        return (f"GGUFInfo(path={self.path!r}, version={self.version}, architecture={self.architecture!r}, "
                f"metadata=<{len(self.metadata)} keys>, tensors=<{len(self.tensors)}>, total_bytes={self.total_bytes})")

    def tensor(self, name: str) -> TensorInfo:
        """The tensor called ``name`` (KeyError if absent)."""
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)


def _to_info(raw: dict, path: str | None) -> GGUFInfo:
    info = GGUFInfo(
        path=path,
        version=int(raw["version"]),
        alignment=int(raw["alignment"]),
        data_offset=int(raw["data_offset"]),
        file_size=int(raw["file_size"]),
    )
    for key, value, type_name in raw["metadata"]:
        info.metadata[key] = value
        info.metadata_types[key] = type_name
    info.tensors = [TensorInfo(*t) for t in raw["tensors"]]
    return info


def inspect(path: str | os.PathLike[str]) -> GGUFInfo:
    """Parse and validate the GGUF file at ``path`` (memory-mapped, nothing loaded).

    Raises FileNotFoundError when the file does not exist and ``qwen3moe.GGUFError`` (a
    ValueError) when it is malformed; the message names the field and byte offset.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such file: {p!r}")
    return _to_info(_core.gguf_read(p), p)


def inspect_bytes(data: bytes | bytearray | memoryview) -> GGUFInfo:
    """Parse and validate a GGUF image held in memory (tests, fuzzing); same errors as inspect."""
    return _to_info(_core.gguf_read_bytes(data), None)


def _shape_str(shape: tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape)


def format_table(info: GGUFInfo) -> str:
    """The ``qwen3moe inspect`` report: header summary, one row per tensor (name, type,
    shape in ne order, MiB), per-type totals (count, MiB, GiB) and the grand total."""
    lines: list[str] = []
    if info.path:
        lines.append(f"file          {info.path}")
    lines.append(
        f"GGUF v{info.version}, alignment {info.alignment}, data offset {info.data_offset}, "
        f"file size {info.file_size} bytes ({info.file_size / _GIB:.2f} GiB)"
    )
    lines.append(
        f"architecture  {info.architecture or '-'}; {len(info.metadata)} metadata keys; "
        f"{len(info.tensors)} tensors"
    )
    lines.append("")
    name_w = max([len("name")] + [len(t.name) for t in info.tensors])
    type_w = max([len("type")] + [len(t.type_name) for t in info.tensors])
    shape_w = max([len("shape")] + [len(_shape_str(t.shape)) for t in info.tensors])
    lines.append(f"{'name':<{name_w}}  {'type':<{type_w}}  {'shape':<{shape_w}}  {'MiB':>10}")
    for t in info.tensors:
        lines.append(
            f"{t.name:<{name_w}}  {t.type_name:<{type_w}}  {_shape_str(t.shape):<{shape_w}}  "
            f"{t.nbytes / _MIB:>10.2f}"
        )
    lines.append("")
    counts = info.type_counts()
    tw = max([len("total")] + [len(n) for n in counts])
    lines.append(f"{'type':<{tw}}  {'count':>6}  {'MiB':>11}  {'GiB':>9}")
    for name, (count, nbytes) in counts.items():
        lines.append(f"{name:<{tw}}  {count:>6}  {nbytes / _MIB:>11.2f}  {nbytes / _GIB:>9.2f}")
    lines.append(f"{'total':<{tw}}  {len(info.tensors):>6}  {info.total_bytes / _MIB:>11.2f}  {info.total_bytes / _GIB:>9.2f}")
    summary = ", ".join(f"{count} {name}" for name, (count, _) in counts.items())
    lines.append(
        f"{len(info.tensors)} tensors" + (f": {summary}" if summary else "") + f", {info.total_bytes / _GIB:.2f} GiB"
    )
    return "\n".join(lines) + "\n"
