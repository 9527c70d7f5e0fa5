"""device.draw: the cheap drawing against the plain reference it replaced (kept below, verbatim), the semantic
overlay at the model's resolution against the frame-size one, the legend, the drawing switches, the FPS band
that never hides a label, and a run that draws (and builds a semantic map) only when an output needs it."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedet.device import draw
from edgedet.device.detections import Detections
from edgedet.device.draw import (annotate, class_color, draw_detections, draw_legend, draw_masks, draw_overlay,
                                 draw_semantic, label_texts, overlay_size, overlay_text, palette,
                                 semantic_classes_present)
from edgedet.device.letterbox import Letterbox
from edgedet.device.masks import semantic_map
from edgedet.device.pipeline import DRAW_MAP_SCALE, Detector, argmax_planes, drawing_map_box
from tests.device.test_app import run_cli
from tests.device.test_backends import make_onnx_model

NAMES = ["circle", "square", "triangle", "star", "hexagon"]
SEMANTIC = ["bg", "road", "grass"]


# ---- the drawing as it was (floats over the whole frame), the reference the new drawing must match


def reference_draw_detections(image_bgr, detections, names=None, mask_alpha=0.45, thickness=2):
    if detections.masks is not None and len(detections):
        reference_draw_masks(image_bgr, detections.masks, detections.class_ids, mask_alpha)
    h, w = image_bgr.shape[:2]
    scale = max(0.4, min(w, h) / 900)
    labels = detections.class_names if names is None else detections.with_names(names).class_names
    for (x1, y1, x2, y2), score, class_id, name in zip(detections.xyxy, detections.scores, detections.class_ids,
                                                       labels):
        color = class_color(int(class_id))
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(image_bgr, p1, p2, color, thickness, cv2.LINE_AA)
        reference_label(image_bgr, f"{name} {score:.2f}", p1, color, scale)
    return image_bgr


def reference_draw_masks(image_bgr, masks, class_ids, alpha=0.45):
    if len(masks) == 0:
        return image_bgr
    colors = palette(int(class_ids.max()) + 1)[class_ids]
    covered = masks.any(axis=0)
    if not covered.any():
        return image_bgr
    owner = (len(masks) - 1) - np.argmax(masks[::-1], axis=0)
    overlay = colors[owner[covered]].astype(np.float32)
    pixels = image_bgr[covered].astype(np.float32)
    image_bgr[covered] = (pixels * (1 - alpha) + overlay * alpha).astype(np.uint8)
    return image_bgr


def reference_draw_semantic(image_bgr, label_map, alpha=0.35, background=0):
    labels = label_map.astype(np.int64)
    covered = (labels != background) & (labels != 255)
    if not covered.any():
        return image_bgr
    colors = palette(int(labels[covered].max()) + 1)
    overlay = colors[labels[covered]].astype(np.float32)
    image_bgr[covered] = (image_bgr[covered].astype(np.float32) * (1 - alpha) + overlay * alpha).astype(np.uint8)
    return image_bgr


def reference_draw_overlay(image_bgr, fps, latency_ms, stages=("inference", "end_to_end")):
    parts = [f"{fps:.1f} FPS"] + [f"{s} {latency_ms[s]:.1f} ms" for s in stages if s in latency_ms]
    text = " | ".join(parts)
    scale = max(0.4, image_bgr.shape[1] / 1400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image_bgr, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(image_bgr, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr


def reference_label(image, text, corner, color, scale):
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = corner
    top = y - th - base - 2 if y - th - base - 2 >= 0 else y
    cv2.rectangle(image, (x, top), (x + tw + 2, top + th + base + 2), color, -1)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 1, cv2.LINE_AA)


def reference_draw_legend(image_bgr, label_map, names, background=0):
    """The legend drawn straight onto the frame, as device.draw did before it cached the box."""
    classes = semantic_classes_present(label_map, len(names), background)
    if not classes:
        return image_bgr
    h, w = image_bgr.shape[:2]
    scale = draw.label_scale((h, w)) * 0.9
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    row = th + base + 4
    text_w = max(cv2.getTextSize(names[k], cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for k in classes)
    box_w, box_h = text_w + row + 12, row * len(classes) + 6
    x0, y0 = max(w - box_w - 4, 0), max(h - box_h - 4, 0)
    cv2.rectangle(image_bgr, (x0, y0), (x0 + box_w, y0 + box_h), (0, 0, 0), -1)
    for i, k in enumerate(classes):
        top = y0 + 4 + i * row
        swatch = tuple(int(v) for v in palette(max(classes) + 1)[k])
        cv2.rectangle(image_bgr, (x0 + 4, top + 1), (x0 + row, top + row - 3), swatch, -1)
        cv2.putText(image_bgr, names[k], (x0 + row + 6, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr


def reference_annotate(image_bgr, detections, names=None, semantic=None, fps=None, latency_ms=None):
    canvas = image_bgr.copy()
    if semantic is not None:
        reference_draw_semantic(canvas, semantic)
    reference_draw_detections(canvas, detections, names)
    if fps is not None:
        reference_draw_overlay(canvas, fps, latency_ms or {})
    return canvas


# ---- scenes


def textured_frame(shape_hw=(120, 160), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (*shape_hw, 3), dtype=np.uint8)


def scene(n=6, shape_hw=(120, 160), seed=0, overlapping=True):
    """n detections with elliptic masks inside their boxes (frame size), most confident first; with
    `overlapping` the boxes crowd one corner so masks overlap."""
    rng = np.random.default_rng(seed)
    h, w = shape_hw
    span = (w * 0.45, h * 0.45) if overlapping else (w - 40, h - 40)
    xy = rng.uniform(2, span, (n, 2))
    xyxy = np.concatenate([xy, xy + rng.uniform(12, 36, (n, 2))], axis=1).clip(0, [w, h, w, h])
    rows, cols = np.mgrid[:h, :w] + 0.5
    masks = np.zeros((n, h, w), bool)
    for k, (x1, y1, x2, y2) in enumerate(xyxy):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        masks[k] = ((cols - cx) / rx) ** 2 + ((rows - cy) / ry) ** 2 <= 1
    scores = np.sort(rng.uniform(0.3, 1.0, n))[::-1]
    return Detections(xyxy.astype(np.float32), scores, rng.integers(0, len(NAMES), n), masks, NAMES)


def max_difference(a, b):
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# ---- instance masks, boxes and labels: the same pixels as the reference


@pytest.mark.parametrize("alpha", [0.45, 0.5, 0.3, 1.0])
@pytest.mark.parametrize("with_boxes", [True, False])
def test_masks_blend_inside_their_boxes_like_the_reference(alpha, with_boxes):
    dets, frame = scene(), textured_frame()
    assert (dets.masks.sum(axis=0) > 1).any()  # overlapping instances: the highest index shows, blended once
    expected = reference_draw_masks(frame.copy(), dets.masks, dets.class_ids, alpha)
    drawn = draw_masks(frame.copy(), dets.masks, dets.class_ids, alpha, boxes_xyxy=dets.xyxy if with_boxes else None)
    assert max_difference(drawn, expected) <= (0 if alpha == 0.5 else 1)  # integer truncation vs float truncation
    outside = ~dets.masks.any(axis=0)
    assert np.array_equal(drawn[outside], frame[outside])


@pytest.mark.parametrize("n", [0, 1])
def test_no_or_one_mask(n):
    dets, frame = scene(n=max(n, 1)), textured_frame()
    masks = dets.masks[:n]
    drawn = draw_masks(frame.copy(), masks, dets.class_ids[:n], boxes_xyxy=dets.xyxy[:n])
    assert max_difference(drawn, reference_draw_masks(frame.copy(), masks, dets.class_ids[:n])) <= 1


def test_masks_reaching_beyond_their_boxes_are_drawn_whole_by_their_spans():
    # a two-stage mask is pasted over its proposal, which may be larger than the refined box it is drawn with:
    # the detections' mask_spans say where it lies, and drawing follows them, as the JSON's RLE does
    frame = textured_frame()
    masks = np.zeros((2, 120, 160), bool)
    masks[0, 20:70, 30:90] = True
    masks[1, 80:110, 100:150] = True
    spans = np.array([[20, 70, 30, 90], [80, 110, 100, 150]])
    refined = np.array([[40, 30, 70, 60], [100, 80, 150, 110]], np.float32)  # the first lies inside its mask
    dets = Detections(refined, [0.9, 0.8], [0, 1], masks, mask_spans=spans)
    expected = reference_draw_masks(frame.copy(), masks, dets.class_ids)
    above = np.s_[20:26]  # rows of the first mask above its refined box and its outline
    assert max_difference(draw_detections(frame.copy(), dets, hide_labels=True)[above], expected[above]) <= 1
    drawn = draw_masks(frame.copy(), masks, dets.class_ids, boxes_xyxy=refined, spans=spans)
    assert max_difference(drawn, expected) <= 1
    cut = draw_masks(frame.copy(), masks, dets.class_ids, boxes_xyxy=refined)  # by the boxes alone: cut at them
    assert np.array_equal(cut[above], frame[above]) and not np.array_equal(drawn[above], frame[above])


def test_empty_mask_and_box_outside_the_frame_draw_nothing():
    frame = textured_frame()
    dets = Detections(np.array([[200, 200, 220, 230], [10, 10, 30, 30]], np.float32), [0.9, 0.8], [0, 1],
                      np.zeros((2, 120, 160), bool))
    assert np.array_equal(draw_masks(frame.copy(), dets.masks, dets.class_ids, boxes_xyxy=dets.xyxy), frame)


def test_boxes_and_labels_are_the_reference_pixels():
    dets, frame = scene(shape_hw=(240, 320), overlapping=False), textured_frame((240, 320))
    plain = Detections(dets.xyxy, dets.scores, dets.class_ids, None, NAMES)
    assert np.array_equal(draw_detections(frame.copy(), plain), reference_draw_detections(frame.copy(), plain))
    with_masks = draw_detections(frame.copy(), dets, NAMES)
    assert max_difference(with_masks, reference_draw_detections(frame.copy(), dets, NAMES)) <= 1


def test_annotate_matches_the_reference_where_the_look_is_unchanged():
    dets, frame = scene(n=8, shape_hw=(240, 320), overlapping=False), textured_frame((240, 320))
    labels = np.zeros((240, 320), np.int32)
    labels[120:, :] = 2
    labels[:60, 200:] = 1
    labels[5, 5] = 255  # unlabelled: never drawn
    expected = reference_annotate(frame, dets, NAMES, semantic=labels)
    drawn = annotate(frame, dets, NAMES, semantic=labels)  # frame-size map: no resize
    assert max_difference(drawn, expected) <= 1


def test_annotate_draws_on_a_copy_and_supports_track_ids():
    dets, frame = scene(n=2), textured_frame()
    before = frame.copy()
    annotate(frame, dets, NAMES, fps=5.0, latency_ms={"inference": 3.0})
    assert np.array_equal(frame, before)
    assert label_texts(dets[:1], track_ids=np.array([7]))[0].startswith("#7 ")


# ---- the semantic overlay at the model's resolution


def smooth_logits(classes=3, size=8, seed=0):
    """float32 (1, classes, size, size) logits whose argmax forms a few smooth regions of every class."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 1, (3, 3, classes)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).transpose(2, 0, 1)[None]


