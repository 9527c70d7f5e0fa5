"""Instance masks from prototypes and semantic maps, against torch F.interpolate."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgedet.device.errors import EdgedetError
from edgedet.device.letterbox import Letterbox
from edgedet.device.masks import (frame_to_map_coords, instance_masks, mask_spans, semantic_logits_in_frame,
                                  semantic_map)
from edgedet.device.upsample import linear_taps_at


def torch_input_masks(protos, coefs, input_hw):
    """Reference: logits coefs @ protos upsampled bilinearly (align_corners=False) to the input, > 0."""
    logits = torch.einsum("nm,mhw->nhw", torch.from_numpy(coefs), torch.from_numpy(protos))
    up = F.interpolate(logits[None], size=input_hw, mode="bilinear", align_corners=False)[0]
    return (up > 0).numpy(), up.numpy()


def box_region(shape_hw, box):
    """bool (H, W): pixels whose centres lie inside the box."""
    ys, xs = np.mgrid[:shape_hw[0], :shape_hw[1]] + 0.5
    return (xs >= box[0]) & (xs < box[2]) & (ys >= box[1]) & (ys < box[3])


def input_map_to_frame(box: Letterbox, plane: np.ndarray) -> np.ndarray:
    """Reference: an (H, W) map over the network input, padding cut, resized (INTER_LINEAR) to the frame."""
    rows, cols = box.content_slices()
    return cv2.resize(np.ascontiguousarray(plane[rows, cols]), box.src_hw[::-1], interpolation=cv2.INTER_LINEAR)


def random_protos(rng, m=8, size=16):
    return rng.normal(size=(m, size, size)).astype(np.float32), rng.normal(size=(3, m)).astype(np.float32)


def test_identity_letterbox_equals_torch_upsample_cropped_to_box():
    rng = np.random.default_rng(0)
    protos, coefs = random_protos(rng)
    boxes = np.array([[3.2, 5.0, 40.7, 33.3], [0, 0, 64, 64], [30, 30, 31, 31]], np.float32)
    masks = instance_masks(protos, coefs, boxes, Letterbox.fit((64, 64), (64, 64)))
    ref, _ = torch_input_masks(protos, coefs, (64, 64))
    assert masks.shape == (3, 64, 64) and masks.dtype == bool
    for n, box in enumerate(boxes):
        np.testing.assert_array_equal(masks[n], ref[n] & box_region((64, 64), box))


def test_padded_letterbox_shifts_into_the_frame_exactly():
    rng = np.random.default_rng(1)
    protos, coefs = random_protos(rng)
    box = Letterbox.fit((48, 64), (64, 64))  # scale 1, 8 rows of padding on top
    xyxy_input = np.array([[2, 10, 60, 50], [10, 8, 20, 18], [0, 0, 64, 64]], np.float32)
    masks = instance_masks(protos, coefs, xyxy_input, box)
    ref, _ = torch_input_masks(protos, coefs, (64, 64))
    frame_boxes = box.boxes_to_original(xyxy_input)
    for n in range(3):
        np.testing.assert_array_equal(masks[n], ref[n, 8:56] & box_region((48, 64), frame_boxes[n]))


def test_scaled_frame_matches_upsample_then_resize_reference():
    rng = np.random.default_rng(2)
    protos, coefs = random_protos(rng, size=40)
    box = Letterbox.fit((240, 320), (160, 160))  # frame is 2x the content
    xyxy_input = np.array([[0, 20, 160, 140]] * 3, np.float32)
    masks = instance_masks(protos, coefs, xyxy_input, box)
    _, logits = torch_input_masks(protos, coefs, (160, 160))
    for n in range(3):
        ref = input_map_to_frame(box, logits[n]) > 0
        iou = (masks[n] & ref).sum() / max((masks[n] | ref).sum(), 1)
        assert iou > 0.97


def test_masks_only_inside_boxes_and_empty_boxes():
    protos = np.ones((2, 8, 8), np.float32)
    coefs = np.array([[1, 0], [0, 1]], np.float32)  # all logits positive
    box = Letterbox.fit((32, 32), (32, 32))
    masks = instance_masks(protos, coefs, np.array([[4, 4, 12, 20], [5, 5, 5, 9]], np.float32), box)
    assert masks[0].sum() == 8 * 16 and masks[0, 4:20, 4:12].all()
    assert not masks[1].any()
    assert instance_masks(protos, np.zeros((0, 2), np.float32), np.zeros((0, 4)), box).shape == (0, 32, 32)


def test_mask_spans_hold_every_mask_pixel():
    """`mask_spans` are the pixels whose centres lie in each box; masks built over boxes are False outside them."""
    boxes = np.array([[4.4, 4.6, 12.5, 20.0], [0.0, 0.0, 32.0, 32.0], [30.0, 9.0, 40.0, 9.4]], np.float32)
    spans = mask_spans(boxes, (32, 32))
    assert spans.dtype == np.int64 and spans.tolist() == [[5, 20, 4, 12], [0, 32, 0, 32], [9, 9, 30, 32]]
    protos = np.ones((1, 8, 8), np.float32)
    masks = instance_masks(protos, np.ones((3, 1), np.float32), boxes, Letterbox.fit((32, 32), (32, 32)))
    for (r0, r1, c0, c1), mask in zip(spans, masks):
        inside = np.zeros_like(mask)
        inside[r0:r1, c0:c1] = True
        assert mask[inside].all() and not mask[~inside].any()


@pytest.mark.parametrize("frame_hw", [(48, 64), (64, 48), (30, 100), (97, 61)])
def test_box_masks_equal_the_whole_frame_formula_cropped_to_each_box(frame_hw):
    """Each mask is the bilinear formula evaluated at every frame pixel (taps of the whole frame, all prototype
    cells), kept inside its box; boxes cross the padding, touch the frame's borders or cover no pixel centre."""
    rng = np.random.default_rng(sum(frame_hw))
    protos, _ = random_protos(rng, size=16)
    coefs = rng.normal(size=(12, 8)).astype(np.float32)
    box = Letterbox.fit(frame_hw, (64, 64))
    corners = rng.uniform(-8, 72, size=(12, 2, 2)).astype(np.float32)
    xyxy_input = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    xyxy_input[0] = [0, 0, 64, 64]
    xyxy_input[1] = [10.2, 10.2, 10.4, 10.4]
    masks = instance_masks(protos, coefs, xyxy_input, box)
    r0, r1, rw = linear_taps_at(frame_to_map_coords(np.arange(frame_hw[0]), 0, 16, box), 16)
    c0, c1, cw = linear_taps_at(frame_to_map_coords(np.arange(frame_hw[1]), 1, 16, box), 16)
    logits = np.tensordot(coefs, protos, axes=(1, 0))
    along_rows = logits[:, r0] + (logits[:, r1] - logits[:, r0]) * rw[:, None]
    frame = along_rows[:, :, c0] + (along_rows[:, :, c1] - along_rows[:, :, c0]) * cw
    inside = np.stack([box_region(frame_hw, b) for b in box.boxes_to_original(xyxy_input)])
    decided = np.abs(frame) > 1e-4  # summation order of coef @ protos may differ in the last bit
    np.testing.assert_array_equal(masks[decided], ((frame > 0) & inside)[decided])
    assert not masks[~inside].any()


