"""The edgedet model family (PyTorch): model, anchors, decode twin, checkpoints.

Importing this package loads no torch; the torch-backed names below are imported on first use.
    SHIPPED_CHECKPOINT    path of the checkpoint trained by the project and shipped in the package (YOLO family)
    SHIPPED_CHECKPOINTS   every shipped checkpoint by its CLI name: "shipped" (that one), "shipped:ssd",
                          "shipped:rcnn"
    build_model(config)   a fresh `EdgeDet` for a `ModelConfig`
    load_checkpoint(path) -> (model in eval mode, device.ModelSpec)
"""
from __future__ import annotations

import importlib
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
SHIPPED_CHECKPOINT = WEIGHTS / "edgedet-n-320.pt"
SHIPPED_CHECKPOINTS = {"shipped": SHIPPED_CHECKPOINT, "shipped:ssd": WEIGHTS / "edgedet-ssd-n-320.pt",
                       "shipped:rcnn": WEIGHTS / "edgedet-rcnn-n-320.pt"}

_LAZY = {
    "build_model": "edgedet.models.model",
    "EdgeDet": "edgedet.models.model",
    "ModelConfig": "edgedet.models.model",
    "load_checkpoint": "edgedet.models.checkpoint",
    "save_checkpoint": "edgedet.models.checkpoint",
    "model_spec": "edgedet.models.family",
    "decode_head": "edgedet.models.decode",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgedet.models' has no attribute {name!r}")


__all__ = ["SHIPPED_CHECKPOINT", "SHIPPED_CHECKPOINTS", *_LAZY]
