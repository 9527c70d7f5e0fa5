"""The SSD / Faster R-CNN box coder against its formulas, and the torch twin against the NumPy one."""
import math

import numpy as np
import pytest

from edgedet.device.box_coder import MAX_LOG_SCALE, decode_deltas, encode_boxes

WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def test_encode_matches_the_formula_for_one_box():
    reference = np.array([[10.0, 20.0, 30.0, 60.0]])  # cx 20, cy 40, w 20, h 40
    box = np.array([[14.0, 16.0, 54.0, 56.0]])  # cx 34, cy 36, w 40, h 40
    expected = [10 * (34 - 20) / 20, 10 * (36 - 40) / 40, 5 * math.log(40 / 20), 5 * math.log(40 / 40)]
    np.testing.assert_allclose(encode_boxes(box, reference, WEIGHTS)[0], expected, rtol=1e-6)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), WEIGHTS])
def test_decode_inverts_encode(weights):
    rng = np.random.default_rng(0)
    reference = np.concatenate([rng.uniform(0, 200, (50, 2)), rng.uniform(0, 200, (50, 2))], axis=1)
    reference[:, 2:] = reference[:, :2] + rng.uniform(4, 80, (50, 2))
    boxes = reference + rng.uniform(-3, 3, (50, 4))
    decoded = decode_deltas(encode_boxes(boxes, reference, weights), reference, weights)
    np.testing.assert_allclose(decoded, boxes, atol=1e-3)
    assert decoded.dtype == np.float32


def test_decode_clamps_the_log_scale():
    reference = np.array([[0.0, 0.0, 10.0, 10.0]])
    decoded = decode_deltas(np.array([[0.0, 0.0, 1e4, 1e4]]), reference, (1, 1, 1, 1))
    assert np.all(np.isfinite(decoded))
    np.testing.assert_allclose(decoded[0, 2] - decoded[0, 0], 10 * math.exp(MAX_LOG_SCALE), rtol=1e-5)


def test_torch_twin_equals_numpy():
    torch = pytest.importorskip("torch")
    from edgedet.models import box_coder

    rng = np.random.default_rng(1)
    reference = np.sort(rng.uniform(0, 300, (40, 2, 2)), axis=1).transpose(0, 2, 1).reshape(40, 4)[:, [0, 2, 1, 3]]
    reference[:, 2:] += 1.0
    deltas = rng.normal(0, 2, (40, 4)).astype(np.float32)
    ours = box_coder.decode_deltas(torch.from_numpy(deltas), torch.from_numpy(reference).float(), WEIGHTS).numpy()
    np.testing.assert_allclose(ours, decode_deltas(deltas, reference, WEIGHTS), rtol=1e-5, atol=1e-3)
    boxes = decode_deltas(deltas, reference, WEIGHTS)
    codes = box_coder.encode_boxes(torch.from_numpy(boxes), torch.from_numpy(reference).float(), WEIGHTS).numpy()
    np.testing.assert_allclose(codes, encode_boxes(boxes, reference, WEIGHTS), rtol=1e-4, atol=1e-3)
