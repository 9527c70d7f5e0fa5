"""Layout decodes against hand-built outputs of every layout and, for the edgedet head, the plain NumPy reference
`decode_edgedet_level` (the oracle the runtime's gathered decode must equal) against a torch twin."""
import numpy as np
import pytest
import torch

from edgedet.device import layouts
from edgedet.device.candidates import Candidates, best_class, dequantize_outputs, dequantized_sigmoid, sigmoid
from edgedet.device.errors import EdgedetError
from edgedet.device.layouts import edgedet, grid, yolov5, yolov8
from edgedet.device.preprocessing import dequantize
from edgedet.device.spec import ModelSpec, QuantParams
from edgedet.device.spec_sources import spec_from_ultralytics_metadata

ANCHORS = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)], [(116, 90), (156, 198), (373, 326)]]


def logit(p):
    return float(np.log(p / (1 - p)))


def edgedet_spec(num_classes=3, num_mask_coefs=0, size=64, **kw):
    return ModelSpec(names=[f"c{i}" for i in range(num_classes)], input_size_hw=(size, size), anchors=ANCHORS,
                     num_mask_coefs=num_mask_coefs, **kw)


def decode(outputs, spec, min_score=None):
    """(Candidates, prototypes or None) of the layout `layouts.select` picks, as postprocess uses them."""
    layout = layouts.select(outputs, spec)
    return layout.decode(outputs, spec, min_score), layout.prototypes(outputs, spec)


def infer_layout(shapes, num_classes):
    """The name of the layout recognised from a list of output shapes."""
    return layouts.recognise({f"output{i}": s for i, s in enumerate(shapes)}, num_classes).NAME


# ---------------------------------------------------------------- the edgedet head's plain reference decode

def decode_edgedet_level(raw_box, raw_score, raw_mask, stride, anchors_wh):
    """Decode one FPN level of the edgedet head, plainly: THE reference the runtime's decode
    (device/layouts/edgedet.py, which gathers only the candidates it keeps) and the torch twin
    (edgedet/models/decode.py) must equal.

    raw_box:    float32 (K*4, H, W) one image's "<level>_box" output (NCHW without the batch axis); per anchor k
                the channels 4k + (tx, ty, tw, th).
    raw_score:  float32 (K*(1+C), H, W) "<level>_score"; per anchor k the channels k*(1+C) + (to, tc_1..tc_C).
    raw_mask:   float32 (K*M, H, W) "<level>_mask", per anchor k the channels k*M + (m_1..m_M); None if M = 0.
    stride:     s, input pixels per cell.  anchors_wh: (K, 2) anchor (w, h) in input pixels.
    For anchor k at cell (row i, column j):
        cx = (j + 2*sigmoid(tx) - 0.5) * s          cy = (i + 2*sigmoid(ty) - 0.5) * s
        w  = anchor_w[k] * (2*sigmoid(tw))**2       h  = anchor_h[k] * (2*sigmoid(th))**2
        objectness = sigmoid(to), class probability = sigmoid(tc), mask coefficients = m (linear).
    Returns, with candidates ordered by anchor k, then row i, then column j (N = K*H*W):
        xyxy float32 (N, 4) input pixels, objectness float32 (N,), class_probs float32 (N, C),
        mask_coefs float32 (N, M) (M = 0 without raw_mask).
    """
    anchors_wh = np.asarray(anchors_wh, dtype=np.float32).reshape(-1, 2)
    k = len(anchors_wh)
    h, w = raw_box.shape[1:]
    box = np.asarray(raw_box, dtype=np.float32).reshape(k, 4, h * w)
    score = np.asarray(raw_score, dtype=np.float32).reshape(k, -1, h * w)
    n, num_classes = k * h * w, score.shape[1] - 1
    act = sigmoid(box)
    s = np.float32(stride)
    cols = np.arange(w, dtype=np.float32)[None, None, :]
    rows = np.arange(h, dtype=np.float32)[None, :, None]
    cx = ((cols + 2 * act[:, 0].reshape(k, h, w) - np.float32(0.5)) * s).reshape(-1)
    cy = ((rows + 2 * act[:, 1].reshape(k, h, w) - np.float32(0.5)) * s).reshape(-1)
    bw = (anchors_wh[:, 0:1] * (2 * act[:, 2]) ** 2).reshape(-1)
    bh = (anchors_wh[:, 1:2] * (2 * act[:, 3]) ** 2).reshape(-1)
    probs = sigmoid(score)
    objectness = probs[:, 0].reshape(-1)
    class_probs = probs[:, 1:].transpose(0, 2, 1).reshape(n, num_classes)
    if raw_mask is None:
        mask_coefs = np.zeros((n, 0), np.float32)
    else:
        mask = np.asarray(raw_mask, dtype=np.float32).reshape(k, -1, h * w)
        mask_coefs = mask.transpose(0, 2, 1).reshape(n, mask.shape[1])
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return xyxy, objectness, class_probs, mask_coefs


