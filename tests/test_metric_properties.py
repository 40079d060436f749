"""Property tests driven by prh.metrics.PROPERTIES, and the docs table kept equal to it.

For every registered metric: symmetry where claimed, f(A, A) = 1 where claimed, invariance to sample
permutations, and, per transformation (orthogonal map, isotropic scaling, invertible linear map, translation),
invariance where the table says "yes" (hypothesis, applied to A and to B), invariance on the B side only where it
says "B only", and a demonstrated change where it says "no" (so a claim cannot be silently too weak either).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prh.metrics as M
from prh.metrics.properties import (
    B_ONLY,
    NO,
    PROPERTIES,
    TRANSFORMS,
    YES,
    docs_problems,
    markdown_table,
    parse_range,
    range_problems,
    table_row,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
TOL = 1e-6
NAMES = M.names()
SETTINGS = settings(
    max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def pair(seed: int, n: int, da: int, db: int) -> tuple[np.ndarray, np.ndarray]:
    """Two related float64 representations sharing a 3-dim latent (low rank + noise, tie-free)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3)) * np.array([3.0, 2.0, 1.0])
    a = z @ rng.standard_normal((3, da)) + 0.5 * rng.standard_normal((n, da))
    b = z @ rng.standard_normal((3, db)) + 0.5 * rng.standard_normal((n, db))
    return a + rng.standard_normal(da), b + rng.standard_normal(db)


def orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def transform(kind: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = x.shape[1]
    if kind == "orthogonal":
        return x @ orthogonal(rng, d)
    if kind == "isotropic_scaling":
        return x * float(np.exp(rng.uniform(-2.0, 2.0)))
    if kind == "invertible_linear":
        # well conditioned but far from orthogonal: orthogonal * diag(0.2..5) * orthogonal
        s = np.exp(rng.uniform(np.log(0.2), np.log(5.0), d))
        return x @ (orthogonal(rng, d) * s) @ orthogonal(rng, d)
    if kind == "translation":
        return x + 3.0 * rng.standard_normal(d) * x.std()
    raise ValueError(kind)


sizes = st.tuples(st.integers(0, 2**31 - 1), st.integers(32, 44), st.integers(10, 14), st.integers(10, 14))


def score(name: str, a: np.ndarray, b: np.ndarray) -> float:
    return M.get(name)(a, b)


def test_table_covers_every_registered_metric():
    assert sorted(PROPERTIES) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_symmetry_flag_matches_registry(name):
    assert PROPERTIES[name].symmetric == M.spec(name).symmetric


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(sizes)
def test_identity_symmetry_permutation(name, size):
    seed, n, da, db = size
    a, b = pair(seed, n, da, db)
    prop = PROPERTIES[name]
    base = score(name, a, b)
    if prop.identity:
        assert score(name, a, a) == pytest.approx(1.0, abs=TOL)
    if prop.symmetric:
        assert score(name, b, a) == pytest.approx(base, abs=TOL)
    if prop.permutation == YES:
        perm = np.random.default_rng(seed + 1).permutation(n)
        assert score(name, a[perm], b[perm]) == pytest.approx(base, abs=TOL)


CLAIMS = [(name, attr) for name in NAMES for attr, _ in TRANSFORMS if attr != "permutation"]


@pytest.mark.parametrize(("name", "attr"), [c for c in CLAIMS if getattr(PROPERTIES[c[0]], c[1]) != NO])
@SETTINGS
@given(sizes)
def test_claimed_invariance(name, attr, size):
    seed, n, da, db = size
    a, b = pair(seed, n, da, db)
    rng = np.random.default_rng(seed + 2)
    base = score(name, a, b)
    assert score(name, a, transform(attr, b, rng)) == pytest.approx(base, abs=TOL)
    if getattr(PROPERTIES[name], attr) == YES:
        assert score(name, transform(attr, a, rng), b) == pytest.approx(base, abs=TOL)


@pytest.mark.parametrize(("name", "attr"), [c for c in CLAIMS if getattr(PROPERTIES[c[0]], c[1]) != YES])
def test_unclaimed_invariance_really_fails(name, attr):
    """Where the table says "no" (or "B only"), some transformation of A (or B) visibly changes the score."""
    claim = getattr(PROPERTIES[name], attr)
    changes = []
    for seed in range(3):
        a, b = pair(seed, 40, 12, 12)
        rng = np.random.default_rng(seed + 2)
        base = score(name, a, b)
        changes.append(abs(score(name, transform(attr, a, rng), b) - base))
        if claim == NO:
            changes.append(abs(score(name, a, transform(attr, b, rng)) - base))
    assert claim in (NO, B_ONLY)
    assert max(changes) > 1e-3, f"{name} looks invariant to {attr}; the table should say so"


@pytest.mark.parametrize("name", [n for n in NAMES if not PROPERTIES[n].symmetric])
def test_unclaimed_symmetry_really_fails(name):
    diffs = [
        abs(score(name, *pair(s, 40, 12, 12)) - score(name, *pair(s, 40, 12, 12)[::-1])) for s in range(3)
    ]
    assert max(diffs) > 1e-3


@pytest.mark.parametrize("name", [n for n in NAMES if not PROPERTIES[n].identity])
def test_unclaimed_identity_really_fails(name):
    values = [score(name, a, a) for a, _ in (pair(s, 40, 12, 12) for s in range(3))]
    assert max(abs(v - 1.0) for v in values) > 1e-3


# --- docs/metrics.md mirrors the table ---------------------------------------------------------------------


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def test_docs_table_matches_properties():
    text = DOCS.read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = _cells(line) if line.startswith("| `") else []
        if cells:
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == sorted(NAMES), "docs/metrics.md must have one table row per registered metric"
    for name, prop in PROPERTIES.items():
        assert rows[name] == _cells(table_row(prop)), f"docs row of {name} differs from PROPERTIES"
    assert markdown_table() in text
    assert docs_problems(text) == []


def test_documented_range_is_the_specs_value_range():
    assert range_problems() == []
    assert parse_range("≈ [-1, 1]") == (-1.0, 1.0)
    assert parse_range("(-∞, 1]") == (float("-inf"), 1.0)
    assert parse_range("unbounded; ≈ [-1, 1] when D is large") == (float("-inf"), float("inf"))
    assert parse_range("between zero and one") is None


def test_docs_check_catches_a_wrong_range():
    """A doc row whose range differs from the spec is reported, and so is a spec whose range the row contradicts."""
    text = DOCS.read_text(encoding="utf-8")
    row = table_row(PROPERTIES["cka"])
    wrong = row.replace("| [0, 1] |", "| [-1, 1] |", 1)
    assert wrong != row
    assert any("'cka'" in p for p in docs_problems(text.replace(row, wrong)))


@pytest.mark.parametrize("name", NAMES)
def test_scores_lie_in_the_specs_value_range(name):
    low, high = M.spec(name).value_range
    for seed in range(3):
        a, b = pair(seed, 40, 12, 12)
        unrelated = pair(seed + 10, 40, 12, 12)[0]  # structured, but independent of b
        for x, y in ((a, b), (unrelated, b), (a, a)):
            assert low - TOL <= score(name, x, y) <= high + TOL


def test_biased_cka_is_never_negative():
    """Biased HSIC of centred PSD kernels is tr(HKH HLH) >= 0, for the linear and the RBF kernel alike."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        a, b = rng.standard_normal((30, 5)), rng.standard_normal((30, 7))
        assert M.get("cka")(a, b) >= 0.0
        assert M.get("cka")(a, b, kernel="rbf") >= 0.0


def test_docs_mention_every_reference_quirk():
    text = DOCS.read_text(encoding="utf-8").lower()
    for phrase in ("divided by k", "1e-6", "distance_agnostic", "randomised", "ties", "argmax", "n ≥ 4"):
        assert phrase in text, phrase
