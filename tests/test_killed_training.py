"""A training run killed with SIGKILL leaves its --out as it was or complete, never half written; the rerun succeeds.

The run writes into a hidden staging sibling (``.OUT.tmp-*``) and renames it into place at the end
(``runtime.fileio.staged_output_dir``). Each case kills a real ``python -m train`` at a different
point, watched for in the staging directory, over a previous complete model. (The export's own
kill points are in ``test_export_e2e.py``.)
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, write_npz

from runtime.fileio import sha256_tree
from train.card import read_card

TINY = ["--image-size", "75", "--weights", "none", "--epochs", "1", "--fine-tune-epochs", "1"]  # about 20 s on 2 cores


def _train(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "train", "--data", str(data), "--out", str(out), *TINY, *extra], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stage_has(out: Path, name: str | None) -> bool:
    stages = list(out.parent.glob(f".{out.name}.tmp-*"))
    return bool(stages) if name is None else any((s / name).exists() for s in stages)


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    """Data and one complete model of it: what --out holds before each killed run."""
    root = tmp_path_factory.mktemp("killed")
    data = write_npz(root / "tiny.npz")
    proc = _train(data, root / "previous")
    assert proc.wait(timeout=600) == 0
    return data, root / "previous"


# (what to wait for in the staging directory, extra seconds after it): from the start of the run to the rename
POINTS = {"starting": (None, 0.0), "caching features": ("_feature_cache", 0.0), "fitting": ("_feature_cache", 3.0),
          "exporting the SavedModel": ("saved_model", 0.0), "writing the card": ("train_config.json", 0.0)}
# A full rerun (about 20 s) after these: the earliest leftover staging directory and the most complete one. The others
# leave staging directories between the two, which the rerun ignores the same way (it stages under a fresh name).
RERUN_AFTER = ("starting", "writing the card")


@pytest.mark.parametrize("point", list(POINTS))
def test_a_killed_training_leaves_the_previous_model_or_a_complete_one(previous, tmp_path, point):
    data, prev = previous
    out = tmp_path / "model"
    shutil.copytree(prev, out)
    before = sha256_tree(out)
    name, delay = POINTS[point]
    proc = _train(data, out, "--overwrite")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not _stage_has(out, name):
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if sha256_tree(out) != before:  # the run got to its rename: then the new model must be whole
        card = read_card(out)
        assert (out / card["saved_model"] / "saved_model.pb").is_file() and (out / "train_config.json").is_file()
    # nothing half-written under the real name; a hidden staging sibling may remain and is never read
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["model"]
    if point in RERUN_AFTER:
        rerun = _train(data, out, "--overwrite")
        assert rerun.wait(timeout=600) == 0
        assert read_card(out)["image_size"] == 75
