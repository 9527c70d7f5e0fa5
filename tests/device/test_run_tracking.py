"""`edgedet run --track --zone ... --line ...` end to end on the synthetic source with the seeded toy model: track
ids, events and counts in the JSON lines, the "track" and "zones" stages, the drawn frames, the status page's
counts, and every bad --zone / --line flag as a one-line error."""
import threading

import cv2
import numpy as np
import pytest

from edgedet.device.runner import RunOptions, Runner
from edgedet.device.zones import Line, Zone
from tests.device.test_app import _get_json, read_jsonl, run_cli, stream_server, wait_for
from tests.device.test_backends import make_onnx_model

WHOLE_FRAME = "all:0,0,1,0,1,1,0,1"  # fractions: every reference point is inside, so each track enters once
MIDDLE = "mid:0.5,0,0.5,1"


def test_run_with_zones_and_lines_writes_track_ids_events_and_counts(tmp_path, capsys):
    model = make_onnx_model(tmp_path / "toy.onnx")
    code, out, err = run_cli(["--model", model, "--source", "synthetic", "--max-frames", 8, "--track",
                              "--zone", WHOLE_FRAME, "--zone", "corner:0,0,100,0,100,100", "--line", MIDDLE,
                              "--json", tmp_path / "d.jsonl", "--save", f"{tmp_path / 'drawn'}/"], capsys)
    assert code == 0, err
    lines = read_jsonl(tmp_path / "d.jsonl")
    assert len(lines) == 8 and all(line["detections"] for line in lines), "the toy head fires on every frame"
    assert all(isinstance(d["track_id"], int) for line in lines for d in line["detections"])
    enters = [e for line in lines for e in line["events"] if e["kind"] == "enter" and e["zone"] == "all"]
    tracks = {d["track_id"] for line in lines for d in line["detections"]}
    assert sorted(e["track_id"] for e in enters) == sorted(tracks)  # each track enters the whole frame once
    first = enters[0]
    assert set(first) == {"kind", "zone", "track_id", "class_id", "class_name", "score", "xyxy", "frame", "timestamp"}
    counts = lines[-1]["counts"]
    assert set(counts["zones"]) == {"all", "corner"} and set(counts["lines"]) == {"mid"}
    assert sum(counts["zones"]["all"]["inside"].values()) == len(lines[-1]["detections"])
    assert set(counts["zones"]["all"]["dwell_s"]) == {str(d["track_id"]) for d in lines[-1]["detections"]}
    assert {"track", "zones"} <= set(lines[0]["latency_ms"])
    assert "tracking is on" not in err  # --track was given
    drawn = cv2.imread(str(tmp_path / "drawn" / "synthetic_000007.jpg"))
    assert drawn is not None and drawn.shape == (480, 640, 3)
    magenta = np.abs(drawn[:, 318:323].astype(int) - (255, 0, 255)).max(axis=-1) < 80  # the line "mid", drawn
    assert magenta.any(axis=1).mean() > 0.8


def test_track_alone_writes_track_ids_but_no_events(tmp_path, capsys):
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 4, "--track", "--json", tmp_path / "d.jsonl"], capsys)
    assert code == 0, err
    lines = read_jsonl(tmp_path / "d.jsonl")
    ids = [[d["track_id"] for d in line["detections"]] for line in lines]
    assert ids[0] and all(sorted(frame) == sorted(ids[0]) for frame in ids)  # the same objects keep their ids
    assert all("events" not in line and "counts" not in line for line in lines)
    assert "track" in lines[0]["latency_ms"] and "zones" not in lines[0]["latency_ms"]


def test_a_line_without_track_turns_tracking_on_with_a_note(tmp_path, capsys):
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 2, "--line", MIDDLE, "--json", tmp_path / "d.jsonl"], capsys)
    assert code == 0, err
    assert len([line for line in err.splitlines() if "tracking is on" in line]) == 1
    lines = read_jsonl(tmp_path / "d.jsonl")
    assert all("track_id" in d for line in lines for d in line["detections"]) and "counts" in lines[0]


@pytest.mark.parametrize("flags, message", [
    (["--zone", "hall"], r"--zone 'hall': expected NAME:x1,y1"),
    (["--zone", "hall:1,2,3,4"], r"--zone 'hall:1,2,3,4': needs x,y pairs of at least 3 points"),
    (["--zone", "hall:0,0,1,1,2,2"], "the polygon has no area"),
    (["--line", "door:1,2,3"], r"--line 'door:1,2,3': needs exactly 2 points"),
    (["--line", "door:1,x,3,4"], "'x' is not a number"),
    (["--line", "door:-1,2,3,4"], "must be finite and >= 0"),
    (["--line", ":1,2,3,4"], "the name before ':'"),
    (["--zone", "door:0,0,9,0,9,9", "--line", "door:0,5,9,5"], "the name 'door' is used twice"),
])
def test_bad_zone_and_line_flags_give_one_line_errors_and_exit_2(tmp_path, capsys, flags, message):
    import re

    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic", *flags],
                             capsys)
    error_lines = [line for line in err.splitlines() if line.startswith("edgedet run: error:")]
    assert code == 2 and len(error_lines) == 1 and "Traceback" not in err, err
    assert re.search(message, error_lines[0]), error_lines[0]


def test_status_page_carries_tracks_and_counts(tmp_path):
    options = RunOptions(model=str(make_onnx_model(tmp_path / "toy.onnx")), source="synthetic", conf=0.3,
                         stream="127.0.0.1:0", zones=[Zone.parse(WHOLE_FRAME)], lines=[Line.parse(MIDDLE)])
    runner = Runner(options)
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=runner.run()), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: stream_server(runner) is not None and runner.frames_done >= 3, 60)
        status = _get_json(stream_server(runner).url + "status.json")
        assert status["tracks"] >= 1
        assert sum(status["counts"]["zones"]["all"]["inside"].values()) >= 1
        assert set(status["counts"]["lines"]["mid"]) == {"in", "out"}
        assert "track" in status["stages"] and "zones" in status["stages"]
    finally:
        options.stop_event.set()
        thread.join(30)
    assert result.get("code") == 0


def test_detector_with_track_tracks_successive_calls(tmp_path):
    from edgedet.device.pipeline import Detector

    detector = Detector(make_onnx_model(tmp_path / "toy.onnx"), conf=0.3, track=True)
    image = np.full((120, 160, 3), 90, np.uint8)
    first, second = detector(image), detector(image)
    assert len(first) and sorted(first.tracker_ids.tolist()) == sorted(second.tracker_ids.tolist())
    assert detector.timer.summary()["track"]["count"] == 2
    drawn = detector.annotate(image, second)
    assert drawn.shape == image.shape and (drawn != image).any()
    assert Detector(make_onnx_model(tmp_path / "toy.onnx"), conf=0.3)(image).tracker_ids is None