def reference_decode_edgedet(outputs, spec):
    """Every candidate of float outputs through `decode_edgedet_level`: level, then anchor, row, column."""
    parts = []
    for level, stride, anchors in zip(spec.level_outputs, spec.strides, spec.anchors):
        chw = {}
        for part in spec.head_parts:
            array = np.asarray(outputs[f"{level}_{part}"])[0]
            chw[part] = array.transpose(2, 0, 1) if spec.output_layout == "NHWC" else array
        xyxy, objectness, class_probs, coefs = decode_edgedet_level(
            chw["box"], chw["score"], chw.get("mask"), stride, np.asarray(anchors))
        best, ids = best_class(class_probs)
        parts.append(Candidates(xyxy, objectness * best, ids, coefs if "mask" in chw else None))
    return Candidates.concatenate(parts)


def split_level(raw, k, c, m):
    """A combined per-anchor (K*(5+C+M), ...) array with channels (to, tx, ty, tw, th, tc.., m..) -> the head's
    (box (K*4, ...), score (K*(1+C), ...), mask (K*M, ...) or None) parts, channel axis 0."""
    per = raw.reshape(k, 5 + c + m, *raw.shape[1:])
    box = per[:, 1:5].reshape(k * 4, *raw.shape[1:])
    score = np.concatenate([per[:, :1], per[:, 5:5 + c]], axis=1).reshape(k * (1 + c), *raw.shape[1:])
    mask = per[:, 5 + c:].reshape(k * m, *raw.shape[1:]) if m else None
    return box, score, mask


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
    ours = decode_edgedet_level(*split_level(raw, 3, c, m), 16, np.array(ANCHORS[1]))
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
    xyxy, obj, cls, coefs = decode_edgedet_level(*split_level(raw, 3, c, 0), 8, np.array(ANCHORS[0]))
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
    named = {}
    for name, raw in outs.items():
        for part, array in zip(("box", "score", "mask"), split_level(raw[0], k, c, m)):
            if array is not None:
                named[f"{name}_{part}"] = array[None]
    if layout == "NHWC":
        named = {n: np.ascontiguousarray(v.transpose(0, 2, 3, 1)) for n, v in named.items()}
    return named


def test_decode_edgedet_candidate_order_and_scores():
    spec = edgedet_spec(num_mask_coefs=2)
    outs = planted_edgedet_outputs(spec, [(0, 2, 1, 3, 1, 0.7), (2, 0, 1, 0, 2, 0.6)])
    cands = edgedet.decode(outs, spec)
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


def test_decode_edgedet_nhwc_agrees_with_nchw():
    spec = edgedet_spec()
    objects = [(1, 1, 2, 2, 0, 0.9)]
    ref = edgedet.decode(planted_edgedet_outputs(spec, objects), spec)
    nhwc_spec = edgedet_spec(output_layout="NHWC")
    nhwc = planted_edgedet_outputs(spec, objects, "NHWC")
    for min_score in (None, 0.5):
        got = edgedet.decode(nhwc, nhwc_spec, min_score)
        keep = np.flatnonzero(ref.scores > 0.5) if min_score else slice(None)
        np.testing.assert_array_equal(got.xyxy, ref.xyxy[keep])
        np.testing.assert_array_equal(got.scores, ref.scores[keep])


