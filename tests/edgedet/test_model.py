"""edgedet.models: output shapes for several sizes and presets, the torch decode twin against device/layouts/edgedet.py,
checkpoint round trip, and the shipped checkpoint."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgedet.device.errors import EdgedetError
from edgedet.models import SHIPPED_CHECKPOINT, build_model, load_checkpoint
from edgedet.models.checkpoint import checkpoint_dict, save_checkpoint
from edgedet.models.decode import decode_head
from edgedet.models.model import STRIDES, ModelConfig

torch.set_num_threads(1)


@pytest.mark.parametrize("preset,size_hw", [("n", (64, 64)), ("n", (96, 160)), ("s", (64, 128)), ("n", (320, 320))])
def test_output_shapes_follow_input_size(preset, size_hw):
    config = ModelConfig(preset=preset, num_classes=5, num_semantic=9, num_mask_coefs=8, input_size_hw=size_hw)
    model = build_model(config).eval()
    with torch.no_grad():
        outputs = model(torch.zeros(2, 3, *size_hw))
    h, w = size_hw
    per_level = [(3 * 4, "box"), (3 * (1 + 5), "score"), (3 * 8, "mask")]
    expected = [(2, channels, h // s, w // s) for s in STRIDES for channels, _ in per_level]
    expected += [(2, 9, h // 8, w // 8), (2, 8, h // 4, w // 4)]
    assert model.output_names == tuple(f"{level}_{part}" for level in ("p3", "p4", "p5") for _, part in per_level
                                       ) + ("seg", "proto")
    assert [tuple(o.shape) for o in outputs] == expected


def test_heads_are_optional():
    model = build_model(ModelConfig(num_classes=2, num_semantic=0, num_mask_coefs=0, input_size_hw=(64, 64))).eval()
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 64, 64))
    assert model.output_names == ("p3_box", "p3_score", "p4_box", "p4_score", "p5_box", "p5_score")
    assert [o.shape[1] for o in outputs] == [3 * 4, 3 * 3] * 3


def test_forward_without_bottom_up_path():
    model = build_model(ModelConfig(num_classes=1, bottom_up=False, input_size_hw=(64, 64))).eval()
    with torch.no_grad():
        outputs = dict(zip(model.output_names, model(torch.zeros(1, 3, 64, 64))))
    assert outputs["p5_box"].shape[-2:] == (2, 2)


@pytest.mark.parametrize("size_hw", [(100, 64), (64, 0), (48, 48)])
def test_input_size_must_be_multiple_of_32(size_hw):
    with pytest.raises(EdgedetError, match="multiples of 32"):
        ModelConfig(input_size_hw=size_hw)


def test_unknown_preset_is_an_edgedet_error():
    with pytest.raises(EdgedetError, match="preset"):
        ModelConfig(preset="xxl")


def _random_levels(num_classes, num_coefs, size_hw, seed=0):
    """Per level {"box", "score"[, "mask"]: (2, K*D, H/s, W/s)} random raw outputs, K = 3."""
    generator = torch.Generator().manual_seed(seed)
    depths = {"box": 4, "score": 1 + num_classes, **({"mask": num_coefs} if num_coefs else {})}
    return [{part: torch.randn(2, 3 * depth, size_hw[0] // s, size_hw[1] // s, generator=generator) * 4
             for part, depth in depths.items()} for s in STRIDES]


@pytest.mark.parametrize("num_classes,num_coefs,size_hw", [(5, 16, (64, 96)), (1, 0, (32, 32)), (3, 4, (128, 64))])
def test_torch_decode_matches_device_decode(num_classes, num_coefs, size_hw):
    from tests.device.test_decode import decode_edgedet_level  # the plain NumPy reference decode

    anchors = [[(10.0, 13.0), (16.0, 30.0), (33.0, 23.0)], [(30.0, 61.0), (62.0, 45.0), (59.0, 119.0)],
               [(116.0, 90.0), (156.0, 198.0), (373.0, 326.0)]]
    levels = _random_levels(num_classes, num_coefs, size_hw)
    decoded = decode_head(levels, anchors, STRIDES, num_classes)
    for image in range(2):
        parts = [decode_edgedet_level(level["box"][image].numpy(), level["score"][image].numpy(),
                                      level["mask"][image].numpy() if num_coefs else None, s, np.array(a))
                 for level, s, a in zip(levels, STRIDES, anchors)]
        xyxy, objectness, class_probs, coefs = (np.concatenate(p) for p in zip(*parts))
        np.testing.assert_allclose(decoded.xyxy[image].numpy(), xyxy, rtol=1e-5, atol=1e-5 * max(size_hw))
        np.testing.assert_allclose(decoded.objectness[image].numpy(), objectness, atol=1e-5)
        np.testing.assert_allclose(decoded.class_probs[image].numpy(), class_probs, atol=1e-5)
        np.testing.assert_allclose(decoded.mask_coefs[image].numpy(), coefs, atol=1e-5)


def test_decode_order_is_level_anchor_row_column():
    # one hot objectness at level p4, anchor 2, row 1, column 3 of a 64x128 input
    levels = [{"box": torch.full((1, 3 * 4, 64 // s, 128 // s), -20.0),
               "score": torch.full((1, 3 * 2, 64 // s, 128 // s), -20.0)} for s in STRIDES]
    levels[1]["score"][0, 2 * 2, 1, 3] = 20.0
    decoded = decode_head(levels, [[(8.0, 8.0)] * 3] * 3, STRIDES, num_classes=1)
    index = int(decoded.objectness[0].argmax())
    p3_count = 3 * (64 // 8) * (128 // 8)
    assert index == p3_count + 2 * (4 * 8) + 1 * 8 + 3
    cx = (decoded.xyxy[0, index, 0] + decoded.xyxy[0, index, 2]) / 2
    assert float(cx) == pytest.approx((3 + 2 * 1 / (1 + np.exp(20)) - 0.5) * 16, abs=1e-4)


def test_checkpoint_round_trip(tmp_path):
    config = ModelConfig(num_classes=2, num_semantic=3, num_mask_coefs=4, input_size_hw=(64, 96),
                         anchors=[[(4.0, 5.0)] * 2, [(9.0, 9.0)] * 2, [(20.0, 30.0)] * 2])
    model = build_model(config).eval()
    path = save_checkpoint(checkpoint_dict(model, ["a", "b"], ["x", "y", "z"], {"epochs": 3}, epoch=3), tmp_path / "m.pt")
    loaded, spec = load_checkpoint(path)
    assert not loaded.training
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for before, after in zip(model(x), loaded(x)):
            torch.testing.assert_close(before, after)
    assert spec.names == ["a", "b"] and spec.semantic_names == ["x", "y", "z"]
    assert spec.input_size_hw == (64, 96) and spec.strides == STRIDES and spec.num_mask_coefs == 4
    assert spec.anchors == [[(4.0, 5.0)] * 2, [(9.0, 9.0)] * 2, [(20.0, 30.0)] * 2]
    assert (spec.seg_output, spec.proto_output, spec.task) == ("seg", "proto", "panoptic")
    raw = torch.load(path, weights_only=True)
    assert raw["config"]["train"] == {"epochs": 3} and raw["epoch"] == 3


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_bad_checkpoint_is_an_edgedet_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EdgedetError, match="bad.pt"):
        load_checkpoint(path)


def test_foreign_torch_file_is_rejected(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(EdgedetError, match="not an edgedet checkpoint"):
        load_checkpoint(path)


def test_checkpoint_of_another_format_version_is_rejected(tmp_path):
    model = build_model(ModelConfig(num_classes=1, input_size_hw=(64, 64)))
    checkpoint = checkpoint_dict(model, ["a"], [])
    checkpoint["version"] = 1
    path = save_checkpoint(checkpoint, tmp_path / "old.pt")
    with pytest.raises(EdgedetError, match="old.pt has format version 1.*retrain"):
        load_checkpoint(path)


def test_importing_models_package_loads_no_torch():
    code = "import edgedet.models as m, sys; m.SHIPPED_CHECKPOINT; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_shipped_checkpoint_loads_with_its_spec():
    model, spec = load_checkpoint(SHIPPED_CHECKPOINT)
    assert spec.input_size_hw == (320, 320) and spec.layout == "edgedet"
    assert spec.names == ["circle", "square", "triangle", "star", "hexagon"]
    assert spec.seg_output == "seg" and spec.proto_output == "proto"
    assert SHIPPED_CHECKPOINT.stat().st_size < 8 * 1024 * 1024
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 320, 320))
    level_sizes = [(40, 40)] * 3 + [(20, 20)] * 3 + [(10, 10)] * 3  # box, score, mask of p3, p4, p5
    assert [tuple(o.shape[-2:]) for o in outputs] == level_sizes + [(40, 40), (80, 80)]
