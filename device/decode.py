"""YOLO decoders: raw output arrays + `ModelSpec` -> `Candidates` (boxes in network-input pixels, before NMS).

Every decoder is a pure function of NumPy arrays. `decode` picks one from the spec and the output shapes
(`select_layout`), with an explicit override. Layouts (see device/spec.py):
- "edgedet"    this project's multi-scale anchor head (per level "<level>_box", "<level>_score" and
               "<level>_mask" outputs, found by name); `decode_edgedet_level` is THE decode that training,
               evaluation and the device share (edgedet/models mirrors it in torch and tests the two equal).
- "grid"       the lecture's single-scale YOLO grid (S, S, A*(5+C)) or (S, S, A, 5+C).
- "yolov5"     (1, N, 5+C) or (1, 5+C, N).
- "yolov8"     (1, 4+C, N) or (1, N, 4+C).
- "yolov8-seg" (1, 4+C+M, N) or (1, N, 4+C+M), plus prototypes (1, M, h, w) or (1, h, w, M).
Third-party outputs are matched by shape, never by position or name. Integer outputs are dequantized first
(`dequantize_outputs`).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import EdgedetError
from .preprocessing import dequantize
from .spec import LAYOUTS, ModelSpec, level_part_name


@dataclass(frozen=True)
class Candidates:
    """N candidate detections before NMS, in network-input pixels.

    xyxy:       float32 (N, 4) corners in network-input pixels.
    scores:     float32 (N,) confidence of the best class (objectness x class probability where there is one).
    class_ids:  int32 (N,) best class.
    mask_coefs: float32 (N, M) instance-mask coefficients, or None for detectors without masks.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    mask_coefs: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index) -> "Candidates":
        """Select by integer array, slice or boolean mask; returns new `Candidates`."""
        coefs = None if self.mask_coefs is None else self.mask_coefs[index]
        return Candidates(self.xyxy[index], self.scores[index], self.class_ids[index], coefs)

    @classmethod
    def concatenate(cls, parts: Sequence["Candidates"]) -> "Candidates":
        """Join candidate sets in order (all with or all without mask coefficients)."""
        coefs = None if parts[0].mask_coefs is None else np.concatenate([p.mask_coefs for p in parts])
        return cls(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.class_ids for p in parts]), coefs)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 logistic function 1 / (1 + exp(-x)); saturates to 0/1 without warnings."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


