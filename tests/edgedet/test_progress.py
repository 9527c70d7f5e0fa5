"""Progress bars (edgedet.progress, tqdm): drawn on a terminal, silent in a log file or pipe, and when disabled."""
import contextlib
import io

import pytest

from edgedet.progress import bar_text, progress_bar


class Terminal(io.StringIO):
    """A captured stderr that says it is a terminal."""

    def isatty(self):
        return True


def _draw(stream, enabled=True, steps=3):
    with contextlib.redirect_stderr(stream):
        with progress_bar(steps, "eval", "img", enabled=enabled) as bar:
            for _ in range(steps):
                bar.update()
    return stream.getvalue()


def test_bar_is_drawn_on_a_terminal():
    text = _draw(Terminal())
    assert "eval      3/3 [########################]" in text and "img/s" in text and text.endswith("\n")


@pytest.mark.parametrize("stream, enabled", [(io.StringIO(), True), (Terminal(), False), (io.StringIO(), False)])
def test_no_bar_in_a_log_file_or_when_disabled(stream, enabled):
    assert _draw(stream, enabled) == ""


@pytest.mark.parametrize("done, total, expected", [(0, 4, "[" + "." * 20 + "]"), (1, 4, "[#####" + "." * 15 + "]"),
                                                   (4, 4, "[" + "#" * 20 + "]"), (0, 0, "[" + "." * 20 + "]")])
def test_bar_text_for_log_lines(done, total, expected):
    assert bar_text(done, total) == expected


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()])
def test_data_synth_draws_its_bar_only_on_a_terminal(tmp_path, stream):
    from edgedet.cli import main

    with contextlib.redirect_stderr(stream), contextlib.redirect_stdout(io.StringIO()):
        code = main(["data", "synth", "--out", str(tmp_path), "--train", "2", "--val", "0", "--imgsz", "64",
                     "--workers", "1"])
    assert code == 0
    assert ("synth train      2/2 [" in stream.getvalue()) == stream.isatty()
