"""Checkpoints: save and load with `torch.load(weights_only=True)` (plain dicts, lists, numbers, strings and tensors).

A checkpoint is a dict:
    "format": "edgedet-checkpoint", "version": 1,
    "model": fp32 state dict (the EMA weights in trained checkpoints),
    "config": {"model": the model config (ModelConfig, SSDConfig) as a dict, "train": the training config as a dict},
    "names": class names, "semantic_names": semantic class names,
    "family": "yolo", "ssd" or "rcnn" (models/family.py; absent = "yolo"),
    "anchors": per level K (w, h) in input pixels (SSD: default boxes), "strides": per level, "input_size_hw": (H, W),
    "epoch": epochs completed, "metrics": validation figures of that epoch,
    "train_state": only in resumable checkpoints: raw model, optimizer, EMA update count, best fitness.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch

from edgedet.device.errors import EdgedetError
from edgedet.device.spec import ModelSpec
from . import family as families
from .family import model_spec

CHECKPOINT_FORMAT = "edgedet-checkpoint"
CHECKPOINT_VERSION = 2  # 2: separate box / score / mask convs per detection level


def checkpoint_dict(
    model: torch.nn.Module,
    names: Sequence[str],
    semantic_names: Sequence[str],
    train_config: Optional[dict] = None,
    epoch: int = 0,
    metrics: Optional[dict] = None,
    train_state: Optional[dict] = None,
) -> dict:
    """Everything needed to rebuild and describe `model` (of any family, possibly wrapped by DDP)."""
    model = getattr(model, "module", model)
    config = model.config
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": {k: v.detach().float().cpu().clone() if v.is_floating_point() else v.detach().cpu().clone()
                  for k, v in model.state_dict().items()},
        "config": {"model": asdict(config), "train": dict(train_config or {})},
        "family": families.family_of_config(config),
        "names": list(names),
        "semantic_names": list(semantic_names),
        "anchors": families.anchors(config),
        "strides": list(families.strides(config)),
        "input_size_hw": list(config.input_size_hw),
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
    }
    if train_state is not None:
        checkpoint["train_state"] = train_state
    return checkpoint


def save_checkpoint(checkpoint: dict, path) -> Path:
    """Write atomically (temporary file, then rename), so an interrupted save never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path) -> dict:
    """The raw checkpoint dict; EdgedetError if the file is missing or not an edgedet checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise EdgedetError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign pickles
        raise EdgedetError(f"{path} is corrupt or not an edgedet checkpoint (torch.load: {load_error_reason(error)})"
                           ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise EdgedetError(f"{path} is not an edgedet checkpoint (no format {CHECKPOINT_FORMAT!r})")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise EdgedetError(f"checkpoint {path} has format version {checkpoint.get('version')}, this edgedet reads "
                           f"version {CHECKPOINT_VERSION} (its detection head differs); retrain it")
    return checkpoint


def load_error_reason(error: Exception) -> str:
    """The cause in torch.load's error, without its advice to retry with weights_only=False (wrong for a broken
    file, unsafe for a foreign one): 'Unsupported operand 43', 'PytorchStreamReader failed reading zip archive:
    failed finding central directory', 'KeyError: 101'."""
    text = str(error).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
    first = (text.splitlines() or [""])[0].split(". ")[0].strip().rstrip(".")
    if len(first) < 12:  # a bare KeyError '101' from a file that is no archive at all
        return f"{type(error).__name__}: {first or 'no message'}"
    return first[:200]


def model_from_checkpoint(checkpoint: dict) -> torch.nn.Module:
    """Rebuild the model of a checkpoint dict and load its weights (train mode)."""
    config = families.config_from_dict(checkpoint.get("family", families.YOLO), checkpoint["config"]["model"])
    model = families.build(config)
    model.load_state_dict(checkpoint["model"])
    return model


def load_checkpoint(path) -> Tuple[torch.nn.Module, ModelSpec]:
    """(model in eval mode, its ModelSpec) from an edgedet checkpoint file."""
    checkpoint = read_checkpoint(path)
    model = model_from_checkpoint(checkpoint).eval()
    spec = model_spec(model.config, checkpoint["names"], checkpoint["semantic_names"], source=str(Path(path).name))
    return model, spec
