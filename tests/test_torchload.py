"""A file that needs full unpickling is refused by name (what it references), with the installed torch; any other
unreadable file is called unreadable; torch's advice to unpickle fully is never passed on. Nothing is ever loaded
unsafely here: the malicious files are only written (pickle.dump / torch.save of an object whose __reduce__ names
os.system) and handed to the safe loader."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch

from prh._torchload import safe_torch_load, unsafe_globals
from prh.errors import InputError
from prh.features.reference import read_reference_file


class _System:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _torch_saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _files(tmp_path):
    marker = tmp_path / "code-ran"
    good = _torch_saved({"feats": torch.randn(4, 2, 3)})
    legacy = io.BytesIO()
    torch.save({"feats": torch.randn(4, 3)}, legacy, _use_new_zipfile_serialization=False)
    cases = {
        "torch-save-os-system": _torch_saved({"feats": torch.zeros(4, 3), "x": _System(marker)}),
        "pickle-os-system": pickle.dumps({"x": _System(marker)}, protocol=2),
        "pickle4-os-system": pickle.dumps({"x": _System(marker)}, protocol=4),
        "numpy-array": _torch_saved({"feats": np.zeros(3)}),
        "zeros": b"\0" * 4096,
        "empty": b"",
        "random": np.random.default_rng(0).bytes(3000),
        "truncated": good[:200],
        "good": good,
        "legacy-good": legacy.getvalue(),
    }
    paths = {}
    for name, data in cases.items():
        paths[name] = tmp_path / f"{name}.pt"
        paths[name].write_bytes(data)
    return paths, marker


REFUSED = {
    "torch-save-os-system": "os.system",
    "pickle-os-system": "os.system",
    "pickle4-os-system": "os.system",
    "numpy-array": "numpy",
}
UNREADABLE = ["zeros", "empty", "random", "truncated"]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_file_that_needs_full_unpickling_is_refused_naming_what_it_references(tmp_path, name):
    paths, marker = _files(tmp_path)
    system = f"{os.system.__module__}.system"  # posix.system on POSIX: what the pickle names
    with pytest.raises(InputError) as err:
        safe_torch_load(paths[name])
    text = str(err.value)
    assert "refused: this file needs full unpickling, which can run code (it references " in text
    assert (system if REFUSED[name] == "os.system" else REFUSED[name]) in text
    assert "weights_only" not in text and "truncated" not in text and "\n" not in text
    assert not marker.exists()
    if name != "numpy-array":
        assert system in unsafe_globals(paths[name])


@pytest.mark.parametrize("name", UNREADABLE)
def test_an_unreadable_file_is_called_unreadable_and_torch_advice_is_dropped(tmp_path, name):
    paths, _ = _files(tmp_path)
    with pytest.raises(InputError) as err:
        safe_torch_load(paths[name])
    text = str(err.value)
    assert "is not a readable torch.save file" in text and str(paths[name]) in text
    assert "weights_only" not in text and "refused" not in text and "\n" not in text


def test_plain_files_load_and_a_folder_is_named(tmp_path):
    paths, _ = _files(tmp_path)
    assert safe_torch_load(paths["good"])["feats"].shape == (4, 2, 3)
    assert safe_torch_load(paths["legacy-good"])["feats"].shape == (4, 3)
    assert unsafe_globals(paths["good"]) == []
    with pytest.raises(InputError, match="is a folder, not a file"):
        safe_torch_load(tmp_path)


@pytest.mark.parametrize("name", ["torch-save-os-system", "zeros"])
def test_the_reference_reader_says_the_same(tmp_path, name):
    paths, marker = _files(tmp_path)
    with pytest.raises(InputError) as err:
        read_reference_file(paths[name])
    assert ("refused: this file needs full unpickling" in str(err.value)) == (name in REFUSED)
    assert "weights_only" not in str(err.value)
    assert not marker.exists()
