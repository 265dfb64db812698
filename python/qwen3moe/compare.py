"""Compare two sets of captures stage by stage and layer by layer.

`compare(a, b)` takes two capture sets (a `Captures` object, or any mapping keyed
`(stage, layer)` → array; `layer` is None for `embed`, `final_norm`, `logits`) and returns a
`Comparison`: one row per (stage, layer) present in both, with

    cosine        cosine similarity (float64), 1.0 for two all-zero arrays
    max_abs_diff  max |a - b|
    rel_l2        ||a - b|| / ||b||  (0 when both are zero)
    n_diff        count of elements whose bits differ (the numerics contract wants 0)
    n             element count
    identical     n_diff == 0

and for integer stages (router indices, one row of k experts per token): `sets_equal` (the
same set of experts for every token) and `first_diff_token` (first token whose set differs,
or None). A `Comparison` prints as a table, renders as HTML in Jupyter, and converts to a
pandas-free list of dicts with `.to_list()`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from .stages import GLOBAL_STAGES_POST, GLOBAL_STAGES_PRE, LAYER_STAGES


@dataclass
class StageDiff:
    """The comparison of one (stage, layer) pair of arrays."""

    stage: str
    layer: int | None
    shape: tuple
    n: int
    n_diff: int
    identical: bool
    cosine: float
    max_abs_diff: float
    rel_l2: float
    sets_equal: bool | None = None
    first_diff_token: int | None = None

    def to_dict(self) -> dict:
        """The row as a JSON-ready dict (shape as a list)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def _sort_key(key: tuple[str, int | None]) -> tuple:
    stage, layer = key
    if stage in GLOBAL_STAGES_PRE:
        return (0, -1, GLOBAL_STAGES_PRE.index(stage), stage)
    if stage in GLOBAL_STAGES_POST:
        return (2, 0, GLOBAL_STAGES_POST.index(stage), stage)
    order = LAYER_STAGES.index(stage) if stage in LAYER_STAGES else len(LAYER_STAGES)
    return (1, layer if layer is not None else -1, order, stage)


def _items(caps: Any) -> dict:
    if hasattr(caps, "to_dict"):
        caps = caps.to_dict()
    if not isinstance(caps, Mapping):
        raise TypeError(f"compare() needs captures or a mapping of (stage, layer) -> array, got {type(caps).__name__}")
    out = {}
    for key, val in caps.items():
        if isinstance(key, str):
            key = (key, None)
        out[(key[0], key[1])] = np.asarray(val)
    return out


def _bits_differ(x: np.ndarray, y: np.ndarray) -> int:
    if x.dtype != y.dtype:
        return int(np.count_nonzero(x.astype(np.float64) != y.astype(np.float64)))
    if x.dtype.kind == "f":
        ux = x.view(np.dtype(f"u{x.dtype.itemsize}"))
        uy = y.view(np.dtype(f"u{y.dtype.itemsize}"))
        return int(np.count_nonzero(ux != uy))
    return int(np.count_nonzero(x != y))


def _diff(stage: str, layer: int | None, x: np.ndarray, y: np.ndarray) -> StageDiff:
    if x.shape != y.shape:
        raise ValueError(f"({stage}, {layer}): shapes differ: {x.shape} vs {y.shape}")
    n = int(x.size)
    n_diff = _bits_differ(x, y)
    xd = x.astype(np.float64).ravel()
    yd = y.astype(np.float64).ravel()
    finite = np.isfinite(xd).all() and np.isfinite(yd).all()
    if finite:
        nx, ny = float(np.linalg.norm(xd)), float(np.linalg.norm(yd))
        if nx == 0.0 and ny == 0.0:
            cos = 1.0
        elif nx == 0.0 or ny == 0.0:
            cos = 0.0
        else:
            cos = float(np.dot(xd, yd) / (nx * ny))
        dn = float(np.linalg.norm(xd - yd))
        rel = 0.0 if dn == 0.0 else (dn / ny if ny > 0 else math.inf)
        mad = float(np.max(np.abs(xd - yd))) if n else 0.0
    else:
        cos, rel, mad = math.nan, math.nan, math.nan
    sets_equal = first = None
    if x.dtype.kind in "iu":
        rows_x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1, 1)
        rows_y = y.reshape(rows_x.shape)
        same = [set(a.tolist()) == set(b.tolist()) for a, b in zip(rows_x, rows_y)]
        sets_equal = all(same)
        first = None if sets_equal else same.index(False)
    return StageDiff(stage, layer, tuple(x.shape), n, n_diff, n_diff == 0, cos, mad, rel, sets_equal, first)


