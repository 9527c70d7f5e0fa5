"""Inference backends: onnxruntime and a TFLite interpreter behind one small interface.

`load_backend(path)` picks the runtime from the file suffix (.onnx -> onnxruntime, .tflite -> TFLite), or
from `backend=`; the runtime is imported only then, with an install hint naming the extra when missing.

A backend has
- `.spec`: the `ModelSpec`, read from the file (ONNX metadata_props "edgedet_spec", the sidecar JSON beside
  a .tflite, or Ultralytics metadata), completed from user flags for foreign models, and reconciled with the
  file's real input/output tensors (input name, layout, dtype and quantization; output quantization);
- `.input_details` / `.output_details`: `TensorDetails` (name, shape, dtype, quant);
- `.run(x) -> {role name: raw array}`: outputs keyed by the spec's role names ("p3_box", "seg", "proto", ...),
  matched to the file's tensors by name, else by shape, never by position. Integer outputs are returned
  raw (postprocess dequantizes with `spec.output_quant`); a float input given to an integer model is
  quantized with the input's quantization parameters.
"""
from __future__ import annotations

import ast
import json
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import EdgedetError
from .preprocessing import quantize
from .spec import LAYOUTS, ModelSpec, QuantParams

BACKENDS = ("onnxruntime", "tflite")
FOREIGN_LAYOUTS = ("yolov5", "yolov8", "yolov8-seg")  # layouts a spec can be inferred for from shapes + flags
ORT_OPTIMIZATION = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class TensorDetails:
    """One input or output tensor of a model."""

    name: str  # role name for outputs ("p3_box", "seg", ...), tensor name for the input
    shape: Tuple[Optional[int], ...]  # static dims; None where the file leaves a dim dynamic
    dtype: str  # numpy dtype name: "float32", "int8", "uint8", ...
    quant: Optional[QuantParams] = None  # affine quantization of integer tensors, None for float
    file_name: str = ""  # the tensor's name inside the model file


@dataclass(frozen=True)
class SpecOverrides:
    """What the user supplies on the command line for models without (complete) edgedet metadata."""

    names: Optional[List[str]] = None  # --names: class names, index = class id
    layout: Optional[str] = None  # --layout: one of device.spec.LAYOUTS
    imgsz: Optional[Tuple[int, int]] = None  # --imgsz: network input (height, width)


