"""prh.experiments and `prh experiment`: the kernels against closed forms on tiny inputs, the permutation null
against a recompute, caption levels, views, the saturating fit on planted data, the report's sections, and each
experiment end to end on tiny random models (real loading code, real feature store, real folder dataset)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from prh.cli import app
from prh.data.base import PairedDataset
from prh.errors import InputError
from prh.experiments import EXPERIMENTS, RunOptions, averaging, captions, colors, get, kernels, names, run
from prh.experiments.fitting import fit_saturating, saturating
from prh.models.tiny import tiny_causal_lm, tiny_text_encoder, tiny_tokenizer, tiny_vit

runner = CliRunner()


# -- the registry -----------------------------------------------------------------------------------------------
def test_registry_lists_every_experiment_and_refuses_an_unknown_name_with_a_suggestion():
    assert {"colors", "caption-density", "test-time-averaging"} <= set(names())
    for name in EXPERIMENTS:
        spec = get(name)
        assert spec.name == name and spec.config().to_dict()  # defaults are valid
    with pytest.raises(InputError, match="unknown experiment 'colour'.*Did you mean 'colors'"):
        get("colour")
    res = runner.invoke(app, ["experiment", "caption-densty"])
    assert isinstance(res.exception, InputError) and "'caption-density'" in str(res.exception)


def test_each_config_refuses_bad_values_naming_the_option():
    with pytest.raises(InputError, match="prompt"):
        colors.ColorsConfig(prompt="no placeholder")
    with pytest.raises(InputError, match="delta_e"):
        colors.ColorsConfig(delta_e="cie94")
    with pytest.raises(InputError, match="calibrate=5"):  # the engine's own check, at config time
        get("caption-density").config(permutations=5)
    with pytest.raises(InputError, match="views=11"):
        averaging.AveragingConfig(views=11)
    with pytest.raises(InputError, match="unknown option"):
        colors.ColorsConfig.from_dict({"permutation": 10})


# -- CIELAB -----------------------------------------------------------------------------------------------------
def test_cielab_of_known_colours_and_their_distances():
    rgb = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    lab = colors.srgb_to_lab(rgb)
    # published sRGB (D65) values; scikit-image's rounded matrix puts white 0.005 off the neutral axis
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(lab[2], [53.2408, 80.0925, 67.2032], atol=0.01)
    np.testing.assert_allclose(lab[3], [87.7347, -86.1827, 83.1793], atol=0.01)
    np.testing.assert_allclose(lab[4], [32.2970, 79.1875, -107.8602], atol=0.01)
    d76 = colors.lab_distances(lab, "cie76")
    assert d76[0, 1] == pytest.approx(100.0, abs=1e-3)
    assert d76[1, 2] == pytest.approx(float(np.sqrt((lab[2] ** 2).sum())), abs=1e-9)
    np.testing.assert_allclose(d76, d76.T)
    d2000 = colors.lab_distances(lab, "ciede2000")
    assert d2000[0, 1] == pytest.approx(100.0, abs=1e-3)  # pure lightness difference around L=50: S_L = 1
    np.testing.assert_allclose(np.diag(d2000), 0.0)
    np.testing.assert_allclose(d2000, d2000.T)


def test_colour_values_and_vocabularies():
    assert colors.parse_color("#ff8000", "x") == (255, 128, 0)
    assert colors.parse_color("#f80", "x") == (255, 136, 0)
    assert colors.parse_color("10, 20, 30", "x") == (10, 20, 30)
    for bad in ("#ggg000", "300,0,0", [1, 2], "red", [1.5, 2, 3]):
        with pytest.raises(InputError, match="sRGB"):
            colors.parse_color(bad, "'bad'")
    xkcd = colors.load_vocabulary("xkcd")
    assert len(xkcd) == 949 and xkcd.names[:3] == ("purple", "green", "blue")  # most common first
    css = colors.load_vocabulary("css4")
    assert "grey" in css.dropped and "gray" in css.names  # same sRGB value: the later name is dropped
    with pytest.raises(InputError, match="Did you mean 'xkcd'"):
        colors.load_vocabulary("xkdc")


def test_vocabulary_files_are_checked_entry_by_entry(tmp_path):
    good = tmp_path / "good.csv"
    rows = ["name,hex"] + [f"c{i},#{i * 10:02x}{255 - i * 10:02x}40" for i in range(20)]
    good.write_text("\n".join(rows))
    vocab = colors.load_vocabulary(str(good))
    assert len(vocab) == 20 and vocab.hex(1) == "#0af540"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(rows[:5] + ["oops,#12345"] + rows[5:]))
    with pytest.raises(InputError, match="'oops'.*not an sRGB value"):
        colors.load_vocabulary(str(bad))
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps([{"name": "a", "hex": "#000000"}, {"name": "a", "hex": "#ffffff"}]))
    with pytest.raises(InputError, match="appears twice"):
        colors.load_vocabulary(str(twice))
    few = tmp_path / "few.json"
    few.write_text(json.dumps({"a": "#000000", "b": "#ffffff"}))
    with pytest.raises(InputError, match="at least 16"):
        colors.load_vocabulary(str(few))


# -- pixel co-occurrence ----------------------------------------------------------------------------------------
def _brute_cooccurrence(maps, v, radius):
    counts = np.zeros((v, v))
    pixels = np.zeros(v, dtype=np.int64)
    for idx in maps:
        h, w = idx.shape
        cells = list(itertools.product(range(h), range(w)))
        for y, x in cells:
            pixels[idx[y, x]] += 1
        for (y1, x1), (y2, x2) in itertools.combinations(cells, 2):
            if max(abs(y1 - y2), abs(x1 - x2)) <= radius:
                counts[idx[y1, x1], idx[y2, x2]] += 1
                counts[idx[y2, x2], idx[y1, x1]] += 1
    return pixels, counts


@pytest.mark.parametrize("radius", [1, 2])
def test_cooccurrence_counts_every_neighbouring_pair_once(radius):
    rng = np.random.default_rng(radius)
    maps = [rng.integers(0, 4, (5, 7)), rng.integers(0, 4, (3, 2)), rng.integers(0, 4, (1, 6))]
    pixels, counts = colors.cooccurrence(maps, 4, radius)
    ref_pixels, ref_counts = _brute_cooccurrence(maps, 4, radius)
    np.testing.assert_array_equal(pixels, ref_pixels)
    np.testing.assert_array_equal(counts, ref_counts)


def test_pmi_of_a_planted_cooccurrence():
    # rows of A B A B ... over rows of C D C D ...: A sits next to B (and to C, D across the border only once)
    a, b, c, d = 0, 1, 2, 3
    top = np.tile([a, b], (4, 4))
    bottom = np.tile([c, d], (4, 4))
    idx = np.vstack([top, bottom])
    _, counts = colors.cooccurrence([idx], 4, radius=1)
    table = colors.pmi(counts, smoothing=1.0)
    smoothed = counts + 1.0
    rows = smoothed.sum(1)
    expected = np.log(smoothed * smoothed.sum() / np.outer(rows, rows))
    np.testing.assert_allclose(table, expected, rtol=1e-12)
    assert table[a, b] > 0 > table[a, d] and table[c, d] > 0 > table[b, c]
    assert table[a, b] > table[a, c]  # horizontal neighbours everywhere beat the one shared border


def test_quantize_maps_palette_pixels_to_themselves():
    rgb = np.array([[250, 10, 10], [10, 250, 10], [10, 10, 250], [128, 128, 128]], dtype=np.uint8)
    lab = colors.srgb_to_lab(rgb)
    image = rgb[np.array([[0, 1, 2, 3], [3, 2, 1, 0]])]
    np.testing.assert_array_equal(colors.quantize(image, lab), [[0, 1, 2, 3], [3, 2, 1, 0]])


# -- kernel comparison ------------------------------------------------------------------------------------------
def _features(seed, n=40, d=12, layers=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1) for _ in range(layers)]


def test_kernel_scores_equal_the_metrics_on_feature_kernels(related_pair):
    import prh

    a, b = related_pair
    ka = kernels.feature_kernel("a", "language", [a])
    kb = kernels.feature_kernel("b", "vision", [b])
    result = kernels.compare(ka, kb, k=5, permutations=9)
    assert result.mutual_knn == pytest.approx(prh.metrics.mutual_knn(a, b, k=5), abs=1e-9)
    # equal up to the order of float-rounding near-ties of the two distance computations
    assert result.spearman == pytest.approx(prh.metrics.rsa(a, b, rdm="euclidean"), abs=1e-5)
    xs, ys = _features(1, layers=3), _features(2, layers=2)
    grid = kernels.compare(
        kernels.feature_kernel("x", "l", xs), kernels.feature_kernel("y", "v", ys), k=4, permutations=1
    )
    np.testing.assert_allclose(grid.grid_knn, prh.sweep(xs, ys, "mutual_knn", k=4).scores, atol=1e-9)


def test_relabelled_null_equals_a_recompute_on_the_permuted_kernel():
    xs, ys = _features(3, layers=2), _features(4, layers=3)
    ka, kb = kernels.feature_kernel("x", "l", xs), kernels.feature_kernel("y", "v", ys)
    pa, pb = kernels._prepare(ka, 6), kernels._prepare(kb, 6)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    knn, spear = kernels._grids(pa, pb, perm, 6)
    moved = kernels.Kernel("y'", "v", [s[perm][:, perm] for s in kb.layers])
    knn_ref, spear_ref = kernels._grids(pa, kernels._prepare(moved, 6), None, 6)
    np.testing.assert_allclose(knn, knn_ref, atol=1e-12)
    np.testing.assert_allclose(spear, spear_ref, atol=1e-12)


def test_identical_kernels_are_significant_and_the_shuffled_control_is_at_chance():
    xs = _features(5, n=60, layers=1)
    k = kernels.feature_kernel("x", "l", xs)
    same = kernels.compare(k, kernels.feature_kernel("x2", "l", xs), k=5, permutations=49, seed=1)
    assert same.mutual_knn == pytest.approx(1.0) and same.spearman == pytest.approx(1.0)
    assert same.p_knn == pytest.approx(1 / 50) and same.p_spearman == pytest.approx(1 / 50)
    assert same.control_knn < 0.25 and abs(same.control_spearman) < 0.15
    assert same.calibrated_knn == pytest.approx(1.0)
    other = kernels.compare(
        k, kernels.feature_kernel("y", "v", _features(6, n=60, layers=1)), k=5, permutations=49
    )
    assert other.p_knn > 0.05 and other.mutual_knn < 0.25


def test_kernel_comparison_refuses_mismatched_items():
    with pytest.raises(InputError, match="same items"):
        kernels.compare(
            kernels.feature_kernel("a", "l", _features(0, n=20)),
            kernels.feature_kernel("b", "v", _features(0, n=21)),
        )


# -- captions and views -----------------------------------------------------------------------------------------
class _Emoji(PairedDataset):
    """A few OpenMoji-like items (hexcode ids, Unicode names) without the openmoji package."""

    emoji_ids = True  # what the emoji caption levels need, said by the dataset (not by its name)

    def __init__(self):
        import unicodedata

        codes = ["1F436", "1F680", "1F600", "1F34E", "26BD", "00A9"]
        super().__init__("openmoji", codes, [[unicodedata.name(chr(int(c, 16)))] for c in codes])


def test_emoji_density_levels_grow_in_words_and_carry_the_annotations():
    ds = _Emoji()
    levels = captions.emoji_levels(ds)
    assert list(levels) == ["name", "keywords", "sentence"]
    assert levels["name"] == [c[0] for c in ds.captions]
    for i in range(len(ds)):
        lengths = [captions.words(levels[level][i]) for level in levels]
        assert lengths == sorted(lengths), (ds.ids[i], [levels[lv][i] for lv in levels])
    means = [np.mean([captions.words(c) for c in levels[level]]) for level in levels]
    assert means[0] < means[1] < means[2]
    assert "pet" in levels["keywords"][0] and "dog" in levels["keywords"][0].split(", ")
    assert "animals & nature" in levels["sentence"][0]
    from prh.experiments.caption_density import density_levels

    sets = density_levels(ds, 5)
    assert sets[0][1] is ds and sets[2][1].name == "openmoji+density=sentence"


def test_caption_variants_and_levels_of_a_dataset_with_several_captions():
    ds = _Emoji()
    variants = captions.emoji_variants(ds, 5)
    assert all(len(v) == 5 and len(set(v)) == 5 for v in variants) and variants[0][0] == "DOG FACE"
    multi = PairedDataset("multi", ["a", "b"], [["one two three", "one"], ["x y", "x y z w", "x"]])
    levels = captions.dataset_levels(multi, 5)
    assert levels == {"caption-1": ["one", "x"], "caption-2": ["one two three", "x y"]}
    assert captions.dataset_variants(multi, 8) == [["one two three", "one"], ["x y", "x y z w"]]
    single = PairedDataset("single", ["a", "b"], [["one"], ["two", "three"]])
    with pytest.raises(InputError, match="single caption.*item 'a'"):
        captions.dataset_levels(single, 3)
    with pytest.raises(InputError, match="test-time averaging"):
        averaging.caption_sets(single, 3)


def test_views_keep_the_size_and_do_what_they_say():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 200, (20, 30, 3), dtype=np.uint8)
    arr[:4] = 255  # a white band: the "background"
    img = Image.fromarray(arr)
    for view in averaging.VIEWS:
        assert averaging.view_image(img, view).size == img.size
    flipped = np.asarray(averaging.view_image(img, "flip"))
    np.testing.assert_array_equal(flipped, arr[:, ::-1])
    cream = np.asarray(averaging.view_image(img, "background-cream"))
    assert (cream[:4] == [240, 228, 200]).all() and (cream[4:] == arr[4:]).all()
    with pytest.raises(InputError, match="unknown view"):
        averaging.view_image(img, "zoom")


def test_cumulative_means_and_curve_points():
    sets = [[torch.full((2, 3), float(j))] for j in range(4)]
    means = averaging.cumulative_means(sets)
    assert [float(m[0][0, 0]) for m in means] == [0.0, 0.5, 1.0, 1.5]
    pts = averaging.curve_points(3, 2)
    assert pts.count(("views", 1, 1)) == 1 and ("both", 2, 2) in pts and len(pts) == 3 + 2 + 2


# -- the saturating fit -----------------------------------------------------------------------------------------
def test_saturating_fit_recovers_planted_parameters():
    n = np.arange(1, 9)
    fit = fit_saturating(n, saturating(n, 0.4, 0.16, 0.8))
    assert fit.s_inf == pytest.approx(0.4, abs=1e-6) and fit.s_1 == pytest.approx(0.16, abs=1e-6)
    assert fit.exponent == pytest.approx(0.8, abs=1e-5) and fit.r2 == pytest.approx(1.0, abs=1e-9)
    noisy = saturating(n, 0.4, 0.16, 0.8) + np.random.default_rng(0).normal(0, 0.005, n.size)
    rough = fit_saturating(n, noisy)
    assert abs(rough.s_inf - 0.4) < 0.05 and rough.r2 > 0.99
    assert np.isnan(fit_saturating([1, 2, 3], [0.1, 0.2, 0.25]).s_inf)  # 3 points: not fitted
    with pytest.raises(InputError, match=">= 1"):
        fit_saturating([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])


# -- report sections --------------------------------------------------------------------------------------------
def test_sections_are_escaped_kept_inside_the_folder_and_picked_up_by_the_report(tmp_path):
    from prh.report import build_report
    from prh.report.sections import Figure, Section, Table, read_sections, write_section

    section = Section(
        "demo-part",
        "A <title>",
        findings=["x < y"],
        figures=[Figure("experiments/x/fig.png", "cap")],
        tables=[Table("t", pd.DataFrame({"a": ["<b>"]}))],
    )
    write_section(tmp_path, section)
    (tmp_path / "sections" / "99-foreign.html").write_text("<script>alert(1)</script>")
    fragments = read_sections(tmp_path)
    assert [f.stem for f in fragments] == ["50-demo-part"]
    assert "A &lt;title&gt;" in fragments[0].html and "&lt;b&gt;" in fragments[0].html
    page = build_report(tmp_path).read_text()  # no alignment run: a page of the sections
    assert "A &lt;title&gt;" in page and "alert" not in page
    for bad in ("../up.png", "/abs.png", "https://x/y.png"):
        with pytest.raises(InputError, match="relative"):
            write_section(tmp_path, Section("bad", "t", figures=[Figure(bad, "c")]))
    with pytest.raises(InputError, match="section name"):
        write_section(tmp_path, Section("Bad Name", "t"))


# -- end to end on tiny models ----------------------------------------------------------------------------------
N = 30
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128),
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny models + a models TOML, a folder dataset with 3 captions per item, images for co-occurrence."""
    root = tmp_path_factory.mktemp("experiments")
    tok = tiny_tokenizer()
    tiny_causal_lm("gpt2").save_pretrained(root / "lm")
    tok.save_pretrained(root / "lm")
    tiny_text_encoder().save_pretrained(root / "enc")
    tok.save_pretrained(root / "enc")
    tiny_vit(seed=0).save_pretrained(root / "vit")
    models = root / "models.toml"
    text = ""
    for name, folder, adapter, modality in (
        ("exp-lm", "lm", "hf-causal-lm", "language"),
        ("exp-enc", "enc", "hf-text-encoder", "language"),
        ("exp-vit", "vit", "hf-vision", "vision"),
    ):
        text += f'[[model]]\nname = "{name}"\nsource = "{root / folder}"\nadapter = "{adapter}"\nmodality = "{modality}"\n'
        text += 'pool = "cls"\n' if modality == "vision" else ""
    text += '[sets]\nexptiny = ["exp-lm", "exp-enc", "exp-vit"]\n'
    models.write_text(text)
    from prh.models import load_user_config

    load_user_config(models)
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "apple", "dog", "cat", "rocket", "face", "tree", "house", "sun", "moon"]
    with open(data / "metadata.jsonl", "w") as fh:
        for i in range(N):
            blocks = rng.integers(0, len(PALETTE), (4, 4))
            img = np.asarray(PALETTE, dtype=np.uint8)[blocks].repeat(6, 0).repeat(6, 1)
            Image.fromarray(img).save(data / f"img{i}.png")
            caps = [" ".join(rng.choice(words, size=s)) for s in (2, 5, 9)]
            fh.write(json.dumps({"file_name": f"img{i}.png", "captions": caps}) + "\n")
    vocab = root / "palette.csv"
    vocab.write_text(
        "name,hex\n"
        + "\n".join(
            f"{w} {i},#{r:02x}{g:02x}{b:02x}"
            for i, ((r, g, b), w) in enumerate(zip(PALETTE, itertools.cycle(words)))
        )
    )
    single = root / "single"
    single.mkdir()
    with open(single / "metadata.jsonl", "w") as fh:
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(single / f"s{i}.png")
            fh.write(json.dumps({"file_name": f"s{i}.png", "text": f"item {i}"}) + "\n")
    return {"root": root, "data": data, "models": models, "vocab": vocab, "single": single}


