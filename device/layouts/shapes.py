"""What several layouts share about output tensors: shapes as the recognisers see them, the one prediction
tensor of Ultralytics-style exports ((1, F, N) or (1, N, F)), and prototypes in either tensor layout."""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..candidates import dequantize_array
from ..errors import EdgedetError
from ..spec import ModelSpec, level_part_name

Shape = Tuple[int, ...]  # an output's dims; 0 where the file leaves a dim dynamic


def as_shapes(shapes: Mapping[str, Sequence[Optional[int]]]) -> Dict[str, Shape]:
    """Output dims as the recognisers see them: int tuples, 0 for a dynamic (None) dim."""
    return {name: tuple(int(d or 0) for d in shape) for name, shape in shapes.items()}


def is_prediction(shape: Shape) -> bool:
    """A (1, F, N) or (1, N, F) prediction of one image (batch 1 or dynamic). (1, 1, D) is not one: a 1x1 grid."""
    return len(shape) == 3 and shape[0] in (0, 1) and 1 not in shape[1:]


def prediction_fields(shapes: Mapping[str, Shape], layout: str) -> dict:
    """ModelSpec fields of a model whose only output is one prediction tensor; raises if it has another."""
    if len(shapes) != 1 or not is_prediction(next(iter(shapes.values()))):
        raise EdgedetError(f"outputs {describe(shapes)} do not look like a {layout} model (one (1, F, N) output)")
    return {"task": "detect", "level_outputs": list(shapes)}


def describe(shapes: Mapping[str, Shape]) -> str:
    """"[name [d, ...], ...]" for error messages."""
    return "[" + ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items()) + "]"


def single_output(outputs: Mapping[str, np.ndarray], layout: str) -> str:
    """The name of the one output of a single-output layout."""
    if len(outputs) != 1:
        raise EdgedetError(f"layout {layout!r} expects one output, got {len(outputs)}: {sorted(outputs)}")
    return next(iter(outputs))


def rows_by_feature(pred: np.ndarray, features: Optional[int]) -> np.ndarray:
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


def scale_normalized(xyxy: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Boxes in 0..1 of the input (third-party TFLite) -> input pixels; pixel boxes pass through."""
    if not spec.boxes_normalized:
        return xyxy
    h, w = spec.input_size_hw
    return xyxy * np.array([w, h, w, h], dtype=np.float32)


def proto_channel_axis(shape: Shape, spec: ModelSpec) -> int:
    """The channel axis (1 or 3) of prototypes (1, M, h, w) NCHW or (1, h, w, M) NHWC: the axis of
    spec.num_mask_coefs channels when that tells them apart, else the one spec.output_layout names."""
    m = spec.num_mask_coefs
    if m and shape[1] == m and shape[3] != m:
        return 1
    if m and shape[3] == m and shape[1] != m:
        return 3
    return 3 if spec.output_layout == "NHWC" else 1


def protos_chw(protos: np.ndarray, spec: ModelSpec, name: str = "") -> np.ndarray:
    """Prototypes (1, M, h, w) NCHW or (1, h, w, M) NHWC (batch axis optional) -> float32 (M, h, w), dequantized
    with spec.output_quant[name] if integer. NHWC prototypes come back transposed, not copied into channel-first
    memory order (the mask builders read only each box's cells): the dequantization is the only pass."""
    p = np.asarray(protos)
    p = p[None] if p.ndim == 3 else p
    chw = p[0].transpose(2, 0, 1) if proto_channel_axis(p.shape, spec) == 3 else p[0]
    return dequantize_array(chw, spec.output_quant.get(name), name)


def has_spec_prototypes(spec: ModelSpec) -> bool:
    """A model whose spec names a prototype output and a mask-coefficient count (edgedet and split heads)."""
    return bool(spec.proto_output) and spec.num_mask_coefs > 0


def spec_prototypes(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> Optional[np.ndarray]:
    """The prototypes of output spec.proto_output as float32 (M, h, w) (dequantized if integer), or None when the
    spec names none or the output is absent."""
    if not has_spec_prototypes(spec) or spec.proto_output not in outputs:
        return None
    return protos_chw(outputs[spec.proto_output], spec, spec.proto_output)


def anchor_boxes_xyxy(box: np.ndarray, anchor: np.ndarray, cell: np.ndarray, width: int, stride: int,
                      anchors_wh: np.ndarray) -> np.ndarray:
    """YOLOv5-style anchor boxes: (n, 4) sigmoids of (tx, ty, tw, th) at candidate `cell` (row-major index in a
    level `width` cells wide) of anchor index `anchor` -> float32 (n, 4) xyxy in input pixels:
        cx = (j + 2*sx - 0.5) * s    cy = (i + 2*sy - 0.5) * s
        w = anchor_w * (2*sw)**2     h = anchor_h * (2*sh)**2"""
    row, col = np.divmod(cell, width)
    ji = np.stack([col, row], axis=1).astype(np.float32)
    centre = (ji + 2 * box[:, :2] - np.float32(0.5)) * np.float32(stride)
    half = anchors_wh[anchor] * (2 * box[:, 2:4]) ** 2 / 2
    return np.concatenate([centre - half, centre + half], axis=1)


# The protocol's answers of layouts without masks and without role-named outputs (see layouts.Layout).
def outputs_keep_file_names(spec: ModelSpec, tensor_layout: str) -> None:
    """output_shapes of a layout whose outputs keep their file names (decode finds them by shape)."""
    return None


def without_masks(spec: ModelSpec) -> bool:
    """has_masks of a detector without instance masks."""
    return False


def without_prototypes(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> None:
    """prototypes of a detector without instance masks."""
    return None


def names_levels(shapes: Mapping[str, Shape], first: str, second: str) -> bool:
    """For one or more levels a 4-D "<level>_<first>" and a 4-D "<level>_<second>" output (role-named heads)."""
    levels = [name[:-len(first) - 1] for name in shapes if name.endswith("_" + first)]
    return bool(levels) and all(len(shapes[level_part_name(level, first)]) == 4
                                and len(shapes.get(level_part_name(level, second), ())) == 4 for level in levels)


def level_output_shapes(spec: ModelSpec, part_channels: Mapping[str, int], tensor_layout: str) -> Dict[str, Shape]:
    """Role name -> shape of each level's parts ("<level>_<part>" with `part_channels` channels) at the spec's input
    size, finest level first, in "NCHW" or "NHWC"."""
    h, w = spec.input_size_hw
    shapes = {}
    for level, stride in zip(spec.level_outputs, spec.strides):
        grid = (h // stride, w // stride)
        for part, channels in part_channels.items():
            shapes[level_part_name(level, part)] = (1, channels, *grid) if tensor_layout == "NCHW" else (1, *grid, channels)
    return shapes
