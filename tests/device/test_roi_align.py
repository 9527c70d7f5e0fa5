"""RoI Align (device/roi_align.py and its torch twin edgedet/models/roi_align.py) against a plain per-bin loop
written from the aligned RoIAlign definition (Detectron2 / torchvision's C++ kernel), torch against NumPy, the
gradient, and the FPN level rule."""
import math

import numpy as np
import pytest

from edgedet.device.roi_align import fpn_levels, roi_align, roi_align_levels


def bilinear_reference(plane, y, x):
    """torchvision's bilinear_interpolate, line by line: one (H, W) plane at one continuous point."""
    height, width = plane.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * plane[y_low, x_low] + hy * lx * plane[y_low, x_high]
            + ly * hx * plane[y_high, x_low] + ly * lx * plane[y_high, x_high])


def roi_align_reference(features, rois, spatial_scale, output_size, sampling_ratio=2):
    """Aligned RoIAlign as a loop over RoIs, channels, bins and samples (float64)."""
    out_h, out_w = output_size
    out = np.zeros((len(rois), features.shape[1], out_h, out_w))
    for r, (b, x1, y1, x2, y2) in enumerate(np.asarray(rois, dtype=np.float64)):
        start_x, start_y = x1 * spatial_scale - 0.5, y1 * spatial_scale - 0.5
        bin_w = (x2 * spatial_scale - 0.5 - start_x) / out_w
        bin_h = (y2 * spatial_scale - 0.5 - start_y) / out_h
        for c in range(features.shape[1]):
            plane = np.asarray(features[int(b), c], dtype=np.float64)
            for ph in range(out_h):
                for pw in range(out_w):
                    total = 0.0
                    for iy in range(sampling_ratio):
                        y = start_y + ph * bin_h + (iy + 0.5) * bin_h / sampling_ratio
                        for ix in range(sampling_ratio):
                            x = start_x + pw * bin_w + (ix + 0.5) * bin_w / sampling_ratio
                            total += bilinear_reference(plane, y, x)
                    out[r, c, ph, pw] = total / (sampling_ratio * sampling_ratio)
    return out


