"""Foreign ONNX detectors (Ultralytics YOLOv8/YOLO11, -seg, and anchor-based YOLOv5) cut before their decode.

An Ultralytics export ends in the head's decode: per FPN level a box convolution (4 x reg_max distribution
logits for YOLOv8/11, or one raw convolution per level for YOLOv5) and a class convolution, then reshapes and
concatenations, the DFL softmax and integral, the distance-to-box arithmetic with anchor points and strides,
the class sigmoid and one final Concat of pixel boxes with 0..1 scores. Quantized as one graph, that Concat
shares one int8 scale between values up to the image size and scores below 1, which is how such files lose
their scores. The cut file ends at the head convolutions instead, one output per level and role
("p3_dist", "p3_cls", "p3_coef", ..., "proto"; "p3_raw" for YOLOv5), so each gets its own scale; the decode moves to the device
runtime (edgedet.device.layouts). The cut model is an ordinary edgedet ONNX file: its ModelSpec travels in
metadata_props like that of the project's own exports.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from edgedet.device.backends import load_backend
from edgedet.device.errors import EdgedetError, first_line
from edgedet.device.layouts import yolov5, yolov5_split, yolov8, yolov8_seg, yolov8_split
from edgedet.device.spec import ModelSpec
from .artifacts import atomic_outputs
from .onnx_export import set_spec

# ops that only move values around: walking through them keeps a tensor's meaning
SHAPE_OPS = {"Reshape", "Concat", "Split", "Slice", "Transpose", "Identity", "Flatten", "Squeeze", "Unsqueeze"}
LEVEL_NAMES = ("p2", "p3", "p4", "p5", "p6", "p7")  # by stride 4, 8, 16, 32, 64, 128
HINT = (f"pass --layout {'|'.join((yolov8.NAME, yolov8_seg.NAME, yolov5.NAME))} and --names FILE, or export the "
        "model with Ultralytics' format=onnx")


@dataclass
class Graph:
    """Who produces and who consumes every tensor of an ONNX graph, with the static shapes shape inference found."""

    model: object  # onnx.ModelProto with the value_info of shape inference (what onnx.utils.Extractor needs)
    producer: Dict[str, object] = field(default_factory=dict)  # tensor name -> node
    consumers: Dict[str, list] = field(default_factory=dict)  # tensor name -> nodes
    shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)  # tensor name -> static shape
    constants: Dict[str, np.ndarray] = field(default_factory=dict)  # initializers and Constant node outputs

    @classmethod
    def of(cls, model) -> "Graph":
        import onnx
        from onnx import numpy_helper

        inferred = onnx.shape_inference.infer_shapes(model)
        graph = cls(inferred)
        for node in inferred.graph.node:
            for name in node.output:
                graph.producer[name] = node
            for name in node.input:
                graph.consumers.setdefault(name, []).append(node)
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                graph.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        for init in inferred.graph.initializer:
            graph.constants[init.name] = numpy_helper.to_array(init)
        for info in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
            dims = info.type.tensor_type.shape.dim
            if dims and all(d.HasField("dim_value") for d in dims):
                graph.shapes[info.name] = tuple(int(d.dim_value) for d in dims)
        return graph

    def walk_up(self, tensor: str, through: Iterable[str] = ()) -> Tuple[List[object], List[object]]:
        """(nodes walked, Conv nodes first met) walking up from `tensor` through the ops named in `through` (any op
        when empty), in the order met. The Convs stop the walk (the head convolutions), except those whose weights
        are a fixed integral (the DFL), which are walked through."""
        allowed = set(through)
        seen: Set[int] = set()
        walked, convs = [], []
        queue = deque([tensor])
        while queue:
            node = self.producer.get(queue.popleft())
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type == "Conv" and not self.is_dfl_integral(node):
                convs.append(node)
                continue
            if allowed and node.op_type not in allowed:
                continue
            walked.append(node)
            queue.extend(i for i in node.input if i and i not in self.constants)
        return walked, convs

    def frontier_convs(self, tensor: str, through: Iterable[str] = ()) -> List[object]:
        """The Conv nodes first met walking up from `tensor` (see `walk_up`)."""
        return self.walk_up(tensor, through)[1]

    def input_name(self) -> str:
        """The one image input (graph inputs that are not initializers)."""
        inputs = [i.name for i in self.model.graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise EdgedetError(f"expected one image input, got {inputs}")
        return inputs[0]

    def is_dfl_integral(self, node) -> bool:
        """A 1x1 Conv to one channel with weights 0, 1, ..., R-1 and no bias: the DFL expectation."""
        if node.op_type != "Conv" or len(node.input) != 2 or node.input[1] not in self.constants:
            return False
        weight = self.constants[node.input[1]]
        return (weight.ndim == 4 and weight.shape[0] == 1 and weight.shape[2:] == (1, 1)
                and np.allclose(weight.reshape(-1), np.arange(weight.shape[1])))


# ---------------------------------------------------------------- reading


def load_onnx(path):
    """onnx.ModelProto of `path`; EdgedetError naming the file when it is missing or not an ONNX model."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise EdgedetError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf DecodeError and friends
        raise EdgedetError(f"cannot read {path} as ONNX: {type(error).__name__}: {first_line(error)}") from None
    if not model.graph.node:
        raise EdgedetError(f"{path} is not an ONNX model (no graph nodes)")
    return model




