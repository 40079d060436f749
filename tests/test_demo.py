"""`prh demo --fast` on the real offline zoo (EfficientNet-Lite0 and MiniLM-L6, 256 OpenMoji pairs), and what the
demo does when writing its results fails after the compute (fast: the compute is stubbed)."""

from __future__ import annotations

import errno
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from prh.align import STATS_COLUMNS, TABLE_COLUMNS, Results
from prh.cli import app
from prh.models import availability, get_model


@pytest.mark.slow
def test_demo_fast_end_to_end_on_the_real_zoo(tmp_path):
    for name in ("effnet-lite0", "minilm-l6"):
        ok, why = availability(get_model(name))
        if not ok:
            pytest.skip(f"{name}: {why}")
    out, store = tmp_path / "results", tmp_path / "cache" / "features"
    args = [
        "demo",
        "--fast",
        "--out",
        str(out),
        "--store",
        str(store),
        "--device",
        "cpu",
        "--calibrate",
        "99",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "results.csv")
    mk = table[(table["metric"] == "mutual_knn") & (table["modality_x"] != table["modality_y"])]
    real = mk[mk["control"] == "none"]["score"].max()
    shuffled = mk[mk["control"] == "shuffled_captions"]["score"].max()
    chance = 10 / (256 - 1)
    assert (
        real > 2.5 * shuffled and real > 3 * chance
    )  # real pretrained models share structure; the control does not
    assert shuffled < 2 * chance
    assert mk[mk["control"] == "none"]["p_value"].iloc[0] <= 0.01
    # statistics for the cross-modal mutual_knn rows only: a real interval around the real pair, none elsewhere
    best = mk[mk["control"] == "none"].iloc[0]
    assert best["ci_low"] < best["score"] < best["ci_high"] and best["ci_low"] > 3 * chance
    others = table[(table["metric"] != "mutual_knn") | (table["modality_x"] == table["modality_y"])]
    assert others["ci_low"].isna().all() and others["p_value"].isna().all()
    html = (out / "report.html").read_text()
    assert (
        "figures/cross_modal_mutual_knn.png" in html
        and (out / "figures" / "cross_modal_mutual_knn.png").is_file()
    )
    # a second run reuses cached features and cached alignment results
    res2 = CliRunner().invoke(app, args)
    assert res2.exit_code == 0 and "already stored" in res2.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), table)


def _tiny_results() -> Results:
    row = dict.fromkeys(TABLE_COLUMNS + STATS_COLUMNS, np.nan)
    row.update(
        model_x="vis",
        model_y="lang",
        modality_x="vision",
        modality_y="language",
        metric="mutual_knn",
        k=3,
        N=16,
        score=0.4,
        best_layer_x=1,
        best_layer_y=2,
        control="none",
    )
    return Results(pd.DataFrame([row], columns=TABLE_COLUMNS + STATS_COLUMNS), {}, {"created": "now"})


@pytest.fixture
def stubbed_demo(tmp_path, monkeypatch):
    """`prh demo` with its compute stubbed (two fake models, a tiny alignment result); only the writing is real.
    Returns the results the alignment "computed", --out (holding a previous run's file) and the argv."""
    import prh.align
    import prh.commands.competence
    import prh.data
    import prh.features
    import prh.models
    import prh.report

    specs = [
        SimpleNamespace(name="vis", modality="vision"),
        SimpleNamespace(name="lang", modality="language"),
    ]
    results = _tiny_results()
    monkeypatch.setattr(prh.models, "resolve_models", lambda _names: specs)
    monkeypatch.setattr(prh.models, "availability", lambda _spec: (True, ""))
    monkeypatch.setattr(prh.data, "load_dataset", lambda name, n: SimpleNamespace(name=name, n=n))
    monkeypatch.setattr(prh.features, "extract", lambda models, *a, **k: [{"status": "done"} for _ in models])
    monkeypatch.setattr(prh.align, "run_alignment", lambda *a, **k: results)

    def never(*a, **k):
        raise AssertionError("the demo went on after its results could not be written")

    monkeypatch.setattr(prh.commands.competence, "demo_probes", never)
    monkeypatch.setattr(prh.report, "build_report", never)
    out = tmp_path / "results"
    out.mkdir()
    (out / "results.csv").write_text("a previous run\n")
    argv = ["prh", "demo", "--fast", "--out", str(out), "--store", str(tmp_path / "cache" / "features")]
    monkeypatch.setattr(sys, "argv", argv)
    return SimpleNamespace(results=results, out=out)