@pytest.fixture
def semantic_toy(tmp_path):
    """A toy detector with a 3-class semantic head (64x64 input, logits 8x8), one frame prepared and run; its
    "seg" output replaced by smooth logits (the toy head's bias picks one class everywhere)."""
    detector = Detector(make_onnx_model(tmp_path / "seg.onnx", semantic=SEMANTIC), conf=0.3, threads=1)
    frame = cv2.resize(textured_frame((30, 40), seed=3), (320, 240), interpolation=cv2.INTER_CUBIC)
    prepared = detector.prepare(frame)
    outputs = {**detector.infer(prepared), "seg": smooth_logits()}
    return detector, frame, prepared, outputs


def test_semantic_map_to_draw_covers_the_frame_at_half_the_model_resolution(semantic_toy):
    detector, frame, prepared, outputs = semantic_toy
    small = detector.finish_semantic_to_draw(outputs, prepared)
    full = detector.finish_semantic(outputs, prepared)
    assert DRAW_MAP_SCALE == 0.5 and prepared.letterbox.resized_hw == (48, 64)
    assert small.shape == drawing_map_box(prepared.letterbox).src_hw == (24, 32) and full.shape == (240, 320)
    assert small.dtype == np.uint8
    assert detector.timer.summary()["semantic"]["count"] == 2
    upsampled = cv2.resize(small.astype(np.uint8), (320, 240), interpolation=cv2.INTER_NEAREST)
    assert len(np.unique(full)) == 3 and (upsampled != full).mean() < 0.05  # the same classes; only edges move


