"""What every experiment shares: its registry entry (:class:`ExperimentSpec`), the common run options
(:class:`RunOptions`: models, dataset, N, store, output folder, device), and a :class:`Context` with the steps they
all take — pick the usable models, extract what the feature store lacks (resumable), load features, write JSON/CSV,
figures and the report section.

An experiment is one module that defines a frozen config dataclass of its own options (fields with
``metadata={"help": ...}`` become ``prh experiment NAME --option`` flags), a ``run(context, config)`` function
returning an :class:`ExperimentResult`, and ``SPEC = ExperimentSpec(...)``; one line in
:data:`prh.experiments.EXPERIMENTS` registers it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prh._validation import ConfigFields, check_bool, check_int, check_str
from prh.atomic import atomic_write, atomic_write_text
from prh.errors import ModelLoadError

#: Where experiments write inside the results folder: ``<out>/experiments/<name>/``.
EXPERIMENTS_DIR = "experiments"


def require(module: str, package: str | None = None):
    """Import an optional dependency of the experiments, or say how to install it.

    Raises
    ------
    ModelLoadError
        The module is not installed; the message names the pip package and the ``prh[experiments]`` extra.
    """
    from prh._optional import optional_import

    return optional_import(
        module,
        "experiments",
        purpose=f"this experiment needs {package or module!r}",
        package=package or module,
    )


@dataclass(frozen=True)
class RunOptions(ConfigFields):
    """The options every experiment takes (as `prh align`): which models, which data, where things go.

    Parameters
    ----------
    models : str or None
        Model names and/or set names, comma-separated (see `prh models`); None: the experiment's default.
    dataset : str or None
        The data (see each experiment); None: the experiment's default.
    n : int or None
        Number of items (>= 1); None: the experiment's default.
    store : str
        Feature store folder (features are reused from it and added to it: runs are resumable).
    out : str
        Results folder; the experiment writes ``<out>/experiments/<name>/`` and ``<out>/sections/``.
    device : str
        Extraction device (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    batch_size : int
        Samples per forward pass during extraction (>= 1).
    seed : int
        Seed of every permutation, subsample and shuffle.
    progress : bool
        Show progress bars.
    """

    models: str | None = None
    dataset: str | None = None
    n: int | None = None
    store: str = "prh-cache/features"
    out: str = "prh-results"
    device: str = "auto"
    batch_size: int = 16
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        clean: dict[str, Any] = {
            "models": None if self.models is None else check_str(self.models, "models", allow_empty=False),
            "dataset": None
            if self.dataset is None
            else check_str(self.dataset, "dataset", allow_empty=False),
            "n": None if self.n is None else check_int(self.n, "n", minimum=1, hint="a number of items"),
            "store": str(check_str(str(self.store), "store", allow_empty=False)),
            "out": str(check_str(str(self.out), "out", allow_empty=False)),
            "device": check_str(self.device, "device", allow_empty=False),
            "batch_size": check_int(
                self.batch_size, "batch_size", minimum=1, hint="samples per forward pass"
            ),
            "seed": check_int(self.seed, "seed"),
            "progress": check_bool(self.progress, "progress"),
        }
        for name, value in clean.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class ExperimentSpec:
    """The registry entry of one experiment.

    Parameters
    ----------
    name : str
        Command-line name (``prh experiment NAME``), lower case with dashes.
    title : str
        Heading of its report section.
    summary : str
        One line: what it measures (the command's help).
    config : type
        Its frozen :class:`~prh._validation.ConfigFields` dataclass of options.
    run : callable
        ``run(context: Context, config) -> ExperimentResult``.
    models, dataset, n : defaults of the common options (None: none needed / all items)
    dataset_help : str
        What ``--dataset`` means for this experiment.
    order : int
        Position of its section in the report.
    """

    name: str
    title: str
    summary: str
    config: type
    run: Callable[..., ExperimentResult]
    models: str = "offline"
    dataset: str | None = "openmoji"
    n: int | None = 256
    dataset_help: str = "Paired dataset (as prh extract --dataset)."
    order: int = 50


@dataclass
class ExperimentResult:
    """What a run returns: the headline numbers (``summary``, JSON-ready), one printable line per finding, the
    files it wrote, and its folder."""

    name: str
    summary: dict
    lines: list[str]
    folder: Path
    files: list[Path] = field(default_factory=list)


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy/torch scalars and arrays to Python, NaN/Inf to None, paths to strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


class Context:
    """One run of one experiment: its options, its folder, and the steps experiments share.

    Parameters
    ----------
    spec : ExperimentSpec
    options : RunOptions
    log : callable, optional
        Receives one line per event (skipped models, cached features); default: nothing.
    """

    def __init__(self, spec: ExperimentSpec, options: RunOptions, log: Callable[[str], object] | None = None):
        self.spec = spec
        self.options = options
        self.log = log or (lambda _msg: None)
        self.out = Path(options.out)
        self.folder = self.out / EXPERIMENTS_DIR / spec.name
        self.figures = self.folder / "figures"
        self.files: list[Path] = []
        self.started = time.perf_counter()

    # -- options with the experiment's defaults ------------------------------------------------------------
    @property
    def models(self) -> str:
        return self.options.models or self.spec.models

    @property
    def dataset(self) -> str | None:
        return self.options.dataset or self.spec.dataset

    @property
    def n(self) -> int | None:
        return self.options.n if self.options.n is not None else self.spec.n

    def load_dataset(self) -> Any:
        """The paired dataset of ``--dataset`` with ``--n`` items; without ``--n``, the experiment's default N or
        all items when the dataset has fewer."""
        from prh.data import load_dataset

        if self.options.n is not None or self.spec.n is None:
            return load_dataset(self.dataset, n=self.options.n)
        dataset = load_dataset(self.dataset)
        return dataset.subset(min(self.spec.n, len(dataset)))

    @property
    def store(self):
        from prh.features.store import FeatureStore

        return FeatureStore(self.options.store)

    def relative(self, path: Path) -> str:
        """``path`` relative to the results folder (POSIX), for report links."""
        return Path(path).relative_to(self.out).as_posix()

    # -- models -----------------------------------------------------------------------------------------------
    def usable_models(self, modalities: Sequence[str] = ("language", "vision")) -> dict[str, list[Any]]:
        """The registry entries of ``--models`` that can run here, by modality (the others are logged and skipped).

        Raises
        ------
        ModelLoadError
            No usable model of one of ``modalities``.
        """
        from prh.models import availability, resolve_models

        out: dict[str, list[Any]] = {m: [] for m in modalities}
        for spec in resolve_models(self.models):
            if spec.modality not in out:
                self.log(f"skipping {spec.name}: a {spec.modality} model (this experiment uses {list(out)})")
                continue
            ok, why = availability(spec)
            if ok:
                out[spec.modality].append(spec)
            else:
                self.log(f"skipping {spec.name}: {why}")
        missing = [m for m, specs in out.items() if not specs]
        if missing:
            raise ModelLoadError(
                f"experiment {self.spec.name!r} needs at least one usable {' and one '.join(missing)} model; "
                f"--models {self.models!r} gives none. Run `prh zoo install --all` for the offline zoo or pick "
                f"models with `prh models`."
            )
        return out

    # -- features ---------------------------------------------------------------------------------------------
    def extract(self, specs: Sequence[Any], dataset: Any) -> list[Any]:
        """Extract the features of ``specs`` on ``dataset`` that the store lacks; returns the specs that have them.

        Already stored features (same dataset fingerprint) are reused, so an interrupted run resumes. A model that
        fails is logged and left out.
        """
        from prh.features import ExtractConfig, extract

        config = ExtractConfig(device=self.options.device, batch_size=self.options.batch_size)
        rows = extract(list(specs), dataset, self.store, config, progress=self.options.progress, log=self.log)
        ok = []
        for spec, row in zip(specs, rows):
            if row["status"] == "failed":
                self.log(f"{spec.name} failed on {dataset.name}: {row['error']}")
            else:
                ok.append(spec)
        return ok

    def raw_layers(self, spec: Any, dataset: Any) -> list[torch.Tensor]:
        """The stored (unprepared) per-layer features of ``spec`` on ``dataset``: L float32 tensors (N, D_l)."""
        from prh.models.base import check_pool

        return self.store.load(dataset, spec.name, check_pool(spec, None)).layers

    def features(self, specs: Sequence[Any], dataset: Any, q: float = 0.95) -> list[Any]:
        """Prepared :class:`~prh.align.ModelFeatures` of ``specs`` on ``dataset`` (clamped at ``q``, L2 rows)."""
        from prh.align.engine import load_features
        from prh.models.base import check_pool

        names = [s.name for s in specs]
        pools = {s.name: check_pool(s, None) for s in specs}
        loaded = load_features(names, self.store, dataset=dataset, pools=pools, q=q)
        for spec, feats in zip(specs, loaded):
            feats.info.setdefault("modality", spec.modality)
            feats.info.setdefault("family", spec.family)
            if feats.info.get("params") is None:
                feats.info["params"] = spec.params
        return loaded

    def bar(self, total: int, desc: str):
        """A tqdm progress bar (a silent stand-in without ``progress``)."""
        if self.options.progress:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False)
        return _NoBar()

    # -- output -----------------------------------------------------------------------------------------------
    def write_json(self, name: str, data: Any) -> Path:
        """Write ``<folder>/<name>`` as indented JSON (atomic)."""
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")
        self.files.append(path)
        return path

    def write_csv(self, name: str, frame: Any) -> Path:
        """Write a DataFrame to ``<folder>/<name>`` (atomic)."""
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
        self.files.append(path)
        return path

    def figure_path(self, name: str) -> Path:
        """Path of a figure file in ``<folder>/figures/`` (the folder is created)."""
        self.figures.mkdir(parents=True, exist_ok=True)
        path = self.figures / name
        self.files.append(path)
        return path

    def write_section(self, section: Any) -> Path:
        """Write the report section (an HTML fragment + markdown under ``<out>/sections/``)."""
        from prh.report.sections import write_section

        path = write_section(self.out, section)
        self.files.append(path)
        return path

    def write_report_section(
        self,
        description: str,
        findings: Sequence[str],
        figures: Sequence[tuple[Path, str, str]],
        tables: Sequence[tuple[str, Any]],
    ) -> Path:
        """Write the experiment's report section the way every experiment lays it out.

        Parameters
        ----------
        description : one paragraph on what the experiment measures.
        findings : one line per finding (the run's printed lines).
        figures : ``(path, caption, title)`` of each figure written by this run.
        tables : ``(title, DataFrame)`` of each table.

        The name, title and order come from the experiment's spec; the section links every JSON and CSV file the
        run wrote so far.
        """
        from prh.report.sections import Figure, Section, Table

        return self.write_section(
            Section(
                name=self.spec.name,
                title=self.spec.title,
                order=self.spec.order,
                paragraphs=[description],
                findings=list(findings),
                figures=[Figure(self.relative(path), caption, title) for path, caption, title in figures],
                tables=[Table(title, frame) for title, frame in tables],
                files=[(p.name, self.relative(p)) for p in self.files if p.suffix in (".json", ".csv")],
            )
        )

    def provenance(self, config: ConfigFields) -> dict:
        """What identifies this run: experiment, options, config, versions, wall time so far."""
        from prh._provenance import run_stamp

        return {
            "experiment": self.spec.name,
            "options": self.options.to_dict() | {"models": self.models, "dataset": self.dataset, "n": self.n},
            "config": config.to_dict(),
            **run_stamp(created=False),
            "wall_time_s": round(time.perf_counter() - self.started, 2),
        }


class _NoBar:
    def update(self, _n: int = 1) -> None:
        pass

    def set_postfix_str(self, _s: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
