"""prh.atomic: a failed write leaves the old file and no temporary file behind."""

from __future__ import annotations

import pytest

from prh.atomic import atomic_write, atomic_write_bytes, atomic_write_text


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "results.csv"
    atomic_write_text(target, "old\n")

    def half_then_crash(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_writes_replace_the_target_and_return_its_path(tmp_path):
    target = tmp_path / "blob.bin"
    assert atomic_write_bytes(target, b"\x00\x01") == target
    assert atomic_write_bytes(target, b"\x02") == target
    assert target.read_bytes() == b"\x02" and len(list(tmp_path.iterdir())) == 1
