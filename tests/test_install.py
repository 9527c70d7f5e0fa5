"""Issue 15, install as written: the wheel `make wheel` builds, installed as the README's Raspberry Pi section
says (`pip install "edgedet-<version>-py3-none-any.whl[onnx]"`) into a fresh venv, runs `edgedet run` on images
without torch. Needs PyPI (or pip's cache) for the dependencies; a few minutes on a cold cache."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "edgedet", "device", "export", "calibration")
pytestmark = pytest.mark.slow  # builds a wheel and a venv

IMAGE_SIZES_WH = [(200, 150), (96, 160), (320, 240)]  # images of different sizes, as a user's folder has


def clean_env() -> dict:
    """The environment without anything that would let the checkout's edgedet or .venv leak into the test venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(args, cwd, timeout=300):
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env=clean_env())
    assert result.returncode == 0, f"{args}: {result.stdout[-1500:]}\n{result.stderr[-2500:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built by `make wheel`'s command (`python -m pip wheel --no-deps -w dist .`) from a copy of the
    sources (a build in the checkout could pick up stale files of an earlier build/)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, source / name)
    dist = source / "dist"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, "."], cwd=source)
    (built,) = dist.glob("edgedet-*-py3-none-any.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel and its [onnx] extra, installed exactly as the README says, from its folder."""
    path = tmp_path_factory.mktemp("venv") / "edgedet"
    run([sys.executable, "-m", "venv", path], cwd=path.parent)
    run([path / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel.name}[onnx]"], cwd=wheel.parent, timeout=600)
    return path


def test_wheel_metadata_is_complete(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode("utf-8")
    head, _, description = metadata.partition("\n\n")
    fields = [line.split(": ", 1) for line in head.splitlines() if ": " in line]
    values = {}
    for key, value in fields:
        values.setdefault(key, []).append(value)
    assert values["License-Expression"] == ["MIT"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert values["Requires-Python"] == [">=3.11"]
    assert "Programming Language :: Python :: 3.11" in values["Classifier"]
    assert values["Description-Content-Type"] == ["text/markdown"]
    assert description.startswith("# edgedet") and "## On a Raspberry Pi" in description
    assert "Project-URL" not in values  # no public address exists yet; none is invented
    assert 'Requires-Dist: onnxruntime>=1.17; extra == "onnx"' in metadata


def test_installed_wheel_runs_edgedet_on_images_without_torch(venv, exported_models, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, (width, height) in enumerate(IMAGE_SIZES_WH):
        cv2.imwrite(str(images / f"img{i}.jpg"), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    where = run([venv / "bin" / "python", "-c", "import edgedet; print(edgedet.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).resolve().is_relative_to(venv.resolve())  # the wheel's copy, not the checkout's

    result = run([venv / "bin" / "edgedet", "run", "--model", exported_models["onnx"], "--source", images,
                  "--json", tmp_path / "dets.jsonl"], cwd=tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "dets.jsonl").read_text().splitlines()]
    assert len(lines) == len(IMAGE_SIZES_WH)
    assert sorted((line["width"], line["height"]) for line in lines) == sorted(IMAGE_SIZES_WH)
    assert all(isinstance(line["detections"], list) for line in lines)
    assert "Traceback" not in result.stderr

    no_torch = run([venv / "bin" / "python", "-c", "import importlib.util as u; "
                    "print([m for m in ('torch', 'onnx', 'tensorflow') if u.find_spec(m)])"], cwd=tmp_path)
    assert no_torch.stdout.strip() == "[]"
