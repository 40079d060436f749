"""The documented properties of every registered metric, as data.

``PROPERTIES[name]`` states, for the metric at its default options, whether it is symmetric, whether identical
inputs score 1, and how it behaves under transformations of its inputs. Invariance entries are

* ``"yes"``: applying the transformation to A alone, or to B alone, leaves the score unchanged;
* ``"B only"``: unchanged when applied to B, changed (in general) when applied to A;
* ``"no"``: the score changes in general.

The transformations: ``orthogonal`` (x -> x Q, Q orthogonal: rotations and reflections of the feature space),
``isotropic_scaling`` (x -> c x, c > 0), ``invertible_linear`` (x -> x M, M any invertible matrix),
``translation`` (x -> x + t, the same vector added to every sample) and ``permutation`` (the same permutation of
the samples of A and B; every metric is invariant to it except the cross-validated ones, whose folds are drawn
over positions).

docs/metrics.md contains :func:`markdown_table` verbatim, tests/test_metric_properties.py checks every claim here
(positive ones with hypothesis, negative ones by exhibiting a change), and a test keeps the docs and this table
equal.
"""

from __future__ import annotations

from dataclasses import dataclass

YES, NO, B_ONLY = "yes", "no", "B only"

#: The invariance columns, in table order: (attribute, column header).
TRANSFORMS: tuple[tuple[str, str], ...] = (
    ("orthogonal", "rotation"),
    ("isotropic_scaling", "isotropic scaling"),
    ("invertible_linear", "invertible linear"),
    ("translation", "translation"),
    ("permutation", "sample permutation"),
)


@dataclass(frozen=True)
class MetricProperties:
    """Documented behaviour of one metric at its default options (see the module docstring)."""

    name: str
    definition: str
    value_range: str
    symmetric: bool
    identity: bool
    orthogonal: str
    isotropic_scaling: str
    invertible_linear: str
    translation: str
    null: str
    cost: str
    prefer: str
    permutation: str = YES


def _p(
    name: str, definition: str, value_range: str, symmetric: bool, identity: bool, inv: tuple, **kw: str
) -> MetricProperties:
    orth, iso, lin, trans = inv
    return MetricProperties(name, definition, value_range, symmetric, identity, orth, iso, lin, trans, **kw)


_KNN_INV = (YES, YES, NO, NO)
_KNN_COST = "O(N² D) per layer (neighbours), O(N k²) per pair"

