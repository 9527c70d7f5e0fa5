"""The export input size, and the output roles a model to export must have (the checkpoint is loaded by edgedet)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from edgedet.device.errors import EdgedetError
from edgedet.device.spec import ModelSpec


def parse_imgsz(imgsz, stride: int = 32) -> Optional[Tuple[int, int]]:
    """None, 320, "320", "320,256", [320, 256] -> (h, w), each positive and divisible by `stride`."""
    if imgsz is None:
        return None
    values = imgsz
    if isinstance(imgsz, str):
        values = [v for v in imgsz.replace("x", ",").split(",") if v.strip()]
    if isinstance(values, (int, float)):
        values = [values]
    try:
        values = [int(v) for v in values]
    except (TypeError, ValueError):
        raise EdgedetError(f"--imgsz must be one or two integers, got {imgsz!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0 or any(v % stride for v in values):
        raise EdgedetError(f"--imgsz {imgsz!r}: image size must be positive and divisible by the model stride {stride}")
    return values[0], values[1]


def output_roles(model, spec: ModelSpec) -> Sequence[str]:
    """The model's output names, in forward order; they must be the spec's roles."""
    names = tuple(model.output_names)
    expected = tuple(spec.edgedet_output_shapes())
    if names != expected:
        raise EdgedetError(f"checkpoint outputs {names} do not match its spec's roles {expected}")
    return names
