"""The export stage's configuration: one typed dataclass per format, saved beside each artifact.

Shared choices (where the calibration sample comes from, how much drift is acceptable, where
files go) live in :class:`ExportConfig`; each format adds only what is its own. The sidecar
JSON of every artifact holds the config that made it, and :meth:`ExportConfig.from_dict`
rebuilds it, so an export can be repeated exactly.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from runtime.backends import TFLITE_KERNELS
from runtime.config_dicts import config_from_dict
from runtime.errors import ConfigError, first_line
from runtime.evaluation import check_prevalence

TFLITE_MODES = ("int8", "float16", "dynamic")
TFLITE_INPUT_TYPES = ("uint8", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
FALLBACK_MODES = ("off", "auto")
GATES = ("noninferiority", "point")
MIN_OPSET = 17  # the minimum opset (--opset); tf2onnx 1.17 handles every op of this graph at 17


@dataclass(frozen=True)
class DriftLimits:
    """How far an artifact may move from the float SavedModel, at every operating point: the largest loss of
    sensitivity, specificity and AUC, and the least share of decisions that must agree.

    Defaults: two points of sensitivity or specificity is about the noise between two
    radiologists' reads on this kind of data and well under what a clinic would notice; a
    hundredth of AUC bounds the ranking. Agreement 0.97 is checked, like the rest, on the 95%
    bound (``ExportConfig.gate``): "shown that at most 3% of decisions change", stricter than the
    former 0.98 on the observed share of 270 images, whose 95% bound at that edge was 0.957. At
    0.98 the bound is out of reach for int8 exports whose decisions differ on 1.5-2% of images,
    which every quantizer measured leaves on the 75x75 reference model (docs/statistics.md).
    """

    sensitivity: float = 0.02
    specificity: float = 0.02
    auc: float = 0.01
    agreement: float = 0.97

    @classmethod
    def parse(cls, text: str) -> DriftLimits | None:
        """``KEY=VALUE[,KEY=VALUE...]`` over the defaults, or ``none`` to report without failing."""
        if text.strip().lower() == "none":
            return None
        values: dict[str, float] = {}
        names = {f.name for f in fields(cls)}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in names:
                raise ConfigError(f"--max-drift {text!r}: expected KEY=VALUE pairs with keys {', '.join(sorted(names))}, or none")
            try:
                values[key] = float(value)
            except ValueError:
                raise ConfigError(f"--max-drift {text!r}: {key} value {value!r} is not a number") from None
        limits = cls(**values)
        limits.validate(text)
        return limits

    def validate(self, text: str = "") -> None:
        shown = text or str(self.to_dict())
        for name in ("sensitivity", "specificity", "auc"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"--max-drift {shown}: {name} {getattr(self, name)} is not in [0, 1]")
        if not 0.0 <= self.agreement <= 1.0:
            raise ConfigError(f"--max-drift {shown}: agreement {self.agreement} is not in [0, 1]")

    def loss(self, rate: str) -> float:
        """The largest acceptable loss of ``sensitivity`` or ``specificity``."""
        return float(getattr(self, rate))

    def spec(self) -> str:
        """These limits as ``--max-drift`` takes them."""
        return ",".join(f"{k}={v:g}" for k, v in self.to_dict().items())

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


CALIBRATION = "calibration and verification"
INT8 = "accuracy-aware int8"
FORMAT = "format"


def option(help: str, group: str | None = None, **argparse_kwargs: Any) -> dict[str, Any]:
    """Field metadata that makes a config field a CLI option (``export.cli`` adds it): its help, its argparse group and
    any argparse keywords; the option's name is the field's, its default the field's default."""
    return {"cli": {"help": help, "group": group, **argparse_kwargs}}


def parse_max_drift(text: str) -> DriftLimits | None:
    """``--max-drift`` on the command line: a usage error in one line when it does not parse."""
    try:
        return DriftLimits.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(first_line(exc).removeprefix(f"--max-drift {text!r}: ")) from None


