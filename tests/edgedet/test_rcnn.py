"""The two-stage detector (edgedet/models/rcnn.py, edgedet/rcnn_loss.py, device/rcnn_anchors.py): anchors and the
RPN output order by hand, proposal selection on a hand-made case, target matching, stage 1's outputs, training on a
tiny synthetic batch, and predict's outputs."""
from dataclasses import asdict

import numpy as np
import pytest
import torch

from edgedet.device.errors import EdgedetError
from edgedet.device.rcnn_anchors import anchors_per_level, cell_anchors, flatten_rpn_level, level_anchors
from edgedet.loss import Targets
from edgedet.models.rcnn import RCNNConfig, build_rcnn, per_class_nms, select_proposals, stage1_output_names
from edgedet.models.rcnn import flatten_rpn_level as torch_flatten_rpn_level
from edgedet.rcnn_loss import mask_targets, match_boxes

torch.set_num_threads(1)
R2 = np.sqrt(2.0)


def test_cell_anchors_by_hand():
    expected = [[-8 * R2, -4 * R2, 8 * R2, 4 * R2],  # size 16, h/w 0.5: w = 16 * sqrt 2, h = 16 / sqrt 2
                [-8, -8, 8, 8], [-4 * R2, -8 * R2, 4 * R2, 8 * R2], [-16, -16, 16, 16]]
    np.testing.assert_allclose(cell_anchors([16, 32], [0.5, 1.0, 2.0])[[0, 1, 2, 4]], expected, rtol=1e-6)
    assert cell_anchors([16, 32], [0.5, 1.0, 2.0]).shape == (6, 4)


def test_level_anchors_are_ordered_row_column_anchor():
    anchors = level_anchors((64, 96), 32, [16, 32], [1.0])  # a 2 x 3 grid, 2 anchors per cell
    assert anchors.shape == (12, 4) and anchors.dtype == np.float32
    np.testing.assert_array_equal(anchors[0], [8, 8, 24, 24])  # row 0, col 0, size 16, centre (16, 16)
    np.testing.assert_array_equal(anchors[1], [0, 0, 32, 32])  # row 0, col 0, size 32
    np.testing.assert_array_equal(anchors[2], [40, 8, 56, 24])  # row 0, col 1, size 16, centre (48, 16)
    np.testing.assert_array_equal(anchors[7], [0, 32, 32, 64])  # row 1, col 0, size 32, centre (16, 48)
    np.testing.assert_array_equal(anchors[11], [64, 32, 96, 64])  # row 1, col 2, size 32, centre (80, 48)


def test_default_anchor_counts():
    config = RCNNConfig()
    levels = anchors_per_level((320, 320), (8, 16, 32), config.anchor_sizes, config.anchor_ratios)
    assert [len(a) for a in levels] == [40 * 40 * 6, 20 * 20 * 6, 10 * 10 * 6]
    assert config.num_anchors == 6


def test_flattened_rpn_outputs_follow_the_anchor_order():
    b, a, h, w = 2, 3, 4, 5
    obj = np.arange(b * a * h * w, dtype=np.float32).reshape(b, a, h, w)
    box = np.arange(b * a * 4 * h * w, dtype=np.float32).reshape(b, a * 4, h, w)
    logits, deltas = flatten_rpn_level(obj, box)
    i, j, k = 2, 3, 1
    flat = (i * w + j) * a + k
    assert logits[1, flat] == obj[1, k, i, j]
    np.testing.assert_array_equal(deltas[1, flat], box[1, 4 * k:4 * k + 4, i, j])
    ours = torch_flatten_rpn_level(torch.from_numpy(obj), torch.from_numpy(box))
    np.testing.assert_array_equal(ours[0].numpy(), logits)
    np.testing.assert_array_equal(ours[1].numpy(), deltas)


