"""Foreign ONNX -> PyTorch (onnx2torch): the module matches onnxruntime, and torch.export traces it (what
litert_torch needs), on a tiny hand-built graph with the ops of a YOLOv8 graph cut before its decode."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnx2torch") is None,
                                reason="onnx2torch is not installed (pip install --no-deps onnx2torch==1.5.15)")


def _yolo_like(opset: int):
    """Conv -> SiLU (Sigmoid*Mul) -> Split -> Concat, MaxPool, Resize nearest x2, Reshape; two outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w0"),
            numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "b0"),
            numpy_helper.from_array(rng.normal(0, 0.3, (6, 16, 1, 1)).astype(np.float32), "w1"),
            numpy_helper.from_array(np.array([1, 6, 16, 64], np.int64), "shape")]
    split_inputs, split_attrs = ["act"], {"axis": 1}
    if opset >= 18:
        split_attrs["num_outputs"] = 2
    else:
        init.append(numpy_helper.from_array(np.array([4, 4], np.int64), "sizes"))
        split_inputs.append("sizes")
    nodes = [
        helper.make_node("Conv", ["images", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Sigmoid", ["c0"], ["sig"]),
        helper.make_node("Mul", ["c0", "sig"], ["act"]),
        helper.make_node("Split", split_inputs, ["s0", "s1"], **split_attrs),
        helper.make_node("MaxPool", ["s1"], ["mp"], kernel_shape=[5, 5], pads=[2, 2, 2, 2], strides=[1, 1]),
        helper.make_node("Concat", ["s0", "mp", "act"], ["cat"], axis=1),
        helper.make_node("Constant", [], ["scales"], value=numpy_helper.from_array(
            np.array([1, 1, 2, 2], np.float32), "scales")),
        helper.make_node("Resize", ["cat", "", "scales"], ["up"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Conv", ["up", "w1"], ["p3_box"]),
        helper.make_node("Reshape", ["p3_box", "shape"], ["flat"]),
        helper.make_node("Sigmoid", ["flat"], ["p3_score"]),
    ]
    graph = helper.make_graph(
        nodes, "yolo_like", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("p3_box", TensorProto.FLOAT, [1, 6, 32, 32]),
         helper.make_tensor_value_info("p3_score", TensorProto.FLOAT, [1, 6, 16, 64])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 17 else 9
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("opset", [13, 17, 19])
def test_converted_module_matches_onnxruntime_and_exports(tmp_path, opset):
    import onnx
    import onnxruntime as ort
    import torch
    from edgedet.export.onnx_to_torch import onnx_to_torch

    path = tmp_path / "model.onnx"
    onnx.save(_yolo_like(opset), str(path))
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})

    module = onnx_to_torch(path)
    with torch.no_grad():
        outputs = module(torch.from_numpy(x))
    assert len(outputs) == len(reference)
    for got, want in zip(outputs, reference):
        assert got.shape == want.shape
        assert np.abs(got.numpy() - want).max() < 1e-5

    # torch.export is the first step of litert_torch.convert and of the PT2E int8 path: no data-dependent sizes
    exported = torch.export.export(module, (torch.from_numpy(x),)).module()
    for got, want in zip(exported(torch.from_numpy(x)), reference):
        assert np.abs(got.detach().numpy() - want).max() < 1e-5


def test_unreadable_file_names_itself(tmp_path):
    from edgedet.device.errors import EdgedetError
    from edgedet.export.onnx_to_torch import onnx_to_torch

    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx file")
    with pytest.raises(EdgedetError, match="broken.onnx"):
        onnx_to_torch(path)


def test_op_changed_after_opset_17_gets_one_line(tmp_path):
    import onnx
    from onnx import helper
    from edgedet.device.errors import EdgedetError
    from edgedet.export.onnx_to_torch import read_as_opset_17

    model = _yolo_like(19)
    resize = next(node for node in model.graph.node if node.op_type == "Resize")
    resize.attribute.append(helper.make_attribute("antialias", 1))
    with pytest.raises(EdgedetError, match="re-export it with opset=17"):
        read_as_opset_17(model, "model.onnx")
    assert onnx.defs.onnx_opset_version() >= 19