def _options(tiny, name, **kw):
    return RunOptions(
        models="exptiny", store=str(tiny["root"] / "store"), out=str(tiny["root"] / name), device="cpu",
        progress=False, **kw,
    )  # fmt: skip


def test_colors_end_to_end_on_tiny_models(tiny):
    config = {
        "vocabulary": str(tiny["vocab"]),
        "images": str(tiny["data"]),
        "min_pixels": 10,
        "k": 3,
        "permutations": 19,
    }
    result = run("colors", _options(tiny, "colors", dataset="none"), config)
    vs = result.summary["vs_cielab"]
    assert set(vs) == {"pixels (PMI)", "exp-lm", "exp-enc", "exp-vit"}
    assert result.summary["n_colors"] == 20
    for row in vs.values():
        assert 1 / 20 <= row["p_knn"] <= 1 and -1 <= row["spearman"] <= 1 and 0 <= row["mutual_knn"] <= 1
    table = pd.read_csv(result.folder / "comparisons.csv")
    assert len(table) == 4 + 6  # each kernel vs CIELAB, then every pair of the four
    assert (result.folder / "figures" / "colors_mds.png").stat().st_size > 0
    emb = pd.read_csv(result.folder / "embeddings.csv")
    assert set(emb["kernel"]) == {"CIELAB", "pixels (PMI)", "exp-lm", "exp-enc", "exp-vit"}
    section = (result.folder.parents[1] / "sections" / "20-colors.html").read_text()
    assert "experiments/colors/figures/colors_mds.png" in section
    again = run("colors", _options(tiny, "colors", dataset="none"), config)
    assert again.summary == result.summary  # resumed from the store: the same numbers


