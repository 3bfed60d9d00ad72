"""Training stage: the notebook's balanced InceptionV3 classifier, reproduced correctly.

``from train import TrainConfig, train``. TensorFlow is imported only when training runs.
"""

from .config import TrainConfig

__all__ = ["TrainConfig", "train", "TrainResult"]


def __getattr__(name: str):
    if name in ("train", "TrainResult"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
