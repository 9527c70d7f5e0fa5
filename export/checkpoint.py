"""The output roles a model to export must have (the checkpoint is loaded by edgedet)."""
from __future__ import annotations

from typing import Sequence

from edgedet.device import layouts
from edgedet.device.errors import EdgedetError
from edgedet.device.spec import ModelSpec


def output_roles(model, spec: ModelSpec) -> Sequence[str]:
    """The model's output names, in forward order; they must be the spec's roles."""
    names = tuple(model.output_names)
    expected = tuple(layouts.by_name(spec.layout).output_shapes(spec, "NCHW") or ())
    if names != expected:
        raise EdgedetError(f"checkpoint outputs {names} do not match its spec's roles {expected}")
    return names
