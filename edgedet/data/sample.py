"""The in-memory data set: one `Sample` per image and a `Dataset` of them, whatever the file format.

Boxes are xyxy float32 in image pixels, continuous coordinates (a box covering pixel columns 3..5
inclusive is x1=3, x2=6). Instance segmentations stay in their COCO form (polygon lists or RLE
dicts) until `Sample.instance_masks()` rasterises them with edgedet/rle.py, pycocotools' way: training targets,
panoptic ground truth and mask-AP ground truth see the same pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple, Union

import cv2
import numpy as np

from edgedet.device.errors import EdgedetError
from edgedet.rle import segmentation_to_mask

IGNORE_LABEL = 255  # semantic label of pixels that count for no class

Segmentation = Union[List[List[float]], dict]  # COCO polygon list [[x, y, x, y, ...], ...] or RLE dict


@dataclass
class Sample:
    """One annotated image. N instances; all per-instance arrays are parallel."""

    image_path: Path  # the image file (JPEG/PNG)
    image_id: int  # COCO image id (unique within the data set)
    shape_hw: Tuple[int, int]  # (height, width) of the image in pixels
    xyxy: np.ndarray  # float32 (N, 4) boxes, corners in pixels
    class_ids: np.ndarray  # int32 (N,) contiguous class index into Dataset.names
    segmentations: List[Optional[Segmentation]] = field(default_factory=list)  # per instance, None if the instance has no mask
    iscrowd: np.ndarray = None  # uint8 (N,) COCO iscrowd flags; zeros if not given
    semantic_path: Optional[Path] = None  # uint8 class-map PNG (labels index Dataset.semantic_names, 255 ignore) or None
    areas: Optional[np.ndarray] = None  # float32 (N,) COCO areas (mask pixels); None -> computed by instance_areas()

    def __post_init__(self):
        self.image_path = Path(self.image_path)
        self.semantic_path = None if self.semantic_path is None else Path(self.semantic_path)
        self.shape_hw = (int(self.shape_hw[0]), int(self.shape_hw[1]))
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int32).reshape(-1)
        n = len(self.xyxy)
        if self.iscrowd is None:
            self.iscrowd = np.zeros(n, dtype=np.uint8)
        self.iscrowd = np.asarray(self.iscrowd, dtype=np.uint8).reshape(-1)
        if not self.segmentations:
            self.segmentations = [None] * n
        if self.areas is not None:
            self.areas = np.asarray(self.areas, dtype=np.float32).reshape(-1)
        areas_n = n if self.areas is None else len(self.areas)
        if not (len(self.class_ids) == len(self.iscrowd) == len(self.segmentations) == areas_n == n):
            raise ValueError(f"sample {self.image_id}: per-instance fields differ in length")

    def __len__(self) -> int:
        return len(self.xyxy)

    def load_image(self) -> np.ndarray:
        """The image as BGR uint8 (H, W, 3)."""
        image = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise EdgedetError(f"{self.image_path}: cannot read image")
        return image

    def instance_masks(self) -> np.ndarray:
        """bool (N, H, W) masks at image resolution; an instance without segmentation gets its filled box."""
        h, w = self.shape_hw
        masks = np.zeros((len(self), h, w), dtype=bool)
        for i, segmentation in enumerate(self.segmentations):
            if segmentation is None:
                x1, y1, x2, y2 = np.round(self.xyxy[i]).astype(int)
                masks[i, max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
            else:
                masks[i] = segmentation_to_mask(segmentation, self.shape_hw)
        return masks

    def instance_areas(self) -> np.ndarray:
        """float32 (N,) areas: the stored COCO areas, else mask pixels (box area for instances without a mask)."""
        if self.areas is not None:
            return self.areas
        if all(s is None for s in self.segmentations):
            wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
            return (wh[:, 0] * wh[:, 1]).astype(np.float32)
        return self.instance_masks().sum(axis=(1, 2)).astype(np.float32)

    def semantic_map(self) -> np.ndarray:
        """uint8 (H, W) class map (labels index Dataset.semantic_names, 255 = ignore); all 255 without a semantic file."""
        if self.semantic_path is None:
            return np.full(self.shape_hw, IGNORE_LABEL, dtype=np.uint8)
        label = cv2.imread(str(self.semantic_path), cv2.IMREAD_UNCHANGED)
        if label is None:
            raise EdgedetError(f"{self.semantic_path}: cannot read semantic map")
        if label.ndim != 2 or label.shape != self.shape_hw:
            raise EdgedetError(f"{self.semantic_path}: semantic map shape {label.shape} does not match image {self.shape_hw}")
        return label.astype(np.uint8)


@dataclass
class Dataset:
    """A split of a data set: class names, semantic names and the samples."""

    names: List[str]  # thing class names, index = class id
    semantic_names: List[str]  # semantic labels (stuff names then thing names for synth), index = label; may be empty
    samples: List[Sample]  # the images with their annotations
    root: Path  # folder the data set was read from
    category_ids: List[int] = field(default_factory=list)  # COCO category id of each class index (default 1..C)
    skipped: List[str] = field(default_factory=list)  # problems of records dropped by skip_invalid, one line each

    def __post_init__(self):
        self.root = Path(self.root)
        if not self.category_ids:
            self.category_ids = list(range(1, len(self.names) + 1))
        if len(self.category_ids) != len(self.names):
            raise ValueError("category_ids and names differ in length")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self):
        return iter(self.samples)


# ---- masks -------------------------------------------------------------------------------------

def mask_to_xyxy(mask: np.ndarray) -> np.ndarray:
    """bool (H, W) mask -> float32 (4,) tight box enclosing its pixels (x2, y2 exclusive); zeros for an empty mask."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        return np.zeros(4, dtype=np.float32)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)
