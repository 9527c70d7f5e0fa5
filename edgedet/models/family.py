"""The detector families edgedet trains, and what differs between them; everything else (the training loop,
checkpoints, export, the device runtime) is shared.

    family  presets       model (config)                 loss                      device layout
    yolo    n, s          model.EdgeDet (ModelConfig)    loss.EdgeDetLoss          "edgedet"
    ssd     ssd-n         ssd.SSD (SSDConfig)            ssd_loss.SSDLoss          "ssd"
    rcnn    rcnn-n        rcnn.FasterRCNN (RCNNConfig)   inside its forward        "rcnn" (+ its heads)
                                                         (rcnn_loss)
The two-stage model computes its own losses (proposal sampling sits between its stages) and is validated by its
PyTorch `predict`; it exports as its stage 1 (`stage1`) carrying its per-region `heads` (export/two_stage.py).
"""
from __future__ import annotations

from typing import Sequence, Tuple

from edgedet.device.errors import EdgedetError
from edgedet.device.rcnn_anchors import cell_anchors
from edgedet.device.spec import ModelSpec

YOLO, SSD, RCNN = "yolo", "ssd", "rcnn"
FAMILIES = (YOLO, SSD, RCNN)
PRESETS_BY_FAMILY = {YOLO: ("n", "s"), SSD: ("ssd-n",), RCNN: ("rcnn-n",)}


def family_of_preset(preset: str) -> str:
    """The family of a --model preset; EdgedetError naming the presets for an unknown one."""
    for family, presets in PRESETS_BY_FAMILY.items():
        if preset in presets:
            return family
    known = ", ".join(p for presets in PRESETS_BY_FAMILY.values() for p in presets)
    raise EdgedetError(f"unknown model preset {preset!r}; expected one of {known}")


def family_of_config(config) -> str:
    """The family of a model config object."""
    from .rcnn import RCNNConfig
    from .ssd import SSDConfig

    if isinstance(config, SSDConfig):
        return SSD
    return RCNN if isinstance(config, RCNNConfig) else YOLO


def input_multiple(family: str) -> int:
    """Input sides must be multiples of this (the family's largest stride)."""
    if family == SSD:
        from .ssd import SSD_STRIDES

        return SSD_STRIDES[-1]
    return 32


def strides(config) -> Tuple[int, ...]:
    """Pixel strides of the config's output levels, finest first."""
    if family_of_config(config) == SSD:
        from .ssd import SSD_STRIDES

        return SSD_STRIDES
    from .model import STRIDES

    return STRIDES


def config_from_dict(family: str, values: dict):
    """The model config saved in a checkpoint (`asdict` of it) for `family`."""
    if family == SSD:
        from .ssd import SSDConfig

        return SSDConfig(**values)
    if family == RCNN:
        from .rcnn import RCNNConfig

        return RCNNConfig(**values)
    if family == YOLO:
        from .model import ModelConfig

        return ModelConfig(**values)
    raise EdgedetError(f"checkpoint of unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")


def build(config):
    """A freshly initialised model (train mode) for a model config."""
    if family_of_config(config) == SSD:
        from .ssd import build_ssd

        return build_ssd(config)
    if family_of_config(config) == RCNN:
        from .rcnn import build_rcnn

        return build_rcnn(config)
    from .model import build_model

    return build_model(config)


def loss_for(config):
    """The training loss of a model config: a callable (raw outputs, Targets) -> (loss, parts); None for the
    two-stage model, whose forward(images, targets) is its loss."""
    if family_of_config(config) == RCNN:
        return None
    if family_of_config(config) == SSD:
        from ..ssd_loss import SSDLoss

        return SSDLoss(config)
    from ..loss import EdgeDetLoss

    return EdgeDetLoss(config)


def anchors(config) -> list:
    """Per level the (w, h) anchor or default-box sizes in input pixels, as checkpoints record them."""
    if family_of_config(config) == RCNN:
        boxes = [cell_anchors(sizes, config.anchor_ratios) for sizes in config.anchor_sizes]
        return [[(round(float(x2 - x1), 2), round(float(y2 - y1), 2)) for x1, y1, x2, y2 in level] for level in boxes]
    return [list(level) for level in config.anchors]


def model_spec(config, names: Sequence[str], semantic_names: Sequence[str], source: str = "") -> ModelSpec:
    """The runtime's description of a model built from `config` (fp32, NCHW, RGB 0..1, letterbox pad 114)."""
    if family_of_config(config) == SSD:
        from .ssd import SSD_LEVELS, SSD_STRIDES

        return ModelSpec(names=list(names), input_size_hw=config.input_size_hw, layout="ssd", task="detect",
                         strides=SSD_STRIDES, anchors=config.anchors, level_outputs=list(SSD_LEVELS), source=source)
    if family_of_config(config) == RCNN:
        from .model import LEVEL_OUTPUTS, STRIDES

        return ModelSpec(names=list(names), input_size_hw=config.input_size_hw, layout="rcnn", task="segment",
                         strides=STRIDES, anchors=anchors(config), level_outputs=list(LEVEL_OUTPUTS), source=source,
                         second_stage=_second_stage(config))
    return _yolo_spec(config, names, semantic_names, source)


def _second_stage(config) -> dict:
    """The two-stage model's inference settings the device decode needs (device/layouts/rcnn.py)."""
    from .model import PRESETS
    from .rcnn import RCNN_PRESETS

    return {"anchor_sizes": config.anchor_sizes, "anchor_ratios": config.anchor_ratios,
            "pre_nms_top_k": config.rpn_pre_nms_top_k_test, "post_nms_top_k": config.rpn_post_nms_top_k_test,
            "nms_iou": config.rpn_nms_iou, "min_side": config.rpn_min_box_side, "pool_size": config.mask_pool_size,
            "sampling_ratio": config.roi_sampling_ratio, "mask_size": config.mask_size,
            "class_agnostic_masks": config.class_agnostic_masks,
            "feature_channels": PRESETS[RCNN_PRESETS[config.preset]][2]}


def _yolo_spec(config, names: Sequence[str], semantic_names: Sequence[str], source: str) -> ModelSpec:
    from .model import LEVEL_OUTPUTS, STRIDES

    if config.num_mask_coefs and config.num_semantic:
        task = "panoptic"
    elif config.num_mask_coefs:
        task = "segment"
    else:
        task = "detect"
    return ModelSpec(names=list(names), input_size_hw=config.input_size_hw, layout="edgedet", task=task,
                     strides=STRIDES, anchors=config.anchors, num_mask_coefs=config.num_mask_coefs,
                     semantic_names=list(semantic_names), level_outputs=list(LEVEL_OUTPUTS),
                     seg_output="seg" if config.num_semantic else None,
                     proto_output="proto" if config.num_mask_coefs else None, source=source)
