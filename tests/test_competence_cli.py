"""`prh competence` end to end on tiny random models (real extraction, store, alignment run and report): probes on
a labelled folder dataset, an lm-evaluation-harness results file and a CSV attached as downstream scores, the Fig. 2
and Fig. 4 views in the report, a folder-per-class tree, the per-model cache in the store, and the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from prh.cli import app
from prh.models.tiny import tiny_causal_lm, tiny_text_encoder, tiny_tokenizer, tiny_vit

N = 48
FIXTURE = Path(__file__).parent / "fixtures" / "lm_eval_results.json"
runner = CliRunner()
WARM = ["red", "sun", "fire", "apple", "rose"]
COOL = ["blue", "moon", "water", "ice", "sky"]


def _image(rng, warm: bool, path: Path) -> None:
    base = np.array([200, 60, 40] if warm else [40, 80, 200], dtype=float)
    pixels = np.clip(base + rng.normal(0, 40, size=(24, 24, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny models, a folder dataset of N images with captions, a labels file, features extracted, an alignment."""
    root = tmp_path_factory.mktemp("competence")
    tok = tiny_tokenizer()
    for name, seed in (("lm", 0), ("lm2", 1)):
        tiny_causal_lm("gpt2", seed=seed).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    tiny_text_encoder().save_pretrained(root / "enc")
    tok.save_pretrained(root / "enc")
    tiny_vit(seed=0).save_pretrained(root / "vit")
    tiny_vit(seed=1, layers=2).save_pretrained(root / "vit2")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    labels = ["id,label"]
    with open(data / "metadata.jsonl", "w") as fh:
        for i in range(N):
            warm = i % 2 == 0
            _image(rng, warm, data / f"img{i}.png")
            caption = " ".join(rng.choice(WARM if warm else COOL, size=3))
            fh.write(json.dumps({"file_name": f"img{i}.png", "text": caption}) + "\n")
            labels.append(f"img{i}.png,{'warm' if warm else 'cool'}")
    (root / "labels.csv").write_text("\n".join(labels) + "\n")
    models = root / "models.toml"
    entries = [
        ("tiny-lm", "lm", "hf-causal-lm", "language"),
        ("tiny-lm2", "lm2", "hf-causal-lm", "language"),
        ("tiny-enc", "enc", "hf-text-encoder", "language"),
        ("tiny-vit", "vit", "hf-vision", "vision"),
        ("tiny-vit2", "vit2", "hf-vision", "vision"),
    ]
    text = ""
    for name, folder, adapter, modality in entries:
        text += f'[[model]]\nname = "{name}"\nsource = "{root / folder}"\nadapter = "{adapter}"\nmodality = "{modality}"\n'
        if adapter == "hf-vision":
            text += 'pool = "mean"\noptions = { include_embeddings = true }\n'
    text += '[sets]\ntiny = ["tiny-lm", "tiny-lm2", "tiny-enc", "tiny-vit", "tiny-vit2"]\n'
    models.write_text(text)
    store, out = root / "store", root / "results"
    common = ["--dataset", str(data), "--store", str(store), "--models-file", str(models)]
    res = runner.invoke(app, ["extract", "--models", "tiny", *common, "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["align", "--models", "tiny", *common, "--out", str(out), "--k", "5", "--no-report"]
    )
    assert res.exit_code == 0, res.output
    scores = root / "scores.csv"
    scores.write_text("model,task,metric,value\ntiny-lm2,hellaswag,acc,0.27\ntiny-enc,hellaswag,acc,0.25\n")
    return {
        "root": root,
        "data": data,
        "models": models,
        "store": store,
        "out": out,
        "common": common,
        "labels": root / "labels.csv",
        "scores": scores,
    }


def competence_args(ws, *extra):
    return [
        "competence",
        "--models",
        "tiny",
        *ws["common"],
        "--labels",
        str(ws["labels"]),
        "--folds",
        "3",
        "--k",
        "3",
        "--out",
        str(ws["out"]),
        "--no-extract",
        *extra,
    ]


@pytest.fixture(scope="module")
def probed(workspace):
    res = runner.invoke(
        app,
        competence_args(
            workspace,
            "--downstream",
            str(FIXTURE),
            "--downstream",
            str(workspace["scores"]),
            "--reference-vision",
            "tiny-vit",
        ),
    )
    assert res.exit_code == 0, res.output
    return res.output


def test_probes_print_every_model_with_intervals_and_the_control(workspace, probed):
    for model in ("tiny-lm", "tiny-lm2", "tiny-enc", "tiny-vit", "tiny-vit2"):
        assert f"{model} (" in probed
    assert "k-NN   last" in probed and "linear last" in probed and "chance 1/C = 0.500" in probed
    assert "48 of 48 items have one" in probed
    table = pd.read_csv(workspace["out"] / "competence" / "probes.csv")
    assert len(table) == 5 * 4 and set(table["probe"]) == {"knn", "linear"}
    assert set(table["layer_choice"]) == {"last", "best"} and (table["n"] == N).all()
    assert ((table["ci_low"] <= table["accuracy"]) & (table["accuracy"] <= table["ci_high"])).all()
    # the colours separate the classes: the vision probes find them, the shuffled control does not
    vision = table[(table["modality"] == "vision") & (table["probe"] == "linear")]
    assert (vision["accuracy"] > 0.8).all() and (vision["control_balanced_accuracy"] < 0.75).all()
    prov = json.loads((workspace["out"] / "competence" / "competence.json").read_text())
    assert prov["config"]["folds"] == 3 and prov["labels"]["used_classes"] == {"cool": 24, "warm": 24}
    assert prov["dataset"]["n"] == N and prov["views"]["reference_vision"] == "tiny-vit"
    # the stem of the ViTs (include_embeddings) is an input layer, recorded and left out of the best layer
    assert prov["models"]["tiny-vit"]["input_layers"] == [0] and prov["models"]["tiny-lm"][
        "input_layers"
    ] == [0]
    best = table[(table["layer_choice"] == "best")]
    assert (best["layer"] > 0).all()


def test_downstream_scores_attach_and_give_the_fig4_panel(workspace, probed):
    down = pd.read_csv(workspace["out"] / "competence" / "downstream.csv")
    assert set(down["model"]) == {"tiny-lm", "tiny-lm2", "tiny-enc"}  # "tiny-org/tiny-lm" resolved to tiny-lm
    assert len(down[down["model"] == "tiny-lm"]) == 4
    html = (workspace["out"] / "report.html").read_text()
    assert "figures/competence_fig4_mutual_knn.png" in html
    assert (workspace["out"] / "figures" / "competence_fig4_mutual_knn.png").is_file()
    assert "Fig. 4 view" in html and "alignment to tiny-vit" in html


def test_report_shows_the_fig2_bucket_view_the_map_and_flags_input_layers(workspace, probed):
    out = workspace["out"]
    html = (out / "report.html").read_text()
    for name in (
        "competence_probes.png",
        "competence_layers.png",
        "competence_fig2_buckets_mutual_knn.png",
        "competence_fig2_map_mutual_knn.png",
        "competence_mutual_knn.png",
    ):
        assert f"figures/{name}" in html and (out / "figures" / name).is_file()
    assert "Measured competence (transfer probes)" in html and "Competence buckets, language models" in html
    assert "n = 3 language models (too few for a trend: 6 needed)" in html
    assert "n = 2 vision models (too few for clusters" not in html  # a map needs 3 models: no vision map
    assert "n = 3 language models (too few for clusters: 6 needed)" in html
    assert "<th>input layer</th>" in html
    # building the report again (prh report) gives the same section, rebuilt from the tables
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").read_text().count("Measured competence (transfer probes)") == 1


def test_a_second_run_reads_each_model_from_the_store(workspace, probed):
    res = runner.invoke(app, competence_args(workspace, "--no-report"))
    assert res.exit_code == 0, res.output
    assert res.output.count("(cached)") == 5
    records = list((workspace["store"]).glob("*/competence/*.json"))
    assert len(records) == 5
    res = runner.invoke(app, competence_args(workspace, "--no-report", "--seed", "1"))
    assert res.exit_code == 0 and "(cached)" not in res.output  # another seed: recomputed


def test_a_folder_per_class_tree_probes_the_vision_models_only(workspace, tmp_path):
    rng = np.random.default_rng(1)
    tree = tmp_path / "tree"
    for cls, warm in (("warm", True), ("cool", False)):
        (tree / cls).mkdir(parents=True)
        for i in range(12):
            _image(rng, warm, tree / cls / f"{i}.png")
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "competence",
            "--models",
            "tiny",
            "--dataset",
            str(tree),
            "--store",
            str(tmp_path / "store"),
            "--models-file",
            str(workspace["models"]),
            "--folds",
            "3",
            "--k",
            "3",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "competence" / "probes.csv")
    assert set(table["model"]) == {"tiny-vit", "tiny-vit2"}
    assert "tiny-lm: skipped -- the dataset has no captions" in res.output
    prov = json.loads((out / "competence" / "competence.json").read_text())
    assert prov["labels"]["used_classes"] == {"cool": 12, "warm": 12} and prov["dataset"]["name"].startswith(
        "classes:"
    )
    assert (out / "report.html").is_file() and "Measured competence" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "labels-short",
            "labels_short.csv do(es) not cover the feature rows: 8 of the 48 items have no entry",
        ),
        ("labels-one-class", "leave one class ('warm')"),
        ("lm-eval-shape", "is not an lm-evaluation-harness results file"),
        ("csv-text", "line 2, column 'value': the score 'good' is not a number"),
        ("csv-unknown", "model name(s) ['gpt-9'] match no model of this run"),
        ("few-items", "leave no class with at least 5 items"),
        ("reference", "--reference-vision 'tiny-lm' is not a vision model"),
    ],
)
def test_bad_inputs_are_one_clear_error_naming_the_file(workspace, tmp_path, case, message):
    extra: list[str] = []
    args = competence_args(workspace, "--no-report")
    if case == "labels-short":
        lines = workspace["labels"].read_text().splitlines()[:-8]
        path = tmp_path / "labels_short.csv"
        path.write_text("\n".join(lines) + "\n")
        args[args.index(str(workspace["labels"]))] = str(path)
    elif case == "labels-one-class":
        path = tmp_path / "one.csv"
        path.write_text("id,label\n" + "".join(f"img{i}.png,warm\n" for i in range(N)))
        args[args.index(str(workspace["labels"]))] = str(path)
    elif case == "lm-eval-shape":
        path = tmp_path / "results_2024.json"
        path.write_text(json.dumps({"hellaswag": {"acc": 0.3}}))
        extra = ["--downstream", str(path)]
    elif case == "csv-text":
        path = tmp_path / "s.csv"
        path.write_text("model,task,metric,value\ntiny-lm,hellaswag,acc,good\n")
        extra = ["--downstream", str(path)]
    elif case == "csv-unknown":
        path = tmp_path / "s.csv"
        path.write_text("model,task,metric,value\ngpt-9,hellaswag,acc,0.9\n")
        extra = ["--downstream", str(path)]
    elif case == "few-items":
        path = tmp_path / "few.csv"
        rows = [f"img{i}.png,{'warm' if i < 2 else ('cool' if i < 4 else '')}" for i in range(N)]
        path.write_text("id,label\n" + "\n".join(rows) + "\n")
        args[args.index(str(workspace["labels"]))] = str(path)
        args[args.index("--folds") + 1] = "5"
    elif case == "reference":
        extra = ["--reference-vision", "tiny-lm"]
    res = runner.invoke(app, args + extra)
    assert res.exit_code != 0
    text = res.output + str(res.exception or "")
    assert message in text, text
    if case in ("labels-short", "lm-eval-shape", "csv-text"):
        assert str(path) in text or path.name in text
