"""Property-based: whatever arrays arrive, the loaders and the runtime's preprocessing give a result or a typed error.

A typed error (``runtime.errors.InceptionEdgeError``) is what the CLIs turn into one line and exit
2; anything else escaping is a bug that would print a traceback on a device.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from runtime.datasets import (
    binary_labels,
    check_split_pixels,
    iter_pixel_batches,
    load_dataset,
)
from runtime.errors import InceptionEdgeError
from runtime.images import PixelRange

DTYPES = st.sampled_from([np.uint8, np.int8, np.int32, np.uint16, np.float16, np.float32, np.float64, np.bool_, np.complex64])
SHAPES = array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=16)  # representable in every float dtype drawn


def _arrays(dtype=DTYPES, shape=SHAPES):
    return dtype.flatmap(lambda d: arrays(d, shape, elements=FLOATS if np.dtype(d).kind == "f" else None))


@pytest.fixture(scope="module")
def classifier(model_dir):
    from runtime.classifier import Classifier

    return Classifier(model_dir / "model_int8.tflite", pixel_range="0,1")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=_arrays())
def test_runtime_preprocessing_gives_model_pixels_or_a_typed_error(classifier, image):
    try:
        pixels = classifier.pixels(image)
    except InceptionEdgeError:
        return
    assert pixels.ndim == 4 and pixels.shape[1:] == (75, 75, 3) and pixels.shape[0] >= 1
    assert pixels.dtype in (np.uint8, np.float32) and np.isfinite(pixels).all()
    assert pixels.min() >= 0 and pixels.max() <= 255.0 + 1e-3


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images=_arrays(), labels=_arrays(st.sampled_from([np.int64, np.float64, np.uint8, np.bool_]),
                                        array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)),
       pixel_range=st.sampled_from([None, "0,1", "0,255"]))
def test_loading_any_npz_gives_a_dataset_or_a_typed_error(tmp_path_factory, images, labels, pixel_range):
    path = tmp_path_factory.mktemp("prop") / "d.npz"
    np.savez(path, train_images=images, train_labels=labels)
    try:
        split = load_dataset(path).splits["train"]
        rng = PixelRange.parse(pixel_range) if pixel_range else None
        check_split_pixels(split, rng)
        binary_labels(split, 1)
        batches = list(iter_pixel_batches(split, np.arange(len(split)), 4, 75, rng))
    except InceptionEdgeError:
        return
    assert sum(len(b) for b in batches) == len(split)
    assert all(b.shape[1:] == (75, 75, 3) and np.isfinite(b).all() for b in batches)