def test_proposal_selection_by_hand():
    level1 = torch.tensor([[0, 0, 10, 10], [20, 20, 40, 40], [22, 22, 42, 42], [50, 50, 70, 70], [60, 0, 61, 0.5],
                           [0, 30, 10, 40]], dtype=torch.float32)
    logits1 = torch.tensor([[3.0, 2.0, 1.9, 5.0, 4.0, -1.0]])
    deltas1 = torch.zeros(1, 6, 4)
    deltas1[0, 0, 0] = 0.5  # dx: centre + 0.5 * width -> [5, 0, 15, 10]
    level2 = torch.tensor([[21, 21, 41, 41]], dtype=torch.float32)  # IoU 0.82 with level 1's [20, 20, 40, 40]
    logits2, deltas2 = torch.tensor([[2.5]]), torch.zeros(1, 1, 4)
    (boxes, scores), = select_proposals([logits1, logits2], [deltas1, deltas2], [level1, level2], (64, 64),
                                        pre_nms_top_k=5, post_nms_top_k=10, nms_iou=0.6, min_side=1.0)
    # [50, 50, 70, 70] is clipped to the image; [60, 0, 61, 0.5] is too low; [0, 30, 10, 40] is beyond the top 5
    # of its level; [20, 20, 40, 40] loses to the other level's [21, 21, 41, 41], [22, 22, 42, 42] to that too
    np.testing.assert_allclose(boxes.numpy(), [[50, 50, 64, 64], [5, 0, 15, 10], [21, 21, 41, 41]])
    np.testing.assert_allclose(scores.numpy(), torch.sigmoid(torch.tensor([5.0, 3.0, 2.5])).numpy(), rtol=1e-6)
    (boxes, _), = select_proposals([logits1, logits2], [deltas1, deltas2], [level1, level2], (64, 64),
                                   pre_nms_top_k=6, post_nms_top_k=2, nms_iou=0.6, min_side=1.0)
    assert len(boxes) == 2


def test_match_boxes_by_hand():
    iou = np.array([[0.8, 0.1], [0.5, 0.2], [0.1, 0.25], [0.0, 0.05]])
    labels, matched = match_boxes(iou, 0.7, 0.3, best_per_truth=False)
    assert labels.tolist() == [1, -1, 0, 0] and matched.tolist() == [0, 0, 1, 1]
    labels, _ = match_boxes(iou, 0.7, 0.3, best_per_truth=True)  # box 1's best candidate (row 2) becomes positive
    assert labels.tolist() == [1, -1, 1, 0]
    labels, matched = match_boxes(np.zeros((3, 0)), 0.7, 0.3, best_per_truth=True)
    assert labels.tolist() == [0, 0, 0]


def test_mask_targets_crop_the_ground_truth_mask_to_the_roi():
    masks = torch.zeros(2, 20, 20)
    masks[1, 5:15, 5:15] = 1.0  # input pixels 20..60 at stride 4
    inside = mask_targets(masks, torch.tensor([[0.0, 22, 22, 58, 58]]), torch.tensor([1]), 28)
    assert inside.shape == (1, 28, 28) and bool((inside == 1).all())
    exact = mask_targets(masks, torch.tensor([[0.0, 20, 20, 60, 60]]), torch.tensor([1]), 28)[0]
    # on the mask's own box the edge samples straddle its border: corners (0.68 * 0.68 < 0.5) fall off
    assert bool((exact[1:-1, 1:-1] == 1).all()) and exact[0, 0] == 0
    assert float(mask_targets(masks, torch.tensor([[0.0, 20, 20, 60, 60]]), torch.tensor([0]), 28).sum()) == 0
    half = mask_targets(masks, torch.tensor([[0.0, 0, 20, 40, 60]]), torch.tensor([1]), 28)[0]
    assert bool((half[:, :13] == 0).all()) and bool((half[:, 15:] == 1).all())


def test_config_round_trips_and_rejects_bad_values():
    config = RCNNConfig(num_classes=3, anchor_sizes=[[8, 16], [32, 64], [128, 256]])
    assert RCNNConfig(**asdict(config)) == config
    for bad in ({"preset": "n"}, {"input_size_hw": (300, 320)}, {"mask_size": 14},
                {"anchor_sizes": [[16.0], [32.0, 64.0], [128.0]]}):
        with pytest.raises(EdgedetError):
            RCNNConfig(**bad)


def test_stage1_outputs_have_the_documented_names_and_shapes():
    model = build_rcnn(RCNNConfig())
    outputs = model.stage1(torch.rand(2, 3, 320, 320))
    assert model.stage1_output_names == stage1_output_names() == (
        "p3_feat", "p4_feat", "p5_feat", "p3_rpn_obj", "p3_rpn_box", "p4_rpn_obj", "p4_rpn_box", "p5_rpn_obj",
        "p5_rpn_box")
    shapes = [tuple(t.shape) for t in outputs]
    assert shapes == [(2, 64, 40, 40), (2, 64, 20, 20), (2, 64, 10, 10), (2, 6, 40, 40), (2, 24, 40, 40),
                      (2, 6, 20, 20), (2, 24, 20, 20), (2, 6, 10, 10), (2, 24, 10, 10)]


@pytest.fixture(scope="module")
def synthetic_batch(tmp_path_factory):
    """Two 320x320 synthetic images through TrainDataset and collate: (images, Targets with masks, class count)."""
    from edgedet.data import load_dataset
    from edgedet.data.synth import SynthConfig, write_split
    from edgedet.train_data import AugmentConfig, TrainDataset, collate

    out = tmp_path_factory.mktemp("rcnn_synth")
    write_split(out, "train", 2, 0, SynthConfig(max_things=6))
    dataset = load_dataset(out, split="train")
    train = TrainDataset(dataset.samples, (320, 320), AugmentConfig(), 0, with_masks=True, with_semantic=False)
    images, targets, _ = collate([train[i] for i in range(len(train))])
    assert len(targets.boxes) > 0
    return images, targets, len(dataset.names)


