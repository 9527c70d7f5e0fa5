"""Preprocess: BGR frame -> the network's input tensor (letterbox, channel order, layout, dtype, quantization)."""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Optional, Tuple

import cv2
import numpy as np

from .errors import EdgedetError
from .letterbox import Letterbox
from .spec import ModelSpec, QuantParams, TensorDetails

_INT_RANGES = {"uint8": (0, 255), "int8": (-128, 127)}


def preprocess(image_bgr: np.ndarray, spec: ModelSpec) -> Tuple[np.ndarray, Letterbox]:
    """uint8 BGR (h, w, 3) frame -> (input tensor (1, 3, H, W) or (1, H, W, 3), the frame's `Letterbox`).

    The tensor has spec.input_dtype: float32 = pixel * spec.pixel_scale; uint8/int8 = that value quantized with
    spec.input_quant (a uint8 input without quantization parameters takes raw pixels). The value of every pixel
    comes from a 256-entry table built once per spec (`pixel_table`), so a frame costs one letterbox, one
    channel swap (NCHW: the split into channel planes, in the model's channel order) and one table lookup.
    """
    image = _check_frame(image_bgr)
    if spec.input_layout not in ("NCHW", "NHWC"):
        raise EdgedetError(f"model spec has unknown input_layout {spec.input_layout!r}; expected NCHW or NHWC")
    table = pixel_table(spec)
    box = Letterbox.fit(image.shape[:2], spec.input_size_hw, pad_value=spec.pad_value)
    padded = box.apply(image)
    if spec.input_layout == "NCHW":
        planes = channel_planes(padded, rgb=spec.channel_order == "RGB")
        tensor = planes if table is None else cv2.LUT(planes.reshape(-1, planes.shape[2]), table).reshape(planes.shape)
        return tensor[None], box
    if spec.channel_order == "RGB":
        padded = cv2.cvtColor(padded, cv2.COLOR_BGR2RGB)
    tensor = padded if table is None else cv2.LUT(padded, table)
    return np.ascontiguousarray(tensor)[None], box


def channel_planes(image_bgr: np.ndarray, rgb: bool) -> np.ndarray:
    """uint8 (h, w, 3) BGR -> uint8 (3, h, w) contiguous planes, in RGB order if `rgb` (one cv2.split into them:
    no strided transpose, no separate channel swap)."""
    planes = np.empty((3, *image_bgr.shape[:2]), np.uint8)
    cv2.split(image_bgr, [planes[2], planes[1], planes[0]] if rgb else [planes[0], planes[1], planes[2]])
    return planes


def pixel_table(spec: ModelSpec) -> Optional[np.ndarray]:
    """(256,) table of spec.input_dtype: entry p = the network input value of pixel value p, or None when the
    input takes raw uint8 pixels. Cached per (dtype, pixel_scale, quantization)."""
    quant = spec.input_quant
    key = (quant.scale, quant.zero_point, quant.dtype) if quant is not None else None
    return _pixel_table(spec.input_dtype, float(spec.pixel_scale), key)


@lru_cache(maxsize=16)
def _pixel_table(input_dtype: str, pixel_scale: float, quant_key) -> Optional[np.ndarray]:
    quant = QuantParams(*quant_key) if quant_key is not None else None
    table = pixels_to_input(np.arange(256, dtype=np.uint8), input_dtype, pixel_scale, quant)
    if input_dtype == "uint8" and quant is None:
        return None  # raw pixels
    table.flags.writeable = False
    return table


def _check_frame(image: np.ndarray) -> np.ndarray:
    """Accept uint8 (h, w, 3) BGR, or (h, w) / (h, w, 1) grey which is expanded to 3 channels."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise EdgedetError(f"frame must be uint8, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise EdgedetError(f"frame must be a non-empty (h, w, 3) BGR image, got shape {image.shape}")
    return image


def pixels_to_input(pixels: np.ndarray, input_dtype: str, pixel_scale: float,
                    quant: Optional[QuantParams]) -> np.ndarray:
    """uint8 pixels (any shape) -> the direct formula: float32 pixel * pixel_scale, quantized with `quant` for
    uint8/int8 inputs (uint8 without `quant` = raw pixels). `preprocess` applies it through `pixel_table`."""
    if input_dtype == "float32":
        return pixels.astype(np.float32) * np.float32(pixel_scale)
    if input_dtype not in _INT_RANGES:
        raise EdgedetError(f"model spec has unknown input_dtype {input_dtype!r}")
    if quant is None:
        if input_dtype == "uint8":
            return np.ascontiguousarray(pixels)
        raise EdgedetError("int8 model input needs quantization parameters (spec.input_quant)")
    return quantize(pixels.astype(np.float32) * np.float32(pixel_scale), quant)


def quantize(real: np.ndarray, quant: QuantParams) -> np.ndarray:
    """float array -> integer array of quant.dtype: clip(round(real / scale) + zero_point)."""
    low, high = _INT_RANGES[quant.dtype]
    q = np.rint(real / np.float32(quant.scale)) + quant.zero_point
    return np.clip(q, low, high).astype(quant.dtype)


def dequantize(q: np.ndarray, quant: QuantParams) -> np.ndarray:
    """integer array -> float32: scale * (q - zero_point)."""
    return (q.astype(np.float32) - np.float32(quant.zero_point)) * np.float32(quant.scale)


def as_input(x: np.ndarray, details: TensorDetails) -> np.ndarray:
    """Cast to a model input's dtype; a float array fed to an integer input is quantized with its parameters."""
    want = np.dtype(details.dtype)
    if x.dtype == want:
        return np.ascontiguousarray(x)
    if np.issubdtype(want, np.integer) and np.issubdtype(x.dtype, np.floating):
        if details.quant is None:
            raise EdgedetError(f"model input {details.file_name} is {want} without quantization parameters")
        return quantize(x, replace(details.quant, dtype=want.name))
    return np.ascontiguousarray(x.astype(want))
