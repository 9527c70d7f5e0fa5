"""edgedet's on-device runtime: NumPy and OpenCV only; inference backends are imported when chosen.

Public names load lazily from their modules, so `import device` stays cheap on a Pi.
"""
from importlib import import_module

from device.detections import Detections
from device.errors import EdgedetError
from device.spec import ModelSpec, QuantParams

# public name -> module that defines it
_LAZY = {
    "box_iou": "device.boxes", "cxcywh_to_xyxy": "device.boxes", "xyxy_to_cxcywh": "device.boxes",
    "xyxy_to_xywh": "device.boxes", "xywh_to_xyxy": "device.boxes",
    "Letterbox": "device.letterbox",
    "preprocess": "device.preprocess",
    "nms": "device.nms",
    "postprocess": "device.postprocess", "postprocess_semantic": "device.postprocess",
    "upsample": "device.upsample", "max_unpool": "device.upsample", "conv_transpose2d": "device.upsample",
    "rle_encode": "device.rle", "rle_decode": "device.rle", "mask_iou": "device.rle",
    "load_backend": "device.backends",
    "StageTimer": "device.latency",
    "Detector": "device.pipeline",
}

__all__ = ["Detections", "EdgedetError", "ModelSpec", "QuantParams", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'device' has no attribute {name!r}")
