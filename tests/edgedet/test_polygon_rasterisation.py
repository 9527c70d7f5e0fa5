"""One polygon rasterisation, pycocotools': training targets and panoptic ground truth (`Sample.instance_masks`)
and mask-AP ground truth (edgedet.metrics.coco through `segmentation_to_rle`) see pycocotools' pixels exactly."""
import cv2
import numpy as np
import pytest

from edgedet.data.sample import Sample
from edgedet.device.rle import rle_encode
from edgedet.rle import mask_to_polygons, polygons_to_mask, rle_decode, segmentation_to_rle

mask_api = pytest.importorskip("pycocotools.mask")

SHAPE_HW = (48, 64)
POLYGONS = {
    "convex": [[10.3, 5.7, 30.2, 8.1, 33.9, 20.4, 18.6, 25.4, 9.1, 17.2]],
    "concave": [[5.5, 5.5, 40.2, 5.5, 40.2, 12.7, 15.3, 12.7, 15.3, 30.1, 5.5, 30.1]],  # an L
    "star": [[32.0, 2.0, 36.1, 14.2, 49.0, 14.5, 38.6, 22.1, 42.5, 34.4, 32.0, 27.0, 21.5, 34.4, 25.4, 22.1,
              15.0, 14.5, 27.9, 14.2]],
    "multi_part_overlapping": [[4.2, 4.2, 24.8, 4.2, 24.8, 20.6, 4.2, 20.6],
                               [14.4, 10.1, 36.3, 10.1, 36.3, 30.7, 14.4, 30.7]],
    "multi_part_apart": [[2.0, 30.0, 12.5, 33.0, 7.0, 44.4], [50.1, 3.3, 60.7, 3.3, 55.2, 15.9]],
    "touching_the_edges": [[0.0, 0.0, 64.0, 0.0, 64.0, 10.5, 20.2, 48.0, 0.0, 48.0]],
    "crossing_the_edges": [[-5.3, 20.1, 30.0, -4.0, 70.2, 25.5, 33.3, 53.9]],
    "thin_sliver": [[3.1, 40.2, 60.8, 41.1, 60.9, 41.6, 3.2, 40.9]],
}


def pycocotools_counts(polygons, shape_hw) -> str:
    """pycocotools' compressed RLE string of an object's polygons: frPyObjects, merged over the polygons."""
    return mask_api.merge(mask_api.frPyObjects(polygons, *shape_hw))["counts"].decode()


def same_as_pycocotools(mask, polygons, shape_hw) -> bool:
    """Whether bool (H, W) `mask` is byte-identical, as COCO RLE, to pycocotools' rasterisation of `polygons`."""
    return rle_encode(mask)["counts"] == pycocotools_counts(polygons, shape_hw)


def fill_holes(mask):
    """The mask plus every background pixel not 4-connected to the image border."""
    flood = np.pad(mask, 1).astype(np.uint8)
    cv2.floodFill(flood, None, (0, 0), 2)
    return (flood != 2)[1:-1, 1:-1]


@pytest.mark.parametrize("name", sorted(POLYGONS))
def test_training_targets_are_pycocotools_pixels(name):
    polygons = POLYGONS[name]
    sample = Sample("unused.png", 1, SHAPE_HW, [[0, 0, 64, 48]], [0], segmentations=[polygons])
    target = sample.instance_masks()[0]  # what train_data warps into mask targets and evaluate builds panoptic GT from
    assert target.dtype == bool and target.any()
    assert same_as_pycocotools(target, polygons, SHAPE_HW)
    assert np.array_equal(rle_decode(segmentation_to_rle(polygons, *SHAPE_HW)), target)  # mask-AP ground truth


@pytest.mark.parametrize("seed", range(3))
def test_random_polygons_and_traced_masks_are_pycocotools_pixels(seed):
    rng = np.random.default_rng(seed)
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(5, 60, 2))
        k = int(rng.integers(3, 10))
        polygons = [(rng.random(2 * k) * np.array([w, h] * k) * 1.2 - 1).round(2).tolist()]
        mask = polygons_to_mask(polygons, (h, w))
        assert same_as_pycocotools(mask, polygons, (h, w))
        if mask.any():  # polygons traced from a mask come back to it (holes filled) under the same rasterisation
            traced = mask_to_polygons(mask)
            assert same_as_pycocotools(fill_holes(mask), traced, (h, w))
