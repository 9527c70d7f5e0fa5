"""ARCHITECTURE.md's import rules, checked on the sources' AST (imports inside functions count):

- the device runtime and the CLI load no torch, onnx, tensorflow or matplotlib;
- the repo's folders import one another in one direction only (edgedet -> export -> calibration -> device,
  edgedet -> device), and the device runtime never imports the host side;
- the project's modules form no import cycle;
- an import inside a function is only ever of a heavy optional library, or of a project module that loads
  one at import time (torch-backed models and export code).
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnx", "tensorflow", "matplotlib")
# repo folder -> the import package it is installed as
FOLDER_PACKAGES = {"edgedet": "edgedet", "device": "edgedet.device", "export": "edgedet.export",
                   "calibration": "edgedet.calibration"}
# folder -> the folders it may import (ARCHITECTURE.md)
ALLOWED_FOLDER_IMPORTS = {
    "edgedet": {"export", "calibration", "device"},
    "export": {"calibration", "device"},
    "calibration": {"device"},
    "device": set(),
}
# The only imports allowed inside functions: heavy or optional libraries that a light command must not load.
DEFERRED_OK = {"torch", "onnx", "onnxruntime", "onnxscript", "ai_edge_litert", "tflite_runtime", "litert_torch",
               "ai_edge_quantizer", "torchao", "onnx2torch", "tensorflow", "matplotlib", "picamera2", "pycocotools", "tqdm",
               "paho",
               # stdlib modules of 20-40 ms each that only some flags need (--stream, --webhook, --config): kept off
               # the start-up path of `edgedet run`
               "http", "urllib", "yaml", "difflib"}


def _loaded_heavy_modules(code: str) -> list:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("code", [
    "import edgedet.device",
    "import edgedet.cli",
    "import edgedet.calibration",
    "from edgedet.cli import build_parser; build_parser('run')",
    "from edgedet.cli import build_parser; build_parser('eval')",
    "from edgedet.cli import build_parser; build_parser('report')",
])
def test_light_imports_load_no_heavy_module(code):
    assert _loaded_heavy_modules(code) == []


def module_files() -> dict:
    """Dotted module name -> source path, for every module of the four folders (packages by their __init__)."""
    modules = {}
    for folder, package in FOLDER_PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def folder_of(module: str) -> str:
    """The repo folder that holds `module` (the longest package prefix wins: edgedet.device is device/)."""
    for folder, package in sorted(FOLDER_PACKAGES.items(), key=lambda item: -len(item[1])):
        if module == package or module.startswith(package + "."):
            return folder
    raise ValueError(module)


def imports_of(module: str, path: Path) -> list:
    """(imported absolute module name, inside a function?) for every import statement in `path`."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(module, is_package, child.level, child.module)
                found.append((base, in_function))
                found.extend((f"{base}.{alias.name}", in_function) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def _resolve(module: str, is_package: bool, level: int, name) -> str:
    if level == 0:
        return name
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def project_graph() -> dict:
    """module -> {(project module it imports, inside a function?)}; `from pkg import name` counts only when
    `pkg.name` is a module, else as an import of `pkg`."""
    modules = module_files()
    graph = {}
    for module, path in modules.items():
        edges = set()
        for name, deferred in imports_of(module, path):
            if name in modules and name != module:
                edges.add((name, deferred))
        # `from pkg import function` also yields `pkg.function`, which is no module: only `pkg` counts then
        graph[module] = edges
    return graph


def test_import_graph_resolves_relative_and_deferred_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("import os\nfrom .boxes import box_iou\n\ndef load():\n    from ..export import exporter\n")
    assert imports_of("edgedet.device.probe", source) == [
        ("os", False), ("edgedet.device.boxes", False), ("edgedet.device.boxes.box_iou", False),
        ("edgedet.export", True), ("edgedet.export.exporter", True)]


@pytest.mark.parametrize("folder", sorted(ALLOWED_FOLDER_IMPORTS))
def test_folders_import_only_downstream_folders(folder):
    offenders = []
    for module, edges in project_graph().items():
        if folder_of(module) != folder:
            continue
        for imported, _ in sorted(edges):
            target = folder_of(imported)
            if target != folder and target not in ALLOWED_FOLDER_IMPORTS[folder]:
                offenders.append(f"{module} imports {imported}")
    assert offenders == []


@pytest.mark.parametrize("folder", ["device", "calibration"])
def test_device_and_calibration_sources_never_import_torch(folder):
    modules = module_files()
    offenders = [module for module, path in modules.items() if folder_of(module) == folder
                 and any(name.split(".")[0] == "torch" for name, _ in imports_of(module, path))]
    assert offenders == []


def _find_cycle(graph: dict):
    """One import cycle of `graph` (module -> set of modules) as a list of modules, or None."""
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_cycle_finder_finds_a_cycle_through_a_deferred_edge():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_project_modules_form_no_import_cycle():
    graph = {}
    for module, edges in project_graph().items():
        # a package's __init__ runs before its submodules anyway: an edge to an enclosing package is no cycle
        graph[module] = {name for name, _ in edges if not module.startswith(name + ".")}
    assert _find_cycle(graph) is None


def heavy_project_modules() -> set:
    """Project modules whose module-level imports (transitively) load a library of DEFERRED_OK."""
    modules = module_files()
    direct = {module: imports_of(module, path) for module, path in modules.items()}
    heavy = {module for module, found in direct.items()
             if any(name.split(".")[0] in DEFERRED_OK for name, deferred in found if not deferred)}
    grew = True
    while grew:
        grew = False
        for module, found in direct.items():
            if module not in heavy and any(name in heavy for name, deferred in found if not deferred):
                heavy.add(module)
                grew = True
    return heavy


def test_imports_inside_functions_are_of_heavy_modules_only():
    modules, heavy = module_files(), heavy_project_modules()
    offenders = set()
    for module, path in modules.items():
        for name, deferred in imports_of(module, path):
            if not deferred or name.split(".")[0] in DEFERRED_OK or name in heavy:
                continue
            if name in modules or name.split(".")[0] not in FOLDER_PACKAGES:
                offenders.add(f"{module}: {name}")
    assert sorted(offenders) == []
