"""Writing artifacts atomically: a file appears under its final name only once it is complete.

Exports write to a hidden temporary name in the output folder and rename on success, so a failed
or interrupted export (bad input, converter error, Ctrl-C) never leaves a half-written model behind.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator, Sequence, Tuple


@contextlib.contextmanager
def atomic_outputs(*paths) -> Iterator[Tuple[Path, ...]]:
    """Yield one temporary path per final path (same folder, same suffix); rename them all on success.

    On any exception (including KeyboardInterrupt) the temporaries are deleted and nothing is renamed.
    """
    finals = [Path(p) for p in paths]
    tag = uuid.uuid4().hex[:8]
    temps = [final.with_name(f".{final.stem}.partial-{tag}{final.suffix}") for final in finals]
    try:
        yield tuple(temps)
        for temp in temps:
            if not temp.is_file():
                raise RuntimeError(f"export produced no file at {temp}")
    except BaseException:
        _remove(temps)
        raise
    for temp, final in zip(temps, finals):
        os.replace(temp, final)


def _remove(paths: Sequence[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def size_mb(path) -> float:
    """File size in MB (10^6 bytes); a .tflite's sidecar JSON is not counted."""
    return Path(path).stat().st_size / 1e6
