"""`edgedet run --config RUN.yaml`: every flag of the parser as a key (derived from the parser, so flags added later
are covered), the command line over the file, required flags from the file, each bad file's one-line message
through the CLI; and the systemd unit and example config shipped in device/service/."""
import argparse
import configparser
import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from edgedet.cli import build_parser, main
from edgedet.device.app import run_parser
from edgedet.device.errors import EdgedetError
from edgedet.device.run_config import Unset, apply_config, flag_actions, read_config
from tests.device.test_backends import make_onnx_model

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "device" / "service"


def parse(argv):
    """`edgedet run ARGV` parsed by the CLI's own parser, then the config file applied, as device.app.main does."""
    return apply_config(build_parser("run").parse_args(["run", *map(str, argv)]), run_parser())


def write_config(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- every flag, as the parser has it


def scalar_sample(action, k):
    """(YAML value, command-line word) of a value of the flag's type, not its default."""
    if action.choices:
        choice = list(action.choices)[-k]
        return choice, str(choice)
    if action.type is float:
        return 0.125 * k, str(0.125 * k)
    if action.type is int:
        return 3 + k, str(3 + k)
    assert action.type in (None, str), f"{action.option_strings[0]} has a type of its own: give it a sample here"
    return f"{action.dest}-{k}", f"{action.dest}-{k}"


def sample(action):
    """(YAML value, command-line words) that set the flag to something other than its default."""
    flag = action.option_strings[0]
    if action.nargs == 0:
        default = action.default.default if isinstance(action.default, Unset) else action.default
        return not default, [flag]
    items = [scalar_sample(action, k) for k in (1, 2)]
    if isinstance(action, argparse._AppendAction):  # repeatable: a list in the file, the flag twice here
        return [value for value, _ in items], [word for _, text in items for word in (flag, text)]
    if action.nargs in ("+", "*"):
        return [value for value, _ in items], [flag, *(text for _, text in items)]
    value, text = items[0]
    return value, [flag, text]


def test_every_flag_of_the_parser_is_a_key_and_round_trips(tmp_path):
    actions = flag_actions(run_parser())
    assert {"model", "camera", "source", "conf", "classes", "pin", "stall_timeout", "inference_timeout"} <= set(actions)
    assert "config" not in actions and "help" not in actions
    for excluded in ("camera", "source"):  # one of the pair at a time: they exclude each other
        samples = {dest: sample(action) for dest, action in actions.items() if dest != excluded}
        # keys written with dashes for half of the flags: both spellings name the flag
        text = yaml.safe_dump({(dest.replace("_", "-") if k % 2 else dest): value
                               for k, (dest, (value, _)) in enumerate(samples.items())})
        from_file = parse(["--config", write_config(tmp_path, text)])
        from_flags = parse([word for _, words in samples.values() for word in words])
        for dest in actions:
            assert getattr(from_file, dest) == getattr(from_flags, dest), dest
            assert not isinstance(getattr(from_file, dest), Unset)
        assert getattr(from_file, excluded) is None


def test_without_a_config_file_every_flag_keeps_its_default():
    args = parse(["--model", "m.onnx", "--source", "synthetic"])
    defaults = vars(run_parser().parse_args(["--model", "m.onnx", "--source", "synthetic"]))
    for dest, action in flag_actions(run_parser()).items():
        expected = defaults[dest].default if isinstance(defaults[dest], Unset) else defaults[dest]
        assert getattr(args, dest) == expected, dest
    assert args.conf == 0.25 and args.stall_timeout == 20.0 and args.inference_timeout == 10.0 and args.pin is True


# ---- precedence and conversion


def test_the_command_line_wins_over_the_file_even_with_a_default_value(tmp_path):
    config = write_config(tmp_path, "model: a.onnx\ncamera: 0\nconf: 0.5\nthreads: 3\nshow: true\npin: false\n"
                                    "zone: ['door:0,0,1,0,1,1', 'yard:0,0,0.5,0,0.5,1']\nmax-det: 20\n")
    args = parse(["--config", config, "--conf", "0.25", "--zone", "gate:0,0,1,1,0,1", "--model", "b.onnx"])
    assert args.conf == 0.25  # given on the command line with its default value: still the command line's
    assert args.model == "b.onnx" and args.zone == ["gate:0,0,1,1,0,1"]  # a repeatable flag: the list is replaced
    assert args.threads == 3 and args.show is True and args.pin is False and args.max_det == 20  # from the file
    assert args.camera == "0"  # a number in the file, a string as on the command line


def test_a_flag_of_an_exclusive_group_on_the_command_line_drops_the_files_other_one(tmp_path):
    config = write_config(tmp_path, "model: a.onnx\ncamera: 0\n")
    args = parse(["--config", config, "--source", "video.mp4"])
    assert args.source == "video.mp4" and args.camera is None


def test_file_values_are_converted_like_command_line_values(tmp_path):
    config = write_config(tmp_path, "model: a.onnx\nsource: synthetic\nconf: '0.5'\niou: 1\nclasses: circle\n"
                                    "stream: 8080\nthreads: null\n")
    args = parse(["--config", config])
    assert args.conf == 0.5 and args.iou == 1.0 and isinstance(args.iou, float)
    assert args.classes == ["circle"] and args.stream == "8080" and args.threads is None


def test_required_flags_may_come_from_the_file_and_are_still_required(tmp_path):
    config = write_config(tmp_path, "model: a.onnx\nsource: synthetic\n")
    args = parse(["--config", config])
    assert args.model == "a.onnx" and args.source == "synthetic"
    with pytest.raises(EdgedetError, match=r"--model is required on the command line or in the --config file"):
        parse(["--config", write_config(tmp_path, "source: synthetic\n", "nomodel.yaml")])
    with pytest.raises(EdgedetError, match=r"--camera or --source is required \(or in a --config file\)"):
        parse(["--model", "a.onnx"])


# ---- bad input, through the CLI: one line, exit 2


@pytest.mark.parametrize("text, message", [
    ("model: a.onnx\nsource: synthetic\nconfidence: 0.5\n",
     r"run\.yaml, line 3: unknown key 'confidence': not an `edgedet run` flag; did you mean 'conf'\?"),
    ("source: synthetic\nno-pin: true\n",
     r"line 2: unknown key 'no-pin'.*--no-pin is the key 'pin' \(e\.g\. pin: false\)"),
    ("source: synthetic\nconf: high\n", r"line 2: conf: expected a number, got 'high'"),
    ("source: synthetic\nmax_det: 2.5\n", r"line 2: max_det: expected an integer, got 2\.5"),
    ("source: synthetic\nshow: 1\n", r"line 2: show: expected true or false, got 1"),
    ("source: synthetic\nconf: true\n", r"line 2: conf: expected a number, got True"),
    ("source: synthetic\nmodel: [a.onnx, b.onnx]\n", r"line 2: model: expected a string, got a list"),
    ("source: synthetic\nbackend: tensorrt\n", r"line 2: backend: 'tensorrt' is not one of onnxruntime, tflite"),
    ("source: synthetic\nconf: 0.5\nconf: 0.6\n", r"line 3: 'conf' is set twice \(first on line 2\)"),
    ("source: synthetic\ncamera: 0\n", r"line 2: 'camera' and 'source' exclude each other; give one"),
    ("source: synthetic\nconf: [0.5\n", r"run\.yaml, line 3: not valid YAML: expected ',' or ']'"),
    ("- model: a.onnx\n", r"run\.yaml, line 1: expected `flag: value` lines \(a YAML mapping\), got a list"),
    ("source: synthetic\n1: x\n", r"line 2: 1 is not a flag name"),
    ("source: synthetic\nconfig: other.yaml\n", r"line 2: unknown key 'config'"),
    ("source: synthetic\nverbose: true\n", r"line 2: 'verbose' cannot come from the file .*give --verbose on the command"),
    (None, r"--config .*missing\.yaml: file not found"),
])
def test_a_bad_config_file_is_one_line_naming_the_file_line_and_key(tmp_path, capsys, text, message):
    config = write_config(tmp_path, text) if text is not None else tmp_path / "missing.yaml"
    code = main(["run", "--model", str(tmp_path / "a.onnx"), "--config", str(config)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("edgedet run: error: --config ")]
    assert code == 2 and len(errors) == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(message, errors[0]), errors[0]


def test_a_missing_required_flag_is_one_line_through_the_cli(tmp_path, capsys):
    code = main(["run", "--config", str(write_config(tmp_path, "source: synthetic\n"))])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"edgedet run: error: --model is required on the command line or in the --config file {tmp_path}/run.yaml"]


# ---- end to end


def test_edgedet_run_takes_its_flags_from_the_config_file(tmp_path, capsys):
    model = make_onnx_model(tmp_path / "toy.onnx")
    config = write_config(tmp_path, f"model: {model}\nsource: synthetic\nmax-frames: 5\nthreads: 1\n"
                                    f"json: {tmp_path / 'd.jsonl'}\nconf: 0.3\n")
    code = main(["run", "--config", str(config), "--max-frames", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 3  # --max-frames 3 won over the file's 5
    assert "toy.onnx" in err and ", 1 thread" in err


# ---- device/service: the systemd unit and the example config


def read_unit(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(path)
    return parser


def test_the_systemd_unit_restarts_on_failure_logs_to_the_journal_and_runs_edgedet_run_config():
    unit = read_unit(SERVICE / "edgedet.service")
    service = unit["Service"]
    command = service["ExecStart"].split()
    assert command[0].endswith("/bin/edgedet") and command[1:3] == ["run", "--config"]
    assert Path(command[3]).name == "run.yaml"
    assert service["Restart"] == "on-failure" and float(service["RestartSec"]) > 0 and service["User"]
    assert service["StandardOutput"] == service["StandardError"] == "journal"
    assert service["Environment"] == "PYTHONUNBUFFERED=1" and service["KillSignal"] == "SIGTERM"
    assert unit["Install"]["WantedBy"] == "multi-user.target" and unit["Unit"]["After"] == "network-online.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit_cleanly(tmp_path):
    # ExecStart must name an existing program for verify: this venv's edgedet stands in for the Pi's
    edgedet = Path(sys.executable).parent / "edgedet"
    text = (SERVICE / "edgedet.service").read_text().replace("/home/pi/edgedet/bin/edgedet", str(edgedet))
    (tmp_path / "edgedet.service").write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "edgedet.service")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    (tmp_path / "typo.service").write_text(text.replace("Restart=on-failure", "Restrat=on-failure"))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "typo.service")], capture_output=True,
                            text=True, timeout=60)
    assert "Unknown key" in result.stderr  # the check above can fail


def test_the_example_config_sets_only_real_flags_and_ships_in_the_package():
    actions = flag_actions(run_parser())
    values = read_config(SERVICE / "run.yaml", actions)
    assert values["model"].endswith(".tflite") and values["camera"] == "0" and values["stall_timeout"] == 20.0
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for path in SERVICE.iterdir():
        assert any(fnmatch.fnmatch(f"service/{path.name}", p) for p in patterns["edgedet.device"]), path.name
