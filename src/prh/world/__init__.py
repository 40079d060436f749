"""The idealized world of Section 5 of the Platonic Representation Hypothesis: contrastive learners of different
modalities converge to the same kernel, the pointwise mutual information (PMI) of co-occurring events.

Modules (one job each):

* :mod:`prh.world.world` — the events Z: a Markov chain over M states, co-occurrence law P_coor, exact PMI kernel;
* :mod:`prh.world.observe` — observation functions obs_X / obs_Y (bijective random renderings, noise, lossy maps);
* :mod:`prh.world.learner` — MLP encoders trained with InfoNCE on co-occurring observations of one modality;
* :mod:`prh.world.measure` — agreement of a kernel with PMI, exact PMI factorisation, the lossy ceiling;
* :mod:`prh.world.experiment` — capacity / data sweeps over seeds and the lossy case;
* :mod:`prh.world.plots` — the figures.

See ``docs/world.md``.
"""

from __future__ import annotations

from prh.world.experiment import DEFAULT, FAST, WorldSettings, run_world, summarise
from prh.world.learner import Encoder, LearnerConfig, info_nce, make_encoder, train_contrastive
from prh.world.measure import kernel_agreement, learned_kernel, lossy_target, offdiagonal, pmi_factorisation
from prh.world.observe import Rendering, make_rendering, merge_pairs
from prh.world.world import World, cooccurrence, cooccurrence_pairs, make_world, pmi_kernel

__all__ = [
    "DEFAULT",
    "FAST",
    "Encoder",
    "LearnerConfig",
    "Rendering",
    "World",
    "WorldSettings",
    "cooccurrence",
    "cooccurrence_pairs",
    "info_nce",
    "kernel_agreement",
    "learned_kernel",
    "lossy_target",
    "make_encoder",
    "make_rendering",
    "make_world",
    "merge_pairs",
    "offdiagonal",
    "pmi_factorisation",
    "pmi_kernel",
    "run_world",
    "summarise",
    "train_contrastive",
]
