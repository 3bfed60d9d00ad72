"""The chest X-rays shipped in the package: addressed by name everywhere ``--data`` is taken, checked on every open."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import runtime.bundled as bundled
from runtime.bundled import BUNDLED, PNEUMONIAMNIST, bundled_path
from runtime.datasets import binary_labels, load_dataset
from runtime.errors import DataError
from runtime.fileio import sha256_file

ROOT = Path(__file__).resolve().parents[1]


def test_pneumoniamnist_by_name_is_the_balanced_real_file():
    ds = load_dataset("pneumoniamnist")
    assert ds.bundled == "pneumoniamnist" and ds.path == PNEUMONIAMNIST.path
    assert {name: len(s) for name, s in ds.splits.items()} == {"train": 2428, "val": 270, "test": 468}
    for split in ds.splits.values():
        y = binary_labels(split, 1)
        assert 2 * int(y.sum()) == y.size  # balanced
        assert split.images.shape[1:] == (28, 28) and split.images.dtype == np.uint8
    assert sha256_file(ds.path) == PNEUMONIAMNIST.sha256


def test_the_file_and_its_attribution_ship_in_the_package():
    notice = (ROOT / "NOTICE").read_text(encoding="utf-8")
    readme = (PNEUMONIAMNIST.path.parent / "README.md").read_text(encoding="utf-8")
    for text in (notice, readme):
        assert PNEUMONIAMNIST.sha256 in text and "CC BY 4.0" in text and "MedMNIST v2" in text and "Kermany" in text
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"data/*.npz"' in pyproject and '"NOTICE"' in pyproject


def test_a_path_is_never_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="pneumoniamnist: no such file or directory.*bundled dataset name \\(pneumoniamnist\\)"):
        load_dataset(Path("pneumoniamnist"))
    with pytest.raises(DataError, match="pneumonia: no such file or directory"):
        load_dataset("pneumonia")  # no fuzzy matching


def test_a_damaged_install_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / PNEUMONIAMNIST.filename
    shutil.copy(PNEUMONIAMNIST.path, copy)
    with open(copy, "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 1]))
    monkeypatch.setattr(bundled, "DATA_DIR", tmp_path)
    with pytest.raises(DataError, match=f"{copy}: sha256 .* differs from the bundled dataset's f36c2b3e34de"):
        load_dataset("pneumoniamnist")
    with pytest.raises(DataError, match="nope: not a bundled dataset; expected one of pneumoniamnist"):
        bundled_path("nope")
    assert set(BUNDLED) == {"pneumoniamnist"}


def test_a_card_naming_bundled_data_finds_it_wherever_the_package_lives(tmp_path):
    from dataclasses import replace

    from export.source import ModelSource, open_training_data
    from train.card import DataFile, DataRecord, ModelCard

    elsewhere = "/elsewhere/on/another/machine.npz"
    card = ModelCard("saved_model", 75, 1, ("normal", "pneumonia"), (), {},
                     DataRecord(elsewhere, "pneumoniamnist", (28, 28), (DataFile(elsewhere, PNEUMONIAMNIST.sha256),)))
    source = ModelSource(tmp_path, card, tmp_path, None)  # type: ignore[arg-type]
    assert open_training_data(source, None).bundled == "pneumoniamnist"
    changed = replace(card, data=replace(card.data, files=(DataFile(elsewhere, "0" * 64),)))
    with pytest.raises(DataError, match="sha256 differs from the model card's 000000000000"):
        open_training_data(ModelSource(tmp_path, changed, tmp_path, None), None)  # type: ignore[arg-type]
