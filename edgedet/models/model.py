"""The edgedet model family: a conv-BN-ReLU6 backbone, an FPN neck over strides 8/16/32 and three heads.

Heads (see ARCHITECTURE.md, "Models exported by this project", and device/spec.py):
- detection, per FPN level a shared 3x3 conv then one 1x1 conv per part, each its own output so that int8 exports
  give box offsets, logits and mask coefficients separate scales:
    "<level>_box"   (B, K*4, H/s, W/s)      per anchor (tx, ty, tw, th)
    "<level>_score" (B, K*(1+C), H/s, W/s)  per anchor (obj, cls_1..cls_C) logits
    "<level>_mask"  (B, K*M, H/s, W/s)      per anchor mask coefficients (only when M > 0);
- semantic (FCN) on the stride-8 level: (B, S, H/8, W/8) logits;
- prototypes for instance masks at stride 4: (B, M, H/4, W/4), linear.

`forward` returns these raw tensors as a tuple in `model.output_names` order; nothing is decoded here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from edgedet.device.errors import EdgedetError
from edgedet.device.spec import head_part_channels, head_parts, level_part_name

STRIDES = (8, 16, 32)  # pixel stride of the detection levels p3, p4, p5
LEVEL_OUTPUTS = ("p3", "p4", "p5")  # detection level names, finest first: outputs are "<level>_<part>"
DEFAULT_ANCHORS = [  # (w, h) in input pixels per level; replaced by k-means anchors before training
    [(10.0, 13.0), (16.0, 30.0), (33.0, 23.0)],
    [(30.0, 61.0), (62.0, 45.0), (59.0, 119.0)],
    [(116.0, 90.0), (156.0, 198.0), (373.0, 326.0)],
]

# preset -> (backbone widths for strides 2/4/8/16/32, residual blocks per stage for strides 4..32, neck width, proto width)
PRESETS = {
    "n": ((16, 32, 64, 96, 128), (1, 1, 1, 1), 64, 32),
    "s": ((24, 48, 96, 160, 224), (1, 2, 2, 1), 96, 48),
}


@dataclass
class ModelConfig:
    """Architecture of one edgedet model; saved in every checkpoint and enough to rebuild it."""

    preset: str = "n"  # size preset, a key of PRESETS
    num_classes: int = 5  # C: detected "thing" classes
    num_semantic: int = 0  # S: semantic-segmentation classes (0 = no "seg" head)
    num_mask_coefs: int = 16  # M: mask coefficients per anchor = prototype channels (0 = no "proto" head)
    anchors: List[List[Tuple[float, float]]] = field(default_factory=lambda: [list(a) for a in DEFAULT_ANCHORS])  # per level, K (w, h) in input pixels
    bottom_up: bool = True  # add the PAN bottom-up path after the FPN top-down path
    input_size_hw: Tuple[int, int] = (320, 320)  # training/export input (height, width), divisible by 32

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise EdgedetError(f"unknown model preset {self.preset!r}; expected one of {', '.join(PRESETS)}")
        self.anchors = level_anchors(self.anchors, len(STRIDES), "anchors must give the same number of (w, h) pairs "
                                     f"for each of {len(STRIDES)} levels")
        self.input_size_hw = tuple(int(v) for v in self.input_size_hw)
        check_input_size(self.input_size_hw)

    @property
    def num_anchors(self) -> int:
        """K: anchors per cell per level."""
        return len(self.anchors[0])

    @property
    def head_parts(self) -> Tuple[str, ...]:
        """The outputs of each detection level: ("box", "score"), plus "mask" when M > 0."""
        return head_parts(self.num_mask_coefs)

    def part_channels(self, part: str) -> int:
        """Output channels of one detection-level part: box K*4, score K*(1+C), mask K*M."""
        return head_part_channels(part, self.num_anchors, self.num_classes, self.num_mask_coefs)


def level_anchors(anchors, levels: int, message: str) -> List[List[Tuple[float, float]]]:
    """Anchor (w, h) pairs per level as floats; EdgedetError(message) unless there are `levels` levels, each with
    the same number of pairs."""
    anchors = [[(float(w), float(h)) for w, h in level] for level in anchors]
    if len(anchors) != levels or len({len(level) for level in anchors}) != 1:
        raise EdgedetError(message)
    return anchors


def check_input_size(size_hw) -> None:
    """Raise EdgedetError unless both sides are positive multiples of the largest stride."""
    if len(size_hw) != 2 or any(int(v) <= 0 or int(v) % STRIDES[-1] for v in size_hw):
        raise EdgedetError(f"input size {tuple(size_hw)} must be two positive multiples of {STRIDES[-1]}")


def conv_bn_act(c_in: int, c_out: int, stride: int = 1, kernel: int = 3, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU6; 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


class ResidualBlock(nn.Module):
    """x + (1x1 expand -> 3x3 depthwise -> 1x1 project); channels and resolution unchanged."""

    def __init__(self, channels: int, expand: int = 2):
        super().__init__()
        hidden = channels * expand
        self.body = nn.Sequential(
            conv_bn_act(channels, hidden, kernel=1),
            conv_bn_act(hidden, hidden, groups=hidden),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Backbone(nn.Module):
    """Stem (stride 2) and four stages (strides 4, 8, 16, 32), each a strided 3x3 conv plus residual blocks."""

    def __init__(self, widths: Tuple[int, ...], depths: Tuple[int, ...]):
        super().__init__()
        self.stem = conv_bn_act(3, widths[0], stride=2)
        self.stages = nn.ModuleList(
            nn.Sequential(conv_bn_act(c_in, c_out, stride=2), *[ResidualBlock(c_out) for _ in range(depth)])
            for c_in, c_out, depth in zip(widths[:-1], widths[1:], depths)
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(B, 3, H, W) -> features at strides 4, 8, 16, 32."""
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class Neck(nn.Module):
    """FPN top-down path (lateral 1x1 + nearest 2x upsample + 3x3 smooth), optionally a PAN bottom-up path."""

    def __init__(self, in_widths: Tuple[int, int, int], width: int, bottom_up: bool):
        super().__init__()
        self.lateral = nn.ModuleList(conv_bn_act(c, width, kernel=1) for c in in_widths)
        self.smooth = nn.ModuleList(conv_bn_act(width, width) for _ in in_widths)
        self.bottom_up = bottom_up
        if bottom_up:
            self.down = nn.ModuleList(conv_bn_act(width, width, stride=2) for _ in in_widths[1:])
            self.merge = nn.ModuleList(conv_bn_act(width, width) for _ in in_widths[1:])

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> List[torch.Tensor]:
        """Backbone features at strides 8/16/32 -> [P3, P4, P5], each with `width` channels."""
        lat3, lat4, lat5 = (layer(c) for layer, c in zip(self.lateral, (c3, c4, c5)))
        p5 = self.smooth[2](lat5)
        p4 = self.smooth[1](lat4 + F.interpolate(lat5, scale_factor=2.0, mode="nearest"))
        p3 = self.smooth[0](lat3 + F.interpolate(p4, scale_factor=2.0, mode="nearest"))
        if not self.bottom_up:
            return [p3, p4, p5]
        n4 = self.merge[0](p4 + self.down[0](p3))
        n5 = self.merge[1](p5 + self.down[1](n4))
        return [p3, n4, n5]


