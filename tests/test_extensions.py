"""A model family and a metric defined outside prh (here, in this test module) are picked up everywhere: the
factory, model entries, ``prh models``, the metric registry and property table, the docs check, reports' chance
levels, ``prh score``. Both are removed again afterwards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import prh.metrics as M
from prh.cli import app
from prh.errors import InputError
from prh.metrics.properties import NO, PROPERTIES, YES, MetricProperties, docs_problems, markdown_table
from prh.metrics.registry import MetricSpec, register, unregister
from prh.models import build_adapter
from prh.models import registry as model_registry
from prh.models._availability import availability
from prh.models.adapters import Requirement, adapter_names, register_adapter, unregister_adapter
from prh.models.base import Adapter
from prh.models.registry import spec_from_dict
from prh.models.result import FeatureResult
from prh.models.spec import ModelSpec
from prh.report.figures import chance_level

ADAPTER = "test-echo"
METRIC = "test_overlap"
MISSING_MODULE = "prh_test_no_such_module_xyz"


class EchoAdapter(Adapter):
    """Deterministic random features per item, one layer per option ``layers`` (default 2)."""

    def __init__(self, spec: ModelSpec, device: str = "auto", dtype: str = "float32") -> None:
        self.spec = spec
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.n_params = 0

    def _extract(self, dataset, batch_size, pool, progress) -> FeatureResult:
        n = len(dataset)
        gen = torch.Generator().manual_seed(0)
        layers = [torch.randn(n, 4, generator=gen) for _ in range(int(self.spec.options.get("layers", 2)))]
        return FeatureResult(layers=layers, layer_names=[f"echo.{i}" for i in range(len(layers))])


def _echo_check(spec: ModelSpec):
    return (True, "echo family: nothing to download") if spec.source == "here" else None


def _overlap_cache(x: torch.Tensor, k: int = 3) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64).sum(dim=1)


def _overlap_grid(xs, ys, k: int = 3) -> torch.Tensor:
    out = torch.empty(len(xs), len(ys), dtype=torch.float64)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            out[i, j] = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    return out


def _overlap_check(n: int, k: int = 3) -> dict:
    return {"k": int(k)}


def _overlap(a, b, k: int = 3) -> float:
    return float(
        _overlap_grid([_overlap_cache(torch.as_tensor(a))], [_overlap_cache(torch.as_tensor(b))])[0, 0]
    )


@pytest.fixture
def echo_family():
    register_adapter(
        ADAPTER,
        pools=("mean", "cls"),
        modality="vision",
        requires=(
            Requirement(
                "echo-extra",
                (MISSING_MODULE,),
                hint="pip install prh-echo-extra",
                when=lambda spec: bool(spec.options.get("fancy")),
            ),
        ),
        check=_echo_check,
    )(EchoAdapter)
    try:
        yield
    finally:
        unregister_adapter(ADAPTER)
        model_registry.reset_registry()
    assert ADAPTER not in adapter_names()


@pytest.fixture
def overlap_metric():
    register(
        MetricSpec(
            name=METRIC,
            func=_overlap,
            layer_cache=_overlap_cache,
            grid=_overlap_grid,
            check_kwargs=_overlap_check,
            value_range=(-1.0, 1.0),
            symmetric=True,
            uses_k=True,
            null_expectation=lambda n, kw: kw.get("k", 3) / (n - 1),
            description="test metric: correlation of the row sums",
            defaults={"k": 3},
            display_name="row-sum overlap",
            properties=MetricProperties(
                definition="Pearson correlation of the row sums",
                value_range="[-1, 1]",
                symmetric=True,
                identity=True,
                orthogonal=NO,
                isotropic_scaling=YES,
                invertible_linear=NO,
                translation=NO,
                null="k / (N-1) (a made-up null for this test)",
                cost="O(N D)",
                prefer="never: it exists to test the registry",
            ),
        )
    )
    try:
        yield
    finally:
        unregister(METRIC)
    assert METRIC not in M.names()


def test_a_new_adapter_is_built_by_the_factory(echo_family):
    spec = ModelSpec(name="echo", source="here", adapter=ADAPTER, modality="vision")
    adapter = build_adapter(spec, device="cpu")
    assert type(adapter) is EchoAdapter
    result = adapter.extract([0] * 5, batch_size=2, pool="cls")
    assert result.meta["pool"] == "cls" and len(result.layers) == 2 and result.layers[0].shape == (5, 4)
    with pytest.raises(InputError, match="not supported"):
        adapter.extract([0] * 5, pool="last")


def test_a_new_adapter_is_known_to_model_entries_and_the_tables(echo_family):
    from prh.models import spec as spec_module

    assert ADAPTER in spec_module.ADAPTERS
    assert spec_module.ADAPTER_POOLS[ADAPTER] == ("mean", "cls")
    assert spec_module.ADAPTER_MODALITY[ADAPTER] == "vision"
    assert model_registry.EXTRA_MODULES["echo-extra"] == (MISSING_MODULE,)
    entry = spec_from_dict({"name": "e1", "source": "here", "adapter": ADAPTER})
    assert (entry.modality, entry.pool) == ("vision", "mean")  # implied by the declaration
    with pytest.raises(InputError, match="not supported by test-echo"):
        spec_from_dict({"name": "e2", "source": "here", "adapter": ADAPTER, "pool": "last"})
    adhoc = model_registry.resolve_models(f"{ADAPTER}:somewhere")[0]
    assert (adhoc.adapter, adhoc.source, adhoc.pool) == (ADAPTER, "somewhere", "mean")


def test_a_new_adapter_explains_itself_in_prh_models(echo_family, tmp_path):
    fancy = ModelSpec(name="e", source="here", adapter=ADAPTER, modality="vision", options={"fancy": True})
    assert model_registry.extras_missing(fancy) == [MISSING_MODULE]
    ok, why = availability(fancy)
    assert not ok and "pip install prh-echo-extra" in why
    f = tmp_path / "m.toml"
    f.write_text(
        '[[model]]\nname = "echo-here"\nsource = "here"\nadapter = "test-echo"\n\n'
        '[[model]]\nname = "echo-extra"\nsource = "here"\nadapter = "test-echo"\nextra = "echo-extra"\n\n'
        '[sets]\nechoes = ["echo-here", "echo-extra"]\n'
    )
    res = CliRunner().invoke(app, ["models", "--set", "echoes", "--models-file", str(f)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "echo-here" in text and "echo family: nothing to download" in text
    assert "echo-extra" in text and "pip install prh-echo-extra" in text


def test_an_unknown_adapter_is_refused_after_unregistering():
    with pytest.raises(InputError, match="unknown adapter"):
        build_adapter(ModelSpec(name="gone", source="x", adapter=ADAPTER, modality="vision"))
    with pytest.raises(InputError, match="adapter"):
        spec_from_dict({"name": "gone", "source": "x", "adapter": ADAPTER})


def test_a_new_metric_is_in_the_registry_and_the_property_table(overlap_metric):
    assert METRIC in M.names() and M.spec(METRIC).label == "row-sum overlap"
    row = PROPERTIES[METRIC]
    assert row.name == METRIC and row.symmetric
    assert f"| `{METRIC}` | Pearson correlation of the row sums |" in markdown_table()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 3))
    assert M.get(METRIC)(a, a) == pytest.approx(1.0)


def test_the_docs_check_notices_a_new_metric(overlap_metric):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert docs_problems(text) == [f"no table row for metric {METRIC!r}"]
    assert docs_problems(markdown_table()) == []


def test_a_new_metric_gives_its_chance_level_to_reports(overlap_metric):
    value, label = chance_level(METRIC, 4, 41)
    assert value == pytest.approx(4 / 40) and label.startswith("k / (N-1)")
    assert chance_level("mutual_knn", 10, 101)[0] == pytest.approx(0.1)
    assert chance_level("cka", float("nan"), 100) is None  # no closed form


def test_a_new_metric_is_scored_by_prh_score(overlap_metric, tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((30, 5)).astype(np.float32)
    b = a + 0.1 * rng.standard_normal((30, 5)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    res = CliRunner().invoke(
        app, ["score", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--metric", METRIC, "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["score"] == pytest.approx(_overlap(a, b))


def test_the_registries_are_clean_again():
    assert METRIC not in M.names() and METRIC not in PROPERTIES
    assert ADAPTER not in adapter_names()
    assert docs_problems(markdown_table()) == []
