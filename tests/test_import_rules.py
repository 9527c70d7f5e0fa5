"""ARCHITECTURE.md's import rules: the device side and the CLI load no torch, onnx, tensorflow or matplotlib,
and the packages of this repo import one another in one direction only (edgedet -> export -> calibration -> device)."""
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


@pytest.mark.parametrize("package", ["device", "calibration"])
def test_device_and_calibration_sources_never_import_torch(package):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = [str(path.relative_to(root)) for path in sorted((root / package).rglob("*.py"))
                 if "torch" in _imported_top_level_names(path.read_text())]
    assert offenders == []


# package -> the packages of this repo it may import (ARCHITECTURE.md: edgedet -> export -> calibration -> device,
# edgedet -> device); imports inside functions count too.
ALLOWED_REPO_IMPORTS = {
    "edgedet": {"export", "calibration", "device"},
    "export": {"calibration", "device"},
    "calibration": {"device"},
    "device": set(),
}


def _imported_top_level_names(source: str) -> set:
    """Top-level package of every absolute import anywhere in `source`, function bodies included."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_import_scan_sees_imports_inside_functions():
    source = "import os\n\ndef load():\n    from edgedet.models import load_checkpoint\n    import export.exporter\n"
    assert _imported_top_level_names(source) == {"os", "edgedet", "export"}


@pytest.mark.parametrize("package", sorted(ALLOWED_REPO_IMPORTS))
def test_packages_import_only_downstream_packages_of_this_repo(package):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    forbidden = set(ALLOWED_REPO_IMPORTS) - ALLOWED_REPO_IMPORTS[package] - {package}
    offenders = []
    for path in sorted((root / package).rglob("*.py")):
        bad = _imported_top_level_names(path.read_text()) & forbidden
        offenders += [f"{path.relative_to(root)} imports {name}" for name in sorted(bad)]
    assert offenders == []
