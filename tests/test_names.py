"""Public names say what they are: renamed classes keep a warning alias for one release."""

from __future__ import annotations

import pytest

import prh
import prh.align
import prh.align.engine


@pytest.mark.parametrize("module", [prh, prh.align, prh.align.engine])
def test_experiment_is_a_deprecated_alias_of_pairgrid(module):
    with pytest.warns(DeprecationWarning, match="PairGrid"):
        cls = module.Experiment
    assert cls is prh.align.PairGrid
    assert module.__name__ in {"prh", "prh.align", "prh.align.engine"}


def test_pairgrid_is_the_public_name():
    assert prh.PairGrid is prh.align.PairGrid
    assert "PairGrid" in prh.__all__ and "Experiment" not in prh.__all__
    assert "PairGrid" in prh.align.__all__ and "Experiment" not in prh.align.__all__
