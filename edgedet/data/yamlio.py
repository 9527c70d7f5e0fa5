"""dataset.yaml files read and written with PyYAML (`safe_load` / `safe_dump`), Ultralytics' own files included.

A read file must hold a mapping at the top level; any YAML error becomes one EdgedetError line naming the
file and the line. Written files keep the given key order, block style, one entry per line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import yaml

from edgedet.device.errors import EdgedetError


def read_yaml(path: Path) -> Dict[str, Any]:
    """Parse a dataset.yaml file into a dict; EdgedetError naming the file (and line) when unreadable or malformed."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise EdgedetError(f"{path}: cannot read ({error.strerror})") from error
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str = "<yaml>") -> Dict[str, Any]:
    """The top-level mapping of YAML `text` ({} for an empty document); `source` names it in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise EdgedetError(f"{source}: {_error_position(error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EdgedetError(f"{source}: expected 'key: value' lines at the top level, got a {type(data).__name__}")
    return data


def _error_position(error: yaml.YAMLError) -> str:
    """'line N: problem' of a PyYAML error, N (1-based) being where the construct that failed begins."""
    mark = getattr(error, "context_mark", None) or getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem


def format_yaml(data: Dict[str, Any]) -> str:
    """`data` (plain dicts, lists and scalars) as block-style YAML text, keys in the given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def write_yaml(path: Path, data: Dict[str, Any], header: str = "") -> None:
    """Write `data` as YAML (optionally after `# header` comment lines)."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    Path(path).write_text(comment + format_yaml(data))
