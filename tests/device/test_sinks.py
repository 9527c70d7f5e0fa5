"""device.sinks (the sink protocol; JSON lines with COCO RLE, latency log, annotated video, window) and device.draw."""
import json
import threading

import cv2
import numpy as np
import pytest

from edgedet.device.capture import Frame
from edgedet.device.detections import Detections
from edgedet.device.draw import annotate, class_color, draw_detections, draw_masks, draw_overlay, draw_semantic
from edgedet.device.errors import EdgedetError
from edgedet.device.latency import StageTimer
from edgedet.device.sinks import (BackgroundEncoder, FrameResult, ImageFolderSink, JsonLinesSink, JsonLinesWriter,
                                  LatencyLogSink, Sink, VideoSink, WindowSink, detections_to_dicts)
from edgedet.rle import rle_decode

NAMES = ["circle", "square"]


def two_detections(with_masks=True, shape_hw=(30, 40)):
    masks = None
    if with_masks:
        masks = np.zeros((2, *shape_hw), bool)
        masks[0, 2:10, 3:12] = True
        masks[1, 15:28, 20:39] = True
    return Detections(np.array([[3, 2, 12, 10], [20, 15, 39, 28]], np.float32), np.array([0.9, 0.55], np.float32),
                      np.array([1, 0], np.int32), masks)


def test_detections_to_dicts_carries_names_and_rle_masks():
    dets = two_detections()
    items = detections_to_dicts(dets, NAMES)
    assert [d["class_name"] for d in items] == ["square", "circle"]
    assert items[0]["xyxy"] == [3.0, 2.0, 12.0, 10.0] and items[0]["score"] == pytest.approx(0.9)
    for item, mask in zip(items, dets.masks):
        assert np.array_equal(rle_decode(item["segmentation"]), mask)
    assert "segmentation" not in detections_to_dicts(two_detections(with_masks=False), NAMES)[0]
    assert detections_to_dicts(Detections.empty(), NAMES) == []
    assert detections_to_dicts(two_detections(False)[np.array([0])], ["only"])[0]["class_name"] == "1"


def test_json_lines_are_flushed_per_frame(tmp_path):
    path = tmp_path / "out" / "dets.jsonl"
    sink = JsonLinesSink(str(path), NAMES)
    frame = Frame(np.zeros((30, 40, 3), np.uint8), 7, 1700000000.5, 1.0, "a.png")
    sink.write(FrameResult(frame, two_detections(), {"inference": 12.34567}), None)
    # readable before close: flushed line by line
    line = json.loads(path.read_text().splitlines()[0])
    assert line["frame"] == 7 and line["source"] == "a.png" and line["width"] == 40 and line["height"] == 30
    assert line["timestamp"] == pytest.approx(1700000000.5) and line["latency_ms"] == {"inference": 12.346}
    assert len(line["detections"]) == 2 and line["detections"][0]["segmentation"]["size"] == [30, 40]
    sink.write(FrameResult(frame, Detections.empty(), {}), None)
    sink.close()
    assert len(path.read_text().splitlines()) == 2 and sink.lines == 2


def test_json_sink_unwritable_path_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgedetError, match="--json: cannot write"):
        JsonLinesSink(str(tmp_path / "file" / "dets.jsonl"), NAMES)


def test_latency_log_writes_flushed_json_lines(tmp_path):
    log = LatencyLogSink(str(tmp_path / "lat.jsonl"))
    frame = Frame(np.zeros((30, 40, 3), np.uint8), 0, 0.0, 0.0, "x")
    log.write(FrameResult(frame, Detections.empty(), {"inference": 1.5}), None)
    assert json.loads((tmp_path / "lat.jsonl").read_text()) == {"frame": 0, "source": "x", "ms": {"inference": 1.5}}
    log.close()
    log.write(FrameResult(frame, Detections.empty(), {"inference": 1.0}), None)  # after close: ignored, no crash


