"""One frozen, validated set of every option that changes the numbers of the transfer probes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prh._validation import ConfigFields, check_bool, check_choice, check_float, check_int, check_quantile
from prh.errors import InputError

#: Solvers of the linear probe: L-BFGS in torch (default, fast) or scikit-learn's LogisticRegression (lbfgs).
SOLVERS = ("torch", "sklearn")


@dataclass(frozen=True)
class ProbeConfig(ConfigFields):
    """Options of the k-NN and linear (logistic-regression) probes (frozen; validated when built).

    ``to_dict()`` / ``from_dict()`` give a round trip through plain JSON values; the dict is part of the key of a
    cached probe result.

    Parameters
    ----------
    folds : int, default 5
        Outer stratified cross-validation folds, >= 2. Also the inner folds that choose the best layer.
    repeats : int, default 1
        Repetitions of the outer folds with other random splits, >= 1 (intervals then use folds x repeats scores).
    k : int, default 10
        Neighbours of the k-NN classifier (majority vote, Euclidean distance on the prepared features).
    C : float, default 1.0
        Inverse L2 penalty of the logistic regression (scikit-learn's convention: C x sum of losses + |W|^2 / 2),
        on features standardised with the training fold's mean and standard deviation.
    shuffles : int, default 1
        Label-shuffled controls: each repeats the whole procedure (layer choice included) with the labels randomly
        permuted; >= 1.
    seed : int, default 0
        Seed of the folds and the shuffles; results are deterministic for a seed.
    level : float, default 0.95
        Level of the intervals, 0 < level < 1.
    q : float, default 0.95
        Outlier clamp quantile of :func:`prh.prepare` applied to the stored features (as for alignment).
    skip_input_layers : bool, default True
        Leave input layers (a stem, token embeddings; :mod:`prh.competence.layers`) out of the best-layer choice
        and, in the report's Fig. 2 view, out of the best alignment pairs.
    solver : ``"torch"`` or ``"sklearn"``, default ``"torch"``
        The linear probe's solver; both minimise the same objective (the test suite compares them).
    max_iter : int, default 500
        Iterations of the linear probe's L-BFGS.
    min_per_class : int or None, default None
        Classes with fewer labelled items are left out (reported); None = ``folds``.
    """

    folds: int = 5
    repeats: int = 1
    k: int = 10
    C: float = 1.0
    shuffles: int = 1
    seed: int = 0
    level: float = 0.95
    q: float = 0.95
    skip_input_layers: bool = True
    solver: str = "torch"
    max_iter: int = 500
    min_per_class: int | None = None

    def __post_init__(self) -> None:
        clean: dict[str, Any] = {
            "folds": check_int(self.folds, "folds", minimum=2, hint="stratified cross-validation folds"),
            "repeats": check_int(self.repeats, "repeats", minimum=1, hint="repetitions of the folds"),
            "k": check_int(self.k, "k", minimum=1, hint="neighbours of the k-NN probe"),
            "C": check_float(self.C, "C", 0.0, None, inclusive=(False, True), hint="inverse L2 penalty, > 0"),
            "shuffles": check_int(self.shuffles, "shuffles", minimum=1, hint="label-shuffled controls"),
            "seed": check_int(self.seed, "seed"),
            "level": check_float(
                self.level, "level", 0.0, 1.0, inclusive=(False, False), hint="an interval level, e.g. 0.95"
            ),
            "q": check_quantile(self.q, "q"),
            "skip_input_layers": check_bool(self.skip_input_layers, "skip_input_layers"),
            "solver": check_choice(self.solver, "solver", SOLVERS),
            "max_iter": check_int(self.max_iter, "max_iter", minimum=1, hint="L-BFGS iterations"),
            "min_per_class": (
                None
                if self.min_per_class is None
                else check_int(self.min_per_class, "min_per_class", minimum=2, hint="items per class")
            ),
        }
        if clean["min_per_class"] is not None and clean["min_per_class"] < clean["folds"]:
            raise InputError(
                f"min_per_class={clean['min_per_class']} is smaller than folds={clean['folds']}: a stratified fold "
                f"needs at least one item of each class. Use min_per_class >= {clean['folds']} (or None)."
            )
        for name, value in clean.items():
            object.__setattr__(self, name, value)

    @property
    def class_minimum(self) -> int:
        """The smallest class a probe keeps: ``min_per_class`` or ``folds``."""
        return self.min_per_class if self.min_per_class is not None else self.folds
