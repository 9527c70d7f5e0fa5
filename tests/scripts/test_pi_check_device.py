"""scripts/pi_check_device.py: the probes `make pi-check` runs inside the emulated root (pure parts only)."""

import importlib.util
import struct
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pi_check_device.py"


def load_probe():
    """Import scripts/pi_check_device.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("pi_check_device", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


probe = load_probe()


def auxv(hwcap: int) -> bytes:
    """A little-endian 64-bit auxiliary vector with AT_PAGESZ, AT_HWCAP and the AT_NULL terminator."""
    return struct.pack("<6Q", 6, 4096, 16, hwcap, 0, 0)


# HWCAP masks QEMU 7.2 reports for the two Pi cores and for its default "max" model (seen under pi-check).
CORTEX_A72 = 0x8FB
CORTEX_A76 = 0x119FFB
QEMU_MAX = 0xECFFFFFB


def test_hwcap_bits_decode_to_cpuinfo_names():
    assert probe.hwcap_features(auxv(0b11)) == ["fp", "asimd"]
    assert probe.hwcap_features(auxv(1 << 20 | 1 << 22)) == ["asimddp", "sve"]
    assert probe.hwcap_features(b"") == []


def expected_ok(cpu: str, hwcap: int) -> bool:
    """Whether the features of `hwcap` satisfy the expectation for `cpu`."""
    features = probe.hwcap_features(auxv(hwcap))
    required, absent = probe.EXPECTED_FEATURES[cpu]
    return all(f in features for f in required) and not any(f in features for f in absent)


def test_pi_cores_are_told_apart_from_each_other_and_from_qemu_max():
    assert expected_ok("cortex-a72", CORTEX_A72)
    assert expected_ok("cortex-a76", CORTEX_A76)
    assert not expected_ok("cortex-a72", CORTEX_A76)  # dot product and atomics are ARMv8.2
    assert not expected_ok("cortex-a76", CORTEX_A72)
    assert not expected_ok("cortex-a72", QEMU_MAX)
    assert not expected_ok("cortex-a76", QEMU_MAX)  # sve


def test_imports_check_flags_forbidden_distributions(monkeypatch, capsys):
    class FakeDist:
        version = "9.9"

    monkeypatch.setattr(probe, "installed_distributions", lambda: {"torch": FakeDist(), "numpy": FakeDist()})
    assert probe.check_imports("onnx") == 1
    assert "forbidden packages installed: torch" in capsys.readouterr().out
