"""Transfer probes on stored features: k-NN and linear (logistic-regression) classifiers, cross-validated, with a
label-shuffled control -- the competence measure of the paper's Fig. 2 (there: transfer performance on VTAB).

For one model (L layers of prepared features of the n labelled items) and one label vector y:

1. **Folds.** ``repeats`` x stratified ``folds``-fold splits (scikit-learn's ``RepeatedStratifiedKFold``, seeded).
2. **Layers.** The **last** stored layer, and the **best** layer chosen *inside each outer fold* from the training
   part only: inner stratified folds score the k-NN probe at every candidate layer (input layers left out when
   ``skip_input_layers``), the best mean inner accuracy wins (ties: the shallower layer). The test fold never takes
   part in the choice, so the best-layer accuracy is not inflated by the maximum over L layers -- and the shuffled
   control, which goes through the same choice, stays at chance.
3. **Probes.** k-NN: majority vote of the k nearest training items (squared Euclidean distance on the prepared,
   L2-normalised features, i.e. cosine neighbours; ties of the vote go to the smaller class code, like
   scikit-learn's ``KNeighborsClassifier``). Linear: multinomial logistic regression with an L2 penalty
   (scikit-learn's objective ``C * sum(cross-entropy) + |W|^2 / 2``, intercept not penalised) on features
   standardised with the training fold's mean and standard deviation, solved by L-BFGS in torch (or by scikit-learn).
4. **Scores.** Accuracy and balanced accuracy (mean recall over classes) on every test fold; the estimate is their
   mean, the interval a Student-t interval with Nadeau and Bengio's corrected variance
   ``(1/J + n_test/n_train) * s^2`` over the J fold scores (plain fold-to-fold variance understates the
   uncertainty because training sets overlap).
5. **Control.** The same procedure with y randomly permuted (``shuffles`` times): a classifier that cannot use the
   features. Its balanced accuracy has expectation exactly 1/C (C classes) whatever the class balance, which is why
   the control is judged on balanced accuracy; its plain accuracy sits between sum(p_c^2) and the majority rate.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from prh.competence.config import ProbeConfig
from prh.competence.layers import input_layers
from prh.errors import InputError

#: The probes and layer choices, in table order.
PROBES = ("knn", "linear")
LAYER_CHOICES = ("last", "best")


def cv_interval(
    scores: Sequence[float], test_over_train: float, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of cross-validation fold scores and its interval (Nadeau-Bengio corrected t interval).

    Parameters
    ----------
    scores : sequence of float
        One score per test fold (J = folds x repeats, or x shuffles for a control).
    test_over_train : float
        Mean test-fold size over mean training size (1/(folds-1) for k-fold).
    level : float
        Interval level.

    Returns
    -------
    (mean, low, high)
        ``low``/``high`` are clipped to [0, 1] (scores are accuracies); NaN when J < 2.
    """
    from scipy.stats import t as student_t

    s = np.asarray(scores, dtype=float)
    mean = float(s.mean()) if s.size else float("nan")
    if s.size < 2:
        return mean, float("nan"), float("nan")
    var = float(s.var(ddof=1)) * (1.0 / s.size + float(test_over_train))
    half = float(student_t.ppf((1.0 + level) / 2.0, s.size - 1)) * float(np.sqrt(var))
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over the classes present in ``y_true`` of the fraction of their items predicted right."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [float(np.mean(y_pred[y_true == c] == c)) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else float("nan")


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(n, n) squared Euclidean distances of the rows of ``x`` (float64)."""
    x = x.to(torch.float64)
    sq = (x * x).sum(dim=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    return d.clamp_min_(0.0)


def knn_predict(
    dist: torch.Tensor, train: np.ndarray, test: np.ndarray, y: np.ndarray, k: int, n_classes: int
) -> np.ndarray:
    """k-NN majority vote for the ``test`` rows among the ``train`` rows of a precomputed distance matrix.

    Parameters
    ----------
    dist : (n, n) tensor
        Distances between all items (:func:`squared_distances`).
    train, test : int arrays
        Row indices.
    y : (n,) int array
        Class codes ``0 .. n_classes - 1`` (only the training rows' are read).
    k : int
        Neighbours, ``1 <= k <= len(train)``.

    Returns
    -------
    (len(test),) int array
        Predicted codes; a tied vote goes to the smallest code (as scikit-learn's ``KNeighborsClassifier``).
    """
    sub = dist[torch.as_tensor(test)][:, torch.as_tensor(train)]
    idx = torch.topk(sub, k, dim=1, largest=False).indices
    neighbour_labels = torch.as_tensor(y[train])[idx]
    votes = torch.zeros(len(test), n_classes, dtype=torch.int64)
    votes.scatter_add_(1, neighbour_labels, torch.ones_like(neighbour_labels))
    return votes.argmax(dim=1).numpy()  # first maximum = smallest code


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the setting. The probes' operations are small (a 190 x 760 top-k, a
    1280 x 8 L-BFGS step): with several threads they spend their time synchronising -- on a busy 2-core machine a
    model's probes took 204 s with 2 threads and 15 s with one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = train.mean(dim=0)
    std = train.std(dim=0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


def fit_predict_linear(
    x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, n_classes: int, config: ProbeConfig
) -> tuple[np.ndarray, bool]:
    """Fit the linear probe on a training fold and predict the test fold.

    Parameters
    ----------
    x_train, x_test : (n_train, D), (n_test, D) tensors
        Features (standardised here with the training fold's mean and standard deviation).
    y_train : (n_train,) int array
        Class codes.
    n_classes : int
        Number of classes (codes ``0 .. n_classes - 1``).
    config : ProbeConfig
        ``C``, ``solver``, ``max_iter``.

    Returns
    -------
    (predictions, converged)
        Predicted codes of the test rows and whether the solver met its tolerance within ``max_iter``.
    """
    ztr, zte = _standardise(x_train.to(torch.float32), x_test.to(torch.float32))
    if config.solver == "sklearn":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = LogisticRegression(C=config.C, max_iter=config.max_iter)
            model.fit(ztr.numpy(), y_train)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return model.predict(zte.numpy()).astype(np.int64), converged
    n, dim = ztr.shape
    target = torch.as_tensor(y_train, dtype=torch.int64)
    weight = torch.zeros(dim, n_classes, dtype=torch.float32, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=config.max_iter,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    penalty = 1.0 / (2.0 * config.C * n)  # C * sum(loss) + |W|^2/2, divided by C * n: same minimiser

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = (
            torch.nn.functional.cross_entropy(ztr @ weight + bias, target) + penalty * (weight * weight).sum()
        )
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    iterations = int(optimiser.state[weight].get("n_iter", 0))
    with torch.no_grad():
        pred = (zte @ weight + bias).argmax(dim=1).numpy()
    return pred.astype(np.int64), iterations < config.max_iter


@dataclass
class ModelProbe:
    """The probes of one model on one label vector.

    Attributes
    ----------
    rows : list of dict
        One per (probe, layer choice): accuracy and balanced accuracy with intervals, the same for the shuffled
        control, the layer (last: its index; best: the most frequent choice over folds, and every fold's choice).
    curve : list of dict
        One per layer: the k-NN accuracy (outer folds, real labels) with its interval, and the control's.
    info : dict
        n, classes, chance (1/C), majority rate, solver convergence, seconds.
    """

    rows: list[dict] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _splits(y: np.ndarray, config: ProbeConfig, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import RepeatedStratifiedKFold

    cv = RepeatedStratifiedKFold(n_splits=config.folds, n_repeats=config.repeats, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # "least populated class" when a class has exactly `folds`
        return [(tr, te) for tr, te in cv.split(np.zeros(len(y)), y)]


def _inner_splits(y_train: np.ndarray, config: ProbeConfig, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    largest = int(np.bincount(y_train).max())
    cv = StratifiedKFold(n_splits=max(2, min(config.folds, largest)), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return [(tr, te) for tr, te in cv.split(np.zeros(len(y_train)), y_train)]


@dataclass
class _Plan:
    """The folds of one model's probes and the k-NN scores filled in layer by layer."""

    label_sets: list[np.ndarray]  # the real labels, then each shuffle
    splits: list[list[tuple[np.ndarray, np.ndarray]]]  # [set][fold] -> (train, test)
    inner: list[
        list[list[tuple[np.ndarray, np.ndarray]]]
    ]  # [set][fold] -> inner (train, test) of the train part
    candidates: list[int]  # layers the best-layer choice may pick
    n_classes: int
    outer: np.ndarray  # [set, layer, fold, (accuracy, balanced accuracy)] of the k-NN probe
    inner_acc: np.ndarray  # [set, layer, fold]: mean inner-fold k-NN accuracy (-inf where not a candidate)

    def knn_layer(self, dist: torch.Tensor, layer: int, k: int) -> None:
        """k-NN of one layer for every label set and outer fold and, at a candidate layer, the inner folds."""
        for s, ys in enumerate(self.label_sets):
            for j, (tr, te) in enumerate(self.splits[s]):
                pred = knn_predict(dist, tr, te, ys, k, self.n_classes)
                self.outer[s, layer, j] = (np.mean(pred == ys[te]), balanced_accuracy(ys[te], pred))
                if layer in self.candidates:
                    scores = []
                    for itr, ite in self.inner[s][j]:
                        ipred = knn_predict(dist, tr[itr], tr[ite], ys, k, self.n_classes)
                        scores.append(np.mean(ipred == ys[tr[ite]]))
                    self.inner_acc[s, layer, j] = float(np.mean(scores))


def probe_layers(
    layers: Sequence[torch.Tensor | np.ndarray],
    y: np.ndarray,
    config: ProbeConfig | None = None,
    layer_names: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ModelProbe:
    """k-NN and linear probes of one model's layers, with the label-shuffled control (see the module docstring).

    Parameters
    ----------
    layers : sequence of L (n, D_l) tensors or arrays
        The model's features of the n labelled items (rows in the order of ``y``), e.g. prepared with
        :func:`prh.prepare`.
    y : (n,) int array
        Class codes ``0 .. C-1``, every class with at least ``folds`` items (:meth:`Labels.for_probe`).
    config : ProbeConfig, optional
        Folds, k, C, shuffles, seed, level, solver, ...
    layer_names : sequence of str, optional
        The layers' names: marks input layers (left out of the best-layer choice when ``skip_input_layers``).
    progress : callable, optional
        Called as ``progress(done, total)`` after each layer.

    Returns
    -------
    ModelProbe

    Raises
    ------
    InputError
        Layers of different row counts or not matching ``y``, fewer than 2 classes, a class smaller than ``folds``,
        or ``k`` not smaller than the smallest training set.
    """
    config = ProbeConfig.coerce(config)
    start = time.perf_counter()
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise InputError(
            "y must be a 1-D array of non-negative integer class codes (Labels.for_probe gives them)."
        )
    xs = [
        torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()
        for x in layers
    ]
    if not xs:
        raise InputError("layers is empty; give at least one (n, D) layer.")
    bad = [i for i, x in enumerate(xs) if x.ndim != 2 or x.shape[0] != len(y)]
    if bad:
        raise InputError(
            f"layer {bad[0]} has shape {tuple(xs[bad[0]].shape)}; every layer must be (n, D) with n = len(y) = {len(y)}."
        )
    n_classes = int(y.max()) + 1 if y.size else 0
    counts = np.bincount(y, minlength=n_classes)
    if (counts > 0).sum() < 2:
        raise InputError(f"y has {(counts > 0).sum()} class(es); a probe needs at least 2.")
    if counts[counts > 0].min() < config.folds:
        raise InputError(
            f"a class of y has {int(counts[counts > 0].min())} items, fewer than folds={config.folds}; leave small "
            f"classes out (Labels.for_probe does) or use fewer folds."
        )
    n_layers = len(xs)
    names = list(layer_names) if layer_names is not None else [f"layer.{i}" for i in range(n_layers)]
    inputs = set(input_layers(names)) if config.skip_input_layers else set()
    candidates = [i for i in range(n_layers) if i not in inputs] or list(range(n_layers))

    rng = np.random.default_rng(config.seed)
    label_sets = [y] + [y[rng.permutation(len(y))] for _ in range(config.shuffles)]
    splits = [_splits(ys, config, config.seed) for ys in label_sets]
    inner = [
        [_inner_splits(ys[tr], config, config.seed + 1000 + j) for j, (tr, _te) in enumerate(sp)]
        for ys, sp in zip(label_sets, splits)
    ]
    smallest_train = min(len(itr) for per in inner for folds in per for itr, _ in folds)
    if config.k > smallest_train:
        raise InputError(
            f"k={config.k} neighbours exceed the smallest training set ({smallest_train} items at n={len(y)} with "
            f"{config.folds} folds); use a smaller k or more items."
        )

    # k-NN at every layer: outer test folds (the per-layer curve) and inner folds (the layer choice)
    plan = _Plan(
        label_sets,
        splits,
        inner,
        candidates,
        n_classes,
        outer=np.full((len(label_sets), n_layers, len(splits[0]), 2), np.nan),
        inner_acc=np.full((len(label_sets), n_layers, len(splits[0])), -np.inf),
    )
    outer = plan.outer
    for layer in range(n_layers):
        dist = squared_distances(xs[layer])
        with one_thread():
            plan.knn_layer(dist, layer, config.k)
        del dist
        if progress is not None:
            progress(layer + 1, n_layers)
    chosen = plan.inner_acc.argmax(axis=1)  # [set, fold]: first maximum = shallowest of the tied layers

    # linear probe at the last and the chosen layers
    linear: dict[tuple[int, int, int], tuple[float, float]] = {}
    not_converged = fits = 0
    with one_thread():
        for s, ys in enumerate(label_sets):
            for j, (tr, te) in enumerate(splits[s]):
                for layer in sorted({n_layers - 1, int(chosen[s, j])}):
                    pred, ok = fit_predict_linear(xs[layer][tr], ys[tr], xs[layer][te], n_classes, config)
                    linear[(s, layer, j)] = (float(np.mean(pred == ys[te])), balanced_accuracy(ys[te], pred))
                    fits += 1
                    not_converged += not ok

    sizes = [(len(tr), len(te)) for tr, te in splits[0]]
    ratio = float(np.mean([te for _, te in sizes]) / np.mean([tr for tr, _ in sizes]))
    level = config.level
    result = ModelProbe()
    for probe in PROBES:
        for choice in LAYER_CHOICES:

            def fold_scores(s: int, probe: str = probe, choice: str = choice) -> np.ndarray:
                out = []
                for j in range(len(splits[s])):
                    layer = n_layers - 1 if choice == "last" else int(chosen[s, j])
                    out.append(outer[s, layer, j] if probe == "knn" else linear[(s, layer, j)])
                return np.asarray(out)

            real = fold_scores(0)
            control = np.concatenate([fold_scores(s) for s in range(1, len(label_sets))])
            picks = [n_layers - 1] * len(splits[0]) if choice == "last" else [int(c) for c in chosen[0]]
            layer = int(np.bincount(picks).argmax())
            acc, bal = cv_interval(real[:, 0], ratio, level), cv_interval(real[:, 1], ratio, level)
            cacc, cbal = cv_interval(control[:, 0], ratio, level), cv_interval(control[:, 1], ratio, level)
            result.rows.append(
                {
                    "probe": probe,
                    "layer_choice": choice,
                    "layer": layer,
                    "layer_name": names[layer],
                    "layers_selected": ",".join(map(str, picks)),
                    "accuracy": acc[0],
                    "ci_low": acc[1],
                    "ci_high": acc[2],
                    "balanced_accuracy": bal[0],
                    "balanced_ci_low": bal[1],
                    "balanced_ci_high": bal[2],
                    "control_accuracy": cacc[0],
                    "control_ci_low": cacc[1],
                    "control_ci_high": cacc[2],
                    "control_balanced_accuracy": cbal[0],
                    "control_balanced_ci_low": cbal[1],
                    "control_balanced_ci_high": cbal[2],
                }
            )
    for layer in range(n_layers):
        acc = cv_interval(outer[0, layer, :, 0], ratio, level)
        control = outer[1:, layer, :, 0].ravel()
        result.curve.append(
            {
                "layer": layer,
                "layer_name": names[layer],
                "input_layer": layer in set(input_layers(names)),
                "knn_accuracy": acc[0],
                "knn_ci_low": acc[1],
                "knn_ci_high": acc[2],
                "knn_balanced_accuracy": float(np.mean(outer[0, layer, :, 1])),
                "control_knn_accuracy": float(np.mean(control)),
            }
        )
    used = counts[counts > 0]
    result.info = {
        "n": int(len(y)),
        "n_classes": int((counts > 0).sum()),
        "chance_balanced": 1.0 / float((counts > 0).sum()),
        "majority_rate": float(used.max() / used.sum()),
        "sum_p_squared": float(((used / used.sum()) ** 2).sum()),
        "n_folds": len(splits[0]),
        "test_over_train": ratio,
        "candidate_layers": candidates,
        "input_layers": input_layers(names),
        "linear_fits": fits,
        "linear_not_converged": not_converged,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return result
