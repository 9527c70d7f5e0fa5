"""A calibration set: chosen images, preprocessed exactly as the device runtime does.

The arrays come from `device.preprocessing.preprocess` with a float copy of the model's spec, so the
int8 ranges are measured on the very letterbox, channel order and scaling the deployed model sees.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Iterator, List, Sequence

import cv2
import numpy as np

from edgedet.device.errors import EdgedetError
from edgedet.device.preprocessing import preprocess
from edgedet.device.spec import ModelSpec
from .sampling import CalibrationItem, items_from_folder, sample_items


@dataclass(frozen=True)
class CalibrationSet:
    """Readable calibration images and the float input spec they are preprocessed for."""

    items: tuple  # CalibrationItem, in calibration order; every image was readable when the set was built
    spec: ModelSpec  # float32 input spec (layout NCHW or NHWC) used by `device.preprocessing`

    def __len__(self) -> int:
        return len(self.items)

    def arrays(self) -> Iterator[np.ndarray]:
        """Preprocessed inputs, float32 (1, 3, H, W) or (1, H, W, 3) per `spec.input_layout`, RGB 0..1 letterboxed."""
        for item in self.items:
            x, _ = preprocess(_read_bgr(item), self.spec)
            yield np.ascontiguousarray(x, dtype=np.float32)

    def with_layout(self, layout: str) -> "CalibrationSet":
        """The same images preprocessed to `layout` ("NCHW" or "NHWC")."""
        return CalibrationSet(self.items, dataclasses.replace(self.spec, input_layout=layout))


def float_input_spec(spec: ModelSpec, layout: str = "NCHW") -> ModelSpec:
    """`spec` with a float32 input in `layout`: what calibration feeds a not-yet-quantized model."""
    return dataclasses.replace(spec, input_dtype="float32", input_quant=None, input_layout=layout)


def build_calibration_set(items: Sequence[CalibrationItem], spec: ModelSpec, size: int = 200,
                          strategy: str = "random", seed: int = 0, layout: str = "NCHW") -> CalibrationSet:
    """Sample `size` items, drop unreadable images (reported on stderr), and bind them to a float `spec`."""
    chosen = sample_items(items, size, strategy, seed)
    readable = [item for item in chosen if _is_readable(item)]
    skipped = len(chosen) - len(readable)
    if not readable:
        raise EdgedetError(f"none of the {len(chosen)} calibration images could be read (first: {chosen[0].path})")
    if skipped:
        print(f"calibration: skipped {skipped} unreadable image(s)", file=sys.stderr)
    return CalibrationSet(tuple(readable), float_input_spec(spec, layout))


def calibration_set_from_folder(folder, spec: ModelSpec, size: int = 200, seed: int = 0,
                                layout: str = "NCHW") -> CalibrationSet:
    """A random, seeded calibration set from a folder of images (labels unknown)."""
    return build_calibration_set(items_from_folder(folder), spec, size, "random", seed, layout)


def _read_bgr(item: CalibrationItem) -> np.ndarray:
    image = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgedetError(f"cannot read calibration image {item.path}")
    return image


def _is_readable(item: CalibrationItem) -> bool:
    try:
        _read_bgr(item)
    except EdgedetError:
        return False
    return True


def stack_arrays(calib: CalibrationSet, limit: int = 0) -> List[np.ndarray]:
    """The first `limit` preprocessed inputs (all if 0) as a list; for small evaluation batches."""
    out = []
    for x in calib.arrays():
        out.append(x)
        if limit and len(out) >= limit:
            break
    return out
