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


def test_every_registry_answers_the_same_verbs():
    import prh.experiments
    import prh.metrics
    import prh.models
    import prh.models.registry
    import prh.zoo
    from prh.errors import InputError

    for registry, record in [
        (prh.metrics, prh.metrics.spec),
        (prh.experiments, prh.experiments.spec),
        (prh.models.registry, prh.models.registry.spec),
        (prh.zoo, prh.zoo.spec),
    ]:
        names = registry.names()
        assert names and all(isinstance(n, str) for n in names)
        assert record(names[0]).name == names[0]
        assert registry.get(names[0]) is not None
        with pytest.raises(InputError, match="unknown"):
            record("no-such-name")
    assert prh.models.names() == prh.models.registry.names() == prh.models.model_names()
    assert prh.models.get("minilm-l6") == prh.models.get_model("minilm-l6")
    assert prh.zoo.get(prh.zoo.names()[0]) is prh.zoo.get_entry(prh.zoo.names()[0])
    assert prh.experiments.get("colors") is prh.experiments.spec("colors")
    assert prh.metrics.get("cka") is prh.metrics.cka


def test_one_default_metric_name_and_the_old_align_names_go():
    import prh.metrics
    from prh.align import AlignConfig

    assert AlignConfig().metrics[0] == prh.metrics.DEFAULT_METRIC
    assert not hasattr(prh.align, "resolve")
    assert "DEFAULT_METRICS" not in prh.align.__all__
    with pytest.warns(DeprecationWarning, match="AlignConfig"):
        assert prh.align.DEFAULT_METRICS == AlignConfig().metrics


def test_the_dataset_says_what_it_has_instead_of_its_name_being_checked():
    from prh.data import PairedDataset, builtin_class, credit, load_dataset
    from prh.data.openmoji import OpenMojiDataset

    assert builtin_class("openmoji") is OpenMojiDataset and builtin_class("wit_1024") is None
    assert credit("openmoji") == OpenMojiDataset.credit and "CC BY-SA 4.0" in credit("openmoji")
    assert credit("openmoji+density=3") == credit("openmoji")  # views of it, as the experiments name them
    assert credit("folder:/data/openmoji-like") is None and credit("minhuh/prh@wit_1024") is None
    assert PairedDataset.credit is None and PairedDataset.emoji_ids is False
    data = load_dataset("openmoji", n=4)
    assert data.emoji_ids and data.credit == OpenMojiDataset.credit  # a subset view answers like its parent
    renamed = data.with_captions([["x"]] * 4, "renamed")
    assert renamed.emoji_ids and renamed.credit == data.credit
