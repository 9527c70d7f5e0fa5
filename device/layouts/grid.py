"""The "grid" layout: the lecture's single-scale YOLO grid, one output (S_h, S_w, A*(5+C)) or (S_h, S_w, A, 5+C)
(optional leading batch axis of 1), per anchor a the label vector y of the lecture:
(p_c, b_x, b_y, b_h, b_w, c_1..c_C) with p_c and c in 0..1, (b_x, b_y) the box centre relative to its cell and
(b_h, b_w) the box size relative to anchor a (spec.anchors[0][a] = (w, h) in input pixels) or, without anchors,
relative to the cell.

Recognised by its one output whose first two (non-batch) axes are equal, the square S x S grid; the anchors
come only from its metadata.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from ..boxes import cxcywh_to_xyxy
from ..candidates import Candidates, best_class, dequantized_output
from ..errors import EdgedetError
from ..spec import ModelSpec
from .shapes import Shape, outputs_keep_file_names, single_output, without_masks, without_prototypes

NAME = "grid"
MIN_SPEC_VERSION = 1
FROM_SHAPES = False  # the anchor sizes are not in the shapes


def recognises(shapes: Mapping[str, Shape], num_classes: int) -> bool:
    """One output (S, S, D) or (S, S, A, D), with or without a leading batch axis of 1."""
    if len(shapes) != 1:
        return False
    shape = next(iter(shapes.values()))
    if shape and shape[0] == 1 and len(shape) in (4, 5):
        shape = shape[1:]
    return len(shape) in (3, 4) and shape[0] == shape[1]


def spec_fields(shapes: Mapping[str, Shape], num_classes: int) -> dict:
    """Never from shapes alone: raises, naming the anchors that only metadata holds."""
    raise EdgedetError("the grid layout needs its anchors from the model's edgedet metadata")


output_shapes = outputs_keep_file_names
has_masks = without_masks
prototypes = without_prototypes


def decode(outputs: Mapping[str, np.ndarray], spec: ModelSpec, min_score: Optional[float] = None) -> Candidates:
    """score = p_c x best c; xyxy in input pixels; candidate order: row, column, anchor.

    min_score: if given, only candidates scoring > min_score are returned."""
    output = dequantized_output(outputs, spec, single_output(outputs, NAME))
    grid = _cells(output, 5 + spec.num_classes)
    rows, cols, num_anchors = grid.shape[:3]
    cell_h = np.float32(spec.input_size_hw[0] / rows)
    cell_w = np.float32(spec.input_size_hw[1] / cols)
    anchors = _anchors_wh(spec, num_anchors, cell_w, cell_h)
    j = np.arange(cols, dtype=np.float32)[None, :, None]
    i = np.arange(rows, dtype=np.float32)[:, None, None]
    cxcywh = np.stack([((j + grid[..., 1]) * cell_w).reshape(-1), ((i + grid[..., 2]) * cell_h).reshape(-1),
                       (grid[..., 4] * anchors[:, 0]).reshape(-1), (grid[..., 3] * anchors[:, 1]).reshape(-1)], axis=1)
    best, ids = best_class(grid[..., 5:].reshape(rows * cols * num_anchors, spec.num_classes))
    return Candidates(cxcywh_to_xyxy(cxcywh), grid[..., 0].reshape(-1) * best, ids).above(min_score)


def _cells(output: np.ndarray, depth: int) -> np.ndarray:
    """The output as float32 (S_h, S_w, A, depth)."""
    grid = output
    if grid.ndim == 5 or (grid.ndim == 4 and grid.shape[0] == 1 and grid.shape[1] != 1):
        grid = grid[0]  # leading batch axis
    if grid.ndim == 3 and grid.shape[-1] % depth == 0:
        grid = grid.reshape(grid.shape[0], grid.shape[1], -1, depth)
    if grid.ndim != 4 or grid.shape[-1] != depth:
        raise EdgedetError(f"grid output has shape {np.shape(output)}, expected (S, S, A*{depth}) or (S, S, A, {depth})")
    return grid


def _anchors_wh(spec: ModelSpec, num_anchors: int, cell_w: np.float32, cell_h: np.float32) -> np.ndarray:
    """float32 (A, 2) anchor (w, h) in input pixels: spec.anchors[0], or one cell each without anchors."""
    if not spec.anchors:
        return np.tile(np.array([[cell_w, cell_h]], np.float32), (num_anchors, 1))
    anchors = np.asarray(spec.anchors[0], dtype=np.float32).reshape(-1, 2)
    if len(anchors) != num_anchors:
        raise EdgedetError(f"grid output has {num_anchors} anchors per cell but the spec lists {len(anchors)}")
    return anchors
