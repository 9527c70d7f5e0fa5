"""device.tracking: the assignment against a brute-force oracle, the Kalman filter, and the tracker on scripted
scenes (a crossing with occlusion, missed frames, low-score frames, births and deaths with hysteresis); track ids
on `Detections` (indexing, records, JSON, repr, equality); the module's docstring example."""
import itertools
import json

import numpy as np
import pytest

import edgedet.device.tracking
from edgedet.device.detections import Detections
from edgedet.device.errors import EdgedetError
from edgedet.device.tracking import (Tracker, TrackerConfig, kalman_initiate, kalman_predict, kalman_update,
                                     max_gain_assignment)
from tests.device.test_api_examples import run_examples

NAMES = ["person", "car"]


def box(x, y, w=20, h=40):
    return [x, y, x + w, y + h]


def frame(boxes, scores=None, classes=None):
    n = len(boxes)
    return Detections(np.array(boxes, dtype=np.float32).reshape(-1, 4), [0.9] * n if scores is None else scores,
                      [0] * n if classes is None else classes, names=NAMES)


def ids_by_x(tracked):
    """{rounded x1: track id} of one tracked frame."""
    return {round(float(b[0])): int(t) for b, t in zip(tracked.xyxy, tracked.tracker_ids)}


# ------------------------------------------------------------------------------ Detections with track ids


def test_tracker_ids_travel_through_indexing_records_json_and_repr():
    tracked = frame([box(0, 0), box(50, 0), box(100, 0)], [0.9, 0.4, 0.8], [0, 1, 0]).with_tracker_ids([4, 9, 12])
    assert tracked.tracker_ids.dtype == np.int64
    assert tracked[tracked.scores > 0.5].tracker_ids.tolist() == [4, 12]
    assert tracked[1].tracker_ids.tolist() == [9] and tracked[1:].tracker_ids.tolist() == [9, 12]
    assert [d.track_id for d in tracked] == [4, 9, 12]
    assert tracked.with_names(["a", "b"]).tracker_ids.tolist() == [4, 9, 12]
    items = json.loads(tracked.to_json())["detections"]
    assert [item["track_id"] for item in items] == [4, 9, 12]
    assert repr(tracked) == "Detections(3 objects: 2 person, 1 car; tracks #4 #9 #12)"
    assert repr(tracked[tracked.scores > 1]) == "Detections(0 objects; tracked)"
    many = frame([box(k, 0) for k in range(10)]).with_tracker_ids(range(1, 11))
    assert repr(many).endswith("tracks #1 #2 #3 #4 #5 #6 #7 #8 ...)")


def test_untracked_detections_have_no_track_ids_anywhere():
    plain = frame([box(0, 0)])
    assert plain.tracker_ids is None and [d.track_id for d in plain] == [None]
    assert "track_id" not in plain.to_dict()["detections"][0] and "tracks" not in repr(plain)


def test_track_ids_are_part_of_the_value():
    plain = frame([box(0, 0), box(50, 0)])
    assert plain.with_tracker_ids([1, 2]) == plain.with_tracker_ids(np.array([1, 2]))
    assert plain.with_tracker_ids([1, 2]) != plain.with_tracker_ids([2, 1])
    assert plain.with_tracker_ids([1, 2]) != plain
    with pytest.raises(ValueError, match="tracker_ids has 1 entries for 2 detections"):
        plain.with_tracker_ids([1])


# ------------------------------------------------------------------------------ assignment


def brute_force_gain(gain):
    """The best summed gain of any one-to-one pairing using pairs with gain > 0 (every injective map tried)."""
    rows, cols = gain.shape
    if rows > cols:
        gain, rows, cols = gain.T, cols, rows
    return max(sum(gain[i, p[i]] for i in range(rows) if gain[i, p[i]] > 0)
               for p in itertools.permutations(range(cols), rows))


@pytest.mark.parametrize("seed", range(40))
def test_assignment_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(1, 7, 2)
    gain = np.clip(rng.uniform(-0.6, 1.0, (rows, cols)), 0, None)
    if seed % 4 == 0:
        gain = np.round(gain, 1)  # ties
    r, c = max_gain_assignment(gain)
    assert len(set(r.tolist())) == len(r) and len(set(c.tolist())) == len(c)
    assert (gain[r, c] > 0).all() and list(r) == sorted(r)
    assert gain[r, c].sum() == pytest.approx(brute_force_gain(gain), abs=1e-12)


