"""device.latency: the rolling line and the summary table name every stage that ran, including semantic, draw,
the stream's encode and output, in a real run with a drawn video and a connected viewer."""
import logging
import threading
import time
import urllib.request

import numpy as np

from edgedet.device.latency import STAGE_ORDER, StageTimer, format_rolling_line, format_summary_table
from edgedet.device.runner import RunOptions, Runner
from edgedet.device.stream import StreamSink
from tests.device.test_backends import make_onnx_model


def test_the_rolling_line_names_every_stage_in_display_order():
    timer = StageTimer()
    for name in reversed(STAGE_ORDER + ("thermal_wait",)):
        timer.add(name, 2.0)
    line = format_rolling_line(timer.rolling(), fps=20.0)
    positions = [line.index(f" {name} 2.0/2.0/2.0") for name in STAGE_ORDER + ("thermal_wait",)]
    assert positions == sorted(positions) and line.startswith(" 20.0 FPS")
    assert format_rolling_line(timer.rolling(), 20.0, stages=("inference", "nope")) == \
        " 20.0 FPS | inference 2.0/2.0/2.0  (ms p50/p90/p99)"
    table = format_summary_table(timer.summary())
    assert all(f"\n{name:<12}" in table for name in STAGE_ORDER)


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def read_one_part(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        while not response.readline().startswith(b"Content-Length:"):
            pass


def test_a_drawn_and_streamed_run_reports_semantic_draw_encode_save_and_output(tmp_path, capsys):
    model = make_onnx_model(tmp_path / "seg.onnx", semantic=("bg", "road", "grass"))
    options = RunOptions(model=str(model), source="synthetic", save=str(tmp_path / "out.avi"),
                         stream="127.0.0.1:0", log_every=0.05, threads=1)
    runner = Runner(options)
    lines, logger = Lines(), logging.getLogger("edgedet.run")
    logger.addHandler(lines)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        deadline = time.perf_counter() + 60
        while not any(isinstance(s, StreamSink) for s in runner.sinks) and time.perf_counter() < deadline:
            time.sleep(0.02)
        server = next(s.server for s in runner.sinks if isinstance(s, StreamSink))
        for _ in range(2):
            read_one_part(server.url + "stream.mjpg")
        while (not any(" encode " in line and " save " in line for line in lines.lines)
               and time.perf_counter() < deadline):
            time.sleep(0.02)
    finally:
        options.stop_event.set()
        thread.join(30)
        logger.removeHandler(lines)
        logger.setLevel(previous_level)
    rolling = [line for line in lines.lines if "FPS |" in line]
    assert rolling and all(f" {stage} " in rolling[-1] for stage in ("semantic", "draw", "encode", "save", "output",
                                                                        "inference", "end_to_end"))
    summary = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1] for line in summary.splitlines() if line.split() and
            line.split()[0] in STAGE_ORDER}
    assert {"semantic", "draw", "encode", "save", "output"} <= set(rows)
    assert 1 <= int(rows["encode"]) <= int(rows["draw"])  # encoded only for the viewer, in its own thread
    assert int(rows["save"]) == int(rows["draw"])  # every drawn frame is saved, in the video's encoder thread
    assert np.isfinite(runner.detector.timer.summary()["encode"]["p50"])
