"""Foreign ONNX -> torch.nn.Module through onnx2torch, so a user's ONNX reaches the litert-torch TFLite path
(export/tflite_export.py: fp32, fp16 and PT2E full-integer int8) without TensorFlow.

onnx2torch (pip install --no-deps onnx2torch==1.5.15) converts the graph into a torch.fx GraphModule that matches
onnxruntime to float precision. Three things stand between that module and torch.export / litert_torch, and this
module handles each:

- onnx2torch imports torchvision at import time, only for its NonMaxSuppression and RoiAlign converters; where
  torchvision is missing or broken (here only CUDA builds exist), it is imported against a stand-in whose ops
  raise. A YOLO graph cut before its decode holds neither op.
- onnx2torch's Resize, Split and Reshape read their sizes from tensors at run time (`.tolist()`), which torch.export
  cannot trace; where those tensors are constants of the graph, they are baked into the module as Python numbers.
- onnx2torch implements ONNX opsets up to 17; Ultralytics exports with newer opsets (19 or 20 by default). A newer
  file is read as opset 17 when every op it holds means the same there (Split's `num_outputs` becomes explicit
  sizes; Resize must not use the attributes opset 18/19 added); else one line says to re-export with opset=17.
"""
from __future__ import annotations

import functools
import sys
import types
from pathlib import Path

import numpy as np

from edgedet.device.errors import EdgedetError

CONVERTER = "onnx2torch==1.5.15"
PIP_COMMAND = "pip install --no-deps onnx2torch==1.5.15"  # --no-deps: its torchvision requirement would replace torch
MAX_OPSET = 17  # the newest ONNX opset whose operators onnx2torch implements
# ops whose versions after MAX_OPSET only add tensor types: the opset-17 reading of them is the same
SAME_AFTER_17 = {"Constant", "Reshape", "Shape", "Identity", "Cast", "CastLike", "Size"}