def test_decode_edgedet_needs_the_head_outputs_by_name():
    spec = edgedet_spec()
    outs = planted_edgedet_outputs(spec, [(1, 1, 2, 2, 0, 0.9)])
    renamed = {f"StatefulPartitionedCall:{i}": v for i, v in enumerate(outs.values())}
    with pytest.raises(EdgedetError, match="lack the edgedet head outputs.*p3_box"):
        edgedet.decode(renamed, spec)


def test_decode_edgedet_wrong_channels_raise():
    spec = edgedet_spec()
    outs = planted_edgedet_outputs(edgedet_spec(num_classes=4), [])
    with pytest.raises(EdgedetError):
        edgedet.decode(outs, spec)


def test_dequantize_int8_edgedet_outputs():
    spec = edgedet_spec()
    floats = planted_edgedet_outputs(spec, [(0, 0, 4, 4, 2, 0.8)])
    quant = QuantParams(scale=0.1, zero_point=5, dtype="int8")
    q = {n: np.clip(np.round(v / 0.1) + 5, -128, 127).astype(np.int8) for n, v in floats.items()}
    spec.output_quant = {n: quant for n in q}
    deq = dequantize_outputs(q, spec)
    ref, got = edgedet.decode(floats, spec), edgedet.decode(deq, spec)
    best = ref.scores.argmax()
    assert got.scores.argmax() == best and got.class_ids[best] == 2
    np.testing.assert_allclose(got.xyxy[best], ref.xyxy[best], atol=0.5)
    with pytest.raises(EdgedetError):
        dequantize_outputs(q, edgedet_spec())  # no quantization parameters


@pytest.mark.parametrize("dtype,zero_point", [("int8", 5), ("uint8", 130)])
def test_decoding_8bit_outputs_by_table_equals_their_float_decode(dtype, zero_point):
    """The 8-bit look-up (`dequantized_sigmoid`) gives bit for bit what decoding the dequantized floats gives."""
    spec = edgedet_spec()
    floats = planted_edgedet_outputs(spec, [(0, 0, 4, 4, 2, 0.8), (1, 1, 2, 3, 1, 0.6)])
    low, high = (-128, 127) if dtype == "int8" else (0, 255)
    quant = QuantParams(scale=0.1, zero_point=zero_point, dtype=dtype)
    q = {n: np.clip(np.round(v / 0.1) + zero_point, low, high).astype(dtype) for n, v in floats.items()}
    spec.output_quant = {n: quant for n in q}
    for min_score in (None, 0.3):
        got, ref = edgedet.decode(q, spec, min_score), edgedet.decode(dequantize_outputs(q, spec), spec, min_score)
        for field in ("xyxy", "scores", "class_ids", "mask_coefs"):
            np.testing.assert_array_equal(getattr(got, field), getattr(ref, field))
    every = np.arange(256, dtype=np.uint8).view(dtype)
    np.testing.assert_array_equal(dequantized_sigmoid(every, quant), sigmoid(dequantize(every, quant)))


# ---------------------------------------------------------------- third-party layouts, hand-built

def plain_spec(num_classes, layout="edgedet", size=(640, 640), anchors=(), **kw):
    return ModelSpec(names=[f"c{i}" for i in range(num_classes)], input_size_hw=size, layout=layout,
                     anchors=list(anchors), **kw)