def load_backend(path, backend: Optional[str] = None, threads: Optional[int] = None, *,
                 names: Optional[Sequence[str]] = None, layout: Optional[str] = None,
                 imgsz=None, optimization: str = "all"):
    """Open `path` with onnxruntime or TFLite and return a backend with `.spec` and `.run(x)`.

    backend:      "onnxruntime" or "tflite"; None = from the suffix (.onnx / .tflite).
    threads:      intra-op threads (None = all cores).
    names/layout/imgsz: override or complete the model's spec (needed for foreign models without metadata).
    optimization: onnxruntime graph optimisation level, one of ORT_OPTIMIZATION.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgedetError(f"model file not found: {path}")
    kind = _backend_kind(path, backend)
    if threads is not None and int(threads) < 1:
        raise EdgedetError(f"--threads must be >= 1, got {threads}")
    overrides = SpecOverrides(list(names) if names is not None else None, layout, _parse_imgsz(imgsz))
    if overrides.layout is not None and overrides.layout not in LAYOUTS:
        raise EdgedetError(f"unknown --layout {overrides.layout!r}; expected one of {', '.join(LAYOUTS)}")
    if kind == "onnxruntime":
        return OnnxBackend(path, threads, overrides, optimization)
    return TFLiteBackend(path, threads, overrides)


def _backend_kind(path: Path, backend: Optional[str]) -> str:
    if backend is not None:
        aliases = {"onnxruntime": "onnxruntime", "onnx": "onnxruntime", "ort": "onnxruntime",
                   "tflite": "tflite", "litert": "tflite"}
        if backend not in aliases:
            raise EdgedetError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        return aliases[backend]
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix == ".tflite":
        return "tflite"
    raise EdgedetError(f"cannot tell the model format of {path} from its suffix {suffix!r}: "
                       f"use a .onnx or .tflite file, or pass --backend onnxruntime|tflite")


def _parse_imgsz(imgsz) -> Optional[Tuple[int, int]]:
    """None, 320, "320", "320,256", (320, 256) -> (h, w)."""
    if imgsz is None:
        return None
    if isinstance(imgsz, str):
        imgsz = [v for v in imgsz.replace("x", ",").split(",") if v.strip()]
    try:
        values = [int(v) for v in np.atleast_1d(imgsz)]
    except (TypeError, ValueError):
        raise EdgedetError(f"--imgsz must be one or two positive integers (height, width), got {imgsz!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise EdgedetError(f"--imgsz must be one or two positive integers (height, width), got {imgsz!r}")
    return values[0], values[1]


# ---------------------------------------------------------------------------------------------- runtimes


def _ort_session_options(ort, threads: int, optimization: str):
    """CPU session options. Worker threads do not spin after `run`: spinning would steal the cores from the NumPy
    post-processing that follows each inference (measured: masks stage 140 ms spinning vs 92 ms not, 2 cores)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = _ort_level(ort, optimization)
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxBackend:
    """onnxruntime on the CPU with a chosen thread count and graph optimisation level."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: Optional[int], overrides: SpecOverrides, optimization: str = "all"):
        ort = _import_onnxruntime()
        self.path = str(path)
        self.threads = threads or os.cpu_count() or 1  # intra-op threads actually used
        options = _ort_session_options(ort, self.threads, optimization)
        try:
            self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise EdgedetError(f"onnxruntime cannot load {path}: {_first_line(error)}") from None
        self.version = ort.__version__
        inputs = [_ort_details(t) for t in self.session.get_inputs()]
        outputs = [_ort_details(t) for t in self.session.get_outputs()]
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        spec = _spec_from_metadata(metadata, path, inputs, outputs, overrides, boxes_normalized=False)
        self.spec, self.input_details, self.output_details = _reconcile(spec, inputs, outputs, path)
        self._input_name = inputs[0].file_name
        self._roles = [(d.name, d.file_name) for d in self.output_details]

    def run(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """x: the preprocessed input (1, 3, H, W) or (1, H, W, 3) -> {role name: raw output array}."""
        x = _as_input(x, self.input_details[0])
        values = self.session.run([file for _, file in self._roles], {self._input_name: x})
        return {role: value for (role, _), value in zip(self._roles, values)}

    def describe(self) -> str:
        return f"onnxruntime {self.version}, {self.threads} threads"


class TFLiteBackend:
    """A TFLite interpreter (ai_edge_litert, else tflite_runtime, else tensorflow.lite); XNNPACK, num_threads."""

    name = "tflite"

    def __init__(self, path: Path, threads: Optional[int], overrides: SpecOverrides):
        interpreter_class, self.runtime = _import_tflite()
        self.path = str(path)
        self.threads = threads or os.cpu_count() or 1  # XNNPACK threads
        try:
            self.interpreter = interpreter_class(model_path=self.path, num_threads=self.threads)
            self.interpreter.allocate_tensors()
        except Exception as error:  # the interpreter raises ValueError/RuntimeError with multi-line text
            raise EdgedetError(f"{self.runtime} cannot load {path}: {_first_line(error)}") from None
        raw_inputs = self.interpreter.get_input_details()
        raw_outputs = self.interpreter.get_output_details()
        if len(raw_inputs) != 1:
            raise EdgedetError(f"{path} has {len(raw_inputs)} inputs; edgedet runs single-input models")
        inputs = [_tflite_details(d) for d in raw_inputs]
        outputs = [_tflite_details(d) for d in raw_outputs]
        metadata = _tflite_metadata(path)
        spec = _spec_from_metadata(metadata, path, inputs, outputs, overrides, boxes_normalized=True)
        self.spec, self.input_details, self.output_details = _reconcile(spec, inputs, outputs, path)
        self._input_index = raw_inputs[0]["index"]
        index_by_name = {d["name"]: d["index"] for d in raw_outputs}
        self._roles = [(d.name, index_by_name[d.file_name]) for d in self.output_details]

    def run(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """x: the preprocessed input -> {role name: raw output array} (copies, safe to keep)."""
        x = _as_input(x, self.input_details[0])
        self.interpreter.set_tensor(self._input_index, x)
        self.interpreter.invoke()
        return {role: self.interpreter.get_tensor(index) for role, index in self._roles}

    def describe(self) -> str:
        return f"{self.runtime} (XNNPACK), {self.threads} threads"


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise EdgedetError('onnxruntime is not installed; install it with: pip install "edgedet[onnx]"') from None
    return onnxruntime


def _import_tflite():
    """(Interpreter class, runtime name): ai_edge_litert, then tflite_runtime, then tensorflow.lite."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf
        return tf.lite.Interpreter, "tensorflow.lite"
    except ImportError:
        pass
    raise EdgedetError('no TFLite interpreter is installed (ai_edge_litert, tflite_runtime or tensorflow); '
                       'install one with: pip install "edgedet[tflite]"')


