"""The notebook's architecture, with InceptionV3's preprocessing inside the graph.

pixels (float32, 0-255, RGB) -> Rescaling to [-1, 1] -> InceptionV3 without its top ->
GlobalAveragePooling2D -> Dense(1) logit. Because scaling is a graph op, the SavedModel takes
raw pixels and an int8 export can take uint8 pixels exactly.

The graph is built flat (the base is built on the rescaled tensor) so that training views
can be cut out of it: ``stem`` (pixels -> cached features) and ``top`` (cached features ->
logit) share their layers with ``model``, so training a view trains the model.
TensorFlow is imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import WeightsError, first_line

log = logging.getLogger(__name__)

IMAGENET_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INPUT_NAME = "pixels"
OUTPUT_NAME = "logit"


@dataclass
class InceptionViews:
    model: Any  # keras.Model: pixels -> logit
    stem: Any  # keras.Model: pixels -> what is cached once (the pooled vector when nothing is fine-tuned)
    top: Any  # keras.Model: cached features -> logit (the blocks that fine-tune, and the head); None when frozen
    pooled_from_cache: Any  # keras.Model: cached features -> pooled vector (top blocks as they are); None when frozen
    head: Any  # keras.Model: pooled vector -> logit (the Dense layer alone)
    cut_layer: str  # name of the layer whose output is cached
    trained_blocks: list[str]


def _download_failed(exc: BaseException) -> bool:
    text = str(exc)
    return "URL fetch failure" in text or "HTTP" in text or isinstance(exc, OSError)


def build_inception(image_size: int, weights: str, fine_tune_from: str | None) -> InceptionViews:
    """Build the classifier and its training views; ``weights`` is imagenet, none or a .h5 path."""
    import keras

    inputs = keras.Input((image_size, image_size, 3), name=INPUT_NAME, dtype="float32")
    scaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="inception_preprocess")(inputs)
    source: str | None
    if weights == "none":
        source = None
    elif weights == "imagenet":
        source = "imagenet"
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: weights file not found; expected a Keras .h5 file of InceptionV3 without its top ({IMAGENET_NOTOP_FILE})")
        source = str(path)
    try:
        base = keras.applications.InceptionV3(include_top=False, weights=source, input_tensor=scaled)
    except Exception as exc:  # Keras raises bare Exception/ValueError for both failures below
        reason = first_line(exc)
        if source == "imagenet" and _download_failed(exc):
            raise WeightsError(
                f"cannot download the ImageNet weights for InceptionV3 ({reason}); pass --weights FILE with a local copy "
                f"of {IMAGENET_NOTOP_FILE}, or --weights none to train from random weights"
            ) from None
        if source not in (None, "imagenet"):
            raise WeightsError(f"{source}: cannot load as InceptionV3 weights without the top ({reason})") from None
        raise
    pool = keras.layers.GlobalAveragePooling2D(name="avg_pool")
    dense = keras.layers.Dense(1, name=OUTPUT_NAME)
    pooled = pool(base.output)
    logits = dense(pooled)
    model = keras.Model(inputs, logits, name="inception_edge")

    for layer in base.layers:
        layer.trainable = False
    head_in = keras.Input((pooled.shape[-1],), name="pooled_features")
    head = keras.Model(head_in, dense(head_in), name="head")
    if fine_tune_from is None:
        # Frozen recipe: the pooled vector is all the head sees, so that is what gets cached.
        stem = keras.Model(inputs, pooled, name="stem")
        return InceptionViews(model, stem, None, None, head, pool.name, [])
    block = int(fine_tune_from.removeprefix("mixed"))
    cut_name = f"mixed{block - 1}"  # the output that feeds the first trained block
    cut = model.get_layer(cut_name).output
    top = keras.Model(cut, logits, name="top")
    for layer in top.layers:
        # Keras 3: a frozen BatchNormalization runs in inference mode even under training=True,
        # so the base's statistics stay as loaded while the convolutions adapt.
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    stem = keras.Model(inputs, cut, name="stem")
    pooled_from_cache = keras.Model(cut, pooled, name="pooled")
    trained = [f"mixed{i}" for i in range(block, 11)]
    return InceptionViews(model, stem, top, pooled_from_cache, head, cut_name, trained)