def test_grid_lecture_19x19x5x85_flat_and_split():
    spec = plain_spec(80, "grid", size=(608, 608),
                      anchors=[[(30, 60), (60, 30), (100, 100), (200, 150), (400, 400)]])
    split = np.zeros((19, 19, 5, 85), np.float32)
    # the lecture's example cell: p_c = 1, (b_x, b_y) = (0.4, 0.3), (b_h, b_w) = (0.5, 0.9), class 2 ("car")
    split[7, 11, 2] = [1.0, 0.4, 0.3, 0.5, 0.9] + [0] * 80
    split[7, 11, 2, 5 + 2] = 0.8
    for output in (split, split.reshape(19, 19, 425), split.reshape(1, 19, 19, 425), split[None]):
        cands = grid.decode({"grid": output}, spec)
        assert len(cands) == 19 * 19 * 5
        best = int(cands.scores.argmax())
        assert best == (7 * 19 + 11) * 5 + 2 and cands.class_ids[best] == 2  # order: row, column, anchor
        cx, cy, w, h = (11 + 0.4) * 32, (7 + 0.3) * 32, 0.9 * 100, 0.5 * 100
        np.testing.assert_allclose(cands.xyxy[best], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=1e-3)
        assert cands.scores[best] == pytest.approx(0.8)


def test_grid_without_anchors_is_relative_to_cell():
    spec = plain_spec(3, "grid", size=(96, 96))
    y = np.zeros((3, 3, 8), np.float32)  # the lecture's 3x3 grid, 3 classes, one box per cell
    y[1, 2] = [1, 0.4, 0.3, 0.5, 0.9, 0, 1, 0]
    cands = grid.decode({"y": y}, spec)
    best = int(cands.scores.argmax())
    assert best == 1 * 3 + 2 and cands.class_ids[best] == 1
    np.testing.assert_allclose(cands.xyxy[best], [(2.4 * 32) - 14.4, (1.3 * 32) - 8, 2.4 * 32 + 14.4, 1.3 * 32 + 8],
                               atol=1e-3)


def yolo_rows(num_classes, rows, objectness=True):
    """(N, F) prediction rows: (cx, cy, w, h, [obj,] class scores) with class score in one column."""
    feats = 4 + int(objectness) + num_classes
    out = np.zeros((len(rows), feats), np.float32)
    for n, (cx, cy, w, h, cls, score) in enumerate(rows):
        out[n, :4] = [cx, cy, w, h]
        if objectness:
            out[n, 4] = 0.5
            out[n, 5 + cls] = score / 0.5
        else:
            out[n, 4 + cls] = score
    return out


ROWS = [(100, 120, 40, 60, 3, 0.9), (400, 300, 80, 20, 0, 0.6), (10, 10, 4, 4, 1, 0.1)]


def check_rows(cands, scale=1.0):
    np.testing.assert_allclose(cands.scores, [0.9, 0.6, 0.1], atol=1e-5)
    assert cands.class_ids.tolist() == [3, 0, 1]
    np.testing.assert_allclose(cands.xyxy[0], np.array([80, 90, 120, 150]) * scale, atol=1e-3)


def test_yolov5_both_orientations():
    spec = plain_spec(5, "yolov5")
    rows = yolo_rows(5, ROWS)
    check_rows(yolov5.decode({"output0": rows[None]}, spec))
    check_rows(yolov5.decode({"output0": rows.T[None]}, spec))


@pytest.mark.parametrize("channels_first", [True, False])
def test_yolov8_both_orientations(channels_first):
    spec = plain_spec(80, "yolov8")
    rows = np.concatenate([yolo_rows(80, ROWS, objectness=False), np.zeros((8397, 84), np.float32)])
    pred = rows.T[None] if channels_first else rows[None]  # (1, 84, 8400) or (1, 8400, 84)
    cands = yolov8.decode({"output0": pred}, spec)
    assert len(cands) == 8400 and cands.mask_coefs is None
    check_rows(cands[:3])


def test_yolov8_without_known_class_count_uses_smaller_axis():
    rows = yolo_rows(80, ROWS, objectness=False)
    pred = np.concatenate([rows, np.zeros((97, 84), np.float32)]).T[None]
    check_rows(yolov8.decode({"output0": pred}, plain_spec(0, "yolov8"))[:3])


