"""A reader and writer for the small YAML subset of Ultralytics dataset.yaml files (no PyYAML needed).

Supported: `key: scalar` lines, `key:` followed by an indented block of `k: v` pairs or `- item`
lines (one level deep), inline lists `[a, b]` and inline maps `{0: a, 1: b}`, quoted strings and
`#` comments. Scalars become int, float, bool, None or str.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

from edgedet.device.errors import EdgedetError


def read_yaml(path: Path) -> Dict[str, Any]:
    """Parse a dataset.yaml file into a dict; EdgedetError naming the file and line on anything outside the subset."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise EdgedetError(f"{path}: cannot read ({error.strerror})") from error
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str = "<yaml>") -> Dict[str, Any]:
    """Parse YAML text of the supported subset (see the module docstring)."""
    result: Dict[str, Any] = {}
    block_key = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw).rstrip()
        if not line.strip() or line.strip() == "---":
            continue
        indented = line[0] in " \t"
        content = line.strip()
        if indented:
            if block_key is None:
                raise EdgedetError(f"{source}: line {number}: unexpected indentation")
            _add_block_item(result, block_key, content, f"{source}: line {number}")
            continue
        key, sep, value = content.partition(":")
        if not sep or not key.strip():
            raise EdgedetError(f"{source}: line {number}: expected 'key: value', got {content!r}")
        key, value = key.strip(), value.strip()
        block_key = key if value == "" else None
        result[key] = None if value == "" else _parse_value(value, f"{source}: line {number}")
    return result


def _strip_comment(line: str) -> str:
    """Drop a trailing `# comment` that is not inside quotes."""
    quote = None
    for i, char in enumerate(line):
        if char in "'\"":
            quote = None if quote == char else (quote or char)
        elif char == "#" and quote is None and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _add_block_item(result: Dict[str, Any], key: str, content: str, where: str) -> None:
    """Add one indented `- item` or `k: v` line to the block value of `key`."""
    if content.startswith("- ") or content == "-":
        if result[key] is None:
            result[key] = []
        if not isinstance(result[key], list):
            raise EdgedetError(f"{where}: list item inside a mapping")
        result[key].append(_parse_scalar(content[1:].strip()))
        return
    sub_key, sep, value = content.partition(":")
    if not sep:
        raise EdgedetError(f"{where}: expected 'key: value' or '- item', got {content!r}")
    if result[key] is None:
        result[key] = {}
    if not isinstance(result[key], dict):
        raise EdgedetError(f"{where}: mapping entry inside a list")
    result[key][_parse_scalar(sub_key.strip())] = _parse_scalar(value.strip())


def _parse_value(value: str, where: str) -> Any:
    """An inline list, inline map or scalar."""
    if value.startswith("["):
        if not value.endswith("]"):
            raise EdgedetError(f"{where}: unterminated list {value!r}")
        return [_parse_scalar(item) for item in _split_items(value[1:-1])]
    if value.startswith("{"):
        if not value.endswith("}"):
            raise EdgedetError(f"{where}: unterminated mapping {value!r}")
        pairs = [item.partition(":") for item in _split_items(value[1:-1])]
        return {_parse_scalar(k.strip()): _parse_scalar(v.strip()) for k, _, v in pairs}
    return _parse_scalar(value)


def _split_items(inner: str) -> List[str]:
    """Split an inline collection on commas outside quotes."""
    items = re.findall(r"""(?:'[^']*'|"[^"]*"|[^,])+""", inner)
    return [item.strip() for item in items if item.strip()]


def _parse_scalar(value: str) -> Any:
    """int, float, bool, None, or the (unquoted) string."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    lowered = value.lower()
    if lowered in ("null", "~", ""):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def format_yaml(data: Dict[str, Any]) -> str:
    """Render a flat dict (scalars, lists and dicts of scalars) in the subset `parse_yaml` reads back."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {_format_scalar(k)}: {_format_scalar(v)}" for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            lines.append(f"{key}: [{', '.join(_format_scalar(v) for v in value)}]")
        else:
            lines.append(f"{key}: {_format_scalar(value)}")
    return "\n".join(lines) + "\n"


def _format_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if text == "" or re.search(r"[:#\[\]{},'\"]|^\s|\s$", text) or _parse_scalar(text) != text:
        return '"' + text.replace('"', "'") + '"'
    return text


def write_yaml(path: Path, data: Dict[str, Any], header: str = "") -> None:
    """Write `data` as YAML (optionally after `# header` comment lines)."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    Path(path).write_text(comment + format_yaml(data))