@pytest.mark.parametrize("classes", [1, 3, 9, 300])
def test_argmax_planes_is_numpys_argmax_ties_included(classes):
    planes = np.random.default_rng(classes).integers(0, 4, (classes, 7, 11)).astype(np.float32)  # many ties
    labels = argmax_planes(planes)
    assert labels.dtype == (np.uint8 if classes <= 256 else np.int32)
    assert np.array_equal(labels, planes.argmax(axis=0))


def test_drawing_map_box_sees_the_letterboxed_region_at_a_fraction_of_the_input_resolution():
    box = Letterbox.fit((480, 640), (320, 320))
    inner = drawing_map_box(box, scale=1.0)
    assert inner.src_hw == inner.resized_hw == (240, 320) and inner.scale_xy == (1.0, 1.0)
    assert (inner.top, inner.left, inner.dst_hw) == (box.top, box.left, box.dst_hw)
    half = drawing_map_box(box)
    assert half.src_hw == (120, 160) and half.resized_hw == (240, 320) and half.scale_xy == (2.0, 2.0)
    assert drawing_map_box(Letterbox.fit((1, 640), (320, 320))).src_hw == (1, 160)  # never empty


def test_semantic_overlay_matches_the_frame_resolution_reference_but_at_the_edges(semantic_toy):
    detector, frame, prepared, outputs = semantic_toy
    expected = reference_draw_semantic(frame.copy(), detector.finish_semantic(outputs, prepared))
    drawn = draw_semantic(frame.copy(), detector.finish_semantic_to_draw(outputs, prepared))
    differs = np.abs(drawn.astype(np.int16) - expected).max(axis=2) > 1
    assert drawn.shape == frame.shape and differs.mean() < 0.05
    assert (np.abs(drawn.astype(np.int16) - frame).max(axis=2) > 1).mean() > 0.3  # much of it is coloured


