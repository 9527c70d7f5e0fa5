"""The two-stage detector (GitHub issue 16): Faster R-CNN with FPN and a Mask R-CNN mask head, sized for a
Raspberry Pi, as the lecture presents it (R-CNN -> Fast -> Faster -> Mask R-CNN).

    stage 1, once per image:  images -> backbone + FPN (P3/P4/P5, strides 8/16/32) -> RPN head per level (raw)
    proposals (NumPy NMS):    per level top-k objectness, decode against anchors, clip, drop tiny, NMS, top-k
    stage 2, once per region: RoI Align (14x14, level by size) -> `heads`: the box head (on the features pooled
                              2x2 to 7x7) and the mask head -> per-class decode, clip, class NMS; each kept
                              detection takes the (28, 28) mask of the proposal it came from, over that proposal

`stage1` is the exported graph: it returns raw tensors only (no sigmoid, no decode), in `stage1_output_names`
order:
    "p3_feat", "p4_feat", "p5_feat"      (B, F, H/s, W/s) FPN features, F = the neck width (64 for rcnn-n)
    "p3_rpn_obj", "p3_rpn_box", ... p5  (B, A, H/s, W/s) objectness logits, (B, A*4, H/s, W/s) deltas (dx, dy, dw,
                                         dh), weights RPN_BOX_WEIGHTS, anchor-major channels
Anchors and the order of a level's flattened outputs (row, column, anchor) are edgedet.device.rcnn_anchors'. The
per-region graph `heads` maps (R, F, 14, 14) RoI features to (R, 1+C) class logits (0 = background), (R, 4C)
per-class deltas (weights ROI_BOX_WEIGHTS, against the proposal) and (R, K, 28, 28) mask logits over the proposal.
One RoI Align and one per-region graph serve both heads, so the device runs stage 2 as a single call; masks come
from the proposals (as in training) rather than from a second pass over the refined boxes.

`forward(images, targets)` is the training step's loss (proposal sampling sits between the stages, so the loss is
computed inside, which is what DistributedDataParallel wraps); `predict` is the torch reference of inference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgedet.device.errors import EdgedetError
from edgedet.device.rcnn_anchors import anchors_per_level
from edgedet.device.two_stage import HEAD_OUTPUTS
from edgedet.device.suppression import nms
from ..loss import Targets
from ..rcnn_loss import (ROI_BOX_WEIGHTS, RPN_BOX_WEIGHTS, box_head_loss, mask_loss, mask_targets, rpn_loss,
                         sample_rois, split_truth)
from .box_coder import decode_deltas
from .model import PRESETS, STRIDES, Backbone, Neck, check_input_size
from .roi_align import roi_align_levels

RCNN_PRESETS = {"rcnn-n": "n"}  # two-stage preset -> the edgedet backbone/neck preset whose widths it reuses
LEVELS = ("p3", "p4", "p5")  # FPN levels, finest first, at STRIDES 8/16/32


def stage1_output_names() -> Tuple[str, ...]:
    """Names of the tensors stage 1 returns, in order: features per level, then (objectness, box) per level."""
    return tuple(f"{level}_feat" for level in LEVELS) + tuple(
        f"{level}_{part}" for level in LEVELS for part in ("rpn_obj", "rpn_box"))


@dataclass
class RCNNConfig:
    """Architecture and training-sampling settings of the two-stage detector; saved in every checkpoint."""

    preset: str = "rcnn-n"  # size preset, a key of RCNN_PRESETS
    num_classes: int = 5  # C: detected classes (the box head adds background as class 0)
    input_size_hw: Tuple[int, int] = (320, 320)  # training/export input (height, width), multiples of 32
    # anchor sides (sqrt of area, input pixels) per level P3/P4/P5; each at least two cells of its level, neighbours
    # 1.5-2x apart, covering the 12-160 px objects of this project (and up to ~320 px after scale jitter)
    anchor_sizes: List[List[float]] = field(default_factory=lambda: [[16.0, 32.0], [48.0, 80.0], [128.0, 224.0]])
    anchor_ratios: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # anchor h / w, same for each size
    bottom_up: bool = True  # add the PAN bottom-up path after the FPN top-down path (the edgedet neck)
    rpn_pre_nms_top_k_train: int = 1000  # proposals kept per level by objectness before NMS, training
    rpn_post_nms_top_k_train: int = 300  # proposals kept per image after NMS, training
    rpn_pre_nms_top_k_test: int = 500  # the same, inference (fewer: RoIs are what the Pi pays for per image)
    rpn_post_nms_top_k_test: int = 100  # proposals per image after NMS, inference
    rpn_nms_iou: float = 0.7  # NMS IoU between proposals (one pass over all levels together)
    rpn_min_box_side: float = 1.0  # proposals narrower or lower than this (input pixels, after clipping) are dropped
    rpn_fg_iou: float = 0.7  # anchor IoU with a ground-truth box that makes it positive
    rpn_bg_iou: float = 0.3  # anchors below this IoU with every box are negative; in between ignored
    rpn_batch_per_image: int = 256  # anchors sampled per image for the RPN losses
    rpn_positive_fraction: float = 0.5  # at most this share of them positive
    roi_batch_per_image: int = 128  # proposals sampled per image for the box and mask losses (few objects per image)
    roi_positive_fraction: float = 0.25  # at most this share of them foreground
    roi_fg_iou: float = 0.5  # proposal IoU with a ground-truth box that makes it foreground (else background)
    box_pool_size: int = 7  # side of the box head's input: the RoI features average-pooled 2x2
    mask_pool_size: int = 14  # RoI Align output side (the mask head's input)
    # bilinear samples per bin side: 1 (the bin centre) costs a quarter of torchvision's 2, in training and on the
    # device, and the 2x2 pooling into the box head's 7x7 bins averages four samples anyway
    roi_sampling_ratio: int = 1
    mask_size: int = 28  # mask head output side (= 2 * mask_pool_size: one 2x transposed convolution)
    # one mask per RoI rather than one per class: Mask R-CNN reports class-agnostic masks nearly as good (29.7 vs
    # 30.3 mask AP), the head's output stops growing with C, and the device needs no per-class channel gather
    class_agnostic_masks: bool = True
    box_head_width: int = 256  # hidden width of the box head's two fully connected layers
    mask_head_width: int = 32  # channels of the mask head's convolutions (it runs on every proposal on the device)

    def __post_init__(self):
        if self.preset not in RCNN_PRESETS:
            raise EdgedetError(f"unknown two-stage preset {self.preset!r}; expected one of {', '.join(RCNN_PRESETS)}")
        self.input_size_hw = tuple(int(v) for v in self.input_size_hw)
        check_input_size(self.input_size_hw)
        self.anchor_sizes = [[float(s) for s in level] for level in self.anchor_sizes]
        self.anchor_ratios = [float(r) for r in self.anchor_ratios]
        if len(self.anchor_sizes) != len(STRIDES) or len({len(level) for level in self.anchor_sizes}) != 1:
            raise EdgedetError(f"anchor_sizes must give the same number of sizes for each of {len(STRIDES)} levels")
        if self.mask_size != 2 * self.mask_pool_size:
            raise EdgedetError(f"mask_size {self.mask_size} must be 2 * mask_pool_size ({self.mask_pool_size})")
        if self.mask_pool_size != 2 * self.box_pool_size:  # the box head pools the RoI features 2x2
            raise EdgedetError(f"mask_pool_size {self.mask_pool_size} must be 2 * box_pool_size ({self.box_pool_size})")

    @property
    def num_anchors(self) -> int:
        """A: anchors per location (sizes per level x ratios)."""
        return len(self.anchor_sizes[0]) * len(self.anchor_ratios)

    @property
    def mask_channels(self) -> int:
        """K: mask logits per RoI, 1 when class-agnostic, else C."""
        return 1 if self.class_agnostic_masks else self.num_classes


class RPNHead(nn.Module):
    """Shared over levels (anchors scale with the level): 3x3 conv + ReLU6, then 1x1 objectness (A) and deltas
    (A*4). No BatchNorm: one set of statistics would be pooled over three scales."""

    def __init__(self, width: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.objectness = nn.Conv2d(width, num_anchors, 1)
        self.box = nn.Conv2d(width, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness, self.box):  # torchvision's RPN init
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, F, h, w) -> objectness logits (B, A, h, w), deltas (B, A*4, h, w)."""
        hidden = F.relu6(self.conv(x))
        return self.objectness(hidden), self.box(hidden)