# ---------------------------------------------------------------- YOLOv8 / YOLO11 (detect and segment)


def find_yolov8_head(graph: Graph, num_classes: int) -> Dict[str, Dict[str, str]]:
    """{level name: {"dist": tensor, "cls": tensor[, "coef": tensor]}} of a YOLOv8/11 head, finest level first.

    The head convolutions are the Convs first met walking up from the prediction output (the DFL's integral
    Conv is walked through). A box convolution feeds the DFL Softmax, a class convolution the class Sigmoid, a
    mask-coefficient convolution (-seg) neither. Ultralytics 8.4 concatenates boxes and classes over the levels
    separately; 8.0-8.3 concatenate both per level and Split them after: there a Convolution feeds both paths
    and its channel count (C for classes) decides. EdgedetError when the pattern is not there.
    """
    pred, _ = _prediction_outputs(graph)
    tail, frontier = graph.walk_up(pred)
    sigmoid = _single_node(tail, "Sigmoid", "the class Sigmoid")
    softmax = _single_node(tail, "Softmax", "the DFL Softmax")
    to_scores = {id(n) for n in graph.frontier_convs(sigmoid.input[0], through=SHAPE_OPS)}
    to_boxes = {id(n) for n in graph.frontier_convs(softmax.input[0], through=SHAPE_OPS)}
    levels: Dict[Tuple[int, int], Dict[str, str]] = {}
    for conv in frontier:
        name = conv.output[0]
        shape = graph.shapes.get(name)
        if shape is None or len(shape) != 4:
            raise EdgedetError(f"head convolution {name} has no static NCHW shape; export with a fixed imgsz")
        role = _head_role(graph, conv, id(conv) in to_scores, id(conv) in to_boxes, num_classes)
        level = levels.setdefault(shape[2:], {})
        if role in level:
            raise EdgedetError(f"two {role} convolutions at level {shape[2:]} ({level[role]}, {name}); {HINT}")
        level[role] = name
    for hw, parts in levels.items():
        if "dist" not in parts or "cls" not in parts:
            raise EdgedetError(f"head level {hw} lacks a box or a class convolution ({sorted(parts)}); {HINT}")
        _check_channels(graph, parts["dist"], parts["cls"], num_classes)
    return _name_levels(graph, levels)


def _head_role(graph: Graph, conv, to_scores: bool, to_boxes: bool, num_classes: int) -> str:
    """"cls", "dist" or "coef" for a head convolution, from the paths it feeds. One that feeds both (a per-level
    Concat split later) is the box part when it comes first in that Concat, as exporters write it, else the classes;
    without such a Concat the channel count (C for classes) decides."""
    if to_scores and to_boxes:
        concat = next((n for n in graph.consumers.get(conv.output[0], []) if n.op_type == "Concat"), None)
        if concat is not None and len(concat.input) == 2:
            return "dist" if concat.input[0] == conv.output[0] else "cls"
        return "cls" if graph.shapes[conv.output[0]][1] == num_classes else "dist"
    if to_scores:
        return "cls"
    return "dist" if to_boxes else "coef"


def _single_node(tail: Sequence[object], op_type: str, what: str):
    """The one node of `op_type` among the decode's nodes `tail` (between the head convolutions and the output)."""
    found = [node for node in tail if node.op_type == op_type]
    if len(found) != 1:
        raise EdgedetError(f"no YOLOv8 head found: expected {what} ({op_type}) after the head convolutions, "
                           f"found {len(found)}; {HINT}")
    return found[0]


def _check_channels(graph: Graph, box: str, score: str, num_classes: int) -> None:
    box_shape, score_shape = graph.shapes[box], graph.shapes[score]
    if box_shape[1] % 4 or score_shape[1] != num_classes:
        raise EdgedetError(f"head level {box_shape[2:]} has {box_shape[1]} box and {score_shape[1]} class channels; "
                           f"expected 4 x reg_max and {num_classes} (the names); {HINT}")


