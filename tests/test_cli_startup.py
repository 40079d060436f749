"""Help texts are cheap: `prh --help` and `prh experiment --help` import neither torch nor any experiment, and
`import prh` has no side effects (no torch, no matplotlib backend)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prh.cli import app
from prh.commands.experiment import summary_of
from prh.experiments import get, names

SRC = Path(__file__).resolve().parents[1] / "src"

PROBE = """
import json, runpy, sys
sys.argv = ["prh", *json.loads(sys.argv[1])]
try:
    runpy.run_module("prh", run_name="__main__")
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "matplotlib", "pandas") or
               m.startswith("prh.experiments."))
print("LOADED=" + json.dumps(heavy))
"""


def _loaded(*argv: str) -> list[str]:
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True, env=env, check=True
    ).stdout
    line = next(s for s in out.splitlines() if s.startswith("LOADED="))
    return json.loads(line.removeprefix("LOADED="))


@pytest.mark.parametrize("argv", [("--help",), ("experiment", "--help"), ("align", "--help")])
def test_help_imports_no_torch_and_no_experiment(argv):
    assert _loaded(*argv) == []


def test_import_prh_loads_nothing_heavy():
    code = (
        "import sys, prh; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib')))"
    )
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_the_listing_shows_each_experiment_s_own_summary():
    for name in names():
        assert summary_of(name) == get(name).summary
    res = CliRunner().invoke(app, ["experiment", "--help"], terminal_width=400)
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    for name in names():
        assert name in flat and " ".join(get(name).summary.split())[:40] in flat


def test_an_experiment_command_is_built_with_its_options():
    res = CliRunner().invoke(app, ["experiment", "colors", "--help"], terminal_width=400)
    assert res.exit_code == 0, res.output
    assert "--permutations" in res.output and "--models" in res.output
    assert "--install-completion" not in res.output