@pytest.mark.parametrize("gain, pairs", [
    (np.zeros((0, 3)), []),
    (np.zeros((2, 0)), []),
    (np.zeros((2, 2)), []),
    (np.array([[0.5]]), [(0, 0)]),
    # greedy would take the 0.9 and lose the 0.8 + 0.85 pairing
    (np.array([[0.9, 0.8], [0.85, 0.0]]), [(0, 1), (1, 0)]),
    (np.array([[0.0, 0.3, 0.0], [0.0, 0.0, 0.2]]), [(0, 1), (1, 2)]),
])
def test_assignment_edge_cases(gain, pairs):
    r, c = max_gain_assignment(gain)
    assert list(zip(r.tolist(), c.tolist())) == pairs


def test_large_sparse_assignment_mixes_lone_pairs_and_groups():
    rng = np.random.default_rng(3)
    gain = np.zeros((60, 60))
    gain[np.arange(60), rng.permutation(60)] = rng.uniform(0.5, 1.0, 60)
    gain[rng.integers(0, 60, 15), rng.integers(0, 60, 15)] = rng.uniform(0.1, 1.0, 15)  # a few contested pairs
    r, c = max_gain_assignment(gain)
    assert len(set(c.tolist())) == len(c) and (gain[r, c] > 0).all()
    # the exact optimum of each connected group is checked above; here, no pair is better swapped
    for i, j in itertools.combinations(range(len(r)), 2):
        assert gain[r[i], c[i]] + gain[r[j], c[j]] >= gain[r[i], c[j]] + gain[r[j], c[i]] - 1e-12


# ------------------------------------------------------------------------------ the Kalman filter


def full_kalman(measurements, config):
    """The textbook 8x8 Kalman filter (state (cx, cy, w, h) and velocities; noise as ByteTrack scales it): the
    reference the decoupled (T, 3, 4) filter must equal. -> (means, covariances) after each measurement."""
    transition, observe = np.eye(8) + np.eye(8, k=4), np.eye(4, 8)
    z = measurements[0]
    size = np.tile(z[2:4], 2)
    mean = np.concatenate([z, np.zeros(4)])
    cov = np.diag(np.concatenate([(2 * config.position_noise * size) ** 2, (10 * config.velocity_noise * size) ** 2]))
    history = [(mean, cov)]
    for z in measurements[1:]:
        size = np.tile(mean[2:4], 2)
        noise = np.diag(np.concatenate([(config.position_noise * size) ** 2, (config.velocity_noise * size) ** 2]))
        mean, cov = transition @ mean, transition @ cov @ transition.T + noise
        innovation_cov = observe @ cov @ observe.T + np.diag((config.position_noise * np.tile(mean[2:4], 2)) ** 2)
        gain = cov @ observe.T @ np.linalg.inv(innovation_cov)
        mean, cov = mean + gain @ (z - observe @ mean), (np.eye(8) - gain @ observe) @ cov
        history.append((mean, cov))
    return history


def blocks_to_matrix(blocks):
    """(3, 4) covariance blocks -> the (8, 8) covariance."""
    cov = np.zeros((8, 8))
    index = np.arange(4)
    cov[index, index], cov[index, index + 4], cov[index + 4, index + 4] = blocks
    cov[index + 4, index] = blocks[1]
    return cov


def test_decoupled_kalman_filter_equals_the_full_matrix_filter():
    config = TrackerConfig()
    rng = np.random.default_rng(0)
    measurements = np.array([100.0, 50.0, 20.0, 40.0]) + np.cumsum(rng.normal(0, 3, (12, 4)), axis=0)
    mean, cov = kalman_initiate(measurements[:1], config)
    for step, (reference_mean, reference_cov) in enumerate(full_kalman(measurements, config)):
        if step:
            mean, cov = kalman_predict(mean, cov, config)
            mean, cov = kalman_update(mean, cov, measurements[step:step + 1], config)
        assert np.allclose(mean[0], reference_mean) and np.allclose(blocks_to_matrix(cov[0]), reference_cov)


