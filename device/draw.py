"""Annotation: boxes, labels with scores, translucent instance masks, a semantic overlay with its legend, an
FPS/latency line.

Drawing costs what is drawn, never a float pass over the whole frame: each instance mask is blended inside its
box only, in integer arithmetic; the semantic overlay is coloured at the resolution it was computed at (half the
model's input resolution, `Detector.finish_semantic_to_draw`), resized to the frame once and blended once where it
is not background; boxes, labels, the legend and the FPS band are OpenCV primitives. The FPS band never hides a label:
labels that would fall under it move below it.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .detections import Detections
from .rle import tight_boxes
from .zones import Line, Zone

MASK_ALPHA = 0.45  # opacity of instance masks
SEMANTIC_ALPHA = 0.35  # opacity of the semantic overlay
LINE_WIDTH = 2  # box outline thickness in pixels (--line-width)
IGNORE_LABEL = 255  # semantic label that is never drawn (unlabelled pixels)
TRUNCATE = 0.499  # OpenCV rounds to nearest; this offset makes mask blends truncate (exact for alpha 0.5)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@lru_cache(maxsize=1024)
def class_color(class_id: int) -> tuple:
    """A stable, well separated BGR colour per class id (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


@lru_cache(maxsize=64)
def palette(n: int) -> np.ndarray:
    """uint8 (n, 3) BGR colours, row k = class_color(k); read-only (cached)."""
    colors = np.array([class_color(k) for k in range(max(n, 1))], dtype=np.uint8)
    colors.setflags(write=False)
    return colors


# ---- instances: masks, boxes, labels


def draw_detections(image_bgr: np.ndarray, detections: Detections, names: Optional[Sequence[str]] = None,
                    mask_alpha: float = MASK_ALPHA, thickness: int = LINE_WIDTH, *, hide_labels: bool = False,
                    hide_conf: bool = False, track_ids: Optional[np.ndarray] = None,
                    clear_wh: Tuple[int, int] = (0, 0)) -> np.ndarray:
    """Draw `detections` onto `image_bgr` in place (masks first, then boxes and "name 0.87" labels); returns it.

    names: class names, index = class id; None = the detections' own names (ids as text without either).
    hide_labels / hide_conf: no labels at all / labels without the score (--hide-labels, --hide-conf).
    track_ids: optional int (N,) ids, written before the name ("#7 person 0.87").
    clear_wh: (w, h) of a top-left area no label may cover (the FPS band); (0, 0) = none.
    """
    if detections.masks is not None and len(detections):
        draw_masks(image_bgr, detections.masks, detections.class_ids, mask_alpha, boxes_xyxy=detections.xyxy,
                   spans=detections.mask_spans)
    corners = np.round(detections.xyxy).astype(np.int64).tolist()
    texts = [None] * len(corners) if hide_labels else label_texts(detections, names, hide_conf, track_ids)
    scale = label_scale(image_bgr.shape[:2])
    for (x1, y1, x2, y2), class_id, text in zip(corners, detections.class_ids.tolist(), texts):
        color = class_color(class_id)
        cv2.rectangle(image_bgr, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        if text is not None:
            _label(image_bgr, text, (x1, y1), color, scale, clear_wh)
    return image_bgr


def label_texts(detections: Detections, names: Optional[Sequence[str]] = None, hide_conf: bool = False,
                track_ids: Optional[np.ndarray] = None) -> List[str]:
    """The label of each detection: "name 0.87", "name" with hide_conf, "#7 " in front with track ids."""
    labels = detections.class_names if names is None else detections.with_names(names).class_names
    if not hide_conf:
        labels = [f"{name} {score:.2f}" for name, score in zip(labels, detections.scores.tolist())]
    if track_ids is not None:
        labels = [f"#{int(t)} {label}" for t, label in zip(track_ids, labels)]
    return labels


def label_scale(shape_hw: Tuple[int, int]) -> float:
    """Font scale of box labels for a frame of (h, w) pixels."""
    return max(0.4, min(shape_hw) / 900)


def draw_masks(image_bgr: np.ndarray, masks: np.ndarray, class_ids: np.ndarray, alpha: float = MASK_ALPHA,
               boxes_xyxy: Optional[np.ndarray] = None, spans: Optional[np.ndarray] = None) -> np.ndarray:
    """Blend bool (N, H, W) masks (frame size) into the image in place, each in its class colour; returns it.

    Only the pixels where a mask can be True are touched: its `spans`, int (N, 4) [row0, row1, col0, col1) (the
    detections' `mask_spans`, which the mask builders give: a two-stage mask is pasted over its proposal, which
    may reach beyond the refined box), else its box `boxes_xyxy` float32 (N, 4) frame pixels (masks made inside
    their boxes), else its tight box (a scan of the stack). Where instances overlap, the one with the highest
    index shows, blended once.
    """
    if len(masks) == 0:
        return image_bgr
    spans = _drawn_spans(masks, boxes_xyxy, spans)
    matrices = _blend_matrices(palette(int(class_ids.max()) + 1)[class_ids], alpha)
    overlapped = _overlaps_later(spans)
    claimed = np.zeros(masks.shape[1:], dtype=bool) if any(overlapped) else None  # pixels a later mask shows
    for k in range(len(masks) - 1, -1, -1):
        r0, r1, c0, c1 = spans[k]
        if r0 >= r1 or c0 >= c1:
            continue
        inside = masks[k, r0:r1, c0:c1]
        if claimed is not None:
            taken = claimed[r0:r1, c0:c1]
            shown = inside & ~taken if overlapped[k] else inside
            taken |= inside
            inside = shown
        region = image_bgr[r0:r1, c0:c1]
        cv2.copyTo(cv2.transform(region, matrices[k]), inside.view(np.uint8), region)
    return image_bgr


def _drawn_spans(masks: np.ndarray, boxes_xyxy: Optional[np.ndarray],
                 spans: Optional[np.ndarray]) -> List[List[int]]:
    """[row0, row1, col0, col1) per mask, outside which it is all False: `draw_masks`'s spans, boxes or scan."""
    if spans is not None:
        return np.asarray(spans, dtype=np.int64).reshape(-1, 4).tolist()
    if boxes_xyxy is not None:
        return _pixel_spans(boxes_xyxy, masks.shape[1:])
    return tight_boxes(masks).tolist()


def _pixel_spans(boxes_xyxy: np.ndarray, shape_hw: Tuple[int, int]) -> List[List[int]]:
    """float (N, 4) xyxy boxes -> per box [row0, row1, col0, col1) of the pixels it touches, clipped to (h, w)."""
    h, w = shape_hw
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    low = np.floor(boxes[:, :2]).clip(0, [w, h])
    high = np.ceil(boxes[:, 2:]).clip(0, [w, h])
    return np.stack([low[:, 1], high[:, 1], low[:, 0], high[:, 0]], axis=1).astype(np.int64).tolist()


def _blend_matrices(colors: np.ndarray, alpha: float) -> np.ndarray:
    """uint8 (N, 3) BGR colours -> float64 (N, 3, 4) per-channel affine maps for cv2.transform: pixel * (1 - alpha)
    + color * alpha, truncated like an integer blend (a 50% blend of p and c is (p + c) // 2). One affine map of a
    box's pixels and one masked copy blend a mask: no per-pixel gather."""
    alpha = min(max(float(alpha), 0.0), 1.0)
    matrices = np.zeros((len(colors), 3, 4))
    matrices[:, [0, 1, 2], [0, 1, 2]] = 1.0 - alpha
    matrices[:, :, 3] = colors * alpha - TRUNCATE
    return matrices


def _overlaps_later(spans: List[List[int]]) -> List[bool]:
    """Per [row0, row1, col0, col1) span: whether a later one intersects it (its pixels may be taken by a later
    mask)."""
    boxes = np.asarray(spans, dtype=np.int64).reshape(-1, 4)
    rows = (boxes[:, None, 0] < boxes[None, :, 1]) & (boxes[None, :, 0] < boxes[:, None, 1])
    cols = (boxes[:, None, 2] < boxes[None, :, 3]) & (boxes[None, :, 2] < boxes[:, None, 3])
    return np.triu(rows & cols, k=1).any(axis=1).tolist()


def _label(image: np.ndarray, text: str, corner: tuple, color: tuple, scale: float,
           clear_wh: Tuple[int, int] = (0, 0)) -> None:
    """A filled label with `text` at a box's top-left `corner`: above the box, else inside below its top edge."""
    (tw, th), base = text_size(text, scale)
    x, y = corner
    height = th + base + 2
    top = _label_top(x, y, height, clear_wh)
    cv2.rectangle(image, (x, top), (x + tw + 2, top + height), color, -1)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, top + th + 1), FONT, scale, ink, 1, cv2.LINE_AA)


