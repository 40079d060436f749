"""scripts/update_readme.py copies the findings of the demo's report between the README's DEMO-RESULTS markers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from prh.align import Results
from prh.report import build_report

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "update_readme.py"
_spec = importlib.util.spec_from_file_location("update_readme", SCRIPT)
update = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(update)

START, END = update.START_MARKER, update.END_MARKER
README = f"# project\n\nintro text that must stay\n\n{START}\nold numbers pasted by hand\n{END}\n\n## Using it\n\nmore\n"
FINDINGS = (
    "The run pairs 16 images.\n\n"
    "How to read it: cells.\n\n"
    "- best pair: `a` × `b`, 0.500;\n- all 4 pairs are significant.\n\n"
    "The control: shuffled captions\ngive 0.010.\n\n"
    "The run behind these numbers took 5 s.\n"
)


@pytest.fixture
def results_dir(tmp_path) -> Path:
    """A results folder as `prh demo` leaves it: report.md with its findings section, provenance, figures."""
    out = tmp_path / "prh-results"
    (out / "figures").mkdir(parents=True)
    report = f"# prh alignment report\n\n## Findings\n\n<!-- findings metric=cka -->\n{FINDINGS}<!-- /findings -->\n\n## More\n"
    (out / "report.md").write_text(report, encoding="utf-8")
    (out / "provenance.json").write_text(
        json.dumps({"created": "2026-01-01T00:00:00+00:00"}), encoding="utf-8"
    )
    for name in ("cross_modal_cka.png", "control_cka.png", "within_vision_cka.png"):
        (out / "figures" / name).write_bytes(name.encode())
    return out


def _readme(tmp_path: Path, text: str = README) -> Path:
    path = tmp_path / "README.md"
    path.write_bytes(text.encode())
    return path


def test_the_block_is_the_report_s_findings_with_the_two_figures(tmp_path, results_dir):
    readme = _readme(tmp_path)
    assert update.main([str(results_dir), "--readme", str(readme)]) == 0
    new = readme.read_text(encoding="utf-8")
    before, after = README.split(START)[0], README.split(END)[1]
    assert new.startswith(before + START + "\n") and new.endswith(END + after)
    block = new[len(before) + len(START) : -len(END + after)]
    paragraphs = FINDINGS.strip("\n").split("\n\n")
    expected = [
        update.HEADING,
        paragraphs[0],
        "![cross-modal cka](docs/img/cross_modal_cka.png)",
        paragraphs[1],
        paragraphs[2],
        "![real vs shuffled captions](docs/img/control_cka.png)",
        *paragraphs[3:],
    ]
    lines = block.strip("\n").split("\n")
    assert lines[0].startswith(
        f"<!-- generated from {results_dir.as_posix()}/report.md (2026-01-01T00:00:00+00:00)"
    )
    assert "\n".join(lines[1:]) == "\n\n".join(expected)
    # the two figures are copied next to the README, nothing else
    assert sorted(p.name for p in (tmp_path / "docs" / "img").iterdir()) == [
        "control_cka.png",
        "cross_modal_cka.png",
    ]
    assert (tmp_path / "docs" / "img" / "control_cka.png").read_bytes() == b"control_cka.png"
    # a second run changes nothing
    assert update.update_readme(results_dir, readme) is False
    assert readme.read_text(encoding="utf-8") == new


def test_no_figures_leaves_out_links_and_copies(tmp_path, results_dir):
    readme = _readme(tmp_path)
    assert update.main([str(results_dir), "--readme", str(readme), "--no-figures"]) == 0
    text = readme.read_text(encoding="utf-8")
    assert "![" not in text and not (tmp_path / "docs").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# no markers at all\n", START),
        (f"# only the start\n{START}\nold\n", END),
        (f"{START}\n{START}\n{END}\n", "2 copies"),
        (f"{END}\n{START}\n", "comes before"),
    ],
)
def test_a_readme_without_good_markers_is_refused_and_left_alone(
    tmp_path, results_dir, capsys, text, message
):
    readme = _readme(tmp_path, text)
    assert update.main([str(results_dir), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert readme.read_bytes() == text.encode()


def test_missing_report_or_findings_say_what_to_run(tmp_path, results_dir, capsys):
    readme = _readme(tmp_path)
    assert update.main([str(tmp_path / "nowhere"), "--readme", str(readme)]) == 2
    assert "run `prh demo" in capsys.readouterr().err
    (results_dir / "report.md").write_text("# prh alignment report\n", encoding="utf-8")
    assert update.main([str(results_dir), "--readme", str(readme)]) == 2
    assert "no findings section" in capsys.readouterr().err
    assert readme.read_bytes() == README.encode()


def test_crlf_readme_keeps_its_line_endings(tmp_path, results_dir):
    readme = _readme(tmp_path, README.replace("\n", "\r\n"))
    update.update_readme(results_dir, readme, figures=None)
    data = readme.read_bytes().decode()
    assert "\r\n\r\n- best pair" in data and "\n" not in data.replace("\r\n", "")


def test_a_failed_write_leaves_the_readme_and_no_temporary_file(tmp_path, results_dir, monkeypatch):
    readme = _readme(tmp_path)

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(update.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        update.update_readme(results_dir, readme, figures=None)
    assert readme.read_bytes() == README.encode()
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["README.md"]


def test_from_a_real_report(tmp_path):
    """The script reads what build_report writes: the README block holds the report's findings word for word."""
    from test_findings import results as results_fixture

    results = results_fixture.__wrapped__()
    for _, r in results.table.iterrows():
        results.grids[Results.grid_key(r.metric, r.control, r.model_x, r.model_y)] = np.full(
            (10, 12), r.score
        )
    out = tmp_path / "prh-results"
    results.save(out)
    build_report(out)
    readme = _readme(tmp_path)
    update.update_readme(out, readme)
    text = readme.read_text(encoding="utf-8")
    body = update.read_findings(out)[1]
    for paragraph in body.strip("\n").split("\n\n"):
        assert paragraph in text
    assert (tmp_path / "docs" / "img" / "cross_modal_mutual_knn.png").read_bytes() == (
        out / "figures" / "cross_modal_mutual_knn.png"
    ).read_bytes()