def parse_count_or_all(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither all nor an integer") from None


@dataclass
class ExportConfig:
    model: str = field(metadata=option("model directory written by `python -m train` (SavedModel + model_card.json)",
                                       required=True))
    out: str | None = field(default=None, metadata=option("directory for the artifacts (default: the model directory)"))
    overwrite: bool = field(default=False, metadata=option("replace artifacts of the same name (atomically, after "
                                                           "verification)", action="store_true"))
    data: str | None = field(default=None, metadata=option(
        "labelled data (.npz, directory of .npy, a folder or CSV of image files with the model's class names, or a bundled "
        "dataset's name such as pneumoniamnist) to calibrate on (train split) and verify on (val and test); default: the "
        "data the model card names, checked by sha256 (for a model trained from files: its data_files.csv, file by file)",
        CALIBRATION))
    calibration_data: str | None = field(default=None, metadata=option(
        "calibrate on these images instead: a dataset (its train split) or a .npy of images (N,H,W[,C]) from the "
        "deployment site", CALIBRATION))
    # The TensorFlow guide advises 100-500 representative samples; measured here, 10 images clipped
    # the output range while 100 and 300 stayed within 0.001 AUC of the float model.
    calibration_size: int = field(default=200, metadata=option(
        "images in the calibration sample (the TensorFlow guide advises 100-500)", CALIBRATION, type=int))
    calibration_seed: int = field(default=0, metadata=option(
        "seed of the class-balanced draw (and of the fallback's split of the training pool)", CALIBRATION, type=int))
    max_drift: DriftLimits | None = field(default_factory=DriftLimits, metadata=option(  # None: report, never fail
        f"KEY=VALUE,... over the defaults {DriftLimits().spec()}: the largest acceptable loss of sensitivity, specificity "
        "and AUC, and the least share of decisions that must agree with the float SavedModel, at every operating point; "
        "or none to report without failing. How they are checked: --gate. Beyond them the artifact is not written, its "
        "report goes to NAME.rejected.json, exit status 3", CALIBRATION, type=parse_max_drift, metavar="SPEC|none"))
    # noninferiority: the 95% bounds of the changes must lie within max_drift (noise cannot flip the verdict);
    # point: the observed changes on val and on test, each alone, within max_drift: a rule one image can flip.
    gate: str = field(default="noninferiority", metadata=option(
        "noninferiority (default): the 95%% bounds must lie within --max-drift (the loss's upper bound, paired "
        "Newcombe/DeLong; agreement's lower bound, Wilson), on val, test and the training images not drawn for "
        "calibration pooled, so one image cannot flip the verdict (a --fallback auto repair: only on the images its "
        "search never saw); point: the observed changes on val and on test, each alone, within --max-drift, a rule one "
        "image can flip. See docs/statistics.md", CALIBRATION, choices=GATES))
    # Share of positives where the model will be used, for PPV and NPV in the report; None: each split's own.
    prevalence: float | None = field(default=None, metadata=option(
        "share of positives where the model is used (e.g. 0.05), for PPV and NPV with intervals in the report "
        "(default: each split's own)", CALIBRATION, type=float))
    # Training images not drawn for calibration, verified on as well (export.splits: all judge a plain export;
    # --fallback auto chooses on part of them and judges on the rest): None = all of them, 0 = none, N = a seeded draw.
    agreement_images: int | None = field(default=None, metadata=option(
        "training images not drawn for calibration that verify the artifact too (default all; 0: none)", CALIBRATION,
        type=parse_count_or_all, metavar="N|all"))
    # int8 rounding shifted the 299x299 reference model's logits down on average (sensitivity fell at every
    # operating point while AUC held): subtract the mean shift measured on the calibration images.
    bias_correction: bool = field(default=True, metadata=option(
        "int8: keep the converter's output as is instead of removing the mean logit shift that int8 rounding adds "
        "(measured on the calibration images)", CALIBRATION, flag="--no-bias-correction", action="store_false"))
    threads: int | None = field(default=None, metadata=option(  # for verification; None = every core
        "threads for verification (default: every core)", CALIBRATION, type=int))
    # Per-layer quantization error is measured on up to this many calibration images (0: no per-layer report).
    # A sample keeps it cheap: TFLite calibration plus this report took 22 s at 75x75 and 87 s at 299x299.
    layer_report_images: int = field(default=32, metadata=option(
        "at most this many calibration images, on which each layer's int8 error is measured and ranked in the report "
        "(0: no per-layer report)", INT8, type=int))
    # auto: when int8 breaks --max-drift on the images the search looks at (export.splits), keep the worst layers
    # (by the per-layer report) in float one at a time until it holds. off: fail as a plain export does.
    fallback: str = field(default="off", metadata=option(
        "auto: if int8 breaks --max-drift on val and a quarter of the unused training images, keep the worst layers of "
        "the per-layer report in float, one per step, until it holds, then judge the result on test and the rest; "
        "writes NAME_fallback (e.g. model_int8_fallback.tflite) and reports the layers kept float and the latency each "
        "cost. off: fail as usual", INT8, choices=FALLBACK_MODES))
    # Each step keeps one ranked layer and the ops reading its output in float; past this many steps the
    # export gives up: a model that needs more is better served by quantization-aware training.
    fallback_max_layers: int = field(default=8, metadata=option(
        "most fallback steps (one ranked layer and the ops reading its output each) before giving up", INT8, type=int))

    kind: ClassVar[str] = "export"
    cli_description: ClassVar[str] = ""  # python -m export.KIND --help: what the command does (export.cli)
    cli_example: ClassVar[str] = ""
    retired: ClassVar[frozenset[str]] = frozenset()  # keys older sidecars carry that no longer change anything

    def __post_init__(self) -> None:
        if isinstance(self.max_drift, dict):
            self.max_drift = DriftLimits(**self.max_drift)
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.calibration_size, int) or self.calibration_size < 1:
            raise ConfigError(f"--calibration-size {self.calibration_size}: expected a positive integer")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads {self.threads}: expected a positive integer")
        if self.max_drift is not None:
            self.max_drift.validate()
        if self.gate not in GATES:
            raise ConfigError(f"--gate {self.gate!r}: expected one of {', '.join(GATES)}")
        check_prevalence(self.prevalence)
        if self.agreement_images is not None and (not isinstance(self.agreement_images, int) or self.agreement_images < 0):
            raise ConfigError(f"--agreement-images {self.agreement_images!r}: expected all, 0 or a positive integer")
        if self.fallback not in FALLBACK_MODES:
            raise ConfigError(f"--fallback {self.fallback!r}: expected one of {', '.join(FALLBACK_MODES)}")
        if not isinstance(self.fallback_max_layers, int) or self.fallback_max_layers < 1:
            raise ConfigError(f"--fallback-max-layers {self.fallback_max_layers}: expected a positive integer")
        if not isinstance(self.layer_report_images, int) or self.layer_report_images < 0:
            raise ConfigError(f"--layer-report-images {self.layer_report_images}: expected 0 or a positive integer")
        if self.fallback == "auto" and self.max_drift is None:
            raise ConfigError("--fallback auto with --max-drift none: the fallback needs limits to reach; give --max-drift")
        if self.fallback == "auto" and self.layer_report_images == 0:
            raise ConfigError("--fallback auto with --layer-report-images 0: the fallback ranks layers by that report; "
                              "give at least 1 image")

    @property
    def name_suffix(self) -> str:
        """``_fallback`` for artifacts that may keep layers in float, so they never replace a full-integer one."""
        return "_fallback" if self.fallback == "auto" else ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["max_drift"] = None if self.max_drift is None else self.max_drift.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExportConfig:
        return config_from_dict(cls, {k: v for k, v in raw.items() if k not in cls.retired}, cls.kind)


