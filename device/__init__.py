"""edgedet's on-device runtime: NumPy and OpenCV only; inference backends are imported when chosen."""
from device.boxes import box_iou, cxcywh_to_xyxy, xywh_to_xyxy, xyxy_to_cxcywh, xyxy_to_xywh
from device.detections import Detections
from device.spec import ModelSpec, QuantParams

__all__ = [
    "Detections", "ModelSpec", "QuantParams",
    "box_iou", "cxcywh_to_xyxy", "xyxy_to_cxcywh", "xyxy_to_xywh", "xywh_to_xyxy",
]
