"""device.thermals: thermal zones from a fake sysfs tree, `vcgencmd get_throttled` from a fake script on PATH or an
injected runner, its bits decoded, absent elsewhere; `edgedet run` logs them at start and prints them at exit."""
import os
import stat

import pytest

from edgedet.cli import main
from edgedet.device import thermals
from tests.device.test_backends import make_onnx_model


def fake_sysfs(root, zones):
    """root/class/thermal/thermal_zone<i>/{type,temp} for each (type, temp text); a cooling device beside them."""
    base = root / "class" / "thermal"
    for i, (kind, temp) in enumerate(zones):
        zone = base / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(temp + "\n")
    (base / "cooling_device0").mkdir(parents=True, exist_ok=True)
    (base / "cooling_device0" / "type").write_text("Processor\n")
    return root


def fake_vcgencmd(folder, output, code=0):
    """An executable `vcgencmd` in `folder` that prints `output` and exits with `code`."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "vcgencmd"
    script.write_text(f'#!/bin/sh\n[ "$1" = get_throttled ] || exit 3\necho "{output}"\nexit {code}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def no_command(argv):
    return None


def test_zones_from_a_fake_sysfs_tree(tmp_path):
    root = fake_sysfs(tmp_path, [("acpitz", "67000"), ("cpu-thermal", "48312"), ("broken", "not a number")])
    state = thermals.read_thermals(sysfs_root=str(root), run=no_command)
    assert [(z.name, z.type, z.temp_c) for z in state.zones] == [("thermal_zone0", "acpitz", 67.0),
                                                                 ("thermal_zone1", "cpu-thermal", 48.312)]
    assert state.cpu_temp_c == 48.312  # the zone named for the CPU, though another one is hotter
    assert state.present and state.throttling is None
    assert state.to_dict()["throttled"] is None and state.summary() == "CPU 48.3 °C"


def test_without_a_cpu_zone_the_hottest_zone_is_taken(tmp_path):
    root = fake_sysfs(tmp_path, [("acpitz", "40000"), ("nvme", "55500")])
    assert thermals.read_thermals(sysfs_root=str(root), run=no_command).cpu_temp_c == 55.5


def test_fake_vcgencmd_on_path(tmp_path, monkeypatch):
    bin_dir = fake_vcgencmd(tmp_path / "bin", "throttled=0x50005")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    state = thermals.read_thermals(sysfs_root=str(tmp_path / "nosys"))
    assert state.zones == () and state.throttling.raw == 0x50005
    assert state.to_dict() == {"cpu_temp_c": None, "zones": [],
                               "throttled": {"raw": "0x50005", "now": ["under_voltage", "throttled"],
                                             "since_boot": ["under_voltage", "throttled"]}}
    assert state.summary() == "throttled now: under_voltage, throttled, since boot: under_voltage, throttled"


def test_an_injected_runner_replaces_the_command(tmp_path):
    calls = []

    def run(argv):
        calls.append(list(argv))
        return "throttled=0x80000\n"

    state = thermals.read_thermals(sysfs_root=str(tmp_path), vcgencmd="/opt/vc/bin/vcgencmd", run=run)
    assert calls == [["/opt/vc/bin/vcgencmd", "get_throttled"]]
    assert state.throttling.now == [] and state.throttling.since_boot == ["soft_temperature_limit"]
    assert state.summary() == "not throttled now, since boot: soft_temperature_limit"


@pytest.mark.parametrize("raw, now, since_boot", [
    (0x0, [], []),
    (0x1, ["under_voltage"], []),
    (0x2, ["frequency_capped"], []),
    (0x4, ["throttled"], []),
    (0x8, ["soft_temperature_limit"], []),
    (0x10000, [], ["under_voltage"]),
    (0x20000, [], ["frequency_capped"]),
    (0x40000, [], ["throttled"]),
    (0x80000, [], ["soft_temperature_limit"]),
    (0xF000F, list(thermals.THROTTLE_BITS), list(thermals.THROTTLE_BITS)),
])
def test_throttle_bits_decode(raw, now, since_boot):
    throttling = thermals.parse_throttled(f"throttled={raw:#x}")
    assert (throttling.raw, throttling.now, throttling.since_boot) == (raw, now, since_boot)


@pytest.mark.parametrize("output", [None, "", "VCHI initialization failed", "throttled=zz", "temp=48.0'C"])
def test_unusable_vcgencmd_output_is_absent(output):
    assert thermals.parse_throttled(output) is None


def test_a_failing_vcgencmd_is_absent(tmp_path, monkeypatch):
    bin_dir = fake_vcgencmd(tmp_path / "bin", "throttled=0x5", code=1)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert thermals.read_thermals(sysfs_root=str(tmp_path)).throttling is None


def test_absent_elsewhere_is_a_value_not_an_error(tmp_path):
    state = thermals.read_thermals(sysfs_root=str(tmp_path / "no-sysfs"), vcgencmd=str(tmp_path / "no-vcgencmd"))
    assert state == thermals.ThermalState() and not state.present
    assert state.to_dict() == {"cpu_temp_c": None, "zones": [], "throttled": None}
    assert state.summary() == "absent" and thermals.thermal_summary(None) == "absent"


def test_edgedet_run_logs_thermals_at_start_and_prints_them_at_exit(tmp_path, monkeypatch, capsys):
    root = fake_sysfs(tmp_path / "sys", [("cpu-thermal", "48312")])
    bin_dir = fake_vcgencmd(tmp_path / "bin", "throttled=0x20002")
    monkeypatch.setattr(thermals, "SYSFS_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code = main(["run", "--model", str(make_onnx_model(tmp_path / "toy.onnx")), "--source", "synthetic",
                 "--max-frames", "3", "--json", str(tmp_path / "out.jsonl")])
    out, err = capsys.readouterr()
    assert code == 0, err
    state = "CPU 48.3 °C, throttled now: frequency_capped, since boot: frequency_capped"
    assert f"thermals at start: {state}" in err
    assert f"edgedet run: thermals: start {state}; end {state}" in out


def test_edgedet_run_without_thermals_prints_no_thermal_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(thermals, "SYSFS_ROOT", str(tmp_path / "no-sysfs"))
    monkeypatch.setattr(thermals, "VCGENCMD", str(tmp_path / "no-vcgencmd"))
    code = main(["run", "--model", str(make_onnx_model(tmp_path / "toy.onnx")), "--source", "synthetic",
                 "--max-frames", "2", "--json", str(tmp_path / "out.jsonl")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "edgedet run: 2 frames" in out and "thermals" not in out + err
