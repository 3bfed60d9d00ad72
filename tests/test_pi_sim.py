"""The runtime on an emulated Raspberry Pi (64-bit Pi OS: Debian bookworm arm64, Python 3.11).

Why: the Pi is the product's target, and neither CI nor a developer has one. ``../shared/tools/pi-sim``
runs the real aarch64 interpreter and wheels under qemu user mode, so this module checks what a user
would do there: install the wheel built from this checkout with the ``[pi]`` (or ``[pi-legacy]``)
extra, offline, without TensorFlow coming along, then run ``python -m runtime predict`` and get the
same answers as on x86, for each backend. Emulation is ~100x slower than native: never a timing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import distributions
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PI_SIM = ROOT.parent / "shared" / "tools" / "pi-sim"
# Where pi-sim keeps its rootfs, wheels and venvs (the same default as the script's).
PI_DIR = Path(os.environ.get("PI_SIM_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pi-sim")
TIMEOUT = 900
# env -> (extra, wheel directory pi-sim downloaded, distributions the extra must bring)
# The litert env also takes the [dicom] extra: .ci/run puts pydicom among pi-sim's wheels (PI_SIM_EXTRA).
ENVS = {"litert": ("pi,dicom", "wheels", {"ai-edge-litert", "onnxruntime", "numpy", "pillow", "pydicom"}),
        "tflrt": ("pi-legacy", "wheels_tfl", {"tflite-runtime", "numpy", "pillow"})}
# The host has no tflite-runtime (it needs numpy<2). tflite-runtime 2.14 does not put int8 models on
# XNNPACK: its results equal ai-edge-litert's built-in kernels (`--kernels builtin`), bit for bit (all
# 468 test images, x86, and this emulated Pi), while ai-edge-litert's default (XNNPACK) differs from it
# by up to 21 output quantization steps (1.13 logit) and flips 6 of 468 decisions at youden on the
# 75x75 model. So the x86 reference for tflite-runtime is the host CLI with `--kernels builtin`.
HOST_EQUIVALENT = {"ai-edge-litert": ["--backend", "ai-edge-litert"], "onnxruntime": ["--backend", "onnxruntime"],
                   "tflite-runtime": ["--backend", "ai-edge-litert", "--kernels", "builtin"]}

pytestmark = [pytest.mark.pi_sim,
              pytest.mark.skipif(not PI_SIM.is_file(), reason=f"{PI_SIM} not found (it sits beside the repository in CI)")]


def _run(cmd: list[str], cwd: Path, **env: str) -> str:
    """Run ``cmd`` without the machine's pip settings (index, find-links, constraints); stdout, or fail with stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull} | env
    proc = subprocess.run(cmd, check=False, cwd=cwd, env=clean, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(cmd[:6])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built from a copy so no build/ or egg-info lands in the checkout."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for p in ROOT.iterdir():
        if (p / "__init__.py").is_file():
            shutil.copytree(p, src / p.name, ignore=shutil.ignore_patterns("__pycache__"))
        elif p.name in ("pyproject.toml", "README.md", "LICENSE", "NOTICE"):
            shutil.copy2(p, src / p.name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)], out)
    (whl,) = out.glob("inception_edge-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """env -> its --target directory; each env is installed (offline, emulated pip) once per module."""
    for env in ENVS:
        if not (PI_DIR / f"venv_{env}" / "bin" / "python").is_file():
            pytest.fail(f"pi-sim is not set up ({PI_DIR}/venv_{env} missing): run `{PI_SIM} setup` "
                        "(root, 2-4 minutes), or deselect with -m 'not pi_sim'")
    targets: dict[str, Path] = {}
    for env, (extra, wheels, _) in ENVS.items():
        targets[env] = tmp_path_factory.mktemp(f"pi_{env}") / "site"
        _run([str(PI_SIM), "pip", env, "install", "-q", "--no-compile", "--no-index", "--find-links", str(PI_DIR / wheels),
              "--target", str(targets[env]), f"{wheel}[{extra}]"], targets[env].parent)
    return targets


@pytest.fixture(scope="module")
def images(xray_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """4 negative + 4 positive test images as 28x28 grayscale PNG, and one as 64x48 RGB (resizing, colour)."""
    from runtime.datasets import load_dataset

    test = load_dataset(xray_data).splits["test"]
    out = tmp_path_factory.mktemp("pi_images")
    paths = []
    for i in [*np.flatnonzero(test.labels == 0)[:4], *np.flatnonzero(test.labels == 1)[:4]]:
        paths.append(out / f"test{i}_label{test.labels[i]}.png")
        Image.fromarray(np.asarray(test.images[i], dtype=np.uint8)).save(paths[-1])
    paths.append(out / "rgb_64x48.png")
    Image.open(paths[0]).convert("RGB").resize((64, 48)).save(paths[-1])
    return [str(p) for p in paths]


@pytest.mark.parametrize("env", ENVS)
def test_installs_offline_from_wheel_without_tensorflow(env: str, installed: dict[str, Path], tmp_path: Path) -> None:
    target = installed[env]
    names = {d.metadata["Name"].lower().replace("_", "-") for d in distributions(path=[str(target)])}
    assert {"inception-edge"} | ENVS[env][2] <= names
    assert not [n for n in names if n.startswith("tensorflow")], names
    assert not list(target.glob("tensorflow*")), sorted(p.name for p in target.glob("tensorflow*"))
    # run from outside the checkout, so its runtime/ cannot be imported by accident
    where = _run([str(PI_SIM), "python", env, "-c", "import platform, runtime; print(platform.machine(), runtime.__file__)"],
                 tmp_path, PYTHONPATH=str(target))
    assert where.split() == ["aarch64", str(target / "runtime" / "__init__.py")]
    # the bundled chest X-rays came with the wheel and pass their sha256 check on the Pi
    data = _run([str(PI_SIM), "python", env, "-c", "from runtime.datasets import load_dataset; "
                 "d = load_dataset('pneumoniamnist'); print(d.path, len(d.splits['test']))"], tmp_path, PYTHONPATH=str(target))
    assert data.split() == [str(target / "runtime" / "data" / "pneumoniamnist_balanced.npz"), "468"]


# model_int8.onnx is the ONNX file meant for the Pi: its verification ran on this host, so the Pi must
# compute exactly the host's answers (uint8 activations; an int8-activation graph once differed here by
# up to 0.026 in probability).
@pytest.mark.parametrize(("env", "package", "model"), [("litert", "ai-edge-litert", "model_int8.tflite"),
                                                       ("tflrt", "tflite-runtime", "model_int8.tflite"),
                                                       ("litert", "onnxruntime", "model_int8.onnx")])
def test_predictions_match_x86(env: str, package: str, model: str, installed: dict[str, Path], images: list[str],
                               request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if model.endswith(".tflite"):
        path = request.getfixturevalue("tflite_result").path
    else:
        path = next(r.path for r in request.getfixturevalue("onnx_results") if r.path.name == model)
    args = ["predict", str(path), *images, "--json"]
    pi = json.loads(_run([str(PI_SIM), "python", env, "-m", "runtime", *args, "--backend", package], tmp_path,
                         PYTHONPATH=str(installed[env])))
    host = json.loads(_run([sys.executable, "-m", "runtime", *args, *HOST_EQUIVALENT[package]], ROOT))
    assert [r["path"] for r in pi] == [r["path"] for r in host] == images
    # With qemu's cortex-a76 the int8 outputs are bit identical to x86 (the same integer kernels);
    # only numpy's sigmoid may round the probability differently on aarch64 (1 ulp seen for onnxruntime).
    for p, h in zip(pi, host):
        assert {k: v for k, v in p.items() if k != "probability"} == {k: v for k, v in h.items() if k != "probability"}
        assert p["probability"] == pytest.approx(h["probability"], rel=1e-12, abs=0)


def test_dicom_gives_the_pngs_answers_on_the_pi(installed: dict[str, Path], tflite_result, tmp_path: Path) -> None:
    """Every DICOM case the tests write, next to the PNG of its expected pixels, through the emulated Pi's CLI (one run
    per --dicom-window setting): each DICOM file gets its PNG's probability, refused ones fail with their reason, and
    the Pi's logits equal the host's."""
    sys.path.insert(0, str(Path(__file__).parent))
    from dicom_files import SECRETS, cases, write_case

    from runtime.datasets import load_dataset

    xray = np.kron(load_dataset("pneumoniamnist").split("test").images[7], np.ones((4, 4), dtype=np.uint8))
    every = cases(xray)
    for window in sorted({c.window for c in every}):
        chosen = [c for c in every if c.window == window]
        folder = tmp_path / window.replace(",", "_")
        folder.mkdir()
        for case in chosen:
            write_case(folder, case)
            if case.expected is not None:
                Image.fromarray(case.expected).save(folder / f"{case.name}.png")
        args = ["predict", str(tflite_result.path), str(folder), "--format", "jsonl", "--no-progress", "--dicom-window", window]
        refused = any(c.expected is None for c in chosen)
        pi_out = _run_any([str(PI_SIM), "python", "litert", "-m", "runtime", *args], tmp_path, refused,
                          PYTHONPATH=str(installed["litert"]))
        host_out = _run_any([sys.executable, "-m", "runtime", *args], ROOT, refused)
        assert not [s for s in SECRETS if s in pi_out + host_out]
        pi = {Path(r["path"]).name: r for r in map(json.loads, pi_out.splitlines())}
        host = {Path(r["path"]).name: r for r in map(json.loads, host_out.splitlines())}
        assert pi.keys() == host.keys() and len(pi) == len(chosen) + sum(c.expected is not None for c in chosen)
        for case in chosen:
            row = pi[f"{case.name}.dcm"]
            if case.expected is None:
                assert row["status"] == "error" and case.refused in row["error"], row
                continue
            png = pi[f"{case.name}.png"]
            assert (row["status"], row["label"], row["probability"]) == ("ok", png["label"], png["probability"]), case.name
            assert (row["label"], row["logit"]) == (host[f"{case.name}.dcm"]["label"], host[f"{case.name}.dcm"]["logit"])


def _run_any(cmd: list[str], cwd: Path, some_fail: bool, **env: str) -> str:
    """Like _run, but with exit status 4 expected where some files must fail (the refused DICOM cases)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull} | env
    proc = subprocess.run(cmd, check=False, cwd=cwd, env=clean, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == (4 if some_fail else 0), f"{' '.join(cmd[:6])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout
