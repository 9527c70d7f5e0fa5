"""The `edgedet` command. Each verb lives in its own module with `add_arguments(parser)` and `main(args) -> int`.

Only the chosen verb's module is imported, so `edgedet run` on a Pi never loads torch and
`import edgedet.cli` loads nothing heavy.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from edgedet.device import stuck_threads
from edgedet.device.errors import EdgedetError
from edgedet.device.library_logs import quiet_libraries
from . import __version__

# verb -> (module implementing it, one-line help)
VERBS = {
    "data": ("edgedet.data.cli", "generate the synthetic data set or convert COCO <-> YOLO formats"),
    "train": ("edgedet.train", "train a detector/segmenter (PyTorch)"),
    "eval": ("edgedet.evaluate", "COCO box/mask AP, mIoU and PQ of a results file or of any model file"),
    "export": ("edgedet.export_cli", "export a checkpoint to ONNX / TFLite in fp32, fp16 and int8, with an accuracy gate"),
    "calibrate": ("edgedet.calibrate_cli", "per-layer int8 sensitivity and keep-in-float selection"),
    "run": ("edgedet.device.app", "run a model on a camera, video, images or the synthetic source"),
    "bench": ("edgedet.bench", "measure accuracy and per-stage latency of model variants"),
    "report": ("edgedet.report", "render accuracy-vs-latency tables and plots from bench results"),
}
# verbs with a --verbose flag: their libraries' chatter is silenced unless it is given
QUIET_VERBS = ("export", "calibrate", "run", "eval", "bench")


class OneLineErrors(argparse.ArgumentParser):
    """argparse, with a bad flag as one line (its usage block left to --help); the verbs' parsers too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(verb: Optional[str]) -> argparse.ArgumentParser:
    """The top-level parser; only `verb`'s module is imported to fill in its arguments."""
    parser = OneLineErrors(
        prog="edgedet",
        description="Train, export and int8-quantize YOLO detectors; run them on a Raspberry Pi; report accuracy vs latency.",
    )
    parser.add_argument("--version", action="version", version=f"edgedet {_version()}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (module_name, help_text) in VERBS.items():
        verb_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == verb:
            importlib.import_module(module_name).add_arguments(verb_parser)
        if name == verb and name in QUIET_VERBS:
            add_verbose_argument(verb_parser)
    return parser


def main(argv: Optional[List[str]] = None, *, exit_if_stuck: bool = False) -> int:
    """Run one verb; its exit code. exit_if_stuck (the `edgedet` command): end the process at once when a
    thread was left behind in a native call (device.stuck_threads), before the libraries' logs are unquieted."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    # entered before the verb's module is imported: some libraries read their log level only when they load
    with quiet_libraries(verbose=verb not in QUIET_VERBS or any(_is_verbose_flag(a) for a in argv)):
        code = _dispatch(argv, verb)
        return stuck_threads.exit_if_stuck(code) if exit_if_stuck else code


def command() -> int:
    """The `edgedet` command (and `python -m edgedet`)."""
    return main(exit_if_stuck=True)


def _dispatch(argv: List[str], verb: Optional[str]) -> int:
    """Parse `argv` and run the verb; an EdgedetError or OSError becomes one line on stderr and exit 2."""
    parser = build_parser(verb if verb in VERBS else None)
    args, unknown = parser.parse_known_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    name = " ".join(filter(None, (args.verb, getattr(args, "data_command", None))))  # as argparse says it: "data synth"
    if unknown:  # named by the verb that was given them, not by `edgedet`
        print(f"edgedet {name}: error: unrecognized arguments: {' '.join(unknown)} (see edgedet {name} --help)",
              file=sys.stderr)
        return 2
    try:
        return int(importlib.import_module(VERBS[args.verb][0]).main(args) or 0)
    except EdgedetError as error:
        print(f"edgedet {name}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an unwritable --out, a vanished input: the OS names the path and the problem
        print(f"edgedet {name}: error: {os_error_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgedet {name}: interrupted", file=sys.stderr)
        return 130


def os_error_line(error: OSError) -> str:
    """'cannot use afile: File exists' rather than "[Errno 17] File exists: 'afile'"."""
    if error.filename is None or not error.strerror:
        return str(error)
    target = f" -> {error.filename2}" if error.filename2 is not None else ""
    return f"cannot use {error.filename}{target}: {error.strerror}"


def _is_verbose_flag(arg: str) -> bool:
    """--verbose or an abbreviation argparse accepts for it (--verb, --verbo, ...)."""
    return len(arg) >= 6 and "--verbose".startswith(arg)


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """The --verbose flag of the QUIET_VERBS; main() reads it from argv, before the verb's module is imported."""
    parser.add_argument("--verbose", action="store_true", help="show the libraries' own log lines and warnings "
                        "(LiteRT, onnxruntime, torch, OpenCV), hidden by default")


def _version() -> str:
    return __version__
