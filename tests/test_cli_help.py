"""The command line's texts as users see them: every help text rendered (rich markup must not eat "[...]"), and
the lists of experiments, metrics and options in help texts and docs taken from the registries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import prh.experiments
import prh.metrics
from prh.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _commands(command=None, path=()):
    """(path, click command) of every command and group of the app, the root included."""
    command = command or typer.main.get_command(app)
    yield list(path), command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands())


def _flat(text: str) -> str:
    """Rendered help without the panels' borders and line breaks (words joined by single spaces)."""
    return re.sub(r"[\s│╭╮╰╯─]+", " ", text)


def _help(path: list[str]) -> str:
    res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})  # wide: no option name is folded
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "prh")
def test_every_help_text_renders_with_its_brackets(path):
    """Each command's and option's help appears in the rendered --help with every [bracketed] part it has."""
    command = dict((tuple(p), c) for p, c in COMMANDS)[tuple(path)]
    shown = _flat(_help(path))
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    for text in texts:
        intended = text.replace("\\[", "[")  # what an escaped help text shows
        for bracketed in re.findall(r"\[[^\]\s]*\]?\]", intended):
            assert bracketed in shown, f"{' '.join(path)} --help lost {bracketed!r}"
    for param in command.params:
        for flag in getattr(param, "opts", []):
            if flag.startswith("--") and param.name != "help" and not getattr(param, "hidden", False):
                assert flag in shown, f"{' '.join(path)} --help does not show {flag}"


def test_models_help_keeps_the_toml_table_names():
    shown = _flat(_help(["models"]))
    assert "[[model]] entries and [sets]" in shown


def test_prh_models_prints_install_hints_with_their_extras(monkeypatch):
    import prh.models

    hint = "optional extra missing (timm): pip install 'prh[timm]'"
    monkeypatch.setattr(prh.models, "availability", lambda spec: (False, hint))
    res = runner.invoke(app, ["models", "--set", "offline"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert "pip install 'prh[timm]'" in _flat(res.output)


def test_experiment_help_names_every_registered_experiment():
    shown = _flat(_help(["experiment"]))
    summary = shown.split("Options")[0]
    for name in prh.experiments.names():
        assert name in summary, f"the summary of `prh experiment --help` omits {name}"
        assert f" {name} " in shown.split("Commands")[1], f"`prh experiment --help` lists no {name} command"


def test_docs_name_every_experiment():
    """README's Documentation list and docs/experiments.md (its command list and run-times table)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    entry = re.search(r"^- `docs/experiments\.md`.*?(?=^- |^$)", readme, re.M | re.S)
    assert entry, "README's Documentation list has no docs/experiments.md entry"
    docs = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    times = docs.split("## Run times", 1)[1].split("\n## ", 1)[0]
    for name in prh.experiments.names():
        assert name in _flat(entry.group(0)), f"README's docs/experiments.md entry omits {name}"
        assert f"prh experiment {name} " in docs, f"docs/experiments.md's command list omits {name}"
        assert f"`prh experiment {name}`" in times, f"docs/experiments.md's run-times table omits {name}"


def test_readme_links_every_doc():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^- `(docs/[\w-]+\.md)`", readme, re.M))
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in listed, f"README's Documentation list does not link docs/{doc.name}"


def test_score_list_prints_every_metric_and_only_options_that_exist():
    from prh.commands.score import FLAG_OPTIONS

    res = runner.invoke(app, ["score", "--list"])
    assert res.exit_code == 0, res.output
    score = dict((tuple(p), c) for p, c in COMMANDS)[("score",)]
    flags = {opt for p in score.params for opt in getattr(p, "opts", [])}
    assert {f"--{name}" for name in FLAG_OPTIONS} <= flags
    lines = {line.split()[0]: line for line in res.output.splitlines() if line and not line[0].isspace()}
    assert list(lines) == prh.metrics.names()
    for metric, line in lines.items():
        options = prh.metrics.spec(metric).options()
        for flag in re.findall(r"(?<![\w-])--[\w-]+", line):
            assert flag in flags, f"`prh score --list` advertises {flag} for {metric}; it is not an option"
        for name in options:
            form = f"--{name}" if name in FLAG_OPTIONS else f"-O {name}="
            assert form in line, f"`prh score --list` shows {name} of {metric} not as {form!r}"


def test_every_option_form_that_score_list_prints_is_accepted(tmp_path):
    """An -O option from the list runs; a misspelt one is refused with the same -O form in the message."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.standard_normal((30, 6)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.standard_normal((30, 5)).astype(np.float32))
    files = [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]
    ok = runner.invoke(app, ["score", *files, "--metric", "rsa", "-O", "rdm=euclidean", "--json"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["score", *files, "--metric", "rsa", "-O", "rdms=euclidean"])
    assert bad.exit_code != 0 and "-O rdms=VALUE is not an option of rsa" in _flat(str(bad.exception))
    assert "-O rdm=VALUE" in _flat(str(bad.exception))


def test_align_metric_default_is_alignconfigs():
    from prh.align import AlignConfig
    from prh.commands.align import _default_metrics

    assert _default_metrics() == ",".join(AlignConfig().metrics)


def test_no_progress_also_silences_the_libraries_loading_bars(monkeypatch):
    """`--no-progress` (extract(progress=False)) switches transformers', the hub's and the GGUF reader's bars off
    while it runs, and leaves them as they were afterwards."""
    import importlib.util

    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    import prh.features._extract as extract_module

    seen = {}

    def probe(specs, pool):
        seen["transformers"] = hf_logging.is_progress_bar_enabled()
        seen["hub"] = not hub_utils.are_progress_bars_disabled()
        if importlib.util.find_spec("gguf") is not None:
            import transformers.modeling_gguf_pytorch_utils as gguf

            seen["gguf"] = gguf.tqdm([]).disable  # the reader's bar, as it creates it
        raise RuntimeError("probe")

    monkeypatch.setattr(extract_module, "check_pools", probe)
    before = (hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled())
    with pytest.raises(RuntimeError, match="probe"):
        extract_module.extract([], None, None, progress=False)
    assert seen["transformers"] is False and seen["hub"] is False and seen.get("gguf", True) is True
    assert (hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled()) == before
    with pytest.raises(RuntimeError, match="probe"):
        extract_module.extract([], None, None, progress=True)
    assert (seen["transformers"], seen["hub"]) == (before[0], not before[1])


def test_commands_print_through_the_plain_console():
    """Every rich console of the commands has markup off (prh.commands._console), so printed text keeps "[...]"."""
    for path in sorted((ROOT / "src" / "prh" / "commands").glob("*.py")):
        if path.name == "_console.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "Console(" not in text, f"{path.name} makes its own rich Console; use plain_console()"
        assert not re.search(r"\[/?(bold|green|red|yellow|cyan)\]", text), (
            f"{path.name} prints rich markup tags"
        )
