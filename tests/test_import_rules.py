"""ARCHITECTURE.md's import rules: the device side and the CLI load no torch, onnx, tensorflow or matplotlib."""
import subprocess
import sys

import pytest

HEAVY = ("torch", "onnx", "tensorflow", "matplotlib")


def _loaded_heavy_modules(code: str) -> list:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("code", [
    "import device",
    "import edgedet.cli",
    "import calibration",
    "from edgedet.cli import build_parser; build_parser('run')",
    "from edgedet.cli import build_parser; build_parser('eval')",
    "from edgedet.cli import build_parser; build_parser('report')",
])
def test_light_imports_load_no_heavy_module(code):
    assert _loaded_heavy_modules(code) == []


def test_device_and_calibration_sources_never_import_torch():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for package in ("device", "calibration"):
        for path in (root / package).rglob("*.py"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                if stripped.startswith(("import torch", "from torch")):
                    offenders.append(f"{path.relative_to(root)}: {stripped}")
    assert offenders == []
