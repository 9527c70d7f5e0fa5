"""The one value type for detector results: parallel NumPy arrays in original-image pixels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .boxes import box_area


@dataclass(frozen=True)
class Detections:
    """N detections of one image.

    xyxy:      float32 (N, 4), corners (x1, y1, x2, y2) in original-image pixels, continuous coordinates.
    scores:    float32 (N,), confidence in 0..1.
    class_ids: int32 (N,), index into the model's class names.
    masks:     optional bool (N, H, W), instance masks at original-image resolution.

    Filtering is indexing (`d[d.scores > 0.5]`) and returns a new value; "nothing found" is `Detections.empty()`.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    masks: Optional[np.ndarray] = None

    def __post_init__(self):
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids, dtype=np.int32).reshape(-1)
        n = len(xyxy)
        if len(scores) != n or len(class_ids) != n:
            raise ValueError(f"Detections: xyxy has {n} rows but scores {len(scores)} and class_ids {len(class_ids)}")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)
        if self.masks is not None:
            masks = np.asarray(self.masks, dtype=bool)
            if masks.ndim != 3 or len(masks) != n:
                raise ValueError(f"Detections: masks must be (N={n}, H, W), got {masks.shape}")
            object.__setattr__(self, "masks", masks)

    @classmethod
    def empty(cls, mask_shape_hw: Optional[tuple] = None) -> "Detections":
        """No detections; with `mask_shape_hw` the masks field is an empty (0, H, W) array."""
        masks = None if mask_shape_hw is None else np.zeros((0, *mask_shape_hw), dtype=bool)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), masks)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index) -> "Detections":
        """Select by integer array, slice or boolean mask; always returns a `Detections`."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        masks = None if self.masks is None else self.masks[index]
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index], masks)

    @property
    def area(self) -> np.ndarray:
        """float32 (N,): box areas in pixels squared (continuous, no +1)."""
        return box_area(self.xyxy)
