"""`ModelSpec`: everything the runtime needs to pre- and post-process a model, read from the model file.

Where it comes from:
- edgedet ONNX files: metadata_props key "edgedet_spec" holds `ModelSpec.to_json()`.
- edgedet TFLite files: a sidecar `<model>.json` beside the .tflite holds the same JSON.
- other exporters (Ultralytics): their metadata (names, imgsz, stride, task) plus the output shapes;
  `device.decode` recognises the layout from the shapes.

Layouts (`layout` field):
- "edgedet":    this project's raw multi-scale anchor head. One output per FPN level, named by `level_outputs`,
                NCHW (1, K*(5+C+M), H/s, W/s), per anchor the channels (obj, tx, ty, tw, th, cls_1..cls_C,
                mcoef_1..mcoef_M), all raw logits / raw regressions. Optional "seg" output (1, S, H/8, W/8)
                semantic logits and "proto" output (1, M, H/4, W/4) mask prototypes.
- "grid":       the lecture's single-scale YOLO grid (S, S, A*(5+C)) or (S, S, A, 5+C), per anchor
                (p_c, b_x, b_y, b_h, b_w, c_1..c_C).
- "yolov5":     (1, N, 5+C): cx, cy, w, h (pixels), objectness, class probabilities.
- "yolov8":     (1, 4+C, N) or (1, N, 4+C): cx, cy, w, h, class scores (no objectness).
- "yolov8-seg": (1, 4+C+32, N) plus prototypes (1, 32, h, w) or (1, h, w, 32).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List, Optional, Tuple

SPEC_VERSION = 1
LAYOUTS = ("edgedet", "grid", "yolov5", "yolov8", "yolov8-seg")


@dataclass
class QuantParams:
    """Affine quantization of one tensor: real = scale * (q - zero_point)."""

    scale: float  # step between adjacent quantized values
    zero_point: int  # quantized value that represents real 0
    dtype: str  # "int8" or "uint8"


@dataclass
class ModelSpec:
    """How to feed a model and how to read its outputs. Saved in every exported model."""

    names: List[str]  # class names of detected "things", index = class id
    input_size_hw: Tuple[int, int]  # network input (height, width) in pixels, divisible by the largest stride
    layout: str = "edgedet"  # one of LAYOUTS: how the raw outputs are decoded
    task: str = "detect"  # "detect", "segment" (instance masks), "semantic" or "panoptic"
    strides: Tuple[int, ...] = (8, 16, 32)  # pixel stride of each FPN level, finest first
    anchors: List[List[Tuple[float, float]]] = field(default_factory=list)  # per level, K (w, h) anchor sizes in input pixels
    num_mask_coefs: int = 0  # M: mask coefficients per anchor (0 = no instance masks)
    semantic_names: List[str] = field(default_factory=list)  # semantic classes of the "seg" output (stuff and things), index = label
    level_outputs: List[str] = field(default_factory=lambda: ["p3", "p4", "p5"])  # output names of the FPN levels, finest first
    seg_output: Optional[str] = None  # output name of the semantic logits, None if absent
    proto_output: Optional[str] = None  # output name of the mask prototypes, None if absent
    input_name: str = "images"  # name of the single input tensor
    input_layout: str = "NCHW"  # "NCHW" (ONNX) or "NHWC" (TFLite)
    output_layout: str = "NCHW"  # layout of the 4-D outputs ("edgedet" levels, seg, proto): "NCHW" or "NHWC"
    input_dtype: str = "float32"  # "float32", "uint8" or "int8"; integer inputs use input_quant
    channel_order: str = "RGB"  # channel order the network was trained on: "RGB" or "BGR"
    pad_value: int = 114  # letterbox border value (0..255)
    pixel_scale: float = 1.0 / 255.0  # float input = pixel * pixel_scale
    input_quant: Optional[QuantParams] = None  # quantization of an integer input tensor
    output_quant: Dict[str, QuantParams] = field(default_factory=dict)  # output name -> quantization of integer outputs
    boxes_normalized: bool = False  # third-party TFLite: boxes in 0..1 of the input size instead of pixels
    precision: str = "fp32"  # "fp32", "fp16" or "int8": for reports
    quantization: str = ""  # int8 exports: how (runtime scheme, e.g. "onnxruntime QDQ S8S8 per-channel", and calibration); "" if float
    source: str = ""  # provenance: checkpoint or exporter this file came from
    version: int = SPEC_VERSION  # spec format version

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; expected one of {', '.join(LAYOUTS)}")
        self.input_size_hw = tuple(int(v) for v in self.input_size_hw)
        self.strides = tuple(int(s) for s in self.strides)
        self.anchors = [[tuple(float(v) for v in a) for a in level] for level in self.anchors]
        if isinstance(self.input_quant, dict):
            self.input_quant = QuantParams(**self.input_quant)
        self.output_quant = {k: QuantParams(**v) if isinstance(v, dict) else v for k, v in self.output_quant.items()}

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def num_anchors(self) -> int:
        """K: anchors per cell per level (0 for anchor-free layouts)."""
        return len(self.anchors[0]) if self.anchors else 0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model spec has unknown fields {unknown}: written by a newer edgedet?")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        return cls.from_dict(json.loads(text))
