"""Per-layer int8 error: which layers lose what, ranked, for the export report and the fallback.

Both formats quantize activations per tensor: one scale for every channel of a layer's output.
The failure that costs accuracy is a tensor whose channels differ in range by orders of magnitude:
the widest channel sets the scale and the quiet ones round to zero. Energy-weighted measures
(RMSE over the scale, SQNR) hide it, because the loud channel dominates both the signal and the
error budget; on the hard test model the broken tensor scored rmse/scale 0.1, better than healthy
ones. So the ranking measures **channel error**: for each channel, the RMS error over the RMS
float value, averaged over the channels that carry signal. 0 is exact, 1 means the channel is
gone. It is computed per image and averaged over images. Each format's own figures (TFLite rmse/scale, ONNX SQNR) are reported beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

REPORTED_LAYERS = 20  # rows in the sidecar; the full ranking of InceptionV3 is 120-150 tensors


def channel_error(reference: np.ndarray, quantized: np.ndarray, channel_axis: int = -1) -> float:
    """Mean over channels with signal of RMS(quantized - reference) / RMS(reference); NaN if no channel has signal.

    Computed per image; the reports average it over images (NaN images skipped).
    """
    ref = np.moveaxis(np.asarray(reference, dtype=np.float64), channel_axis, -1)
    diff = np.moveaxis(np.asarray(quantized, dtype=np.float64), channel_axis, -1) - ref
    signal = (ref**2).reshape(-1, ref.shape[-1]).sum(axis=0)
    error = (diff**2).reshape(-1, ref.shape[-1]).sum(axis=0)
    live = signal > 0
    return float(np.mean(np.sqrt(error[live] / signal[live]))) if live.any() else float("nan")


@dataclass(frozen=True)
class LayerError:
    """One quantized tensor and the layer that writes it."""

    layer: str  # what a user finds in the graph: the TFLite tensor name or the ONNX node name
    op: str  # the producing op type, e.g. CONV_2D or Relu
    tensor: str  # the quantized activation tensor
    channel_error: float  # see the module docstring
    extra: dict[str, float] = field(default_factory=dict)  # the format's own figures

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out


def rank(errors: list[LayerError]) -> list[LayerError]:
    """Worst first; ties (e.g. exact layers) keep graph order."""
    return sorted(errors, key=lambda e: -e.channel_error)


def short_name(name: str) -> str:
    """The readable part of a converter's tensor name: ``a/b/conv2d_80_1/convolution;x/y`` -> ``conv2d_80_1/convolution``."""
    first = name.split(";")[0]
    parts = [p for p in first.split("/") if p and p != "StatefulPartitionedCall"]
    return "/".join(parts[-2:]) if len(parts) >= 2 else first


def layer_report(errors: list[LayerError], images: int, method: str) -> dict[str, Any]:
    """The sidecar's ``layer_errors`` section: how it was measured and the worst layers."""
    ranked = rank(errors)
    return {"images": images, "method": method, "metric": "channel_error",
            "metric_meaning": "per channel RMS int8 error / RMS float value, averaged over channels with signal, then images; 1 = lost",
            "layers_measured": len(ranked), "worst": [e.to_dict() for e in ranked[:REPORTED_LAYERS]]}
