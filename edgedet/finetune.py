"""Fine-tuning: start `edgedet train` from a checkpoint (`--weights shipped|PATH.pt`), optionally with a frozen backbone.

What is loaded: every tensor whose name and shape match (backbone, neck, the per-level convolutions, the box and mask
parts of the head, the prototype head), except the class parts when the class names differ: the head's `score`
convolution (objectness and class logits, per anchor; SSD's `conf` convolutions) and the semantic head's classifier
are then left as initialised for the new classes. Both families have a `backbone` for --freeze. The checkpoint's anchors are kept (the box offsets are relative to them).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from edgedet.device.errors import EdgedetError
from .models.checkpoint import read_checkpoint
from .models.loading import resolve_checkpoint

SCORE_PART = ".score."  # the head's objectness + class logits convolutions: det_heads.<level>.score.*
SSD_CONF_HEADS = "conf_heads."  # SSD's background + class logits convolutions: conf_heads.<level>.*
RCNN_CLASS_LAYERS = ("heads.box_head.cls.", "heads.box_head.box.")  # the two-stage box head's per-class outputs
SEMANTIC_CLASSIFIER = "seg_head.1."  # the last convolution of the semantic head (one channel per semantic class)


def pretrained_checkpoint(weights: str) -> dict:
    """The checkpoint dict named by --weights ("shipped", "shipped:ssd", "shipped:rcnn" or a path); EdgedetError naming a missing or bad file."""
    return read_checkpoint(resolve_checkpoint(weights))


def preset_for_weights(weights: str, asked: Optional[str]) -> str:
    """The model preset of a fine-tuning run: the checkpoint's. EdgedetError if --model asks for another one."""
    preset = pretrained_checkpoint(weights)["config"]["model"]["preset"]
    if asked is not None and asked != preset:
        raise EdgedetError(f"--model {asked}: --weights {weights} is a {preset!r} model; omit --model or pass "
                           f"--model {preset}")
    return preset


def is_class_part(key: str) -> bool:
    """Whether a state-dict key belongs to a layer with outputs per class (YOLO's score, SSD's conf, the two-stage
    box head's class logits and per-class deltas; per-class masks differ in shape and are skipped anyway)."""
    return SCORE_PART in key or key.startswith(SSD_CONF_HEADS) or key.startswith(RCNN_CLASS_LAYERS)


def load_pretrained(model: torch.nn.Module, checkpoint: dict, names: Sequence[str],
                    semantic_names: Sequence[str]) -> str:
    """Copy the checkpoint's weights into `model` where they fit (module docstring); returns a one-line note of what
    was loaded and what was re-initialised."""
    same_classes = list(checkpoint["names"]) == list(names)
    same_semantic = list(checkpoint["semantic_names"]) == list(semantic_names)
    source, target = checkpoint["model"], model.state_dict()
    loaded, skipped = {}, []
    for key, value in target.items():
        if key not in source or source[key].shape != value.shape or \
                (is_class_part(key) and not same_classes) or (key.startswith(SEMANTIC_CLASSIFIER) and not same_semantic):
            skipped.append(key)
        else:
            loaded[key] = source[key]
    model.load_state_dict(loaded, strict=False)
    return _describe(len(loaded), len(target), skipped, checkpoint, names, same_classes, same_semantic)


def _describe(loaded: int, total: int, skipped: List[str], checkpoint: dict, names: Sequence[str],
              same_classes: bool, same_semantic: bool) -> str:
    parts = [f"loaded {loaded} of {total} tensors"]
    if same_classes:
        parts.append("the head with its classes (the same names)")
    else:
        parts.append(f"class scores re-initialised for {len(names)} classes ({', '.join(names)}; the checkpoint has "
                     f"{len(checkpoint['names'])}: {', '.join(checkpoint['names'])})")
    if not same_semantic:
        parts.append("semantic classifier re-initialised")
    other = [k for k in skipped if not is_class_part(k) and not k.startswith(SEMANTIC_CLASSIFIER)]
    if other:
        parts.append(f"{len(other)} other tensors differ in shape and start afresh (first: {other[0]})")
    return "; ".join(parts)


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    """The backbone of a model of any family (the two-stage model keeps it in its stage 1)."""
    return model.backbone if hasattr(model, "backbone") else model.stage1.backbone


def freeze_backbone(model: torch.nn.Module) -> None:
    """Stop gradients into the backbone (its batch norms are held in eval mode by `train_mode`)."""
    for parameter in backbone_of(model).parameters():
        parameter.requires_grad_(False)


def train_mode(model: torch.nn.Module, frozen_backbone: bool) -> None:
    """model.train(), with a frozen backbone's batch norms kept in eval mode (their running statistics stay)."""
    model.train()
    if frozen_backbone:
        backbone_of(model).eval()