def test_kalman_filter_learns_a_constant_velocity():
    config = TrackerConfig()
    mean, cov = kalman_initiate(np.array([[100.0, 50.0, 20.0, 40.0]]), config)
    for step in range(1, 15):
        mean, cov = kalman_predict(mean, cov, config)
        mean, cov = kalman_update(mean, cov, np.array([[100.0 + 5 * step, 50.0, 20.0, 40.0]]), config)
    predicted, predicted_cov = kalman_predict(mean, cov, config)
    assert predicted[0, 0] == pytest.approx(100 + 5 * 15, abs=0.5) and predicted[0, 4] == pytest.approx(5, abs=0.2)
    assert (np.linalg.eigvalsh(blocks_to_matrix(predicted_cov[0])) > 0).all()


def test_a_box_clipped_to_zero_width_keeps_a_finite_track():
    config = TrackerConfig()
    mean, cov = kalman_initiate(np.array([[0.0, 50.0, 0.0, 40.0]]), config)  # zero width at the frame's left edge
    for _ in range(3):
        mean, cov = kalman_predict(mean, cov, config)
        mean, cov = kalman_update(mean, cov, np.array([[0.0, 50.0, 0.0, 0.0]]), config)
    assert np.isfinite(mean).all() and np.isfinite(cov).all()
    tracker = Tracker()
    tracked = tracker.update(frame([[0.0, 30.0, 0.0, 70.0]]))  # a degenerate xyxy box
    for _ in range(3):
        tracker.update(frame([[0.0, 30.0, 0.0, 70.0]]))
    assert len(tracked) == 1 and np.isfinite(tracker.tracks.mean).all() and np.isfinite(tracker.tracks.cov).all()


# ------------------------------------------------------------------------------ the tracker on scripted scenes


def test_ids_survive_two_objects_crossing_with_the_far_one_hidden():
    """A walks right, B walks left on the same row; while they overlap only A (in front) is detected."""
    tracker = Tracker()
    first = last = None
    for t in range(31):
        xa, xb = 10 + 8 * t, 250 - 8 * t
        overlapping = abs(xa - xb) < 20
        tracked = tracker.update(frame([box(xa, 100)] + ([] if overlapping else [box(xb, 102)])))
        if t == 0:
            first = ids_by_x(tracked)
        last = ids_by_x(tracked)
        assert len(set(tracked.tracker_ids.tolist())) == len(tracked)
    assert first == {10: 1, 250: 2}
    assert last == {250: 1, 10: 2}  # A (id 1) ended on the right, B (id 2) on the left


def test_ids_survive_missed_frames_and_the_predicted_motion():
    tracker = Tracker(TrackerConfig(max_missed=8))
    for t in range(20):
        missing = 8 <= t < 14  # six frames without the object: it keeps moving meanwhile
        tracked = tracker.update(frame([] if missing else [box(20 + 6 * t, 50)]))
        if missing:
            assert len(tracked) == 0 and tracked.tracker_ids is not None
        else:
            assert tracked.tracker_ids.tolist() == [1]


@pytest.mark.parametrize("gap, same_id", [(5, True), (6, False)])
def test_a_track_dies_after_more_than_max_missed_frames(gap, same_id):
    tracker = Tracker(TrackerConfig(max_missed=5))
    for _ in range(4):
        assert tracker.update(frame([box(50, 50)])).tracker_ids.tolist() == [1]
    for _ in range(gap):
        tracker.update(frame([]))
    assert tracker.active_ids.tolist() == ([1] if same_id else [])
    returned = [tracker.update(frame([box(50, 50)])).tracker_ids.tolist() for _ in range(2)]
    assert returned == ([[1], [1]] if same_id else [[], [2]])  # a new track must be confirmed again