def test_semantic_overlay_from_logits_matches_through_any_letterbox():
    rng = np.random.default_rng(1)
    logits = cv2.resize(rng.normal(0, 1, (6, 6, 4)).astype(np.float32), (40, 40)).transpose(2, 0, 1)
    box = Letterbox.fit((150, 300), (320, 320))  # wide frame: tall padding, odd offsets
    frame = textured_frame((150, 300))
    expected = reference_draw_semantic(frame.copy(), semantic_map(logits, box))
    drawn = draw_semantic(frame.copy(), semantic_map(logits, drawing_map_box(box)))
    assert (np.abs(drawn.astype(np.int16) - expected).max(axis=2) > 1).mean() < 0.05


def test_semantic_background_and_unlabelled_stay_clear():
    frame = textured_frame((60, 80))
    labels = np.zeros((30, 40), np.int32)
    labels[:, 20:] = 255
    assert np.array_equal(draw_semantic(frame.copy(), labels), frame)
    labels[:15, :20] = 2
    drawn = draw_semantic(frame.copy(), labels)
    assert not np.array_equal(drawn[:30, :40], frame[:30, :40]) and np.array_equal(drawn[30:], frame[30:])
    assert np.array_equal(drawn[:, 40:], frame[:, 40:])


def test_legend_names_the_classes_present():
    labels = np.zeros((30, 40), np.int32)
    labels[:10] = 2
    labels[0, 0] = 255
    assert semantic_classes_present(labels, len(SEMANTIC)) == [2]
    canvas = draw_legend(np.zeros((120, 160, 3), np.uint8), labels, SEMANTIC)
    corner = canvas[60:, 80:].reshape(-1, 3)
    assert (corner == palette(3)[2]).all(axis=1).any()  # the swatch of class 2
    assert not (corner == palette(3)[1]).all(axis=1).any()  # class 1 is absent: no swatch
    assert not canvas[:60].any() and not canvas[:, :60].any()  # in the bottom-right corner only
    assert not draw_legend(np.zeros((120, 160, 3), np.uint8), np.zeros((30, 40), np.int32), SEMANTIC).any()


