"""Letterbox: resize keeping the aspect ratio, pad to the network input, and the exact inverse.

The forward arithmetic is Ultralytics' LetterBox (center padding, no stride rounding):
    r = min(H_in / h, W_in / w)                      (optionally capped at 1 when scaleup is off)
    resized (w', h') = (round(w * r), round(h * r))   Python's round, cv2.INTER_LINEAR
    pad_x = (W_in - w') / 2, pad_y = (H_in - h') / 2
    top = round(pad_y - 0.1), bottom = round(pad_y + 0.1), left/right likewise
so an odd padding puts the smaller half top/left, and a model exported by Ultralytics sees exactly the pixels
it was trained on. The inverse uses the per-axis scale actually applied (w' / w, h' / h), so the image corners
map back onto the frame corners exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

from .errors import EdgedetError


@dataclass(frozen=True)
class Letterbox:
    """One frame's letterbox: original (h, w) -> network input (H, W). Build it with `Letterbox.fit`."""

    src_hw: Tuple[int, int]  # original frame (height, width) in pixels
    dst_hw: Tuple[int, int]  # network input (height, width) in pixels
    resized_hw: Tuple[int, int]  # size of the resized frame inside the input, before padding
    top: int  # padding rows above the resized frame
    left: int  # padding columns left of the resized frame
    pad_value: int = 114  # border value, 0..255, same in every channel

    @classmethod
    def fit(cls, src_hw, dst_hw, pad_value: int = 114, scaleup: bool = True) -> "Letterbox":
        """Letterbox for a frame of `src_hw` = (h, w) into `dst_hw` = (H, W) (Ultralytics' arithmetic)."""
        h, w = int(src_hw[0]), int(src_hw[1])
        dst_h, dst_w = int(dst_hw[0]), int(dst_hw[1])
        if h <= 0 or w <= 0:
            raise EdgedetError(f"cannot letterbox an empty frame of size {w}x{h}")
        r = min(dst_h / h, dst_w / w)
        if not scaleup:
            r = min(r, 1.0)
        new_w, new_h = max(1, int(round(w * r))), max(1, int(round(h * r)))  # a 2x3000 strip keeps one row
        pad_x, pad_y = (dst_w - new_w) / 2, (dst_h - new_h) / 2
        top, left = int(round(pad_y - 0.1)), int(round(pad_x - 0.1))
        return cls((h, w), (dst_h, dst_w), (new_h, new_w), top, left, int(pad_value))

    @property
    def bottom(self) -> int:
        return self.dst_hw[0] - self.resized_hw[0] - self.top

    @property
    def right(self) -> int:
        return self.dst_hw[1] - self.resized_hw[1] - self.left

    @property
    def scale_xy(self) -> Tuple[float, float]:
        """Per-axis scale actually applied: (resized_w / w, resized_h / h)."""
        return self.resized_hw[1] / self.src_hw[1], self.resized_hw[0] / self.src_hw[0]

    def apply(self, image: np.ndarray) -> np.ndarray:
        """uint8 (h, w[, C]) frame -> (H, W[, C]) letterboxed image of the same dtype and channels."""
        if tuple(image.shape[:2]) != self.src_hw:
            raise EdgedetError(f"frame is {image.shape[1]}x{image.shape[0]}, letterbox was fitted for "
                               f"{self.src_hw[1]}x{self.src_hw[0]}")
        new_h, new_w = self.resized_hw
        if (new_h, new_w) != self.src_hw:
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        if (new_h, new_w) == self.dst_hw:
            return image
        value = (self.pad_value,) * (image.shape[2] if image.ndim == 3 else 1)
        return cv2.copyMakeBorder(image, self.top, self.bottom, self.left, self.right,
                                  cv2.BORDER_CONSTANT, value=value)

    __call__ = apply

    def boxes_to_original(self, xyxy: np.ndarray, clip: bool = True) -> np.ndarray:
        """(N, 4) xyxy network-input pixels -> float32 (N, 4) original-frame pixels, clipped to the frame."""
        out = np.array(xyxy, dtype=np.float64).reshape(-1, 4)
        out[:, 0::2] = (out[:, 0::2] - self.left) * self.src_hw[1] / self.resized_hw[1]
        out[:, 1::2] = (out[:, 1::2] - self.top) * self.src_hw[0] / self.resized_hw[0]
        if clip:
            out[:, 0::2] = np.clip(out[:, 0::2], 0, self.src_hw[1])
            out[:, 1::2] = np.clip(out[:, 1::2], 0, self.src_hw[0])
        return out.astype(np.float32)

    def content_slices(self) -> Tuple[slice, slice]:
        """(rows, cols) slices of the resized frame inside the network input (the padding excluded)."""
        return (slice(self.top, self.top + self.resized_hw[0]), slice(self.left, self.left + self.resized_hw[1]))


def letterbox(image: np.ndarray, dst_hw, pad_value: int = 114, scaleup: bool = True):
    """Letterbox one frame: returns (image (H, W[, C]) same dtype, `Letterbox` for the inverse)."""
    box = Letterbox.fit(image.shape[:2], dst_hw, pad_value=pad_value, scaleup=scaleup)
    return box.apply(image), box
