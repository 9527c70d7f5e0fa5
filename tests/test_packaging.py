"""The built wheel: one top-level import package, `edgedet`, with the repo's device/, export/ and calibration/
folders installed under it, and nothing of the repo left out of it."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"edgedet": "edgedet", "device": "edgedet/device", "export": "edgedet/export",
           "calibration": "edgedet/calibration"}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set:
    """File names inside a wheel built from a copy of the sources (a build in the checkout could reuse stale
    files of an earlier build/ folder)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = out.glob("edgedet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_has_one_top_level_import_package(wheel_names):
    top = {name.split("/")[0] for name in wheel_names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"edgedet"}


def test_wheel_holds_every_module_of_the_repo_folders_under_edgedet(wheel_names):
    expected = {f"{FOLDERS[path.relative_to(ROOT).parts[0]]}/{'/'.join(path.relative_to(ROOT).parts[1:])}"
                for folder in FOLDERS for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts}
    assert expected - wheel_names == set()
    assert "edgedet/weights/edgedet-n-320.pt" in wheel_names
