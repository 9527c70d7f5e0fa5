"""Every `ModelSpec` is built here, whatever the model file's origin:

- edgedet ONNX files: metadata_props "edgedet_spec" holds `ModelSpec.to_json()`;
- edgedet TFLite files: the sidecar `<model>.tflite.json` (or `<model>.json`) beside the .tflite holds the same;
- Ultralytics exports: their metadata (ONNX metadata_props, or the metadata zipped onto a .tflite) gives names,
  imgsz, stride and task, the output shapes give the layout (device.layouts recognises it);
- anything else: --names, --imgsz and --layout flags plus the output shapes.
Flags override what the file says. Then the spec is reconciled with the file's real tensors (input name, layout,
dtype and quantization; output roles, layout and quantization). The backends only open files and run them.
"""
from __future__ import annotations

import ast
import json
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import layouts
from .errors import EdgedetError, first_line
from .layouts.shapes import Shape, as_shapes, describe
from .spec import ModelSpec, TensorDetails

SPEC_KEY = "edgedet_spec"  # the metadata key (and sidecar field) holding ModelSpec.to_json()


@dataclass(frozen=True)
class SpecOverrides:
    """What the user supplies on the command line for models without (complete) edgedet metadata."""

    names: Optional[List[str]] = None  # --names: class names, index = class id
    layout: Optional[str] = None  # --layout: a name of device.layouts.NAMES
    imgsz: Optional[Tuple[int, int]] = None  # --imgsz: network input (height, width)

    def __post_init__(self):
        if self.layout is not None:
            layouts.by_name(self.layout, "--layout")


def model_spec(metadata: Mapping[str, object], path: Path, inputs: List[TensorDetails],
               outputs: List[TensorDetails], overrides: SpecOverrides, boxes_normalized: bool):
    """The spec of a model file from its metadata (see `spec_from_metadata`), reconciled with its tensors.

    boxes_normalized: True for TFLite files (a foreign NHWC TFLite model gives boxes in 0..1 of the input).
    Returns (spec, input_details, output_details), the output details renamed to their roles.
    """
    if inputs:
        check_imgsz(overrides.imgsz, inputs[0], path)
    spec = spec_from_metadata(metadata, path, inputs, outputs, overrides, boxes_normalized)
    return reconcile(spec, inputs, outputs, path)


def check_imgsz(imgsz: Optional[Tuple[int, int]], x: TensorDetails, path: Path) -> None:
    """EdgedetError when --imgsz (h, w) differs from the fixed input size of the model's input `x`: the file
    would run at its own size anyway. Models with a dynamic input size take --imgsz."""
    fixed = static_input_size(x)
    if imgsz is not None and fixed is not None and tuple(imgsz) != fixed:
        raise EdgedetError(f"--imgsz {_size(imgsz)} differs from the fixed input size {_size(fixed)} of {path.name}; "
                           f"drop --imgsz (it sizes models with a dynamic input) or export the model at that size")


def _size(size_hw: Sequence[int]) -> str:
    """(320, 256) -> '320x256' (height x width)."""
    return f"{size_hw[0]}x{size_hw[1]}"


def spec_from_metadata(metadata: Mapping[str, object], path: Path, inputs: List[TensorDetails],
                       outputs: List[TensorDetails], overrides: SpecOverrides, boxes_normalized: bool) -> ModelSpec:
    """edgedet metadata, else Ultralytics metadata, else shapes + flags; flags override."""
    if SPEC_KEY in metadata:
        return apply_overrides(spec_from_json(str(metadata[SPEC_KEY]), path), overrides)
    if is_ultralytics(metadata):
        input_layout = tensor_layout(inputs[0].shape, "NCHW")
        spec = spec_from_ultralytics_metadata(metadata, _shapes(outputs), input_layout=input_layout,
                                              boxes_normalized=boxes_normalized and input_layout == "NHWC",
                                              input_size_hw=overrides.imgsz or static_input_size(inputs[0]))
        return apply_overrides(spec, overrides)
    return spec_from_flags(path, inputs, outputs, overrides, boxes_normalized)


def spec_from_json(text: str, origin) -> ModelSpec:
    """`ModelSpec.to_json()` text from a file's metadata or sidecar, checked: known layout, a format version
    its layout decodes. origin: the file, for the error message."""
    try:
        spec = ModelSpec.from_json(text)
    except (ValueError, TypeError) as error:
        raise EdgedetError(f"{origin}: unusable edgedet_spec metadata: {first_line(error)}") from None
    try:
        layout = layouts.by_name(spec.layout)
    except EdgedetError as error:
        raise EdgedetError(f"{origin}: {error}") from None
    if spec.version < layout.MIN_SPEC_VERSION:
        raise EdgedetError(f"{origin}: model spec version {spec.version} was written by an older edgedet (the "
                           f"{layout.NAME} layout needs version {layout.MIN_SPEC_VERSION}); re-export the model "
                           f"from its checkpoint")
    return spec


