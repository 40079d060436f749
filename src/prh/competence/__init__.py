"""Measured competence: transfer probes on stored features (the paper's Fig. 2) and downstream scores (Fig. 4).

- :mod:`prh.competence.config` -- :class:`ProbeConfig`, every option that changes the probes' numbers.
- :mod:`prh.competence.probes` -- :func:`probe_layers`: k-NN and linear (logistic-regression) probes of one
  model's layers, stratified cross-validation with nested best-layer choice, intervals, label-shuffled control.
- :mod:`prh.competence.labels` -- :class:`Labels`: Unicode emoji groups/subgroups of the OpenMoji items
  (:func:`emoji_labels`), labels files (:func:`labels_from_file`).
- :mod:`prh.competence.datasets` -- labelled image sets: folder-per-class trees, Hugging Face image
  classification (:func:`load_labelled`).
- :mod:`prh.competence.runner` -- :func:`run_competence` over model sets from the feature store ->
  :class:`CompetenceResults` (tables + provenance, cached per model in the store).
- :mod:`prh.competence.downstream` -- lm-evaluation-harness results files and CSV downstream scores.
- :mod:`prh.competence.layers` -- input layers (stems, token embeddings) from the stored layer names.
- :mod:`prh.competence.analysis` -- the Fig. 2 buckets and model map, the Fig. 4 table, input-layer exclusion.

Layering: this package sits with the alignment engine (it uses its feature loading and results); the report draws
its figures; it never imports :mod:`prh.report` or :mod:`prh.commands`.
"""

from __future__ import annotations

from prh.competence.analysis import (
    competence_buckets,
    distance_matrix,
    downstream_alignment,
    effective_pairs,
    map_coordinates,
)
from prh.competence.config import ProbeConfig
from prh.competence.datasets import ClassFolderDataset, HFClassificationDataset, load_labelled
from prh.competence.downstream import attach, read_downstream, read_downstream_csv, read_lm_eval
from prh.competence.labels import Labels, ProbeLabels, emoji_labels, labels_from_file, read_emoji_test
from prh.competence.layers import best_excluding, input_layers, is_input_layer_name
from prh.competence.probes import ModelProbe, cv_interval, probe_layers
from prh.competence.runner import CompetenceResults, coverage_lines, run_competence

__all__ = [
    "ClassFolderDataset",
    "CompetenceResults",
    "HFClassificationDataset",
    "Labels",
    "ModelProbe",
    "ProbeConfig",
    "ProbeLabels",
    "attach",
    "best_excluding",
    "competence_buckets",
    "coverage_lines",
    "cv_interval",
    "distance_matrix",
    "downstream_alignment",
    "effective_pairs",
    "emoji_labels",
    "input_layers",
    "is_input_layer_name",
    "labels_from_file",
    "load_labelled",
    "map_coordinates",
    "probe_layers",
    "read_downstream",
    "read_downstream_csv",
    "read_emoji_test",
    "read_lm_eval",
    "run_competence",
]
