"""edgedet's on-device runtime (`edgedet.device`): NumPy and OpenCV only; inference backends are imported when chosen.

Public names load lazily from their modules, so `import edgedet.device` stays cheap on a Pi. No public
name is also the name of a submodule (`nms` lives in `suppression`, `preprocess` in `preprocessing`):
importing a submodule binds it on the package, which would replace a function of the same name.
"""
from importlib import import_module

from .detections import Detections
from .errors import EdgedetError
from .spec import ModelSpec, QuantParams

# public name -> module (relative to this package) that defines it
_LAZY = {
    "box_iou": ".boxes", "cxcywh_to_xyxy": ".boxes", "xyxy_to_cxcywh": ".boxes",
    "xyxy_to_xywh": ".boxes", "xywh_to_xyxy": ".boxes",
    "Letterbox": ".letterbox",
    "preprocess": ".preprocessing",
    "nms": ".suppression",
    "postprocess": ".postprocessing", "postprocess_semantic": ".postprocessing",
    "rle_encode": ".rle",
    "load_backend": ".backends",
    "StageTimer": ".latency",
    "Detector": ".pipeline",
    "Tracker": ".tracking", "TrackerConfig": ".tracking",
    "Zone": ".zones", "Line": ".zones", "ZoneCounter": ".zones",
}

__all__ = ["Detections", "EdgedetError", "ModelSpec", "QuantParams", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
