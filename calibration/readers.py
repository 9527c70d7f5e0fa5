"""Feeding a calibration set to the two quantizers: onnxruntime's CalibrationDataReader and the PT2E loop.

Both yield NumPy arrays only; the torch side (PT2E observers) lives in export/.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Iterator, Optional

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from .calibset import CalibrationSet


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds {input_name: array} for every array `arrays()` yields to onnxruntime's calibrators (a model's one
    input); `rewind()` restarts. count: how many arrays `arrays()` yields."""

    def __init__(self, arrays: Callable[[], Iterable[np.ndarray]], input_name: str, count: int):
        self.arrays = arrays
        self.input_name = input_name
        self.count = count
        self._iterator: Optional[Iterator[np.ndarray]] = None

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._iterator is None:
            self._iterator = iter(self.arrays())
        x = next(self._iterator, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:
        self._iterator = None

    def __len__(self) -> int:
        return self.count


class OnnxCalibrationReader(ArrayCalibrationReader):
    """Feeds {input_name: float32 (1, 3, H, W)} per image of a calibration set to onnxruntime's calibrators."""

    def __init__(self, calib: CalibrationSet, input_name: str):
        self.calib = calib.with_layout("NCHW")
        super().__init__(self.calib.arrays, input_name, len(self.calib))


def pt2e_batches(calib: CalibrationSet, layout: str = "NHWC") -> Iterator[np.ndarray]:
    """float32 arrays in `layout` for the PT2E calibration loop (the caller wraps them in torch tensors)."""
    yield from calib.with_layout(layout).arrays()
