"""Bad input to ``python -m train``: one line naming the culprit, exit 2, nothing written to --out."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, make_arrays, write_npy_dir, write_npz
from train.__main__ import main


def _run(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if not line[:2].isdigit()]  # drop timestamped log lines


def _bad_case(tmp_path, case):
    """Return (argv additions, expected message fragment) for one kind of bad input."""
    good = write_npz(tmp_path / "good.npz")
    x, y = make_arrays()
    if case == "missing":
        return ["--data", str(tmp_path / "nope.npz")], "nope.npz: no such file"
    if case == "pickled_npy":
        d = write_npy_dir(tmp_path / "arr")
        np.save(d / "Xtrain.npy", np.array([object()] * 24, dtype=object), allow_pickle=True)
        return ["--data", str(d)], "Xtrain.npy: not a readable numeric .npy array (it holds Python objects"
    if case == "lengths":
        d = write_npy_dir(tmp_path / "arr")
        np.save(d / "Ytrain.npy", y[:-3])
        return ["--data", str(d)], "24 images but 21 labels"
    if case == "non_binary":
        np.savez(tmp_path / "d.npz", train_images=x, train_labels=np.arange(24) % 3)
        return ["--data", str(tmp_path / "d.npz")], "expected a binary task"
    if case == "single_class":
        np.savez(tmp_path / "d.npz", train_images=x, train_labels=np.ones(24, int))
        return ["--data", str(tmp_path / "d.npz")], "only one class present"
    if case in ("one_positive_in_val", "one_negative_in_test"):
        # both classes present, but the card's DeLong interval needs two of each: refused before training, not after
        split, rare = ("val", 1) if case == "one_positive_in_val" else ("test", 0)
        lopsided = np.full_like(y, 1 - rare)
        lopsided[0] = rare
        arrays = {f"{name}_{kind}": v for name in ("train", "val", "test") for kind, v in (("images", x), ("labels", y))}
        np.savez(tmp_path / "d.npz", **{**arrays, f"{split}_labels": lopsided})
        counts = "1 positive and 23 negative" if rare == 1 else "23 positive and 1 negative"
        return ["--data", str(tmp_path / "d.npz")], f"d.npz:{split}: the {split} split has {counts} images; expected at least 2"
    if case == "small_no_resize":
        return ["--data", str(good), "--no-resize"], "under InceptionV3's minimum of 75"
    if case == "nan":
        xf = x.astype(np.float32) / 255
        xf[3, 0, 0] = np.nan
        np.savez(tmp_path / "d.npz", train_images=xf, train_labels=y)
        return ["--data", str(tmp_path / "d.npz"), "--pixel-range", "0,1"], "image 3 contains NaN or inf"
    if case == "inf":
        xf = x.astype(np.float32) / 255
        xf[5, 1, 1] = np.inf
        np.savez(tmp_path / "d.npz", train_images=xf, train_labels=y)
        return ["--data", str(tmp_path / "d.npz"), "--pixel-range", "0,1"], "image 5 contains NaN or inf"
    if case == "empty":
        np.savez(tmp_path / "d.npz", train_images=x[:0], train_labels=y[:0])
        return ["--data", str(tmp_path / "d.npz")], "no images (empty array)"
    if case == "float_without_range":
        np.savez(tmp_path / "d.npz", train_images=x.astype(np.float32), train_labels=y)
        return ["--data", str(tmp_path / "d.npz")], "declare their value range with --pixel-range"
    if case == "unreadable":
        p = tmp_path / "d.npz"
        p.write_bytes(b"PK\x03\x04 not really a zip")
        return ["--data", str(p)], "not a readable .npz archive"
    if case == "image_size":
        return ["--data", str(good), "--image-size", "60"], "--image-size 60: expected an integer >= 75"
    if case == "conflict":
        return ["--data", str(good), "--no-resize", "--image-size", "80"], "--no-resize with --image-size 80"
    if case == "weights_file_missing":
        return ["--data", str(good), "--weights", str(tmp_path / "w.h5")], "w.h5: weights file not found"
    if case == "positive_label":
        return ["--data", str(good), "--positive-label", "4"], "positive label 4 not among the labels [0, 1]"
    if case == "out_under_a_file":
        (tmp_path / "afile").write_text("x")
        return ["--data", str(good), "--out", str(tmp_path / "afile" / "model")], "afile is a file, not a directory"
    if case == "split_sizes_differ":
        x80, y80 = make_arrays(size=80)
        x90, _ = make_arrays(size=90)
        np.savez(tmp_path / "d.npz", train_images=x80, train_labels=y80, test_images=x90, test_labels=y80)
        return ["--data", str(tmp_path / "d.npz"), "--no-resize"], "are 90x90 but the training images are 80x80"
    if case == "subclass_length":
        np.save(tmp_path / "sub.npy", np.zeros(5, int))
        return ["--data", str(good), "--subclass-labels", str(tmp_path / "sub.npy")], "sub.npy: subclass labels have shape (5,)"
    if case == "subclass_pickled":
        np.save(tmp_path / "sub.npy", np.array([object()] * 24, dtype=object), allow_pickle=True)
        return ["--data", str(good), "--subclass-labels", str(tmp_path / "sub.npy")], "sub.npy: not a readable numeric .npy array (it holds Python objects"
    raise AssertionError(case)


CASES = ["missing", "pickled_npy", "lengths", "non_binary", "single_class", "one_positive_in_val", "one_negative_in_test",
         "small_no_resize", "nan", "inf", "empty",
         "float_without_range", "unreadable", "image_size", "conflict", "weights_file_missing", "positive_label", "out_under_a_file",
         "split_sizes_differ", "subclass_length", "subclass_pickled"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case):
    argv, fragment = _bad_case(tmp_path, case)
    out = tmp_path / "out"
    if "--out" not in argv:
        argv += ["--out", str(out)]
    if "--image-size" not in argv and "--no-resize" not in argv:
        argv += ["--image-size", "75"]
    code, lines = _run(capsys, argv)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_existing_non_empty_out_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, lines = _run(capsys, ["--data", str(write_npz(tmp_path / "d.npz")), "--out", str(out), "--image-size", "75"])
    assert code == 2 and len(lines) == 1 and "exists and is not empty; pass --overwrite" in lines[0]
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_help_explains_the_options():
    res = subprocess.run([sys.executable, "-m", "train", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for flag in ("--data", "--out", "--image-size", "--weights", "--epochs", "--seed", "--positive-label", "--fine-tune", "--pixel-range"):
        assert flag in res.stdout
    assert "python -m train --data" in res.stdout  # a real example


@pytest.mark.parametrize(("module", "shown"), [("train", "(default: 20)"), ("export.tflite", "(default: 200)"),
                                               ("export.onnx", "(default: 200)")])
def test_help_shows_each_default_once_and_never_none(module, shown):
    from export.cli import build_parser
    from export.config import OnnxExportConfig, TFLiteExportConfig

    if module == "train":
        from train.__main__ import build_parser as train_parser

        parser = train_parser()
    else:
        parser = build_parser({"export.tflite": TFLiteExportConfig, "export.onnx": OnnxExportConfig}[module])
    assert shown in " ".join(parser.format_help().split())  # a plain default is still shown
    formatter = parser._get_formatter()
    for action in parser._actions:
        text = formatter._get_help_string(action) or ""
        assert text.replace("%(default)s", "").count("default") <= 1, f"python -m {module} --help, {action.option_strings}: {text!r}"
        for contradiction in ("(default: None)", "(default: True)", "(default: False)"):
            assert contradiction not in text, f"python -m {module} --help, {action.option_strings}: {text!r}"


def test_cli_process_prints_one_line_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "train", "--data", str(tmp_path / "x.npz"), "--out", str(tmp_path / "o")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: {tmp_path / 'x.npz'}: no such file or directory; expected a .npz file, a directory with Xtrain.npy and Ytrain.npy, "
                                                 "a folder of image files, a .csv manifest, or a bundled dataset name (pneumoniamnist)"]
