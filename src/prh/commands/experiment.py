"""`prh experiment NAME`: one sub-command per experiment of :mod:`prh.experiments`.

The common options are those of `prh align` (--models, --dataset, --n, --store, --out, ...); each experiment adds
the fields of its config dataclass as options (``k`` -> ``--k``, ``min_pixels`` -> ``--min-pixels``, a boolean
``pixels`` -> ``--pixels/--no-pixels``), with the help text of the field's metadata. An unknown experiment name is
one clear error that suggests the closest.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from prh.commands._console import help_text

#: The common options: (parameter, type, default, flag(s), help). ``None`` defaults mean "the experiment's own".
COMMON = (
    ("models", str, None, ("--models", "-m"), "Model names/sets (default: the experiment's)."),
    ("dataset", str, None, ("--dataset", "-d"), None),
    ("n", int, None, ("--n",), "Number of items (default: the experiment's)."),
    ("store", Path, Path("prh-cache/features"), ("--store",), "Feature store folder (resumable cache)."),
    (
        "out",
        Path,
        Path("prh-results"),
        ("--out", "-o"),
        "Results folder (the report's sections go there too).",
    ),
    ("device", str, "auto", ("--device",), "Extraction device: auto, cpu, cuda, cuda:N."),
    ("batch_size", int, 16, ("--batch-size",), "Samples per forward pass."),
    ("seed", int, 0, ("--seed",), "Seed of permutations, subsamples and shuffles."),
    ("progress", bool, True, ("--progress/--no-progress",), "Show progress bars."),
    ("report", bool, True, ("--report/--no-report",), "Rebuild report.html of --out with this section."),
    ("models_file", list[Path], None, ("--models-file",), "TOML file with your own models/sets."),
    ("trust_code", bool, False, ("--trust-code",), "Allow models files to name code to import."),
)


def summary_of(name: str) -> str:
    """The one-line help of experiment ``name``: its ``SPEC``'s summary, read from the module's source when it is a
    string literal (so that listing the experiments imports none of them, nor torch), else from the imported spec."""
    import ast
    import importlib.util

    from prh.experiments import EXPERIMENTS, get

    found = importlib.util.find_spec(EXPERIMENTS[name])
    try:
        with open(found.origin, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (AttributeError, OSError, TypeError, SyntaxError):
        return get(name).summary
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["SPEC"]
            and isinstance(node.value, ast.Call)
        ):
            for keyword in node.value.keywords:
                if keyword.arg == "summary" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return get(name).summary


def _build(name: str):
    """The click command of experiment ``name`` (imports the experiment)."""
    from prh.experiments import get

    spec = get(name)
    single = typer.Typer(add_completion=False)
    single.command(name=name, help=help_text(spec.summary))(make_command(spec))
    return typer.main.get_command(single)


class ExperimentGroup(TyperGroup):
    """The `prh experiment` group, built lazily from the registry :data:`prh.experiments.EXPERIMENTS`.

    Listing the commands (``prh experiment --help``) shows each experiment's summary (:func:`summary_of`) without
    importing any experiment; a command is built, and its experiment imported, when it is run or its own help is
    asked for. An unknown name is an :class:`~prh.errors.InputError` suggesting the closest.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._built: dict[str, Any] = {}
        self._listing = False

    def list_commands(self, ctx) -> list[str]:  # noqa: D102 - click's hook
        from prh.experiments import names

        return names()

    def get_command(self, ctx, cmd_name: str):  # noqa: D102 - click's hook
        import click

        from prh.experiments import EXPERIMENTS

        if cmd_name not in EXPERIMENTS:
            return None
        if self._listing:  # a help listing: name and summary only
            text = help_text(summary_of(cmd_name))
            return click.Command(cmd_name, help=text, short_help=text)
        if cmd_name not in self._built:
            self._built[cmd_name] = _build(cmd_name)
        return self._built[cmd_name]

    def format_help(self, ctx, formatter) -> None:  # noqa: D102 - click's hook
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(self, ctx, args):  # noqa: D102 - click's hook
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            from prh.experiments import get

            get(args[0])  # raises the InputError with the suggestion
        return super().resolve_command(ctx, args)


def _flag(name: str, annotation: Any) -> str:
    dashed = name.replace("_", "-")
    return f"--{dashed}/--no-{dashed}" if annotation is bool else f"--{dashed}"


def _optional(annotation: Any) -> Any:
    """The type of an option: ``X`` for ``X | None`` (typer options default to None then, as in `prh align`)."""
    args = typing.get_args(annotation)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner
    return annotation


def config_parameters(config_cls: type) -> list[inspect.Parameter]:
    """The typer options of an experiment's config dataclass (one per field, help from ``metadata["help"]``)."""
    hints = typing.get_type_hints(config_cls)
    params = []
    for f in dataclasses.fields(config_cls):
        annotation = _optional(hints[f.name])
        option = typer.Option(f.default, _flag(f.name, annotation), help=help_text(f.metadata.get("help")))
        params.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        )
    return params


def make_command(spec: Any):
    """The typer command function of one experiment: common options + the config's options."""
    common_names = {name for name, *_ in COMMON}
    clash = common_names & {f.name for f in dataclasses.fields(spec.config)}
    if clash:  # pragma: no cover - caught by the registry test
        raise TypeError(
            f"experiment {spec.name!r}: config fields {sorted(clash)} clash with the common options"
        )

    def command(**kwargs: Any) -> None:
        _run(spec, kwargs)

    params = []
    for name, annotation, default, flags, text in COMMON:
        if name == "dataset":
            text = spec.dataset_help + (f" Default: {spec.dataset}." if spec.dataset else "")
        option = typer.Option(default, *flags, help=help_text(text))
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        )
    params += config_parameters(spec.config)
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = spec.name.replace("-", "_")
    command.__doc__ = help_text(spec.summary)
    return command


def _run(spec: Any, kwargs: dict[str, Any]) -> None:
    from prh.commands._console import plain_console, styled
    from prh.commands._summary import check_out_dir
    from prh.commands.models import load_models_files
    from prh.experiments import RunOptions, run

    console = plain_console()
    load_models_files(kwargs.pop("models_file"), kwargs.pop("trust_code"))
    report = kwargs.pop("report")
    check_out_dir(kwargs["out"])
    common = {name: kwargs.pop(name) for name, *_ in COMMON if name in kwargs}
    common["store"], common["out"] = str(common["store"]), str(common["out"])
    options = RunOptions(**common)
    config = spec.config.from_dict(kwargs)
    console.rule(styled(f"prh experiment {spec.name}", "bold"))
    result = run(spec.name, options, config, log=lambda msg: console.print(f"  {msg}"))
    for line in result.lines:
        console.print(f"• {line}")
    console.print(f"results: {result.folder}")
    if report:
        from prh.report import build_report

        console.print("report: ", styled(build_report(options.out), "bold"), sep="")


def register(app: typer.Typer) -> None:
    """Add the ``experiment`` command group, one sub-command per registered experiment (built on first use)."""
    from prh.experiments import names

    group = typer.Typer(
        cls=ExperimentGroup,
        help=f"Run one of the paper's other experiments ({', '.join(names())}); it writes results, figures and a "
        "section of the report into --out.",
        no_args_is_help=True,
    )
    app.add_typer(group, name="experiment")
