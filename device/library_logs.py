"""Quiet the libraries edgedet drives (OpenCV, onnxruntime, TFLite/LiteRT, torch, torchao, absl) unless --verbose.

The `edgedet` command runs export, calibrate and run inside `quiet_libraries(verbose)`, entered before the
verb's module is imported: some libraries read their log level from the environment only when they load.
It is process-wide by nature (environment variables, warnings filters, logging levels); the Python API
leaves the libraries as they are. Around the few calls whose chatter no setting reaches, the
callers wrap `quiet_prints()` (Python-level print) or `quiet_native_info()` (C-level INFO lines on stderr).
edgedet's own output (print, the "edgedet" loggers, one-line errors) is never touched.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import Iterator

import cv2

# Read by the libraries when they load (LiteRT-Torch: at each conversion); a variable the user set is kept.
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TF C++ lines of the LiteRT converter ("I0000 ... flatbuffer_export.cc:4410]")
    "TORCH_LOGS": "-all",  # torch's own loggers at ERROR ("W1203 ... torch/utils/_pytree.py:630] <enum ...")
    "OPENCV_LOG_LEVEL": "ERROR",  # OpenCV "[ WARN:0@...] global cap_v4l.cpp ..." before our own error
    "OPENCV_FFMPEG_LOGLEVEL": "-8",  # FFmpeg's av_log ("moov atom not found") through OpenCV: AV_LOG_QUIET
    "LITERT_TORCH_SHOW_PROGRESS": "n",  # LiteRT-Torch's "(00:02) [START] ... [ DONE]" conversion tree
}
# Python loggers of the libraries: only errors get through.
QUIET_LOGGERS = ("root", "absl", "torch", "torchao", "onnxruntime", "onnxscript", "litert_torch", "ai_edge_quantizer")

_quiet = False  # True inside quiet_libraries(verbose=False); read by the context managers below


@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Within the block, silence the libraries' chatter (verbose=False) or leave it as is (verbose=True).

    Sets QUIET_ENVIRONMENT (where unset), OpenCV's log level, an "ignore" warnings filter and QUIET_LOGGERS to
    ERROR; everything is restored at exit, so an in-process caller (a test) gets its process back.
    """
    global _quiet
    if verbose:
        yield
        return
    saved_environment = {name: os.environ.get(name) for name in QUIET_ENVIRONMENT}
    saved_levels = {name: _logger(name).level for name in QUIET_LOGGERS}
    saved_cv2_level = cv2.utils.logging.getLogLevel()
    edgedet_logger = logging.getLogger("edgedet")
    edgedet_unset = edgedet_logger.level == logging.NOTSET
    with warnings.catch_warnings():
        _silence(saved_environment)
        if edgedet_unset:
            edgedet_logger.setLevel(logging.WARNING)  # edgedet's own warnings: not inherited from the quiet root
        _quiet = True
        try:
            yield
        finally:
            _quiet = False
            cv2.utils.logging.setLogLevel(saved_cv2_level)
            for name, level in saved_levels.items():
                _logger(name).setLevel(level)
            if edgedet_unset and edgedet_logger.level == logging.WARNING:
                edgedet_logger.setLevel(logging.NOTSET)  # unless the verb set its own level (`edgedet run`: INFO)
            for name, value in saved_environment.items():
                if value is None:
                    os.environ.pop(name, None)


def _silence(user_environment: dict) -> None:
    for name, value in QUIET_ENVIRONMENT.items():
        if user_environment[name] is None:  # a user's own setting wins
            os.environ[name] = value
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # the variable is read once, at cv2's load
    # edgedet issues no warnings itself; FutureWarning/UserWarning from torch, onnx & co. are for their developers
    warnings.simplefilter("ignore")
    for name in QUIET_LOGGERS:
        _logger(name).setLevel(logging.ERROR)


def _logger(name: str) -> logging.Logger:
    return logging.getLogger(None if name == "root" else name)


def libraries_quiet() -> bool:
    """True inside quiet_libraries(verbose=False)."""
    return _quiet


@contextlib.contextmanager
def quiet_prints() -> Iterator[None]:
    """Drop what a library call writes to sys.stdout and sys.stderr when quiet: onnxruntime's calibrator
    prints, ai_edge_quantizer's summary and tqdm bar. Its exceptions still propagate."""
    if not _quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# C-level lines on stderr that say nothing is wrong: TFLite's "INFO: Created TensorFlow Lite XNNPACK delegate for
# CPU.", absl's INFO lines ("I0000 00:00:17... port.cc:153] oneDNN custom operations are on") and the notice absl
# writes before its first line. Warnings ("W1203 ...") and errors ("E...") are not matched.
NATIVE_INFO_LINE = re.compile(r"^(INFO: |I\d{4} |WARNING: All log messages before absl::InitializeLog\(\))")


@contextlib.contextmanager
def fd2_redirected(target_fd: int) -> Iterator[bool]:
    """File descriptor 2 points at `target_fd` for the duration, then back; yields False (redirecting nothing)
    where fd 2 cannot be duplicated (no stderr)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield False
        return
    os.dup2(target_fd, 2)
    try:
        yield True
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null for the duration: FFmpeg and OpenCV print their codec probing (errors
    of encoders that are absent, by design here) from C, past Python's sys.stderr and logging."""
    with open(os.devnull, "wb") as devnull, fd2_redirected(devnull.fileno()):
        yield


@contextlib.contextmanager
def quiet_native_info() -> Iterator[None]:
    """Drop the C-level INFO lines (NATIVE_INFO_LINE) a native call writes to file descriptor 2, when quiet.

    TFLite and absl log through loggers no setting reaches, so fd 2 goes to a temporary file for the call;
    every other line it caught is written back to stderr afterwards, so warnings and errors still show.
    """
    if not _quiet:
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as caught:
        try:
            with fd2_redirected(caught.fileno()):
                yield
        finally:
            caught.seek(0)
            lines = caught.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not NATIVE_INFO_LINE.match(line)))
