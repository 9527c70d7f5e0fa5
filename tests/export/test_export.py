"""Export to every format: files, metadata round trips, parity with PyTorch, int8 properties."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgedet.device.spec import ModelSpec

HEAD_ROLES = [f"{level}_{part}" for level in ("p3", "p4", "p5") for part in ("box", "score", "mask")] + ["seg", "proto"]
TOLERANCE = 1e-4  # max |fp32 artifact - PyTorch| on raw head outputs


def _synth_image(synth_data):
    import cv2

    path = sorted((synth_data / "val" / "images").iterdir())[0]
    return cv2.imread(str(path))


@pytest.fixture(scope="module")
def torch_reference(tiny_checkpoint, synth_data):
    """(model, spec, NCHW float input of a real val image preprocessed by the runtime, raw torch outputs)."""
    from edgedet.device.preprocessing import preprocess
    from edgedet.models.loading import load_for_export
    from edgedet.export.checkpoint import output_roles
    from edgedet.export.onnx_export import torch_outputs

    model, spec = load_for_export(tiny_checkpoint)
    x, _ = preprocess(_synth_image(synth_data), spec)
    return model, spec, x, torch_outputs(model, x, output_roles(model, spec))


def test_onnx_is_one_checked_file_with_named_outputs_and_spec(exported_models):
    import onnx

    path = exported_models["onnx"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [o.name for o in model.graph.output] == HEAD_ROLES
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith("tiny.onnx")) == ["tiny.onnx"]
    spec = ModelSpec.from_json({p.key: p.value for p in model.metadata_props}["edgedet_spec"])
    assert spec.names == ["circle", "square", "triangle", "star", "hexagon"]
    assert spec.input_size_hw == (160, 160) and spec.input_layout == "NCHW" and spec.precision == "fp32"
    assert spec.seg_output == "seg" and spec.proto_output == "proto" and spec.num_mask_coefs == 8


def test_onnx_fp32_matches_pytorch(exported_models, torch_reference):
    from edgedet.export.onnx_export import max_abs_diff, onnx_outputs

    _, _, x, reference = torch_reference
    diffs = max_abs_diff(reference, onnx_outputs(exported_models["onnx"], x))
    assert set(diffs) == set(HEAD_ROLES)
    assert max(diffs.values()) < TOLERANCE, diffs


def test_tflite_fp32_matches_pytorch_through_device_backend(exported_models, torch_reference):
    from edgedet.device.backends import load_backend

    _, spec, x, reference = torch_reference
    backend = load_backend(exported_models["tflite"], threads=1)
    assert backend.spec.input_layout == "NHWC" and backend.spec.output_layout == "NHWC"
    outputs = backend.run(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    for role, ref in reference.items():
        assert outputs[role].shape == (ref.shape[0], ref.shape[2], ref.shape[3], ref.shape[1]), role
        assert np.max(np.abs(outputs[role].transpose(0, 3, 1, 2) - ref)) < TOLERANCE, role


def test_tflite_sidecar_spec_round_trips_and_names_outputs(exported_models):
    from edgedet.export.tflite_export import read_sidecar, sidecar_path, signature_details

    path = exported_models["tflite"]
    spec = read_sidecar(path)
    assert json.loads(sidecar_path(path).read_text())["precision"] == "fp32"
    assert ModelSpec.from_json(spec.to_json()) == spec
    _, outputs = signature_details(path)
    assert set(outputs) == set(HEAD_ROLES)
    assert tuple(outputs["proto"]["shape"]) == (1, 40, 40, 8)
    assert spec.input_dtype == "float32" and spec.input_quant is None and spec.output_quant == {}


def test_int8_files_are_about_a_quarter_of_fp32(exported_models):
    for fp32, int8 in (("onnx", "onnx-int8"), ("tflite", "tflite-int8")):
        ratio = exported_models[int8].stat().st_size / exported_models[fp32].stat().st_size
        assert 0.15 < ratio < 0.4, (int8, ratio)


def test_onnx_int8_is_qdq_with_per_channel_weights_and_records_scheme(exported_models):
    import onnx
    from onnx import numpy_helper

    from edgedet.export.onnx_export import read_spec

    model = onnx.load(str(exported_models["onnx-int8"]))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    initializers = {init.name: init for init in model.graph.initializer}
    scales = [numpy_helper.to_array(initializers[n.input[1]]) for n in model.graph.node
              if n.op_type == "DequantizeLinear" and n.input[1] in initializers]
    assert any(s.ndim == 1 and s.size > 1 for s in scales), "no per-channel weight scales"
    spec = read_spec(exported_models["onnx-int8"])
    assert spec.precision == "int8" and "QDQ" in spec.quantization and "per-channel" in spec.quantization
    assert any(f"QDQ {name} " in spec.quantization for name in ("S8S8", "U8S8", "U8S8-reduce-range", "U8U8"))


def test_tflite_int8_is_full_integer_with_quant_params_by_role(exported_models):
    from edgedet.export.tflite_export import read_sidecar, signature_details

    path = exported_models["tflite-int8"]
    spec = read_sidecar(path)
    input_detail, outputs = signature_details(path)
    assert np.dtype(input_detail["dtype"]) == np.int8 and spec.input_dtype == "int8"
    assert spec.input_quant is not None and spec.input_quant.dtype == "int8"
    assert abs(spec.input_quant.scale - 1 / 255) < 1e-3  # calibration images span 0..1
    assert set(spec.output_quant) == set(HEAD_ROLES)
    for role, detail in outputs.items():
        assert np.dtype(detail["dtype"]) == np.int8
        assert spec.output_quant[role].scale == pytest.approx(detail["quantization"][0])
        assert spec.output_quant[role].zero_point == detail["quantization"][1]
    assert spec.precision == "int8" and "per-channel" in spec.quantization
    assert "calibration: minmax requested, PT2E MinMaxObserver used, 4 images" in spec.quantization


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_tflite_int8_quantization_names_the_observer_pt2e_runs(method):
    """PT2E has no entropy or percentile observer: the sidecar names the one the quantizer really holds."""
    from edgedet.export.tflite_export import describe_quantization, pt2e_quantizer

    config = pt2e_quantizer(method).global_config
    observers = {type(spec.observer_or_fake_quant_ctr()).__name__
                 for spec in (config.input_activation, config.output_activation)}
    assert len(observers) == 1
    text = describe_quantization(method, 200)
    assert f"calibration: {method} requested, PT2E {observers.pop()} used, 200 images" in text


@pytest.mark.parametrize("fmt", ["onnx-int8", "tflite-int8"])
def test_int8_raw_outputs_track_fp32(fmt, exported_models, synth_data):
    """Through the device runtime (preprocess quantizes the input, outputs dequantized by spec): SQNR > 15 dB."""
    from edgedet.calibration.sensitivity import sqnr_db
    from edgedet.device.backends import load_backend
    from edgedet.device.preprocessing import preprocess

    fp32 = load_backend(exported_models[fmt.replace("-int8", "")], threads=1)
    int8 = load_backend(exported_models[fmt], threads=1)
    image = _synth_image(synth_data)
    reference = fp32.run(preprocess(image, fp32.spec)[0])
    quantized = int8.run(preprocess(image, int8.spec)[0])
    dequantized = {}
    for role, value in quantized.items():
        quant = int8.spec.output_quant.get(role)
        dequantized[role] = value.astype(np.float32) if quant is None else \
            (value.astype(np.float32) - quant.zero_point) * quant.scale
    assert sqnr_db(reference, dequantized) > 15.0


def test_fp16_tflite_halves_the_file_and_stays_close(tiny_checkpoint, exported_models, torch_reference, tmp_path):
    from edgedet.device.backends import load_backend
    from edgedet.export.checkpoint import output_roles
    from edgedet.export.tflite_export import export_tflite, read_sidecar

    model, spec, x, reference = torch_reference
    path = tmp_path / "tiny-fp16.tflite"
    export_tflite(model, spec, path, output_roles(model, spec), "fp16")
    assert read_sidecar(path).precision == "fp16"
    ratio = path.stat().st_size / exported_models["tflite"].stat().st_size
    assert 0.4 < ratio < 0.65
    outputs = load_backend(path, threads=1).run(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    for role, ref in reference.items():
        assert np.max(np.abs(outputs[role].transpose(0, 3, 1, 2) - ref)) < 1e-2 * max(1.0, np.abs(ref).max())


def test_every_conv_runs_in_integer_after_onnxruntime_fusion(exported_models, synth_data, tmp_path):
    """U8S8 QDQ: onnxruntime turns every Conv into QLinearConv (no bias hidden behind an Identity node)."""
    import onnx
    import onnxruntime as ort

    from edgedet.calibration.calibset import build_calibration_set
    from edgedet.calibration.onnx_quant import SCHEMES
    from edgedet.export_inputs import calibration_items
    from edgedet.export.onnx_export import read_spec
    from edgedet.export.onnx_int8 import export_onnx_int8

    fp32 = onnx.load(str(exported_models["onnx"]))
    initializers = {init.name for init in fp32.graph.initializer}
    assert not [n for n in fp32.graph.node if n.op_type == "Identity" and n.input[0] in initializers]
    calib = build_calibration_set(calibration_items(synth_data)[0], read_spec(exported_models["onnx"]), size=2)
    int8 = tmp_path / "u8s8.onnx"
    export_onnx_int8(exported_models["onnx"], int8, calib, "minmax", SCHEMES["U8S8"])
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert "Conv" not in ops and ops.count("QLinearConv") == sum(n.op_type == "Conv" for n in fp32.graph.node)
