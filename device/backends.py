"""Inference backends: onnxruntime and a TFLite interpreter behind one small interface.

`load_backend(path)` picks the runtime from the file suffix (.onnx -> onnxruntime, .tflite -> TFLite), or
from `backend=`; the runtime is imported only then, with an install hint naming the extra when missing.

A backend has
- `.spec`: the `ModelSpec`, built by device/spec_sources.py from the file's metadata (or the sidecar JSON beside
  a .tflite), completed from user flags for foreign models, and reconciled with the file's real tensors;
- `.input_details` / `.output_details`: `TensorDetails` (name, shape, dtype, quant);
- `.run(x) -> {role name: raw array}`: outputs keyed by the spec's role names ("p3_box", "seg", "proto", ...),
  matched to the file's tensors by name, else by shape, never by position. Integer outputs are returned
  raw (the layouts dequantize with `spec.output_quant`); a float input given to an integer model is
  quantized with the input's quantization parameters.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from .errors import EdgedetError, first_line
from .imgsz import parse_imgsz
from .library_logs import quiet_native_info
from .ort_session import import_onnxruntime, open_ort_session
from .preprocessing import as_input
from .spec import TensorDetails
from .spec_sources import SpecOverrides, model_spec, tflite_metadata
from .tflite_interpreter import import_tflite, tflite_details
from .two_stage import open_region_heads

BACKENDS = ("onnxruntime", "tflite")


def load_backend(path, backend: Optional[str] = None, threads: Optional[int] = None, *,
                 names: Optional[Sequence[str]] = None, layout: Optional[str] = None,
                 imgsz=None, optimization: str = "all"):
    """Open `path` with onnxruntime or TFLite and return a backend with `.spec` and `.run(x)` (and `.heads`, the
    second stage, for a two-stage model: device/two_stage.py).

    backend:      "onnxruntime" or "tflite"; None = from the suffix (.onnx / .tflite).
    threads:      intra-op threads (None = all cores).
    names/layout/imgsz: override or complete the model's spec (needed for foreign models without metadata).
    optimization: onnxruntime graph optimisation level, one of ort_session.ORT_OPTIMIZATION.
    """
    path = Path(path)
    if path.is_dir():
        raise EdgedetError(f"model file not found: {path} is a folder")
    if not path.is_file():
        rejected = path.with_name(path.name + ".rejected") if path.name else path
        if path.name and rejected.exists():
            raise EdgedetError(f"model file not found: {path}; {rejected.name} is there: the export gate rejected it "
                               "(its hint says what usually helps)")
        raise EdgedetError(f"model file not found: {path}")
    kind = _backend_kind(path, backend)
    if threads is not None and int(threads) < 1:
        raise EdgedetError(f"--threads must be >= 1, got {threads}")
    overrides = SpecOverrides(list(names) if names is not None else None, layout, parse_imgsz(imgsz))
    if kind == "onnxruntime":
        backend = OnnxBackend(path, threads, overrides, optimization)
    else:
        backend = TFLiteBackend(path, threads, overrides)
    if backend.spec.second_stage:  # a two-stage model: it carries its per-region heads
        backend.heads = open_region_heads(path, backend.spec, threads, getattr(backend, "metadata", None))
    return backend


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


# ---------------------------------------------------------------------------------------------- runtimes


class OnnxBackend:
    """onnxruntime on the CPU with a chosen thread count and graph optimisation level."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: Optional[int], overrides: SpecOverrides, optimization: str = "all"):
        self.path = str(path)
        self.threads = threads or os.cpu_count() or 1  # intra-op threads actually used
        try:
            self.session = open_ort_session(self.path, self.threads, optimization)
        except EdgedetError:
            raise  # onnxruntime missing or an unknown optimisation level: already worded for the user
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise EdgedetError(f"onnxruntime cannot load {path}: {first_line(error)}") from None
        self.version = import_onnxruntime().__version__
        inputs = [_ort_details(t) for t in self.session.get_inputs()]
        outputs = [_ort_details(t) for t in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.spec, self.input_details, self.output_details = model_spec(self.metadata, path, inputs, outputs, overrides,
                                                                        boxes_normalized=False)
        self._input_name = inputs[0].file_name
        self._roles = [(d.name, d.file_name) for d in self.output_details]

    def run(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """x: the preprocessed input (1, 3, H, W) or (1, H, W, 3) -> {role name: raw output array}."""
        x = as_input(x, self.input_details[0])
        values = self.session.run([file for _, file in self._roles], {self._input_name: x})
        return {role: value for (role, _), value in zip(self._roles, values)}

    def describe(self) -> str:
        return f"onnxruntime {self.version}, {thread_count(self.threads)}"


class TFLiteBackend:
    """A TFLite interpreter (ai_edge_litert, else tflite_runtime); XNNPACK, num_threads."""

    name = "tflite"

    def __init__(self, path: Path, threads: Optional[int], overrides: SpecOverrides):
        interpreter_class, self.runtime = import_tflite()
        self.path = str(path)
        self.threads = threads or os.cpu_count() or 1  # XNNPACK threads
        try:
            with quiet_native_info():  # the XNNPACK delegate's "INFO: Created ..." line
                self.interpreter = interpreter_class(model_path=self.path, num_threads=self.threads)
                self.interpreter.allocate_tensors()
        except Exception as error:  # the interpreter raises ValueError/RuntimeError with multi-line text
            raise EdgedetError(f"{self.runtime} cannot load {path}: {first_line(error)}") from None
        raw_inputs = self.interpreter.get_input_details()
        raw_outputs = self.interpreter.get_output_details()
        if len(raw_inputs) != 1:
            raise EdgedetError(f"{path} has {len(raw_inputs)} inputs; edgedet runs single-input models")
        inputs = [tflite_details(d) for d in raw_inputs]
        outputs = [tflite_details(d) for d in raw_outputs]
        self.spec, self.input_details, self.output_details = model_spec(tflite_metadata(path), path, inputs, outputs,
                                                                        overrides, boxes_normalized=True)
        self._input_index = raw_inputs[0]["index"]
        index_by_name = {d["name"]: d["index"] for d in raw_outputs}
        self._roles = [(d.name, index_by_name[d.file_name]) for d in self.output_details]

    def run(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """x: the preprocessed input -> {role name: raw output array} (copies, safe to keep)."""
        x = as_input(x, self.input_details[0])
        self.interpreter.set_tensor(self._input_index, x)
        self.interpreter.invoke()
        return {role: self.interpreter.get_tensor(index) for role, index in self._roles}

    def describe(self) -> str:
        return f"{self.runtime} (XNNPACK), {thread_count(self.threads)}"


def thread_count(threads: int) -> str:
    """'1 thread', '4 threads'."""
    return f"{threads} thread{'' if threads == 1 else 's'}"


_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(double)": "float64"}


def _ort_details(node) -> TensorDetails:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in node.shape)
    return TensorDetails(node.name, shape, _ORT_DTYPES.get(node.type, node.type), None, node.name)
