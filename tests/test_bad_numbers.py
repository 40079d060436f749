"""No silent or misdiagnosed numbers: features of extreme magnitude, CCA with as many features as samples, and
downstream scores attached to the wrong model or modality. Each case gives the right number or one clear error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import prh
from prh.competence import attach, read_downstream, read_lm_eval
from prh.errors import InputError
from prh.metrics import registry
from prh.metrics.kernels import fit_scale
from prh.stats import bootstrap_ci, calibrate_sweep

FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(n=48, da=10, db=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 4, generator=g, dtype=torch.float64)
    a = base @ torch.randn(4, da, generator=g, dtype=torch.float64) + torch.randn(n, da, generator=g)
    b = base @ torch.randn(4, db, generator=g, dtype=torch.float64) + torch.randn(n, db, generator=g)
    return a, b


def _options(name):
    spec = registry.spec(name)
    return {"k": 5} if spec.uses_k else ({"dim": 4} if name == "svcca" else {})


# ------------------------------------------------------------------------------ extreme magnitudes


SCALES = [(1e30, torch.float32), (1e-30, torch.float32), (1e200, torch.float64), (1e-200, torch.float64)]


@pytest.mark.parametrize("name", prh.metrics.names())
@pytest.mark.parametrize(("scale", "dtype"), SCALES)
def test_scale_free_metrics_give_the_right_number_at_any_magnitude(name, scale, dtype):
    """x * 1e30 in float32 overflows every inner product; the metrics whose score does not depend on the scale
    rescale by a power of two and give the score of x (to the rounding of the product itself)."""
    spec = registry.spec(name)
    kw = _options(name)
    if spec.scale_free is None or not spec.scale_free(spec.check_kwargs(48, **kw)):
        a, b = (t.to(dtype) for t in _pair())
        with pytest.raises(
            InputError, match="overflow|underflow"
        ):  # depends on the scale: refused, not wrong
            spec.func(a * scale, b, **kw)
        return
    a, b = (t.to(dtype) for t in _pair())
    expected = spec.func(a, b, **kw)
    for scaled in ((a * scale, b), (a, b * scale), (a * scale, b * scale)):
        assert spec.func(*scaled, **kw) == pytest.approx(expected, rel=1e-5, abs=1e-6), scaled[0].abs().max()


@pytest.mark.parametrize("metric", ["mutual_knn", "unbiased_cka", "cknna", "svcca"])
def test_sweeps_and_calibration_of_huge_features(metric):
    """Layer caches keep the rescaled layers: sweep, null engines and bootstrap see finite kernels."""
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(40, 9, generator=g) for _ in range(2)]
    y = [torch.randn(40, 6, generator=g) + 0.5 * x[0][:, :6] for _ in range(2)]
    kw = _options(metric)
    ref = calibrate_sweep(x, y, metric, K=19, seed=0, keep_null_grids=True, **kw)
    big = calibrate_sweep([t * 1e30 for t in x], y, metric, K=19, seed=0, keep_null_grids=True, **kw)
    np.testing.assert_allclose(big.sweep.scores, ref.sweep.scores, atol=1e-5)
    np.testing.assert_allclose(big.null_grids, ref.null_grids, atol=1e-5)
    assert big.p_value == ref.p_value
    boot = bootstrap_ci([t * 1e30 for t in x], y, metric, B=5, seed=0, **kw)
    ref_boot = bootstrap_ci(x, y, metric, B=5, seed=0, **kw)
    np.testing.assert_allclose(boot.replicates, ref_boot.replicates, atol=1e-5)


@pytest.mark.parametrize(("scale", "kind"), [(1e30, "overflow"), (1e-30, "underflow")])
def test_scale_dependent_options_name_the_overflow_and_the_fix(scale, kind):
    a, b = (t.float() for t in _pair())
    for unbiased in (False, True):
        with pytest.raises(InputError, match=f"A: the features reach .* {kind} float32.*Divide the features"):
            prh.metrics.cka(a * scale, b, kernel="rbf", unbiased=unbiased)
    with pytest.raises(InputError, match=f"{kind} float32"):
        prh.sweep([a * scale], [b], "cka", kernel="rbf")
    assert np.isfinite(prh.metrics.cka(a * scale, b))  # the linear kernel is scale-free


def test_ordinary_features_are_not_touched():
    """Only out-of-range layers are rescaled: anything else is returned as the same object (bit-identical)."""
    a, _ = _pair()
    for x in (a, a.float(), a * 1e6, a.float() * 1e-6, prh.prepare(a.float()), torch.zeros(5, 3)):
        assert fit_scale(x, True) is x and fit_scale(x, False) is x
    huge = fit_scale(a * 2.0**600, True)  # inner products beyond float64's range
    assert torch.equal(huge, a * 2.0 ** -fit_exponent(a))  # exactly a power of two: no digit changed
    assert 0.5 <= float(huge.abs().max()) < 1.0
    tiny = fit_scale(a.float() * 2.0**-100, True)
    assert torch.equal(tiny, a.float() * 2.0 ** -fit_exponent(a.float()))


def fit_exponent(x):
    return int(np.frexp(float(x.abs().max()))[1])


@pytest.mark.parametrize(("scale", "dtype"), [(1e300, torch.float64), (1e-300, torch.float64), *SCALES[:2]])
def test_prepare_of_extreme_values_is_finite_and_right(scale, dtype):
    x = torch.randn(30, 3, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = prh.prepare((x * scale).to(dtype))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    np.testing.assert_allclose(out, prh.prepare(x.to(dtype)), atol=1e-6)
    listed = prh.prepare([(x[:, 0] * scale).to(dtype), (x[:, 1, :5] * scale).to(dtype)])
    np.testing.assert_allclose(listed[1], prh.prepare([x[:, 0], x[:, 1, :5]])[1], atol=1e-6)


def test_prepare_without_normalising_refuses_what_float32_cannot_hold():
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for scale, kind in ((1e300, "overflow"), (1e-300, "underflow")):
        with pytest.raises(InputError, match=f"would {kind} float32.*normalize=True"):
            prh.prepare(x * scale, normalize=False)
    kept = prh.prepare(x.float() * 1e30, normalize=False)  # float32 holds these values: returned (clamped)
    assert torch.isfinite(kept).all() and float(kept.abs().max()) > 1e29


# ------------------------------------------------------------------------------ CCA with D >= N


def _pwcca_reduced_numpy(a, b, dim):
    """Independent PWCCA after keeping each side's top ``dim`` principal directions: CCA of the two orthonormal
    bases by SVD, canonical variates of A, weights over A's original (centred) neurons."""
    x, y = a - a.mean(0), b - b.mean(0)
    ua = np.linalg.svd(x, full_matrices=False)[0][:, :dim]
    ub = np.linalg.svd(y, full_matrices=False)[0][:, :dim]
    u, rho, _ = np.linalg.svd(ua.T @ ub)
    h = ua @ u
    alpha = np.abs(h.T @ x).sum(axis=1)
    return float((alpha * rho).sum() / alpha.sum())


