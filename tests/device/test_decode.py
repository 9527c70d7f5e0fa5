"""Decoders against hand-built outputs of every layout and, for the edgedet head, against a torch twin."""
import numpy as np
import pytest
import torch

from device.decode import (Candidates, decode, decode_edgedet, decode_edgedet_level, decode_grid, decode_yolov5,
                           decode_yolov8, dequantize_outputs, infer_layout, select_layout,
                           spec_from_ultralytics_metadata)
from device.errors import EdgedetError
from device.spec import ModelSpec, QuantParams

ANCHORS = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)], [(116, 90), (156, 198), (373, 326)]]


def logit(p):
    return float(np.log(p / (1 - p)))


def edgedet_spec(num_classes=3, num_mask_coefs=0, size=64, **kw):
    return ModelSpec(names=[f"c{i}" for i in range(num_classes)], input_size_hw=(size, size), anchors=ANCHORS,
                     num_mask_coefs=num_mask_coefs, **kw)


def torch_level(raw, stride, anchors, c, m):
    """The brief's formula written independently in torch."""
    t = torch.from_numpy(raw)
    k = len(anchors)
    h, w = t.shape[1:]
    t = t.view(k, 5 + c + m, h, w).permute(0, 2, 3, 1)  # (K, H, W, D)
    s = torch.sigmoid(t[..., :5 + c])
    ii, jj = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    anc = torch.tensor(anchors, dtype=torch.float32).view(k, 1, 1, 2)
    cx = (jj + 2 * s[..., 1] - 0.5) * stride
    cy = (ii + 2 * s[..., 2] - 0.5) * stride
    bw = anc[..., 0] * (2 * s[..., 3]) ** 2
    bh = anc[..., 1] * (2 * s[..., 4]) ** 2
    xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1).reshape(-1, 4)
    return xyxy.numpy(), s[..., 0].reshape(-1).numpy(), s[..., 5:].reshape(-1, c).numpy(), t[..., 5 + c:].reshape(k * h * w, m).numpy()


@pytest.mark.parametrize("c, m, h, w", [(3, 0, 8, 8), (1, 4, 4, 6), (80, 32, 5, 3)])
def test_edgedet_level_equals_torch_formula(c, m, h, w):
    rng = np.random.default_rng(c)
    raw = rng.normal(0, 3, (3 * (5 + c + m), h, w)).astype(np.float32)
    ours = decode_edgedet_level(raw, 16, np.array(ANCHORS[1]), c, m)
    for a, b in zip(ours, torch_level(raw, 16, ANCHORS[1], c, m)):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_edgedet_level_hand_built_cell():
    c = 2
    raw = np.full((3 * (5 + c), 4, 4), -20.0, np.float32)
    d = 5 + c
    k, i, j = 1, 2, 3  # anchor 1 (16x30), row 2, col 3, stride 8
    raw[k * d + 0, i, j] = logit(0.9)
    raw[k * d + 1, i, j] = 0.0    # sigmoid 0.5 -> cx = (3 + 1 - 0.5) * 8 = 28
    raw[k * d + 2, i, j] = logit(0.25)  # cy = (2 + 0.5 - 0.5) * 8 = 16
    raw[k * d + 3, i, j] = 0.0    # (2 * 0.5)^2 = 1 -> w = 16
    raw[k * d + 4, i, j] = logit(0.75)  # (1.5)^2 = 2.25 -> h = 67.5
    raw[k * d + 6, i, j] = logit(0.8)
    xyxy, obj, cls, coefs = decode_edgedet_level(raw, 8, np.array(ANCHORS[0]), c, 0)
    index = k * 16 + i * 4 + j  # order: anchor, row, column
    np.testing.assert_allclose(xyxy[index], [20, 16 - 33.75, 36, 16 + 33.75], atol=1e-4)
    np.testing.assert_allclose([obj[index], cls[index, 1]], [0.9, 0.8], atol=1e-6)
    assert coefs.shape == (48, 0) and obj.argmax() == index