def test_colors_refuses_images_without_enough_statistics(tiny):
    config = {"vocabulary": "xkcd", "images": str(tiny["single"]), "min_pixels": 50}
    with pytest.raises(InputError, match="co-occurrence statistics for only"):
        run("colors", _options(tiny, "colors-few", dataset="none"), config)


def test_caption_density_end_to_end_through_the_command(tiny):
    out = tiny["root"] / "density"
    res = runner.invoke(
        app,
        [
            "experiment", "caption-density", "--models", "exptiny", "--models-file", str(tiny["models"]), "--dataset", str(tiny["data"]),
            "--store", str(tiny["root"] / "store"), "--out", str(out), "--device", "cpu", "--no-progress",
            "--k", "3", "--permutations", "19", "--bootstrap", "4",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "experiments" / "caption-density" / "results.csv")
    assert list(dict.fromkeys(table["level"])) == ["caption-1", "caption-2", "caption-3"]
    lengths = table.groupby("level_index")["mean_words"].first().to_numpy()
    np.testing.assert_allclose(lengths, [2, 5, 9])
    assert len(table) == 3 * 2  # levels x (2 language x 1 vision)
    assert table["p_value"].between(1 / 20, 1).all() and table["ci_low"].le(table["ci_high"]).all()
    assert (out / "report.html").is_file() and "Caption density" in (out / "report.html").read_text()
    single = runner.invoke(
        app,
        ["experiment", "caption-density", "--models", "exptiny", "--models-file", str(tiny["models"]), "--dataset", str(tiny["single"]),
         "--store", str(tiny["root"] / "store"), "--out", str(out), "--device", "cpu", "--no-progress", "--k", "2"],
    )  # fmt: skip
    assert isinstance(single.exception, InputError) and "single caption" in str(single.exception)


def test_test_time_averaging_end_to_end_on_tiny_models(tiny):
    options = _options(tiny, "averaging", dataset=str(tiny["data"]))
    result = run("test-time-averaging", options, {"views": 3, "captions": 3, "k": 3, "bootstrap": 4})
    curves = pd.read_csv(result.folder / "curves.csv")
    assert len(curves) == 2 * (3 + 3 + 3)
    one = curves[(curves["views"] == 1) & (curves["captions"] == 1)]
    assert one["score"].nunique() == 2  # the same (1, 1) point on every axis, per pair
    assert curves["control"].notna().sum() == 2 * 3
    fits = pd.read_csv(result.folder / "fits.csv")
    assert set(fits["axis"]) == {"views", "captions", "both"}
    assert len(result.summary["pairs"]) == 2
    with pytest.raises(InputError, match="k=15 must be below N/2=15"):  # refused before any extraction
        run("test-time-averaging", options, {"k": 15})


def test_the_full_report_of_an_alignment_run_includes_the_sections(tmp_path):
    from prh.align import TABLE_COLUMNS, Results
    from prh.report import build_report
    from prh.report.sections import Section, write_section

    row = dict.fromkeys(TABLE_COLUMNS, np.nan)
    row.update(
        model_x="lm", model_y="vm", modality_x="language", modality_y="vision", family_x="a", family_y="b",
        metric="mutual_knn", k=10, N=100, score=0.2, best_layer_x=1, best_layer_y=2, n_layers_x=3,
        n_layers_y=4, control="none",
    )  # fmt: skip
    results = Results(pd.DataFrame([row], columns=TABLE_COLUMNS), {}, {"N": 100, "k": 10})
    results.grids[Results.grid_key("mutual_knn", "none", "lm", "vm")] = np.full((3, 4), 0.1)
    results.save(tmp_path)
    write_section(tmp_path, Section("colors", "Colours: a section", findings=["found"]))
    page = build_report(tmp_path).read_text()
    assert "All model pairs" in page and "Colours: a section" in page
    assert page.index("All model pairs") < page.index("Colours: a section")
    assert "## Colours: a section" in (tmp_path / "report.md").read_text()