class Comparison(list):
    """A list of StageDiff rows with summaries, a text table and an HTML table."""

    @property
    def min_cosine(self) -> float:
        """Lowest cosine over the float stages (1.0 when there are none)."""
        vals = [r.cosine for r in self if r.sets_equal is None]
        return min(vals) if vals else 1.0

    @property
    def n_diff(self) -> int:
        """Elements whose bits differ, summed over all rows (the numerics contract wants 0)."""
        return sum(r.n_diff for r in self)

    @property
    def all_identical(self) -> bool:
        """True when every row is bit-identical."""
        return all(r.identical for r in self)

    @property
    def routers_agree(self) -> bool:
        """True when every router-index row selects the same expert set for every token."""
        return all(r.sets_equal for r in self if r.sets_equal is not None)

    def worst(self, n: int = 5) -> list[StageDiff]:
        """The n rows with the lowest cosine."""
        rows = [r for r in self if r.sets_equal is None]
        return sorted(rows, key=lambda r: (r.cosine if not math.isnan(r.cosine) else -2.0))[:n]

    def to_list(self) -> list[dict]:
        """Rows as plain dicts (JSON-ready; what `qwen3moe parity --json` prints)."""
        return [r.to_dict() for r in self]

    def _rows(self) -> list[list[str]]:
        rows = []
        for r in self:
            layer = "" if r.layer is None else str(r.layer)
            if r.sets_equal is not None:
                router = "same sets" if r.sets_equal else f"differ @tok {r.first_diff_token}"
            else:
                router = ""
            rows.append([
                r.stage, layer, f"{r.cosine:.9f}", f"{r.max_abs_diff:.3g}", f"{r.rel_l2:.3g}",
                f"{r.n_diff}/{r.n}", router,
            ])
        return rows

    _HEAD = ["stage", "layer", "cosine", "max|diff|", "rel L2", "differing", "router"]

    def __str__(self) -> str:
        rows = [self._HEAD] + self._rows()
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEAD))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(
            f"{len(self)} (stage, layer) pairs; min cosine {self.min_cosine:.9f}; "
            f"differing elements {self.n_diff}; "
            f"{'bit-identical' if self.all_identical else 'NOT bit-identical'}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<Comparison {len(self)} pairs, min cosine {self.min_cosine:.9f}, "
                f"differing elements {self.n_diff}>")

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(h)}</th>" for h in self._HEAD)
        body = []
        for r, cells in zip(self, self._rows()):
            style = "" if r.identical else ' style="background:#fde2e2"'
            body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        summary = html.escape(str(self).splitlines()[-1])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table><p>{summary}</p>"


def compare(a: Any, b: Any, stages: Iterable[str] | None = None) -> Comparison:
    """Compare two capture sets; rows for every (stage, layer) present in both, in model order.

    `stages` restricts the comparison to those stage names.
    """
    xa, xb = _items(a), _items(b)
    keys = [k for k in xa if k in xb]
    if stages is not None:
        wanted = set(stages)
        keys = [k for k in keys if k[0] in wanted]
    keys.sort(key=_sort_key)
    return Comparison(_diff(s, l, xa[(s, l)], xb[(s, l)]) for s, l in keys)