def test_pwcca_with_more_features_than_samples_is_refused_not_one():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((30, 40)), rng.standard_normal((30, 45))  # independent noise, D >= N
    with pytest.raises(
        InputError, match=r"rank 29 .* rank 29 .* at least 29 canonical correlations are 1.*dim=d"
    ):
        prh.metrics.pwcca(a, b)
    with pytest.raises(InputError, match="canonical correlations are 1"):
        prh.sweep(np.stack([a, a], 1), np.stack([b[:, :40], b[:, 5:]], 1), "pwcca")
    a, b = rng.standard_normal((30, 20)), rng.standard_normal((30, 12))  # ranks 20 + 12 > 29 as well
    with pytest.raises(InputError, match="at least 3 canonical"):
        prh.metrics.pwcca(a, b)


def test_pwcca_dim_reduces_first_and_sits_at_chance_on_noise():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((200, 300)), rng.standard_normal((200, 250))
    noise = prh.metrics.pwcca(a, b, dim=5)
    assert noise == pytest.approx(_pwcca_reduced_numpy(a, b, 5), abs=1e-9)
    assert noise < 0.4  # independent: far from the 1.0 of the unreduced D >= N case
    z = rng.standard_normal((200, 3))
    ra, rb = z @ rng.standard_normal((3, 300)), z @ rng.standard_normal((3, 250))
    ra, rb = ra + 0.1 * a, rb + 0.1 * b
    assert prh.metrics.pwcca(ra, rb, dim=3) > 0.9
    assert prh.metrics.pwcca(ra, rb, dim=3) == pytest.approx(_pwcca_reduced_numpy(ra, rb, 3), abs=1e-9)
    assert prh.metrics.pwcca(ra[rng.permutation(200)], rb, dim=3) < 0.4  # shuffled pairing: chance
    with pytest.raises(InputError, match=r"dim=100 is too large for N=200.*dim <= 99"):
        prh.metrics.pwcca(a, b, dim=100)
    for bad in (0, 2.5, True):
        with pytest.raises(InputError, match="positive integer"):
            prh.metrics.pwcca(a, b, dim=bad)


