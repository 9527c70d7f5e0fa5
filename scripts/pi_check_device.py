"""Checks that `make pi-check` runs INSIDE the emulated Raspberry Pi root (arm64 Debian bookworm).

Standard library only (it runs with the root's venv python, where only the device extras exist):

    python pi_check_device.py cpu --expect cortex-a72     the CPU's features from the ELF auxiliary vector
    python pi_check_device.py imports --extra tflite      device imports work; torch/onnx/tensorflow absent
    python pi_check_device.py footprint                   installed distributions and their size on disk

Exit 0 on success, 1 when a check fails (the reason is printed).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import struct
import sys
from typing import Dict, List, Optional, Sequence, Tuple

# Linux arm64 AT_HWCAP bits (arch/arm64/include/uapi/asm/hwcap.h), bit -> name as in /proc/cpuinfo.
HWCAP_NAMES = {
    0: "fp", 1: "asimd", 2: "evtstrm", 3: "aes", 4: "pmull", 5: "sha1", 6: "sha2", 7: "crc32",
    8: "atomics", 9: "fphp", 10: "asimdhp", 11: "cpuid", 12: "asimdrdm", 13: "jscvt", 14: "fcma",
    15: "lrcpc", 16: "dcpop", 17: "sha3", 18: "sm3", 19: "sm4", 20: "asimddp", 21: "sha512", 22: "sve",
}
AT_HWCAP = 16  # auxv key of the feature bit mask

# What each Pi core must and must not report (Pi 4: Cortex-A72, ARMv8.0; Pi 5: Cortex-A76, ARMv8.2 with dot product).
# QEMU's default "max" CPU reports sve and more, which is how a run on the wrong model is caught.
EXPECTED_FEATURES: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "cortex-a72": (("fp", "asimd", "crc32"), ("asimddp", "atomics", "sve")),
    "cortex-a76": (("fp", "asimd", "crc32", "atomics", "asimdhp", "asimddp"), ("sve",)),
}

# Distributions that must never reach a device install (training / export stacks).
FORBIDDEN = ("torch", "onnx", "onnxscript", "tensorflow", "tensorflow-cpu", "tf-nightly", "litert-torch",
             "litert-converter", "ai-edge-torch", "jax", "keras", "matplotlib", "pycocotools")

# Packaging tools every venv carries; left out of the runtime total.
VENV_TOOLS = ("pip", "setuptools", "wheel")

# Modules each device extra must import.
EXTRA_MODULES = {
    "tflite": ("numpy", "cv2", "ai_edge_litert.interpreter"),
    "onnx": ("numpy", "cv2", "onnxruntime"),
}


def hwcap_features(auxv: bytes) -> List[str]:
    """Feature names set in AT_HWCAP of a 64-bit little-endian auxiliary vector (/proc/self/auxv)."""
    entries = dict(struct.iter_unpack("<QQ", auxv[: len(auxv) // 16 * 16]))
    mask = entries.get(AT_HWCAP, 0)
    return [name for bit, name in sorted(HWCAP_NAMES.items()) if mask >> bit & 1]


def check_cpu(expect: Optional[str]) -> int:
    """Print the machine and its CPU features; fail when they do not match the expected Pi core."""
    with open("/proc/self/auxv", "rb") as handle:
        features = hwcap_features(handle.read())
    print(f"machine {platform.machine()}, features: {' '.join(features)}")
    if platform.machine() != "aarch64":
        print(f"FAIL: machine is {platform.machine()}, not aarch64")
        return 1
    if expect is None:
        return 0
    if expect not in EXPECTED_FEATURES:
        print(f"FAIL: no expectation for CPU {expect!r}; known: {', '.join(EXPECTED_FEATURES)}")
        return 1
    required, absent = EXPECTED_FEATURES[expect]
    missing = [f for f in required if f not in features]
    extra = [f for f in absent if f in features]
    if missing or extra:
        print(f"FAIL: not a {expect}: missing {missing}, unexpected {extra}")
        return 1
    return 0


def installed_distributions() -> Dict[str, object]:
    """Normalised name -> importlib.metadata Distribution for everything in this environment."""
    from importlib import metadata

    found = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-").replace(".", "-")
        if name:
            found[name] = dist
    return found


def check_imports(extra: str) -> int:
    """Import the extra's runtime modules and the edgedet CLI; fail if a training/export package is present."""
    problems = []
    dists = installed_distributions()
    present = sorted(name for name in FORBIDDEN if name in dists)
    if present:
        problems.append(f"forbidden packages installed: {', '.join(present)}")
    for module in ("torch", "onnx", "tensorflow"):
        if importlib.util.find_spec(module) is not None:
            problems.append(f"module {module} is importable")
    for module in EXTRA_MODULES[extra] + ("edgedet.device", "edgedet.cli"):
        try:
            importlib.import_module(module)
        except Exception as exc:  # report every failure, not only the first
            problems.append(f"import {module} failed: {type(exc).__name__}: {exc}")
    import edgedet.cli

    for verb in ("run", "eval"):
        try:
            edgedet.cli.build_parser(verb)
        except Exception as exc:
            problems.append(f"building the {verb} parser failed: {type(exc).__name__}: {exc}")
    heavy = sorted(m for m in ("torch", "onnx", "tensorflow", "matplotlib") if m in sys.modules)
    if heavy:
        problems.append(f"importing the device stack loaded {', '.join(heavy)}")
    versions = []
    for name in ("numpy", "opencv-python-headless", "ai-edge-litert", "onnxruntime", "edgedet"):
        if name in dists:
            versions.append(f"{name} {dists[name].version}")
    print(f"python {platform.python_version()} on {platform.machine()}: {', '.join(versions)}")
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


def distribution_size(dist) -> int:
    """Bytes on disk of the files a distribution installed (its RECORD)."""
    total = 0
    for path in dist.files or ():
        try:
            total += os.path.getsize(dist.locate_file(path))
        except OSError:
            pass
    return total


def tree_size(path: str) -> int:
    """Bytes of all regular files under path (symlinks not followed)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def mib(n: int) -> str:
    """Bytes as MiB with one decimal."""
    return f"{n / 2**20:.1f} MiB"


def footprint() -> int:
    """Print each installed distribution with its version and size, then the totals."""
    rows = sorted(((distribution_size(d), name, d.version) for name, d in installed_distributions().items()), reverse=True)
    for size, name, version in rows:
        print(f"  {name:<26} {version:<12} {mib(size):>11}")
    runtime = sum(size for size, name, _ in rows if name not in VENV_TOOLS)
    print(f"  {'total without ' + '/'.join(VENV_TOOLS):<39} {mib(runtime):>11}")
    print(f"  {'total (venv ' + sys.prefix + ')':<39} {mib(tree_size(sys.prefix)):>11}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Dispatch the sub-command."""
    parser = argparse.ArgumentParser(description="pi-check probes run inside the emulated root")
    sub = parser.add_subparsers(dest="command", required=True)
    cpu = sub.add_parser("cpu", help="print CPU features; check them against a Pi core")
    cpu.add_argument("--expect", choices=sorted(EXPECTED_FEATURES), help="Pi core QEMU should emulate")
    imports = sub.add_parser("imports", help="device imports work and nothing heavy is installed")
    imports.add_argument("--extra", choices=sorted(EXTRA_MODULES), required=True, help="which device extra this venv has")
    sub.add_parser("footprint", help="installed distributions and size on disk")
    args = parser.parse_args(argv)
    if args.command == "cpu":
        return check_cpu(args.expect)
    if args.command == "imports":
        return check_imports(args.extra)
    return footprint()


if __name__ == "__main__":
    sys.exit(main())