def _error(capsys) -> str:
    """Run `prh` (sys.argv) through the real entry point; expect exit status 2 and return the error, unwrapped."""
    from prh.cli import main

    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err, err
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("error: "), err
    return " ".join(lines)


def test_a_late_write_failure_keeps_the_demo_results_in_a_temporary_folder(
    stubbed_demo, tmp_path, monkeypatch, capsys
):
    """Writing to --out fails after the compute (a disk that filled up): the results go to a fresh temporary folder
    that the one error line names, --out keeps what it held, and nothing after the failed write runs."""
    import tempfile

    real_save = Results.save
    targets = []

    def full_once(self, out_dir):
        targets.append(out_dir)
        if len(targets) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, out_dir)

    monkeypatch.setattr(Results, "save", full_once)
    spare = tmp_path / "spare"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    out = stubbed_demo.out
    message = _error(capsys)
    (kept,) = list(spare.iterdir())
    assert targets == [out, kept]  # --out first, then the temporary folder
    assert message.startswith(f"error: --out {out}: writing the results failed (No space left on device)")
    assert f"nothing in {out} was changed" in message and f"kept in {kept}" in message
    assert f"prh report {kept}" in message
    assert Results.load(kept).table.equals(stubbed_demo.results.table)  # the computed results, complete
    assert sorted(p.name for p in out.iterdir()) == ["results.csv"]
    assert (out / "results.csv").read_text() == "a previous run\n"


def test_a_write_failure_after_the_results_are_saved_says_so(stubbed_demo, monkeypatch, capsys):
    """The results are in --out; writing the competence tables (or the report) fails: one error line saying the
    results are saved and how to finish."""
    import prh.commands.competence

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prh.commands.competence, "demo_probes", full)
    out = stubbed_demo.out
    message = _error(capsys)
    assert message.startswith(f"error: --out {out}: the alignment results are saved there")
    assert "(No space left on device)" in message and f"prh report {out}" in message
    assert Results.load(out).table.equals(stubbed_demo.results.table)


def test_the_demo_records_its_times_and_says_when_the_machine_was_loaded(tmp_path, monkeypatch):
    """run_times.json holds each stage's wall time (differences of the stage clocks), the stored extraction times,
    the run's created stamp, and a machine description that says when other work loaded the machine."""
    import prh.commands.demo as demo
    from prh.report.findings import RunTimes

    class Store:
        def find_many(self, names, pools, dataset):
            return {"vis": {"load_and_extract_s": 12.5}, "lang": {}}

    specs = [SimpleNamespace(name="vis", pool="mean"), SimpleNamespace(name="lang", pool="last")]
    results = Results(pd.DataFrame(), {}, {"created": "2026-01-01T00:00:00+00:00"})
    cores = demo.os.cpu_count() or 1
    monkeypatch.setattr(demo.os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))
    demo._save_run_times(tmp_path, 10.0, 70.0, 100.0, 130.0, (Store(), "data", specs, None, results))
    times = RunTimes.load(tmp_path)
    assert times.seconds == {"total": 120.0, "features": 60.0, "alignment": 30.0, "competence": 30.0}
    assert times.extraction == {"vis": 12.5} and times.created == "2026-01-01T00:00:00+00:00"
    assert times.machine.endswith(f"shared with other work (load average {cores + 3})")
    monkeypatch.setattr(demo.os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    demo._save_run_times(tmp_path, 10.0, 70.0, 100.0, 130.0, (Store(), "data", specs, None, results))
    assert "shared" not in RunTimes.load(tmp_path).machine