class Stage1(nn.Module):
    """images (B, 3, H, W) RGB 0..1 -> raw tensors in `output_names` order (see the module docstring)."""

    def __init__(self, config: RCNNConfig):
        super().__init__()
        widths, depths, neck_width, _ = PRESETS[RCNN_PRESETS[config.preset]]
        self.feature_width = neck_width
        self.backbone = Backbone(widths, depths)
        self.neck = Neck(widths[2:], neck_width, config.bottom_up)
        self.rpn = RPNHead(neck_width, config.num_anchors)
        self.output_names = stage1_output_names()

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        _, c3, c4, c5 = self.backbone(images)
        features = self.neck(c3, c4, c5)
        rpn = [self.rpn(p) for p in features]
        return (*features, *[t for pair in rpn for t in pair])


class BoxHead(nn.Module):
    """(R, F, 2P, 2P) RoI features, average-pooled 2x2 to (R, F, P, P) -> class logits (R, 1+C) (0 = background),
    per-class deltas (R, 4C)."""

    def __init__(self, feature_width: int, pool_size: int, width: int, num_classes: int):
        super().__init__()
        self.hidden = nn.Sequential(
            nn.Flatten(), nn.Linear(feature_width * pool_size * pool_size, width), nn.ReLU6(inplace=True),
            nn.Linear(width, width), nn.ReLU6(inplace=True),
        )
        self.cls = nn.Linear(width, 1 + num_classes)
        self.box = nn.Linear(width, 4 * num_classes)
        for layer, std in ((self.cls, 0.01), (self.box, 0.001)):  # Detectron2's predictor init
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        hidden = self.hidden(F.avg_pool2d(x, 2))
        return self.cls(hidden), self.box(hidden)


