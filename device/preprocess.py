"""Preprocess: BGR frame -> the network's input tensor (letterbox, channel order, layout, dtype, quantization)."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from device.errors import EdgedetError
from device.letterbox import Letterbox
from device.spec import ModelSpec, QuantParams

_INT_RANGES = {"uint8": (0, 255), "int8": (-128, 127)}


def preprocess(image_bgr: np.ndarray, spec: ModelSpec) -> Tuple[np.ndarray, Letterbox]:
    """uint8 BGR (h, w, 3) frame -> (input tensor (1, 3, H, W) or (1, H, W, 3), the frame's `Letterbox`).

    The tensor has spec.input_dtype: float32 = pixel * spec.pixel_scale; uint8/int8 = that value quantized with
    spec.input_quant (a uint8 input without quantization parameters takes raw pixels).
    """
    image = _check_frame(image_bgr)
    box = Letterbox.fit(image.shape[:2], spec.input_size_hw, pad_value=spec.pad_value)
    padded = box.apply(image)
    if spec.channel_order == "RGB":
        padded = padded[..., ::-1]
    tensor = _to_dtype(padded, spec)
    if spec.input_layout == "NCHW":
        tensor = tensor.transpose(2, 0, 1)
    elif spec.input_layout != "NHWC":
        raise EdgedetError(f"model spec has unknown input_layout {spec.input_layout!r}; expected NCHW or NHWC")
    return np.ascontiguousarray(tensor[None]), box


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


def _to_dtype(image_hwc: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """uint8 (H, W, 3) pixels -> float32 scaled, or quantized uint8/int8."""
    if spec.input_dtype == "float32":
        return image_hwc.astype(np.float32) * np.float32(spec.pixel_scale)
    if spec.input_dtype not in _INT_RANGES:
        raise EdgedetError(f"model spec has unknown input_dtype {spec.input_dtype!r}")
    if spec.input_quant is None:
        if spec.input_dtype == "uint8":
            return np.ascontiguousarray(image_hwc)
        raise EdgedetError("int8 model input needs quantization parameters (spec.input_quant)")
    return quantize(image_hwc.astype(np.float32) * np.float32(spec.pixel_scale), spec.input_quant)


def quantize(real: np.ndarray, quant: QuantParams) -> np.ndarray:
    """float array -> integer array of quant.dtype: clip(round(real / scale) + zero_point)."""
    low, high = _INT_RANGES[quant.dtype]
    q = np.rint(real / np.float32(quant.scale)) + quant.zero_point
    return np.clip(q, low, high).astype(quant.dtype)


def dequantize(q: np.ndarray, quant: QuantParams) -> np.ndarray:
    """integer array -> float32: scale * (q - zero_point)."""
    return (q.astype(np.float32) - np.float32(quant.zero_point)) * np.float32(quant.scale)