def _ort_level(ort, optimization: str):
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if optimization not in levels:
        raise EdgedetError(f"unknown graph optimisation level {optimization!r}; expected one of {', '.join(levels)}")
    return levels[optimization]


_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(double)": "float64"}


def _ort_details(node) -> TensorDetails:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in node.shape)
    return TensorDetails(node.name, shape, _ORT_DTYPES.get(node.type, node.type), None, node.name)


def _tflite_details(raw: dict) -> TensorDetails:
    shape = tuple(int(d) if d > 0 else None for d in raw.get("shape_signature", raw["shape"]))
    dtype = np.dtype(raw["dtype"]).name
    scale, zero_point = raw.get("quantization", (0.0, 0))
    quant = None
    if dtype in ("int8", "uint8", "int16") and scale:
        quant = QuantParams(float(scale), int(zero_point), dtype)
    return TensorDetails(raw["name"], shape, dtype, quant, raw["name"])


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def _as_input(x: np.ndarray, details: TensorDetails) -> np.ndarray:
    """Cast to the input dtype; a float array fed to an integer input is quantized with its parameters."""
    want = np.dtype(details.dtype)
    if x.dtype == want:
        return np.ascontiguousarray(x)
    if np.issubdtype(want, np.integer) and np.issubdtype(x.dtype, np.floating):
        if details.quant is None:
            raise EdgedetError(f"model input {details.file_name} is {want} without quantization parameters")
        return quantize(x, replace(details.quant, dtype=want.name))
    return np.ascontiguousarray(x.astype(want))


# ------------------------------------------------------------------------------------------ the model spec


def _spec_from_metadata(metadata: dict, path: Path, inputs: List[TensorDetails], outputs: List[TensorDetails],
                        overrides: SpecOverrides, boxes_normalized: bool) -> ModelSpec:
    """The spec from edgedet metadata, else Ultralytics metadata, else shapes + flags; flags override."""
    if "edgedet_spec" in metadata:
        try:
            spec = ModelSpec.from_json(metadata["edgedet_spec"])
        except (ValueError, TypeError) as error:
            raise EdgedetError(f"{path}: unusable edgedet_spec metadata: {_first_line(error)}") from None
        return _apply_overrides(spec, overrides)
    if _is_ultralytics(metadata):
        return _spec_from_ultralytics(metadata, path, inputs, outputs, overrides, boxes_normalized)
    return _spec_from_flags(path, inputs, outputs, overrides, boxes_normalized)


def _apply_overrides(spec: ModelSpec, overrides: SpecOverrides) -> ModelSpec:
    changes = {}
    if overrides.names is not None:
        if spec.layout == "edgedet" and spec.names and len(overrides.names) != len(spec.names):
            raise EdgedetError(f"--names gives {len(overrides.names)} classes but the model has {len(spec.names)}")
        changes["names"] = list(overrides.names)
    if overrides.layout is not None:
        changes["layout"] = overrides.layout
    if overrides.imgsz is not None:
        changes["input_size_hw"] = overrides.imgsz
    return replace(spec, **changes) if changes else spec