def planted_edgedet_outputs(spec, objects, layout="NCHW", dtype=np.float32):
    """Outputs with every cell near-zero confidence except `objects`: (level, anchor, row, col, class, conf[, tx])."""
    c, m, k = spec.num_classes, spec.num_mask_coefs, spec.num_anchors
    d = 5 + c + m
    outs = {}
    for name, stride in zip(spec.level_outputs, spec.strides):
        hh, ww = spec.input_size_hw[0] // stride, spec.input_size_hw[1] // stride
        outs[name] = np.full((1, k * d, hh, ww), -12.0, dtype)
    for level, a, i, j, cls, conf, *tx in objects:
        raw = outs[spec.level_outputs[level]]
        raw[0, a * d: a * d + 5, i, j] = [12.0, tx[0] if tx else 0, 0, 0, 0]
        raw[0, a * d + 5 + cls, i, j] = logit(conf)
        raw[0, a * d + 5 + c:(a + 1) * d, i, j] = np.arange(m) + 1.0
    if layout == "NHWC":
        outs = {n: np.ascontiguousarray(v.transpose(0, 2, 3, 1)) for n, v in outs.items()}
    return outs


def test_decode_edgedet_candidate_order_and_scores():
    spec = edgedet_spec(num_mask_coefs=2)
    outs = planted_edgedet_outputs(spec, [(0, 2, 1, 3, 1, 0.7), (2, 0, 1, 0, 2, 0.6)])
    cands = decode_edgedet(outs, spec)
    assert len(cands) == 3 * (64 + 16 + 4) and cands.mask_coefs.shape == (len(cands), 2)
    first = 2 * 64 + 1 * 8 + 3
    second = 3 * 80 + 0 * 4 + 1 * 2 + 0
    top = np.argsort(-cands.scores)[:2]
    assert top.tolist() == [first, second]
    np.testing.assert_allclose(cands.scores[top], [0.7, 0.6], atol=1e-4)
    assert cands.class_ids[top].tolist() == [1, 2]
    # level 0, cell (1, 3), stride 8, anchor (33, 23) at sigmoid(0)=0.5 -> box centred on (28, 12)
    np.testing.assert_allclose(cands.xyxy[first], [28 - 16.5, 12 - 11.5, 28 + 16.5, 12 + 11.5], atol=1e-3)
    np.testing.assert_allclose(cands.mask_coefs[first], [1, 2])


def test_decode_edgedet_nhwc_and_unnamed_outputs_agree():
    spec = edgedet_spec()
    objects = [(1, 1, 2, 2, 0, 0.9)]
    ref = decode_edgedet(planted_edgedet_outputs(spec, objects), spec)
    nhwc_spec = edgedet_spec(output_layout="NHWC")
    nhwc = planted_edgedet_outputs(spec, objects, "NHWC")
    renamed = {f"StatefulPartitionedCall:{i}": v for i, v in enumerate(reversed(list(nhwc.values())))}
    for outs in (nhwc, renamed):
        got = decode_edgedet(outs, nhwc_spec)
        np.testing.assert_array_equal(got.xyxy, ref.xyxy)
        np.testing.assert_array_equal(got.scores, ref.scores)


def test_decode_edgedet_wrong_channels_raise():
    spec = edgedet_spec()
    outs = planted_edgedet_outputs(edgedet_spec(num_classes=4), [])
    with pytest.raises(EdgedetError):
        decode_edgedet(outs, spec)


def test_dequantize_int8_edgedet_outputs():
    spec = edgedet_spec()
    floats = planted_edgedet_outputs(spec, [(0, 0, 4, 4, 2, 0.8)])
    quant = QuantParams(scale=0.1, zero_point=5, dtype="int8")
    q = {n: np.clip(np.round(v / 0.1) + 5, -128, 127).astype(np.int8) for n, v in floats.items()}
    spec.output_quant = {n: quant for n in q}
    deq = dequantize_outputs(q, spec)
    ref, got = decode_edgedet(floats, spec), decode_edgedet(deq, spec)
    best = ref.scores.argmax()
    assert got.scores.argmax() == best and got.class_ids[best] == 2
    np.testing.assert_allclose(got.xyxy[best], ref.xyxy[best], atol=0.5)
    with pytest.raises(EdgedetError):
        dequantize_outputs(q, edgedet_spec())  # no quantization parameters
