"""Outputs of `edgedet run` for images: --save DIR/ (annotated images, own names and sizes), --save-txt (YOLO label
files, read back by the project's YOLO reader), --save-crop, and a video of mixed-size frames (letterboxed), with
the codec choice (H.264 when OpenCV encodes it)."""
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedet.data.yolo import read_yolo
from edgedet.device.capture import Frame
from edgedet.device.detections import Detections
from edgedet.device.errors import EdgedetError
from edgedet.device.polygons import mask_to_polygon
from edgedet.device.runner import RunOptions, build_sinks, check_output_options
from edgedet.device.sinks import (BROWSER_CODECS, VIDEO_CODECS, CropSink, FrameNames, FrameResult, ImageFolderSink,
                                  LabelsSink, VideoSink, can_encode, crop_box, fit_canvas, is_image_folder,
                                  _note_no_browser_codec, video_codec, yolo_label_lines)
from tests.device.test_app import read_jsonl, run_cli
from tests.device.test_backends import make_onnx_model

NAMES = ["circle", "square"]
SIZES_HW = [(30, 40), (64, 48), (50, 90)]  # portrait, landscape and odd sizes in one folder


def frame_of(path, index=0, image=None):
    image = cv2.imread(str(path)) if image is None else image
    return Frame(image, index, 0.0, 0.0, str(path))