def apply_overrides(spec: ModelSpec, overrides: SpecOverrides) -> ModelSpec:
    """The spec with --names, --layout and --imgsz applied; --names must keep the model's class count."""
    changes = {}
    if overrides.names is not None:
        if spec.names and len(overrides.names) != len(spec.names):
            raise EdgedetError(f"--names gives {len(overrides.names)} classes but the model has {len(spec.names)}")
        changes["names"] = list(overrides.names)
    if overrides.layout is not None:
        changes["layout"] = overrides.layout
    if overrides.imgsz is not None:
        changes["input_size_hw"] = overrides.imgsz
    return replace(spec, **changes) if changes else spec


# ---------------------------------------------------------------- TFLite metadata: sidecar or Ultralytics zip


def tflite_metadata(path: Path) -> Dict[str, object]:
    """The sidecar JSON ({"edgedet_spec": ...} or the spec itself) as {"edgedet_spec": text}, else the
    Ultralytics metadata zipped into the .tflite, else {}."""
    for sidecar in (Path(str(path) + ".json"), path.with_suffix(".json")):
        if sidecar.is_file():
            try:
                data = json.loads(sidecar.read_text())
            except (OSError, ValueError) as error:
                raise EdgedetError(f"cannot read the model spec {sidecar}: {first_line(error)}") from None
            spec_data = data.get(SPEC_KEY, data) if isinstance(data, dict) else data
            return {SPEC_KEY: spec_data if isinstance(spec_data, str) else json.dumps(spec_data)}
    return _ultralytics_tflite_metadata(path)


def _ultralytics_tflite_metadata(path: Path) -> Dict[str, object]:
    """Ultralytics appends a zip with one metadata file (a Python/JSON dict literal) to its .tflite exports."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            if not members:
                return {}
            text = archive.read(members[0]).decode("utf-8")
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError):
        return {}
    try:
        data = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        try:
            data = json.loads(text)
        except ValueError:
            return {}
    return {str(k): v for k, v in data.items()} if isinstance(data, dict) else {}


# ---------------------------------------------------------------- foreign models: Ultralytics metadata or flags


def is_ultralytics(metadata: Mapping[str, object]) -> bool:
    """Ultralytics exports carry names with imgsz and task; the YOLOv5 repo's exporter writes names and stride."""
    return "names" in metadata and any(key in metadata for key in ("imgsz", "task", "stride"))


def spec_from_ultralytics_metadata(metadata: Mapping[str, object],
                                   output_shapes: Union[Mapping[str, Sequence[int]], Sequence[Sequence[int]]],
                                   input_layout: str = "NCHW", boxes_normalized: bool = False,
                                   input_size_hw: Optional[Tuple[int, int]] = None) -> ModelSpec:
    """A `ModelSpec` for an Ultralytics export from its metadata (names, imgsz, stride, task) and output shapes.

    metadata:      ONNX metadata_props (or the TFLite metadata.json) as a dict; values may be literal strings.
    output_shapes: {output name: shape} or a list of shapes; the layout is recognised from them.
    input_layout / boxes_normalized: "NHWC" and True for Ultralytics TFLite files.
    """
    names = _ultralytics_names(_literal(metadata.get("names", {})))
    task = str(metadata.get("task", "detect"))
    if task not in ("detect", "segment"):
        raise EdgedetError(f"Ultralytics task {task!r} is not supported; edgedet runs 'detect' and 'segment' models")
    imgsz = _literal(metadata.get("imgsz", input_size_hw))
    if imgsz is None:
        raise EdgedetError("Ultralytics metadata has no 'imgsz' and no input size was given")
    size_hw = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, float)) else (int(imgsz[0]), int(imgsz[1]))
    shapes = as_shapes(output_shapes if isinstance(output_shapes, Mapping) else {
        f"output{i}": s for i, s in enumerate(output_shapes)})
    layout = layouts.recognise(shapes, len(names))
    fields = layout.spec_fields(shapes, len(names))
    if task == "segment" and fields["task"] != "segment":
        raise EdgedetError(f"Ultralytics segment model must have a prediction and a prototype output, "
                           f"got shapes {describe(shapes)}")
    stride = int(_literal(metadata.get("stride", 32)))
    return ModelSpec(names=names, input_size_hw=size_hw, layout=layout.NAME, anchors=[],
                     strides=tuple(s for s in (8, 16, 32, 64) if s <= stride) or (stride,),
                     input_name=str(metadata.get("input_name", "images")), input_layout=input_layout,
                     output_layout=input_layout, boxes_normalized=boxes_normalized,
                     source=f"ultralytics {metadata.get('version', '')}".strip(), **dict(fields, task=task))


