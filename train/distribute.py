"""Which tf.distribute strategy trains, and which process of a cluster writes the model.

``none`` is TensorFlow's default strategy (one process, its own devices). ``mirrored`` is ``MirroredStrategy``: one
replica per local GPU (one on a CPU-only host), gradients all-reduced between them. ``multiworker`` is
``MultiWorkerMirroredStrategy``: one process per machine, each started with the same command and a ``TF_CONFIG``
naming the cluster and its own place in it; gradients are all-reduced over the network by TensorFlow's collectives.

Only the chief (task type ``chief``, or ``worker`` 0 when the cluster names no chief, TensorFlow's own rule) writes
the model directory; the other workers train their share of every batch and keep their scratch files in a temporary
folder that is removed when they exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.errors import ClusterError, ConfigError

log = logging.getLogger(__name__)

DISTRIBUTE = ("none", "mirrored", "multiworker")


@dataclass(frozen=True)
class Role:
    """This process's place in the cluster that trains."""

    task_type: str
    task_index: int
    workers: int  # processes in the cluster, the chief included
    names_a_chief: bool  # the cluster has a "chief" job; without one, worker 0 is the chief

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (not self.names_a_chief and self.task_index == 0)

    def describe(self) -> str:
        return f"{self.task_type} {self.task_index} of a {self.workers}-process cluster"


SINGLE = Role("chief", 0, 1, True)


def role_from_tf_config(environ: Mapping[str, str] | None = None) -> Role:
    """Parse ``TF_CONFIG`` into this process's role, refusing what MultiWorkerMirroredStrategy would misread."""
    env = os.environ if environ is None else environ
    raw = env.get("TF_CONFIG")
    where = "TF_CONFIG"
    expected = ('expected JSON like {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}')
    if not raw:
        raise ConfigError(f"--distribute multiworker: the TF_CONFIG environment variable is not set; {expected}")
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.msg} at character {exc.pos}); {expected}") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError(f"{where}: {raw!r} lacks a 'cluster' or a 'task' object; {expected}")
    for job, hosts in cluster.items():
        if job not in ("chief", "worker"):
            raise ConfigError(f"{where}: cluster job {job!r} is not trained by MultiWorkerMirroredStrategy; expected "
                              "only 'chief' (at most one) and 'worker'")
        if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and ":" in h for h in hosts):
            raise ConfigError(f"{where}: cluster job {job!r} is {hosts!r}; expected a non-empty list of 'host:port'")
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(f"{where}: {len(cluster['chief'])} chiefs; expected at most one")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise ConfigError(f"{where}: task {task!r} is not in the cluster {sorted(cluster)}; expected a type listed "
                          "there and an index into its hosts")
    return Role(task_type, index, sum(len(h) for h in cluster.values()), "chief" in cluster)


def make_strategy(kind: str, role: Role) -> Any:
    """The strategy for ``--distribute kind`` in this process's ``role`` (:func:`role_from_tf_config` for
    multiworker); call before any other TensorFlow work."""
    import tensorflow as tf

    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        log.info("tf.distribute.MirroredStrategy over %d replica(s)", strategy.num_replicas_in_sync)
        return strategy
    if kind != "multiworker":
        raise ConfigError(f"--distribute {kind!r}: expected one of {', '.join(DISTRIBUTE)}")
    # Waits until every process of TF_CONFIG has started; a peer that dies later fails the collectives of the others
    # (TensorFlow's health check), which train() turns into one error line.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    log.info("tf.distribute.MultiWorkerMirroredStrategy: %s, %d replica(s) in all", role.describe(),
             strategy.num_replicas_in_sync)
    return strategy


def barrier(strategy: Any, role: Role) -> None:
    """Wait until every process of a multi-worker cluster gets here (one all-reduce); at once for one process.

    The workers wait here for the chief to publish the model, so that every process exits with the run's outcome: 0
    when the model is written, and a :class:`ClusterError` when the chief died before it was.
    """
    import tensorflow as tf

    if role.workers <= 1:
        return

    @tf.function
    def arrive() -> Any:
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)

    arrive()


@contextlib.contextmanager
def peers_watched(role: Role) -> Iterator[None]:
    """Turn TensorFlow's error for a lost peer into one :class:`ClusterError` line naming this process.

    Only in a cluster: a single process has no peer to lose, so such an error there is a bug and keeps its traceback.
    """
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError) as exc:
        if role.workers <= 1:
            raise
        # TensorFlow's message is a multi-line trace; its cause is the line about the peer (unhealthy, reset, ...).
        lines = [line.strip() for line in str(exc.message).splitlines() if line.strip()]
        reason = next((line for line in lines if "aborted by" in line or "unhealthy" in line), type(exc).__name__)
        outcome = "no model was written" if role.is_chief else "the chief cannot have written the model"
        raise ClusterError(f"--distribute multiworker: a process of the cluster stopped or cannot be reached, so "
                           f"{role.describe()} stops too; {outcome} (TensorFlow: {reason})") from None
