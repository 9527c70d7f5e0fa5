"""device.layouts: the table, recognition (every layout recognised from its own outputs' shapes, never two at
once), and spec building from shapes (device.spec_sources) with the mask-coefficient count read from the shapes."""
import itertools
from pathlib import Path

import numpy as np
import pytest

from edgedet.device import layouts
from edgedet.device.errors import EdgedetError
from edgedet.device.spec import ModelSpec, TensorDetails
from edgedet.device.spec_sources import SpecOverrides, spec_from_flags, spec_from_json

ANCHORS = [[(10, 13), (16, 30)], [(30, 61), (62, 45)], [(116, 90), (156, 198)]]


def edgedet_shapes(num_classes, masks, tensor_layout, extras=False):
    spec = ModelSpec(names=[f"c{i}" for i in range(num_classes)], input_size_hw=(64, 96), anchors=ANCHORS,
                     num_mask_coefs=masks, proto_output="proto" if extras and masks else None,
                     seg_output="seg" if extras else None, semantic_names=["a", "b"] if extras else [])
    return spec.edgedet_output_shapes(tensor_layout)


# (layout, output shapes by name, class count (0 = unknown)): every layout's own outputs
OWN_OUTPUTS = [
    ("edgedet", edgedet_shapes(3, 0, "NCHW"), 3),
    ("edgedet", edgedet_shapes(80, 32, "NHWC", extras=True), 80),
    ("edgedet", edgedet_shapes(1, 4, "NCHW", extras=True), 0),
    ("rcnn", {"p3_feat": (1, 64, 40, 40), "p4_feat": (1, 64, 20, 20), "p3_rpn_obj": (1, 6, 40, 40),
              "p3_rpn_box": (1, 24, 40, 40), "p4_rpn_obj": (1, 6, 20, 20), "p4_rpn_box": (1, 24, 20, 20)}, 5),
    ("ssd", {"s3_loc": (1, 16, 40, 40), "s3_conf": (1, 24, 40, 40), "s4_loc": (1, 16, 20, 20),
             "s4_conf": (1, 24, 20, 20)}, 5),
    ("yolov8-seg", {"output0": (1, 116, 8400), "output1": (1, 32, 160, 160)}, 80),
    ("yolov8-seg", {"Identity": (1, 8400, 43), "Identity_1": (1, 160, 160, 7)}, 32),  # M = 7, not 32
    ("yolov8-seg", {"output0": (1, 116, 8400), "output1": (1, 32, 160, 160)}, 0),
    ("yolov5", {"output0": (1, 25200, 85)}, 80),
    ("yolov5", {"output0": (1, 6, 300)}, 1),
    ("yolov8", {"output0": (1, 84, 8400)}, 80),
    ("yolov8", {"output0": (1, 8400, 84)}, 80),
    ("yolov8", {"output0": (1, 85, 25200)}, 0),  # class count unknown: a prediction without objectness
    ("yolov8", {"output0": (0, 6, 0)}, 2),  # dynamic batch and candidates
    ("yolov8-split", {"p3_dist": (1, 64, 80, 80), "p3_cls": (1, 80, 80, 80), "p4_dist": (1, 64, 40, 40),
                      "p4_cls": (1, 80, 40, 40)}, 80),
    ("yolov8-split", {"p3_dist": (1, 8, 8, 64), "p3_cls": (1, 8, 8, 5), "p3_coef": (1, 8, 8, 32),
                      "proto": (1, 32, 32, 32)}, 5),
    ("yolov5-split", {"p3_raw": (1, 255, 80, 80), "p4_raw": (1, 255, 40, 40), "p5_raw": (1, 255, 20, 20)}, 80),
    ("grid", {"y": (19, 19, 425)}, 80),
    ("grid", {"y": (1, 19, 19, 5, 85)}, 80),
    ("grid", {"y": (3, 3, 8)}, 3),
    ("grid", {"y": (1, 1, 85)}, 80),  # a 1x1 grid, not a prediction
]


@pytest.mark.parametrize("name, shapes, num_classes", OWN_OUTPUTS)
def test_each_layout_and_only_it_recognises_its_own_outputs(name, shapes, num_classes):
    assert [layout.NAME for layout in layouts.LAYOUTS if layout.recognises(shapes, num_classes)] == [name]
    assert layouts.recognise(shapes, num_classes).NAME == name


def test_every_layout_of_the_table_has_its_own_outputs_above():
    assert {name for name, _, _ in OWN_OUTPUTS} == set(layouts.NAMES)
    assert len(set(layouts.NAMES)) == len(layouts.NAMES)


def _shape_pool():
    """Output shapes of every kind the recognisers look at, plus near misses."""
    singles = [(1, 84, 8400), (1, 8400, 84), (1, 85, 25200), (1, 6, 300), (1, 300, 6), (1, 1, 85), (0, 6, 0),
               (19, 19, 425), (1, 19, 19, 425), (1, 19, 19, 5, 85), (3, 3, 8), (1, 32, 160, 160), (1, 160, 160, 32),
               (1, 116, 8400), (1, 8400, 38), (2, 84, 8400), (1, 8, 8, 8), (1, 6, 4, 4), (84, 8400)]
    sets = [{"o": s} for s in singles]
    sets += [{"a": a, "b": b} for a, b in itertools.combinations(singles, 2)]
    sets += [edgedet_shapes(c, m, t, x) for c, m, t, x in itertools.product((1, 2, 80), (0, 4), ("NCHW", "NHWC"),
                                                                              (False, True))]
    sets += [{"p3_box": (1, 8, 8, 8)}, {"p3_box": (1, 8, 8, 8), "p3_score": (1, 84, 8400)}]
    return sets