def _ultralytics_names(value) -> List[str]:
    """Ultralytics 'names' ({0: 'person', ...} or a list) -> class names by id."""
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value, key=int)]
    if isinstance(value, (list, tuple)):
        return [str(n) for n in value]
    raise EdgedetError(f"Ultralytics metadata 'names' is not a dict or list: {value!r}")


def _literal(value):
    """Ultralytics stores metadata values as Python literals in strings ("{0: 'person'}", "[640, 640]")."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def spec_from_flags(path: Path, inputs: List[TensorDetails], outputs: List[TensorDetails],
                    overrides: SpecOverrides, boxes_normalized: bool) -> ModelSpec:
    """A spec for a model without metadata, from its output shapes and --names/--layout/--imgsz.

    Raises an EdgedetError naming the flags that supply what cannot be recognised.
    """
    imgsz = overrides.imgsz or static_input_size(inputs[0])
    shapes = _shapes(outputs)
    layout = _flag_layout(shapes, overrides)
    missing = []
    if overrides.names is None:
        missing.append("--names (class names, comma-separated or a text file with one per line)")
    if layout is None:
        missing.append(f"--layout (one of {', '.join(layouts.FROM_SHAPES)})")
    if imgsz is None:
        missing.append("--imgsz (network input size, e.g. 640 or 480,640)")
    if overrides.names is not None and (layout is None or not layout.recognises(shapes, len(overrides.names))):
        check_names_fit(layout, shapes, len(overrides.names), path)  # a wrong count, not a missing --layout
    if missing:
        sidecar = (f" (an edgedet export keeps its metadata in {Path(path).name}.json beside it: copy that along)"
                   if Path(path).suffix.lower() == ".tflite" else "")
        raise EdgedetError(f"{path} has no edgedet or Ultralytics metadata{sidecar}; supply " + ", ".join(missing))
    try:
        fields = layout.spec_fields(shapes, len(overrides.names))
    except EdgedetError as error:
        raise EdgedetError(f"{path} has no edgedet metadata, so --layout {layout.NAME} cannot be used: {error}; "
                           f"use one of {', '.join(layouts.FROM_SHAPES)}") from None
    input_layout = tensor_layout(inputs[0].shape, "NCHW")
    return ModelSpec(names=list(overrides.names), input_size_hw=imgsz, layout=layout.NAME, anchors=[],
                     input_name=inputs[0].file_name, input_layout=input_layout,
                     boxes_normalized=boxes_normalized and input_layout == "NHWC", source="foreign", **fields)


def check_names_fit(layout, shapes: Mapping[str, Shape], num_names: int, path: Path) -> None:
    """EdgedetError naming both counts when --names' `num_names` classes fit no FROM_SHAPES layout's outputs (or
    not `layout`'s, when --layout gave one), before anything runs; nothing when no class count fits at all."""
    candidates = [layout] if layout is not None else [layouts.by_name(name) for name in layouts.FROM_SHAPES]
    if any(candidate.recognises(shapes, num_names) for candidate in candidates):
        return
    fits = [f"{candidate.NAME} with {count} classes" for candidate in candidates
            if (count := class_count(candidate, shapes)) is not None]
    if fits:
        raise EdgedetError(f"--names gives {num_names} classes but the outputs {describe(shapes)} of {path.name} "
                           f"fit {' or '.join(fits)}")


def class_count(layout, shapes: Mapping[str, Shape]) -> Optional[int]:
    """The smallest class count for which `layout` recognises outputs of these shapes (a larger one would read
    the candidates axis as features), or None."""
    largest = max((int(d) for shape in shapes.values() for d in shape), default=0)
    return next((n for n in range(1, largest + 1) if layout.recognises(shapes, n)), None)


def _flag_layout(shapes: Mapping[str, Shape], overrides: SpecOverrides):
    """The --layout given, else the one recognised from the shapes with the --names class count; None if the
    class count is unknown or no single layout fits."""
    if overrides.layout is not None:
        return layouts.by_name(overrides.layout, "--layout")
    if overrides.names is None:
        return None
    try:
        return layouts.recognise(shapes, len(overrides.names))
    except EdgedetError:
        return None


def _shapes(outputs: List[TensorDetails]) -> Dict[str, Shape]:
    """{file tensor name: dims} with 0 for dynamic dims."""
    return as_shapes({o.file_name: o.shape for o in outputs})


def static_input_size(details: TensorDetails) -> Optional[Tuple[int, int]]:
    """(h, w) of a 4-D NCHW or NHWC input with static spatial dims, else None."""
    shape = details.shape
    if len(shape) != 4:
        return None
    hw = (shape[2], shape[3]) if shape[1] == 3 else (shape[1], shape[2])
    return (int(hw[0]), int(hw[1])) if all(hw) else None


def tensor_layout(shape, default: str) -> str:
    """NCHW if the channel axis (3) is axis 1, NHWC if it is axis 3, else `default`."""
    if len(shape) == 4 and shape[1] == 3 and shape[3] != 3:
        return "NCHW"
    if len(shape) == 4 and shape[3] == 3 and shape[1] != 3:
        return "NHWC"
    return default


# ---------------------------------------------------------------- reconcile the spec with the file


def reconcile(spec: ModelSpec, inputs: List[TensorDetails], outputs: List[TensorDetails], path: Path):
    """Fill the spec's input facts from the file and map outputs to role names.

    Returns (spec, input_details, output_details) where output_details are renamed to roles.
    """
    if len(inputs) != 1:
        raise EdgedetError(f"{path} has {len(inputs)} inputs; edgedet runs single-input models")
    x = inputs[0]
    if len(x.shape) != 4:
        raise EdgedetError(f"model input {x.file_name} has shape {list(x.shape)}; expected 4-D NCHW or NHWC")
    spec = replace(spec, input_size_hw=static_input_size(x) or spec.input_size_hw)
    roles, output_layout = _map_outputs(spec, outputs, path)
    output_quant = dict(spec.output_quant)
    output_details = []
    for role, details in roles:
        if details.quant is not None:
            output_quant[role] = details.quant
        output_details.append(replace(details, name=role))
    spec = replace(spec, input_name=x.file_name, input_layout=tensor_layout(x.shape, spec.input_layout),
                   input_dtype=x.dtype if x.dtype in ("float32", "uint8", "int8") else spec.input_dtype,
                   input_quant=x.quant if x.dtype in ("uint8", "int8") else None,
                   output_quant=output_quant, output_layout=output_layout)
    return spec, [x], output_details


def _map_outputs(spec: ModelSpec, outputs: List[TensorDetails], path: Path):
    """[(role, details)] and the output layout; by name first, then by unique shape (never by position), for a
    layout that names its outputs' roles; else every output keeps its file name."""
    layout = layouts.by_name(spec.layout)
    errors = []
    for candidate in (spec.output_layout, "NHWC" if spec.output_layout == "NCHW" else "NCHW"):
        expected = layout.output_shapes(spec, candidate)
        if expected is None:
            return [(o.file_name, o) for o in outputs], spec.output_layout
        try:
            return _match_roles(expected, outputs), candidate
        except ValueError as error:
            errors.append(str(error))
    raise EdgedetError(f"{path}: cannot match outputs {describe(_shapes(outputs))} to the spec's {errors[0]}")


def _match_roles(expected: Mapping[str, Shape], outputs: List[TensorDetails]):
    by_name = {o.file_name: o for o in outputs}
    mapping = []
    used = set()
    for role, shape in expected.items():
        if role in by_name and _shape_matches(by_name[role].shape, shape):
            mapping.append((role, by_name[role]))
            used.add(role)
            continue
        candidates = [o for o in outputs if _shape_matches(o.shape, shape) and o.file_name not in used]
        if len(candidates) != 1:
            raise ValueError(f"{role} {list(shape)} ({len(candidates)} outputs have that shape)")
        mapping.append((role, candidates[0]))
        used.add(candidates[0].file_name)
    return mapping


def _shape_matches(actual: Tuple[Optional[int], ...], expected: Tuple[int, ...]) -> bool:
    return len(actual) == len(expected) and all(a is None or a == e for a, e in zip(actual, expected))


def read_names(text: Optional[str]) -> Optional[List[str]]:
    """--names: "a,b,c" or a file with one name per line (a YAML/JSON list also works if one per line)."""
    if text is None:
        return None
    if not os.path.isfile(text) and ("," not in text) and (os.sep in text or Path(text).suffix.lower() in
                                                            (".txt", ".names", ".yaml", ".yml", ".json")):
        raise EdgedetError(f"--names file not found: {text}")
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as handle:
            names = [line.strip().strip("-").strip().strip("'\"") for line in handle]
        names = [n for n in names if n]
    else:
        names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise EdgedetError(f"--names gives no class names: {text!r}")
    return names