@lru_cache(maxsize=4096)
def text_size(text: str, scale: float) -> Tuple[Tuple[int, int], int]:
    """cv2.getTextSize of `text` in FONT at `scale`, thickness 1: ((w, h), baseline), cached (labels repeat)."""
    return cv2.getTextSize(text, FONT, scale, 1)


def _label_top(x: int, y: int, height: int, clear_wh: Tuple[int, int]) -> int:
    """Top row of a label `height` pixels tall for a box whose top-left corner is (x, y): above the box when it
    fits in the frame and clear of the top-left area `clear_wh` (the label extends right from x); otherwise inside
    the box below its top edge, pushed down below that area when the box top itself is under it."""

    def covered(top: int) -> bool:
        return x < clear_wh[0] and top < clear_wh[1]

    above = y - height
    if above >= 0 and not covered(above):
        return above
    return max(y, clear_wh[1]) if covered(y) else y


# ---- semantic overlay and its legend


def draw_semantic(image_bgr: np.ndarray, label_map: np.ndarray, alpha: float = SEMANTIC_ALPHA,
                  background: int = 0) -> np.ndarray:
    """Blend a semantic label map into the image in place; label `background` (and 255) is left clear.

    label_map: integer (h, w) class ids covering the whole frame, at the frame's resolution or any other (half the
    model's input resolution: `Detector.finish_semantic_to_draw`); coloured at its own resolution, then resized to
    the frame with nearest neighbour once and blended once (OpenCV, rounded), only where it is not background.
    """
    labels = np.asarray(label_map)
    shown = (labels != background) & (labels != IGNORE_LABEL)
    if not shown.any():
        return image_bgr
    colored = colorize(labels)
    coverage = shown.view(np.uint8)
    h, w = image_bgr.shape[:2]
    if labels.shape != (h, w):
        colored = cv2.resize(colored, (w, h), interpolation=cv2.INTER_NEAREST)
        coverage = cv2.resize(coverage, (w, h), interpolation=cv2.INTER_NEAREST)
    blended = cv2.addWeighted(image_bgr, 1.0 - alpha, colored, alpha, 0.0)
    cv2.copyTo(blended, coverage, image_bgr)
    return image_bgr


