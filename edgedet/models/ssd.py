"""SSD (Liu et al. 2016, the lecture's single-shot detector): the edgedet backbone's stride 8/16/32 features plus one
extra stride-64 layer, each with its own head, no top-down path; per default box a softmax over background and the
classes, and box offsets from the default box.

Outputs (device/layouts/ssd.py documents them and decodes them), per level "s3".."s6" at strides 8/16/32/64:
    "<level>_loc"   (B, K*4, H/s, W/s)      offsets (dx, dy, dw, dh) per default box, weights ssd.BOX_WEIGHTS
    "<level>_conf"  (B, K*(1+C), H/s, W/s)  logits of (background, class_1..class_C) per default box
Default boxes follow the SSD paper's recipe (scales from `min_scale` to `max_scale`, aspect ratios 1, 2 and 1/2,
plus one box of scale sqrt(s_k * s_k+1) at ratio 1), with the scales spaced geometrically rather than linearly:
the synthetic objects run from 12 to 160 px at 320, and a log spacing gives the fine levels boxes that small.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Tuple

import torch
from torch import nn

from edgedet.device.errors import EdgedetError
from edgedet.device.layouts.ssd import PARTS
from edgedet.device.spec import level_part_name
from .model import PRESETS, Backbone, conv_bn_act, level_anchors

SSD_STRIDES = (8, 16, 32, 64)  # pixel stride of each level, finest first
SSD_LEVELS = ("s3", "s4", "s5", "s6")  # level names: outputs are "<level>_loc" and "<level>_conf"
SSD_PRESETS = {"ssd-n": ("n", 96)}  # preset -> (backbone preset of model.PRESETS, head width)
ASPECT_RATIOS = (1.0, 2.0, 0.5)  # w/h of the default boxes of scale s_k (plus one of scale s'_k at ratio 1)


def default_box_sizes(imgsz: int, min_scale: float = 0.05, max_scale: float = 0.55) -> List[List[Tuple[float, float]]]:
    """Per level K = 4 default boxes (w, h) in input pixels for a square `imgsz` input (module docstring)."""
    levels = len(SSD_STRIDES)
    scales = [min_scale * (max_scale / min_scale) ** (k / (levels - 1)) for k in range(levels + 1)]
    sizes = []
    for k in range(levels):
        level = [(imgsz * scales[k] * math.sqrt(r), imgsz * scales[k] / math.sqrt(r)) for r in ASPECT_RATIOS]
        between = imgsz * math.sqrt(scales[k] * scales[k + 1])
        sizes.append(level + [(between, between)])
    return [[(round(w, 2), round(h, 2)) for w, h in level] for level in sizes]


@dataclass
class SSDConfig:
    """Architecture of one SSD model; saved in every checkpoint and enough to rebuild it."""

    preset: str = "ssd-n"  # size preset, a key of SSD_PRESETS
    num_classes: int = 5  # C: detected classes (the background is extra)
    anchors: List[List[Tuple[float, float]]] = field(default_factory=lambda: default_box_sizes(320))  # per level, K default boxes (w, h) in input pixels
    input_size_hw: Tuple[int, int] = (320, 320)  # training/export input (height, width), multiples of 64

    def __post_init__(self):
        if self.preset not in SSD_PRESETS:
            raise EdgedetError(f"unknown SSD preset {self.preset!r}; expected one of {', '.join(SSD_PRESETS)}")
        self.anchors = level_anchors(self.anchors, len(SSD_STRIDES), "SSD needs the same number of default boxes "
                                     f"on each of {len(SSD_STRIDES)} levels")
        self.input_size_hw = tuple(int(v) for v in self.input_size_hw)
        if any(v <= 0 or v % SSD_STRIDES[-1] for v in self.input_size_hw):
            raise EdgedetError(f"SSD input size {self.input_size_hw} must be two positive multiples of {SSD_STRIDES[-1]}")

    @property
    def num_anchors(self) -> int:
        """K: default boxes per cell per level."""
        return len(self.anchors[0])


class SSD(nn.Module):
    """Backbone (strides 8/16/32) + one extra stride-64 layer, a 3x3 conv and loc/conf convs per level.
    Input (B, 3, H, W) RGB float in 0..1; `forward` returns the raw outputs in `output_names` order."""

    def __init__(self, config: SSDConfig):
        super().__init__()
        backbone_preset, width = SSD_PRESETS[config.preset]
        widths, depths, _, _ = PRESETS[backbone_preset]
        self.config = config
        self.backbone = Backbone(widths, depths)
        self.extra = conv_bn_act(widths[-1], width, stride=2)
        in_widths = (*widths[2:], width)
        k, classes = config.num_anchors, config.num_classes
        self.level_convs = nn.ModuleList(conv_bn_act(c, width) for c in in_widths)
        self.loc_heads = nn.ModuleList(nn.Conv2d(width, k * 4, 1) for _ in in_widths)
        self.conf_heads = nn.ModuleList(nn.Conv2d(width, k * (1 + classes), 1) for _ in in_widths)
        self._init_background_prior()

    @property
    def output_names(self) -> Tuple[str, ...]:
        return tuple(level_part_name(level, part) for level in SSD_LEVELS for part in PARTS)

    def _init_background_prior(self) -> None:
        """Each default box starts at about 1% foreground, so early training is not swamped by the negatives."""
        k, classes = self.config.num_anchors, self.config.num_classes
        for head in self.conf_heads:
            bias = head.bias.detach().view(k, 1 + classes)
            bias.zero_()
            bias[:, 0] = math.log(99.0 * max(classes, 1))
            head.bias.data.copy_(bias.view(-1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> (s3_loc, s3_conf, s4_loc, ..., s6_conf), shapes in the module docstring."""
        _, c3, c4, c5 = self.backbone(x)
        outputs = []
        for feature, conv, loc, conf in zip((c3, c4, c5, self.extra(c5)), self.level_convs, self.loc_heads,
                                            self.conf_heads):
            hidden = conv(feature)
            outputs += [loc(hidden), conf(hidden)]
        return tuple(outputs)


def split_candidates(raw: torch.Tensor, num_anchors: int) -> torch.Tensor:
    """(B, K*D, H, W) -> (B, K*H*W, D) rows in the layout's candidate order (box k, row, column)."""
    b, channels, h, w = raw.shape
    return raw.view(b, num_anchors, channels // num_anchors, h * w).permute(0, 1, 3, 2).reshape(b, -1, channels // num_anchors)


def build_ssd(config: SSDConfig) -> SSD:
    """A freshly initialised SSD for `config` (train mode)."""
    return SSD(config)