@dataclass
class TFLiteExportConfig(ExportConfig):
    mode: str = field(default="int8", metadata=option(  # full-integer; float16 and dynamic on request
        "int8 (model_int8.tflite), float16 (model_float16.tflite: half-size weights, float compute) or dynamic "
        "(model_dynamic.tflite: int8 weights, float activations)", FORMAT, choices=TFLITE_MODES))
    input_type: str = field(default="uint8", metadata=option(
        "int8 mode: uint8 takes raw pixels; int8 takes pixel-128 (model_int8_int8input.tflite)", FORMAT,
        choices=TFLITE_INPUT_TYPES))
    # TFLite kernel sets the artifact must pass on. ai-edge-litert runs XNNPACK ("default");
    # tflite-runtime 2.14, still on many Pi images, runs TFLite's built-in int8 kernels ("builtin"),
    # which round differently: on the 75x75 reference model they moved val agreement from 0.983 to 0.974.
    verify_kernels: tuple[str, ...] = field(default=TFLITE_KERNELS, metadata=option(
        "TFLite kernel sets the artifact must pass --max-drift on: default (ai-edge-litert's XNNPACK) and builtin "
        "(TFLite's own int8 kernels, which tflite-runtime 2.14 runs), both unless set. Drop builtin only if no device "
        "will use tflite-runtime", FORMAT, type=lambda text: tuple(text.split(",")), metavar="default[,builtin]"))

    kind: ClassVar[str] = "tflite"
    cli_description: ClassVar[str] = (
        "Convert a trained model to TFLite (full-integer int8 by default: int8 kernels only, per-channel weights, raw uint8 "
        "pixels in), calibrated on a class-balanced sample of its training images, then verify it against the float "
        "SavedModel on val, test and the unused training images. Writes NAME.tflite and NAME.tflite.json (checksum, "
        "metadata, config, verification report) atomically.")
    cli_example: ClassVar[str] = "python -m export.tflite --model runs/pneumonia75   # writes runs/pneumonia75/model_int8.tflite"

    def __post_init__(self) -> None:
        if isinstance(self.verify_kernels, (list, str)):  # from JSON, or one name
            self.verify_kernels = tuple([self.verify_kernels] if isinstance(self.verify_kernels, str) else self.verify_kernels)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        unknown = [k for k in self.verify_kernels if k not in TFLITE_KERNELS]
        if unknown or "default" not in self.verify_kernels or len(set(self.verify_kernels)) != len(self.verify_kernels):
            raise ConfigError(f"--verify-kernels {','.join(self.verify_kernels)}: expected default, optionally with builtin "
                              "(default,builtin), each once")
        if self.mode not in TFLITE_MODES:
            raise ConfigError(f"--mode {self.mode!r}: expected one of {', '.join(TFLITE_MODES)}")
        if self.input_type not in TFLITE_INPUT_TYPES:
            raise ConfigError(f"--input-type {self.input_type!r}: expected one of {', '.join(TFLITE_INPUT_TYPES)}")
        if self.mode != "int8" and self.input_type != "uint8":
            raise ConfigError(f"--input-type {self.input_type} applies to --mode int8 only; --mode {self.mode} takes float32 pixels")
        if self.mode != "int8" and self.fallback != "off":
            raise ConfigError(f"--fallback {self.fallback} applies to --mode int8 only; --mode {self.mode} has no int8 activations")

    @property
    def artifact_name(self) -> str:
        if self.mode != "int8":
            return f"model_{self.mode}.tflite"
        stem = "model_int8" if self.input_type == "uint8" else "model_int8_int8input"
        return f"{stem}{self.name_suffix}.tflite"