def test_birth_needs_min_hits_in_a_row_and_one_frame_false_positives_get_no_id():
    tracker = Tracker(TrackerConfig(min_hits=3, confirm_first_frame=False))
    outputs = []
    for t in range(6):
        boxes = [box(10 + 2 * t, 10)]
        if t == 1:
            boxes.append(box(200, 200))  # a false positive, one frame long
        outputs.append(tracker.update(frame(boxes)).tracker_ids.tolist())
    assert outputs == [[], [], [1], [1], [1], [1]]  # confirmed on its third frame; the blip used no id


def test_tracks_present_on_the_first_frame_are_confirmed_at_once_and_new_ones_later():
    tracker = Tracker()
    assert tracker.update(frame([box(0, 0), box(100, 0)])).tracker_ids.tolist() == [1, 2]
    assert tracker.update(frame([box(0, 0), box(100, 0), box(200, 0)])).tracker_ids.tolist() == [1, 2]
    assert tracker.update(frame([box(0, 0), box(100, 0), box(200, 0)])).tracker_ids.tolist() == [1, 2, 3]


def test_low_score_detections_keep_a_track_alive_but_start_none():
    tracker = Tracker()
    scores = [0.9, 0.9, 0.3, 0.25, 0.3, 0.9]  # an object partly occluded for three frames scores low
    for t, score in enumerate(scores):
        tracked = tracker.update(frame([box(10 + 4 * t, 10), box(300, 300)], [score, 0.3]))
        # the second detection scores low from the start: it never becomes a track and is dropped
        assert tracked.tracker_ids.tolist() == [1] and tracked.scores[0] == pytest.approx(score)
    assert tracker.update(frame([box(300, 300)], [0.05])).tracker_ids.tolist() == []  # below low_score


def test_output_keeps_input_order_boxes_and_masks():
    tracker = Tracker()
    masks = np.zeros((3, 64, 64), bool)
    masks[1, 5:9, 5:9] = True
    first = Detections([box(0, 0), box(30, 0), box(60, 0)], [0.7, 0.95, 0.8], [0, 1, 0], masks, NAMES)
    tracker.update(first)
    shuffled = first[np.array([2, 0, 1])]
    tracked = tracker.update(shuffled)
    assert tracked.tracker_ids.tolist() == [3, 1, 2]
    assert np.array_equal(tracked.xyxy, shuffled.xyxy) and np.array_equal(tracked.masks, shuffled.masks)
    assert tracked.names == tuple(NAMES)


def test_class_aware_matching_keeps_classes_apart():
    def run(class_aware):
        tracker = Tracker(TrackerConfig(class_aware=class_aware))
        tracker.update(frame([box(10, 10)], classes=[0]))
        # the person is gone; a car appears on the same spot
        return [tracker.update(frame([box(11, 10)], classes=[1])).tracker_ids.tolist() for _ in range(2)]

    assert run(False) == [[1], [1]]  # ByteTrack's default: classes are not looked at
    assert run(True) == [[], [2]]  # a new track, confirmed on its second frame


def test_reset_starts_ids_again():
    tracker = Tracker()
    tracker.update(frame([box(0, 0)]))
    tracker.reset()
    assert tracker.frames == 0 and len(tracker.tracks) == 0
    assert tracker.update(frame([box(300, 0)])).tracker_ids.tolist() == [1]


def test_empty_frames_give_empty_tracked_detections():
    tracker = Tracker()
    tracked = tracker.update(Detections.empty(names=NAMES))
    assert len(tracked) == 0 and tracked.tracker_ids.tolist() == [] and tracked.names == tuple(NAMES)


@pytest.mark.parametrize("changes, message", [
    ({"high_score": 1.5}, "high_score must be in 0..1"),
    ({"low_score": 0.6, "high_score": 0.5}, "low_score 0.6 is above high_score 0.5"),
    ({"min_hits": 0}, "min_hits must be >= 1"),
    ({"max_missed": -1}, "max_missed >= 0"),
    ({"position_noise": 0}, "must be > 0"),
    ({"new_track_score": 0.4, "high_score": 0.5}, "new_track_score 0.4 is below high_score 0.5"),
])
def test_bad_tracker_config_is_named(changes, message):
    with pytest.raises(EdgedetError, match=message):
        TrackerConfig(**changes)


def test_docstring_example_runs():
    results = run_examples(edgedet.device.tracking)
    assert results.attempted > 0 and results.failed == 0
