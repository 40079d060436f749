"""Pure helpers behind the report figures."""

from __future__ import annotations

import numpy as np

from prh.report.figures import classical_mds, label_offsets


def test_labels_of_clustered_points_are_stacked_and_isolated_ones_are_not():
    xy = np.array([[0.0, 1.0], [10.0, 5.0], [10.01, 5.01], [10.02, 4.99], [5.0, -3.0]])
    offsets = label_offsets(xy)
    assert offsets[0] == 3.0 and offsets[4] == 3.0
    assert sorted(offsets[1:4]) == [-15.0, -6.0, 3.0]  # three distinct rows of text


def test_classical_mds_recovers_planar_distances():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(6, 2))
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    xy = classical_mds(dist)
    recovered = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.testing.assert_allclose(recovered, dist, atol=1e-9)