def onnx_to_torch(path):
    """The ONNX file at `path` as an eval-mode torch.nn.Module (a torch.fx GraphModule) that torch.export and
    litert_torch accept; it returns the graph's outputs in graph order."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as error:  # onnx raises DecodeError, OSError, ... for unreadable files
        raise EdgedetError(f"{path}: not a readable ONNX file ({type(error).__name__})") from None
    model = read_as_opset_17(model, path)
    convert = _import_onnx2torch()
    try:
        module = convert(model)
    except NotImplementedError as error:
        raise EdgedetError(f"{path}: onnx2torch cannot convert it: {error}") from None
    return bake_constant_sizes(module).eval()


def _import_onnx2torch():
    """onnx2torch.convert, importing onnx2torch against a stand-in torchvision where the real one cannot load."""
    try:
        from onnx2torch import convert
        return convert
    except ModuleNotFoundError as error:
        if error.name == "onnx2torch":
            raise EdgedetError(f"converting a foreign ONNX to TFLite needs {CONVERTER}: {PIP_COMMAND}") from None
        if not str(error.name).startswith("torchvision"):
            raise EdgedetError(f"onnx2torch cannot be imported ({error}); reinstall it: {PIP_COMMAND}") from None
    except (ImportError, RuntimeError):  # a torchvision built for another torch fails to load its operators
        pass
    saved = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] in ("torchvision", "onnx2torch")}
    for name in saved:
        del sys.modules[name]
    stand_in = _torchvision_stand_in()
    sys.modules.update({"torchvision": stand_in, "torchvision.ops": stand_in.ops})
    try:
        from onnx2torch import convert
    finally:  # only onnx2torch keeps the stand-in: no other import of torchvision sees it
        for name in ("torchvision", "torchvision.ops"):
            sys.modules.pop(name, None)
    return convert


def _torchvision_stand_in():
    def missing(*args, **kwargs):
        raise EdgedetError("this ONNX holds NonMaxSuppression or RoiAlign, which need a working torchvision: "
                           "cut the graph before its decode")

    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.batched_nms = ops.roi_align = missing
    torchvision = types.ModuleType("torchvision")
    torchvision.ops = ops
    return torchvision


def read_as_opset_17(model, path="model"):
    """`model` itself where its opset is at most MAX_OPSET; else a copy declared as opset 17, when every op means
    the same there. Raises EdgedetError naming the first op that does not."""
    import onnx
    from onnx import defs, helper, numpy_helper

    opsets = {o.domain: o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx", 0))
    if opset <= MAX_OPSET:
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    shapes = {}
    inferred = onnx.shape_inference.infer_shapes(model)
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
    hint = f"{path}: opset {opset} is newer than onnx2torch's {MAX_OPSET}; re-export it with opset=17"
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        new = defs.get_schema(node.op_type, max_inclusive_version=opset).since_version
        old = defs.get_schema(node.op_type, max_inclusive_version=MAX_OPSET).since_version
        if new == old or node.op_type in SAME_AFTER_17:
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Split":
            if "num_outputs" in attributes and (len(node.input) < 2 or not node.input[1]):
                dims = shapes.get(node.input[0])
                axis = attributes.get("axis", 0)
                length = dims[axis] if dims else None
                if length is None:
                    raise EdgedetError(f"{hint} (Split {node.name!r} has no static size)")
                count = attributes["num_outputs"]
                size = -(-length // count)  # opset 18: all parts ceil(length / n), the last one smaller
                sizes = [size] * (count - 1) + [length - size * (count - 1)]
                name = f"{node.name or node.output[0]}_split_sizes"
                model.graph.initializer.append(numpy_helper.from_array(np.array(sizes, dtype=np.int64), name))
                del node.input[1:]
                node.input.append(name)
            _drop_attributes(node, {"num_outputs"})
        elif node.op_type == "Resize":
            if (attributes.get("antialias", 0) or "axes" in attributes
                    or attributes.get("keep_aspect_ratio_policy", b"stretch") != b"stretch"
                    or attributes.get("coordinate_transformation_mode") == b"half_pixel_symmetric"):
                raise EdgedetError(f"{hint} (Resize {node.name!r} uses attributes of opset 18/19)")
            _drop_attributes(node, {"antialias", "axes", "keep_aspect_ratio_policy"})
        else:
            raise EdgedetError(f"{hint} ({node.op_type} changed in opset {new})")
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = MAX_OPSET
    return model


def _drop_attributes(node, names) -> None:
    kept = [a for a in node.attribute if a.name not in names]
    del node.attribute[:]
    node.attribute.extend(kept)


def bake_constant_sizes(module):
    """Rewrite onnx2torch's Resize, Split and Reshape nodes whose sizes are graph constants so that the sizes are
    Python numbers: torch.export traces `.tolist()` of a tensor as data-dependent and litert_torch rejects it.
    Nodes whose sizes are computed in the graph stay as they are (they run in eager PyTorch, not in torch.export)."""
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.resize import OnnxResize
    from onnx2torch.node_converters.split import OnnxSplit, OnnxSplit13

    parameters = {OnnxResize: ("input_tensor", "roi", "scales", "sizes"), OnnxSplit13: ("input_tensor", "split"),
                  OnnxReshape: ("input_tensor", "shape")}
    for node in list(module.graph.nodes):
        kind = type(module.get_submodule(node.target)) if node.op == "call_module" else None
        if kind not in parameters:
            continue
        bound = dict(zip(parameters[kind], node.args), **node.kwargs)
        try:
            constants = {name: _constant(module, value) for name, value in bound.items() if name != "input_tensor"}
        except LookupError:
            continue
        inner = module.get_submodule(node.target)
        if kind is OnnxSplit13:
            split = constants.get("split")
            replacement = OnnxSplit(inner.num_splits, inner.axis, None if split is None else
                                    [int(v) for v in split.tolist()])
        elif kind is OnnxReshape:
            replacement = _static_modules()[1]([int(v) for v in constants["shape"].tolist()])
        else:
            roi = constants.get("roi")
            if roi is not None and roi.numel() and not inner.ignore_roi:
                continue  # onnx2torch refuses a region of interest at run time: keep its message
            replacement = _static_resize(inner, constants.get("scales"), constants.get("sizes"))
            if replacement is None:
                continue
        module.add_submodule(node.target, replacement)
        node.args, node.kwargs = (bound["input_tensor"],), {}
    module.graph.eliminate_dead_code()
    module.recompile()
    return module


def _constant(module, value):
    """The value of a node argument that is a graph constant (None, an initializer, an ONNX Constant node)."""
    import torch
    from onnx2torch.node_converters.constant import OnnxConstant

    if not isinstance(value, torch.fx.Node):
        return value
    if value.op == "get_attr":
        return functools.reduce(getattr, value.target.split("."), module)
    if value.op == "call_module" and isinstance(module.get_submodule(value.target), OnnxConstant):
        return module.get_submodule(value.target)()
    raise LookupError(value.name)


def _static_resize(inner, scales, sizes):
    static_resize = _static_modules()[0]
    if sizes is not None and sizes.numel():
        return static_resize(inner.onnx_mode, inner.align_corners, size=[int(v) for v in sizes.tolist()[2:]])
    if scales is not None and scales.numel():
        values = [float(v) for v in scales.tolist()]
        if values[:2] != [1.0, 1.0]:
            return None  # onnx2torch refuses this at run time: keep its message
        return static_resize(inner.onnx_mode, inner.align_corners, scale_factor=values[2:])
    return None


@functools.lru_cache(maxsize=None)
def _static_modules():
    """(StaticResize, StaticReshape): torch.nn.Module classes, defined at first use (torch loads only then)."""
    import torch
    from onnx2torch.node_converters.resize import _onnx_mode_to_torch_mode

    class StaticResize(torch.nn.Module):
        """onnx2torch's OnnxResize with its scales or sizes as Python numbers."""

        def __init__(self, mode, align_corners, scale_factor=None, size=None):
            super().__init__()
            self.mode, self.align_corners, self.scale_factor, self.size = mode, align_corners, scale_factor, size

        def forward(self, x):
            return torch.nn.functional.interpolate(x, size=self.size, scale_factor=self.scale_factor,
                                                   mode=_onnx_mode_to_torch_mode(self.mode, x.dim() - 2),
                                                   align_corners=self.align_corners)

    class StaticReshape(torch.nn.Module):
        """onnx2torch's OnnxReshape with its target shape as Python numbers (0 keeps the input's dimension)."""

        def __init__(self, shape):
            super().__init__()
            self.shape = shape

        def forward(self, x):
            return torch.reshape(x, [x.shape[i] if d == 0 else d for i, d in enumerate(self.shape)])

    return StaticResize, StaticReshape
