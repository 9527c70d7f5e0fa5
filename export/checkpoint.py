"""Loading the checkpoint to export: path checks, the `shipped` alias, and the export input size."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence, Tuple

from device.errors import EdgedetError
from device.spec import ModelSpec

SHIPPED_ALIAS = "shipped"  # CKPT value that means edgedet.models.SHIPPED_CHECKPOINT


def resolve_checkpoint(ckpt) -> Path:
    """`shipped` -> the bundled checkpoint; otherwise the path, which must be an existing file."""
    if str(ckpt) == SHIPPED_ALIAS:
        from edgedet.models import SHIPPED_CHECKPOINT

        ckpt = SHIPPED_CHECKPOINT
    path = Path(ckpt)
    if not path.is_file():
        raise EdgedetError(f"checkpoint not found: {path}")
    return path


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


def load_for_export(ckpt, imgsz=None):
    """(model in eval mode, ModelSpec) from a checkpoint path or `shipped`, with the input size set to `imgsz`."""
    path = resolve_checkpoint(ckpt)
    from edgedet.models import load_checkpoint

    try:
        model, spec = load_checkpoint(path)
    except EdgedetError:
        raise
    except Exception as error:  # torch.load raises pickle/zip/runtime errors on a corrupt file
        raise EdgedetError(f"cannot load checkpoint {path}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    size_hw = parse_imgsz(imgsz, max(spec.strides)) or tuple(spec.input_size_hw)
    spec = dataclasses.replace(spec, input_size_hw=size_hw, source=spec.source or path.name)
    return model.eval(), spec


def output_roles(model, spec: ModelSpec) -> Sequence[str]:
    """The model's output names, in forward order; they must be the spec's roles."""
    names = tuple(model.output_names)
    expected = tuple(spec.edgedet_output_shapes())
    if names != expected:
        raise EdgedetError(f"checkpoint outputs {names} do not match its spec's roles {expected}")
    return names