@pytest.mark.parametrize("shape_hw", [(480, 640), (120, 160), (40, 60)])
def test_the_pasted_legend_is_the_legend_drawn_in_place(shape_hw):
    labels = np.zeros((30, 40), np.int32)
    labels[:10], labels[20:, :5] = 2, 1
    for _ in range(2):  # the second paste comes from the cache
        frame = textured_frame(shape_hw)
        assert np.array_equal(draw_legend(frame.copy(), labels, SEMANTIC),
                              reference_draw_legend(frame.copy(), labels, SEMANTIC))


def test_annotate_with_a_model_resolution_map_draws_the_legend(semantic_toy):
    detector, frame, prepared, outputs = semantic_toy
    small = detector.finish_semantic_to_draw(outputs, prepared)
    with_legend = annotate(frame, Detections.empty(), semantic=small, semantic_names=SEMANTIC)
    without = annotate(frame, Detections.empty(), semantic=small)
    present = semantic_classes_present(small, len(SEMANTIC))
    assert present and not np.array_equal(with_legend, without)


# ---- switches and the FPS band


def test_the_fps_band_never_hides_a_label():
    frame = np.full((480, 640, 3), 40, np.uint8)
    dets = Detections(np.array([[4, 3, 200, 150], [400, 4, 600, 60]], np.float32), [0.9, 0.8], [1, 2], names=NAMES)
    latency = {"inference": 12.3, "end_to_end": 20.1}
    band_w, band_h = overlay_size(frame.shape[:2], overlay_text(10.0, latency))
    assert 4 < band_w < 400  # the first label starts under the band, the second right of it

    def label_pixels(canvas):
        return (canvas == class_color(1)).all(axis=2)

    drawn = annotate(frame, dets, NAMES, fps=10.0, latency_ms=latency)
    old = reference_annotate(frame, dets, NAMES, fps=10.0, latency_ms=latency)
    (_, th), base = cv2.getTextSize("square 0.90", cv2.FONT_HERSHEY_SIMPLEX, draw.label_scale((480, 640)), 1)
    under_band = slice(band_h, band_h + th + base + 2)
    assert label_pixels(drawn)[under_band, 5:40].mean() > 0.5  # the label, moved below the band
    assert label_pixels(old)[under_band, 5:40].mean() < 0.1  # where the old drawing hid it under the band
    assert not label_pixels(drawn)[:band_h, :band_w].any()  # the band is drawn whole
    right = (slice(0, 70), slice(395, 640))  # a label clear of the band is where it always was
    assert np.array_equal(drawn[right], old[right])


@pytest.mark.parametrize("x, y, clear, top", [
    (50, 100, (0, 0), 100 - 20),  # room above: above the box
    (50, 5, (0, 0), 5),  # no room above: inside, below the top edge
    (50, 50, (120, 25), 50 - 20),  # above, clear of the band
    (50, 40, (120, 25), 40),  # above would be under the band: inside the box
    (50, 10, (120, 25), 25),  # the box top is under the band: below the band
    (130, 10, (120, 25), 10),  # right of the band: unaffected
])
def test_label_placement(x, y, clear, top):
    assert draw._label_top(x, y, 20, clear) == top


def test_hide_labels_hide_conf_and_line_width():
    dets, frame = scene(n=3, shape_hw=(240, 320), overlapping=False), textured_frame((240, 320))
    boxes_only = Detections(dets.xyxy, dets.scores, dets.class_ids, None, NAMES)
    no_labels = annotate(frame, boxes_only, hide_labels=True)
    expected = frame.copy()
    for (x1, y1, x2, y2), c in zip(np.round(dets.xyxy).astype(int), dets.class_ids):
        cv2.rectangle(expected, (x1, y1), (x2, y2), class_color(int(c)), 2, cv2.LINE_AA)
    assert np.array_equal(no_labels, expected)
    assert label_texts(dets, hide_conf=True) == dets.class_names
    assert not np.array_equal(annotate(frame, boxes_only, hide_conf=True), annotate(frame, boxes_only))
    thin, thick = annotate(frame, boxes_only, hide_labels=True), annotate(frame, boxes_only, hide_labels=True,
                                                                         line_width=5)
    assert (thick != frame).any(axis=2).sum() > 1.5 * (thin != frame).any(axis=2).sum()


