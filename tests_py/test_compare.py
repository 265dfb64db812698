"""qwen3moe.compare on hand-made capture sets: every metric can fail."""
import math

import numpy as np
import pytest

import qwen3moe
from qwen3moe.compare import compare


def _caps(seed=0):
    rng = np.random.default_rng(seed)
    return {
        ("embed", None): rng.standard_normal((3, 8)).astype(np.float32),
        ("q", 0): rng.standard_normal((3, 16)).astype(np.float32),
        ("moe_router_indices", 0): np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int32),
        ("logits", None): rng.standard_normal((3, 32)).astype(np.float32),
    }


def test_identical_captures_are_identical():
    a = _caps()
    c = compare(a, {k: v.copy() for k, v in a.items()})
    assert c.all_identical and c.n_diff == 0 and c.routers_agree
    assert [(r.stage, r.layer) for r in c] == [("embed", None), ("q", 0), ("moe_router_indices", 0), ("logits", None)]
    assert c.min_cosine == pytest.approx(1.0)


def test_one_ulp_is_counted_and_metrics_are_right():
    a = _caps()
    b = {k: v.copy() for k, v in a.items()}
    b[("q", 0)][1, 3] = np.nextafter(b[("q", 0)][1, 3], np.float32(np.inf))
    b[("logits", None)] *= np.float32(2.0)
    c = compare(a, b)
    row = {(r.stage, r.layer): r for r in c}
    assert row[("q", 0)].n_diff == 1 and not row[("q", 0)].identical
    assert row[("logits", None)].cosine == pytest.approx(1.0)
    assert row[("logits", None)].rel_l2 == pytest.approx(0.5)
    x = a[("logits", None)].astype(np.float64)
    assert row[("logits", None)].max_abs_diff == pytest.approx(np.abs(x).max())
    assert not c.all_identical and c.n_diff == 1 + a[("logits", None)].size - np.count_nonzero(a[("logits", None)] == 0)


def test_router_sets_and_first_differing_token():
    a = _caps()
    b = {k: v.copy() for k, v in a.items()}
    b[("moe_router_indices", 0)] = np.array([[2, 1], [3, 4], [5, 7]], dtype=np.int32)  # token 0 reordered only
    r = {(x.stage, x.layer): x for x in compare(a, b)}[("moe_router_indices", 0)]
    assert r.sets_equal is False and r.first_diff_token == 2 and r.n_diff == 3


def test_render_and_list():
    c = compare(_caps(), _caps(1))
    text = str(c)
    assert "min cosine" in text and "embed" in text
    assert "<table>" in c._repr_html_()
    rows = c.to_list()
    assert isinstance(rows[0], dict) and set(rows[0]) >= {"stage", "layer", "cosine", "n_diff", "rel_l2", "max_abs_diff"}
    assert math.isfinite(c.min_cosine) and c.min_cosine < 0.99


def test_shape_mismatch_raises():
    a = _caps()
    b = dict(a)
    b[("q", 0)] = np.zeros((2, 16), np.float32)
    with pytest.raises(ValueError, match="shapes differ"):
        compare(a, b)


def test_public_name():
    assert qwen3moe.compare is compare
