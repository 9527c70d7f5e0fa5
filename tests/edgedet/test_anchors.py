"""k-means anchors (IoU distance): recovery of known clusters, ordering, level split, errors; and the loss's
anchor-shape assignment that uses them."""
import numpy as np
import pytest
import torch

from edgedet.device.errors import EdgedetError
from edgedet.loss import assign_level, bbox_ciou
from edgedet.models.anchors import kmeans_anchors, mean_best_iou, split_levels, wh_iou
from edgedet.models.model import DEFAULT_ANCHORS


def _clustered_boxes(centres, per_cluster=200, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([np.asarray(c) * rng.uniform(1 - spread, 1 + spread, (per_cluster, 2)) for c in centres])


def test_kmeans_recovers_well_separated_clusters_sorted_by_area():
    centres = [(10, 10), (20, 40), (40, 20), (80, 80), (150, 60), (60, 150)]
    anchors = kmeans_anchors(_clustered_boxes(centres), k=6, seed=1)
    areas = anchors.prod(axis=1)
    assert np.all(np.diff(areas) > 0)
    for centre in centres:
        assert wh_iou(np.array([centre]), anchors).max() > 0.9


def test_kmeans_fits_better_than_generic_anchors():
    wh = _clustered_boxes([(12, 12), (30, 30), (90, 90)], spread=0.2)
    anchors = kmeans_anchors(wh, k=9)
    generic = np.array([a for level in DEFAULT_ANCHORS for a in level])
    assert mean_best_iou(wh, anchors) > mean_best_iou(wh, generic) + 0.1


def test_kmeans_is_deterministic_per_seed_and_ignores_empty_boxes():
    wh = np.concatenate([_clustered_boxes([(10, 30), (50, 50), (100, 20)], spread=0.3), np.zeros((5, 2))])
    np.testing.assert_array_equal(kmeans_anchors(wh, k=3, seed=7), kmeans_anchors(wh, k=3, seed=7))
    assert (kmeans_anchors(wh, k=3) > 0).all()


def test_too_few_boxes_is_an_edgedet_error():
    with pytest.raises(EdgedetError, match="at least 9 boxes"):
        kmeans_anchors(np.ones((4, 2)), k=9)


def test_split_levels_puts_small_anchors_on_the_fine_level():
    anchors = np.array([[100, 100], [5, 5], [30, 30], [10, 10], [60, 60], [200, 150]], dtype=float)
    levels = split_levels(anchors, 3)
    assert levels == [[(5.0, 5.0), (10.0, 10.0)], [(30.0, 30.0), (60.0, 60.0)], [(100.0, 100.0), (200.0, 150.0)]]
    with pytest.raises(EdgedetError, match="evenly"):
        split_levels(anchors[:5], 3)


def test_assignment_uses_anchor_shape_ratio_and_neighbour_cells():
    # one 20x20 box centred at (36, 44) on a stride-8 grid of 10x10 cells: centre cell (col 4, row 5),
    # fractional position (0.5, 0.5) -> exactly 0.5 is neither < nor > 0.5, so no neighbours
    anchors = torch.tensor([[20.0, 20.0], [100.0, 10.0], [85.0, 85.0]])
    boxes = torch.tensor([[0, 1, 36.0, 44.0, 20.0, 20.0]])
    a = assign_level(boxes, anchors, 8, (10, 10), anchor_ratio=4.0)
    assert a.anchor.tolist() == [0]  # 100x10 (ratio 5 in w) and 85x85 (ratio 4.25) are rejected
    assert (a.col.tolist(), a.row.tolist()) == ([4], [5])
    # centre at fraction (0.75, 0.25): right neighbour (col 5) and upper neighbour (row 4) join the centre cell
    boxes = torch.tensor([[0, 1, 38.0, 42.0, 20.0, 20.0]])
    a = assign_level(boxes, anchors, 8, (10, 10), anchor_ratio=4.0)
    assert sorted(zip(a.col.tolist(), a.row.tolist())) == [(4, 4), (4, 5), (5, 5)]
    assert torch.all((a.box_xy > -0.5) & (a.box_xy < 1.5))


def test_ciou_is_one_for_identical_boxes_and_penalises_distance():
    box = torch.tensor([[5.0, 5.0, 4.0, 2.0]])
    assert float(bbox_ciou(box, box)) == pytest.approx(1.0, abs=1e-5)
    far = torch.tensor([[25.0, 5.0, 4.0, 2.0]])
    assert float(bbox_ciou(box, far)) < 0
