"""edgedet.device.rle, the runtime's encoder, against pycocotools' encode: strings, stacks encoded in their boxes,
edge masks; read back with the host's decoder (edgedet.rle)."""
import numpy as np
import pytest

from edgedet.device import rle_encode
from edgedet.device.rle import counts_to_strings, tight_boxes
from edgedet.rle import counts_to_string, rle_decode, rle_to_bbox, string_to_counts

mask_api = pytest.importorskip("pycocotools.mask")


def _coco(mask):
    return mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))


@pytest.mark.parametrize("mask", [
    np.zeros((5, 7), bool), np.ones((5, 7), bool), np.eye(6, dtype=bool), np.ones((1, 1), bool), np.zeros((1, 1), bool),
])
def test_edge_masks_round_trip(mask):
    ref = _coco(mask)
    mine = rle_encode(mask)
    assert mine["counts"] == ref["counts"].decode()
    assert np.array_equal(rle_decode(mine), mask)
    assert np.array_equal(rle_to_bbox(mine), mask_api.toBbox(ref))


def test_large_runs_and_negative_deltas_round_trip():
    m = np.zeros((1000, 900), bool)
    m[:, 300:700] = True  # runs > 2**16
    m[10:12, 5] = True  # a short run after long ones: negative deltas in the string
    ref = _coco(m)
    mine = rle_encode(m)
    assert mine["counts"] == ref["counts"].decode()
    assert np.array_equal(string_to_counts(mine["counts"]), string_to_counts(ref["counts"]))
    assert np.array_equal(rle_decode(mine), m)


def _instance_stack(rng, n, h, w):
    """n masks of an (h, w) frame, each zero outside a random box (some touch the border, some are empty)."""
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        kind = i % 6
        if kind == 0:
            continue  # empty
        y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        if kind == 1:
            y0, y1 = 0, h  # full height: runs join across columns
        elif kind == 2:
            y0, x0 = 0, 0  # top-left corner
        elif kind == 3:
            y1, x1 = h, w  # bottom-right corner: a run may end at the last pixel
        masks[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < [0.5, 1.0, 0.95][i % 3]
    return masks


@pytest.mark.parametrize("seed", range(4))
def test_stack_encoding_in_boxes_matches_pycocotools(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        masks = _instance_stack(rng, int(rng.integers(1, 8)), h, w)
        for mine, m in zip(rle_encode(masks), masks):
            assert mine == {"size": [h, w], "counts": _coco(m)["counts"].decode()}


@pytest.mark.parametrize("seed", range(3))
def test_stack_encoding_in_given_spans_equals_the_scan(seed):
    """Spans looser than the tight boxes (as the mask builders give them: whole boxes, frame edges, empty masks)
    encode exactly what the scan of the stack encodes."""
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        masks = _instance_stack(rng, int(rng.integers(1, 8)), h, w)
        tight = tight_boxes(masks)
        grow = rng.integers(0, 4, tight.shape)
        spans = np.clip(tight + grow * [-1, 1, -1, 1], 0, [h, h, w, w])
        spans[~masks.any(axis=(1, 2))] = rng.integers(0, min(h, w), 4)[[0, 0, 1, 1]] + [0, 1, 0, 1]
        spans[:, 1::2] = np.minimum(spans[:, 1::2], [h, w])
        assert rle_encode(masks, spans=spans) == rle_encode(masks)
        assert rle_encode(masks[0], spans=spans[0]) == rle_encode(masks[0])


@pytest.mark.parametrize("fill", ["empty", "full", "first_column", "last_column", "corner", "top_and_bottom_rows"])
def test_stack_encoding_edge_masks(fill):
    masks = np.zeros((2, 5, 7), bool)
    if fill == "full":
        masks[0] = True
    elif fill == "first_column":
        masks[0, :, 0] = True
    elif fill == "last_column":
        masks[0, 2:, -1] = True
    elif fill == "corner":
        masks[0, -1, -1] = True
    elif fill == "top_and_bottom_rows":
        masks[0, [0, -1]] = True  # each column's last pixel meets the next column's first
    masks[1] = masks[0, ::-1, ::-1]
    for mine, m in zip(rle_encode(masks), masks):
        assert mine["counts"] == _coco(m)["counts"].decode()
        assert np.array_equal(rle_decode(mine), m)


def test_tight_boxes_bound_the_true_pixels():
    masks = _instance_stack(np.random.default_rng(7), 12, 30, 40)
    for (r0, r1, c0, c1), m in zip(tight_boxes(masks), masks):
        ys, xs = np.nonzero(m)
        assert (r0, r1, c0, c1) == ((ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) if len(ys) else (0, 0, 0, 0))


def test_batch_strings_equal_one_by_one():
    rng = np.random.default_rng(3)
    groups = [rng.integers(0, 1 << int(rng.integers(1, 28)), int(rng.integers(0, 9))) for _ in range(50)]  # + and - deltas
    offsets = np.concatenate([[0], np.cumsum([len(g) for g in groups])])
    strings = counts_to_strings(np.concatenate(groups), offsets)
    for g, text in zip(groups, strings):
        assert text == counts_to_string(g)
        assert np.array_equal(string_to_counts(text), g)


def test_stack_encode_gives_a_list():
    masks = np.zeros((3, 4, 4), bool)
    masks[1, :2] = True
    rles = rle_encode(masks)
    assert len(rles) == 3
    assert np.array_equal(rle_decode(rles), masks)
