"""Training batches from `edgedet.data` samples: letterbox or random affine (scale jitter, translation, flip),
colour jitter, and the targets the loss needs (boxes, instance masks at prototype resolution, semantic labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from edgedet.device.letterbox import Letterbox
from .loss import PROTO_STRIDE, Targets

PAD_VALUE = 114  # letterbox / augmentation border value (the runtime's pad)
IGNORE_LABEL = 255  # semantic label of pixels that count for no class
MIN_BOX_SIDE = 2.0  # boxes narrower or lower than this (input pixels) after augmentation are dropped
MIN_VISIBLE_FRAC = 0.25  # boxes keeping less than this share of their area inside the image are dropped


@dataclass
class AugmentConfig:
    """Random training augmentation; all draws come from the dataset's per-sample generator."""

    scale_jitter: float = 0.35  # image scale factor drawn from [1 - j, 1 + j] around the letterbox scale
    translate: float = 0.1  # extra random shift as a fraction of the input size
    flip_lr: float = 0.5  # probability of a horizontal flip
    hsv_h: float = 0.015  # hue gain range (fraction of the hue circle)
    hsv_s: float = 0.5  # saturation gain range
    hsv_v: float = 0.3  # value (brightness) gain range


def affine_for(src_hw, dst_hw, rng: Optional[np.random.Generator], aug: Optional[AugmentConfig]) -> np.ndarray:
    """2x3 affine src -> dst: the letterbox without `rng`, else a jittered scale, random placement and flip."""
    h, w = src_hw
    dst_h, dst_w = dst_hw
    if rng is None or aug is None:
        box = Letterbox.fit(src_hw, dst_hw, PAD_VALUE)
        sx, sy = box.scale_xy
        return np.array([[sx, 0, box.left], [0, sy, box.top]], dtype=np.float64)
    scale = min(dst_h / h, dst_w / w) * rng.uniform(1 - aug.scale_jitter, 1 + aug.scale_jitter)
    new_w, new_h = w * scale, h * scale
    tx = rng.uniform(min(0.0, dst_w - new_w), max(0.0, dst_w - new_w)) + rng.uniform(-1, 1) * aug.translate * dst_w
    ty = rng.uniform(min(0.0, dst_h - new_h), max(0.0, dst_h - new_h)) + rng.uniform(-1, 1) * aug.translate * dst_h
    matrix = np.array([[scale, 0, tx], [0, scale, ty]], dtype=np.float64)
    if rng.random() < aug.flip_lr:
        matrix[0] = [-scale, 0, dst_w - tx]
    return matrix


def transform_boxes(xyxy: np.ndarray, matrix: np.ndarray, dst_hw) -> Tuple[np.ndarray, np.ndarray]:
    """(N, 4) corners through an axis-aligned (possibly flipped) affine, clipped to dst -> (boxes, keep mask)."""
    x = xyxy[:, [0, 2]] * matrix[0, 0] + matrix[0, 2]
    y = xyxy[:, [1, 3]] * matrix[1, 1] + matrix[1, 2]
    boxes = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
    full_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, dst_hw[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, dst_hw[0])
    wh = boxes[:, 2:] - boxes[:, :2]
    keep = (wh > MIN_BOX_SIDE).all(1) & (wh[:, 0] * wh[:, 1] > MIN_VISIBLE_FRAC * np.maximum(full_area, 1e-6))
    return boxes.astype(np.float32), keep


def hsv_jitter(image_bgr: np.ndarray, rng: np.random.Generator, aug: AugmentConfig) -> np.ndarray:
    """Random hue/saturation/value gains through lookup tables (uint8 BGR in and out)."""
    gains = rng.uniform(-1, 1, 3) * [aug.hsv_h, aug.hsv_s, aug.hsv_v] + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    merged = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(merged, cv2.COLOR_HSV2BGR)


def warp_masks_to_protos(masks: np.ndarray, matrix: np.ndarray, dst_hw) -> np.ndarray:
    """bool (N, h, w) masks -> float32 (N, H/4, W/4) soft masks (area-averaged) at prototype resolution."""
    proto_hw = (dst_hw[0] // PROTO_STRIDE, dst_hw[1] // PROTO_STRIDE)
    out = np.zeros((len(masks),) + proto_hw, dtype=np.float32)
    for i, mask in enumerate(masks):
        full = cv2.warpAffine(mask.astype(np.uint8) * 255, matrix, (dst_hw[1], dst_hw[0]), flags=cv2.INTER_NEAREST)
        out[i] = cv2.resize(full, (proto_hw[1], proto_hw[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return out


class TrainDataset(torch.utils.data.Dataset):
    """Samples -> dicts of image (3, H, W) uint8 RGB, boxes (n, 5) [class, cx, cy, w, h] in input pixels,
    masks (n, H/4, W/4) float32, semantic (H, W) int64 (255 ignore) and image index."""

    def __init__(self, samples: Sequence, size_hw: Tuple[int, int], augment: Optional[AugmentConfig] = None,
                 seed: int = 0, with_masks: bool = True, with_semantic: bool = True, cache_images: bool = False):
        self.samples = list(samples)
        # decoded BGR images, read once here (loader workers share them copy-on-write); None = read per item
        self.images: Optional[List[np.ndarray]] = [s.load_image() for s in self.samples] if cache_images else None
        self.size_hw = tuple(size_hw)
        self.augment = augment
        self.seed = seed
        self.epoch = 0  # set by the training loop so every epoch draws new augmentations
        self.with_masks = with_masks
        self.with_semantic = with_semantic

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Dict[str, object]:
        sample = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment else None
        image = sample.load_image() if self.images is None else self.images[index]
        if rng is not None:
            image = hsv_jitter(image, rng, self.augment)
        matrix = affine_for(image.shape[:2], self.size_hw, rng, self.augment)
        dst_wh = (self.size_hw[1], self.size_hw[0])
        warped = cv2.warpAffine(image, matrix, dst_wh, flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
        boxes, keep = transform_boxes(sample.xyxy, matrix, self.size_hw)
        item = {"index": index, "image": torch.from_numpy(np.ascontiguousarray(warped[..., ::-1].transpose(2, 0, 1)))}
        cxcywh = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)[keep]
        item["boxes"] = torch.from_numpy(np.concatenate([sample.class_ids[keep, None].astype(np.float32), cxcywh], 1))
        if self.with_masks:
            item["masks"] = torch.from_numpy(warp_masks_to_protos(sample.instance_masks()[keep], matrix, self.size_hw))
        if self.with_semantic:
            label = cv2.warpAffine(sample.semantic_map(), matrix, dst_wh, flags=cv2.INTER_NEAREST,
                                   borderValue=IGNORE_LABEL)
            item["semantic"] = torch.from_numpy(label.astype(np.int64))
        return item


def collate(items: List[Dict[str, object]]) -> Tuple[torch.Tensor, Targets, List[int]]:
    """Items -> (images float (B, 3, H, W) in 0..1, Targets, dataset indices)."""
    images = torch.stack([item["image"] for item in items]).float() / 255.0
    boxes = torch.cat([
        torch.cat([torch.full((len(item["boxes"]), 1), float(i)), item["boxes"]], dim=1) for i, item in enumerate(items)
    ]) if items else torch.zeros(0, 6)
    masks = torch.cat([item["masks"] for item in items]) if "masks" in items[0] else None
    semantic = torch.stack([item["semantic"] for item in items]) if "semantic" in items[0] else None
    return images, Targets(boxes=boxes.reshape(-1, 6), masks=masks, semantic=semantic), [item["index"] for item in items]