def test_pwcca_default_options_are_unchanged():
    assert registry.spec("pwcca").check_kwargs(50) == {}  # the default stays implicit in results
    assert registry.spec("pwcca").check_kwargs(50, dim=4) == {"dim": 4}


def test_svcca_refuses_dimensions_that_force_correlations_of_one():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((30, 25)), rng.standard_normal((30, 25))
    with pytest.raises(InputError, match=r"dim=20 is too large for N=30.*dim <= 14"):
        prh.metrics.svcca(a, b, dim=20)
    assert prh.metrics.svcca(a, b, dim=14) < 1.0


def test_cli_score_pwcca_on_wide_features_is_one_line(tmp_path, monkeypatch, capsys):
    from prh.cli import main

    rng = np.random.default_rng(3)
    np.save(tmp_path / "a.npy", rng.standard_normal((20, 30)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.standard_normal((20, 30)).astype(np.float32))
    monkeypatch.setattr(
        sys, "argv", ["prh", "score", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "-m", "pwcca"]
    )
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "canonical correlations are 1" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--dim", "3", "--json"])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr().out
    assert exc.value.code in (0, None) and 0.0 <= json.loads(out)["score"] < 1.0


# ------------------------------------------------------------------------------ downstream scores


MODELS = {"tiny-lm": "tiny-org/tiny-lm", "tiny-vit": "/models/vit", "other-lm": "org/other"}
MODALITIES = {"tiny-lm": "language", "tiny-vit": "vision", "other-lm": "language"}


def test_language_benchmarks_are_refused_for_a_vision_model_unless_forced():
    frame = read_downstream(f"tiny-vit={FIXTURES / 'lm_eval_results.json'}")
    with pytest.raises(
        InputError, match="language benchmarks, but tiny-vit is a vision model.*--force-downstream"
    ):
        attach([frame], MODELS, modalities=MODALITIES)
    assert set(attach([frame], MODELS, modalities=MODALITIES, force=True)["model"]) == {"tiny-vit"}


def test_a_file_for_another_model_is_refused_unless_forced():
    frame = read_downstream(f"other-lm={FIXTURES / 'lm_eval_results.json'}")  # the file says tiny-org/tiny-lm
    with pytest.raises(InputError, match="the file says its scores are for 'tiny-org/tiny-lm', not other-lm"):
        attach([frame], MODELS, modalities=MODALITIES)
    assert set(attach([frame], MODELS, modalities=MODALITIES, force=True)["model"]) == {"other-lm"}
    same = read_downstream(f"tiny-lm={FIXTURES / 'lm_eval_results.json'}")  # the same model, named by prh
    assert set(attach([same], MODELS, modalities=MODALITIES)["model"]) == {"tiny-lm"}
    plain = read_lm_eval(FIXTURES / "lm_eval_results.json")
    assert set(attach([plain], MODELS, modalities=MODALITIES)["model"]) == {"tiny-lm"}


def test_csv_rows_say_their_model_and_modality(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("model,task,metric,value,modality\ntiny-lm,hellaswag,acc,0.3,language\n")
    assert set(attach([read_downstream(path)], MODELS, modalities=MODALITIES)["model"]) == {"tiny-lm"}
    with pytest.raises(
        InputError, match="rows for tiny-vit say modality 'language', but tiny-vit is a vision"
    ):
        attach([read_downstream(f"tiny-vit={path}")], MODELS, modalities=MODALITIES)
    path.write_text("model,task,metric,value\ntiny-lm,hellaswag,acc,0.3\n")
    with pytest.raises(InputError, match="the file says its scores are for 'tiny-lm', not other-lm"):
        attach([read_downstream(f"other-lm={path}")], MODELS, modalities=MODALITIES)
    path.write_text("model,task,metric,value,modality\ntiny-vit,imagenet,top1,0.3,language\n")
    with pytest.raises(InputError, match="say modality 'language', but tiny-vit is a vision model"):
        attach([read_downstream(path)], MODELS, modalities=MODALITIES)
    path.write_text(
        "model,task,metric,value\ntiny-vit,imagenet,top1,0.3\n"
    )  # nothing said: nothing to refuse
    assert len(attach([read_downstream(path)], MODELS, modalities=MODALITIES)) == 1


def test_cli_competence_refuses_language_scores_for_a_vision_model(tmp_path, monkeypatch, capsys):
    from prh.cli import main

    models = tmp_path / "models.toml"
    models.write_text(
        '[[model]]\nname = "tiny-vit"\nsource = "/nowhere/vit"\nadapter = "hf-vision"\nmodality = "vision"\n'
        '[[model]]\nname = "tiny-lm"\nsource = "/nowhere/lm"\nadapter = "hf-causal-lm"\nmodality = "language"\n'
    )
    base = ["prh", "competence", "--models", "tiny-vit,tiny-lm", "--models-file", str(models)]
    fixture = FIXTURES / "lm_eval_results.json"
    monkeypatch.setattr(
        sys, "argv", [*base, "--downstream", f"tiny-vit={fixture}", "--out", str(tmp_path / "o")]
    )
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "language benchmarks, but tiny-vit is a vision model" in err and "--force-downstream" in err
    assert not (tmp_path / "o").exists()  # refused before any work


def test_attach_without_modalities_keeps_the_old_contract():
    csv = pd.DataFrame(
        [{"model": "tiny-vit", "task": "t", "metric": "m", "value": 1.0, "stderr": np.nan, "source": "x"}]
    )
    assert set(attach([csv], MODELS)["model"]) == {"tiny-vit"}


def test_cli_align_pwcca_with_layers_wider_than_n_is_one_line_not_all_ones(tmp_path, monkeypatch, capsys):
    """`prh align --metric pwcca` on stored layers with D >= N used to score every pair 1.0; now one line, exit 2."""
    from PIL import Image

    from prh.cli import main
    from prh.data import load_dataset
    from prh.features.store import FeatureStore

    n, data = 24, tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    with open(data / "metadata.jsonl", "w") as fh:
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(data / f"img{i}.png")
            fh.write(json.dumps({"file_name": f"img{i}.png", "text": f"item {i}"}) + "\n")
    dataset = load_dataset(str(data), n=n)
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[model]]\nname = "wide-vis"\nsource = "{tmp_path / "vis"}"\nadapter = "hf-vision"\nmodality = "vision"\n'
        f'[[model]]\nname = "wide-lang"\nsource = "{tmp_path / "lang"}"\nadapter = "hf-causal-lm"\n'
        'modality = "language"\n'
    )
    store = FeatureStore(tmp_path / "store")
    g = torch.Generator().manual_seed(0)
    for name, modality in (("wide-vis", "vision"), ("wide-lang", "language")):
        layers = [torch.randn(n, 40, generator=g) for _ in range(2)]  # independent noise, D >= N
        meta = {"model": name, "modality": modality, "family": "tiny", "params": 1000}
        store.save(dataset, name, "mean", layers, ["layer0", "layer1"], None, meta)
    out = tmp_path / "results"
    args = ["prh", "align", "--models", "wide-vis,wide-lang", "--dataset", str(data), "--n", str(n)]
    args += ["--metric", "pwcca", "--pool", "mean", "--no-report", "--store", str(tmp_path / "store")]
    monkeypatch.setattr(sys, "argv", [*args, "--out", str(out), "--models-file", str(models)])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "Traceback" not in err, err
    last = err.splitlines()[-1]  # progress lines come first; the refusal is one line
    assert "canonical correlations are 1 whatever the data" in last and "dim=d" in last
    assert not (out / "results.parquet").exists()