def test_both_json_outputs_share_one_writer_and_say_whether_they_need_a_canvas(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgedetError, match="--latency-log: cannot write"):
        LatencyLogSink(str(tmp_path / "file" / "lat.jsonl"))
    writer = JsonLinesWriter(str(tmp_path / "w.jsonl"), "--json")
    writer.write({"a": 1})
    assert (tmp_path / "w.jsonl").read_text() == '{"a": 1}\n' and writer.lines == 1  # flushed before close
    writer.close()
    writer.write({"a": 2})
    assert writer.lines == 1
    json_sink, latency = JsonLinesSink(str(tmp_path / "d.jsonl"), NAMES), LatencyLogSink(str(tmp_path / "l.jsonl"))
    assert isinstance(json_sink._writer, JsonLinesWriter) and isinstance(latency._writer, JsonLinesWriter)
    assert not json_sink.needs_canvas and not latency.needs_canvas and VideoSink(str(tmp_path / "v.avi")).needs_canvas
    assert latency.records_output_time and not json_sink.records_output_time  # written after the output stage
    json_sink.close()
    latency.close()


def test_a_sink_must_implement_write():
    class NoWrite(Sink):
        pass

    with pytest.raises(TypeError):
        NoWrite()


def test_window_sink_shows_each_new_canvas_once_and_q_asks_to_stop(monkeypatch):
    shown, keys = [], [-1, -1, ord("q")]
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append(image))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: keys.pop(0))
    sink = WindowSink()
    assert sink.needs_canvas
    canvas = np.zeros((4, 4, 3), np.uint8)
    sink.write(FrameResult(Frame(canvas, 0, 0.0, 0.0, "x"), Detections.empty()), canvas)
    assert sink.pump_events() is False and sink.pump_events() is False  # the same canvas is shown once
    assert len(shown) == 1 and shown[0] is canvas
    assert sink.pump_events() is True  # q


def test_video_sink_writes_a_readable_video_letterboxing_odd_frames(tmp_path):
    path = tmp_path / "out.mp4"
    sink = VideoSink(str(path), fps=12)
    for k in range(5):
        size = (48, 64) if k != 3 else (30, 50)
        image = np.full((*size, 3), 40 * k, np.uint8)
        sink.write(FrameResult(Frame(image, k, 0.0, 0.0, "x"), Detections.empty()), image)
    sink.close()
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
    assert int(frames[4].mean()) > int(frames[1].mean())


def test_video_sink_times_its_background_encode_as_the_save_stage(tmp_path):
    timer = StageTimer()
    sink = VideoSink(str(tmp_path / "out.avi"), fps=5, timer=timer)
    image = np.full((32, 48, 3), 90, np.uint8)
    for k in range(4):
        sink.write(FrameResult(Frame(image, k, 0.0, 0.0, "x"), Detections.empty()), image)
    sink.close()
    assert timer.summary()["save"]["count"] == 4 and sink.frames == 4
    assert timer.take_record() == {}  # encoded in its own thread: in no frame record of the caller's


def test_background_encoder_keeps_the_order_and_loses_nothing_on_close():
    done = []
    encoder = BackgroundEncoder(done.append, "--save x", "test-encoder", depth=2)
    for k in range(50):
        encoder.put(k)
    encoder.close()  # what is queued is encoded first
    assert done == list(range(50))


def test_background_encoder_queue_is_bounded():
    release, started = threading.Event(), threading.Event()

    def slow(item):
        started.set()
        release.wait(10)

    encoder = BackgroundEncoder(slow, "--save x", "test-encoder", depth=2)
    encoder.put(0)
    started.wait(10)  # item 0 is being encoded: two more fit in the queue, the fourth waits
    encoder.put(1)
    encoder.put(2)
    fourth = threading.Thread(target=encoder.put, args=(3,), daemon=True)
    fourth.start()
    fourth.join(0.3)
    assert fourth.is_alive()
    release.set()
    fourth.join(10)
    encoder.close()
    assert not fourth.is_alive()


