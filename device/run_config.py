"""`edgedet run --config RUN.yaml`: every `edgedet run` flag as a key of a YAML file, under the command line.

    model: /home/pi/edgedet-n-320-int8.tflite
    camera: 0
    stream: 0.0.0.0:8080
    classes: [circle, square]      # a flag that takes several values: a list (or one value)
    pin: false                     # a switch: true / false (`pin: false` is --no-pin)
    stall_timeout: 20

The keys are the flags' argparse dest names (`max_det` or `max-det`), read from the parser itself, so a flag
added to `edgedet run` is a key at once. A value has the flag's type: a string is converted as on the command
line, a number must fit the flag (an integer for `--max-det`), a repeatable flag takes a list. A flag given on
the command line wins over the file (a repeatable one replaces the file's list), and so does a flag of a
mutually exclusive group (`--source` on the command line drops the file's `camera`). Required flags (`--model`,
one of `--camera`/`--source`) may come from either. An unknown key, a wrong type, an unreadable file or bad YAML
is an EdgedetError naming the file, the line and the key.

How the command line is told from the file: `defer_to_config(parser)`, called once the flags exist, replaces each
value flag's default with `Unset(default)`, so a flag given with its default value still counts as given, and
relaxes `required` (checked by `apply_config` once the file has been read).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import EdgedetError

CONFIG_DEST = "config"  # the --config flag itself: not a key of the file


@dataclass(frozen=True)
class Unset:
    """A flag the command line did not give: its default, until the config file has had its say."""

    default: object  # the flag's default, as declared

    def __str__(self) -> str:  # help texts that show %(default)s
        return str(self.default)


# ---- the parser side


def defer_to_config(parser: argparse.ArgumentParser) -> None:
    """Make every flag of `parser` (already added) settable from --config: value flags get `Unset` defaults and
    required flags and groups are checked after the file is read (their `config_required` attribute)."""
    stores = _store_actions(parser)
    for action in stores:
        action.default = Unset(action.default)
        action.config_required, action.required = action.required, False
    for group in parser._mutually_exclusive_groups:
        if all(action in stores for action in group._group_actions):
            group.config_required, group.required = group.required, False


def _store_actions(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    """Flags that take a value and replace it when given (argparse's plain "store"): the others (switches,
    append, count) read their previous value, so their default must stay what it is."""
    return [a for a in parser._actions if type(a) is argparse._StoreAction and a.dest != CONFIG_DEST]


def flag_actions(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    """dest -> action of every flag that can be a key of the config file."""
    return {a.dest: a for a in parser._actions
            if a.option_strings and a.dest not in (argparse.SUPPRESS, CONFIG_DEST) and a.default != argparse.SUPPRESS}


# ---- merging


def apply_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """`args` (parsed by `parser`, or a parser built the same way) with every flag the command line did not give
    taken from the --config file, else from its default; then the required flags checked."""
    actions = flag_actions(parser)
    values = {dest: getattr(args, dest, action.default) for dest, action in actions.items()}
    given = {dest for dest, value in values.items() if _given(value, actions[dest])}
    groups = [[a.dest for a in g._group_actions] for g in parser._mutually_exclusive_groups]
    path = getattr(args, CONFIG_DEST, None)
    from_file = read_config(path, actions, groups) if path else {}
    for dest in actions:
        taken = dest in given or any(dest in group and given & set(group) for group in groups)
        if not taken and dest in from_file:
            values[dest] = from_file[dest]
        elif isinstance(values[dest], Unset):
            values[dest] = _default_value(actions[dest], values[dest].default)
    _check_required(parser, actions, values, path)
    return argparse.Namespace(**{**vars(args), **values})


def _given(value, action: argparse.Action) -> bool:
    """Whether the command line gave this flag (for flags `defer_to_config` did not mark: its value differs)."""
    return not isinstance(value, Unset) and value != action.default


def _default_value(action: argparse.Action, default):
    """The default as argparse would have left it (a string default goes through the flag's type)."""
    if isinstance(default, str) and action.type is not None:
        return action.type(default)
    return default


def _check_required(parser, actions: Dict[str, argparse.Action], values: dict, path: Optional[str]) -> None:
    where = f"on the command line or in the --config file {path}" if path else "(or in a --config file)"
    for dest, action in actions.items():
        if getattr(action, "config_required", False) and values[dest] is None:
            raise EdgedetError(f"{action.option_strings[0]} is required {where}")
    for group in parser._mutually_exclusive_groups:
        if getattr(group, "config_required", False) and all(values[a.dest] is None for a in group._group_actions):
            flags = " or ".join(a.option_strings[0] for a in group._group_actions)
            raise EdgedetError(f"{flags} is required {where}")


# ---- the file


def read_config(path, actions: Dict[str, argparse.Action], groups: Sequence[Sequence[str]] = ()) -> dict:
    """RUN.yaml -> {dest: value converted as the flag's own} for the keys it sets (a `null` value sets nothing).

    actions: dest -> action (`flag_actions`); groups: dests of each mutually exclusive group (two keys of one
    group are an error)."""
    values, lines = {}, {}
    for key, value, line in _entries(path):
        where = f"--config {path}, line {line}"
        dest = _dest(key, actions, where)
        if dest in lines:
            raise EdgedetError(f"{where}: {key!r} is set twice (first on line {lines[dest]})")
        lines[dest] = line
        if value is not None:
            values[dest] = config_value(actions[dest], value, f"{where}: {key}")
    for group in groups:
        both = sorted((dest for dest in group if dest in values), key=lines.get)
        if len(both) > 1:
            raise EdgedetError(f"--config {path}, line {lines[both[1]]}: {both[1]!r} and {both[0]!r} exclude each "
                               "other; give one")
    return values


def _entries(path) -> List[Tuple[object, object, int]]:
    """(key, value, line) of each top-level entry of the YAML file, in file order."""
    import yaml  # PyYAML (~25 ms) loads only when a --config file is given

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgedetError(f"--config {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise EdgedetError(f"--config {path}: cannot read it: {getattr(error, 'strerror', None) or error}") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return []
        if not isinstance(root, yaml.MappingNode):
            raise EdgedetError(f"--config {path}, line {root.start_mark.line + 1}: expected `flag: value` lines "
                               f"(a YAML mapping), got a {_node_kind(root)}")
        return [(loader.construct_object(key, deep=True), loader.construct_object(value, deep=True),
                 key.start_mark.line + 1) for key, value in root.value]
    except yaml.YAMLError as error:
        raise EdgedetError(_yaml_message(path, error)) from None
    finally:
        loader.dispose()


def _node_kind(node) -> str:
    import yaml

    return "list" if isinstance(node, yaml.SequenceNode) else "single value"


def _yaml_message(path, error) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    line = f", line {mark.line + 1}" if mark is not None else ""
    return f"--config {path}{line}: not valid YAML: {problem}"


def _dest(key, actions: Dict[str, argparse.Action], where: str) -> str:
    """The dest a key names (`max-det` and `max_det` both name max_det); an EdgedetError for any other key."""
    if not isinstance(key, str):
        raise EdgedetError(f"{where}: {key!r} is not a flag name")
    dest = key.strip().lstrip("-").replace("-", "_")
    if dest in actions:
        return dest
    if dest == "verbose":  # read from the command line before any library loads, so before this file
        raise EdgedetError(f"{where}: 'verbose' cannot come from the file (the libraries' logging is set up before "
                           f"it is read): give --verbose on the command line")
    raise EdgedetError(f"{where}: unknown key {key!r}: not an `edgedet run` flag{_hint(dest, actions)}")


def _hint(dest: str, actions: Dict[str, argparse.Action]) -> str:
    """"; did you mean ...?" for a misspelt key, or the key of a flag whose name is not its dest (--no-pin)."""
    for name, action in actions.items():
        if any(option.lstrip("-").replace("-", "_") == dest for option in action.option_strings):
            return f"; {action.option_strings[0]} is the key {name!r} (e.g. {name}: false)"
    import difflib  # ~25 ms, only for a misspelt key

    close = difflib.get_close_matches(dest, list(actions), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def config_value(action: argparse.Action, value, where: str):
    """A YAML value -> what the flag would hold had it been given on the command line, or an EdgedetError.

    Switches take true/false; a flag given many times (append) takes a list, one item per time; a flag of
    several values (nargs) takes a list (or one value)."""
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise EdgedetError(f"{where}: expected true or false, got {value!r}")
        return value if isinstance(action.const, bool) else (action.const if value else action.default)
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_one_occurrence(action, item, where) for item in items]
    return _one_occurrence(action, value, where)


def _one_occurrence(action: argparse.Action, value, where: str):
    """The value of one use of the flag: a scalar, or a list for flags with nargs."""
    if action.nargs in (None, "?"):
        return _scalar(action, value, where)
    items = value if isinstance(value, list) else [value]
    return [_scalar(action, item, where) for item in items]


def _scalar(action: argparse.Action, value, where: str):
    kind = _type_name(action)
    if isinstance(value, (list, dict)) or isinstance(value, bool) or value is None:
        shown = "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else repr(value)
        raise EdgedetError(f"{where}: expected {kind}, got {shown}")
    if isinstance(value, (int, float)) and action.type in (int, float):
        if action.type is int and not isinstance(value, int):
            raise EdgedetError(f"{where}: expected {kind}, got {value!r}")
        result = action.type(value)
    else:
        result = _convert_text(action, str(value), where, kind)
    if action.choices is not None and result not in action.choices:
        raise EdgedetError(f"{where}: {result!r} is not one of {', '.join(map(str, action.choices))}")
    return result


def _convert_text(action: argparse.Action, text: str, where: str, kind: str):
    """A string through the flag's type, as argparse converts a command-line value."""
    if action.type is None:
        return text
    try:
        return action.type(text)
    except (ValueError, TypeError):
        raise EdgedetError(f"{where}: expected {kind}, got {text!r}") from None
    except (argparse.ArgumentTypeError, EdgedetError) as error:
        raise EdgedetError(f"{where}: {error}") from None


def _type_name(action: argparse.Action) -> str:
    names = {int: "an integer", float: "a number", str: "a string", None: "a string"}
    return names.get(action.type, f"a {getattr(action.type, '__name__', 'value')}")
