"""edgedet.metrics.mot against sequences worked out by hand: misses, false positives, two ID switches, a kept
correspondence that wins over a better-overlapping newcomer, and IDF1's one-to-one identity pairing."""
import pytest

from edgedet.metrics.mot import MotFrame, clear_mot, identity_scores, mot_metrics

A, B, FAR = [0, 0, 10, 10], [50, 0, 60, 10], [200, 200, 210, 210]


def frames(*items):
    return [MotFrame.of([i for i, _ in frame], [b for _, b in frame]) for frame in items]


def test_hand_computed_sequence_with_a_miss_a_false_positive_and_an_id_swap():
    truth = frames([(1, A), (2, B)], [(1, A), (2, B)], [(1, A), (2, B)], [(1, A)], [(1, A)])
    tracks = frames([(10, A), (20, B)],
                    [(10, A), (30, FAR)],  # object 2 missed, a false positive far away
                    [(10, B), (20, A)],  # the tracker swapped the two ids: both objects switch
                    [(20, A)], [(20, A)])  # object 1 keeps track 20: no further switch
    result = mot_metrics(truth, tracks)
    # 8 ground-truth boxes; 7 matches; 1 miss, 1 false positive, 2 switches
    assert (result["ground_truth"], result["matches"], result["misses"], result["false_positives"],
            result["switches"]) == (8, 7, 1, 1, 2)
    assert result["mota"] == pytest.approx(1 - 4 / 8) and result["motp"] == pytest.approx(1.0)
    # frames together: (1, 10) 2, (2, 20) 1, (1, 20) 3, (2, 10) 1 -> best one-to-one: (1, 20) + (2, 10) = 4
    assert (result["idtp"], result["idfp"], result["idfn"]) == (4, 4, 4)
    assert result["idf1"] == pytest.approx(2 * 4 / 16) and result["idp"] == pytest.approx(0.5)


def test_a_kept_correspondence_wins_over_a_better_overlapping_newcomer():
    overlapping = [1, 0, 11, 10]  # IoU 9/11 with A
    truth = frames([(1, A)], [(1, A), (2, overlapping)])
    tracks = frames([(10, A)], [(10, overlapping)])
    result = clear_mot(truth, tracks)
    # object 1 keeps track 10 (IoU 0.82 >= 0.5) although object 2 overlaps it fully: object 2 is the miss
    assert (result["matches"], result["misses"], result["switches"]) == (2, 1, 0)
    assert result["motp"] == pytest.approx((1 + 9 / 11) / 2)


def test_the_assignment_prefers_more_matches_over_more_overlap():
    # track 10 fits object 1 best, but giving it to object 2 lets track 20 match object 1 too
    truth = frames([(1, [0, 0, 10, 10]), (2, [3, 0, 13, 10])])
    tracks = frames([(10, [1, 0, 11, 10]), (20, [-3, 0, 7, 10])])
    result = clear_mot(truth, tracks)
    assert result["matches"] == 2 and result["mota"] == pytest.approx(1.0)


def test_identity_scores_of_a_perfect_and_an_empty_tracker():
    truth = frames([(1, A)], [(1, A)])
    assert identity_scores(truth, frames([(5, A)], [(5, A)]))["idf1"] == pytest.approx(1.0)
    empty = identity_scores(truth, frames([], []))
    assert empty["idf1"] == 0.0 and empty["idfn"] == 2
    with pytest.raises(ValueError, match="2 ground-truth frames but 1 tracker frames"):
        clear_mot(truth, frames([]))