def _prediction_outputs(graph: Graph) -> Tuple[str, Optional[str]]:
    """(prediction output (1, F, N) or (1, N, F), prototype output (1, M, h, w) or None)."""
    outputs = [o.name for o in graph.model.graph.output]
    pred = [name for name in outputs if len(graph.shapes.get(name, ())) == 3]
    protos = [name for name in outputs if len(graph.shapes.get(name, ())) == 4]
    if len(pred) != 1 or len(protos) > 1:
        shapes = {name: graph.shapes.get(name) for name in outputs}
        raise EdgedetError(f"not a YOLO detector: expected one (1, F, N) prediction output and at most one "
                           f"prototype output, got {shapes}")
    return pred[0], (protos[0] if protos else None)


def _name_levels(graph: Graph, levels: Dict[Tuple[int, int], Dict[str, str]]) -> Dict[str, Dict[str, str]]:
    """Level name from the stride (input height / level height), finest level first."""
    height = _input_shape(graph)[2]
    named = {}
    for hw in sorted(levels, key=lambda hw: -hw[0]):
        stride = height // hw[0]
        if stride < 4 or stride > 128 or stride & (stride - 1):
            raise EdgedetError(f"head level {hw} gives stride {stride} for input height {height}; {HINT}")
        named[LEVEL_NAMES[stride.bit_length() - 3]] = levels[hw]
    return named


def _input_shape(graph: Graph) -> Tuple[int, int, int, int]:
    name = graph.input_name()
    shape = graph.shapes.get(name)
    if shape is None or len(shape) != 4 or shape[1] != 3:
        raise EdgedetError(f"input {name} has no static (1, 3, H, W) shape ({shape}); "
                           "export with a fixed imgsz and dynamic=False")
    return shape


# ---------------------------------------------------------------- the cut


def cut_graph(graph: Graph, outputs: Dict[str, str]):
    """The subgraph from the image input to the tensors of `outputs` (new name -> tensor), outputs renamed."""
    from onnx.utils import Extractor

    model = graph.model
    sub = Extractor(model).extract_model([graph.input_name()], list(outputs.values()))
    renames = {tensor: name for name, tensor in outputs.items()}
    for node in sub.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for info in [*sub.graph.output, *sub.graph.value_info]:
        info.name = renames.get(info.name, info.name)
    order = {name: i for i, name in enumerate(outputs)}
    ordered = sorted(sub.graph.output, key=lambda o: order[o.name])
    sub.graph.ClearField("output")
    sub.graph.output.extend(ordered)
    del sub.metadata_props[:]
    sub.metadata_props.extend(model.metadata_props)
    return sub


def level_stride(level: str) -> int:
    """"p3" -> 8: the pixel stride of an FPN level name."""
    return 2 ** (LEVEL_NAMES.index(level) + 2)


def yolov8_cut(graph: Graph, spec: ModelSpec) -> Tuple[Dict[str, str], ModelSpec]:
    """(new output name -> tensor, spec of the cut file) for a YOLOv8/11 (-seg) file whose runtime spec is `spec`."""
    levels = find_yolov8_head(graph, spec.num_classes)
    outputs = {f"{level}_{part}": tensor for level, parts in levels.items()
               for part in yolov8_split.PARTS if part in parts for tensor in [parts[part]]}
    _, protos = _prediction_outputs(graph)
    coefs = [graph.shapes[parts["coef"]][1] for parts in levels.values() if "coef" in parts]
    if bool(coefs) != bool(protos) or (coefs and len(coefs) != len(levels)):
        raise EdgedetError(f"a YOLOv8-seg head needs mask coefficients at every level and a prototype output; "
                           f"found {len(coefs)} of {len(levels)} levels and {'a' if protos else 'no'} prototype output")
    if protos:
        outputs["proto"] = protos
    first = next(iter(levels.values()))
    cut_spec = dataclasses.replace(
        spec, layout=yolov8_split.NAME, level_outputs=list(levels), strides=tuple(level_stride(l) for l in levels),
        reg_max=graph.shapes[first["dist"]][1] // 4, num_mask_coefs=coefs[0] if coefs else 0,
        proto_output="proto" if protos else None, task="segment" if protos else "detect")
    return outputs, cut_spec


