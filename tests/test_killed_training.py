"""A training run killed with SIGKILL leaves its --out as it was or complete, never half written; the rerun succeeds.

The run writes into a hidden staging sibling (``.OUT.tmp-*``) and renames it into place at the end
(``runtime.fileio.staged_output_dir``). Each case kills a real ``python -m train`` at a different
point over a previous complete model. A point counts as reached when its proof shows up, a log line
the run prints or a file in the staging directory, and each case checks that the run was still
going when it was killed, that SIGKILL is what ended it, and (except at the last point, which lands
just before or just after the rename) that it had not yet got to the next point. (The export's own
kill points are in ``test_export_e2e.py``.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, write_npz
from kill_points import Child

from runtime.fileio import sha256_tree
from train.card import ModelCard

TINY = ["--image-size", "75", "--weights", "none", "--epochs", "1", "--fine-tune-epochs", "1"]  # about 20 s on 2 cores


def _argv(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train", "--data", str(data), "--out", str(out), *TINY, *extra]


def _train(data: Path, out: Path, *extra: str) -> None:
    proc = subprocess.run(_argv(data, out, *extra), cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _stage_has(out: Path, name: str | None) -> bool:
    stages = list(out.parent.glob(f".{out.name}.tmp-*"))
    return bool(stages) if name is None else any((s / name).exists() for s in stages)


Proof = Callable[[str, Path], bool]  # (the run's log so far, its --out): has the run got there?


def _staged(name: str | None) -> Proof:
    return lambda log, out: _stage_has(out, name)


def _logged(fragment: str) -> Proof:
    return lambda log, out: fragment in log


def _either(a: Proof, b: Proof) -> Proof:
    return lambda log, out: a(log, out) or b(log, out)


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    """Data and one complete model of it: what --out holds before each killed run."""
    root = tmp_path_factory.mktemp("killed")
    data = write_npz(root / "tiny.npz")
    _train(data, root / "previous")
    return data, root / "previous"


# In the order the run gets there: what proves it reached the point, and what would prove it had moved past it.
POINTS: dict[str, tuple[Proof, Proof | None]] = {
    "starting": (_staged(None), _logged(" features (")),  # the staging directory exists; the network is being built
    "caching features": (_logged(" features ("), _logged("head: up to")),  # train.fit.cache_features' progress line
    "fitting": (_logged("head: up to"), _staged("saved_model")),  # train.loop.fit_stage, before its first epoch
    "exporting the SavedModel": (_staged("saved_model"), _staged("train_config.json")),
    # The staged train_config.json lives a few milliseconds before the card is written and the directory renamed, too
    # short for polling to catch every time; the summary train.pipeline logs right after the rename is the other proof
    # (measured: the process then takes about 3 s to exit). Killed on either, the run may have renamed: checked below.
    "writing the card": (_either(_staged("train_config.json"), _logged("val: AUC")), None),
}
# A full rerun (about 20 s) after these: the earliest leftover staging directory and the most complete one. The others
# leave staging directories between the two, which the rerun ignores the same way (it stages under a fresh name).
RERUN_AFTER = ("starting", "writing the card")


@pytest.mark.parametrize("point", list(POINTS))
def test_a_killed_training_leaves_the_previous_model_or_a_complete_one(previous, tmp_path, point):
    data, prev = previous
    out = tmp_path / "run" / "model"
    shutil.copytree(prev, out)
    before = sha256_tree(out)
    reached, past = POINTS[point]
    child = Child(_argv(data, out, "--overwrite"), tmp_path / "train.log", ROOT)
    child.wait_for(point, lambda log: reached(log, out))
    child.kill()
    if past is not None:
        assert not past(child.text(), out), f"killed after the run had moved past {point!r}:\n{child.tail()}"
    if sha256_tree(out) != before:  # the run got to its rename: then the new model must be whole
        assert point == "writing the card", f"killed at {point!r}, yet --out changed"
        card = ModelCard.load(out)
        assert (out / card.saved_model / "saved_model.pb").is_file() and (out / "train_config.json").is_file()
    # nothing half-written under the real name; a hidden staging sibling may remain and is never read
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.startswith(".")) == ["model"]
    if point in RERUN_AFTER:
        _train(data, out, "--overwrite")
        assert ModelCard.load(out).image_size == 75