@dataclass
class OnnxExportConfig(ExportConfig):
    # percentile (99.9999th, asymmetric) passed the drift limits on more calibration draws than minmax
    # (8 vs 5 of 10 on the 75x75 reference model). onnxruntime 1.32's entropy, with its fixed 128 bins,
    # comes out equal to minmax.
    calibration_method: str = field(default="percentile", metadata=option(
        "how activation ranges come from the calibration images; minmax and entropy add a name suffix", FORMAT,
        choices=CALIBRATION_METHODS))
    opset: int = field(default=MIN_OPSET, metadata=option(f"ONNX opset (>= {MIN_OPSET})", FORMAT, type=int))
    max_fp32_delta: float = field(default=1e-3, metadata=option(
        "largest |logit difference| allowed between fp32 ONNX and the SavedModel, on every verification image", FORMAT,
        type=float))

    kind: ClassVar[str] = "onnx"
    cli_description: ClassVar[str] = (
        "Convert a trained model to fp32 ONNX with tf2onnx (checked against the SavedModel's logits on real images), then "
        "to int8 ONNX (QDQ, uint8 activations, per-channel int8 weights: onnxruntime computes it alike on the Pi's aarch64 "
        "and on x86) by static quantization on a class-balanced sample of its training images. Both are verified against "
        "the float SavedModel on val, test and the unused training images and written atomically with NAME.onnx.json "
        "(checksum, metadata, config, report).")
    cli_example: ClassVar[str] = "python -m export.onnx --model runs/pneumonia75   # writes model_fp32.onnx and model_int8.onnx there"
    # "target" (pi or x86) once chose int8 or uint8 activations; both have written the same uint8 graph since
    # the Pi computed the int8 one differently from its x86 verification (export.onnx.convert.ACTIVATIONS)
    retired: ClassVar[frozenset[str]] = frozenset({"target"})

    def validate(self) -> None:
        super().validate()
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ConfigError(f"--calibration-method {self.calibration_method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
        if not isinstance(self.opset, int) or self.opset < MIN_OPSET:
            raise ConfigError(f"--opset {self.opset}: expected an integer >= {MIN_OPSET}")
        if not self.max_fp32_delta > 0:
            raise ConfigError(f"--max-fp32-delta {self.max_fp32_delta}: expected a positive number")

    @property
    def fp32_name(self) -> str:
        return "model_fp32.onnx"

    @property
    def int8_name(self) -> str:
        method = "" if self.calibration_method == "percentile" else f"_{self.calibration_method}"
        return f"model_int8{method}{self.name_suffix}.onnx"


def config_of_kind(raw: dict[str, Any]) -> ExportConfig:
    """The config a sidecar saved (``{"kind": "tflite" | "onnx", ...fields}``), rebuilt."""
    kinds: dict[str, type[ExportConfig]] = {c.kind: c for c in (TFLiteExportConfig, OnnxExportConfig)}
    kind = raw.get("kind")
    if kind not in kinds:
        raise ConfigError(f"export config kind {kind!r}: expected one of {', '.join(kinds)}")
    return kinds[kind].from_dict({k: v for k, v in raw.items() if k != "kind"})
