"""The runtime's edgedet decode (device/layouts/edgedet.py: objectness first, then only the survivors gathered)
gives exactly the rows of the plain reference decode (tests/device/test_decode.py `decode_edgedet_level`) that
pass the threshold, and without a threshold all of them, bit for bit, for float and integer outputs, NCHW and
NHWC; postprocess on integer outputs equals postprocess on the dequantized floats."""
import numpy as np
import pytest

from edgedet.device.candidates import dequantize_outputs
from edgedet.device.layouts import edgedet
from edgedet.device.letterbox import Letterbox
from edgedet.device.postprocessing import postprocess
from edgedet.device.spec import ModelSpec, QuantParams
from tests.device.test_decode import reference_decode_edgedet

ANCHORS = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)], [(116, 90), (156, 198), (373, 326)]]
QUANT = {"p3_box": QuantParams(0.04, 3, "int8"), "p3_score": QuantParams(0.11, -20, "int8"),
         "p3_mask": QuantParams(0.02, 0, "int8"), "p4_box": QuantParams(0.05, -7, "int8"),
         "p4_score": QuantParams(0.07, 5, "int8"), "p4_mask": QuantParams(0.03, 1, "int8"),
         "p5_box": QuantParams(0.03, 128, "uint8"), "p5_score": QuantParams(0.05, 130, "uint8"),
         "p5_mask": QuantParams(0.02, 125, "uint8"), "proto": QuantParams(0.03, 0, "int8")}


def _spec(c, m, layout, quantized):
    return ModelSpec(names=[f"c{i}" for i in range(c)], input_size_hw=(64, 96), anchors=ANCHORS, num_mask_coefs=m,
                     output_layout=layout, proto_output="proto" if m else None,
                     output_quant=dict(QUANT) if quantized else {})


def _outputs(spec, rng, quantized):
    """Random raw outputs of the spec's head (objectness logits spread so that some cells pass any threshold)."""
    h, w = spec.input_size_hw
    outputs = {}
    for name, shape in spec.edgedet_output_shapes("NCHW").items():
        if name == spec.proto_output:
            continue
        if quantized:
            info = np.iinfo(QUANT[name].dtype)
            array = rng.integers(info.min, info.max + 1, shape).astype(QUANT[name].dtype)
        else:
            array = (rng.standard_normal(shape) * 4).astype(np.float32)
        outputs[name] = array.transpose(0, 2, 3, 1).copy() if spec.output_layout == "NHWC" else array
    if spec.num_mask_coefs:
        shape = (1, spec.num_mask_coefs, h // 4, w // 4)
        proto = rng.integers(-128, 128, shape).astype(np.int8) if quantized else rng.standard_normal(shape).astype(np.float32)
        outputs["proto"] = proto.transpose(0, 2, 3, 1).copy() if spec.output_layout == "NHWC" else proto
    return outputs


def _assert_same(a, b):
    for field in ("xyxy", "scores", "class_ids", "mask_coefs"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape
            assert x.tobytes() == y.tobytes(), field  # bit-identical


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("quantized", [False, True])
@pytest.mark.parametrize("c, m", [(3, 4), (1, 0), (0, 2)])
def test_thresholded_decode_is_the_full_decode_filtered(layout, quantized, c, m):
    spec = _spec(c, m, layout, quantized)
    rng = np.random.default_rng([c, m, layout == "NHWC", quantized])
    for _ in range(3):
        outputs = _outputs(spec, rng, quantized)
        full = reference_decode_edgedet(dequantize_outputs(outputs, spec), spec)
        assert len(full) == 3 * (8 * 12 + 4 * 6 + 2 * 3)
        _assert_same(edgedet.decode(outputs, spec), full)
        for conf in (0.0, 0.1, 0.5, 0.9, 0.999):
            fast = edgedet.decode(outputs, spec, min_score=conf)
            assert len(fast) < len(full) or conf == 0.0
            keep_full = np.flatnonzero(full.scores > np.float32(conf))
            keep_fast = np.flatnonzero(fast.scores > np.float32(conf))
            assert len(keep_full) > 0 or conf >= 0.9
            _assert_same(fast[keep_fast], full[keep_full])


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_postprocess_on_integer_outputs_equals_on_dequantized_floats(layout):
    spec = _spec(3, 4, layout, True)
    rng = np.random.default_rng(7)
    box = Letterbox.fit((48, 100), spec.input_size_hw)
    for conf in (0.05, 0.3, 0.7):
        outputs = _outputs(spec, rng, True)
        a = postprocess(outputs, spec, box, conf=conf)
        b = postprocess(dequantize_outputs(outputs, spec), spec, box, conf=conf)
        assert len(a) > 0 or conf == 0.7
        for x, y in ((a.xyxy, b.xyxy), (a.scores, b.scores), (a.class_ids, b.class_ids), (a.masks, b.masks)):
            np.testing.assert_array_equal(x, y)
