"""The `edgedet` dispatcher: help, unknown verbs, and the one-line error contract."""
import subprocess
import sys

import pytest

from edgedet import cli


def test_no_verb_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "VERB" in capsys.readouterr().out


def test_unknown_verb_is_rejected_by_argparse():
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["frobnicate"])
    assert exit_info.value.code == 2


def test_every_verb_builds_its_parser():
    for verb in cli.VERBS:
        parser = cli.build_parser(verb)
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([verb, "--help"])
        assert exit_info.value.code == 0


def test_user_error_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "nope.json"
    result = subprocess.run(
        [sys.executable, "-m", "edgedet", "eval", "--gt", str(missing), "--pred", str(missing)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope.json" in lines[0]


def test_unwritable_output_is_one_line_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "edgedet", "data", "synth", "--out", "/proc/edgedet-cannot-write-here",
         "--train", "1", "--val", "0", "--workers", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgedet data synth: error: cannot use /proc/edgedet")


def test_bad_imgsz_is_one_line_without_traceback(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not a model")
    result = subprocess.run(
        [sys.executable, "-m", "edgedet", "run", "--model", str(model), "--source", "synthetic", "--imgsz", "abc"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_a_bad_flag_value_is_one_line_pointing_at_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--model", "m.onnx", "--source", "synthetic", "--conf", "abc"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "usage:" not in err
    assert err == "edgedet run: error: argument --conf: invalid float value: 'abc' (see edgedet run --help)\n"
    with pytest.raises(SystemExit):
        cli.main(["data", "synth", "--out", "x", "--train", "many"])
    assert capsys.readouterr().err == ("edgedet data synth: error: argument --train: expected a whole number >= 0, "
                                       "got 'many' (see edgedet data synth --help)\n")


def test_an_unknown_flag_is_named_by_its_verb(capsys):
    assert cli.main(["data", "synth", "--out", "x", "--bogus"]) == 2
    assert capsys.readouterr().err == ("edgedet data synth: error: unrecognized arguments: --bogus "
                                       "(see edgedet data synth --help)\n")
