"""CPU temperature and throttling state, read at the start and end of `edgedet run` and of each bench variant.

A throttled Raspberry Pi runs at a fraction of its speed, so a latency figure means little without them.

    /sys/class/thermal/thermal_zone*/temp    millidegrees Celsius, one file per zone, its kind in `type`
    vcgencmd get_throttled                    "throttled=0x50005": a bit field (THROTTLE_BITS), Raspberry Pi only

Elsewhere (no such folder, no vcgencmd, a zone that cannot be read) the reading is absent: `ThermalState.zones`
is empty and `throttling` None, which `to_dict` writes as null. Absence is never an error. Both sources are
injectable (`read_thermals(sysfs_root=..., vcgencmd=..., run=...)`) so tests use a fake tree and a fake command.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

SYSFS_ROOT = "/sys"  # read at call time, so a test may point it at a fake tree
VCGENCMD = "vcgencmd"  # the command name (or path) looked up on PATH at call time
VCGENCMD_TIMEOUT_S = 2.0  # a hung firmware call must not hold up a run
# the states of `vcgencmd get_throttled`: bit of "now", bit of "since boot" (Raspberry Pi documentation)
THROTTLE_BITS = {"under_voltage": (0, 16), "frequency_capped": (1, 17), "throttled": (2, 18),
                 "soft_temperature_limit": (3, 19)}
CPU_ZONE_WORDS = ("cpu", "soc", "x86_pkg", "coretemp")  # zone types that name the CPU (Pi: "cpu-thermal")

CommandRunner = Callable[[Sequence[str]], Optional[str]]  # argv -> stdout, or None when the command failed


@dataclass(frozen=True)
class ThermalZone:
    """One /sys/class/thermal zone."""

    name: str  # folder name, e.g. "thermal_zone0"
    type: str  # its `type` file, e.g. "cpu-thermal", "x86_pkg_temp", "acpitz"
    temp_c: float  # temperature, degrees Celsius


@dataclass(frozen=True)
class Throttling:
    """The bit field of `vcgencmd get_throttled`, decoded into named states now and since boot."""

    raw: int  # e.g. 0x50005: under-voltage and throttled now, both also since boot

    @property
    def now(self) -> List[str]:
        """Names of THROTTLE_BITS set at the time of reading, in table order."""
        return [name for name, (bit, _) in THROTTLE_BITS.items() if self.raw >> bit & 1]

    @property
    def since_boot(self) -> List[str]:
        """Names of THROTTLE_BITS that have occurred since boot."""
        return [name for name, (_, bit) in THROTTLE_BITS.items() if self.raw >> bit & 1]


@dataclass(frozen=True)
class ThermalState:
    """One reading of every source; an empty `zones` and a None `throttling` mean absent on this machine."""

    zones: Tuple[ThermalZone, ...] = ()  # readable thermal zones, in folder order
    throttling: Optional[Throttling] = None  # None without vcgencmd (or when it failed)

    @property
    def present(self) -> bool:
        return bool(self.zones) or self.throttling is not None

    @property
    def cpu_temp_c(self) -> Optional[float]:
        """The first zone whose type names the CPU; else the hottest zone; None without zones."""
        cpu = [z for z in self.zones if any(word in z.type.lower() for word in CPU_ZONE_WORDS)]
        if cpu:
            return cpu[0].temp_c
        return max((z.temp_c for z in self.zones), default=None)

    def to_dict(self) -> dict:
        """JSON-ready: {"cpu_temp_c", "zones": [{name, type, temp_c}], "throttled": {raw, now, since_boot}};
        null where absent."""
        throttled = None
        if self.throttling is not None:
            throttled = {"raw": hex(self.throttling.raw), "now": self.throttling.now,
                         "since_boot": self.throttling.since_boot}
        return {"cpu_temp_c": self.cpu_temp_c,
                "zones": [{"name": z.name, "type": z.type, "temp_c": z.temp_c} for z in self.zones],
                "throttled": throttled}

    def summary(self) -> str:
        """E.g. "CPU 61.2 °C, throttled now: frequency_capped, since boot: under_voltage" (one line)."""
        return thermal_summary(self.to_dict())


def thermal_summary(state: Optional[dict]) -> str:
    """One line for a `ThermalState.to_dict()` (as stored in a bench record); "absent" when nothing was read."""
    if not state or (state.get("cpu_temp_c") is None and not state.get("throttled")):
        return "absent"
    parts = []
    if state.get("cpu_temp_c") is not None:
        parts.append(f"CPU {state['cpu_temp_c']:.1f} °C")
    throttled = state.get("throttled")
    if throttled:
        now, since = throttled.get("now") or [], throttled.get("since_boot") or []
        parts.append(f"throttled now: {', '.join(now)}" if now else "not throttled now")
        if since:
            parts.append(f"since boot: {', '.join(since)}")
    return ", ".join(parts)


def read_thermals(sysfs_root: Optional[str] = None, vcgencmd: Optional[str] = None,
                  run: Optional[CommandRunner] = None) -> ThermalState:
    """Read the thermal zones under `sysfs_root` (default SYSFS_ROOT) and `vcgencmd get_throttled` (default
    VCGENCMD found on PATH, run by `run`, default a subprocess with a timeout); absent parts stay empty."""
    zones = read_zones(Path(sysfs_root or SYSFS_ROOT) / "class" / "thermal")
    return ThermalState(zones, read_throttling(vcgencmd or VCGENCMD, run or run_command))


def read_zones(thermal_dir: Path) -> Tuple[ThermalZone, ...]:
    """Every thermal_zone*/ under `thermal_dir` whose temp file reads as an integer (millidegrees C)."""
    try:
        folders = sorted(thermal_dir.glob("thermal_zone*"), key=lambda p: _zone_number(p.name))
    except OSError:
        return ()
    zones = []
    for folder in folders:
        try:
            millidegrees = int((folder / "temp").read_text().strip())
        except (OSError, ValueError):  # some zones refuse reads (ENODATA) or are not sensors
            continue
        kind = _read_text(folder / "type") or folder.name
        zones.append(ThermalZone(folder.name, kind, round(millidegrees / 1000.0, 3)))
    return tuple(zones)


def _zone_number(name: str) -> int:
    digits = name[len("thermal_zone"):]
    return int(digits) if digits.isdigit() else 1 << 30


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def read_throttling(vcgencmd: str, run: CommandRunner) -> Optional[Throttling]:
    """`vcgencmd get_throttled` decoded; None when the command is not there, fails or says something else."""
    if run is run_command and shutil.which(vcgencmd) is None:
        return None
    return parse_throttled(run([vcgencmd, "get_throttled"]))


def parse_throttled(text: Optional[str]) -> Optional[Throttling]:
    """"throttled=0x50005" -> Throttling(0x50005); None for anything else."""
    key, _, value = (text or "").strip().partition("=")
    if key != "throttled":
        return None
    try:
        return Throttling(int(value.strip(), 16))
    except ValueError:
        return None


def run_command(argv: Sequence[str]) -> Optional[str]:
    """stdout of `argv`, or None when it cannot start, fails or times out."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=VCGENCMD_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None

