"""edgedet.rle, the host's COCO mask API, against pycocotools': decode, strings, area, toBbox, IoU, polygons."""
import numpy as np
import pytest

from edgedet.device.errors import EdgedetError
from edgedet.device.rle import rle_encode
from edgedet.rle import (counts_of_many, counts_to_string, mask_iou, mask_to_rle, polygons_to_rle, rle_area,
                         rle_compress, rle_decode, rle_to_bbox, segmentation_to_rle, string_to_counts,
                         strings_to_counts)

mask_api = pytest.importorskip("pycocotools.mask")


def _random_masks(seed, count=60):
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        if i % 3 == 0:
            m = np.zeros((h, w), bool)
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            m[y:y + int(rng.integers(1, 25)), x:x + int(rng.integers(1, 25))] = True
        else:
            m = rng.random((h, w)) < rng.random()
        yield m


def _coco(mask):
    return mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))


@pytest.mark.parametrize("seed", [0, 1])
def test_encode_matches_pycocotools_string_and_decodes_back(seed):
    for m in _random_masks(seed):
        ref = _coco(m)
        mine = rle_encode(m)
        assert mine["size"] == [m.shape[0], m.shape[1]]
        assert mine["counts"] == ref["counts"].decode()
        assert np.array_equal(rle_decode(mine), m)
        assert np.array_equal(rle_decode(ref), m)  # bytes counts from pycocotools decode too
        assert rle_area(mine) == int(mask_api.area(ref))
        assert np.array_equal(rle_to_bbox(mine), mask_api.toBbox(ref))


def test_uncompressed_counts_decode_and_compress_like_pycocotools():
    m = np.zeros((6, 5), bool)
    m[1:4, 2:4] = True
    counts = [13, 3, 3, 3, 8]  # column-major: 2 empty columns + 1 pixel, 3 on, 3 off, 3 on, rest off
    uncompressed = {"size": [6, 5], "counts": counts}
    assert np.array_equal(rle_decode(uncompressed), m)
    ref = mask_api.frPyObjects(uncompressed, 6, 5)
    assert rle_compress(uncompressed)["counts"] == ref["counts"].decode()
    assert counts_to_string(np.array(counts)) == ref["counts"].decode()


@pytest.mark.parametrize("seed", range(3))
def test_polygons_rasterise_pixel_identical_to_pycocotools(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(5, 60, 2))
        polys = []
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(3, 9))
            poly = rng.random(2 * k) * np.array([w, h] * k) * 1.3 - 2  # also crosses the border
            polys.append([float(v) for v in poly.round(int(rng.integers(0, 3)))])
        ref = mask_api.merge(mask_api.frPyObjects(polys, h, w))
        assert polygons_to_rle(polys, h, w)["counts"] == ref["counts"].decode()


def test_segmentation_to_rle_accepts_every_coco_form():
    poly = [[1.0, 1.0, 8.0, 1.0, 8.0, 6.0, 1.0, 6.0]]
    from_poly = segmentation_to_rle(poly, 10, 12)
    m = rle_decode(from_poly)
    assert segmentation_to_rle(rle_encode(m), 10, 12)["counts"] == from_poly["counts"]
    uncompressed = {"size": [10, 12], "counts": [int(c) for c in _counts(m)]}
    assert segmentation_to_rle(uncompressed, 10, 12)["counts"] == from_poly["counts"]
    with pytest.raises(EdgedetError):
        segmentation_to_rle(42, 10, 12)


def _counts(m):
    return mask_to_rle(m)["counts"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_iou_with_crowd_matches_pycocotools(seed):
    rng = np.random.default_rng(seed)
    h, w = 30, 40
    a = rng.random((5, h, w)) < 0.3
    b = rng.random((4, h, w)) < 0.3
    a[0] = False  # empty mask
    crowd = [0, 1, 0, 1]
    ref = mask_api.iou([_coco(m) for m in a], [_coco(m) for m in b], crowd)
    np.testing.assert_allclose(mask_iou(a, b, crowd), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mask_iou([rle_encode(m) for m in a], [rle_encode(m) for m in b], crowd), ref, atol=1e-12)
    assert mask_iou(a[:0], b).shape == (0, 4)


@pytest.mark.parametrize("bad", [
    {"size": [2, 2], "counts": "~~"},  # characters outside the code
    {"size": [2, 2], "counts": [1, 1]},  # runs do not cover the mask
    {"counts": "12"},  # no size
])
def test_bad_rle_is_an_edgedet_error(bad):
    with pytest.raises(EdgedetError):
        rle_decode(bad)


def test_batch_string_decoding_equals_one_by_one_and_pycocotools():
    masks = list(_random_masks(5, count=40)) + [np.zeros((0, 0), bool), np.ones((700, 300), bool)]
    refs = [_coco(m) if m.size else {"size": [0, 0], "counts": b""} for m in masks]
    flat, offsets = strings_to_counts([r["counts"] for r in refs])
    for i, (m, r) in enumerate(zip(masks, refs)):
        counts = flat[offsets[i]:offsets[i + 1]]
        assert np.array_equal(counts, string_to_counts(r["counts"]))
        if m.size:
            assert np.array_equal(rle_decode({"size": list(m.shape), "counts": counts.tolist()}), m)
    mixed = [refs[0], {"size": refs[1]["size"], "counts": string_to_counts(refs[1]["counts"]).tolist()}]
    flat, offsets = counts_of_many(mixed)
    assert np.array_equal(flat[offsets[1]:offsets[2]], string_to_counts(refs[1]["counts"]))
