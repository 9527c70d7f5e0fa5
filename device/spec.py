"""`ModelSpec`: everything the runtime needs to pre- and post-process a model, read from the model file.

Where it comes from: device/spec_sources.py builds every ModelSpec, from an edgedet ONNX file's metadata_props
("edgedet_spec" holds `ModelSpec.to_json()`), the sidecar `<model>.json` beside an edgedet .tflite, Ultralytics
metadata plus the output shapes, or command-line flags plus the output shapes.

The `layout` field names a module of device/layouts/, which documents its outputs and decodes them; the
"<level>_<part>" helpers below name the outputs of this project's own head (the "edgedet" layout), which the
models, the exporter and the runtime share.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List, Optional, Tuple

SPEC_VERSION = 2  # 2: the edgedet head's box, score and mask outputs are separate tensors
HEAD_PARTS = ("box", "score", "mask")  # the outputs of one edgedet level, named "<level>_<part>"


def level_part_name(level: str, part: str) -> str:
    """Output name of one part of an edgedet level: ("p3", "box") -> "p3_box"."""
    return f"{level}_{part}"


def head_parts(num_mask_coefs: int) -> Tuple[str, ...]:
    """The parts of each edgedet level: ("box", "score"), plus "mask" with mask coefficients (M > 0)."""
    return HEAD_PARTS if num_mask_coefs else HEAD_PARTS[:2]


def head_part_channels(part: str, num_anchors: int, num_classes: int, num_mask_coefs: int) -> int:
    """Channels of one edgedet level part: box K*4, score K*(1+C), mask K*M."""
    per_anchor = {"box": 4, "score": 1 + num_classes, "mask": num_mask_coefs}[part]
    return num_anchors * per_anchor


@dataclass
class QuantParams:
    """Affine quantization of one tensor: real = scale * (q - zero_point)."""

    scale: float  # step between adjacent quantized values
    zero_point: int  # quantized value that represents real 0
    dtype: str  # "int8" or "uint8"


@dataclass(frozen=True)
class TensorDetails:
    """One input or output tensor of a model file, as its backend reports it."""

    name: str  # role name for outputs ("p3_box", "seg", ...), tensor name for the input
    shape: Tuple[Optional[int], ...]  # static dims; None where the file leaves a dim dynamic
    dtype: str  # numpy dtype name: "float32", "int8", "uint8", ...
    quant: Optional[QuantParams] = None  # affine quantization of integer tensors, None for float
    file_name: str = ""  # the tensor's name inside the model file


@dataclass
class ModelSpec:
    """How to feed a model and how to read its outputs. Saved in every exported model."""

    names: List[str]  # class names of detected "things", index = class id
    input_size_hw: Tuple[int, int]  # network input (height, width) in pixels, divisible by the largest stride
    layout: str = "edgedet"  # name of a device/layouts module: how the raw outputs are decoded
    task: str = "detect"  # "detect", "segment" (instance masks), "semantic" or "panoptic"
    strides: Tuple[int, ...] = (8, 16, 32)  # pixel stride of each FPN level, finest first
    anchors: List[List[Tuple[float, float]]] = field(default_factory=list)  # per level, K (w, h) anchor sizes in input pixels
    num_mask_coefs: int = 0  # M: mask coefficients per anchor (0 = no instance masks)
    reg_max: int = 0  # R: DFL bins per box side of a distribution box head (yolov8-split), 0 = none
    semantic_names: List[str] = field(default_factory=list)  # semantic classes of the "seg" output (stuff and things), index = label
    level_outputs: List[str] = field(default_factory=lambda: ["p3", "p4", "p5"])  # FPN level names, finest first (edgedet: prefixes of "<level>_<part>" outputs; others: output names)
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
    second_stage: Dict[str, object] = field(default_factory=dict)  # two-stage layouts: the settings of the proposals and the per-region heads (device/layouts/rcnn.py); {} for one-stage models
    precision: str = "fp32"  # "fp32", "fp16" or "int8": for reports
    quantization: str = ""  # int8 exports: how (runtime scheme, e.g. "onnxruntime QDQ S8S8 per-channel", and calibration); "" if float
    source: str = ""  # provenance: checkpoint or exporter this file came from
    version: int = SPEC_VERSION  # spec format version

    def __post_init__(self):
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

    @property
    def head_parts(self) -> Tuple[str, ...]:
        """The parts of each edgedet level (see `head_parts`)."""
        return head_parts(self.num_mask_coefs)

    def part_channels(self, part: str) -> int:
        """Channels of one edgedet level part (see `head_part_channels`)."""
        return head_part_channels(part, self.num_anchors, self.num_classes, self.num_mask_coefs)

    def edgedet_output_shapes(self, layout: str = "NCHW") -> Dict[str, Tuple[int, ...]]:
        """Output name -> shape of every output of the edgedet head at `input_size_hw`, in forward order:
        each level's parts (finest level first), then "seg" and "proto" when present. layout: "NCHW" or "NHWC"."""
        h, w = self.input_size_hw

        def shape(channels: int, stride: int) -> Tuple[int, ...]:
            if layout == "NCHW":
                return (1, channels, h // stride, w // stride)
            return (1, h // stride, w // stride, channels)

        shapes = {level_part_name(level, part): shape(self.part_channels(part), stride)
                  for level, stride in zip(self.level_outputs, self.strides) for part in self.head_parts}
        if self.seg_output:
            shapes[self.seg_output] = shape(len(self.semantic_names), 8)
        if self.proto_output:
            shapes[self.proto_output] = shape(self.num_mask_coefs, 4)
        return shapes

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