def colorize(label_map: np.ndarray) -> np.ndarray:
    """Integer (h, w) class ids (>= 0) -> uint8 (h, w, 3) BGR class colours (`class_color`)."""
    labels = np.asarray(label_map)
    if labels.dtype == np.uint8 or int(labels.max(initial=0)) < 256:  # one OpenCV table look-up, no NumPy gather
        return cv2.applyColorMap(labels.astype(np.uint8, copy=False), _color_table())
    return palette(int(labels.max()) + 1)[labels]


@lru_cache(maxsize=1)
def _color_table() -> np.ndarray:
    """uint8 (256, 1, 3): `palette(256)` as the colour map cv2.applyColorMap takes."""
    return np.ascontiguousarray(palette(256).reshape(256, 1, 3))


def semantic_classes_present(label_map: np.ndarray, count: int, background: int = 0) -> List[int]:
    """Class ids 0..count-1 found in an integer label map, in id order, without `background`."""
    labels = np.asarray(label_map)
    if labels.dtype == np.uint8:  # OpenCV's histogram: no copy to int64 as np.bincount makes
        found = cv2.calcHist([labels], [0], None, [256], [0, 256]).ravel()[:count]
    else:
        found = np.bincount(labels.ravel(), minlength=count)[:count]
    return [k for k in np.flatnonzero(found).tolist() if k != background]