def random_rois(rng, count, batch, size_hw):
    """RoIs in input pixels of a `size_hw` image: ordinary ones, ones reaching past every border, tiny ones."""
    height, width = size_hw
    x1 = rng.uniform(-0.3 * width, width, count)
    y1 = rng.uniform(-0.3 * height, height, count)
    w = rng.uniform(0.0, 0.8 * width, count)
    h = rng.uniform(0.0, 0.8 * height, count)
    w[: count // 4] = rng.uniform(0.0, 1.5, count // 4)  # tiny, down to empty
    h[: count // 4] = rng.uniform(0.0, 1.5, count // 4)
    index = rng.integers(0, batch, count)
    return np.stack([index, x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


def test_one_bin_of_a_whole_map_is_its_sample_average():
    features = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)  # value = 4 * row + col
    rois = np.array([[0, 0, 0, 4, 4]], dtype=np.float32)  # the whole map at stride 1
    # samples at continuous 1 and 3 -> pixel coordinates 0.5 and 2.5; the plane is linear, so the mean is its value
    # at the mean point (1.5, 1.5): 4 * 1.5 + 1.5
    assert roi_align(features, rois, 1.0, (1, 1))[0, 0, 0, 0] == pytest.approx(7.5)


def test_a_sample_beyond_the_border_margin_counts_zero():
    features = np.ones((1, 1, 4, 4), dtype=np.float32)
    # x from 8 to 12 at stride 1: samples at 8.5..11.5 - 0.5, all beyond W = 4
    assert roi_align(features, np.array([[0, 8, 0, 12, 4]], np.float32), 1.0, (2, 2)).max() == 0.0
    # samples at y in [-1, 0) are clamped to row 0 and count in full
    np.testing.assert_allclose(roi_align(features, np.array([[0, 0, -0.5, 4, 0.5]], np.float32), 1.0, (1, 2)), 1.0)


@pytest.mark.parametrize("scale, output_size, sampling_ratio", [(1 / 8, (7, 7), 2), (1 / 16, (3, 5), 1),
                                                                (1 / 4, (2, 2), 3)])
def test_numpy_equals_the_loop(scale, output_size, sampling_ratio):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 3, 10, 12)).astype(np.float32)
    rois = random_rois(rng, 24, 2, (10 / scale, 12 / scale))
    ours = roi_align(features, rois, scale, output_size, sampling_ratio)
    assert ours.shape == (24, 3) + output_size and ours.dtype == np.float32
    np.testing.assert_allclose(ours, roi_align_reference(features, rois, scale, output_size, sampling_ratio),
                               atol=1e-5)


def test_torch_equals_numpy_and_the_loop():
    torch = pytest.importorskip("torch")
    from edgedet.models import roi_align as torch_roi_align

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    features = rng.normal(size=(3, 8, 20, 16)).astype(np.float32)
    rois = random_rois(rng, 64, 3, (160, 128))
    ours = torch_roi_align.roi_align(torch.from_numpy(features), torch.from_numpy(rois), 1 / 8, (7, 7)).numpy()
    np.testing.assert_allclose(ours, roi_align(features, rois, 1 / 8, (7, 7)), atol=1e-4)
    np.testing.assert_allclose(ours[:8], roi_align_reference(features, rois[:8], 1 / 8, (7, 7)), atol=1e-4)


def test_gradient_reaches_the_features():
    torch = pytest.importorskip("torch")
    from edgedet.models import roi_align as torch_roi_align

    rng = np.random.default_rng(2)
    features = torch.from_numpy(rng.normal(size=(2, 2, 5, 6))).requires_grad_(True)
    rois = torch.tensor([[0, 3.0, 2.0, 30.0, 33.0], [1, -5.0, 4.0, 20.0, 12.0], [1, 10.0, 10.0, 10.5, 11.0]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: torch_roi_align.roi_align(f, rois, 1 / 8, (3, 2)), (features,))
    torch_roi_align.roi_align(features, rois, 1 / 8, (3, 2)).sum().backward()
    assert features.grad.abs().sum() > 0


@pytest.mark.parametrize("side, level", [(0.0, 3), (12.0, 3), (55.9, 3), (111.9, 3), (112.0, 4), (223.0, 4),
                                         (224.0, 5), (320.0, 5), (5000.0, 5)])
def test_fpn_level_of_known_sizes(side, level):
    rois = np.array([[0, 10.0, 20.0, 10.0 + side, 20.0 + side]])
    assert fpn_levels(rois, 3, 5).tolist() == [level]


def test_fpn_level_uses_the_area_and_twins_agree():
    torch = pytest.importorskip("torch")
    from edgedet.models import roi_align as torch_roi_align

    rois = np.array([[0, 0, 0, 448, 28], [0, 0, 0, 56, 896], [0, 0, 0, 0, 500]], dtype=np.float32)  # sides 112, 224, 0
    assert fpn_levels(rois, 3, 5).tolist() == [4, 5, 3]
    assert torch_roi_align.fpn_levels(torch.from_numpy(rois), 3, 5).tolist() == [4, 5, 3]


def test_levels_pool_each_roi_from_its_level_in_input_order():
    rng = np.random.default_rng(3)
    strides = (8, 16, 32)
    maps = [rng.normal(size=(2, 4, 320 // s, 320 // s)).astype(np.float32) for s in strides]
    rois = np.array([[1, 0, 0, 200, 200], [0, 10, 10, 30, 40], [1, 50, 60, 190, 180], [0, 0, 0, 300, 320]],
                    dtype=np.float32)
    ours = roi_align_levels(maps, strides, rois, (7, 7))
    for row, level in zip(range(len(rois)), fpn_levels(rois, 3, 5)):
        index = int(level) - 3
        expected = roi_align(maps[index], rois[row:row + 1], 1 / strides[index], (7, 7))
        np.testing.assert_array_equal(ours[row:row + 1], expected)
    assert sorted(fpn_levels(rois, 3, 5).tolist()) == [3, 4, 4, 5]


def test_levels_torch_equals_numpy():
    torch = pytest.importorskip("torch")
    from edgedet.models import roi_align as torch_roi_align

    rng = np.random.default_rng(4)
    strides = (8, 16, 32)
    maps = [rng.normal(size=(2, 4, 160 // s, 192 // s)).astype(np.float32) for s in strides]
    rois = random_rois(rng, 40, 2, (160, 192))
    ours = torch_roi_align.roi_align_levels([torch.from_numpy(m) for m in maps], strides, torch.from_numpy(rois),
                                            (14, 14)).numpy()
    np.testing.assert_allclose(ours, roi_align_levels(maps, strides, rois, (14, 14)), atol=1e-4)


def test_no_rois_gives_an_empty_result():
    features = np.zeros((1, 2, 4, 4), dtype=np.float32)
    assert roi_align(features, np.zeros((0, 5), np.float32), 0.25, (7, 7)).shape == (0, 2, 7, 7)
    assert roi_align_levels([features], (8,), np.zeros((0, 5), np.float32), (7, 7)).shape == (0, 2, 7, 7)
    assert not math.isnan(float(roi_align(features, np.array([[0, 1, 1, 1, 1]], np.float32), 0.25, (2, 2)).sum()))