class MaskHead(nn.Module):
    """(R, F, 14, 14) RoI features -> (R, K, 28, 28) mask logits: two 3x3 convs, a 2x transposed conv, a 1x1."""

    def __init__(self, feature_width: int, width: int, mask_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(feature_width, width, 3, padding=1), nn.ReLU6(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU6(inplace=True),
            nn.ConvTranspose2d(width, width, 2, stride=2), nn.ReLU6(inplace=True),
            nn.Conv2d(width, mask_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class RegionHeads(nn.Module):
    """The per-region graph: (R, F, 14, 14) RoI features -> (class logits (R, 1+C), box deltas (R, 4C), mask logits
    (R, K, 28, 28)), in `output_names` order."""

    output_names = HEAD_OUTPUTS  # what the device's heads runner reads (device/two_stage.py)

    def __init__(self, feature_width: int, config: "RCNNConfig"):
        super().__init__()
        self.box_head = BoxHead(feature_width, config.box_pool_size, config.box_head_width, config.num_classes)
        self.mask_head = MaskHead(feature_width, config.mask_head_width, config.mask_channels)

    def forward(self, roi_features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        class_logits, box_deltas = self.box_head(roi_features)
        return class_logits, box_deltas, self.mask_head(roi_features)


def flatten_rpn_level(objectness: torch.Tensor, box: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of edgedet.device.rcnn_anchors.flatten_rpn_level: (B, A, h, w), (B, A*4, h, w) -> (B, h*w*A)
    logits, (B, h*w*A, 4) deltas, ordered row, column, anchor."""
    b, a, h, w = objectness.shape
    logits = objectness.permute(0, 2, 3, 1).reshape(b, h * w * a)
    deltas = box.view(b, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, h * w * a, 4)
    return logits, deltas


def clip_boxes(xyxy: torch.Tensor, size_hw: Tuple[int, int]) -> torch.Tensor:
    """(..., 4) corners clipped to a (height, width) image."""
    x = xyxy[..., 0::2].clamp(0, size_hw[1])
    y = xyxy[..., 1::2].clamp(0, size_hw[0])
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


@torch.no_grad()
def select_proposals(logits_per_level: Sequence[torch.Tensor], deltas_per_level: Sequence[torch.Tensor],
                     anchors_per_level: Sequence[torch.Tensor], image_size_hw: Tuple[int, int], pre_nms_top_k: int,
                     post_nms_top_k: int, nms_iou: float, min_side: float) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Per level logits (B, N_l), deltas (B, N_l, 4), anchors (N_l, 4) xyxy -> per image (boxes (P, 4) xyxy input
    pixels, objectness (P,) in 0..1), P <= post_nms_top_k, by descending objectness.

    Per level the pre_nms_top_k highest logits, decoded (RPN_BOX_WEIGHTS), clipped to the image; boxes with a side
    below min_side dropped; then one NMS over all levels together (edgedet.device.suppression.nms)."""
    boxes, scores = [], []
    for logits, deltas, anchors in zip(logits_per_level, deltas_per_level, anchors_per_level):
        top, index = logits.topk(min(pre_nms_top_k, logits.shape[1]), dim=1)  # (B, k)
        b, k = index.shape
        picked = torch.gather(deltas, 1, index[..., None].expand(b, k, 4)).reshape(-1, 4).float()
        decoded = decode_deltas(picked, anchors[index.reshape(-1)], RPN_BOX_WEIGHTS).view(b, k, 4)
        boxes.append(clip_boxes(decoded, image_size_hw))
        scores.append(torch.sigmoid(top.float()))
    boxes, scores = torch.cat(boxes, dim=1), torch.cat(scores, dim=1)
    return [_nms_proposals(boxes[i], scores[i], post_nms_top_k, nms_iou, min_side) for i in range(len(boxes))]


def _nms_proposals(boxes: torch.Tensor, scores: torch.Tensor, top_k: int, nms_iou: float,
                   min_side: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """One image's candidates (N, 4), (N,) -> the NMS survivors with both sides >= min_side, at most top_k."""
    wh = boxes[:, 2:] - boxes[:, :2]
    keep = torch.nonzero((wh >= min_side).all(dim=1) & torch.isfinite(scores)).flatten()
    boxes, scores = boxes[keep], scores[keep]
    kept = nms(boxes.float().cpu().numpy(), scores.float().cpu().numpy(), nms_iou, max_det=top_k)
    kept = torch.from_numpy(kept).to(boxes.device)
    return boxes[kept], scores[kept]


def rois_of(boxes_per_image: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per image (P_i, 4) xyxy -> (sum P_i, 5) (batch index, x1, y1, x2, y2)."""
    parts = [torch.cat([boxes.new_full((len(boxes), 1), float(i)), boxes], dim=1)
             for i, boxes in enumerate(boxes_per_image)]
    return torch.cat(parts) if parts else torch.zeros(0, 5)


class FasterRCNN(nn.Module):
    """Faster R-CNN + FPN + Mask R-CNN mask head. Input (B, 3, H, W) RGB float in 0..1, H and W multiples of 32."""

    def __init__(self, config: RCNNConfig):
        super().__init__()
        self.config = config
        self.stage1 = Stage1(config)
        self.heads = RegionHeads(self.stage1.feature_width, config)
        self._anchors: Dict[tuple, List[np.ndarray]] = {}  # (H, W) -> per-level NumPy anchors
        self._anchor_tensors: Dict[tuple, List[torch.Tensor]] = {}  # (H, W, device) -> the same as tensors

    @property
    def stage1_output_names(self) -> Tuple[str, ...]:
        return self.stage1.output_names

    def anchor_arrays(self, size_hw: Tuple[int, int]) -> List[np.ndarray]:
        """Per level float32 (h*w*A, 4) xyxy anchors for an input of size_hw (edgedet.device.rcnn_anchors), cached."""
        key = (int(size_hw[0]), int(size_hw[1]))
        if key not in self._anchors:
            config = self.config
            self._anchors[key] = anchors_per_level(key, STRIDES, config.anchor_sizes, config.anchor_ratios)
        return self._anchors[key]

    def anchors(self, size_hw: Tuple[int, int], device=None) -> List[torch.Tensor]:
        """`anchor_arrays` as tensors on `device`, cached."""
        key = (int(size_hw[0]), int(size_hw[1]), str(device))
        if key not in self._anchor_tensors:
            self._anchor_tensors[key] = [torch.from_numpy(a).to(device) for a in self.anchor_arrays(key[:2])]
        return self._anchor_tensors[key]

    def _first_stage(self, images: torch.Tensor):
        """images -> (FPN features per level, flattened RPN logits per level, flattened deltas per level)."""
        outputs = self.stage1(images)
        count = len(LEVELS)
        flat = [flatten_rpn_level(outputs[count + 2 * i], outputs[count + 2 * i + 1]) for i in range(count)]
        return list(outputs[:count]), [f[0] for f in flat], [f[1] for f in flat]

    def _proposals(self, images, logits, deltas, training: bool) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """`select_proposals` with the training or the inference top-k of the config."""
        config, size_hw = self.config, tuple(images.shape[-2:])
        pre = config.rpn_pre_nms_top_k_train if training else config.rpn_pre_nms_top_k_test
        post = config.rpn_post_nms_top_k_train if training else config.rpn_post_nms_top_k_test
        return select_proposals([level.detach() for level in logits], [level.detach() for level in deltas],
                                self.anchors(size_hw, images.device), size_hw, pre, post, config.rpn_nms_iou,
                                config.rpn_min_box_side)

    def forward(self, images: torch.Tensor, targets: Targets) -> Tuple[torch.Tensor, Dict[str, float]]:
        """Training loss: images (B, 3, H, W), Targets (boxes (T, 6) input pixels, optional masks (T, H/4, W/4))
        -> (total loss, parts {"rpn_obj", "rpn_box", "cls", "box"[, "mask"]} as floats). Without Targets.masks
        the mask term (and its key) is left out."""
        config = self.config
        features, logits, deltas = self._first_stage(images)
        truths = split_truth(targets, len(images))
        anchors = np.concatenate(self.anchor_arrays(tuple(images.shape[-2:])))
        terms = {}
        terms["rpn_obj"], terms["rpn_box"] = rpn_loss(
            torch.cat(logits, dim=1), torch.cat(deltas, dim=1), anchors, truths, config.rpn_fg_iou,
            config.rpn_bg_iou, config.rpn_batch_per_image, config.rpn_positive_fraction)
        proposals = [boxes for boxes, _ in self._proposals(images, logits, deltas, training=True)]
        sample = sample_rois(proposals, truths, config.roi_fg_iou, config.roi_batch_per_image,
                             config.roi_positive_fraction)
        pooled = self._pool(features, sample.rois)
        terms["cls"], terms["box"] = box_head_loss(*self.heads.box_head(pooled), sample)
        if targets.masks is not None:
            terms["mask"] = self._mask_loss(pooled, sample, targets.masks)
        total = sum(terms.values())
        return total, {name: float(value.detach()) for name, value in terms.items()}

    def _mask_loss(self, pooled: torch.Tensor, sample, masks: torch.Tensor) -> torch.Tensor:
        """Mask BCE on the foreground RoIs of `sample` (pooled: their (R, F, 14, 14) features), targets cropped from
        the ground-truth masks."""
        fg = torch.nonzero(sample.labels > 0).flatten()
        logits = self.heads.mask_head(pooled[fg])
        targets = mask_targets(masks, sample.rois[fg], sample.truth_rows[fg], self.config.mask_size)
        return mask_loss(logits, sample.labels[fg], targets)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, score_threshold: float = 0.05, iou: float = 0.5,
                max_det: int = 100) -> List[Dict[str, torch.Tensor]]:
        """Inference (in eval mode; the previous mode is restored): images (B, 3, H, W) -> per image a dict of
        "xyxy" float32 (N, 4) input pixels, "scores" float32 (N,), "class_ids" int64 (N,) 0-based, "masks"
        float32 (N, 28, 28) mask probabilities over "mask_boxes" float32 (N, 4), the proposals the detections
        came from; N <= max_det, by descending score."""
        was_training = self.training
        self.eval()
        try:
            features, proposals = self._inference_proposals(images)
            return self._detect(features, proposals, tuple(images.shape[-2:]), score_threshold, iou, max_det)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def proposal_features(self, images: torch.Tensor) -> torch.Tensor:
        """(R, F, 14, 14) RoI features of the inference proposals of `images` (B, 3, H, W), what the per-region
        heads see at inference (export calibrates int8 heads on them)."""
        features, proposals = self._inference_proposals(images)
        return self._pool(features, rois_of(proposals).float().to(features[0].device))

    def _inference_proposals(self, images: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """images -> (FPN features per level, per image its (P, 4) xyxy inference proposals)."""
        features, logits, deltas = self._first_stage(images)
        return features, [boxes for boxes, _ in self._proposals(images, logits, deltas, training=False)]

    def _pool(self, features: List[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """RoI Align of (R, 5) rois on their FPN levels -> (R, F, 14, 14)."""
        config = self.config
        return roi_align_levels(features, STRIDES, rois, (config.mask_pool_size,) * 2, config.roi_sampling_ratio)

    def _detect(self, features, proposals, size_hw, score_threshold, iou, max_det) -> List[Dict[str, torch.Tensor]]:
        """The per-region heads on the proposals -> per image {"xyxy", "scores", "class_ids", "masks",
        "mask_boxes"} after class-aware NMS."""
        config = self.config
        rois = rois_of(proposals).float().to(features[0].device)  # coordinates stay float32
        pooled = self._pool(features, rois)
        class_logits, box_deltas, mask_logits = self.heads(pooled)
        probs = F.softmax(class_logits.float(), dim=1)[:, 1:]  # (R, C) without background
        reference = rois[:, 1:].repeat_interleave(config.num_classes, dim=0)
        boxes = clip_boxes(decode_deltas(box_deltas.float().reshape(-1, 4), reference, ROI_BOX_WEIGHTS), size_hw)
        boxes = boxes.view(len(rois), config.num_classes, 4)
        image = rois[:, 0].long()
        detections = []
        for i in range(len(proposals)):
            rows = torch.nonzero(image == i).flatten()
            kept = per_class_nms(boxes[rows], probs[rows], score_threshold, iou, max_det)
            roi = rows[kept.pop("rois")]
            channel = torch.zeros_like(kept["class_ids"]) if config.class_agnostic_masks else kept["class_ids"]
            kept["masks"] = torch.sigmoid(mask_logits[roi, channel].float())
            kept["mask_boxes"] = rois[roi, 1:]
            detections.append(kept)
        return detections


def per_class_nms(boxes: torch.Tensor, probs: torch.Tensor, score_threshold: float, iou: float,
                  max_det: int) -> Dict[str, torch.Tensor]:
    """One image's per-class boxes (R, C, 4) and probabilities (R, C) -> {"xyxy", "scores", "class_ids", "rois"
    (index of each one's RoI in R)} of the (RoI, class) pairs above score_threshold that survive per-class NMS, at
    most max_det."""
    roi, cls = torch.nonzero(probs > score_threshold, as_tuple=True)
    xyxy, scores = boxes[roi, cls], probs[roi, cls]
    kept = nms(xyxy.float().cpu().numpy(), scores.float().cpu().numpy(), iou, class_ids=cls.cpu().numpy(),
               max_det=max_det)
    kept = torch.from_numpy(kept).to(boxes.device)
    return {"xyxy": xyxy[kept].float(), "scores": scores[kept].float(), "class_ids": cls[kept].long(),
            "rois": roi[kept]}


def build_rcnn(config: RCNNConfig) -> FasterRCNN:
    """A freshly initialised two-stage detector for `config` (train mode)."""
    return FasterRCNN(config)