def test_semantic_map_equals_torch_upsample_argmax():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 8, 8)).astype(np.float32)
    box = Letterbox.fit((48, 64), (64, 64))
    up = F.interpolate(torch.from_numpy(logits)[None], size=(64, 64), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(semantic_logits_in_frame(logits, box), up.numpy()[:, 8:56], atol=1e-5)
    labels = semantic_map(logits, box)
    assert labels.shape == (48, 64) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, up.argmax(0).numpy()[8:56])
    with pytest.raises(EdgedetError):
        semantic_map(logits[0], box)


def test_box_masks_are_pasted_inside_their_boxes_by_bilinear_resampling():
    from edgedet.device.masks import paste_box_masks

    logits = np.full((2, 4, 4), -1.0, np.float32)
    logits[0, :, :2] = 1.0  # the left half of the first box
    logits[1] = 1.0
    boxes = np.array([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 8.0, 8.0]], np.float32)
    masks = paste_box_masks(logits, boxes, (50, 60))
    assert masks.shape == (2, 50, 60) and masks.dtype == bool
    ys, xs = np.nonzero(masks[0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (20, 39, 10, 19)  # left half: x 10..19 of 10..29
    assert masks[1].sum() == 64 and masks[1, :8, :8].all()
    assert not paste_box_masks(logits, np.array([[5.0, 5, 5.2, 5.2], [70, 70, 80, 80]], np.float32), (50, 60)).any()
