"""Model layouts: how a model's raw outputs are laid out, recognised and decoded. One module per layout.

Each layout module (see `Layout`) holds its NAME, how it is recognised from the output shapes (`recognises`),
which ModelSpec fields its outputs' shapes give a file without metadata (`spec_fields`), which output roles it
expects (`output_shapes`), its decode to `Candidates` and its mask prototypes. `LAYOUTS` is the table: a new
layout is a new module plus one entry there. Nothing outside this package compares layout names.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Protocol, Sequence

import numpy as np

from ..candidates import Candidates
from ..errors import EdgedetError
from ..spec import ModelSpec
from . import edgedet, grid, rcnn, ssd, yolov5, yolov5_split, yolov8, yolov8_seg, yolov8_split
from .shapes import Shape, as_shapes, describe


class Layout(Protocol):
    """What every layout module provides."""

    NAME: str  # the spec's `layout` value and the --layout flag's
    MIN_SPEC_VERSION: int  # the oldest ModelSpec format version this layout decodes
    FROM_SHAPES: bool  # a spec can be built from the output shapes plus --names/--imgsz (no metadata needed)

    def recognises(self, shapes: Mapping[str, Shape], num_classes: int) -> bool:
        """Whether outputs of these shapes (name -> dims, 0 = dynamic) are this layout's; num_classes 0 = unknown."""

    def spec_fields(self, shapes: Mapping[str, Shape], num_classes: int) -> dict:
        """ModelSpec fields (task, level_outputs, proto_output, num_mask_coefs) the shapes give; raises EdgedetError
        when this layout needs metadata the shapes cannot give."""

    def output_shapes(self, spec: ModelSpec, tensor_layout: str) -> Optional[Dict[str, Shape]]:
        """Role name -> expected shape of each output in "NCHW" or "NHWC", or None: outputs keep their file names."""

    def has_masks(self, spec: ModelSpec) -> bool:
        """Whether the model predicts instance masks (mask coefficients and prototypes)."""

    def decode(self, outputs: Mapping[str, np.ndarray], spec: ModelSpec,
               min_score: Optional[float] = None) -> Candidates:
        """Raw outputs of one image (float or integer) -> Candidates in input pixels; with min_score, candidates
        scoring <= min_score may be left out (the caller still applies its threshold)."""

    def prototypes(self, outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> Optional[np.ndarray]:
        """Mask prototypes float32 (M, h, w), or None for a model without masks."""


# The table, in the order recognition asks (each shape set is claimed by at most one layout; a test holds that).
LAYOUTS: Sequence[Layout] = (edgedet, ssd, rcnn, yolov8_split, yolov5_split, yolov8_seg, yolov5, yolov8, grid)
NAMES = tuple(layout.NAME for layout in LAYOUTS)
FROM_SHAPES = tuple(layout.NAME for layout in LAYOUTS if layout.FROM_SHAPES)  # usable without metadata


def by_name(name: str, what: str = "layout") -> Layout:
    """The layout called `name`; `what` names the flag or field in the error ("--layout")."""
    for layout in LAYOUTS:
        if layout.NAME == name:
            return layout
    raise EdgedetError(f"unknown {what} {name!r}; expected one of {', '.join(NAMES)}")


def recognise(shapes: Mapping[str, Shape], num_classes: int = 0) -> Layout:
    """The one layout whose outputs have these shapes (name -> dims); num_classes 0 = unknown."""
    shapes = as_shapes(shapes)
    claims = [layout for layout in LAYOUTS if layout.recognises(shapes, num_classes)]
    if len(claims) != 1:
        raise EdgedetError(f"cannot recognise a model layout from output shapes {describe(shapes)}"
                           + (f" (both {claims[0].NAME} and {claims[1].NAME} fit)" if claims else "")
                           + "; pass the layout explicitly")
    return claims[0]


def select(outputs: Mapping[str, np.ndarray], spec: ModelSpec, name: Optional[str] = None) -> Layout:
    """The layout to decode `outputs` with: `name` if given, else the spec's. Every spec made without a layout
    says edgedet (ModelSpec's default), so for an edgedet spec whose outputs are not the head's, the outputs'
    shapes decide."""
    if name is not None:
        return by_name(name)
    layout = by_name(spec.layout)
    shapes = as_shapes({key: np.shape(array) for key, array in outputs.items()})
    if layout is not edgedet or (spec.anchors and edgedet.recognises(shapes, spec.num_classes)):
        return layout
    return recognise(shapes, spec.num_classes)
