"""The documented properties of every registered metric, as data.

Each metric declares its row in its own file (``MetricSpec(..., properties=MetricProperties(...))``, see
:mod:`prh.metrics.registry`); ``PROPERTIES`` is a live view of those rows, by metric name. ``PROPERTIES[name]``
states, for the metric at its default options, whether it is symmetric, whether identical
inputs score 1, and how it behaves under transformations of its inputs. Invariance entries are

* ``"yes"``: applying the transformation to A alone, or to B alone, leaves the score unchanged;
* ``"B only"``: unchanged when applied to B, changed (in general) when applied to A;
* ``"no"``: the score changes in general.

The transformations: ``orthogonal`` (x -> x Q, Q orthogonal: rotations and reflections of the feature space),
``isotropic_scaling`` (x -> c x, c > 0), ``invertible_linear`` (x -> x M, M any invertible matrix),
``translation`` (x -> x + t, the same vector added to every sample) and ``permutation`` (the same permutation of
the samples of A and B; every metric is invariant to it).

docs/metrics.md contains :func:`markdown_table` verbatim, tests/test_metric_properties.py checks every claim here
(positive ones with hypothesis, negative ones by exhibiting a change), and a test keeps the docs and this table
equal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
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


@dataclass(frozen=True, kw_only=True)
class MetricProperties:
    """Documented behaviour of one metric at its default options (see the module docstring).

    ``name`` is filled in from the :class:`~prh.metrics.registry.MetricSpec` the row is declared in.
    """

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
    name: str = ""


class _Properties(Mapping):
    """name -> :class:`MetricProperties` of every registered metric that declares a row, in registration order."""

    def _rows(self) -> dict[str, MetricProperties]:
        from prh.metrics.registry import specs

        return {spec.name: spec.properties for spec in specs() if spec.properties is not None}

    def __getitem__(self, name: str) -> MetricProperties:
        return self._rows()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows())

    def __len__(self) -> int:
        return len(self._rows())

    def __repr__(self) -> str:
        return f"PROPERTIES({list(self)})"


#: name -> :class:`MetricProperties` for every registered metric (a live view of the specs' ``properties``).
PROPERTIES: Mapping[str, MetricProperties] = _Properties()

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


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


_RANGE = re.compile(r"^[\[(]\s*(-?∞|-?\d+(?:\.\d+)?)\s*,\s*(∞|-?\d+(?:\.\d+)?)\s*[\])]")


def parse_range(text: str) -> tuple[float, float] | None:
    """The (low, high) bounds a documented range states: ``"[0, 1]"``, ``"≈ [-1, 1]"``, ``"(-∞, 1]"``, or
    ``"unbounded..."`` (-inf, inf); ``None`` when the text states no bounds this function can read."""
    text = text.strip().removeprefix("≈").strip()
    if text.startswith("unbounded"):
        return (float("-inf"), float("inf"))
    match = _RANGE.match(text)
    if match is None:
        return None
    return tuple(float(v.replace("∞", "inf")) for v in match.groups())  # type: ignore[return-value]


def range_problems() -> list[str]:
    """Metrics whose documented range (``properties.value_range``) disagrees with ``MetricSpec.value_range``."""
    from prh.metrics.registry import specs

    problems = []
    for spec in specs():
        if spec.properties is None:
            continue
        stated = parse_range(spec.properties.value_range)
        if stated is None:
            problems.append(f"range of {spec.name!r} is unreadable: {spec.properties.value_range!r}")
        elif stated != tuple(spec.value_range):
            problems.append(
                f"range of {spec.name!r} is documented as {spec.properties.value_range} but its MetricSpec's "
                f"value_range is {tuple(spec.value_range)}"
            )
    return problems


def docs_problems(text: str) -> list[str]:
    """What a metrics document (docs/metrics.md) gets wrong about the registered metrics; empty when it agrees.

    The document must hold one table row per metric that declares properties, each equal to :func:`table_row`,
    and no row for an unknown metric; the whole :func:`markdown_table` must appear verbatim. Each row's range must
    state its spec's ``value_range`` (:func:`range_problems`).
    """
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = _cells(line)
            rows[cells[0].strip("`")] = cells
    problems = [f"no table row for metric {name!r}" for name in PROPERTIES if name not in rows]
    problems += [f"table row for unregistered metric {name!r}" for name in rows if name not in PROPERTIES]
    problems += [
        f"table row of {name!r} differs from its MetricSpec's properties"
        for name, prop in PROPERTIES.items()
        if name in rows and rows[name] != _cells(table_row(prop))
    ]
    problems += range_problems()
    if not problems and markdown_table() not in text:
        problems.append("the table is not markdown_table() verbatim (order or separators differ)")
    return problems
