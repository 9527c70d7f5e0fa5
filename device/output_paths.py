"""Where outputs may be written: checked before the work starts, so that a bad path fails at once in one line
and no output ever replaces an input.

- `make_output_folder(path, flag)`: a folder an option writes into, made with its parents.
- `check_output_file(path, flag)`: a file an option will write: not a folder, in a folder that exists (made here)
  and can be written; a file is made and removed to tell, since permissions alone miss read-only and pseudo file
  systems (/proc), even for root.
- `check_outputs_spare_inputs(outputs, inputs)`: no output is an input file (the source video, the model, the
  ground truth), by path, symlink or hard link, nor an image of an input folder, and no two outputs are one file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from .errors import EdgedetError
from .image_files import IMAGE_SUFFIXES

Named = Tuple[str, Optional[object]]  # (what, e.g. "--json" or "the source", path or None)


def make_output_folder(path, flag: str) -> Path:
    """Create (with parents) the folder an option writes into, or raise an EdgedetError naming the flag."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EdgedetError(f"{flag}: cannot create folder {path}: {error.strerror or error}") from None
    return folder


def check_output_file(path, flag: str) -> None:
    """EdgedetError naming `flag` unless `path` can become a file (see the module's docstring)."""
    path = Path(path)
    if path.is_dir():
        raise EdgedetError(f"{flag} {path} is a folder: give a file name")
    folder = make_output_folder(path.parent, flag)
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise EdgedetError(f"{flag}: cannot write in folder {folder}: {error.strerror or error}") from None


def check_outputs_spare_inputs(outputs: Sequence[Named], inputs: Sequence[Named]) -> None:
    """EdgedetError when an output (flag, path) would replace an input (what, path: a file, or a folder whose images
    are read) or another output; None paths are skipped."""
    input_files = [(what, path) for what, path in inputs if path is not None and os.path.isfile(path)]
    input_folders = [(what, os.path.realpath(path)) for what, path in inputs if path is not None and os.path.isdir(path)]
    written: Dict[str, str] = {}
    for flag, path in outputs:
        if path is None:
            continue
        for what, source in input_files:
            if _same_file(path, source):
                raise EdgedetError(f"{flag} {path} is {what}: writing it would destroy what is being read")
        folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        for what, source in input_folders:
            if folder == source and Path(path).suffix.lower() in IMAGE_SUFFIXES:
                raise EdgedetError(f"{flag} {path} is an image of {what}: writing it would destroy what is being read")
        real = os.path.realpath(path)
        if real in written:
            raise EdgedetError(f"{written[real]} and {flag} name the same file {path}: give each its own")
        written[real] = flag


def _same_file(a, b) -> bool:
    """The same file: one path, a symlink to it, or a hard link (same device and inode)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # `a` does not exist yet
        return False
