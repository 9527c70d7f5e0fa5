"""Threads left behind inside a native call that did not return in time (a camera or stream that never answers
its open): the `edgedet` command then ends its process without waiting for them.

A Python daemon thread still inside OpenCV/FFmpeg when the interpreter shuts down makes the process abort
("terminate called without an active exception", exit 134, sometimes a segfault) after edgedet's own message.
`exit_if_stuck` ends the process at once instead, with the exit code the command meant, once the output is
flushed; only the console entry point calls it (an in-process caller, a test, keeps its process).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from typing import List

_left_behind: List[threading.Thread] = []


def leave_behind(thread: threading.Thread) -> None:
    """`thread` is abandoned inside a native call; the process must not wait for it, nor shut down around it."""
    _left_behind.append(thread)


def any_stuck() -> bool:
    """Whether a thread left behind is still running."""
    return any(thread.is_alive() for thread in _left_behind)


def exit_if_stuck(code: int) -> int:
    """End the process now with `code` (output flushed) when a thread left behind is still running; else `code`."""
    if not any_stuck():
        return code
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
