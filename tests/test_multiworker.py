"""``--distribute multiworker``: two worker processes on localhost (CPU) train what one process trains.

Each worker is a real ``python -m train`` with its own ``TF_CONFIG``; TensorFlow's collectives run over gRPC on
loopback, as they would between machines. The tolerance: each step's gradient is the sum of the two workers' halves
instead of one sum over the batch, so the weights differ only by the order of floating-point sums (measured: 7.5e-9
after 2 head and 2 fine-tuning epochs); 1e-6 is over 100 times that and far below any change training makes
(a single Adam step moves weights by about the learning rate, 3e-4).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, write_npz
from kill_points import Child, logged

from runtime.errors import ConfigError
from train.card import ModelCard
from train.distribute import role_from_tf_config

TINY = ["--image-size", "75", "--weights", "none", "--epochs", "2", "--fine-tune-epochs", "2", "--seed", "4"]
LOST_PEER_WITHIN_S = 60  # TensorFlow notices a dead peer by a reset connection or missed heartbeats (measured: 1.4-7.4 s)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _tf_configs(n: int) -> list[str]:
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(n)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(n)]


def _argv(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train", "--data", str(data), "--out", str(out), *TINY, *extra]


def _workers(data: Path, out: Path, logs: Path, *extra: str) -> list[Child]:
    logs.mkdir(parents=True, exist_ok=True)
    return [Child(_argv(data, out, "--distribute", "multiworker", *extra), logs / f"worker{i}.log", ROOT,
                  env={"TF_CONFIG": config, "TF_CPP_MIN_LOG_LEVEL": "2"})
            for i, config in enumerate(_tf_configs(2))]


def _variables(model_dir: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return {v.name: v.numpy() for v in tf.saved_model.load(str(model_dir / "saved_model")).variables}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_npz(tmp_path_factory.mktemp("multiworker") / "tiny.npz")


def test_two_workers_train_the_model_one_process_trains(data, tmp_path):
    one = tmp_path / "one"
    proc = subprocess.run(_argv(data, one), cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = tmp_path / "two"
    workers = _workers(data, two, tmp_path / "logs")
    for w in workers:
        assert w.proc.wait(timeout=600) == 0, w.tail()
    assert workers[0].text().strip().endswith(str(two))  # the chief prints the model; the other worker prints nothing
    assert "waiting for the chief to write" in workers[1].text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "one", "two"]  # nothing else, no worker leftovers

    a, b = _variables(one), _variables(two)
    assert sorted(a) == sorted(b)
    worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    moved = max(float(np.max(np.abs(a[k]))) for k in a if "logit" in k)
    assert worst <= 1e-6, worst
    assert moved > 1e-3  # the comparison is of trained weights, not of two untouched initializations
    card_one, card_two = ModelCard.load(one), ModelCard.load(two)
    assert card_two.metrics["test"].auc == pytest.approx(card_one.metrics["test"].auc, abs=1e-6)
    for p, q in zip(card_one.operating_points, card_two.operating_points, strict=True):
        assert q.threshold == pytest.approx(p.threshold, abs=1e-6)
    plan_one, plan_two = (json.loads((d / "model_card.json").read_text())["architecture"] for d in (one, two))
    assert (plan_one["replicas"], plan_two["replicas"]) == (1, 2)


def test_a_killed_worker_stops_the_chief_with_one_line_and_no_model(data, tmp_path):
    out = tmp_path / "model"
    # Long enough that the worker is killed mid-training: 200 fine-tuning epochs that never stop early.
    workers = _workers(data, out, tmp_path / "logs", "--fine-tune-epochs", "200", "--early-stopping-patience", "200")
    chief, worker = workers
    chief.wait_for("fine-tuning", logged("mixed10: epoch 3/200"))
    worker.kill()
    killed = time.monotonic()
    status = chief.proc.wait(timeout=LOST_PEER_WITHIN_S + 30)
    took = time.monotonic() - killed
    assert status == 4, chief.tail()
    assert took <= LOST_PEER_WITHIN_S, f"the chief took {took:.0f} s to notice"
    errors = [line for line in chief.text().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: --distribute multiworker: a process of the cluster stopped or cannot be reached, so worker 0 of a "
        "2-process cluster stops too; no model was written"), chief.tail()
    assert "Traceback" not in chief.text()
    assert sorted(os.listdir(tmp_path)) == ["logs"]  # no model directory, no staging directory


@pytest.mark.parametrize("tf_config,message", [
    (None, "--distribute multiworker: the TF_CONFIG environment variable is not set"),
    ("{cluster", "TF_CONFIG: not JSON"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "TF_CONFIG: cluster job 'ps' is not trained"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "TF_CONFIG: task {'type': 'worker', 'index': 1} is not in the cluster"),
    ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}', "TF_CONFIG: cluster job 'worker' is ['nohost']"),
])
def test_a_bad_tf_config_is_one_line(tf_config, message):
    env = {} if tf_config is None else {"TF_CONFIG": tf_config}
    with pytest.raises(ConfigError) as err:
        role_from_tf_config(env)
    assert str(err.value).startswith(message)


def test_roles():
    one_chief = '{"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 0}}'
    role = role_from_tf_config({"TF_CONFIG": one_chief})
    assert (role.is_chief, role.workers, role.describe()) == (False, 3, "worker 0 of a 3-process cluster")
    no_chief = '{"cluster": {"worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 0}}'
    assert role_from_tf_config({"TF_CONFIG": no_chief}).is_chief
