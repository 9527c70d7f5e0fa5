"""edgedet.data.track_sequence: a seeded sequence is reproducible, objects enter and leave, the detections are
the visible ground truth (jittered) plus false positives marked -1, and hidden objects are not detected."""
import numpy as np

from edgedet.data.track_sequence import SequenceConfig, make_sequence, visible_fractions
from edgedet.device.boxes import box_iou

CONFIG = SequenceConfig(frames=150, size_wh=(320, 240), objects=8, speed=(4.0, 8.0), width=(10.0, 20.0), seed=3)


def test_a_seeded_sequence_is_reproducible_and_objects_come_and_go():
    first, again = make_sequence(CONFIG), make_sequence(CONFIG)
    assert all(np.array_equal(a, b) for a, b in zip(first.det_xyxy, again.det_xyxy))
    stats = first.stats()
    assert stats["frames"] == 150 and stats["objects"] > CONFIG.objects  # some left, others entered
    first_seen = {int(i): f for f in reversed(range(150)) for i in first.gt_ids[f]}
    assert max(first_seen.values()) > 50  # objects still enter late in the sequence
    w, h = CONFIG.size_wh
    assert all(((b >= 0) & (b <= [w, h, w, h])).all() for b in first.gt_xyxy)


def test_detections_follow_the_ground_truth_and_false_positives_are_marked():
    sequence = make_sequence(CONFIG)
    for ids, truth, xyxy, source in zip(sequence.gt_ids, sequence.gt_xyxy, sequence.det_xyxy, sequence.det_source):
        real = source >= 0
        assert set(source[real].tolist()) <= set(ids.tolist())
        for box, gt_id in zip(xyxy[real], source[real]):
            assert box_iou(box, truth[ids == gt_id])[0, 0] > 0.5  # jittered, still its object
    assert sequence.stats()["false_positives"] > 0


def test_a_box_behind_a_nearer_one_is_hidden():
    boxes = np.array([[0, 0, 10, 20], [0, 5, 10, 30], [50, 0, 60, 20]], dtype=float)  # the second is nearer
    visible = visible_fractions(boxes)
    assert visible[0] < 0.35 and visible[1] == 1.0 and visible[2] == 1.0