@pytest.mark.parametrize("num_classes", [0, 1, 2, 3, 32, 34, 80, 81])
def test_recognisers_never_disagree(num_classes):
    """No shape set is claimed by two layouts, whatever the class count."""
    for shapes in _shape_pool():
        claims = [layout.NAME for layout in layouts.LAYOUTS if layout.recognises(shapes, num_classes)]
        assert len(claims) <= 1, (shapes, num_classes, claims)


@pytest.mark.parametrize("name, shapes, num_classes", OWN_OUTPUTS)
def test_from_shapes_says_whether_spec_fields_can_describe_the_outputs(name, shapes, num_classes):
    layout = layouts.by_name(name)
    if layout.FROM_SHAPES and num_classes:
        fields = layout.spec_fields(shapes, num_classes)
        assert fields["task"] in ("detect", "segment") and set(fields["level_outputs"]) <= set(shapes)
    elif not layout.FROM_SHAPES:
        with pytest.raises(EdgedetError, match="metadata"):
            layout.spec_fields(shapes, num_classes)
    assert layouts.FROM_SHAPES == tuple(l.NAME for l in layouts.LAYOUTS if l.FROM_SHAPES)


def test_unknown_names_and_unrecognisable_outputs_raise():
    with pytest.raises(EdgedetError, match="unknown --layout 'yolov99'; expected one of edgedet"):
        layouts.by_name("yolov99", "--layout")
    with pytest.raises(EdgedetError, match="cannot recognise"):
        layouts.recognise({"a": (2, 3, 4, 5, 6, 7)})
    with pytest.raises(EdgedetError, match="cannot recognise"):
        layouts.recognise({"output0": (1, 7, 100)}, 80)  # neither 84 nor 85 features
    with pytest.raises(EdgedetError, match="unknown --layout"):
        SpecOverrides(layout="nope")


def _details(shapes, input_shape=(1, 3, 64, 64)):
    inputs = [TensorDetails("images", input_shape, "float32", None, "images")]
    return inputs, [TensorDetails(name, shape, "float32", None, name) for name, shape in shapes.items()]


@pytest.mark.parametrize("m", [4, 7, 32])
def test_flags_spec_takes_the_mask_coefficients_from_the_prototypes(m):
    inputs, outputs = _details({"out": (1, 4 + 2 + m, 84), "protos": (1, m, 16, 16)})
    spec = spec_from_flags(Path("x.onnx"), inputs, outputs, SpecOverrides(names=["a", "b"]), False)
    assert spec.layout == "yolov8-seg" and spec.num_mask_coefs == m and spec.task == "segment"
    assert spec.proto_output == "protos" and spec.level_outputs == ["out"] and spec.input_size_hw == (64, 64)


def test_flags_spec_recognises_detect_layouts_and_refuses_metadata_only_ones():
    inputs, outputs = _details({"out": (1, 7, 84)})
    assert spec_from_flags(Path("x.onnx"), inputs, outputs, SpecOverrides(names=["a", "b"]), False).layout == "yolov5"
    nhwc_inputs, _ = _details({}, (1, 64, 64, 3))
    spec = spec_from_flags(Path("x.tflite"), nhwc_inputs, outputs, SpecOverrides(names=["a", "b", "c"]), True)
    assert spec.layout == "yolov8" and spec.input_layout == "NHWC" and spec.boxes_normalized
    for layout in ("edgedet", "grid"):
        with pytest.raises(EdgedetError, match=f"--layout {layout} cannot be used.*yolov8-seg, yolov5, yolov8"):
            spec_from_flags(Path("x.onnx"), inputs, outputs, SpecOverrides(names=["a", "b"], layout=layout), False)
    with pytest.raises(EdgedetError, match="--names.*--layout"):
        spec_from_flags(Path("x.onnx"), inputs, outputs, SpecOverrides(), False)


def test_stored_spec_needs_a_format_version_its_layout_decodes():
    spec = ModelSpec(names=["a"], input_size_hw=(64, 64), anchors=ANCHORS)
    assert spec_from_json(spec.to_json(), "m.onnx") == spec
    old = ModelSpec(names=["a"], input_size_hw=(64, 64), anchors=ANCHORS, version=1)
    with pytest.raises(EdgedetError, match="m.onnx: model spec version 1 .*re-export"):
        spec_from_json(old.to_json(), "m.onnx")
    foreign = ModelSpec(names=["a"], input_size_hw=(64, 64), layout="yolov8", anchors=[], version=1)
    assert spec_from_json(foreign.to_json(), "m.tflite").layout == "yolov8"
    with pytest.raises(EdgedetError, match="m.onnx: unknown layout 'nope'"):
        spec_from_json(ModelSpec(names=["a"], input_size_hw=(64, 64), layout="nope").to_json(), "m.onnx")


@pytest.mark.parametrize("name", layouts.NAMES)
def test_layouts_without_masks_give_no_prototypes(name):
    layout = layouts.by_name(name)
    spec = ModelSpec(names=["a"], input_size_hw=(64, 64), layout=name)
    if not layout.has_masks(spec):
        assert layout.prototypes({"o": np.zeros((1, 5, 10), np.float32)}, spec) is None
