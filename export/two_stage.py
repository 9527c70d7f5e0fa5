"""The second stage of a two-stage model (edgedet/models/rcnn.py): its per-region heads exported in the format and
precision of each stage-1 artifact and put inside it (device/two_stage.py: where they travel, and how they run).

The heads take a fixed batch of R = spec.second_stage["post_nms_top_k"] RoI feature maps (R, F, P, P) (NHWC in
TFLite). int8 heads are calibrated on the features the device would give them: the calibration images through the
fp32 stage 1, the inference proposals and RoI Align, grouped into batches of R.
"""
from __future__ import annotations

import base64
import tempfile
import zipfile
from pathlib import Path
from typing import List

import numpy as np

from edgedet.calibration.onnx_quant import Int8Scheme, compute_ranges, quantize_qdq
from edgedet.calibration.readers import ArrayCalibrationReader
from edgedet.device.spec import ModelSpec
from edgedet.device.two_stage import HEAD_OUTPUTS, HEADS_INPUT, HEADS_KEY, HEADS_MEMBER, padded_rows
from .artifacts import atomic_outputs
from .onnx_export import OPSET

MAX_CALIBRATION_BATCHES = 8  # batches of R RoIs the int8 heads are calibrated on


def calibration_features(model, spec: ModelSpec, images_nchw) -> List[np.ndarray]:
    """float32 (R, F, P, P) batches of RoI features of the calibration inputs (float (1, 3, H, W) arrays) through
    the fp32 model's stage 1 and inference proposals (at most MAX_CALIBRATION_BATCHES of them)."""
    import torch

    rows = [model.proposal_features(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
            for x in images_nchw]
    pooled, batch = np.concatenate(rows), int(spec.second_stage["post_nms_top_k"])
    count = min(MAX_CALIBRATION_BATCHES, max(1, len(pooled) // batch))
    return [padded_rows(pooled[i * batch:(i + 1) * batch], batch) for i in range(count)]


def heads_sample(spec: ModelSpec):
    """A random (R, F, P, P) input for tracing the heads."""
    import torch

    settings = spec.second_stage
    return torch.rand(int(settings["post_nms_top_k"]), int(settings["feature_channels"]),
                      int(settings["pool_size"]), int(settings["pool_size"]))


def export_heads_onnx(model, spec: ModelSpec, path: Path) -> Path:
    """The fp32 heads as one checked ONNX file at `path` (input HEADS_INPUT, outputs HEAD_OUTPUTS)."""
    import onnx
    import torch

    with atomic_outputs(path) as (temp,), torch.no_grad():
        torch.onnx.export(model.heads.eval(), (heads_sample(spec),), str(temp), input_names=[HEADS_INPUT],
                          output_names=list(HEAD_OUTPUTS), opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
        onnx.checker.check_model(onnx.load(str(temp)), full_check=True)
    return path


def export_heads_onnx_int8(fp32_path: Path, path: Path, batches: List[np.ndarray], method: str,
                           scheme: Int8Scheme) -> Path:
    """int8 QDQ heads from the fp32 heads file, calibrated on `batches` of RoI features."""
    with tempfile.TemporaryDirectory(prefix="edgedet-heads-") as tmp, atomic_outputs(path) as (temp,):
        cache = Path(tmp) / "ranges.json"
        compute_ranges(fp32_path, ArrayCalibrationReader(lambda: batches, HEADS_INPUT, len(batches)), method, cache)
        quantize_qdq(fp32_path, temp, cache, method, scheme)
    return path


def embed_heads(model_path: Path, heads: Path) -> None:
    """Put the heads file `heads` inside the stage-1 artifact `model_path` (rewritten atomically): ONNX metadata
    HEADS_KEY (base64), or the zip member HEADS_MEMBER appended to a .tflite."""
    import onnx

    with atomic_outputs(model_path) as (temp,):
        if model_path.suffix.lower() == ".tflite":
            temp.write_bytes(model_path.read_bytes())
            with zipfile.ZipFile(temp, "a", compression=zipfile.ZIP_STORED) as archive:
                archive.write(heads, HEADS_MEMBER)
        else:
            model = onnx.load(str(model_path))
            entry = model.metadata_props.add()
            entry.key, entry.value = HEADS_KEY, base64.b64encode(heads.read_bytes()).decode("ascii")
            onnx.save_model(model, str(temp), save_as_external_data=False)


def channels_last_heads(model):
    """The heads taking (R, P, P, F) and returning (cls, box, mask (R, m, m, K)): TFLite's layout."""
    import torch

    class ChannelsLast(torch.nn.Module):
        def __init__(self, heads):
            super().__init__()
            self.heads = heads

        def forward(self, roi_features):
            cls, box, mask = self.heads(roi_features.permute(0, 3, 1, 2))
            return {"cls": cls, "box": box, "mask": mask.permute(0, 2, 3, 1)}

    return ChannelsLast(model.heads).eval()


def export_heads_tflite(model, spec: ModelSpec, path: Path, precision: str, batches: List[np.ndarray],
                        method: str) -> Path:
    """The heads as a TFLite file in `precision` ("fp32", "fp16" or "int8", full integer, PT2E on `batches`)."""
    from .tflite_export import convert_float_module, convert_int8_module, weights_to_fp16

    wrapped = channels_last_heads(model)
    with atomic_outputs(path) as (temp,):
        if precision == "int8":
            convert_int8_module(wrapped, [b.transpose(0, 2, 3, 1) for b in batches], method, temp)
        else:
            convert_float_module(wrapped, heads_sample(spec).permute(0, 2, 3, 1), temp)
            if precision == "fp16":
                weights_to_fp16(temp)
    return path
