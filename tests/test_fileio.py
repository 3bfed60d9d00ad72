import os

import pytest

from runtime.errors import OutputError
from runtime.fileio import atomic_write_bytes, check_output_dir, sha256_file, sha256_tree, staged_output_dir


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def boom(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"partial")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_staged_dir_publishes_only_on_success(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("previous")
    with pytest.raises(RuntimeError):
        with staged_output_dir(out, overwrite=True) as stage:
            (stage / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with staged_output_dir(out, overwrite=True) as stage:
        (stage / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_non_empty_output_needs_overwrite(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(OutputError, match="exists and is not empty; pass --overwrite"):
        check_output_dir(out, overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not a directory"):
        check_output_dir(tmp_path / "file", overwrite=True)


def test_tree_checksum_sees_content_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"1")
    first = sha256_tree(tmp_path / "a")
    (tmp_path / "a" / "f").write_bytes(b"2")
    assert sha256_tree(tmp_path / "a") != first
    assert len(sha256_file(tmp_path / "a" / "f")) == 64