@pytest.fixture(scope="module")
def overfit(synthetic_batch):
    """A model trained 30 steps on the one batch, with its losses and loss parts per step."""
    images, targets, num_classes = synthetic_batch
    torch.manual_seed(0)
    model = build_rcnn(RCNNConfig(num_classes=num_classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses, parts = [], []
    for _ in range(30):
        loss, step_parts = model(images, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        parts.append(step_parts)
    return model, losses, parts


def test_training_parts_are_finite_and_the_loss_falls(overfit):
    """The total falls; the RPN and mask terms fall steadily. The box-head terms may rise for a while: as the RPN
    learns, more of the sampled proposals are foreground (up to the 25% cap), each with its own class and box."""
    _, losses, parts = overfit
    assert all(set(p) == {"rpn_obj", "rpn_box", "cls", "box", "mask"} for p in parts)
    assert all(np.isfinite(v) for p in parts for v in p.values())
    assert np.mean(losses[-5:]) < 0.7 * losses[0]
    assert np.mean([p["rpn_obj"] for p in parts[-5:]]) < np.mean([p["rpn_obj"] for p in parts[:3]])
    assert np.mean([p["mask"] for p in parts[-5:]]) < np.mean([p["mask"] for p in parts[:3]])


def test_training_without_masks_or_boxes(synthetic_batch):
    images, targets, num_classes = synthetic_batch
    torch.manual_seed(1)
    model = build_rcnn(RCNNConfig(num_classes=num_classes))
    loss, parts = model(images, Targets(boxes=targets.boxes))
    assert set(parts) == {"rpn_obj", "rpn_box", "cls", "box"} and np.isfinite(float(loss.detach()))
    empty = Targets(boxes=torch.zeros(0, 6), masks=torch.zeros(0, 80, 80))
    loss, parts = model(images, empty)
    loss.backward()
    assert np.isfinite(float(loss.detach())) and parts["rpn_box"] == parts["box"] == parts["mask"] == 0.0
    assert model.heads.mask_head.body[0].weight.grad is not None  # the mask head stays in the graph (DDP needs it)


def test_predict_returns_well_formed_detections(overfit, synthetic_batch):
    model, _, _ = overfit
    images, _, num_classes = synthetic_batch
    model.train()
    results = model.predict(images, score_threshold=0.001, iou=0.5, max_det=20)
    assert model.training and len(results) == len(images)  # predict runs in eval mode and restores the mode
    for result in results:
        n = len(result["xyxy"])
        assert 0 < n <= 20
        assert result["xyxy"].shape == (n, 4) and result["xyxy"].dtype == torch.float32
        assert result["scores"].shape == (n,) and result["class_ids"].shape == (n,)
        assert result["masks"].shape == (n, 28, 28) and result["masks"].dtype == torch.float32
        assert bool((result["scores"] >= 0.001).all() and (result["scores"] <= 1).all())
        assert bool((result["scores"][:-1] >= result["scores"][1:]).all())
        assert bool(((result["class_ids"] >= 0) & (result["class_ids"] < num_classes)).all())
        boxes = result["xyxy"]
        assert bool((boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= 320).all())
        assert bool(((result["masks"] >= 0) & (result["masks"] <= 1)).all())


def test_per_class_masks(synthetic_batch):
    images, targets, num_classes = synthetic_batch
    torch.manual_seed(2)
    model = build_rcnn(RCNNConfig(num_classes=num_classes, class_agnostic_masks=False))
    assert model.heads.mask_head(torch.zeros(3, 64, 14, 14)).shape == (3, num_classes, 28, 28)
    loss, parts = model(images, targets)
    loss.backward()
    assert np.isfinite(parts["mask"])
    results = model.predict(images[:1], score_threshold=0.0, max_det=5)
    assert results[0]["masks"].shape == (len(results[0]["xyxy"]), 28, 28)


def test_predict_without_detections_gives_empty_well_shaped_arrays(overfit, synthetic_batch):
    model, _, _ = overfit
    images, _, _ = synthetic_batch
    for result in model.predict(images, score_threshold=1.0):
        assert result["xyxy"].shape == (0, 4) and result["scores"].shape == (0,)
        assert result["class_ids"].shape == (0,) and result["masks"].shape == (0, 28, 28)


def test_predict_with_zero_box_deltas_returns_proposals(synthetic_batch):
    images, _, num_classes = synthetic_batch
    torch.manual_seed(3)
    model = build_rcnn(RCNNConfig(num_classes=num_classes)).eval()
    torch.nn.init.zeros_(model.heads.box_head.box.weight)
    torch.nn.init.zeros_(model.heads.box_head.box.bias)
    features, logits, deltas = model._first_stage(images[:1])
    proposals = model._proposals(images[:1], logits, deltas, training=False)[0][0]
    result = model.predict(images[:1], score_threshold=0.0, iou=1.0, max_det=1000)[0]
    assert len(result["xyxy"]) == len(proposals) * num_classes  # iou 1.0: NMS keeps every (proposal, class) pair
    distance = (result["xyxy"][:, None, :] - proposals[None, :, :]).abs().amax(dim=2).min(dim=1).values
    assert float(distance.max()) < 1e-3


def test_per_class_nms_by_hand():
    boxes = torch.tensor([[[0, 0, 10, 10], [0, 0, 10, 10]], [[1, 1, 11, 11], [50, 50, 60, 60]]], dtype=torch.float32)
    probs = torch.tensor([[0.9, 0.8], [0.7, 0.01]])
    result = per_class_nms(boxes, probs, score_threshold=0.05, iou=0.5, max_det=10)
    # class 0: the RoI-1 box overlaps RoI 0's (IoU 0.68) and goes; class 1 keeps its box; 0.01 is below threshold
    assert result["class_ids"].tolist() == [0, 1]
    np.testing.assert_allclose(result["scores"].numpy(), [0.9, 0.8])
    np.testing.assert_array_equal(result["xyxy"].numpy(), [[0, 0, 10, 10], [0, 0, 10, 10]])
    assert len(per_class_nms(boxes, probs, 0.05, 0.5, max_det=1)["xyxy"]) == 1


def test_rpn_loss_by_hand():
    from edgedet.rcnn_loss import ImageTruth, rpn_loss

    truth = ImageTruth(torch.tensor([[10.0, 10.0, 30.0, 30.0]]), torch.tensor([2]), torch.tensor([0]))
    # anchor 0 is the box (positive), anchor 1 overlaps it with IoU 0.5 (ignored), anchor 2 is far (negative)
    anchors = np.array([[10, 10, 30, 30], [10, 10, 30, 50], [100, 100, 120, 120]], dtype=np.float32)
    logits, deltas = torch.zeros(1, 3), torch.zeros(1, 3, 4)
    obj, box = rpn_loss(logits, deltas, anchors, [truth], 0.7, 0.3, 256, 0.5)
    assert float(obj) == pytest.approx(np.log(2.0)) and float(box) == 0.0
    deltas[0, 0, 0] = 1.0  # smooth L1 (beta 1/9) of 1 is 1 - 1/18, over the two sampled anchors
    deltas[0, 1, 0] = 5.0  # ignored anchors contribute nothing
    _, box = rpn_loss(logits, deltas, anchors, [truth], 0.7, 0.3, 256, 0.5)
    assert float(box) == pytest.approx((1 - 1 / 18) / 2)


def test_ground_truth_boxes_join_the_proposals():
    from edgedet.rcnn_loss import ImageTruth, sample_rois

    truth = ImageTruth(torch.tensor([[10.0, 10.0, 30.0, 30.0], [50, 50, 90, 80]]), torch.tensor([2, 0]),
                       torch.tensor([3, 4]))
    proposals = torch.tensor([[11.0, 11.0, 31.0, 31.0], [200, 200, 220, 220]])
    sample = sample_rois([torch.zeros(0, 4), proposals], [ImageTruth(torch.zeros(0, 4), torch.zeros(0).long(),
                                                                     torch.zeros(0).long()), truth], 0.5, 128, 0.25)
    assert sample.rois[:, 0].tolist() == [1.0] * 4  # image 0 had neither proposals nor boxes
    foreground = sample.labels > 0
    assert sorted(sample.labels[foreground].tolist()) == [1, 3, 3]  # class id + 1; the near proposal is class 2's
    assert sorted(sample.truth_rows[foreground].tolist()) == [3, 3, 4]
    exact = (sample.rois[:, 1:] == truth.xyxy[1]).all(dim=1)
    assert torch.equal(sample.box_targets[exact], torch.zeros(1, 4))


def test_mixed_precision_step_keeps_float32_losses_and_boxes(synthetic_batch):
    images, targets, num_classes = synthetic_batch
    torch.manual_seed(4)
    model = build_rcnn(RCNNConfig(num_classes=num_classes))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, parts = model(images, targets)
        results = model.predict(images[:1], score_threshold=0.0, max_det=5)
    loss.backward()
    assert loss.dtype == torch.float32 and all(np.isfinite(v) for v in parts.values())
    assert results[0]["xyxy"].dtype == torch.float32 and results[0]["masks"].dtype == torch.float32
