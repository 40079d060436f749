"""Tests of prh.world: the Section 5 simulator (exact PMI kernel, learners, measurements, CLI)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from prh.errors import InputError
from prh.world import (
    FAST,
    LearnerConfig,
    World,
    WorldSettings,
    cooccurrence_pairs,
    info_nce,
    kernel_agreement,
    learned_kernel,
    lossy_target,
    make_encoder,
    make_rendering,
    make_world,
    merge_pairs,
    pmi_factorisation,
    pmi_kernel,
    train_contrastive,
)
from prh.world.learner import embed_states
from prh.world.world import empirical_cooccurrence

pytestmark = pytest.mark.usefixtures("one_thread")


# A 3-state chain whose stationary law is easy by hand: T is doubly stochastic, so pi = (1/3, 1/3, 1/3).
T3 = [[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.2, 0.5]]


def test_pmi_of_three_state_chain_matches_hand_computation():
    world = World.from_transition(T3, window=1)
    assert torch.allclose(world.stationary, torch.full((3,), 1 / 3, dtype=torch.float64), atol=1e-12)
    # Window 1, both orders: P_coor(a, b) = (pi_a T_ab + pi_b T_ba) / 2 = (T_ab + T_ba) / 6.
    # (0,0): 0.5/3; (0,1): (0.3 + 0.2)/6 = 1/12; (0,2): (0.2 + 0.3)/6 = 1/12; every off-diagonal pair is 1/12.
    hand_p = [[1 / 6, 1 / 12, 1 / 12], [1 / 12, 1 / 6, 1 / 12], [1 / 12, 1 / 12, 1 / 6]]
    assert torch.allclose(world.p_coor(), torch.tensor(hand_p, dtype=torch.float64), atol=1e-12)
    # PMI = log(P / (1/9)): diagonal log(9/6) = log 1.5, off-diagonal log(9/12) = log 0.75.
    hand_pmi = [[math.log(1.5), math.log(0.75), math.log(0.75)]]
    pmi = world.pmi()
    assert pmi[0, 0].item() == pytest.approx(math.log(1.5), abs=1e-12)
    assert pmi[0, 1].item() == pytest.approx(hand_pmi[0][1], abs=1e-12)
    assert torch.allclose(pmi, pmi.T)


def test_pmi_of_non_uniform_chain_window_two_by_hand():
    # Two states, T = [[0.9, 0.1], [0.2, 0.8]]: pi = (2/3, 1/3) (balance: pi_0 * 0.1 = pi_1 * 0.2).
    t = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    world = World.from_transition(t, window=2)
    assert torch.allclose(world.stationary, torch.tensor([2 / 3, 1 / 3], dtype=torch.float64), atol=1e-12)
    # T^2 = [[0.83, 0.17], [0.34, 0.66]]. Reversible chain, so P_coor(0,1) = pi_0 (T_01 + T^2_01) / 2.
    p01 = (2 / 3) * (0.1 + 0.17) / 2
    p00 = (2 / 3) * (0.9 + 0.83) / 2
    p11 = (1 / 3) * (0.8 + 0.66) / 2
    p = world.p_coor()
    assert p[0, 1].item() == pytest.approx(p01, abs=1e-12)
    assert p[0, 0].item() == pytest.approx(p00, abs=1e-12)
    assert p[1, 1].item() == pytest.approx(p11, abs=1e-12)
    assert world.pmi()[0, 1].item() == pytest.approx(math.log(p01 / (2 / 9)), abs=1e-12)


def test_pcoor_marginals_are_stationary_and_empirical_law_converges():
    world = make_world(16, 3, seed=1)
    p = world.p_coor()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(p, p.T)
    assert torch.allclose(p.sum(1), world.stationary, atol=1e-12)
    chains = world.sample(400, 60, torch.Generator().manual_seed(0))
    emp = empirical_cooccurrence(chains, 16, 3)
    assert (emp - p).abs().max().item() < 1e-2


def test_cooccurrence_pairs_cover_each_offset_equally():
    chains = torch.arange(10).view(1, 10)
    pairs = cooccurrence_pairs(chains, 2)
    offsets = pairs[:, 1] - pairs[:, 0]
    assert (offsets == 1).sum() == (offsets == 2).sum() == 8


def test_exact_pmi_factorisation_scores_one_and_random_scores_low():
    world = make_world(32, 2, seed=0)
    pmi = world.pmi()
    f = pmi_factorisation(pmi)
    assert kernel_agreement(learned_kernel(f), pmi) == pytest.approx(1.0, abs=1e-9)
    # Invariant to the temperature and to the constant c of K_PMI + c.
    assert kernel_agreement(3.0 * pmi + 7.0, pmi) == pytest.approx(1.0, abs=1e-12)
    rand = torch.randn(32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(kernel_agreement(rand @ rand.T, pmi)) < 0.2


def test_pmi_of_zero_cooccurrence_raises():
    with pytest.raises(InputError, match="never co-occur"):
        pmi_kernel(torch.tensor([[0.5, 0.0], [0.0, 0.5]]))


def test_lossy_observation_lowers_the_ceiling():
    world = make_world(32, 2, seed=0)
    p, pmi = world.p_coor(), world.pmi()
    assert kernel_agreement(lossy_target(p, torch.arange(32)), pmi) == pytest.approx(1.0, abs=1e-12)
    ceiling_half = kernel_agreement(lossy_target(p, merge_pairs(32, 0.5, seed=0)), pmi)
    ceiling_all = kernel_agreement(lossy_target(p, merge_pairs(32, 1.0, seed=0)), pmi)
    assert ceiling_all < ceiling_half < 0.95
    lossy = make_rendering(32, 8, seed=0, merge=merge_pairs(32, 1.0, seed=0))
    assert not lossy.bijective
    assert torch.unique(lossy.table, dim=0).shape[0] == 16
    assert make_rendering(32, 8, seed=0).bijective


def test_info_nce_of_uninformative_critic_is_log_batch():
    z = torch.zeros(8, 4)
    assert info_nce(z, z).item() == pytest.approx(math.log(8), abs=1e-6)


def _tiny(steps: int, seed: int = 0) -> tuple[float, float, list[float]]:
    world = make_world(24, 1, bandwidth=0.08, seed=seed)
    pmi = world.pmi()
    rendering = make_rendering(24, 12, seed=seed + 1)
    chains = world.sample(200, 40, torch.Generator().manual_seed(seed))
    pairs = cooccurrence_pairs(chains, 1)
    config = LearnerConfig(width=64, depth=2, out_dim=16, steps=steps, batch_size=128, lr=1e-2)
    encoder = make_encoder(rendering.dim, config, seed)
    before = kernel_agreement(learned_kernel(embed_states(encoder, rendering.table)), pmi)
    losses = train_contrastive(encoder, rendering, pairs, config, torch.Generator().manual_seed(seed))
    after = kernel_agreement(learned_kernel(embed_states(encoder, rendering.table)), pmi)
    return before, after, losses


def test_training_reduces_loss_and_raises_pmi_agreement():
    before, after, losses = _tiny(steps=300)
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert last < first - 0.3
    assert after > before + 0.3
    assert after > 0.8


def test_seeded_training_is_deterministic():
    a = _tiny(steps=30, seed=3)
    b = _tiny(steps=30, seed=3)
    assert a == b


def test_noisy_observations_are_seeded():
    rendering = make_rendering(10, 4, seed=0, noise=0.5)
    states = torch.arange(10)
    x1 = rendering.observe(states, torch.Generator().manual_seed(1))
    x2 = rendering.observe(states, torch.Generator().manual_seed(1))
    assert torch.equal(x1, x2)
    assert not torch.equal(x1, rendering.table)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: make_world(1), "m"),
        (lambda: make_world(8, 0), "window"),
        (lambda: make_world(8, 1, structure="cube"), "structure"),
        (lambda: make_world(8, 1, teleport=1.5), "teleport"),
        (lambda: LearnerConfig(width=0), "width"),
        (lambda: LearnerConfig(depth=-1), "depth"),
        (lambda: LearnerConfig(temperature=0.0), "temperature"),
        (lambda: WorldSettings(widths=(4, 0)), "widths"),
        (lambda: WorldSettings(m=1), "m"),
        (lambda: WorldSettings(window=0), "window"),
        (lambda: make_rendering(8, 0, seed=0), "dim"),
        (lambda: World.from_transition([[0.5, 0.4], [0.5, 0.5]]), "row-stochastic"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(InputError, match=name):
        call()


def test_run_world_seeds_validation():
    from prh.world import run_world

    with pytest.raises(InputError, match="seeds"):
        run_world(FAST, seeds=0)


_MICRO = replace(
    FAST,
    m=16,
    widths=(2, 16),
    data_tokens=(200, 1000),
    tokens=1000,
    chain_length=50,
    steps=40,
    batch_size=64,
    k=3,
)


def test_micro_experiment_is_deterministic_and_complete():
    from prh.world import run_world

    a = run_world(_MICRO, seeds=1)
    b = run_world(_MICRO, seeds=1)
    assert a["runs"] == b["runs"]
    s = a["summary"]
    assert s["capacity"]["width"] == [2, 16]
    assert s["data"]["tokens"] == [200, 1000]
    assert 0.0 < s["lossy"]["ceiling"]["mean"] < 1.0
    assert set(s["headline"]) == {
        "largest_learner_pmi_agreement",
        "capacity_spearman_mutual_knn",
        "lossy_gap_agreement",
        "lossy_gap_mutual_knn",
        "lossy_agreement_sd",
    }  # measured numbers only: pass/fail thresholds live in the tests, not in the product's output


def test_cli_fast_writes_json_and_pngs(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    import prh.world.experiment as experiment
    from prh.cli import app

    monkeypatch.setattr(experiment, "FAST", _MICRO)
    result = CliRunner().invoke(app, ["world", "--fast", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "world.json").read_text())
    assert data["mode"] == "fast" and data["seeds"] == 1
    for name in ("world_capacity.png", "world_data.png", "world_kernel_scatter.png", "world_lossy.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_cli_rejects_bad_seeds(tmp_path):
    from typer.testing import CliRunner

    from prh.cli import app

    result = CliRunner().invoke(app, ["world", "--seeds", "0", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError) and "--seeds" in str(result.exception)


@pytest.mark.slow
def test_fast_preset_learns_and_lossy_is_lower():
    from prh.world import run_world

    result = run_world(FAST, seeds=1)
    headline = result["summary"]["headline"]
    assert headline["largest_learner_pmi_agreement"] >= 0.9
    assert headline["capacity_spearman_mutual_knn"] >= 0.8
    assert headline["lossy_gap_agreement"] > 0.2
    assert headline["lossy_gap_agreement"] > 3 * max(headline["lossy_agreement_sd"], 0.01)
    assert headline["lossy_gap_mutual_knn"] > 0
    lossy = result["summary"]["lossy"]
    assert lossy["agree_lossy"]["mean"] < lossy["ceiling"]["mean"] + 0.05