def _tflite_metadata(path: Path) -> dict:
    """The sidecar JSON ({"edgedet_spec": ...}) or the Ultralytics metadata zipped into the .tflite."""
    for sidecar in (Path(str(path) + ".json"), path.with_suffix(".json")):
        if sidecar.is_file():
            try:
                data = json.loads(sidecar.read_text())
            except (OSError, ValueError) as error:
                raise EdgedetError(f"cannot read the model spec {sidecar}: {_first_line(error)}") from None
            spec_data = data.get("edgedet_spec", data) if isinstance(data, dict) else data
            if isinstance(spec_data, str):
                return {"edgedet_spec": spec_data}
            return {"edgedet_spec": json.dumps(spec_data)}
    return _ultralytics_tflite_metadata(path)


def _ultralytics_tflite_metadata(path: Path) -> dict:
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


def _is_ultralytics(metadata: dict) -> bool:
    return "names" in metadata and ("imgsz" in metadata or "task" in metadata)


def _spec_from_ultralytics(metadata: dict, path: Path, inputs, outputs, overrides: SpecOverrides,
                           boxes_normalized: bool) -> ModelSpec:
    """Ultralytics metadata (names, imgsz, task, stride) plus the output shapes -> a yolov8 / yolov8-seg spec."""
    from .decode import spec_from_ultralytics_metadata

    input_layout = _layout_of_shape(inputs[0].shape, "NCHW")
    shapes = {o.file_name: tuple(d or 0 for d in o.shape) for o in outputs}
    spec = spec_from_ultralytics_metadata(metadata, shapes, input_layout=input_layout,
                                          boxes_normalized=boxes_normalized and input_layout == "NHWC",
                                          input_size_hw=overrides.imgsz or _static_input_size(inputs[0]))
    return _apply_overrides(spec, overrides)


def _spec_from_flags(path: Path, inputs: List[TensorDetails], outputs: List[TensorDetails],
                     overrides: SpecOverrides, boxes_normalized: bool) -> ModelSpec:
    """A spec for a model without metadata, from its shapes and --names/--layout/--imgsz.

    Raises an EdgedetError naming the flags that supply what cannot be recognised.
    """
    imgsz = overrides.imgsz or _static_input_size(inputs[0])
    layout = overrides.layout or _guess_layout(outputs, overrides.names)
    missing = []
    if overrides.names is None:
        missing.append("--names (class names, comma-separated or a text file with one per line)")
    if layout is None:
        missing.append(f"--layout (one of {', '.join(FOREIGN_LAYOUTS)})")
    if imgsz is None:
        missing.append("--imgsz (network input size, e.g. 640 or 480,640)")
    if missing:
        raise EdgedetError(f"{path} has no edgedet or Ultralytics metadata; supply " + ", ".join(missing))
    if layout not in FOREIGN_LAYOUTS:
        raise EdgedetError(f"{path} has no edgedet metadata, so --layout {layout} cannot be used "
                           f"(its anchors and outputs are unknown); use one of {', '.join(FOREIGN_LAYOUTS)}")
    preds = [o for o in outputs if len(o.shape) == 3]
    protos = [o for o in outputs if len(o.shape) == 4]
    if len(preds) != 1 or (layout == "yolov8-seg" and len(protos) != 1):
        shapes = ", ".join(f"{o.file_name} {list(o.shape)}" for o in outputs)
        raise EdgedetError(f"{path}: outputs [{shapes}] do not look like a {layout} model")
    masks = 0
    if layout == "yolov8-seg":
        proto_shape = protos[0].shape
        masks = int(proto_shape[1] if proto_shape[1] and proto_shape[1] < (proto_shape[3] or 0) else proto_shape[3])
    spec = ModelSpec(names=list(overrides.names), input_size_hw=imgsz, layout=layout,
                     task="segment" if layout == "yolov8-seg" else "detect", num_mask_coefs=masks,
                     level_outputs=[preds[0].file_name],
                     proto_output=protos[0].file_name if layout == "yolov8-seg" else None,
                     boxes_normalized=boxes_normalized, source="foreign")
    return _with_io(spec, inputs, outputs, boxes_normalized)