def test_detector_annotate_takes_the_same_switches(semantic_toy):
    detector, frame, prepared, outputs = semantic_toy
    dets = detector.finish(outputs, prepared)[:3]
    assert len(dets)
    plain = detector.annotate(frame, dets, hide_labels=True, line_width=3)
    assert np.array_equal(plain, annotate(frame, dets, hide_labels=True, line_width=3))
    small = detector.finish_semantic_to_draw(outputs, prepared)
    assert np.array_equal(detector.annotate(frame, dets, small, hide_conf=True),
                          annotate(frame, dets, semantic=small, semantic_names=SEMANTIC, hide_conf=True))


def test_overlay_is_unchanged():
    canvas = np.zeros((60, 300, 3), np.uint8)
    assert np.array_equal(draw_overlay(canvas.copy(), 12.5, {"inference": 3.0}),
                          reference_draw_overlay(canvas.copy(), 12.5, {"inference": 3.0}))


# ---- the run draws only for outputs that need it


def count_calls(monkeypatch):
    """Count device.runner.annotate calls (and their keyword arguments) and semantic maps built for drawing."""
    from edgedet.device import runner as run_module

    calls = {"draw": [], "semantic": 0}
    real_annotate, real_semantic = run_module.annotate, Detector.finish_semantic_to_draw

    def counting_annotate(*args, **kwargs):
        calls["draw"].append(kwargs)
        return real_annotate(*args, **kwargs)

    def counting_semantic(self, *args):
        calls["semantic"] += 1
        return real_semantic(self, *args)

    monkeypatch.setattr(run_module, "annotate", counting_annotate)
    monkeypatch.setattr(Detector, "finish_semantic_to_draw", counting_semantic)
    return calls



def test_a_json_only_run_never_draws_nor_builds_a_semantic_map(tmp_path, capsys, monkeypatch):
    calls = count_calls(monkeypatch)
    model = make_onnx_model(tmp_path / "seg.onnx", semantic=SEMANTIC)
    code, out, err = run_cli(["--model", model, "--source", "synthetic", "--max-frames", 3,
                              "--json", tmp_path / "d.jsonl"], capsys)
    assert code == 0, err
    assert len(Path(tmp_path / "d.jsonl").read_text().splitlines()) == 3
    assert calls == {"draw": [], "semantic": 0}
    assert "draw" not in out and "semantic" not in out  # the summary names only the stages that ran


def test_a_saved_video_is_drawn_with_the_switches(tmp_path, capsys, monkeypatch):
    calls = count_calls(monkeypatch)
    model = make_onnx_model(tmp_path / "seg.onnx", semantic=SEMANTIC)
    code, out, err = run_cli(["--model", model, "--source", "synthetic", "--max-frames", 3, "--save",
                              tmp_path / "out.avi", "--hide-conf", "--line-width", 3], capsys)
    assert code == 0, err
    assert len(calls["draw"]) == 3 and calls["semantic"] == 3
    assert all(k["hide_conf"] and not k["hide_labels"] and k["line_width"] == 3 and k["semantic"] is not None
               and k["semantic_names"] == SEMANTIC for k in calls["draw"])
    assert "semantic" in out and "draw" in out  # the summary table
    calls["draw"].clear()
    code, out, err = run_cli(["--model", model, "--source", "synthetic", "--max-frames", 2, "--save",
                              tmp_path / "out2.avi", "--no-semantic", "--hide-labels"], capsys)
    assert code == 0, err
    assert len(calls["draw"]) == 2 and calls["semantic"] == 3  # no new semantic map
    assert all(k["semantic"] is None and k["hide_labels"] for k in calls["draw"])


def test_a_bad_line_width_is_named(tmp_path, capsys):
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--line-width", 0], capsys)
    assert code == 2 and "--line-width must be >= 1" in err and "Traceback" not in err
