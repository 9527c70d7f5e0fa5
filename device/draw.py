"""Annotation: boxes, labels with scores, translucent instance masks, a semantic overlay, an FPS/latency line."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import cv2
import numpy as np

from .detections import Detections


def class_color(class_id: int) -> tuple:
    """A stable, well separated BGR colour per class id (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def palette(n: int) -> np.ndarray:
    """uint8 (n, 3) BGR colours, row k = class_color(k)."""
    return np.array([class_color(k) for k in range(max(n, 1))], dtype=np.uint8)


def draw_detections(image_bgr: np.ndarray, detections: Detections, names: Optional[Sequence[str]] = None,
                    mask_alpha: float = 0.45, thickness: int = 2) -> np.ndarray:
    """Draw `detections` onto `image_bgr` in place (masks first, then boxes and "name 0.87" labels); returns it.
    names: class names, index = class id; None = the detections' own names (ids as text without either)."""
    if detections.masks is not None and len(detections):
        draw_masks(image_bgr, detections.masks, detections.class_ids, mask_alpha)
    h, w = image_bgr.shape[:2]
    scale = max(0.4, min(w, h) / 900)
    labels = detections.class_names if names is None else detections.with_names(names).class_names
    for (x1, y1, x2, y2), score, class_id, name in zip(detections.xyxy, detections.scores, detections.class_ids,
                                                       labels):
        color = class_color(int(class_id))
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(image_bgr, p1, p2, color, thickness, cv2.LINE_AA)
        _label(image_bgr, f"{name} {score:.2f}", p1, color, scale)
    return image_bgr


def draw_masks(image_bgr: np.ndarray, masks: np.ndarray, class_ids: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend bool (N, H, W) masks (frame size) into the image in place, each in its class colour."""
    if len(masks) == 0:
        return image_bgr
    colors = palette(int(class_ids.max()) + 1)[class_ids]  # (N, 3)
    covered = masks.any(axis=0)
    if not covered.any():
        return image_bgr
    # the last mask wins where instances overlap (drawn in score order, most confident last)
    owner = (len(masks) - 1) - np.argmax(masks[::-1], axis=0)
    overlay = colors[owner[covered]].astype(np.float32)
    pixels = image_bgr[covered].astype(np.float32)
    image_bgr[covered] = (pixels * (1 - alpha) + overlay * alpha).astype(np.uint8)
    return image_bgr


def draw_semantic(image_bgr: np.ndarray, label_map: np.ndarray, alpha: float = 0.35,
                  background: int = 0) -> np.ndarray:
    """Blend an (H, W) semantic label map (frame size) into the image in place; label `background` is left clear."""
    labels = label_map.astype(np.int64)
    covered = (labels != background) & (labels != 255)
    if not covered.any():
        return image_bgr
    colors = palette(int(labels[covered].max()) + 1)
    overlay = colors[labels[covered]].astype(np.float32)
    image_bgr[covered] = (image_bgr[covered].astype(np.float32) * (1 - alpha) + overlay * alpha).astype(np.uint8)
    return image_bgr


def draw_overlay(image_bgr: np.ndarray, fps: float, latency_ms: Dict[str, float],
                 stages: Sequence[str] = ("inference", "end_to_end")) -> np.ndarray:
    """Top-left line "12.3 FPS | inference 45.1 ms | end_to_end 60.2 ms" on a dark band, in place."""
    parts = [f"{fps:.1f} FPS"] + [f"{s} {latency_ms[s]:.1f} ms" for s in stages if s in latency_ms]
    text = " | ".join(parts)
    scale = max(0.4, image_bgr.shape[1] / 1400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image_bgr, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(image_bgr, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr


def _label(image: np.ndarray, text: str, corner: tuple, color: tuple, scale: float) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = corner
    top = y - th - base - 2 if y - th - base - 2 >= 0 else y
    cv2.rectangle(image, (x, top), (x + tw + 2, top + th + base + 2), color, -1)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 1, cv2.LINE_AA)


def annotate(image_bgr: np.ndarray, detections: Detections, names: Optional[Sequence[str]] = None,
             semantic: Optional[np.ndarray] = None, fps: Optional[float] = None,
             latency_ms: Optional[Dict[str, float]] = None) -> np.ndarray:
    """A copy of the frame with the semantic map, detections and (if fps is given) the FPS/latency line.
    names: class names (None = the detections' own, `draw_detections`)."""
    canvas = image_bgr.copy()
    if semantic is not None:
        draw_semantic(canvas, semantic)
    draw_detections(canvas, detections, names)
    if fps is not None:
        draw_overlay(canvas, fps, latency_ms or {})
    return canvas
