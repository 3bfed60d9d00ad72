"""runtime.timing (the one timing loop) and runtime.fresh_process (the one fresh-process harness), and their users.

The loop is checked against a fake clock that each call advances by a known amount, so the
samples are exact; the harness runs tiny modules written to a temporary directory (a child
interpreter without numpy starts in ~50 ms).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from runtime import timing
from runtime.errors import ConfigError, DataError, ProcessError
from runtime.fresh_process import last_error_line, run_module
from runtime.timing import Latency, Prepared, time_calls


@pytest.fixture
def clock(monkeypatch):
    """A fake perf_counter_ns for runtime.timing; ``clock.advance(ns)`` is what a call "costs"."""
    class Clock:
        now = 0

        def advance(self, ns: int) -> None:
            self.now += ns

    c = Clock()
    monkeypatch.setattr(timing, "perf_counter_ns", lambda: c.now)
    return c


# --------------------------------------------------------------------------- time_calls

def test_calls_take_turns_and_each_gets_runs_samples_in_ms(clock):
    log: list[str] = []

    def call(name: str, ns: int):
        def run() -> None:
            log.append(name)
            clock.advance(ns)
        return run

    a, b = time_calls([call("a", 2_000_000), call("b", 500_000)], runs=4, warmup=2)
    assert log == ["a", "b"] * 6  # 2 warm-up runs, then 4 timed ones, in turns throughout
    assert a.shape == b.shape == (4,) and a.dtype == np.float64
    assert a.tolist() == [2.0] * 4 and b.tolist() == [0.5] * 4  # nanoseconds -> milliseconds


def test_warmup_calls_are_counted_but_not_timed(clock):
    """The first `warmup` calls are slow (allocation); none of that may appear in the samples."""
    count = 0

    def run() -> None:
        nonlocal count
        count += 1
        clock.advance(50_000_000 if count <= 3 else 1_000_000 * count)

    (ms,) = time_calls([run], runs=5, warmup=3)
    assert count == 8
    assert ms.tolist() == [4.0, 5.0, 6.0, 7.0, 8.0]  # calls 4-8 exactly, in order


def test_a_prepared_call_times_the_call_alone_and_closes_before_the_next(clock):
    log: list[str] = []

    @contextlib.contextmanager
    def opened():
        log.append("open")
        clock.advance(9_000_000)  # input conversion: not part of the engine call's cost
        yield lambda: (log.append("bare"), clock.advance(3_000_000))
        log.append("close")
        clock.advance(9_000_000)

    def other() -> None:
        log.append("other")
        clock.advance(4_000_000)

    bare, wrapped = time_calls([Prepared(opened), other], runs=2)
    assert bare.tolist() == [3.0, 3.0] and wrapped.tolist() == [4.0, 4.0]
    assert log == ["open", "bare", "close", "other"] * 2  # let go (of an interpreter) before the next call


def test_time_calls_measures_real_time_in_milliseconds():
    (ms,) = time_calls([lambda: time.sleep(0.003)], runs=3)
    assert ms.shape == (3,) and (ms >= 2.9).all() and (ms < 1000).all()


@pytest.mark.parametrize("kwargs,message", [
    ({"calls": [], "runs": 1}, "no calls given"),
    ({"calls": [print], "runs": 0}, "runs 0: expected an integer of 1 or more"),
    ({"calls": [print], "runs": 2.5}, "runs 2.5: expected an integer"),
    ({"calls": [print], "runs": True}, "runs True: expected an integer"),
    ({"calls": [print], "runs": 1, "warmup": -1}, "warmup -1: expected an integer of 0 or more"),
])
def test_time_calls_refuses_bad_counts(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        time_calls(**kwargs)


# --------------------------------------------------------------------------- Latency

def test_latency_of_is_numpys_percentiles_and_round_trips_through_json():
    samples = np.random.default_rng(0).lognormal(2.0, 0.4, 37)
    lat = Latency.of(samples)
    assert lat.p50 == np.percentile(samples, 50) and lat.p90 == np.percentile(samples, 90)
    assert lat.mean == pytest.approx(samples.mean(), rel=1e-15) and lat.runs == 37
    assert lat.samples_ms == tuple(samples.tolist())
    raw = json.loads(json.dumps(lat.to_dict()))
    assert set(raw) == {"p50_ms", "p90_ms", "mean_ms", "runs", "samples_ms"}
    assert Latency.from_dict(raw) == lat
    assert Latency.of([3.0]).to_dict() == {"p50_ms": 3.0, "p90_ms": 3.0, "mean_ms": 3.0, "runs": 1, "samples_ms": [3.0]}


@pytest.mark.parametrize("call,message", [
    (lambda: Latency.of([]), "none given"),
    (lambda: Latency.of([1.0, float("nan")]), "NaN or inf"),
    (lambda: Latency.from_dict({"p50_ms": 1.0}), "missing p90_ms, mean_ms, runs, samples_ms"),
    (lambda: Latency.from_dict({"p50_ms": 1, "p90_ms": 1, "mean_ms": 1, "runs": 2, "samples_ms": [1.0]}),
     "runs 2 with 1 samples_ms"),
    (lambda: Latency.from_dict({"p50_ms": "x", "p90_ms": 1, "mean_ms": 1, "runs": 1, "samples_ms": [1.0]}),
     "must be numbers"),
])
def test_latency_refuses_what_is_not_a_latency(call, message):
    with pytest.raises(DataError, match=message):
        call()


# --------------------------------------------------------------------------- the timing loop's users

def test_bench_alternates_bare_and_wrapped_calls_on_the_same_image(monkeypatch):
    """run_bench with a fake classifier: the bare call's input conversion is outside the clock, each run
    gives both calls the same image, and the figures are the Latency of the samples."""
    from runtime import bench

    seen: list[tuple[str, int]] = []

    class Engine:
        @contextlib.contextmanager
        def bare_call(self, prepared):
            time.sleep(0.004)  # the conversion: if it were timed, bare would not be the faster call
            yield lambda: seen.append(("bare", int(prepared[0, 0, 0, 0])))

    class FakeClassifier:
        backend, image_size, digest_seconds, engine = "onnxruntime", 4, 0.0, Engine()

        def __init__(self, *args, **kwargs) -> None:
            pass

        def pixels(self, img):
            return img[None].astype(np.float32)

        def predict(self, img):
            time.sleep(0.001)
            seen.append(("predict", int(img[0, 0, 0])))

    monkeypatch.setattr(bench, "Classifier", FakeClassifier)
    monkeypatch.setattr(bench, "import_backend", lambda *a: None)
    r = bench.run_bench(bench.BenchConfig(model="fake.onnx", runs=10, warmup=2))
    timed = seen[1:]  # the first answer comes before the loop
    assert len(timed) == 2 * 12 and [k for k, _ in timed] == ["bare", "predict"] * 12
    assert all(timed[i][1] == timed[i + 1][1] for i in range(0, len(timed), 2))  # same image within a run
    assert r.bare.runs == r.predict.runs == 10 and r.bare.p50 < 1.0 <= r.predict.p50
    assert r.overhead == pytest.approx(r.predict.p50 / r.bare.p50 - 1)
    assert set(r.to_dict()["predict"]) == {"p50", "p90", "mean", "runs", "samples_ms"}  # --json: keys as before, plus two
    assert "bare engine call" in bench.format_result(r)


def test_worker_writes_the_batch1_samples_and_the_throughput_batches(monkeypatch, tmp_path):
    from benchmarks import worker

    calls: list[int] = []

    def fake_engine(job):
        def run(pixels):
            calls.append(len(pixels))
            return np.zeros(len(pixels))
        return run, "fake 1.0"

    monkeypatch.setattr(worker, "_engine", fake_engine)
    np.save(tmp_path / "pixels.npy", np.zeros((10, 4, 4, 3), np.uint8), allow_pickle=False)
    job = worker.Job(path="m.onnx", kind="onnx", image_size=4, threads=1, runs=7, warmup=2, pixels=str(tmp_path / "pixels.npy"),
                     result=str(tmp_path / "r.json"), throughput_batch=5, throughput_runs=3)
    result = worker.measure(job).to_dict()
    assert calls == [1] * (1 + 2 + 7) + [5] * (1 + 3)  # first answer, warm-up, timed; then one untimed batch, 3 timed
    assert worker.Measurement.from_dict(json.loads(json.dumps(result))).to_dict() == result
    lat = Latency.from_dict(result)
    assert lat.runs == 7 and len(result["samples_ms"]) == 7 and lat == Latency.of(result["samples_ms"])
    assert len(result["throughput_batch_s"]) == 3
    assert result["throughput_images_per_s"] == pytest.approx(5 * 3 / sum(result["throughput_batch_s"]))
    json.dumps(result, allow_nan=False)  # what main() writes


# --------------------------------------------------------------------------- run_module

@pytest.fixture
def child(tmp_path):
    """Write a module into a temporary directory; returns (its name, the env that puts it on PYTHONPATH)."""
    def write(source: str, name: str = "tiny_child") -> tuple[str, dict[str, str]]:
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        return name, {"PYTHONPATH": str(tmp_path)}
    return write


def test_run_module_returns_the_childs_json_with_args_and_env(child):
    name, env = child("import json, os, sys\nprint(json.dumps({'args': sys.argv[1:], 'flag': os.environ['TINY_FLAG']}))\n")
    out = run_module(name, ["a b", Path("c")], timeout_s=30, env={**env, "TINY_FLAG": "on"})
    assert out == {"args": ["a b", "c"], "flag": "on"}


def test_run_module_reads_the_named_result_file_and_never_a_stale_one(child, tmp_path):
    result = tmp_path / "result.json"
    name, env = child("import json, sys\nfrom pathlib import Path\n"
                      "if sys.argv[1] == 'write':\n    Path(sys.argv[2]).write_text(json.dumps({'ok': 1}))\n"
                      "print('chatter on stdout is fine here')\n")
    assert run_module(name, ["write", result], timeout_s=30, env=env, result_file=result) == {"ok": 1}
    with pytest.raises(ProcessError, match=r"tiny: exited with status 0 but .*result.json cannot be read"):
        run_module(name, ["skip", result], timeout_s=30, env=env, result_file=result, what="tiny")  # the old file is gone


def test_run_module_names_the_childs_last_error_line_and_status(child):
    name, env = child("import sys\nprint('loading', file=sys.stderr)\nprint('error: first.tflite: not it', file=sys.stderr)\n"
                      "print('error: model.tflite: not a TFLite file; expected a .tflite', file=sys.stderr)\n"
                      "print('INFO: cleanup', file=sys.stderr)\nsys.exit(2)\n")
    with pytest.raises(ProcessError) as info:
        run_module(name, timeout_s=30, env=env, what="model.tflite: the latency run")
    exc = info.value
    assert str(exc) == ("model.tflite: the latency run: exited with status 2: model.tflite: not a TFLite file; "
                        "expected a .tflite")
    assert (exc.status, exc.reason, exc.timed_out) == (2, "model.tflite: not a TFLite file; expected a .tflite", False)


def test_run_module_falls_back_to_the_last_stderr_line(child):
    name, env = child("raise ValueError('boom in the child')\n")
    with pytest.raises(ProcessError, match=r"^python -m tiny_child: exited with status 1: ValueError: boom in the child$"):
        run_module(name, timeout_s=30, env=env)
    assert last_error_line("") == "" and last_error_line("a\n\n b \n") == "b"


def test_run_module_says_a_signal_killed_the_child(child):
    name, env = child("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    with pytest.raises(ProcessError, match=r"was killed by signal 9 \(SIGKILL\)") as info:
        run_module(name, timeout_s=30, env=env)
    assert info.value.status == -signal.SIGKILL


def test_run_module_kills_a_child_that_runs_past_its_timeout(child):
    name, env = child("import time\ntime.sleep(60)\n")
    start = time.monotonic()
    with pytest.raises(ProcessError, match=r"^python -m tiny_child: timed out after 0.5 s and was killed") as info:
        run_module(name, timeout_s=0.5, env=env)
    assert info.value.timed_out and info.value.status is None
    assert time.monotonic() - start < 20


def test_run_module_refuses_output_that_is_not_json_and_a_bad_timeout(child):
    name, env = child("print('done!')\n")
    with pytest.raises(ProcessError, match=r"exited with status 0 but stdout is not JSON"):
        run_module(name, timeout_s=30, env=env)
    with pytest.raises(ConfigError, match="timeout_s 0: expected a number of seconds above 0"):
        run_module(name, timeout_s=0, env=env)


def test_the_latency_runs_fail_with_one_line_naming_the_model(tmp_path):
    """export.latency.p50_ms through the harness: the child's own error line, the model's name, status 2."""
    from export.latency import p50_ms

    image = tmp_path / "image.npy"
    np.save(image, np.zeros((1, 4, 4, 3), np.float32), allow_pickle=False)
    with pytest.raises(ProcessError) as info:
        p50_ms([tmp_path / "gone.tflite"], image, threads=1)
    message = str(info.value)
    assert message.startswith("gone.tflite: the latency run: exited with status 2: ") and "\n" not in message
    assert "gone.tflite" in info.value.reason


def test_benchmarks_run_worker_keeps_its_reason_contract(monkeypatch, tmp_path):
    """_run_worker through the harness: (None, "worker exited with N: <the worker's error line>")."""
    from benchmarks.run import _run_worker
    from benchmarks.worker import Job

    job = Job(path=str(tmp_path / "gone.onnx"), kind="onnx", image_size=4, threads=1, runs=1, warmup=0,
              pixels=str(tmp_path / "pixels.npy"), result=str(tmp_path / "r.json"))
    np.save(job.pixels, np.zeros((2, 4, 4, 3), np.uint8), allow_pickle=False)
    result, reason = _run_worker(job, tmp_path, timeout_s=120)
    assert result is None and reason.startswith("worker exited with 2: ") and "gone.onnx" in reason