_ROWS = [
    _p(
        "mutual_knn",
        "mean over samples of \\|N_A(i) ∩ N_B(i)\\| / k (k nearest neighbours by inner product, self excluded)",
        "[0, 1]",
        True,
        True,
        _KNN_INV,
        null="k / (N-1)",
        cost=_KNN_COST,
        prefer="the paper's headline metric; local structure, robust to a few outliers; compare across k",
    ),
    _p(
        "cycle_knn",
        "fraction of samples i found among the A-neighbours of one of i's B-neighbours",
        "[0, 1]",
        False,
        False,
        _KNN_INV,
        null="≈ 1 - (1 - k/(N-1))^k",
        cost=_KNN_COST,
        prefer="asymmetric question: can A's neighbourhoods be recovered through B? report with cycle_knn_ba",
    ),
    _p(
        "lcs_knn",
        "mean longest common subsequence of the ordered neighbour lists, / k",
        "[0, 1]",
        True,
        True,
        _KNN_INV,
        null="small, > 0 (no closed form)",
        cost="O(N² D) per layer, O(N k²) per pair",
        prefer="when the order of neighbours matters, not only membership",
    ),
    _p(
        "edit_distance_knn",
        "1 - mean Levenshtein distance between the ordered neighbour lists / k",
        "[0, 1]",
        True,
        True,
        _KNN_INV,
        null="small, > 0 (no closed form)",
        cost="O(N² D) per layer, O(N k²) per pair",
        prefer="like lcs_knn, penalising insertions and substitutions",
    ),
    _p(
        "cka",
        "HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), biased HSIC, linear kernel (RBF optional)",
        "[0, 1]",
        True,
        True,
        (YES, YES, NO, YES),
        null="> 0, grows with D/N (biased)",
        cost="O(N² D) per layer (centred Gram), O(N²) per pair, or O(N D²) per layer and O(N Dₓ D_y) per pair with no N×N matrix (path='features', the default above N = 4096)",
        prefer="global geometry, comparability with the literature; use unbiased_cka when D is not ≪ N",
    ),
    _p(
        "unbiased_cka",
        "CKA with Song et al.'s unbiased HSIC (U-centred Grams)",
        "≈ [-1, 1]",
        True,
        True,
        (YES, YES, NO, YES),
        null="≈ 0",
        cost="O(N² D) per layer, O(N²) per pair, or O(N D²) per layer and O(N Dₓ D_y) per pair with no N×N matrix (path='features', the default above N = 4096)",
        prefer="the default global metric: no small-N / large-D bias; needs N ≥ 4",
    ),
    _p(
        "cknna",
        "unbiased HSIC of the linear kernels masked to mutual k-neighbour pairs, normalised like CKA",
        "≈ [-1, 1]",
        False,
        True,
        (YES, YES, NO, NO),
        null="≈ 0",
        cost="O(N² D) per layer, O(N k²) per pair",
        prefer="the paper's bridge between CKA and mutual kNN: kernel values, but only among neighbours",
    ),
    _p(
        "svcca",
        "mean canonical correlation of the top-dim SVD directions of the column-standardised inputs (exact SVD)",
        "[0, 1]",
        True,
        True,
        (NO, YES, NO, YES),
        null="> 0, grows with dim/N",
        cost="O(N D min(N, D)) per layer (SVD), O(N dim²) per pair",
        prefer="comparison with SVCCA papers; numbers differ from the reference's randomised SVD",
    ),
    _p(
        "debiased_cka",
        "linear CKA with unbiased HSIC and the self terms restricted to distinct feature pairs (Chun et al. 2025)",
        "unbounded; ≈ [-1, 1] when D is large",
        True,
        False,
        (NO, YES, NO, YES),
        null="≈ 0",
        cost="O(N² D) per layer, O(N²) per pair, or O(N D²) per layer and O(N Dₓ D_y) per pair with no N×N matrix (path='features', the default above N = 4096)",
        prefer="few features (neurons/units) sampled from a larger population; f(A, A) = 1 needs columns='shared'",
    ),
    _p(
        "jaccard_knn",
        "mean over samples of \\|N_A(i) ∩ N_B(i)\\| / \\|N_A(i) ∪ N_B(i)\\| (= s / (2k - s))",
        "[0, 1]",
        True,
        True,
        _KNN_INV,
        null="exact hypergeometric mean ≈ k / (2(N-1))",
        cost=_KNN_COST,
        prefer="set-similarity convention of the retrieval literature; same ranking information as mutual_knn",
    ),
    _p(
        "cycle_knn_ba",
        "cycle_knn(B, A): fraction of samples i found among the B-neighbours of one of i's A-neighbours",
        "[0, 1]",
        False,
        False,
        _KNN_INV,
        null="≈ 1 - (1 - k/(N-1))^k",
        cost=_KNN_COST,
        prefer="the other direction of cycle_knn; a gap between the two shows asymmetric alignment",
    ),
    _p(
        "cycle_knn_both",
        "(cycle_knn(A, B) + cycle_knn(B, A)) / 2",
        "[0, 1]",
        True,
        False,
        _KNN_INV,
        null="≈ 1 - (1 - k/(N-1))^k",
        cost=_KNN_COST,
        prefer="a symmetric cycle score for tables and heatmaps",
    ),
    _p(
        "procrustes",
        "1 - (2/π) arccos(\\|X^T Y\\|_*), X, Y centred, unit Frobenius norm, narrower side zero-padded",
        "[0, 1]",
        True,
        True,
        (YES, YES, NO, YES),
        null="> 0, grows with D/N",
        cost="O(N D min(N, D)) per layer (SVD if D > N), O(N r² + r³) per pair, r = min(N, D)",
        prefer="a proper shape metric (angle obeys the triangle inequality); sensitive to all directions",
    ),
    _p(
        "pwcca",
        "canonical correlations weighted by how much of A's centred neuron activity each canonical variate explains",
        "[0, 1]",
        False,
        True,
        (B_ONLY, YES, B_ONLY, YES),
        null="> 0, → 1 as rank(A) + rank(B) → N",
        cost="O(N D min(N, D)) per layer (SVD), O(N r² + r³) per pair",
        prefer="comparison with PWCCA papers; only with D ≪ N (CCA overfits otherwise)",
    ),
    _p(
        "rsa",
        "Spearman correlation of the upper triangles of the correlation-distance RDMs (options: euclidean, pearson)",
        "[-1, 1]",
        True,
        True,
        (NO, YES, NO, NO),
        null="≈ 0",
        cost="O(N² D + N² log N) per layer (RDM, ranks), O(N²) per pair",
        prefer="comparison with neuroscience RSA; Spearman ignores monotone distortions of distances",
    ),
    _p(
        "rv",
        "tr(XX'YY') / sqrt(tr((XX')²) tr((YY')²)), X, Y column-centred (equals linear biased CKA)",
        "[0, 1]",
        True,
        True,
        (YES, YES, NO, YES),
        null="> 0, grows with D/N (as cka)",
        cost="O(N² D) per layer, O(N²) per pair, or O(N D²) per layer and O(N Dₓ D_y) per pair with no N×N matrix (path='features', the default above N = 4096)",
        prefer="statistics literature name for linear CKA; center=False gives Escoufier's uncentred RV",
    ),
    _p(
        "linear_predictivity",
        "mean over B's columns of the held-out R² of ridge regression A → B (intercept), K-fold cross-validated over items, ridge strength by GCV on each training fold",
        "(-∞, 1]",
        False,
        True,
        (NO, YES, NO, YES),
        null="≤ 0 (no closed form)",
        cost="O(K N_tr D r) per layer (one SVD per fold, r = min(N_tr, D)), O(K N r D_B) per pair",
        prefer="a predictive (encoding-model) score: can A linearly explain B on new items? rotations of A leave it unchanged, of B do not; folds are drawn over positions, so permuting items changes it by fold noise",
        permutation=NO,
    ),
    _p(
        "linear_predictivity_sym",
        "(linear_predictivity(A, B) + linear_predictivity(B, A)) / 2",
        "(-∞, 1]",
        True,
        True,
        (NO, YES, NO, YES),
        null="≤ 0 (no closed form)",
        cost="twice linear_predictivity",
        prefer="a symmetric predictive score for tables and heatmaps",
        permutation=NO,
    ),
]

#: name -> :class:`MetricProperties` for every registered metric.
PROPERTIES: dict[str, MetricProperties] = {row.name: row for row in _ROWS}

HEADER = (
    "| metric | definition | range | symmetric | f(A, A) = 1 | "
    + " | ".join(title for _, title in TRANSFORMS)
    + " | expected under independence | cost | prefer it when |"
)


def _yes_no(flag: bool) -> str:
    return YES if flag else NO


def table_row(p: MetricProperties) -> str:
    """The docs/metrics.md table row of one metric (markdown, pipes inside cells escaped)."""
    cells = [f"`{p.name}`", p.definition, p.value_range, _yes_no(p.symmetric), _yes_no(p.identity)]
    cells += [getattr(p, attr) for attr, _ in TRANSFORMS]
    cells += [p.null, p.cost, p.prefer]
    return "| " + " | ".join(cells) + " |"


def markdown_table() -> str:
    """The full metric table of docs/metrics.md, generated from :data:`PROPERTIES`."""
    sep = "|" + "|".join("---" for _ in HEADER.split("|")[1:-1]) + "|"
    return "\n".join([HEADER, sep, *(table_row(p) for p in PROPERTIES.values())])