def _with_io(spec: ModelSpec, inputs, outputs, boxes_normalized: bool) -> ModelSpec:
    """Fill input name/layout and box normalisation of a foreign spec from the file's tensors."""
    layout = _layout_of_shape(inputs[0].shape, "NCHW")
    normalized = boxes_normalized and layout == "NHWC"
    return replace(spec, input_name=inputs[0].file_name, input_layout=layout, boxes_normalized=normalized)


def _static_input_size(details: TensorDetails) -> Optional[Tuple[int, int]]:
    shape = details.shape
    if len(shape) != 4:
        return None
    hw = (shape[2], shape[3]) if shape[1] == 3 else (shape[1], shape[2])
    return (int(hw[0]), int(hw[1])) if all(hw) else None


def _guess_layout(outputs: List[TensorDetails], names: Optional[List[str]]) -> Optional[str]:
    """yolov8 / yolov8-seg / yolov5 from the prediction shape when the class count is known; else None."""
    preds = [o for o in outputs if len(o.shape) == 3]
    if len(preds) != 1 or names is None:
        return None
    _, a, b = preds[0].shape
    c = len(names)
    has_proto = any(len(o.shape) == 4 for o in outputs)
    if has_proto and (a == 4 + c + 32 or b == 4 + c + 32):
        return "yolov8-seg"
    if a == 4 + c or b == 4 + c:
        return "yolov8"
    if b == 5 + c or a == 5 + c:
        return "yolov5"
    return None


# -------------------------------------------------------------------- reconcile the spec with the file


def _reconcile(spec: ModelSpec, inputs: List[TensorDetails], outputs: List[TensorDetails], path: Path):
    """Fill the spec's input facts from the file and map outputs to role names.

    Returns (spec, input_details, output_details) where output_details are renamed to roles.
    """
    if len(inputs) != 1:
        raise EdgedetError(f"{path} has {len(inputs)} inputs; edgedet runs single-input models")
    x = inputs[0]
    input_layout = _input_layout(x, spec)
    spec = replace(spec, input_size_hw=_static_input_size(x) or spec.input_size_hw)
    roles, output_layout = _map_outputs(spec, outputs, path)
    output_quant = dict(spec.output_quant)
    output_details = []
    for role, details in roles:
        if details.quant is not None:
            output_quant[role] = details.quant
        output_details.append(replace(details, name=role))
    spec = replace(spec, input_name=x.file_name, input_layout=input_layout,
                   input_dtype=x.dtype if x.dtype in ("float32", "uint8", "int8") else spec.input_dtype,
                   input_quant=x.quant if x.dtype in ("uint8", "int8") else None,
                   output_quant=output_quant, output_layout=output_layout)
    return spec, [x], output_details


def _input_layout(x: TensorDetails, spec: ModelSpec) -> str:
    if len(x.shape) != 4:
        raise EdgedetError(f"model input {x.file_name} has shape {list(x.shape)}; expected 4-D NCHW or NHWC")
    return _layout_of_shape(x.shape, spec.input_layout)


def _layout_of_shape(shape, default: str) -> str:
    """NCHW if the channel axis (3) is axis 1, NHWC if it is axis 3, else `default`."""
    if len(shape) == 4 and shape[1] == 3 and shape[3] != 3:
        return "NCHW"
    if len(shape) == 4 and shape[3] == 3 and shape[1] != 3:
        return "NHWC"
    return default


def _map_outputs(spec: ModelSpec, outputs: List[TensorDetails], path: Path):
    """[(role, details)] and the output layout; by name first, then by unique shape (never by position)."""
    if spec.layout != "edgedet":
        return [(o.file_name, o) for o in outputs], spec.output_layout
    errors = []
    for layout in (spec.output_layout, "NHWC" if spec.output_layout == "NCHW" else "NCHW"):
        try:
            return _map_edgedet(spec.edgedet_output_shapes(layout), outputs), layout
        except ValueError as error:
            errors.append(str(error))
    shapes = ", ".join(f"{o.file_name} {list(o.shape)}" for o in outputs)
    raise EdgedetError(f"{path}: cannot match outputs [{shapes}] to the spec's {errors[0]}")


def _map_edgedet(expected: Dict[str, Tuple[int, ...]], outputs: List[TensorDetails]):
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