def test_a_failed_encode_is_reported_by_the_next_put_and_by_close():
    def failing(item):
        if item == 1:
            raise OSError("disk full")

    encoder = BackgroundEncoder(failing, "--save out.mp4", "test-encoder")
    encoder.put(0)
    encoder.put(1)
    with pytest.raises(EdgedetError, match="--save out.mp4: writing failed: OSError: disk full"):
        for k in range(2, 1000):  # the error is seen once the encoder has got to item 1
            encoder.put(k)
    with pytest.raises(EdgedetError, match="disk full"):
        encoder.close()


def test_an_image_the_folder_sink_cannot_write_ends_with_its_own_message(tmp_path):
    timer = StageTimer()
    sink = ImageFolderSink(str(tmp_path / "out"), timer=timer)
    image = np.full((16, 24, 3), 50, np.uint8)
    sink.write(FrameResult(Frame(image, 0, 0.0, 0.0, "cam"), Detections.empty()), image)
    sink.close()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["cam_000000.jpg"] and timer.summary()["save"]["count"] == 1
    sink = ImageFolderSink(str(tmp_path / "gone"))
    (tmp_path / "gone").rmdir()  # the folder vanished under the run
    sink.write(FrameResult(Frame(image, 0, 0.0, 0.0, "cam"), Detections.empty()), image)
    with pytest.raises(EdgedetError) as caught:
        sink.close()
    assert str(caught.value).startswith("--save: cannot write ") and "writing failed" not in str(caught.value)


@pytest.mark.parametrize("name, message", [("out.gif", "unsupported video suffix"),
                                           ("afile/out.mp4", "--save: cannot create folder")])
def test_video_sink_bad_paths(tmp_path, name, message):
    (tmp_path / "afile").write_text("a file where a folder would go")
    with pytest.raises(EdgedetError, match=message):
        VideoSink(str(tmp_path / name))


def test_video_sink_makes_its_folder_as_json_does(tmp_path):
    sink = VideoSink(str(tmp_path / "new" / "deeper" / "out.mp4"))
    sink.close()
    assert (tmp_path / "new" / "deeper").is_dir()


def test_drawing_changes_pixels_where_expected():
    image = np.full((30, 40, 3), 100, np.uint8)
    dets = two_detections()
    out = annotate(image, dets, NAMES, fps=10.0, latency_ms={"inference": 5.0})
    assert np.array_equal(image, np.full((30, 40, 3), 100, np.uint8))  # annotate draws on a copy
    assert not np.array_equal(out[20, 30], image[20, 30])  # inside mask 1
    canvas = np.full((30, 40, 3), 100, np.uint8)
    draw_masks(canvas, dets.masks, dets.class_ids, alpha=0.5)
    expected = (np.full(3, 100.0) * 0.5 + np.array(class_color(0)) * 0.5).astype(np.uint8)
    assert np.array_equal(canvas[20, 30], expected)
    assert np.array_equal(canvas[0, 0], [100, 100, 100])  # outside every mask


def test_boxes_semantic_and_overlay():
    canvas = np.zeros((60, 80, 3), np.uint8)
    draw_detections(canvas, two_detections(with_masks=False, shape_hw=(60, 80)), NAMES)
    assert canvas[15:29, 20].any()  # left edge of the second box
    labels = np.zeros((60, 80), np.uint8)
    labels[40:, :] = 2
    labels[0, 0] = 255
    sem = draw_semantic(np.zeros((60, 80, 3), np.uint8), labels)
    assert sem[50, 50].any() and not sem[10, 10].any() and not sem[0, 0].any()
    over = draw_overlay(np.zeros((60, 300, 3), np.uint8), 12.5, {"inference": 3.0})
    assert over[:10, :40].any()