def draw_legend(image_bgr: np.ndarray, label_map: np.ndarray, names: Sequence[str], background: int = 0) -> np.ndarray:
    """A box in the bottom-right corner with a colour swatch and the name of each semantic class present in
    `label_map` (background left out), in place; nothing when none is present. The box is opaque, so it is
    rendered once per set of classes and frame size (`legend_patch`) and pasted."""
    classes = semantic_classes_present(label_map, len(names), background)
    if classes:
        patch, (x0, y0) = legend_patch(tuple(classes), tuple(names), image_bgr.shape[:2])
        image_bgr[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]] = patch
    return image_bgr


@lru_cache(maxsize=64)
def legend_patch(classes: Tuple[int, ...], names: Tuple[str, ...],
                 shape_hw: Tuple[int, int]) -> Tuple[np.ndarray, Tuple[int, int]]:
    """(uint8 BGR patch, its top-left (x, y)) of the legend of `classes` on a frame of (h, w): an opaque black box
    with a swatch and the name of each class; read-only (cached)."""
    h, w = shape_hw
    scale = label_scale((h, w)) * 0.9
    (_, th), base = text_size("Ag", scale)
    row = th + base + 4
    text_w = max(text_size(names[k], scale)[0][0] for k in classes)
    box_w, box_h = text_w + row + 12, row * len(classes) + 6
    x0, y0 = max(w - box_w - 4, 0), max(h - box_h - 4, 0)
    patch = np.zeros((min(box_h + 1, h - y0), min(box_w + 1, w - x0), 3), np.uint8)  # the box, edges included
    colors = palette(max(classes) + 1)
    for i, k in enumerate(classes):
        top = 4 + i * row
        swatch = tuple(int(v) for v in colors[k])
        cv2.rectangle(patch, (4, top + 1), (row, top + row - 3), swatch, -1)
        cv2.putText(patch, names[k], (row + 6, top + th + 1), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    patch.setflags(write=False)
    return patch, (x0, y0)


# ---- the FPS/latency band


def overlay_text(fps: float, latency_ms: Dict[str, float], stages: Sequence[str] = ("inference", "end_to_end")) -> str:
    """"12.3 FPS | inference 45.1 ms | end_to_end 60.2 ms" (stages missing from `latency_ms` left out)."""
    return " | ".join([f"{fps:.1f} FPS"] + [f"{s} {latency_ms[s]:.1f} ms" for s in stages if s in latency_ms])


def overlay_size(image_shape_hw: Tuple[int, int], text: str) -> Tuple[int, int]:
    """(w, h) of the band `draw_overlay` draws for `text` on a frame of (h, w): it covers x < w, y < h."""
    (tw, th), base = text_size(text, _overlay_scale(image_shape_hw))
    return tw + 9, th + base + 9


def draw_overlay(image_bgr: np.ndarray, fps: float, latency_ms: Dict[str, float],
                 stages: Sequence[str] = ("inference", "end_to_end")) -> np.ndarray:
    """Top-left line "12.3 FPS | inference 45.1 ms | end_to_end 60.2 ms" on a dark band, in place."""
    text = overlay_text(fps, latency_ms, stages)
    scale = _overlay_scale(image_bgr.shape[:2])
    band_w, band_h = overlay_size(image_bgr.shape[:2], text)
    (_, th), _ = text_size(text, scale)
    cv2.rectangle(image_bgr, (0, 0), (band_w - 1, band_h - 1), (0, 0, 0), -1)
    cv2.putText(image_bgr, text, (4, th + 4), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr


def _overlay_scale(shape_hw: Tuple[int, int]) -> float:
    return max(0.4, shape_hw[1] / 1400)


def annotate(image_bgr: np.ndarray, detections: Detections, names: Optional[Sequence[str]] = None,
             semantic: Optional[np.ndarray] = None, fps: Optional[float] = None,
             latency_ms: Optional[Dict[str, float]] = None, *, semantic_names: Optional[Sequence[str]] = None,
             hide_labels: bool = False, hide_conf: bool = False, line_width: int = LINE_WIDTH,
             track_ids: Optional[np.ndarray] = None) -> np.ndarray:
    """A copy of the frame with the semantic map (and, given `semantic_names`, its legend), the detections and
    (if fps is given) the FPS/latency line, which no label goes under.

    names: class names (None = the detections' own, `draw_detections`); semantic: integer (h, w) label map
    covering the frame at any resolution (`draw_semantic`); hide_labels, hide_conf, line_width, track_ids: as
    `draw_detections` takes them.
    """
    canvas = image_bgr.copy()
    if semantic is not None:
        draw_semantic(canvas, semantic)
    band_wh = (0, 0) if fps is None else overlay_size(canvas.shape[:2], overlay_text(fps, latency_ms or {}))
    draw_detections(canvas, detections, names, thickness=line_width, hide_labels=hide_labels, hide_conf=hide_conf,
                    track_ids=track_ids, clear_wh=band_wh)
    if semantic is not None and semantic_names:
        draw_legend(canvas, semantic, semantic_names)
    if fps is not None:
        draw_overlay(canvas, fps, latency_ms or {})
    return canvas


# ---- zones and lines (device.zones), with their counts

ZONE_COLOR = (0, 215, 255)  # BGR amber: zone outlines and their labels
LINE_COLOR = (255, 0, 255)  # BGR magenta: counting lines, their "in" arrows and labels


def draw_zones(image_bgr: np.ndarray, zones: Sequence[Zone] = (), lines: Sequence[Line] = (),
               counts: Optional[dict] = None, thickness: int = LINE_WIDTH,
               clear_wh: Tuple[int, int] = (0, 0)) -> np.ndarray:
    """Draw zone outlines and counting lines (in pixels: `Zone.resolved`) in place, each labelled with its counts
    (`ZoneCounter.counts`: "hall: 2 person, 1 dog" inside a zone, "door: in 3 / out 1" across a line); a line
    has an arrow from its middle towards its "in" side. clear_wh: (w, h) of a top-left area no label may cover
    (the FPS band), as `draw_detections` takes it. Returns the image."""
    scale = label_scale(image_bgr.shape[:2])
    zone_counts = (counts or {}).get("zones", {})
    line_counts = (counts or {}).get("lines", {})
    for zone in zones:
        polygon = np.round(np.asarray(zone.points)).astype(np.int32)
        cv2.polylines(image_bgr, [polygon], True, ZONE_COLOR, thickness, cv2.LINE_AA)
        top = polygon[np.argmin(polygon[:, 1])]
        _label(image_bgr, zone_label(zone.name, zone_counts.get(zone.name)), (int(top[0]), int(top[1])),
               ZONE_COLOR, scale, clear_wh)
    for line in lines:
        start, end = np.asarray(line.start, np.float64), np.asarray(line.end, np.float64)
        cv2.line(image_bgr, _point(start), _point(end), LINE_COLOR, thickness, cv2.LINE_AA)
        middle, direction = (start + end) / 2, end - start
        right = np.array([-direction[1], direction[0]]) / max(np.hypot(*direction), 1e-9)  # the "in" side
        cv2.arrowedLine(image_bgr, _point(middle), _point(middle + right * 12 * scale / 0.4), LINE_COLOR,
                        thickness, cv2.LINE_AA, tipLength=0.4)
        _label(image_bgr, line_label(line.name, line_counts.get(line.name)), _point(start), LINE_COLOR, scale,
               clear_wh)
    return image_bgr


def zone_label(name: str, counts: Optional[dict]) -> str:
    """"hall: 2 person, 1 dog" (objects inside per class, most first), "hall: 0" when empty, "hall" without counts."""
    if counts is None:
        return name
    inside = sorted(counts.get("inside", {}).items(), key=lambda item: (-item[1], item[0]))
    return f"{name}: " + (", ".join(f"{n} {cls}" for cls, n in inside) if inside else "0")


def line_label(name: str, counts: Optional[dict]) -> str:
    """"door: in 3 / out 1" (crossings of every class), "door" without counts."""
    if counts is None:
        return name
    return f"{name}: in {sum(counts.get('in', {}).values())} / out {sum(counts.get('out', {}).values())}"


def _point(xy: np.ndarray) -> Tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))
