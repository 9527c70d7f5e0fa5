"""The output roles a model to export must have (the checkpoint is loaded by edgedet)."""
from __future__ import annotations

from typing import Sequence

from edgedet.device import layouts
from edgedet.device.errors import EdgedetError
from edgedet.device.spec import ModelSpec


def image_graph(model):
    """The part of a model that runs on the image: the whole model, or a two-stage model's `stage1` (its
    per-region `heads` are exported on their own, export/two_stage.py)."""
    return getattr(model, "stage1", model)


def output_roles(model, spec: ModelSpec) -> Sequence[str]:
    """The image graph's output names, in forward order; they must be the spec's roles."""
    names = tuple(image_graph(model).output_names)
    expected = tuple(layouts.by_name(spec.layout).output_shapes(spec, "NCHW") or ())
    if names != expected:
        raise EdgedetError(f"checkpoint outputs {names} do not match its spec's roles {expected}")
    return names
