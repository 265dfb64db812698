"""Which GGML type each tensor gets: llama.cpp-style recipes, single types, glob mappings.

Design: `assign_types(specs, n_layer, types)` returns {tensor name: type name} and validates it
(only the engine's types; every quantised row length a multiple of its block size), so a bad
request fails before any byte is written, with an error naming the tensor.

Recipes (ARCHITECTURE.md section 1):
  "Q4_K_M": matrices Q4_K (token_embd included); output Q6_K; attn_v and ffn_down_exps Q6_K on
            layers with use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2
            (integer division), Q4_K elsewhere; norms and ffn_gate_inp F32.
  "Q5_K_M": the same with Q5_K in place of Q4_K.
  a single type ("Q8_0", "Q6_K", "F16", ...): every matrix in that type, norms and router F32
            ("F32": everything F32).
  a mapping {glob or name: type}: each tensor takes the type of the exact name if present, else
            of the longest matching glob (ties: first given); patterns match the GGUF name with or
            without its ".weight" suffix. Unmatched norms/router are F32; an unmatched matrix is
            an error.
"""
from __future__ import annotations

import fnmatch
from typing import Mapping

from .gguf_writer import GGML_TYPES
from .presets import TensorSpec

SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K")
RECIPES = ("Q4_K_M", "Q5_K_M")

# llama.cpp LLAMA_FTYPE values for general.file_type.
FILE_TYPES = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K": 14, "Q4_K_M": 15, "Q5_K": 16,
    "Q5_K_M": 17, "Q6_K": 18, "BF16": 32,
}


def use_more_bits(i_layer: int, n_layer: int) -> bool:
    """llama.cpp's layer selection for the extra-bits tensors of the *_K_M recipes."""
    return i_layer < n_layer // 8 or i_layer >= 7 * n_layer // 8 or (i_layer - n_layer // 8) % 3 == 2


def _check_type(t: str, what: str) -> str:
    if not isinstance(t, str):
        raise ValueError(f"{what}: type must be a name like 'Q4_K', got {t!r}")
    u = t.upper()
    if u not in SUPPORTED_TYPES:
        raise ValueError(f"{what}: unsupported type {t!r} (supported: {', '.join(SUPPORTED_TYPES)})")
    return u


def _recipe_type(recipe: str, spec: TensorSpec, n_layer: int) -> str:
    if spec.kind in ("norm", "router"):
        return "F32"
    if recipe in RECIPES:
        base = "Q4_K" if recipe == "Q4_K_M" else "Q5_K"
        if spec.role == "output":
            return "Q6_K"
        if spec.role in ("attn_v", "ffn_down_exps") and spec.layer is not None and use_more_bits(spec.layer, n_layer):
            return "Q6_K"
        return base
    return recipe


def _mapping_type(mapping: Mapping[str, str], spec: TensorSpec) -> str | None:
    short = spec.name[: -len(".weight")] if spec.name.endswith(".weight") else spec.name
    for key in (spec.name, short):
        if key in mapping:
            return mapping[key]
    best = None
    for pat, t in mapping.items():
        if fnmatch.fnmatchcase(spec.name, pat) or fnmatch.fnmatchcase(short, pat):
            if best is None or len(pat) > len(best[0]):
                best = (pat, t)
    return None if best is None else best[1]


def parse_types(types: str | Mapping[str, str] | None) -> str | Mapping[str, str]:
    """A recipe/type name or mapping as given; a string "PATTERN=TYPE,PATTERN=TYPE" (command
    lines) becomes a mapping; None becomes "Q4_K_M"."""
    if types is None:
        return "Q4_K_M"
    if not isinstance(types, str) or "=" not in types:
        return types
    out: dict[str, str] = {}
    for part in types.split(","):
        pat, eq, t = part.partition("=")
        if not eq or not pat.strip() or not t.strip():
            raise ValueError(f"bad types entry {part!r} (expected PATTERN=TYPE)")
        out[pat.strip()] = t.strip()
    return out


def assign_types(specs: list[TensorSpec], n_layer: int, types: str | Mapping[str, str] | None) -> dict[str, str]:
    """{tensor name: GGML type name}; ValueError for unsupported types or bad row lengths."""
    types = parse_types(types)
    out: dict[str, str] = {}
    if isinstance(types, str):
        recipe = types.upper()
        if recipe not in RECIPES:
            recipe = _check_type(types, "types")
        if recipe == "F32":
            out = {s.name: "F32" for s in specs}
        else:
            out = {s.name: _recipe_type(recipe, s, n_layer) for s in specs}
    elif isinstance(types, Mapping):
        for pat, t in types.items():
            if not isinstance(pat, str):
                raise ValueError(f"types mapping keys must be names or globs, got {pat!r}")
            _check_type(t, f"types[{pat!r}]")
        for s in specs:
            found = _mapping_type(types, s)
            if found is None:
                if s.kind != "matrix":
                    found = "F32"
                else:
                    raise ValueError(f"tensor {s.name!r}: no entry of the types mapping matches it (add '*')")
            out[s.name] = found.upper()
    else:
        raise ValueError(f"types must be a recipe/type name or a mapping, got {type(types).__name__}")
    for s in specs:
        t = out[s.name]
        blck = GGML_TYPES[t][1]
        if s.ne[0] % blck:
            raise ValueError(
                f"tensor {s.name!r}: row length {s.ne[0]} is not a multiple of the {t} block size {blck}"
            )
    return out


def override_types(specs: list[TensorSpec], n_layer: int, assigned: Mapping[str, str],
                   type_map: str | Mapping[str, str] | None) -> dict[str, str]:
    """`assigned` ({name: type}, e.g. from assign_types) with the tensors matched by `type_map`
    ({name or glob: type}, or "GLOB=TYPE,..." text; exact name first, else the longest glob) set
    to the mapped type; the result is validated like assign_types (types, row lengths)."""
    out = dict(assigned)
    if type_map:
        type_map = parse_types(type_map)
        if not isinstance(type_map, Mapping):
            raise ValueError(f"type_map must be GLOB=TYPE entries or a mapping, got {type_map!r}")
        for pat, t in type_map.items():
            _check_type(t, f"type_map[{pat!r}]")
        for s in specs:
            t = _mapping_type(type_map, s)
            if t is not None:
                out[s.name] = t.upper()
    return assign_types(specs, n_layer, out)


def file_type(types: str | Mapping[str, str] | None, assigned: dict[str, str], specs: list[TensorSpec]) -> int:
    """general.file_type (llama.cpp LLAMA_FTYPE) of a recipe, or of the type holding the most
    matrix values for a mapping."""
    types = parse_types(types)
    if isinstance(types, str):
        return FILE_TYPES[types.upper()]
    counts: dict[str, int] = {}
    for s in specs:
        if s.kind == "matrix":
            n = 1
            for x in s.ne:
                n *= x
            counts[assigned[s.name]] = counts.get(assigned[s.name], 0) + n
    if not counts:
        return FILE_TYPES["F32"]
    return FILE_TYPES[max(sorted(counts), key=lambda k: counts[k])]
