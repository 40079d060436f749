"""`prh score A B`: alignment of two feature arrays (one pair of layers, or a sweep over all layer pairs)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from prh.errors import InputError


def _parse_value(text: str) -> object:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_options(pairs: list[str]) -> dict:
    """``["rdm=euclidean", "center=false"]`` -> ``{"rdm": "euclidean", "center": False}`` (ints/floats/bools cast)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--option {pair!r} must look like key=value, e.g. --option rdm=euclidean.")
        out[key.strip()] = _parse_value(value)
    return out


#: Metric options with a flag of their own in `prh score`; every other option is given as ``-O key=value``.
FLAG_OPTIONS = ("k", "dim", "kernel", "sigma")


def option_usage(name: str, value: object = None) -> str:
    """How `prh score` takes metric option ``name`` (with ``value`` as the example): ``--k 10`` for the options
    that have a flag (:data:`FLAG_OPTIONS`), ``-O rdm=euclidean`` for the others. The one source of the
    option syntax that ``--list`` and the error messages print."""
    if name in FLAG_OPTIONS:
        return f"--{name}" if value is None else f"--{name} {value}"
    return f"-O {name}=VALUE" if value is None else f"-O {name}={value}"


def _print_metrics(as_json: bool) -> None:
    """``prh score --list``: every registered metric, its options (defaults) and range."""
    from prh.metrics import names, spec

    rows = []
    for name in names():
        s = spec(name)
        rows.append(
            {
                "metric": name,
                "options": s.options(),
                "range": list(s.value_range),
                "description": s.description,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        opts = ", ".join(option_usage(k, v) for k, v in row["options"].items()) or "no options"
        low, high = row["range"]
        typer.echo(f"{row['metric']:<20} [{low:g}, {high:g}]  {opts}\n{'':<20} {row['description']}")


def register(app: typer.Typer) -> None:
    """Add the ``score`` command."""

    @app.command()
    def score(
        a: Path = typer.Argument(
            None, help="Features of model A: .npy/.npz/.safetensors, shape (N, D) or (N, L, D)."
        ),
        b: Path = typer.Argument(None, help="Features of model B, same N (row i = the same item as in A)."),
        metric: str = typer.Option(
            "mutual_knn", "--metric", "-m", help="Metric name (see `prh score --list`)."
        ),
        k: int = typer.Option(None, "--k", help="Neighbours for kNN metrics and cknna (default 10)."),
        dim: int = typer.Option(
            None, "--dim", help="SVD directions for svcca (default 10) and pwcca (default: all)."
        ),
        kernel: str = typer.Option(None, "--kernel", help="Kernel for cka/unbiased_cka: linear or rbf."),
        sigma: float = typer.Option(None, "--sigma", help="RBF bandwidth for cka/unbiased_cka."),
        prepare: bool = typer.Option(
            False, "--prepare", help="Apply the paper's preprocessing (clamp + L2) first."
        ),
        q: float = typer.Option(0.95, "--q", help="Outlier quantile used by --prepare."),
        key_a: str = typer.Option(None, "--key-a", help="Array name inside A if it is an .npz/.safetensors."),
        key_b: str = typer.Option(None, "--key-b", help="Array name inside B if it is an .npz/.safetensors."),
        option: list[str] = typer.Option(
            None,
            "--option",
            "-O",
            help="Any other metric option as key=value, e.g. -O rdm=euclidean (repeatable).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of text."),
        list_metrics: bool = typer.Option(
            False, "--list", help="List every metric with its options and range, then exit."
        ),
    ) -> None:
        """Score two feature arrays: 2-D inputs give one score, 3-D (N, L, D) inputs a sweep over all layer pairs."""
        import numpy as np

        from prh._prepare import prepare as prepare_features
        from prh.arrays import load_array
        from prh.metrics import spec

        if list_metrics:
            _print_metrics(as_json)
            return
        if a is None or b is None:
            raise InputError(
                "give two feature files, e.g. `prh score A.npy B.npy --metric mutual_knn`, or `prh score --list`."
            )
        metric_spec = spec(metric)
        given = dict(zip(FLAG_OPTIONS, (k, dim, kernel, sigma), strict=True))
        options = {name: value for name, value in given.items() if value is not None}
        options.update(parse_options(option or []))
        unknown = sorted(set(options) - set(metric_spec.options()))
        if unknown:
            allowed = ", ".join(option_usage(o) for o in metric_spec.options()) or "none"
            raise InputError(
                f"{', '.join(option_usage(u) for u in unknown)} is not an option of {metric} (its options: {allowed})."
            )
        xa, xb = load_array(a, key_a, key_flag="--key-a"), load_array(b, key_b, key_flag="--key-b")
        for name, x in (("A", xa), ("B", xb)):
            if x.ndim not in (2, 3):
                raise InputError(f"{name} ({x.shape}) must have shape (N, D) or (N, L, D).")
        if prepare:
            xa, xb = prepare_features(xa, q=q), prepare_features(xb, q=q)
        from prh._sweep import cache_layers, sweep_caches

        ca = cache_layers(xa, metric, name="A", **options)  # errors name A or B, as the arguments are named
        result = sweep_caches(ca, cache_layers(xb, metric, name="B", device=ca.device, **options)).to_dict()
        if np.ndim(xa) == 2 and np.ndim(xb) == 2:  # one pair of layers: the score, no grid
            result = {
                key: result[key] for key in ("metric", "score", "params", "diagnostics") if key in result
            }
        if as_json:
            typer.echo(json.dumps(result))
            return
        typer.echo(f"{metric} {json.dumps(result['params'])}: {result['score']:.6f}")
        for side, infos in result.get("diagnostics", {}).items():
            recalls = [d["recall"] for d in infos if "recall" in d]
            if recalls:
                typer.echo(
                    f"approximate neighbours of {'A' if side == 'x' else 'B'}: measured recall "
                    f"{min(recalls):.3f}-{max(recalls):.3f} over {len(recalls)} layer(s)"
                )
        if "best_layers" in result:
            i, j = result["best_layers"]
            typer.echo(
                f"best layers: A[{i}] x B[{j}] over a {len(result['grid'])} x {len(result['grid'][0])} grid"
            )
