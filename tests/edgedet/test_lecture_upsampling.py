"""The lecture's upsampling methods (edgedet.lecture.upsampling): equal to torch within 1e-5 and to the lecture's
2x2 -> 4x4 tables (the lecture's slides "Unpooling for Upsampling" to "Learnable Upsampling: Transposed Convolution")."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgedet.device.errors import EdgedetError
from edgedet.lecture import upsampling
from edgedet.lecture.upsampling import conv_transpose2d, max_unpool, upsample

LECTURE_INPUT = np.array([[1, 2], [3, 4]], np.float32)


def test_lecture_tables():
    np.testing.assert_array_equal(upsample(LECTURE_INPUT, (4, 4), "nearest"),
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    np.testing.assert_array_equal(upsample(LECTURE_INPUT, (4, 4), "bed_of_nails"),
                                  [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(upsample(LECTURE_INPUT, (4, 4), "bilinear"),
                               [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5],
                                [3, 3.25, 3.75, 4]], atol=1e-6)
    bicubic = upsample(LECTURE_INPUT, (4, 4), "bicubic")
    assert np.round(bicubic.astype(np.float64), 2).tolist() == [[0.68, 1.02, 1.56, 1.89], [1.35, 1.68, 2.23, 2.56],
                                             [2.44, 2.77, 3.32, 3.65], [3.11, 3.44, 3.98, 4.32]]


SIZES = [(2, 2, 4, 4), (5, 7, 13, 9), (8, 8, 64, 48), (10, 3, 7, 2), (1, 1, 3, 5), (4, 6, 4, 6), (3, 5, 1, 1)]


@pytest.mark.parametrize("mode, align_corners", [("nearest", None), ("bilinear", False), ("bilinear", True),
                                                 ("bicubic", False), ("bicubic", True)])
@pytest.mark.parametrize("h, w, out_h, out_w", SIZES)
def test_interpolate_equals_torch(mode, align_corners, h, w, out_h, out_w):
    x = np.random.default_rng(h * 100 + w).normal(size=(2, 3, h, w)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x), size=(out_h, out_w), mode=mode, align_corners=align_corners).numpy()
    got = upsample(x, (out_h, out_w), mode, bool(align_corners))
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_bed_of_nails_is_max_unpool_at_top_left():
    x = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    nails = upsample(x, (8, 15), "bed_of_nails")
    assert nails.shape == (3, 8, 15) and (nails[:, ::2, ::3] == x).all() and np.count_nonzero(nails) == x.size
    with pytest.raises(EdgedetError):
        upsample(x, (9, 15), "bed_of_nails")


def test_max_unpool_lecture_example_and_torch():
    pooled_from = torch.tensor([[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]], dtype=torch.float32)
    values, indices = F.max_pool2d(pooled_from[None, None], 2, return_indices=True)
    rest_of_net = np.array([[[[1, 2], [3, 4]]]], np.float32)  # the lecture's values after the rest of the network
    got = max_unpool(rest_of_net, indices.numpy(), (4, 4))
    np.testing.assert_array_equal(got[0, 0], [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]])
    x = torch.randn(2, 3, 8, 6)
    v, i = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_allclose(max_unpool(v.numpy(), i.numpy(), (8, 6)), F.max_unpool2d(v, i, 2).numpy(), atol=1e-6)
    with pytest.raises(EdgedetError):
        max_unpool(v.numpy(), i.numpy() + 1000, (8, 6))


def test_conv_transpose_lecture_example():
    """3x3 stride 2 on a 2x2 input: stamps of the filter weighted by the input, summed where they overlap;
    the 5x5 result trimmed by one pixel top and left gives 4x4 (padding=1, output_padding=1)."""
    x = np.array([[[[1, 2], [3, 4]]]], np.float32)
    weight = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    full = np.zeros((5, 5), np.float32)
    for i in range(2):
        for j in range(2):
            full[2 * i:2 * i + 3, 2 * j:2 * j + 3] += x[0, 0, i, j] * weight[0, 0]
    got = conv_transpose2d(x, weight, stride=2, padding=1, output_padding=1)
    np.testing.assert_array_equal(got[0, 0], full[1:, 1:])
    np.testing.assert_array_equal(conv_transpose2d(x, weight, stride=2, padding=0, output_padding=0)[0, 0], full)


@pytest.mark.parametrize("stride, padding, output_padding, k", [(2, 1, 1, 3), (2, 0, 0, 3), (2, 1, 0, 4), (3, 1, 2, 3)])
def test_conv_transpose_equals_torch(stride, padding, output_padding, k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
    weight = rng.normal(size=(3, 4, k, k)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    ref = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias), stride=stride,
                             padding=padding, output_padding=output_padding).numpy()
    got = conv_transpose2d(x, weight, bias, stride=stride, padding=padding, output_padding=output_padding)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(conv_transpose2d(x[0], weight, bias, stride, padding, output_padding), ref[0], atol=1e-5)


def test_bad_arguments_raise():
    with pytest.raises(EdgedetError):
        upsample(np.zeros(3), (4, 4))
    with pytest.raises(EdgedetError):
        upsample(np.zeros((2, 2)), (4, 4), "lanczos")
    with pytest.raises(EdgedetError):
        upsample(np.zeros((2, 2)), (0, 4))
    with pytest.raises(EdgedetError):
        conv_transpose2d(np.zeros((1, 2, 2, 2)), np.zeros((3, 1, 3, 3)))


@pytest.mark.parametrize("h, w, out_h, out_w", [(5, 11, 40, 22), (8, 16, 32, 128), (3, 9, 3, 36), (13, 4, 52, 4)])
def test_power_of_two_bilinear_equals_torch(h, w, out_h, out_w, monkeypatch):
    """The periodic-tap path (exact 1x/2x/4x/8x factors): tiles with remainders, several channel blocks."""
    monkeypatch.setattr(upsampling, "_BLOCK_BYTES", 1)  # one channel per block
    x = np.random.default_rng(h * w).normal(size=(2, 3, h, w)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x), size=(out_h, out_w), mode="bilinear", align_corners=False).numpy()
    got = upsample(x, (out_h, out_w), "bilinear")
    assert got.shape == ref.shape and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(upsample(x[0, 0], (out_h, out_w), "bilinear"), ref[0, 0], atol=1e-5, rtol=0)