def seg_outputs(num_classes=2, m=32, nhwc=False, n=300):
    rows = np.zeros((n, 4 + num_classes + m), np.float32)
    rows[:3, :4 + num_classes] = yolo_rows(num_classes, [(100, 120, 40, 60, 1, 0.9), (400, 300, 80, 20, 0, 0.6),
                                                         (10, 10, 4, 4, 1, 0.1)], objectness=False)
    rows[:3, 4 + num_classes:] = np.arange(3 * m).reshape(3, m)
    protos = np.random.default_rng(0).normal(size=(1, m, 40, 40)).astype(np.float32)
    if nhwc:
        return {"p": rows[None], "q": np.ascontiguousarray(protos.transpose(0, 2, 3, 1))}, protos[0]
    return {"output0": rows.T[None], "output1": protos}, protos[0]


@pytest.mark.parametrize("nhwc", [False, True])
def test_yolov8_seg_nchw_and_nhwc_protos(nhwc):
    outs, protos = seg_outputs(nhwc=nhwc)
    spec = plain_spec(2, "yolov8-seg", num_mask_coefs=32)
    cands, got_protos = decode(outs, spec)
    np.testing.assert_array_equal(got_protos, protos)
    assert cands.mask_coefs.shape == (300, 32)
    np.testing.assert_array_equal(cands.mask_coefs[1], np.arange(32, 64))
    assert cands.class_ids[:2].tolist() == [1, 0]


def test_tflite_normalised_int8_outputs_in_any_order():
    """A TFLite-style YOLOv8-seg: NHWC protos, boxes in 0..1, int8 and uint8 outputs, listed protos first."""
    outs, protos = seg_outputs(nhwc=True)
    pred = outs["p"].copy()
    pred[..., :4] /= 640.0
    pred[..., 6:] /= 100.0  # one int8 scale for boxes, scores and coefficients: keep them in one range
    pred_q = QuantParams(scale=float(np.abs(pred).max() / 127), zero_point=0, dtype="int8")
    proto_scale = float((protos.max() - protos.min()) / 255)
    proto_q = QuantParams(scale=proto_scale, zero_point=int(round(-protos.min() / proto_scale)), dtype="uint8")
    q_pred = np.clip(np.round(pred / pred_q.scale), -128, 127).astype(np.int8)
    q_protos = np.clip(np.round(outs["q"] / proto_scale) + proto_q.zero_point, 0, 255).astype(np.uint8)
    raw = {"Identity_1": q_protos, "Identity": q_pred}
    spec = spec_from_ultralytics_metadata({"names": "{0: 'a', 1: 'b'}", "imgsz": "[640, 640]", "task": "segment",
                                           "stride": "32"}, {n: a.shape for n, a in raw.items()},
                                          input_layout="NHWC", boxes_normalized=True)
    spec.output_quant = {"Identity": pred_q, "Identity_1": proto_q}
    assert spec.layout == "yolov8-seg" and spec.num_mask_coefs == 32 and spec.proto_output == "Identity_1"
    cands, got_protos = decode(dequantize_outputs(raw, spec), spec)
    np.testing.assert_allclose(got_protos, protos, atol=proto_q.scale)
    np.testing.assert_allclose(cands.xyxy[0], [80, 90, 120, 150], atol=3)
    assert cands.class_ids[:2].tolist() == [1, 0]
    np.testing.assert_allclose(cands.scores[:2], [0.9, 0.6], atol=2 * pred_q.scale)


def test_tflite_yolov5_normalised_uint8():
    spec = plain_spec(5, "yolov5", boxes_normalized=True)
    rows = yolo_rows(5, ROWS)
    rows[:, :4] /= 640
    quant = QuantParams(scale=float(rows.max() / 255), zero_point=0, dtype="uint8")
    spec.output_quant = {"out": quant}
    q = np.clip(np.round(rows / quant.scale), 0, 255).astype(np.uint8)[None]
    cands, _ = decode(dequantize_outputs({"out": q}, spec), spec)
    np.testing.assert_allclose(cands.xyxy[0], [80, 90, 120, 150], atol=6)
    assert cands.class_ids.tolist() == [3, 0, 1]