def _best_class(class_scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(N, C) scores -> (best score float32 (N,), class id int32 (N,)); C = 0 gives a single class 0."""
    if class_scores.shape[1] == 0:
        n = len(class_scores)
        return np.ones(n, np.float32), np.zeros(n, np.int32)
    ids = class_scores.argmax(axis=1)
    return np.take_along_axis(class_scores, ids[:, None], axis=1)[:, 0], ids.astype(np.int32)


def _cxcywh_columns_to_xyxy(cx, cy, w, h) -> np.ndarray:
    """Four (N,) columns -> float32 (N, 4) corners."""
    half_w, half_h = w / 2, h / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1).astype(np.float32, copy=False)


# ---------------------------------------------------------------- edgedet: the project's own head

def decode_edgedet_level(raw_box: np.ndarray, raw_score: np.ndarray, raw_mask: Optional[np.ndarray], stride: int,
                         anchors_wh: np.ndarray):
    """Decode one FPN level of the edgedet head. THE reference decode (training and evaluation use it too).

    raw_box:    float32 (K*4, H, W) one image's "<level>_box" output (NCHW without the batch axis); per anchor k
                the channels 4k + (tx, ty, tw, th).
    raw_score:  float32 (K*(1+C), H, W) "<level>_score"; per anchor k the channels k*(1+C) + (to, tc_1..tc_C).
    raw_mask:   float32 (K*M, H, W) "<level>_mask", per anchor k the channels k*M + (m_1..m_M); None if M = 0.
    stride:     s, input pixels per cell.  anchors_wh: (K, 2) anchor (w, h) in input pixels.
    For anchor k at cell (row i, column j):
        cx = (j + 2*sigmoid(tx) - 0.5) * s          cy = (i + 2*sigmoid(ty) - 0.5) * s
        w  = anchor_w[k] * (2*sigmoid(tw))**2       h  = anchor_h[k] * (2*sigmoid(th))**2
        objectness = sigmoid(to), class probability = sigmoid(tc), mask coefficients = m (linear).
    Returns, with candidates ordered by anchor k, then row i, then column j (N = K*H*W):
        xyxy float32 (N, 4) input pixels, objectness float32 (N,), class_probs float32 (N, C),
        mask_coefs float32 (N, M) (M = 0 without raw_mask).
    """
    anchors_wh = np.asarray(anchors_wh, dtype=np.float32).reshape(-1, 2)
    k = len(anchors_wh)
    box = _per_anchor(raw_box, k, "box")  # (K, 4, H*W)
    score = _per_anchor(raw_score, k, "score")  # (K, 1+C, H*W)
    h, w = raw_box.shape[1:]
    if box.shape[1] != 4:
        raise EdgedetError(f"edgedet box output has shape {raw_box.shape}, expected ({k}*4, H, W)")
    if raw_score.shape[1:] != (h, w) or score.shape[1] < 1:
        raise EdgedetError(f"edgedet score output has shape {raw_score.shape}, expected ({k}*(1+C), {h}, {w})")
    n, num_classes = k * h * w, score.shape[1] - 1
    act = sigmoid(box)
    s = np.float32(stride)
    cols = np.arange(w, dtype=np.float32)[None, None, :]
    rows = np.arange(h, dtype=np.float32)[None, :, None]
    cx = ((cols + 2 * act[:, 0].reshape(k, h, w) - np.float32(0.5)) * s).reshape(-1)
    cy = ((rows + 2 * act[:, 1].reshape(k, h, w) - np.float32(0.5)) * s).reshape(-1)
    bw = (anchors_wh[:, 0:1] * (2 * act[:, 2]) ** 2).reshape(-1)
    bh = (anchors_wh[:, 1:2] * (2 * act[:, 3]) ** 2).reshape(-1)
    probs = sigmoid(score)
    objectness = probs[:, 0].reshape(-1)
    class_probs = probs[:, 1:].transpose(0, 2, 1).reshape(n, num_classes)
    if raw_mask is None:
        mask_coefs = np.zeros((n, 0), np.float32)
    else:
        mask = _per_anchor(raw_mask, k, "mask")
        mask_coefs = mask.transpose(0, 2, 1).reshape(n, mask.shape[1])
    return _cxcywh_columns_to_xyxy(cx, cy, bw, bh), objectness, class_probs, mask_coefs


def _per_anchor(raw_part: np.ndarray, k: int, part: str) -> np.ndarray:
    """(K*D, H, W) -> float32 (K, D, H*W), checking that the channels split into K anchors."""
    if raw_part.ndim != 3 or raw_part.shape[0] % k:
        raise EdgedetError(f"edgedet {part} output has shape {raw_part.shape}, expected ({k}*D, H, W) for {k} anchors")
    return np.asarray(raw_part, dtype=np.float32).reshape(k, raw_part.shape[0] // k, -1)


def _edgedet_level_parts(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> list:
    """Per level (finest first) {part: output name} for the parts of spec.head_parts, all present in `outputs`."""
    levels = [{part: level_part_name(level, part) for part in spec.head_parts} for level in spec.level_outputs]
    missing = [name for parts in levels for name in parts.values() if name not in outputs]
    if missing:
        raise EdgedetError(f"model outputs {sorted(outputs)} lack the edgedet head outputs {missing}")
    return levels


def decode_edgedet(outputs: Mapping[str, np.ndarray], spec: ModelSpec,
                   min_score: Optional[float] = None) -> Candidates:
    """All edgedet candidates of one image: level (finest first), then anchor, row, column.

    score = objectness x best class probability; xyxy in network-input pixels; mask_coefs (N, M) or None.
    Outputs may be float or integer (dequantized with spec.output_quant, only the values that are used).
    min_score: if given, only candidates with objectness > min_score are decoded (score <= objectness, so every
    candidate scoring > min_score is kept, with exactly the values of the full decode); the caller still
    applies its threshold.
    """
    if not spec.anchors or len(spec.anchors) != len(spec.strides):
        raise EdgedetError(f"edgedet model spec needs one anchor list per stride {spec.strides}, "
                           f"got {len(spec.anchors)}")
    levels = _edgedet_level_parts(outputs, spec)
    parts = [_decode_edgedet_level_full(outputs, names, spec, stride, anchors) if min_score is None
             else _decode_edgedet_level_above(outputs, names, spec, stride, anchors, min_score)
             for names, stride, anchors in zip(levels, spec.strides, spec.anchors)]
    return Candidates.concatenate(parts)


def _decode_edgedet_level_full(outputs: Mapping[str, np.ndarray], names: Mapping[str, str], spec: ModelSpec,
                               stride: int, anchors) -> Candidates:
    """Every candidate of one level through the reference `decode_edgedet_level` (integer outputs dequantized)."""
    nhwc = spec.output_layout == "NHWC"
    chw = {}
    for part, name in names.items():
        array = _level_part(outputs[name], nhwc, spec.part_channels(part), name, spec.num_anchors)
        array = _dequantize(array, spec.output_quant.get(name), name)
        chw[part] = array.transpose(2, 0, 1) if nhwc else array
    xyxy, objectness, class_probs, coefs = decode_edgedet_level(
        chw["box"], chw["score"], chw.get("mask"), stride, np.asarray(anchors))
    best, ids = _best_class(class_probs)
    return Candidates(xyxy, objectness * best, ids, coefs if "mask" in chw else None)


def _decode_edgedet_level_above(outputs: Mapping[str, np.ndarray], names: Mapping[str, str], spec: ModelSpec,
                                stride: int, anchors, min_score: float) -> Candidates:
    """One level, only candidates with objectness > min_score, computed with the reference's float32 operations
    on the gathered values (so each kept candidate equals its row of `decode_edgedet_level`).

    Each part is (1, K*D, H, W) NCHW or (1, H, W, K*D) NHWC, float or integer (with spec.output_quant[name]).
    Only the objectness channel is read in full; the other values are gathered for the kept candidates.
    """
    anchors_wh = np.asarray(anchors, dtype=np.float32).reshape(-1, 2)
    k, nhwc = len(anchors_wh), spec.output_layout == "NHWC"
    views = {part: _anchor_view(outputs[name], k, nhwc, spec.part_channels(part), name) for part, name in names.items()}
    score_view, (h, w) = views["score"]
    raw_objectness = score_view[:, :, 0].T if nhwc else score_view[:, 0, :]  # (K, H*W): candidate order
    quant = {part: spec.output_quant.get(name) for part, name in names.items()}
    objectness = sigmoid(_dequantize(raw_objectness, quant["score"])).reshape(-1)
    index = np.flatnonzero(objectness > np.float32(min_score))
    anchor, cell = np.divmod(index, h * w)

    def gather(part: str) -> np.ndarray:
        view = views[part][0]
        rows = view[cell, anchor, :] if nhwc else view[anchor, :, cell]  # (n, D), reference channel order
        return _dequantize(rows, quant[part])

    box = sigmoid(gather("box"))  # (n, 4): tx, ty, tw, th
    s = np.float32(stride)
    row, col = np.divmod(cell, w)
    cx = (col.astype(np.float32) + 2 * box[:, 0] - np.float32(0.5)) * s
    cy = (row.astype(np.float32) + 2 * box[:, 1] - np.float32(0.5)) * s
    bw = anchors_wh[anchor, 0] * (2 * box[:, 2]) ** 2
    bh = anchors_wh[anchor, 1] * (2 * box[:, 3]) ** 2
    best, ids = _best_class(sigmoid(gather("score")[:, 1:]))
    coefs = np.ascontiguousarray(gather("mask")) if "mask" in views else None
    return Candidates(_cxcywh_columns_to_xyxy(cx, cy, bw, bh), objectness[index] * best, ids, coefs)


def _level_part(raw: np.ndarray, nhwc: bool, channels: int, name: str, k: int) -> np.ndarray:
    """One part output (1, K*D, H, W) NCHW or (1, H, W, K*D) NHWC -> the 3-D array without its batch axis, checked
    to have `channels` (= K*D) channels."""
    array = np.asarray(raw)
    array = array[0] if array.ndim == 4 else array
    if array.ndim != 3 or (array.shape[2] if nhwc else array.shape[0]) != channels:
        raise EdgedetError(f"edgedet output {name!r} has shape {np.shape(raw)}, expected {channels} channels "
                           f"({k} anchors)")
    return array


def _anchor_view(raw: np.ndarray, k: int, nhwc: bool, channels: int, name: str):
    """(1, K*D, H, W) NCHW -> view (K, D, H*W); (1, H, W, K*D) NHWC -> view (H*W, K, D). Returns (view, (H, W))."""
    array = _level_part(raw, nhwc, channels, name, k)
    h, w = array.shape[:2] if nhwc else array.shape[1:]
    view = array.reshape(h * w, k, channels // k) if nhwc else array.reshape(k, channels // k, h * w)
    return view, (h, w)


def _dequantize(array: np.ndarray, quant, name: str = "") -> np.ndarray:
    """Integer values -> float32 scale * (q - zero_point) (the formula of `dequantize_outputs`); float -> float32."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer):
        if quant is None:
            raise EdgedetError(f"output {name!r} is {array.dtype} but the model spec has no quantization "
                               f"parameters for it")
        return dequantize(array, quant)
    return array.astype(np.float32, copy=False)


# ---------------------------------------------------------------- the lecture's single-scale grid

def decode_grid(output: np.ndarray, spec: ModelSpec) -> Candidates:
    """The lecture's YOLO grid: (S_h, S_w, A*(5+C)) or (S_h, S_w, A, 5+C), optional leading batch axis of 1.

    Values are final, as in the lecture's label vector y, per anchor a: (p_c, b_x, b_y, b_h, b_w, c_1..c_C) with
    p_c and c in 0..1, (b_x, b_y) the box centre relative to its cell (0..1), and (b_h, b_w) the box size relative
    to anchor a (spec.anchors[0][a] = (w, h) in input pixels) or, without anchors, relative to the cell.
    score = p_c x best c. Candidate order: row, column, anchor.
    """
    depth = 5 + spec.num_classes
    grid = np.asarray(output, dtype=np.float32)
    if grid.ndim == 5 or (grid.ndim == 4 and grid.shape[0] == 1 and grid.shape[1] != 1):
        grid = grid[0]  # leading batch axis
    if grid.ndim == 3 and grid.shape[-1] % depth == 0:
        grid = grid.reshape(grid.shape[0], grid.shape[1], -1, depth)
    if grid.ndim != 4 or grid.shape[-1] != depth:
        raise EdgedetError(f"grid output has shape {np.shape(output)}, expected (S, S, A*{depth}) or (S, S, A, {depth})")
    rows, cols, num_anchors = grid.shape[:3]
    cell_h = np.float32(spec.input_size_hw[0] / rows)
    cell_w = np.float32(spec.input_size_hw[1] / cols)
    if spec.anchors:
        anchors = np.asarray(spec.anchors[0], dtype=np.float32).reshape(-1, 2)
        if len(anchors) != num_anchors:
            raise EdgedetError(f"grid output has {num_anchors} anchors per cell but the spec lists {len(anchors)}")
    else:
        anchors = np.tile(np.array([[cell_w, cell_h]], np.float32), (num_anchors, 1))
    j = np.arange(cols, dtype=np.float32)[None, :, None]
    i = np.arange(rows, dtype=np.float32)[:, None, None]
    cx = ((j + grid[..., 1]) * cell_w).reshape(-1)
    cy = ((i + grid[..., 2]) * cell_h).reshape(-1)
    bh = (grid[..., 3] * anchors[:, 1]).reshape(-1)
    bw = (grid[..., 4] * anchors[:, 0]).reshape(-1)
    best, ids = _best_class(grid[..., 5:].reshape(rows * cols * num_anchors, spec.num_classes))
    return Candidates(_cxcywh_columns_to_xyxy(cx, cy, bw, bh), grid[..., 0].reshape(-1) * best, ids)


# ---------------------------------------------------------------- Ultralytics-style exports

def _rows_by_feature(pred: np.ndarray, features: Optional[int]) -> np.ndarray:
    """(1, F, N) or (1, N, F) (or without batch) -> (N, F) rows: orientation from the known feature count F,
    else the smaller axis is the feature axis."""
    pred = np.asarray(pred)
    if pred.ndim == 3:
        if pred.shape[0] != 1:
            raise EdgedetError(f"expected a batch of one image, got prediction shape {pred.shape}")
        pred = pred[0]
    if pred.ndim != 2:
        raise EdgedetError(f"prediction output must be (1, F, N) or (1, N, F), got shape {pred.shape}")
    if features is not None and pred.shape[1] == features and pred.shape[0] != features:
        return pred
    if features is not None and pred.shape[0] == features:
        return pred.T
    if features is not None:
        raise EdgedetError(f"prediction output shape {pred.shape} has no axis of {features} features")
    return pred.T if pred.shape[0] < pred.shape[1] else pred


def _scale_normalized(xyxy: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Boxes in 0..1 of the input (third-party TFLite) -> input pixels; pixel boxes pass through."""
    if not spec.boxes_normalized:
        return xyxy
    h, w = spec.input_size_hw
    return xyxy * np.array([w, h, w, h], dtype=np.float32)


def decode_yolov5(pred: np.ndarray, spec: ModelSpec) -> Candidates:
    """YOLOv5 export (1, N, 5+C) (or (1, 5+C, N)): cx, cy, w, h, objectness, class probabilities.

    score = objectness x best class probability; boxes in input pixels (or 0..1 if spec.boxes_normalized).
    """
    c = spec.num_classes or None
    rows = _rows_by_feature(pred, None if c is None else 5 + c).astype(np.float32, copy=False)
    best, ids = _best_class(rows[:, 5:])
    xyxy = _cxcywh_columns_to_xyxy(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])
    return Candidates(_scale_normalized(xyxy, spec), rows[:, 4] * best, ids)


def decode_yolov8(pred: np.ndarray, spec: ModelSpec, num_mask_coefs: int = 0,
                  min_score: Optional[float] = None) -> Candidates:
    """YOLOv8 / YOLO11 export (1, 4+C(+M), N) or (1, N, 4+C(+M)): cx, cy, w, h, class scores[, mask coefs].

    No objectness: score = best class score. Boxes in input pixels (or 0..1 if spec.boxes_normalized).
    min_score: if given, candidates scoring <= min_score may be left out early (a speed-up, not a filter
    contract: the caller still applies its threshold).
    """
    c = spec.num_classes or None
    pred = np.asarray(pred, dtype=np.float32)
    features = None if c is None else 4 + c + num_mask_coefs
    if pred.ndim == 3 and pred.shape[0] == 1 and (pred.shape[1] == features or
                                                  (features is None and pred.shape[1] < pred.shape[2])):
        return _decode_yolov8_channels_first(pred[0], spec, num_mask_coefs, min_score)
    rows = _rows_by_feature(pred, features)
    num_classes = rows.shape[1] - 4 - num_mask_coefs
    best, ids = _best_class(rows[:, 4:4 + num_classes])
    xyxy = _cxcywh_columns_to_xyxy(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])
    coefs = np.ascontiguousarray(rows[:, 4 + num_classes:]) if num_mask_coefs else None
    return Candidates(_scale_normalized(xyxy, spec), best, ids, coefs)


def _decode_yolov8_channels_first(pred: np.ndarray, spec: ModelSpec, num_mask_coefs: int,
                                  min_score: Optional[float] = None) -> Candidates:
    """(4+C+M, N) -> Candidates without transposing the whole array: the best score is a reduction along the
    channel axis; with `min_score`, only columns scoring above it are gathered and get their class and box."""
    num_classes = pred.shape[0] - 4 - num_mask_coefs
    if num_classes:
        best = pred[4:4 + num_classes].max(axis=0)
    else:
        best = np.ones(pred.shape[1], np.float32)
    if min_score is not None:
        keep = np.flatnonzero(best > np.float32(min_score))
        pred, best = pred[:, keep], best[keep]
    ids = pred[4:4 + num_classes].argmax(axis=0).astype(np.int32) if num_classes else np.zeros(len(best), np.int32)
    xyxy = _cxcywh_columns_to_xyxy(pred[0], pred[1], pred[2], pred[3])
    coefs = np.ascontiguousarray(pred[4 + num_classes:].T) if num_mask_coefs else None
    return Candidates(_scale_normalized(xyxy, spec), best, ids, coefs)


def split_seg_outputs(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> Tuple[np.ndarray, np.ndarray]:
    """YOLOv8-seg outputs matched by shape: (prediction array, prototypes float32 (M, h, w) channels first)."""
    arrays = list(outputs.values())
    preds = [a for a in arrays if np.ndim(a) == 3 and a.shape[0] == 1 and np.shape(a)[1] != np.shape(a)[2]]
    protos = [a for a in arrays if np.ndim(a) == 4]
    if len(preds) != 1 or len(protos) != 1:
        raise EdgedetError(f"yolov8-seg expects one (1, 4+C+M, N) and one (1, M, h, w) output, "
                           f"got shapes {[np.shape(a) for a in arrays]}")
    return preds[0], protos_chw(protos[0], spec)


def protos_chw(protos: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Prototypes (1, M, h, w) NCHW or (1, h, w, M) NHWC -> float32 (M, h, w).

    The layout follows spec.num_mask_coefs when it identifies the channel axis, else spec.output_layout.
    """
    p = np.asarray(protos, dtype=np.float32)
    p = p[0] if p.ndim == 4 else p
    m = spec.num_mask_coefs
    if m and p.shape[0] == m and p.shape[2] != m:
        return p
    if m and p.shape[2] == m and p.shape[0] != m:
        return np.ascontiguousarray(p.transpose(2, 0, 1))
    return np.ascontiguousarray(p.transpose(2, 0, 1)) if spec.output_layout == "NHWC" else p


def decode_yolov8_seg(outputs: Mapping[str, np.ndarray], spec: ModelSpec,
                      min_score: Optional[float] = None) -> Tuple[Candidates, np.ndarray]:
    """YOLOv8/YOLO11-seg: (Candidates with mask_coefs (N, M), prototypes float32 (M, h, w))."""
    pred, protos = split_seg_outputs(outputs, spec)
    return decode_yolov8(pred, spec, num_mask_coefs=len(protos), min_score=min_score), protos


# ---------------------------------------------------------------- selection, dequantization, metadata

def dequantize_outputs(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> Dict[str, np.ndarray]:
    """Integer outputs -> float32 with spec.output_quant[name]: real = scale * (q - zero_point).

    float16 outputs are widened to float32; float32 outputs pass through.
    """
    return {name: _dequantize(array, spec.output_quant.get(name), name) for name, array in outputs.items()}


def _looks_like_edgedet(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> bool:
    try:
        _edgedet_level_parts(outputs, spec)
    except EdgedetError:
        return False
    return bool(spec.anchors)


def infer_layout(output_shapes: Sequence[Tuple[int, ...]], num_classes: int = 0) -> str:
    """Guess a third-party layout from output shapes (and the class count if known, 0 = unknown)."""
    shapes = [tuple(int(d) for d in s) for s in output_shapes]
    if len(shapes) == 2 and sorted(len(s) for s in shapes) == [3, 4]:
        return "yolov8-seg"
    if len(shapes) != 1:
        raise EdgedetError(f"cannot recognise a YOLO layout from output shapes {shapes}; pass the layout explicitly")
    shape = shapes[0][1:] if shapes[0][0] == 1 and len(shapes[0]) in (4, 5) else shapes[0]
    if len(shape) in (3, 4) and shape[0] == shape[1]:
        return "grid"
    if len(shape) == 3 and shape[0] == 1 and num_classes:
        dims = shape[1:]
        if 5 + num_classes in dims and 4 + num_classes not in dims:
            return "yolov5"
        if 4 + num_classes in dims:
            return "yolov8"
    if len(shape) == 3 and shape[0] == 1:
        return "yolov8"
    raise EdgedetError(f"cannot recognise a YOLO layout from output shape {shapes[0]}; pass the layout explicitly")


def select_layout(outputs: Mapping[str, np.ndarray], spec: ModelSpec, override: Optional[str] = None) -> str:
    """The layout to decode with: `override` if given, else the spec's (an "edgedet" spec whose outputs do not
    look like the edgedet head falls back to recognising the outputs by shape)."""
    if override is not None:
        if override not in LAYOUTS:
            raise EdgedetError(f"unknown layout {override!r}; expected one of {', '.join(LAYOUTS)}")
        return override
    if spec.layout != "edgedet" or _looks_like_edgedet(outputs, spec):
        return spec.layout
    return infer_layout([np.shape(a) for a in outputs.values()], spec.num_classes)


def decode(outputs: Mapping[str, np.ndarray], spec: ModelSpec, layout: Optional[str] = None,
           min_score: Optional[float] = None) -> Tuple[Candidates, Optional[np.ndarray]]:
    """Float outputs (already dequantized; the edgedet layout also takes integer outputs) -> (Candidates in
    input pixels, prototypes (M, h, w) or None).

    min_score: a decoder may leave out candidates scoring <= min_score early (edgedet and YOLOv8 do); without it
    every candidate is returned.
    """
    layout = select_layout(outputs, spec, layout)
    if layout == "edgedet":
        return decode_edgedet(outputs, spec, min_score), edgedet_protos(outputs, spec)
    if layout == "yolov8-seg":
        return decode_yolov8_seg(outputs, spec, min_score)
    single = _single_output(outputs, layout)
    if layout == "grid":
        return decode_grid(single, spec), None
    if layout == "yolov5":
        return decode_yolov5(single, spec), None
    return decode_yolov8(single, spec, min_score=min_score), None


def edgedet_protos(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> Optional[np.ndarray]:
    """The edgedet prototypes float32 (M, h, w) (dequantized if integer), or None without a mask head."""
    protos = outputs.get(spec.proto_output) if spec.proto_output else None
    if protos is None or not spec.num_mask_coefs:
        return None
    return protos_chw(_dequantize(protos, spec.output_quant.get(spec.proto_output), spec.proto_output), spec)


def _single_output(outputs: Mapping[str, np.ndarray], layout: str) -> np.ndarray:
    if len(outputs) != 1:
        raise EdgedetError(f"layout {layout!r} expects one output, got {len(outputs)}: {sorted(outputs)}")
    return next(iter(outputs.values()))


def _literal(value):
    """Ultralytics stores metadata values as Python literals in strings ("{0: 'person'}", "[640, 640]")."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def spec_from_ultralytics_metadata(metadata: Mapping[str, object],
                                   output_shapes: Union[Mapping[str, Sequence[int]], Sequence[Sequence[int]]],
                                   input_layout: str = "NCHW", boxes_normalized: bool = False,
                                   input_size_hw: Optional[Tuple[int, int]] = None) -> ModelSpec:
    """A `ModelSpec` for an Ultralytics export from its metadata (names, imgsz, stride, task) and output shapes.

    metadata:      ONNX metadata_props (or the TFLite metadata.json) as a dict; values may be literal strings.
    output_shapes: {output name: shape} or a list of shapes; the layout is recognised from them.
    input_layout / boxes_normalized: "NHWC" and True for Ultralytics TFLite files.
    """
    names_value = _literal(metadata.get("names", {}))
    if isinstance(names_value, dict):
        names = [str(names_value[k]) for k in sorted(names_value, key=int)]
    elif isinstance(names_value, (list, tuple)):
        names = [str(n) for n in names_value]
    else:
        raise EdgedetError(f"Ultralytics metadata 'names' is not a dict or list: {names_value!r}")
    task = str(metadata.get("task", "detect"))
    if task not in ("detect", "segment"):
        raise EdgedetError(f"Ultralytics task {task!r} is not supported; edgedet runs 'detect' and 'segment' models")
    imgsz = _literal(metadata.get("imgsz", input_size_hw))
    if imgsz is None:
        raise EdgedetError("Ultralytics metadata has no 'imgsz' and no input size was given")
    size_hw = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, float)) else (int(imgsz[0]), int(imgsz[1]))
    named = dict(output_shapes) if isinstance(output_shapes, Mapping) else {f"output{i}": tuple(s)
                                                                            for i, s in enumerate(output_shapes)}
    layout = infer_layout(list(named.values()), len(names))
    if task == "segment" and layout != "yolov8-seg":
        raise EdgedetError(f"Ultralytics segment model must have a prediction and a prototype output, "
                           f"got shapes {list(named.values())}")
    proto_name = next((n for n, s in named.items() if len(s) == 4), None) if layout == "yolov8-seg" else None
    num_masks = _proto_channels(named[proto_name], names, named) if proto_name else 0
    stride = int(_literal(metadata.get("stride", 32)))
    return ModelSpec(names=names, input_size_hw=size_hw, layout=layout, task=task,
                     strides=tuple(s for s in (8, 16, 32, 64) if s <= stride) or (stride,), anchors=[],
                     num_mask_coefs=num_masks, level_outputs=[], proto_output=proto_name,
                     input_name=str(metadata.get("input_name", "images")), input_layout=input_layout,
                     output_layout=input_layout, boxes_normalized=boxes_normalized,
                     source=f"ultralytics {metadata.get('version', '')}".strip())


def _proto_channels(proto_shape, names, named) -> int:
    """M: the prototype channel axis is the one that makes the prediction features equal 4 + C + M."""
    pred_shape = next(s for s in named.values() if len(s) == 3)
    for m in (proto_shape[1], proto_shape[3]):
        if 4 + len(names) + m in pred_shape[1:]:
            return int(m)
    return int(min(proto_shape[1], proto_shape[3]))