def yolov5_cut(graph: Graph, spec: ModelSpec) -> Tuple[Dict[str, str], ModelSpec]:
    """(new output name -> tensor, spec of the cut file) for an anchor-based YOLOv5 file: per level the last
    convolution (K*(5+C) channels) and its anchors, read from the anchor-size constant its decode multiplies by."""
    pred, _ = _prediction_outputs(graph)
    levels: Dict[Tuple[int, int], Dict[str, str]] = {}
    anchors: Dict[Tuple[int, int], List[Tuple[float, float]]] = {}
    for conv in graph.frontier_convs(pred):
        name = conv.output[0]
        shape = graph.shapes.get(name)
        if shape is None or len(shape) != 4:
            raise EdgedetError(f"head convolution {name} has no static NCHW shape; export with a fixed imgsz")
        sizes = _anchor_sizes(graph, name)
        if shape[1] != len(sizes) * (5 + spec.num_classes):
            raise EdgedetError(f"YOLOv5 head convolution {name} has {shape[1]} channels, expected {len(sizes)} "
                               f"anchors x (5 + {spec.num_classes}); {HINT}")
        levels[shape[2:]], anchors[shape[2:]] = {yolov5_split.PART: name}, sizes
    named = _name_levels(graph, levels)
    outputs = {f"{level}_{yolov5_split.PART}": parts[yolov5_split.PART] for level, parts in named.items()}
    by_level = [anchors[hw] for hw in sorted(anchors, key=lambda hw: -hw[0])]
    return outputs, dataclasses.replace(spec, layout=yolov5_split.NAME, level_outputs=list(named),
                                        strides=tuple(level_stride(l) for l in named), anchors=by_level,
                                        task="detect")


def _anchor_sizes(graph: Graph, conv_output: str, max_steps: int = 16) -> List[Tuple[float, float]]:
    """The K (w, h) anchor sizes in pixels of one level: the (1, K, h, w, 2) constant a Mul downstream of the
    level's convolution multiplies by (YOLOv5's anchor_grid; its grid offsets are added, not multiplied)."""
    queue, seen = deque([(conv_output, 0)]), set()
    while queue:
        tensor, steps = queue.popleft()
        for node in graph.consumers.get(tensor, []):
            if id(node) in seen or steps >= max_steps:
                continue
            seen.add(id(node))
            if node.op_type == "Mul":
                grid = [graph.constants[i] for i in node.input if i in graph.constants
                        and graph.constants[i].ndim == 5 and graph.constants[i].shape[-1] == 2]
                if grid:
                    return [(float(w), float(h)) for w, h in grid[0][0, :, 0, 0, :]]
            queue.extend((out, steps + 1) for out in node.output)
    raise EdgedetError(f"no anchor sizes found after head convolution {conv_output} (a (1, K, h, w, 2) constant "
                       f"multiplied in the decode); {HINT}")


# layout of the file as the runtime reads it -> how to cut it
CUTTERS = {yolov8.NAME: yolov8_cut, yolov8_seg.NAME: yolov8_cut, yolov5.NAME: yolov5_cut}


def cut_foreign_onnx(path, out_path, names=None, layout=None, imgsz=None) -> ModelSpec:
    """Write the cut fp32 model of the foreign ONNX file `path` to `out_path`; returns its spec.

    names / layout / imgsz: what the runtime needs to read a file without Ultralytics metadata (--names, --layout,
    --imgsz), as for `edgedet run`."""
    path = Path(path)
    spec = load_backend(path, threads=1, names=names, layout=layout, imgsz=imgsz).spec
    model = pin_input_shape(load_onnx(path), spec)
    if spec.layout not in CUTTERS:
        raise EdgedetError(f"{path} is a {spec.layout!r} model; edgedet cuts {', '.join(CUTTERS)} files "
                           f"(an edgedet export needs no cut: export its checkpoint instead)")
    graph = Graph.of(model)
    outputs, cut_spec = CUTTERS[spec.layout](graph, spec)
    cut_spec = dataclasses.replace(
        cut_spec, input_name=spec.input_name, input_layout="NCHW", output_layout="NCHW", input_dtype="float32",
        input_quant=None, output_quant={}, precision="fp32", quantization="",
        source=path.name)  # like an edgedet export's checkpoint name; the layout says it was cut
    cut = cut_graph(graph, outputs)
    set_spec(cut, cut_spec)
    _save_checked(cut, out_path)
    return cut_spec


def pin_input_shape(model, spec: ModelSpec):
    """The model with its image input fixed at (1, 3, H, W) of spec.input_size_hw where the file left dims dynamic
    (an export with dynamic=True), so that shape inference gives every head tensor a static shape."""
    inputs = [i for i in model.graph.input if i.name == spec.input_name] or list(model.graph.input[:1])
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) == 4:
        for dim, value in zip(dims, (1, 3, *spec.input_size_hw)):
            if not dim.HasField("dim_value"):
                dim.dim_value = value
    return model


def _save_checked(model, out_path) -> None:
    import onnx

    onnx.checker.check_model(model, full_check=True)
    with atomic_outputs(out_path) as (temp,):
        onnx.save_model(model, str(temp), save_as_external_data=False)
