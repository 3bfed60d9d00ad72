"""Folder and CSV sources: layouts, classes by name, splits by patient, duplicates, the store, the split file."""

from __future__ import annotations

import collections
import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from dicom_files import cases as dicom_cases
from dicom_files import write as write_dicom_case
from PIL import Image

from benchmarks.xray_files import PATIENT_PATTERN, write_dicom16, write_tree
from runtime.datasets import load_dataset
from runtime.errors import BadFilesError, ConfigError, DataError
from runtime.file_sources import (
    SPLIT_FILE,
    FileSourceOptions,
    model_source_options,
    read_file_source,
    split_by_patient,
    split_file_options,
    trained_on,
    write_split_file,
)
from runtime.parity import file_to_training_pixels
from runtime.reader import read_image

SMALL = {"train": 12, "val": 4, "test": 6}  # images per class and split: enough for every check, fast to write


def options(**kw) -> FileSourceOptions:
    return FileSourceOptions(**{"size": 75, "positive_class": "PNEUMONIA", **kw})


@pytest.fixture(scope="module")
def kermany(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kermany") / "chest_xray"
    write_tree(root, px=96, per_split=SMALL)
    return root


@pytest.fixture(scope="module")
def unsplit(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("unsplit") / "xrays"
    write_tree(root, px=96, per_split={"train": 40, "val": 10, "test": 10}, layout="classes")
    return root


def test_kermany_layout_reads_the_given_splits_with_the_named_positive_class(kermany):
    data = load_dataset(kermany, options())
    assert data.from_files is not None and data.from_files.class_names == ("NORMAL", "PNEUMONIA")
    for name, n in SMALL.items():
        split = data.splits[name]
        assert split.images.shape == (2 * n, 75, 75) and split.images.dtype == np.uint8
        assert int(split.labels.sum()) == n  # PNEUMONIA -> 1, by name
    # the other class named positive flips every label: the choice is the user's, not sort order's
    flipped = load_dataset(kermany, options(positive_class="NORMAL"))
    assert flipped.from_files.class_names == ("PNEUMONIA", "NORMAL")
    np.testing.assert_array_equal(flipped.splits["test"].labels, 1 - data.splits["test"].labels)


def test_every_stored_image_is_the_runtime_transform_of_its_file(kermany):
    """PNG, JPEG and 16-bit DICOM alike: the store holds exactly what the device's reader and parity produce."""
    data = load_dataset(kermany, options())
    rows = [r for r in data.from_files.rows if r.split == "test"]
    test = data.splits["test"]
    suffixes = collections.Counter(Path(r.path).suffix for r in rows)
    assert set(suffixes) == {".png", ".jpeg", ".dcm"}
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(test.images[i], file_to_training_pixels(read_image(row.path), 75))


def test_sixteen_bit_files_are_scaled_from_their_full_range(tmp_path):
    image = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(image.astype(np.uint16) * 257).save(tmp_path / "a16.png")
    write_dicom16(tmp_path / "a.dcm", image)
    assert Image.open(tmp_path / "a16.png").mode.startswith("I")
    np.testing.assert_array_equal(read_image(tmp_path / "a16.png"), image)
    np.testing.assert_array_equal(read_image(tmp_path / "a.dcm"), image)
    odd = (np.arange(256, dtype=np.uint16) * 100).reshape(16, 16)  # 0..25500: round(v * 255 / 65535)
    Image.fromarray(odd).save(tmp_path / "b16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "b16.png"), np.rint(odd.astype(np.float64) * 255 / 65535).astype(np.uint8))


def test_a_source_without_splits_is_split_by_patient_and_stratified(unsplit):
    data = load_dataset(unsplit, options(patient_pattern=PATIENT_PATTERN, test_fraction=0.2, val_fraction=0.1))
    rows = data.from_files.rows
    where = collections.defaultdict(set)
    for row in rows:
        where[row.patient].add(row.split)
    assert all(len(splits) == 1 for splits in where.values())  # no patient in two splits
    assert any(sum(1 for r in rows if r.patient == p) > 1 for p in where)  # and patients do have several images
    per_class = collections.Counter((r.split, r.class_name) for r in rows)
    n = sum(per_class[("test", c)] + per_class[("val", c)] + per_class[("train", c)] for c in ("NORMAL",))
    # each class's share within the size of one patient (at most 3 images) of its target
    for cls in ("NORMAL", "PNEUMONIA"):
        assert abs(per_class[("test", cls)] - 0.2 * n) <= 3 and abs(per_class[("val", cls)] - 0.1 * n) <= 3
    again = load_dataset(unsplit, options(patient_pattern=PATIENT_PATTERN))
    assert [r.split for r in again.from_files.rows] == [r.split for r in rows]  # seeded
    other = load_dataset(unsplit, options(patient_pattern=PATIENT_PATTERN, seed=1))
    assert [r.split for r in other.from_files.rows] != [r.split for r in rows]


def test_split_by_patient_keeps_every_patient_whole():
    labels = np.array([0] * 30 + [1] * 30)
    patients = [f"p{i // 3}" for i in range(60)]  # 20 patients of 3 images, one class each
    splits = split_by_patient(labels, patients, {"test": 0.2, "val": 0.1}, seed=0)
    for p in set(patients):
        assert len({s for s, q in zip(splits, patients) if q == p}) == 1
    assert collections.Counter(zip(splits, labels.tolist())) == {("test", 0): 6, ("test", 1): 6, ("val", 0): 3,
                                                                  ("val", 1): 3, ("train", 0): 21, ("train", 1): 21}


def test_no_patient_ids_and_no_splits_is_refused_before_reading_pixels(unsplit):
    with pytest.raises(ConfigError, match="--patient-pattern"):
        load_dataset(unsplit, options())


def test_the_positive_class_is_named_never_guessed(kermany):
    with pytest.raises(ConfigError, match="--positive-class.*NORMAL, PNEUMONIA"):
        load_dataset(kermany, options(positive_class=None))
    with pytest.raises(ConfigError, match="'pneumonia': not a class"):
        load_dataset(kermany, options(positive_class="pneumonia"))


def test_a_patient_in_two_given_splits_is_refused_and_a_duplicate_is_reported(kermany, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(kermany, root)
    first = min((root / "train" / "PNEUMONIA").iterdir())
    shutil.copy(first, root / "test" / "PNEUMONIA" / ("copy_" + first.name))  # same content, another name
    data = load_dataset(root, options())
    assert len(data.from_files.duplicates) == 1
    assert "copy_" in data.from_files.duplicates[0] and "(train)" in data.from_files.duplicates[0]
    shutil.copy(first, root / "test" / "PNEUMONIA" / first.name)  # the same patient id, now in test too
    with pytest.raises(BadFilesError, match="1 bad") as err:
        load_dataset(root, options(patient_pattern=PATIENT_PATTERN))
    patient = first.name.split("_")[0]  # "person10": what PATIENT_PATTERN captures
    in_train = sum(1 for f in (root / "train" / "PNEUMONIA").iterdir() if f.name.startswith(patient + "_"))
    assert err.value.problems == [f"patient '{patient}' is in 2 splits (test: 2 files, train: {in_train} files); expected one"]


def _bad_tree(kermany: Path, root: Path) -> dict[str, str]:
    """A copy of the small tree with one of each kind of bad entry; returns name -> a fragment of its message."""
    shutil.copytree(kermany, root)
    cls = root / "train" / "NORMAL"
    (cls / "corrupt.png").write_bytes(os.urandom(2000))
    good = min(cls.glob("*.jpeg")).read_bytes()
    (cls / "truncated.jpeg").write_bytes(good[: len(good) // 2])
    (cls / "empty.png").write_bytes(b"")
    (cls / "notes.txt").write_text("not an image")
    (cls / "loop.png").symlink_to(cls / "loop.png")
    (cls / "sub").symlink_to(cls)
    (root / "train" / "COVID").mkdir()
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(root / "train" / "COVID" / "x.png")
    (root / "val" / "EMPTY").mkdir()
    return {"corrupt.png": "not a readable image", "empty.png": "file is empty", "notes.txt": "not an image or DICOM",
            "loop.png": "leads to no file", "sub": "link to a folder", "COVID": "3 classes", "EMPTY": "holds no images"}


def test_every_bad_entry_is_listed_in_one_pass(kermany, tmp_path):
    expected = _bad_tree(kermany, tmp_path / "bad")
    with pytest.raises(BadFilesError) as err:
        load_dataset(tmp_path / "bad", options())
    text = "\n".join(err.value.problems)
    for name, fragment in expected.items():
        assert any(name in p and fragment in p for p in err.value.problems), (name, text)


def test_unreadable_files_are_found_when_decoding_and_skipped_only_on_request(kermany, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(kermany, root)
    cls = root / "train" / "NORMAL"
    good = min(cls.glob("*.jpeg")).read_bytes()
    (cls / "person999_normal_0.jpeg").write_bytes(good[: len(good) // 3])  # a header, then nothing: fails on decode
    (cls / "person998_normal_0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    rgb = next(c for c in dicom_cases(np.arange(64, dtype=np.uint8).reshape(8, 8)) if "photometric" in c.refused)
    write_dicom_case(cls / "person997_normal_0.dcm", rgb)  # a DICOM the runtime refuses (colour, not a radiograph)
    with pytest.raises(BadFilesError, match="3 bad files.*--skip-unreadable") as err:
        load_dataset(root, options())
    assert sorted(Path(p.split(":")[0]).name for p in err.value.problems) == [
        "person997_normal_0.dcm", "person998_normal_0.png", "person999_normal_0.jpeg"]
    assert any(rgb.refused in p for p in err.value.problems)
    data = load_dataset(root, options(skip_unreadable=True))
    assert len(data.from_files.unreadable) == 3
    assert len(data.splits["train"]) == 2 * SMALL["train"]


def test_a_csv_manifest_with_its_own_column_names(kermany, tmp_path):
    """An RSNA-style manifest: patientId and Target columns, paths relative to the CSV's folder."""
    manifest = tmp_path / "labels.csv"
    files = sorted(kermany.rglob("*.dcm"))
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patientId", "file", "Target"])
        for i, f in enumerate(files):
            writer.writerow([f"pid{i // 2}", os.path.relpath(f, tmp_path), "1" if "PNEUMONIA" in str(f) else "0"])
    opts = options(positive_class="1", path_column="file", label_column="Target", patient_column="patientId",
                   test_fraction=0.25, val_fraction=0.25)
    data = load_dataset(manifest, opts)
    assert data.from_files.kind == "csv" and data.from_files.class_names == ("0", "1")
    assert sum(len(s) for s in data.splits.values()) == len(files)
    with open(manifest, "a", newline="") as handle:
        csv.writer(handle).writerows([["pidX", "missing.dcm", "1"], ["pidY", os.path.relpath(files[0], tmp_path), "2"]])
    with pytest.raises(BadFilesError) as err:
        load_dataset(manifest, opts)
    assert any("missing.dcm: no such file" in p for p in err.value.problems)
    assert any("3 classes" in p for p in err.value.problems)
    with pytest.raises(DataError, match="no 'path' column"):
        load_dataset(manifest, options())


def test_the_store_is_built_once_and_keyed_by_content(kermany, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(kermany, root)
    cache = tmp_path / "cache"
    first = read_file_source(root, options(cache_root=cache))[1]
    second = read_file_source(root, options(cache_root=cache))[1]
    assert first.decode_seconds > 0 and second.decode_seconds == 0.0 and first.store == second.store
    moved = tmp_path / "moved"
    shutil.move(root, moved)  # the same files elsewhere: the same store
    assert read_file_source(moved, options(cache_root=cache))[1].store == first.store
    victim = min((moved / "test" / "NORMAL").glob("*.png"))
    Image.fromarray(np.full((96, 96), 7, np.uint8)).save(victim)  # one changed file: another store
    assert read_file_source(moved, options(cache_root=cache))[1].store != first.store
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []  # no temporary left behind


def test_the_split_file_gives_back_the_same_images_and_refuses_a_changed_file(kermany, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(kermany, root)
    data = load_dataset(root, options())
    write_split_file(tmp_path / SPLIT_FILE, data.from_files.rows)
    again = load_dataset(tmp_path / SPLIT_FILE, split_file_options(model_source_options(("NORMAL", "PNEUMONIA"), (75, 75), 75)))
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(np.asarray(again.splits[name].images), np.asarray(data.splits[name].images))
        np.testing.assert_array_equal(again.splits[name].labels, data.splits[name].labels)
    assert len(trained_on(data.from_files.rows, tmp_path / SPLIT_FILE)) == 2 * SMALL["train"]
    victim = Path(next(r.path for r in data.from_files.rows if r.split == "test"))
    Image.fromarray(np.full((96, 96), 7, np.uint8)).save(victim)
    with pytest.raises(BadFilesError) as err:
        load_dataset(tmp_path / SPLIT_FILE, split_file_options(model_source_options(("NORMAL", "PNEUMONIA"), (75, 75), 75)))
    assert err.value.problems[0].startswith(f"{victim}: sha256") and "changed since the model was trained" in err.value.problems[0]


def test_array_only_commands_say_so_for_a_folder_of_files(kermany):
    with pytest.raises(ConfigError, match="folder or CSV of image files"):
        load_dataset(kermany)
