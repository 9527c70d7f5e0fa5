"""postprocess: decode + vectorised score filter + NMS + un-letterbox, end to end on hand-built outputs."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgedet.device.candidates import Candidates
from edgedet.device.detections import Detections
from edgedet.device.errors import EdgedetError
from edgedet.device.letterbox import Letterbox
from edgedet.device.masks import mask_spans
from edgedet.device.postprocessing import filter_candidates, postprocess
from edgedet.device.spec import QuantParams

_spec_path = Path(__file__).with_name("test_decode.py")
_helpers = importlib.util.spec_from_file_location("decode_helpers", _spec_path)
decode_helpers = importlib.util.module_from_spec(_helpers)
_helpers.loader.exec_module(decode_helpers)
edgedet_spec, planted = decode_helpers.edgedet_spec, decode_helpers.planted_edgedet_outputs


def test_edgedet_end_to_end_in_original_frame():
    spec = edgedet_spec()  # 64x64 input
    box = Letterbox.fit((32, 64), (64, 64))  # frame 64 wide, 32 high -> top pad 16, scale 1
    # level 0 (stride 8), anchor 0 (10x13), cell (row 3, col 4): centre (36, 28) in input -> (36, 12) in frame
    objects = [(0, 0, 3, 4, 1, 0.9), (0, 0, 3, 5, 1, 0.8, -3.0),  # cx 36.76: a duplicate of the first
               (0, 1, 3, 4, 2, 0.6)]                       # anchor 1 at the same cell, other class
    det = postprocess(planted(spec, objects), spec, box, conf=0.25, iou=0.45)
    assert isinstance(det, Detections) and len(det) == 2
    assert det.class_ids.tolist() == [1, 2]
    np.testing.assert_allclose(det.scores, [0.9, 0.6], atol=1e-4)
    np.testing.assert_allclose(det.xyxy[0], [36 - 5, 12 - 6.5, 36 + 5, 12 + 6.5], atol=1e-3)
    agnostic = postprocess(planted(spec, objects), spec, box, agnostic=True)
    assert agnostic.class_ids.tolist() == [1, 2]  # 10x13 vs 16x30 overlap < 0.45: both survive anyway
    only = postprocess(planted(spec, objects), spec, box, classes=[2])
    assert only.class_ids.tolist() == [2]
    high = postprocess(planted(spec, objects), spec, box, conf=0.85)
    assert high.scores.tolist() == pytest.approx([0.9], abs=1e-4)
    capped = postprocess(planted(spec, objects), spec, box, max_det=1)
    assert len(capped) == 1


def test_nothing_found_is_empty_detections():
    spec = edgedet_spec()
    det = postprocess(planted(spec, []), spec, Letterbox.fit((64, 64), (64, 64)))
    assert len(det) == 0 and det.xyxy.shape == (0, 4) and det.masks is None


def test_int8_outputs_give_the_same_detections():
    spec = edgedet_spec()
    box = Letterbox.fit((48, 64), (64, 64))
    objects = [(1, 2, 1, 2, 0, 0.85), (0, 0, 6, 1, 2, 0.7)]
    ref = postprocess(planted(spec, objects), spec, box)
    quant = QuantParams(scale=0.1, zero_point=-3, dtype="int8")
    q = {n: np.clip(np.round(v / 0.1) - 3, -128, 127).astype(np.int8) for n, v in planted(spec, objects).items()}
    spec.output_quant = {n: quant for n in q}
    got = postprocess(q, spec, box)
    assert got.class_ids.tolist() == ref.class_ids.tolist()
    np.testing.assert_allclose(got.xyxy, ref.xyxy, atol=1.0)
    np.testing.assert_allclose(got.scores, ref.scores, atol=0.02)


def test_filter_candidates_is_a_mask():
    c = Candidates(np.zeros((4, 4), np.float32), np.array([0.1, 0.5, 0.3, 0.9], np.float32),
                   np.array([0, 1, 2, 1], np.int32))
    assert filter_candidates(c, 0.25).scores.tolist() == pytest.approx([0.5, 0.3, 0.9])
    assert filter_candidates(c, 0.25, classes=[1]).class_ids.tolist() == [1, 1]


def test_bad_thresholds_raise():
    spec = edgedet_spec()
    with pytest.raises(EdgedetError):
        postprocess(planted(spec, []), spec, Letterbox.fit((64, 64), (64, 64)), conf=1.5)


class _Timer:
    def __init__(self):
        self.stages = []

    def stage(self, name):
        from contextlib import contextmanager

        @contextmanager
        def record():
            self.stages.append(name)
            yield

        return record()


def test_timer_stages_are_recorded():
    spec = edgedet_spec()
    timer = _Timer()
    postprocess(planted(spec, [(0, 0, 1, 1, 0, 0.9)]), spec, Letterbox.fit((64, 64), (64, 64)), timer=timer)
    assert timer.stages == ["decode", "nms"]


def test_yolov8_seg_end_to_end_masks_in_frame():
    """An Ultralytics-style YOLOv8-seg output: boxes and masks come back in the 240x320 frame."""
    from edgedet.device.spec_sources import spec_from_ultralytics_metadata

    num_classes, m = 2, 4
    preds = np.zeros((4 + num_classes + m, 100), np.float32)
    preds[:, 0] = [160, 160, 64, 32, 0.1, 0.9, 1, 0, 0, 0]  # input box (128, 144)-(192, 176), class 1, coef -> proto 0
    preds[:, 1] = [162, 160, 64, 32, 0.1, 0.8, 1, 0, 0, 0]  # duplicate, suppressed
    preds[:, 2] = [40, 100, 20, 20, 0.7, 0.0, 0, 1, 0, 0]   # class 0, coef -> proto 1
    protos = np.full((1, m, 80, 80), -1.0, np.float32)
    protos[0, 0, :, :40] = 1.0   # proto 0 positive on the left half of the input
    protos[0, 1] = 1.0           # proto 1 positive everywhere
    outputs = {"output0": preds[None], "output1": protos}
    spec = spec_from_ultralytics_metadata({"names": "{0: 'a', 1: 'b'}", "imgsz": "[320, 320]", "task": "segment"},
                                          {n: a.shape for n, a in outputs.items()})
    box = Letterbox.fit((240, 320), (320, 320))  # top padding 40
    det = postprocess(outputs, spec, box)
    assert det.class_ids.tolist() == [1, 0] and det.masks.shape == (2, 240, 320)
    np.testing.assert_allclose(det.xyxy[0], [128, 104, 192, 136], atol=1e-3)
    first = det.masks[0]
    assert first[104:136, 128:160].all() and not first[:, 160:].any() and first.sum() == 32 * 32
    assert det.masks[1].sum() == 20 * 20 and det.masks[1][50:70, 30:50].all()
    # the masks' spans come with them (their RLE reads only those pixels), and survive indexing and tracking ids
    assert np.array_equal(det.mask_spans, mask_spans(det.xyxy, (240, 320)))
    assert det.to_dict() == Detections(det.xyxy, det.scores, det.class_ids, det.masks).to_dict()
    assert np.array_equal(det[[1]].with_tracker_ids([5]).mask_spans, det.mask_spans[[1]])


def test_edgedet_masks_from_proto_output():
    spec = edgedet_spec(num_mask_coefs=2, proto_output="proto")
    outputs = planted(spec, [(1, 0, 1, 1, 0, 0.9)])  # stride 16, cell (1, 1): centre (24, 24), anchor 30x61, coefs (1, 2)
    outputs["proto"] = np.stack([np.ones((16, 16)), -np.ones((16, 16))])[None].astype(np.float32)  # logit 1 - 2 < 0
    det = postprocess(outputs, spec, Letterbox.fit((64, 64), (64, 64)))
    assert det.masks.shape == (1, 64, 64) and not det.masks.any()
    outputs["proto"][0, 1] = 0.0  # logit 1 > 0 inside the box
    det = postprocess(outputs, spec, Letterbox.fit((64, 64), (64, 64)))
    assert det.masks[0, 10:38, 12:36].all() and not det.masks[0, :, 40:].any()


def test_postprocess_semantic_class_map_in_frame():
    from edgedet.device.postprocessing import postprocess_semantic

    spec = edgedet_spec(seg_output="seg", semantic_names=["bg", "road", "car"])
    logits = np.zeros((1, 3, 8, 8), np.float32)
    logits[0, 1, 4:] = 5.0   # bottom half of the input is road
    logits[0, 2, :, 6:] = 9.0  # right quarter is car
    labels = postprocess_semantic({"seg": logits}, spec, Letterbox.fit((32, 64), (64, 64)))
    assert labels.shape == (32, 64)
    assert labels[0, 0] == 0 and labels[-1, 0] == 1 and labels[-1, -1] == 2
    nhwc = edgedet_spec(seg_output="seg", output_layout="NHWC")
    np.testing.assert_array_equal(
        postprocess_semantic({"seg": logits.transpose(0, 2, 3, 1)}, nhwc, Letterbox.fit((32, 64), (64, 64))), labels)
    with pytest.raises(EdgedetError):
        postprocess_semantic({}, spec, Letterbox.fit((32, 64), (64, 64)))
