"""scripts/readme_commands.py, and the README sections `make pi-check` follows verbatim: the export section writes
the files the Raspberry Pi section copies, under the names it copies, and the wheel it names is the one `make wheel`
builds."""

import importlib.util
import shlex
import sys
import tomllib
from pathlib import Path

import pytest

from edgedet.export.exporter import artifact_paths

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "readme_commands.py"
README = (ROOT / "README.md").read_text()


def load_script():
    spec = importlib.util.spec_from_file_location("readme_commands", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


rc = load_script()

SAMPLE = """# title
## Section A
text
```
tool one --flag \\
    value   # a comment
tool two "a # not a comment"

```
### Sub of A
```
tool three
```
## Section B
```
scp -r dist/x.whl exports/m.tflite host:
```
"""


def test_a_section_runs_to_the_next_heading_of_its_level_and_keeps_its_subsections():
    blocks = rc.code_blocks(rc.section_lines(SAMPLE, "## Section A"))
    assert [rc.commands(b) for b in blocks] == [["tool one --flag value", 'tool two "a # not a comment"'],
                                                ["tool three"]]


def test_scp_arguments_are_the_copied_files():
    block = rc.code_blocks(rc.section_lines(SAMPLE, "## Section B"))[0]
    assert rc.copied_files(rc.commands(block)) == ["dist/x.whl", "exports/m.tflite"]


def test_a_missing_heading_or_block_is_a_one_line_error(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(SAMPLE)
    assert rc.main([str(readme), "## Nowhere"]) == 2
    assert rc.main([str(readme), "## Section B", "--block", "2"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("readme_commands: ") for line in errors)


def readme_commands(heading, block=1):
    return rc.commands(rc.code_blocks(rc.section_lines(README, heading))[block - 1])


def test_the_export_section_writes_what_the_pi_section_copies():
    export = [c for c in readme_commands("### `edgedet export`") if c.startswith("edgedet export shipped")]
    assert len(export) == 1, "pi-check runs the README's one `edgedet export shipped` command"
    words = shlex.split(export[0])
    formats = words[words.index("--format") + 1].split(",")
    out = Path(words[words.index("--out") + 1])
    written = {str(p) for p in artifact_paths(out, "edgedet-n-320", formats).values()}
    written |= {p + ".json" for p in written if p.endswith(".tflite")}  # the TFLite sidecars
    copied = rc.copied_files(readme_commands("## On a Raspberry Pi"))
    models = [f for f in copied if not f.endswith(".whl")]
    assert models and set(models) <= written, (models, written)
    assert (ROOT / "edgedet" / "weights" / "edgedet-n-320.pt").is_file()  # what `shipped` names


def test_the_pi_section_installs_the_wheel_make_wheel_builds():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    wheel = f"edgedet-{version}-py3-none-any.whl"
    assert f"dist/{wheel}" in rc.copied_files(readme_commands("## On a Raspberry Pi"))
    installs = [c for c in readme_commands("## On a Raspberry Pi", block=2) if c.startswith("pip install")]
    assert installs and all(shlex.split(c)[2].startswith(f"{wheel}[") for c in installs)


def test_the_commands_pi_check_runs_are_the_readme_data_and_export_lines():
    data = readme_commands("### `edgedet data`")[0]
    assert data.startswith("edgedet data synth ") and "--out data/shapes" in data
    export = [c for c in readme_commands("### `edgedet export`") if c.startswith("edgedet export shipped")][0]
    assert "--calib data/shapes" in export  # the export calibrates on the data the data line writes
    assert "readme_commands.py" in (ROOT / "scripts" / "pi_check.sh").read_text()


@pytest.mark.parametrize("line, expected", [("a b # c", "a b"), ("a '#b' c", "a '#b' c"), ("a#b", "a#b"),
                                            ("# only", ""), ("   ", "")])
def test_comments_are_cut_outside_quotes_only(line, expected):
    assert rc._strip_comment(line) == expected