def write_mixed_images(folder: Path):
    """PNG and JPEG files of SIZES_HW, each a distinct flat colour; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, size in enumerate(SIZES_HW):
        path = folder / f"pic_{k}{'.png' if k % 2 == 0 else '.jpg'}"
        cv2.imwrite(str(path), np.full((*size, 3), 60 + 50 * k, np.uint8))
        paths.append(path)
    return paths


def detections_with_masks(shape_hw):
    """Two objects: class 0 with a ring-shaped mask (a hole) plus a second part, and a rectangle of class 1."""
    h, w = shape_hw
    masks = np.zeros((2, h, w), bool)
    masks[1, 10:h - 1, 10:w - 1] = True
    masks[0, 2:12, 3:15] = True
    masks[0, 5:8, 6:10] = False  # a hole
    masks[0, 14:16, 20:23] = True  # a second part
    return Detections(np.array([[3, 2, 23, 16], [10, 10, w - 1, h - 1]], np.float32), np.array([0.9, 0.6]),
                      np.array([0, 1]), masks, names=NAMES)


# ---- --save DIR/


@pytest.mark.parametrize("text, expected", [("out/", True), ("out", False), ("out.mp4", False)])
def test_a_folder_is_a_trailing_slash_or_an_existing_folder(tmp_path, text, expected):
    assert is_image_folder(str(tmp_path / text) + ("/" if text.endswith("/") else "")) is expected
    (tmp_path / "exists").mkdir()
    assert is_image_folder(str(tmp_path / "exists"))


def test_saved_images_keep_their_names_and_sizes(tmp_path):
    paths = write_mixed_images(tmp_path / "in")
    sink = ImageFolderSink(str(tmp_path / "out") + "/")
    assert sink.needs_canvas
    for k, path in enumerate(paths):
        frame = frame_of(path, k)
        canvas = frame.image.copy()
        canvas[0, 0] = 255
        sink.write(FrameResult(frame, Detections.empty()), canvas)
    sink.close()
    for path, size in zip(paths, SIZES_HW):
        saved = cv2.imread(str(tmp_path / "out" / path.name))
        assert saved is not None and saved.shape == (*size, 3)
        if path.suffix == ".png":  # lossless: the canvas was saved, not the frame
            assert (saved[0, 0] == 255).all()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)


def test_saving_into_the_source_folder_never_overwrites_a_source_image(tmp_path):
    (path,) = write_mixed_images(tmp_path / "in")[:1]
    before = path.read_bytes()
    sink = ImageFolderSink(str(tmp_path / "in") + "/")
    frame = frame_of(path, 0)
    with pytest.raises(EdgedetError, match="would overwrite the source image"):
        sink.write(FrameResult(frame, Detections.empty()), frame.image.copy())
    assert path.read_bytes() == before


def test_a_renamed_frame_never_takes_a_name_already_given():
    names = FrameNames()
    image = np.zeros((4, 4, 3), np.uint8)
    stems = [names.stem(Frame(image, k, 0.0, 0.0, source)) for k, source in
             enumerate(["a/x.png", "b/x_2.png", "c/x.png"])]
    assert len(set(stems)) == 3


def test_frame_names_of_videos_cameras_and_repeated_names():
    names = FrameNames()
    image = np.zeros((4, 4, 3), np.uint8)
    assert names.stem(Frame(image, 3, 0.0, 0.0, "clips/walk.mp4")) == "walk_000003"
    assert names.stem(Frame(image, 4, 0.0, 0.0, "camera 0")) == "camera_0_000004"
    assert names.stem(Frame(image, 0, 0.0, 0.0, "a/x.png")) == "x"
    assert names.stem(Frame(image, 1, 0.0, 0.0, "b/x.png")) == "x_1"  # same name from another folder: kept apart


# ---- --save-txt


def test_label_files_round_trip_through_the_yolo_reader(tmp_path):
    images = tmp_path / "data" / "images"
    paths = write_mixed_images(images)
    sink = LabelsSink(str(tmp_path / "data" / "labels"))
    assert not sink.needs_canvas
    sent = {}
    for k, path in enumerate(paths):
        frame = frame_of(path, k)
        detections = detections_with_masks(frame.image.shape[:2])
        if k == 1:  # boxes only
            detections = Detections(detections.xyxy, detections.scores, detections.class_ids, names=NAMES)
        if k == 2:  # nothing found: an empty label file
            detections = Detections.empty(names=NAMES)
        sent[path.name] = detections
        sink.write(FrameResult(frame, detections), None)
    sink.close()
    assert (tmp_path / "data" / "labels" / "pic_2.txt").read_text() == ""
    dataset = read_yolo(images, names=NAMES)
    assert len(dataset.samples) == 3
    for sample, size in zip(dataset.samples, SIZES_HW):
        sent_detections = sent[sample.image_path.name]
        assert sample.shape_hw == size
        assert sample.class_ids.tolist() == sent_detections.class_ids.tolist()
        if sent_detections.masks is not None:  # the polygons give back every mask pixel, holes included
            np.testing.assert_array_equal(sample.instance_masks(), sent_detections.masks)
        else:
            np.testing.assert_allclose(sample.xyxy, sent_detections.xyxy, atol=1e-3)


def test_label_lines_are_normalised_boxes_or_polygons():
    detections = detections_with_masks((20, 40))
    lines = yolo_label_lines(detections, (20, 40))
    assert len(lines) == 2 and lines[0].startswith("0 ") and len(lines[0].split()) > 7  # a polygon
    values = [float(v) for line in lines for v in line.split()[1:]]
    assert min(values) >= 0 and max(values) <= 1
    box_only = Detections(detections.xyxy[1:], detections.scores[1:], detections.class_ids[1:])
    assert yolo_label_lines(box_only, (20, 40)) == ["1 0.612500 0.725000 0.725000 0.450000"]
    empty_mask = Detections(detections.xyxy[1:], [0.5], [1], np.zeros((1, 20, 40), bool))
    assert yolo_label_lines(empty_mask, (20, 40)) == ["1 0.612500 0.725000 0.725000 0.450000"]
    assert mask_to_polygon(np.zeros((5, 5), bool)) is None


# ---- --save-crop


def test_crops_go_under_their_class_name(tmp_path):
    image = np.arange(30 * 40 * 3, dtype=np.uint8).reshape(30, 40, 3)
    detections = Detections(np.array([[2.5, 3.2, 10.1, 12.0], [20, 5, 39.6, 29.9], [41, 0, 45, 4]]),
                            [0.9, 0.8, 0.7], [1, 0, 0])
    sink = CropSink(str(tmp_path / "crops"), NAMES)
    sink.write(FrameResult(Frame(image, 0, 0.0, 0.0, "in/shot.png"), detections), None)
    sink.close()
    first = cv2.imread(str(tmp_path / "crops" / "square" / "shot_0.jpg"))
    assert first.shape == (9, 9, 3)  # rows 3..11, columns 2..10: every pixel the box touches
    assert cv2.imread(str(tmp_path / "crops" / "circle" / "shot_1.jpg")).shape == (25, 20, 3)
    assert sink.crops == 2  # the box outside the image has no pixels: no file
    assert crop_box([41, 0, 45, 4], (30, 40)) == (slice(0, 4), slice(41, 41))


# ---- video


def test_mixed_size_video_is_letterboxed_not_squashed(tmp_path):
    path = tmp_path / "out.avi"
    sink = VideoSink(str(path), fps=5)
    sizes = [(48, 64), (64, 32), (48, 64)]  # the second frame is portrait
    for k, size in enumerate(sizes):
        image = np.full((*size, 3), 250, np.uint8)
        sink.write(FrameResult(Frame(image, k, 0.0, 0.0, "x"), Detections.empty()), image)
    sink.close()
    capture = cv2.VideoCapture(str(path))
    frames = [capture.read()[1] for _ in range(3)]
    capture.release()
    assert all(f.shape == (48, 64, 3) for f in frames)
    portrait = frames[1].mean(axis=2)
    # 64x32 fitted into 48 rows: 24 columns of image centred, black bars left and right
    assert portrait[:, :16].max() < 40 and portrait[:, -16:].max() < 40 and portrait[:, 24:40].min() > 200


def test_fit_canvas_keeps_the_aspect_ratio():
    wide = np.full((10, 40, 3), 200, np.uint8)
    out = fit_canvas(wide, (40, 40))
    assert out.shape == (40, 40, 3) and out[:15].max() == 0 and out[25:].max() == 0 and out[16:24].min() == 200
    assert fit_canvas(wide, (40, 10)) is wide


def test_mp4_uses_h264_when_this_opencv_encodes_it_else_mpeg4_and_says_which_players(tmp_path, caplog):
    expected = "avc1" if can_encode("avc1", ".mp4") else "mp4v"
    _note_no_browser_codec.cache_clear()  # said once per process: maybe already said by an earlier test
    logger = logging.getLogger("edgedet.sinks")  # "edgedet" may not propagate to the root (device.app's set-up)
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger="edgedet.sinks"):
            sink = VideoSink(str(tmp_path / "out.mp4"))
    finally:
        logger.removeHandler(caplog.handler)
    assert sink.fourcc == expected == video_codec(".mp4")
    if expected == "mp4v":  # the PyPI opencv-python-headless wheels have no H.264 encoder
        assert "not web browsers" in caplog.text and ".webm" in caplog.text
    image = np.zeros((48, 64, 3), np.uint8)
    sink.write(FrameResult(Frame(image, 0, 0.0, 0.0, "x"), Detections.empty()), image)
    sink.close()
    assert (tmp_path / "out.mp4").stat().st_size > 0
    assert set(VIDEO_CODECS[".webm"]) <= set(BROWSER_CODECS)


def test_webm_is_written_and_read_back(tmp_path):
    if not can_encode("VP80", ".webm"):
        pytest.skip("this OpenCV cannot encode VP8")
    sink = VideoSink(str(tmp_path / "out.webm"), fps=5)
    for k in range(3):
        image = np.full((48, 64, 3), 80 * k, np.uint8)
        sink.write(FrameResult(Frame(image, k, 0.0, 0.0, "x"), Detections.empty()), image)
    sink.close()
    capture = cv2.VideoCapture(str(tmp_path / "out.webm"))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 3


# ---- the flags, from options to sinks, and end to end


def test_save_folder_skips_the_video_suffix_check_and_builds_image_sinks(tmp_path):
    options = RunOptions(model="m.onnx", source="x", save=str(tmp_path / "shots") + "/",
                         save_txt=str(tmp_path / "labels"), save_crop=str(tmp_path / "crops"))
    check_output_options(options)
    sinks = build_sinks(options, NAMES, 0.0, dict)
    assert [type(s) for s in sinks] == [ImageFolderSink, LabelsSink, CropSink]
    with pytest.raises(EdgedetError, match="unsupported video suffix '' .*end the path with /"):
        check_output_options(RunOptions(model="m.onnx", source="x", save=str(tmp_path / "shots_without_slash")))


def test_an_unwritable_output_folder_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgedetError, match="--save-txt: cannot create folder"):
        LabelsSink(str(tmp_path / "file" / "labels"))


def test_run_on_a_folder_of_mixed_sizes_writes_images_labels_and_crops(tmp_path, capsys):
    images = tmp_path / "data" / "images"
    paths = write_mixed_images(images)
    model = make_onnx_model(tmp_path / "toy.onnx")
    code, out, err = run_cli(["--model", model, "--source", images, "--conf", "0.3", "--threads", "1",
                              "--save", str(tmp_path / "shots") + "/", "--save-txt", tmp_path / "data" / "labels",
                              "--save-crop", tmp_path / "crops", "--json", tmp_path / "d.jsonl"], capsys)
    assert code == 0, err
    for path, size in zip(paths, SIZES_HW):
        assert cv2.imread(str(tmp_path / "shots" / path.name)).shape == (*size, 3)
    dataset = read_yolo(images, names=NAMES)
    frames = {Path(line["source"]).name: line for line in read_jsonl(tmp_path / "d.jsonl")}
    assert len(dataset.samples) == len(frames) == 3
    for sample in dataset.samples:  # the label files hold the JSON lines' objects
        found = frames[sample.image_path.name]["detections"]
        assert sample.class_ids.tolist() == [d["class_id"] for d in found]
        np.testing.assert_allclose(sample.xyxy, [d["xyxy"] for d in found], atol=0.02)
    assert sum(len(s) for s in dataset.samples) > 0
    crops = list((tmp_path / "crops").rglob("*.jpg"))
    with_pixels = [d for line in frames.values() for d in line["detections"]
                   if all(s.stop > s.start for s in crop_box(d["xyxy"], (line["height"], line["width"])))]
    assert len(crops) == len(with_pixels) > 0  # a box squeezed to a line on the border has no crop
    assert {p.parent.name for p in crops} <= set(NAMES)
