"""device.Detections as a value type: names through indexing, a short repr, per-object records, to_dict / to_json
(COCO RLE masks), COCO results equal to the host evaluator's."""
import json
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from edgedet.device.detections import Detection, Detections
from edgedet.device.masks import mask_spans
from edgedet.rle import rle_decode

NAMES = ["person", "dog", "cat"]


def three(with_masks=True):
    masks = None
    if with_masks:
        masks = np.zeros((3, 480, 640), bool)
        masks[0, 10:50, 20:60] = True
        masks[1, 100:200, 300:400] = True
        masks[2, 0:5, 0:5] = True
    return Detections(np.array([[20, 10, 60, 50], [300, 100, 400, 200], [0, 0, 5, 5]]), [0.9, 0.8, 0.3], [0, 0, 1],
                      masks, names=NAMES)


@pytest.mark.parametrize("detections, text", [
    (three(), "Detections(3 objects: 2 person, 1 dog; masks 480x640)"),
    (three(False)[np.array([2])], "Detections(1 object: 1 dog)"),
    (Detections.empty(), "Detections(0 objects)"),
    (Detections([[0, 0, 1, 1]], [0.5], [7], names=NAMES), "Detections(1 object: 1 7)"),  # unknown id: as text
    (Detections([[0, 0, 1, 1]], [0.5], [1]), "Detections(1 object: 1 1)"),  # no names
])
def test_repr_counts_per_class_and_never_prints_arrays(detections, text):
    assert repr(detections) == str(detections) == text


def test_names_travel_through_indexing_and_stay_frozen():
    detections = three()
    assert detections.names == tuple(NAMES)
    for picked in (detections[detections.scores > 0.5], detections[1:], detections[0], detections[np.array([2, 0])]):
        assert picked.names == tuple(NAMES)
    assert detections[np.array([2, 0])].class_names == ["dog", "person"]
    with pytest.raises(FrozenInstanceError):
        detections.names = ("x",)
    assert Detections.empty(names=NAMES).names == tuple(NAMES)


def test_iteration_yields_per_object_records():
    detections = three()
    records = list(detections)
    assert len(records) == 3 and all(isinstance(r, Detection) for r in records)
    first = records[0]
    assert first.xyxy == (20.0, 10.0, 60.0, 50.0) and first.score == pytest.approx(0.9)
    assert first.class_id == 0 and first.name == "person" and first.mask.shape == (480, 640)
    assert np.array_equal(first.mask, detections.masks[0])
    assert "mask" not in repr(first)  # a record's repr stays one short line too
    assert [r.mask for r in three(False)] == [None, None, None]
    assert list(Detections.empty()) == []
    assert isinstance(detections[0], Detections)  # integer indexing still gives a one-element Detections


def test_to_dict_and_to_json_carry_names_and_rle_masks():
    detections = three()
    record = detections.to_dict()
    assert record["count"] == 3 and [d["class_name"] for d in record["detections"]] == ["person", "person", "dog"]
    assert record["detections"][0]["xyxy"] == [20.0, 10.0, 60.0, 50.0]
    for item, mask in zip(record["detections"], detections.masks):
        assert np.array_equal(rle_decode(item["segmentation"]), mask)
    assert json.loads(detections.to_json()) == record
    assert json.loads(three(False).to_json(indent=2))["detections"][1] == {
        "xyxy": [300.0, 100.0, 400.0, 200.0], "score": 0.8, "class_id": 0, "class_name": "person"}
    assert Detections.empty().to_dict() == {"count": 0, "detections": []}


def test_to_coco_gives_coco_results_with_category_ids_and_rle():
    detections = three()
    category_ids = [1, 18, 17]
    results = detections.to_coco(42, category_ids)
    assert [(r["image_id"], r["category_id"]) for r in results] == [(42, 1), (42, 1), (42, 18)]
    assert results[0]["bbox"] == [20.0, 10.0, 40.0, 40.0] and results[0]["score"] == round(float(detections.scores[0]), 5)
    for result, mask in zip(results, detections.masks):
        assert np.array_equal(rle_decode(result["segmentation"]), mask)
    plain = three(False).to_coco(5)
    assert [r["category_id"] for r in plain] == [0, 0, 1] and plain[0]["bbox"] == [20.0, 10.0, 40.0, 40.0]
    assert "segmentation" not in plain[0] and Detections.empty().to_coco(1) == []


def test_detections_compare_as_values():
    assert three() == three() and three(False) == three(False)
    assert three() != three(False) and three()[:2] != three()
    assert Detections.empty() == Detections.empty()
    with pytest.raises(TypeError):
        hash(three())


def test_mask_spans_must_match_the_masks():
    d = three()
    spans = np.zeros((len(d), 4), np.int64)
    with pytest.raises(ValueError, match="mask_spans"):
        Detections(d.xyxy, d.scores, d.class_ids, d.masks, mask_spans=spans[:2])
    with pytest.raises(ValueError, match="mask_spans"):
        Detections(d.xyxy, d.scores, d.class_ids, None, mask_spans=spans)
    h, w = d.masks.shape[1:]
    for bad in ([3, 1, 0, 10], [0, h + 1, 0, 10], [0, 10, -1, 10], [0, 10, 5, 4], [0, 10, 0, w + 1]):
        with pytest.raises(ValueError, match=r"mask_spans\[1\]"):  # would encode wrong RLE without a word
            Detections(d.xyxy, d.scores, d.class_ids, d.masks, mask_spans=np.array([[0, 0, 0, 0], bad, [0, 0, 0, 0]]))


def test_masks_are_changed_with_their_spans():
    d = three()
    spans = np.array([[0, d.masks.shape[1], 0, d.masks.shape[2]]] * len(d))
    spanned = d.with_masks(d.masks, spans)
    assert np.array_equal(spanned.mask_spans, spans) and spanned == d
    boxes_only = spanned.without_masks()  # the spans go with the masks they describe (evaluation of boxes only)
    assert boxes_only.masks is None and boxes_only.mask_spans is None and boxes_only == three(False)
    other = spanned.with_masks(~d.masks)  # other masks, no spans given: found by a scan, never the old ones
    assert other.mask_spans is None
    for item, mask in zip(other.to_dict()["detections"], other.masks):
        assert np.array_equal(rle_decode(item["segmentation"]), mask)


def test_a_nan_box_gets_an_empty_span_and_still_encodes():
    spans = mask_spans(np.array([[2, np.nan, 5, 3], [1, 1, 4, 4]], np.float32), (6, 8))
    assert spans[0].tolist() == [0, 0, 0, 0] and spans[1].tolist() == [1, 4, 1, 4]
    masks = np.zeros((2, 6, 8), bool)
    masks[1, 1:4, 1:4] = True
    d = Detections(np.array([[2, np.nan, 5, 3], [1, 1, 4, 4]], np.float32), [0.9, 0.8], [0, 0], masks,
                   mask_spans=spans)
    assert [np.array_equal(rle_decode(item["segmentation"]), m) for item, m in zip(d.to_dict()["detections"], masks)] \
        == [True, True]
