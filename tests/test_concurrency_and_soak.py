"""Concurrent use and long runs: one classifier shared by 8 threads equals serial use; memory stays flat.

The full 10,000-prediction soak is ``python -m benchmarks.soak MODEL`` (it prints the RSS growth);
here a shorter one bounds the growth so that a leak per prediction fails CI.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from benchmarks.soak import soak
from runtime.classifier import Classifier

THREADS, PER_THREAD = 8, 500


@pytest.fixture(scope="module")
def images(xray_data):
    from runtime.datasets import load_dataset

    return np.asarray(load_dataset(xray_data).splits["test"].images[:32])


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_int8.onnx"])
def test_eight_threads_sharing_one_classifier_get_exactly_the_serial_answers(model_dir, images, name):
    clf = Classifier(model_dir / name)
    serial = [clf.predict(image)[0] for image in images]
    wrong: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for k in range(PER_THREAD):
                i = (thread * 7 + k) % len(images)  # threads start at different images, so neighbours differ
                if clf.predict(images[i])[0] != serial[i]:
                    wrong.append((thread, i))
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors[0]
    assert not wrong, f"{len(wrong)} of {THREADS * PER_THREAD} concurrent answers differ from the serial ones, e.g. {wrong[:3]}"


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_int8.onnx"])
def test_memory_stays_flat_over_2000_predictions(model_dir, images, name):
    result = soak(model_dir / name, predictions=2000, images=images, warmup=200)
    assert result.predictions == 2000 and result.rss_start_mb > 0
    assert result.rss_growth_mb < 10.0, result