# ---------------------------------------------------------------- layout selection and Ultralytics metadata

@pytest.mark.parametrize("shapes, num_classes, layout", [
    ([(1, 84, 8400)], 80, "yolov8"),
    ([(1, 8400, 84)], 80, "yolov8"),
    ([(1, 25200, 85)], 80, "yolov5"),
    ([(1, 85, 25200)], 80, "yolov5"),
    ([(1, 84, 8400)], 0, "yolov8"),
    ([(1, 116, 8400), (1, 32, 160, 160)], 80, "yolov8-seg"),
    ([(1, 160, 160, 32), (1, 8400, 116)], 80, "yolov8-seg"),
    ([(19, 19, 425)], 80, "grid"),
    ([(1, 19, 19, 5, 85)], 80, "grid"),
])
def test_infer_layout_from_shapes(shapes, num_classes, layout):
    assert infer_layout(shapes, num_classes) == layout


def test_select_layout_prefers_override_then_spec_then_shapes():
    outs = {"output0": np.zeros((1, 84, 100), np.float32)}
    assert layouts.select(outs, plain_spec(80)).NAME == "yolov8"  # default edgedet spec, outputs say otherwise
    assert layouts.select(outs, plain_spec(80, "yolov5")).NAME == "yolov5"
    assert layouts.select(outs, plain_spec(80), "grid").NAME == "grid"
    with pytest.raises(EdgedetError):
        layouts.select(outs, plain_spec(80), "nope")
    spec = edgedet_spec()
    assert layouts.select(planted_edgedet_outputs(spec, []), spec).NAME == "edgedet"


def test_spec_from_ultralytics_onnx_metadata():
    metadata = {"author": "Ultralytics", "version": "8.3.0", "stride": "32", "task": "detect", "batch": "1",
                "imgsz": "[640, 480]", "names": "{0: 'person', 1: 'bicycle', 2: 'car'}"}
    spec = spec_from_ultralytics_metadata(metadata, [(1, 7, 6300)])
    assert spec.names == ["person", "bicycle", "car"] and spec.input_size_hw == (640, 480)
    assert spec.layout == "yolov8" and spec.task == "detect" and spec.pad_value == 114
    assert spec.channel_order == "RGB" and spec.input_layout == "NCHW" and not spec.boxes_normalized
    rows = yolo_rows(3, [(50, 60, 20, 30, 2, 0.7)], objectness=False)
    cands, protos = decode({"output0": np.concatenate([rows, np.zeros((6299, 7), np.float32)]).T[None]}, spec)
    assert protos is None and cands.class_ids[0] == 2 and cands.scores[0] == pytest.approx(0.7)
    assert ModelSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("metadata", [{"names": "{0: 'a'}", "imgsz": "[64, 64]", "task": "pose"},
                                      {"names": "42", "imgsz": "[64, 64]"},
                                      {"names": "{0: 'a'}"}])
def test_bad_ultralytics_metadata_raises(metadata):
    with pytest.raises(EdgedetError):
        spec_from_ultralytics_metadata(metadata, [(1, 5, 100)])


def test_unrecognisable_outputs_raise():
    with pytest.raises(EdgedetError):
        decode({"a": np.zeros((2, 3, 4, 5, 6, 7), np.float32)}, plain_spec(2))


@pytest.mark.parametrize("seg", [False, True])
def test_yolov8_min_score_leaves_out_only_low_scores(seg):
    outs, _ = seg_outputs()
    spec = plain_spec(2, "yolov8-seg" if seg else "yolov8", num_mask_coefs=32 if seg else 0)
    if not seg:
        outs = {"output0": outs["output0"][:, :6]}
    full, _ = decode(outs, spec)
    early, _ = decode(outs, spec, min_score=0.5)
    keep = full.scores > 0.5
    np.testing.assert_array_equal(early.xyxy, full.xyxy[keep])
    np.testing.assert_array_equal(early.class_ids, full.class_ids[keep])
    if seg:
        np.testing.assert_array_equal(early.mask_coefs, full.mask_coefs[keep])
