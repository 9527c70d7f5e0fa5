"""A checkpoint of this project, by path or as `shipped` / `shipped:ssd`: resolved, loaded for export, or wrapped as a backend.

Module-level imports stay light; torch comes in with edgedet.models.checkpoint when a checkpoint is loaded.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Tuple

from edgedet.device.errors import EdgedetError
from edgedet.device.imgsz import parse_imgsz
from edgedet.export.torch_backend import TorchBackend
from . import SHIPPED_CHECKPOINTS


def is_shipped(ckpt) -> bool:
    """Whether a MODEL argument names a shipped checkpoint ("shipped", "shipped:ssd", "shipped:rcnn")."""
    return str(ckpt) in SHIPPED_CHECKPOINTS


def resolve_checkpoint(ckpt) -> Path:
    """`shipped` / `shipped:ssd` / `shipped:rcnn` -> the bundled checkpoint; otherwise the path, which must be an existing file."""
    if str(ckpt).startswith("shipped:") and not is_shipped(ckpt):
        raise EdgedetError(f"unknown shipped model {ckpt!r}; expected one of {', '.join(SHIPPED_CHECKPOINTS)}")
    path = Path(SHIPPED_CHECKPOINTS.get(str(ckpt), ckpt))
    if not path.is_file():
        raise EdgedetError(f"checkpoint not found: {path}")
    return path


def checkpoint_input_size(ckpt) -> Tuple[int, int]:
    """The input size (H, W) a checkpoint (path or shipped name) was made for, read from the file."""
    from .checkpoint import read_checkpoint  # torch

    height, width = read_checkpoint(resolve_checkpoint(ckpt))["input_size_hw"]
    return int(height), int(width)


def load_for_export(ckpt, imgsz=None):
    """(model in eval mode, ModelSpec) from a checkpoint path or `shipped`, with the input size set to `imgsz`."""
    from .checkpoint import load_checkpoint  # torch

    path = resolve_checkpoint(ckpt)
    try:
        model, spec = load_checkpoint(path)
    except EdgedetError:
        raise
    except Exception as error:  # torch.load raises pickle/zip/runtime errors on a corrupt file
        raise EdgedetError(f"cannot load checkpoint {path}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    size_hw = parse_imgsz(imgsz, max(spec.strides)) or tuple(spec.input_size_hw)
    spec = dataclasses.replace(spec, input_size_hw=size_hw, source=spec.source or path.name)
    return model.eval(), spec


def torch_backend(ckpt, threads: Optional[int] = None, imgsz=None):
    """export.torch_backend.TorchBackend for a checkpoint file (or `shipped`); `imgsz` overrides the input size."""
    model, spec = load_for_export(ckpt, imgsz)
    return TorchBackend(model, spec, threads)