class EdgeDet(nn.Module):
    """Backbone + FPN neck + detection / semantic / prototype heads. Input (B, 3, H, W) RGB float in 0..1."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        widths, depths, neck_width, proto_width = PRESETS[config.preset]
        self.config = config
        self.backbone = Backbone(widths, depths)
        self.neck = Neck(widths[2:], neck_width, config.bottom_up)
        self.det_convs = nn.ModuleList(conv_bn_act(neck_width, neck_width) for _ in STRIDES)
        self.det_heads = nn.ModuleList(
            nn.ModuleDict({part: nn.Conv2d(neck_width, config.part_channels(part), 1) for part in config.head_parts})
            for _ in STRIDES
        )
        self.seg_head = self._semantic_head(neck_width) if config.num_semantic else None
        self.proto_head = self._proto_head(widths[1], neck_width, proto_width) if config.num_mask_coefs else None
        self._init_detection_biases()

    @property
    def output_names(self) -> Tuple[str, ...]:
        """Names of the tensors `forward` returns, in order."""
        names = [level_part_name(level, part) for level in LEVEL_OUTPUTS for part in self.config.head_parts]
        if self.seg_head is not None:
            names.append("seg")
        if self.proto_head is not None:
            names.append("proto")
        return tuple(names)

    def _semantic_head(self, neck_width: int) -> nn.Sequential:
        hidden = neck_width // 2
        return nn.Sequential(conv_bn_act(neck_width, hidden), nn.Conv2d(hidden, self.config.num_semantic, 1))

    def _proto_head(self, c2_width: int, neck_width: int, proto_width: int) -> nn.ModuleDict:
        return nn.ModuleDict({
            "lateral": conv_bn_act(c2_width, proto_width, kernel=1),
            "reduce": conv_bn_act(neck_width, proto_width, kernel=1),
            "body": conv_bn_act(proto_width, proto_width),
            "out": nn.Conv2d(proto_width, self.config.num_mask_coefs, 1),
        })

    def _init_detection_biases(self) -> None:
        """Objectness starts near a few objects per 640x640 image, classes near 1/C (the YOLOv5 prior)."""
        config = self.config
        for heads, stride in zip(self.det_heads, STRIDES):
            bias = heads["score"].bias.detach().view(config.num_anchors, 1 + config.num_classes)
            bias[:, 0] = math.log(8.0 / (640.0 / stride) ** 2)
            bias[:, 1:] = math.log(0.6 / max(config.num_classes - 0.99, 0.01))
            heads["score"].bias.data.copy_(bias.view(-1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> raw tensors in `output_names` order (p3_box, p3_score[, p3_mask], p4_..., p5_...[, seg]
        [, proto]); see the module docstring for shapes."""
        c2, c3, c4, c5 = self.backbone(x)
        levels = self.neck(c3, c4, c5)
        outputs = []
        for conv, heads, p in zip(self.det_convs, self.det_heads, levels):
            features = conv(p)
            outputs += [heads[part](features) for part in self.config.head_parts]
        if self.seg_head is not None:
            outputs.append(self.seg_head(levels[0]))
        if self.proto_head is not None:
            outputs.append(self._prototypes(c2, levels[0]))
        return tuple(outputs)

    def _prototypes(self, c2: torch.Tensor, p3: torch.Tensor) -> torch.Tensor:
        """Stride-4 backbone feature + upsampled P3 -> (B, M, H/4, W/4) linear prototypes."""
        head = self.proto_head
        up = F.interpolate(head["reduce"](p3), scale_factor=2.0, mode="nearest")
        return head["out"](head["body"](head["lateral"](c2) + up))


@dataclass
class HeadOutputs:
    """The raw outputs of `EdgeDet.forward`, grouped by head."""

    levels: List[Dict[str, torch.Tensor]]  # per level (finest first) {"box", "score"[, "mask"]: (B, K*D, H/s, W/s)}
    seg: Optional[torch.Tensor]  # (B, S, H/8, W/8) semantic logits, or None
    proto: Optional[torch.Tensor]  # (B, M, H/4, W/4) prototypes, or None


def group_outputs(outputs: Sequence[torch.Tensor], config: ModelConfig) -> HeadOutputs:
    """The flat tuple of `EdgeDet.forward` (in `output_names` order) -> `HeadOutputs`."""
    parts = config.head_parts
    flat = list(outputs)
    levels = [dict(zip(parts, flat[i * len(parts):(i + 1) * len(parts)])) for i in range(len(STRIDES))]
    extra = flat[len(STRIDES) * len(parts):]
    seg = extra.pop(0) if config.num_semantic else None
    proto = extra.pop(0) if config.num_mask_coefs else None
    return HeadOutputs(levels, seg, proto)


def build_model(config: ModelConfig) -> EdgeDet:
    """A freshly initialised model for `config` (train mode)."""
    return EdgeDet(config)
