"""preprocess through its 256-entry pixel table equals the direct per-pixel formula, bit for bit."""
import cv2
import numpy as np
import pytest

from edgedet.device.errors import EdgedetError
from edgedet.device.letterbox import Letterbox
from edgedet.device.preprocessing import pixel_table, pixels_to_input, preprocess, quantize
from edgedet.device.spec import ModelSpec, QuantParams

QUANTS = [QuantParams(1 / 255, -128, "int8"), QuantParams(0.0078, 3, "int8"), QuantParams(0.011, -7, "int8"),
          QuantParams(0.00392, 0, "uint8"), QuantParams(0.0051, 17, "uint8")]


def _spec(**kw):
    return ModelSpec(names=["a"], input_size_hw=(48, 64), **kw)


def _direct(frame, spec):
    """The formula written out on the whole letterboxed image (no table): what preprocess must equal."""
    box = Letterbox.fit(frame.shape[:2], spec.input_size_hw, pad_value=spec.pad_value)
    padded = box.apply(frame)
    if spec.channel_order == "RGB":
        padded = padded[..., ::-1]
    real = padded.astype(np.float32) * np.float32(spec.pixel_scale)
    if spec.input_dtype == "float32":
        value = real
    elif spec.input_quant is None:
        value = padded
    else:
        value = quantize(real, spec.input_quant)
    if spec.input_layout == "NCHW":
        value = value.transpose(2, 0, 1)
    return np.ascontiguousarray(value[None])


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_table_path_equals_direct_formula_on_random_frames(quant, layout, order):
    spec = _spec(input_dtype=quant.dtype, input_quant=quant, input_layout=layout, channel_order=order)
    rng = np.random.default_rng([QUANTS.index(quant), layout == "NCHW", order == "RGB"])
    for shape in [(48, 64, 3), (30, 101, 3), (97, 20, 3)]:
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        x, _ = preprocess(frame, spec)
        expected = _direct(frame, spec)
        assert x.dtype == expected.dtype == np.dtype(quant.dtype)
        assert x.shape == expected.shape and x.flags.c_contiguous
        np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_float_and_raw_inputs_equal_direct_formula(dtype):
    spec = _spec(input_dtype=dtype, pixel_scale=1 / 255)
    frame = np.random.default_rng(4).integers(0, 256, (40, 90, 3), dtype=np.uint8)
    x, _ = preprocess(frame, spec)
    expected = _direct(frame, spec)
    assert x.dtype == expected.dtype
    np.testing.assert_array_equal(x.view(np.uint8), expected.view(np.uint8))  # bit-identical, floats too


@pytest.mark.parametrize("quant", QUANTS)
def test_table_entries_are_the_formula_for_every_pixel_value(quant):
    table = pixel_table(_spec(input_dtype=quant.dtype, input_quant=quant))
    pixels = np.arange(256, dtype=np.uint8)
    low, high = np.iinfo(quant.dtype).min, np.iinfo(quant.dtype).max
    formula = np.clip(np.rint(pixels.astype(np.float64) / 255 / quant.scale) + quant.zero_point, low, high)
    assert table.shape == (256,) and table.dtype == np.dtype(quant.dtype)
    assert np.abs(table.astype(np.int64) - formula).max() <= 1  # float32 vs float64 rounding at exact halves
    np.testing.assert_array_equal(table, pixels_to_input(pixels, quant.dtype, 1 / 255, quant))
    assert not table.flags.writeable


def test_grey_frame_and_spec_errors():
    quant = QUANTS[0]
    grey = np.random.default_rng(5).integers(0, 256, (20, 30), dtype=np.uint8)
    spec = _spec(input_dtype="int8", input_quant=quant)
    x, _ = preprocess(grey, spec)
    np.testing.assert_array_equal(x, _direct(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), spec))
    with pytest.raises(EdgedetError, match="input_layout"):
        preprocess(grey, _spec(input_layout="CHWN"))
    with pytest.raises(EdgedetError, match="input_dtype"):
        preprocess(grey, _spec(input_dtype="float16"))
    assert pixel_table(_spec(input_dtype="uint8")) is None  # raw pixels: no table
