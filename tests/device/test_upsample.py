"""The runtime's resampling kernels (device/upsample.py): linear taps mixed by interpolate_rows/cols equal torch's
bilinear F.interpolate (align_corners=False) within 1e-5, for tiled and untiled sizes, up and down."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgedet.device.upsample import MAX_TILE, interpolate_cols, interpolate_rows, linear_taps_at


def torch_taps(in_size, out_size):
    """Taps at torch's align_corners=False source coordinates (dst + 0.5) * in / out - 0.5."""
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * np.float32(in_size / out_size) - np.float32(0.5)
    return linear_taps_at(src, in_size)


@pytest.mark.parametrize("h, w, out_h, out_w", [(2, 2, 4, 4), (5, 7, 13, 9), (8, 8, 64, 48), (10, 3, 7, 2),
                                                (1, 1, 3, 5), (3, 5, 1, 1), (6, 9, 3 * MAX_TILE + 5, 2 * MAX_TILE + 1)])
def test_rows_then_cols_equal_torch_bilinear(h, w, out_h, out_w):
    x = np.random.default_rng(h * 100 + w).normal(size=(3, h, w)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x)[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
    got = interpolate_rows(interpolate_cols(x, torch_taps(w, out_w)), torch_taps(h, out_h))
    assert got.shape == (3, out_h, out_w) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-5, rtol=0)


def test_taps_clamp_to_the_source():
    i0, i1, w1 = linear_taps_at(np.array([-0.7, 0.0, 1.25, 3.0, 5.5], np.float32), 4)
    assert i0.tolist() == [0, 0, 1, 3, 3] and i1.tolist() == [1, 1, 2, 3, 3]
    np.testing.assert_allclose(w1[:3], [0, 0, 0.25])
