"""Where a measurement was taken: machine, operating system, Python, library versions, commit and date.

Torch-free and cheap: library versions come from `importlib.metadata` (package metadata, no import of the
library itself), the CPU model from /proc/cpuinfo or the device tree, the commit from `git` if it is there.
Every bench record carries one `provenance()` dict so results copied back from several devices stay comparable.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional

# distributions whose versions decide accuracy or latency; absent ones are left out of the record
LIBRARIES = (
    "edgedet", "numpy", "opencv-python-headless", "opencv-python", "onnxruntime", "ai-edge-litert",
    "tflite-runtime", "tensorflow", "torch", "onnx", "litert-torch",
)


def provenance() -> Dict[str, object]:
    """One JSON-ready dict: machine (cpu, cores, arch, hostname, os), python, libraries, commit, date (UTC ISO 8601)."""
    return {
        "machine": machine_info(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def machine_info() -> Dict[str, object]:
    """CPU model, logical core count (and how many this process may use), architecture, hostname and OS."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "usable_cores": _usable_cores(),
        "arch": platform.machine(),
        "hostname": socket.gethostname(),
        "os": _os_name(),
    }


def machine_key(provenance_dict: Dict[str, object]) -> str:
    """A short human-readable name that groups records by machine, e.g. "pi5 (Cortex-A76, 4 cores, aarch64)"."""
    machine = provenance_dict.get("machine") or {}
    host = machine.get("hostname") or "unknown host"
    return f"{host} ({machine.get('cpu') or 'unknown CPU'}, {machine.get('cores', '?')} cores, {machine.get('arch') or '?'})"


def cpu_model(cpuinfo_path: str = "/proc/cpuinfo", device_tree_model: str = "/proc/device-tree/model") -> str:
    """The CPU (or board) model: x86 "model name", else the board model from the device tree (Raspberry Pi),
    else ARM "Hardware"/"CPU part" lines, else `platform.processor()`."""
    fields = _cpuinfo_fields(cpuinfo_path)
    if "model name" in fields:
        return fields["model name"]
    board = _read_text(device_tree_model)
    if board:
        return board.strip("\x00 \n")
    for key in ("Hardware", "Model", "CPU part"):
        if key in fields:
            return f"{key} {fields[key]}" if key == "CPU part" else fields[key]
    return platform.processor() or platform.machine() or "unknown"


def library_versions(names=LIBRARIES) -> Dict[str, str]:
    """Installed version of each distribution in `names` that is present (read from metadata, not imported)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(repo_dir: Optional[Path] = None) -> Optional[str]:
    """HEAD commit of the checkout edgedet runs from, with "-dirty" when tracked files changed; None outside git."""
    repo_dir = repo_dir or Path(__file__).resolve().parents[1]
    head = _git(repo_dir, "rev-parse", "HEAD")
    if head is None:
        return None
    dirty = _git(repo_dir, "status", "--porcelain", "--untracked-files=no")
    return f"{head}-dirty" if dirty else head


def _git(repo_dir: Path, *args: str) -> Optional[str]:
    try:
        result = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _cpuinfo_fields(path: str) -> Dict[str, str]:
    """First value of each "key : value" line of /proc/cpuinfo."""
    fields: Dict[str, str] = {}
    for line in (_read_text(path) or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields and value.strip():
            fields[key.strip()] = value.strip()
    return fields


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 0


def _os_name() -> str:
    """E.g. "Debian GNU/Linux 12 (bookworm), Linux 6.6.31" or platform's system/release elsewhere."""
    pretty = None
    for line in (_read_text("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip().strip('"')
    kernel = f"{platform.system()} {platform.release()}"
    return f"{pretty}, {kernel}" if pretty else kernel


def _read_text(path: str) -> Optional[str]:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


if __name__ == "__main__":  # `python -m edgedet.provenance` prints this machine's record
    import json

    json.dump(provenance(), sys.stdout, indent=2)
    print()
