"""TorchBackend: a checkpoint behind the device Backend interface, equal to the ONNX export through Detector."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def backend(tiny_checkpoint):
    from edgedet.models.loading import torch_backend

    return torch_backend(tiny_checkpoint, threads=1)


def test_details_describe_the_raw_outputs(backend):
    assert backend.input_details[0].shape == (1, 3, 160, 160) and backend.input_details[0].dtype == "float32"
    shapes = {d.name: d.shape for d in backend.output_details}
    level_parts = {"box": 3 * 4, "score": 3 * (1 + 5), "mask": 3 * 8}  # K=3 anchors, C=5 classes, M=8
    expected = {f"{level}_{part}": (1, channels, 160 // stride, 160 // stride)
                for level, stride in (("p3", 8), ("p4", 16), ("p5", 32)) for part, channels in level_parts.items()}
    assert shapes == {**expected, "seg": (1, 9, 20, 20), "proto": (1, 8, 40, 40)}
    assert backend.spec.input_layout == "NCHW" and backend.spec.precision == "fp32"
    assert "torch" in backend.describe()


def test_run_returns_every_role_with_the_declared_shape(backend):
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    outputs = backend.run(x)
    assert {name: value.shape for name, value in outputs.items()} == {d.name: d.shape for d in backend.output_details}
    assert all(value.dtype == np.float32 for value in outputs.values())


def test_imgsz_override_changes_the_input_and_output_shapes(tiny_checkpoint):
    from edgedet.models.loading import torch_backend

    wide = torch_backend(tiny_checkpoint, threads=1, imgsz="128,192")
    outputs = wide.run(np.zeros((1, 3, 128, 192), np.float32))
    assert outputs["p3_score"].shape == (1, 18, 16, 24) and wide.spec.input_size_hw == (128, 192)


def test_detector_runs_a_checkpoint_like_its_onnx_export(backend, exported_models, synth_data):
    import cv2

    from edgedet.device.detections import Detections
    from edgedet.device.pipeline import Detector

    image = cv2.imread(str(sorted((synth_data / "val" / "images").iterdir())[1]))
    torch_detector = Detector(backend, conf=0.001)
    onnx_detector = Detector(exported_models["onnx"], conf=0.001, threads=1)
    prepared = torch_detector.prepare(image)
    np.testing.assert_array_equal(prepared.x, onnx_detector.prepare(image).x)
    from_torch, from_onnx = torch_detector.infer(prepared), onnx_detector.infer(prepared)
    for role, value in from_torch.items():
        assert np.max(np.abs(value - from_onnx[role])) < 1e-4, role
    detections = torch_detector.predict(image)
    assert isinstance(detections, Detections) and detections.masks is not None
    assert detections.masks.shape[1:] == image.shape[:2]
    assert torch_detector.predict_semantic(image).shape == image.shape[:2]
