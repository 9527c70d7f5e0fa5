"""A Backend for a loaded PyTorch model, so Detector, eval and bench run a .pt through the device pipeline
(edgedet.models.loading.torch_backend loads the checkpoint).

Same interface as device/backends.py: `.spec`, `.input_details`, `.output_details`, `.run(x) -> {role: array}`,
`.describe()`. The input is the runtime's float32 NCHW tensor; outputs are the raw head tensors, NCHW.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional

import numpy as np

from edgedet.device import layouts
from edgedet.device.backends import TensorDetails, thread_count
from edgedet.device.spec import ModelSpec
from .checkpoint import image_graph, output_roles


class TorchBackend:
    """Runs an edgedet PyTorch model of any family (CPU, no grad, eval mode)."""

    name = "torch"

    def __init__(self, model, spec: ModelSpec, threads: Optional[int] = None):
        import torch

        self.threads = threads or os.cpu_count() or 1  # intra-op threads (torch.set_num_threads is process-wide)
        torch.set_num_threads(self.threads)
        self.model = model.eval()
        self.graph = image_graph(self.model)
        if hasattr(self.model, "heads"):  # a two-stage model: its per-region heads, as the device runs them
            self.heads = TorchRegionHeads(self.model.heads)
        self.spec = _float_nchw(spec)  # device.ModelSpec: float32 NCHW input and outputs
        self._roles = tuple(output_roles(model, self.spec))
        height, width = self.spec.input_size_hw
        self.input_details = [TensorDetails(self.spec.input_name, (1, 3, height, width), "float32")]
        shapes = layouts.by_name(self.spec.layout).output_shapes(self.spec, "NCHW")
        self.output_details = [TensorDetails(role, shapes[role], "float32", file_name=role)
                               for role in self._roles]
        self.version = torch.__version__

    def run(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """x: float32 (1, 3, H, W) RGB 0..1 -> {role name: raw float32 output, NCHW}."""
        import torch

        with torch.no_grad():
            values = self.graph(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return {role: value.numpy() for role, value in zip(self._roles, values)}

    def describe(self) -> str:
        return f"torch {self.version} (CPU), {thread_count(self.threads)}"


class TorchRegionHeads:
    """A two-stage model's PyTorch heads with the call of device.two_stage.RegionHeads: float32 (n, F, P, P) RoI
    features -> {"cls", "box", "mask"} float32 arrays."""

    def __init__(self, heads):
        self.heads = heads.eval()

    def __call__(self, roi_features: np.ndarray) -> Dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            values = self.heads(torch.from_numpy(np.ascontiguousarray(roi_features, dtype=np.float32)))
        return {name: value.numpy() for name, value in zip(self.heads.output_names, values)}


def _float_nchw(spec: ModelSpec) -> ModelSpec:
    return dataclasses.replace(spec, input_layout="NCHW", output_layout="NCHW", input_dtype="float32",
                               input_quant=None, output_quant={}, precision="fp32", quantization="")
