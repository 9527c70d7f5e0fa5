"""device.backends and device.latency on tiny hand-built models (onnx helper API, and litert_torch for TFLite)."""
import json
import math
import threading

import numpy as np
import pytest

from edgedet.device.backends import load_backend
from edgedet.device.errors import EdgedetError
from edgedet.device.latency import StageTimer, format_rolling_line, format_summary_table, percentiles
from edgedet.device.spec import ModelSpec

NAMES = ["circle", "square"]
ANCHORS = [[(8.0, 8.0), (16.0, 12.0)], [(24.0, 24.0), (32.0, 20.0)], [(40.0, 40.0), (60.0, 50.0)]]


def toy_spec(imgsz=64, masks=0, semantic=(), **changes) -> ModelSpec:
    """The spec of `make_onnx_model`: K=2 anchors, 2 classes, strides 8/16/32."""
    return ModelSpec(names=list(NAMES), input_size_hw=(imgsz, imgsz), anchors=ANCHORS, num_mask_coefs=masks,
                     task="segment" if masks else "detect", semantic_names=list(semantic),
                     seg_output="seg" if semantic else None, proto_output="proto" if masks else None,
                     source="toy", **changes)


def make_onnx_model(path, imgsz=64, masks=0, semantic=(), metadata=True, output_names=None, seed=0):
    """An edgedet-layout ONNX model: one strided conv per output (raw head, no decode).

    Outputs per level p3/p4/p5 `<level>_box` (1, 2*4, imgsz/s, imgsz/s), `<level>_score` (1, 2*(1+2), ..) and with
    masks `<level>_mask` (1, 2*M, ..); optional seg (1, S, imgsz/8, ..), proto (1, M, imgsz/4, ..).
    `output_names` renames the graph outputs and declares them in reverse order (to test mapping by shape).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    spec = toy_spec(imgsz, masks, semantic)
    heads = [(role, shape[1], imgsz // shape[2]) for role, shape in spec.edgedet_output_shapes().items()]
    names = dict(zip([h[0] for h in heads], output_names or [h[0] for h in heads]))
    nodes, inits, outputs = [], [], []
    for role, channels, stride in heads:
        weight = rng.normal(0, 0.5, (channels, 3, stride, stride)).astype(np.float32) / stride
        bias = rng.normal(0, 1.0, channels).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"{role}_w"), numpy_helper.from_array(bias, f"{role}_b")]
        nodes.append(helper.make_node("Conv", ["images", f"{role}_w", f"{role}_b"], [names[role]],
                                      kernel_shape=[stride, stride], strides=[stride, stride]))
        outputs.append(helper.make_tensor_value_info(names[role], TensorProto.FLOAT,
                                                     [1, channels, imgsz // stride, imgsz // stride]))
    if output_names:
        outputs.reverse()
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                           [1, 3, imgsz, imgsz])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, {"edgedet_spec": spec.to_json()})
    onnx.save(model, str(path))
    return path


def make_tflite_model(path, imgsz=64, nhwc=True, int8=False, seed=0):
    """The same toy head converted with litert_torch (NHWC I/O), spec in the sidecar `<path>.json`.

    int8=True quantizes with PT2E (int8 weights/activations inside, float I/O).
    """
    import litert_torch
    import torch

    torch.manual_seed(seed)
    shapes = list(toy_spec(imgsz).edgedet_output_shapes().values())  # box, score per level, NCHW

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = torch.nn.ModuleList([torch.nn.Conv2d(3, c, imgsz // h, imgsz // h) for _, c, h, _ in shapes])

        def forward(self, x):
            return tuple(head(x) for head in self.heads)

    model = Toy().eval()
    sample = torch.rand(1, 3, imgsz, imgsz)
    if nhwc:
        model = litert_torch.to_channel_last_io(model, args=[0], outputs=list(range(len(shapes))))
        sample = sample.permute(0, 2, 3, 1).contiguous()
    if int8:
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        exported = torch.export.export(model, (sample,)).module()
        prepared = prepare_pt2e(exported, quantizer)
        for _ in range(4):
            prepared(torch.rand_like(sample))
        model = convert_pt2e(prepared, fold_quantize=False)
        edge = litert_torch.convert(model, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
    else:
        edge = litert_torch.convert(model, (sample,))
    edge.export(str(path))
    spec = toy_spec(imgsz, output_layout="NHWC" if nhwc else "NCHW", input_layout="NHWC" if nhwc else "NCHW")
    (path.parent / (path.name + ".json")).write_text(spec.to_json())
    return path


# --------------------------------------------------------------------------------------------- latency


def test_stage_timer_records_per_frame_and_rolling_percentiles():
    timer = StageTimer(window=4)
    for ms in (1.0, 2.0, 3.0, 4.0, 100.0):
        timer.add("inference", ms)
    with timer.stage("preprocess"):
        sum(range(1000))
    record = timer.take_record()
    assert record["inference"] == pytest.approx(110.0)  # accumulates within one frame
    assert record["preprocess"] > 0
    assert timer.take_record() == {}
    rolling = timer.rolling()["inference"]
    assert rolling["count"] == 4 and rolling["p50"] == pytest.approx(np.percentile([2, 3, 4, 100], 50))
    assert timer.recent("inference") == rolling
    assert timer.recent("draw")["count"] == 0 and np.isnan(timer.recent("draw")["p50"])
    summary = timer.summary()
    assert summary["inference"]["count"] == 5 and summary["inference"]["mean"] == pytest.approx(22.0)
    assert list(summary) == ["preprocess", "inference"]  # display order


def test_stage_timer_records_are_per_thread():
    timer = StageTimer()
    seen = {}

    def worker():
        timer.add("decode", 5.0)
        seen["worker"] = timer.take_record()

    timer.add("inference", 7.0)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["worker"] == {"decode": 5.0}
    assert timer.take_record() == {"inference": 7.0}


def test_stage_timer_reservoir_stays_bounded():
    timer = StageTimer(window=10, reservoir=50)
    for i in range(1000):
        timer.add("nms", float(i))
    stats = timer.summary()["nms"]
    assert stats["count"] == 1000 and stats["mean"] == pytest.approx(499.5)
    assert 200 < stats["p50"] < 800  # a uniform sample of 0..999


def test_percentiles_of_nothing_are_nan_and_formatting_handles_them():
    assert all(math.isnan(v) for v in percentiles([]).values())
    timer = StageTimer()
    timer.add("inference", 3.0)
    assert "inference 3.0/3.0/3.0" in format_rolling_line(timer.rolling(), fps=10.0)
    table = format_summary_table(timer.summary())
    assert table.splitlines()[0].split() == ["stage", "count", "mean", "p50", "p90", "p99"]


# ------------------------------------------------------------------------------------------------ onnx


def test_onnx_backend_reads_spec_and_returns_outputs_by_role(tmp_path):
    path = make_onnx_model(tmp_path / "toy.onnx", masks=4, semantic=("bg", "road", "grass"))
    backend = load_backend(path, threads=1)
    assert backend.spec.names == NAMES and backend.spec.input_size_hw == (64, 64)
    assert backend.spec.input_layout == "NCHW" and backend.spec.input_name == "images"
    out = backend.run(np.random.rand(1, 3, 64, 64).astype(np.float32))
    roles = [f"{level}_{part}" for level in ("p3", "p4", "p5") for part in ("box", "score", "mask")] + ["seg", "proto"]
    assert set(out) == set(roles)
    assert out["p3_box"].shape == (1, 8, 8, 8) and out["p3_score"].shape == (1, 6, 8, 8)
    assert out["p4_mask"].shape == (1, 8, 4, 4) and out["seg"].shape == (1, 3, 8, 8) and out["proto"].shape == (1, 4, 16, 16)
    assert backend.threads == 1 and "onnxruntime" in backend.describe()
    assert [d.name for d in backend.output_details] == roles


def test_onnx_outputs_are_matched_by_shape_when_names_differ(tmp_path):
    # graph outputs under foreign names: the mapping must follow shapes
    # (M = 5 so that box (2*4), score (2*3) and mask (2*5) channels differ)
    foreign = [f"o_{i}" for i in (9, 3, 7, 1, 8, 2, 6, 0, 5, 4)]
    path = make_onnx_model(tmp_path / "renamed.onnx", masks=5, output_names=foreign)
    backend = load_backend(path)
    reference = load_backend(make_onnx_model(tmp_path / "plain.onnx", masks=5))
    x = np.random.rand(1, 3, 64, 64).astype(np.float32)
    got, want = backend.run(x), reference.run(x)
    assert set(got) == set(want) and len(want) == 10
    for role in want:
        np.testing.assert_allclose(got[role], want[role], rtol=1e-5, atol=1e-5)
    assert {d.name: d.file_name for d in backend.output_details}["proto"] == "o_4"


def test_foreign_onnx_without_metadata_names_the_missing_flags(tmp_path):
    path = make_onnx_model(tmp_path / "bare.onnx", metadata=False)
    with pytest.raises(EdgedetError, match="--names.*--layout"):
        load_backend(path)


def test_foreign_yolov8_onnx_is_recognised_from_shape_and_names(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((6, 3, 32, 32), np.float32) / 3072, "w")
    shape = numpy_helper.from_array(np.array([1, 6, -1], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[32, 32], strides=[32, 32]),
             helper.make_node("Reshape", ["c", "shape"], ["output0"])]
    graph = helper.make_graph(nodes, "v8", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 4])], [weight, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "v8.onnx"))
    with pytest.raises(EdgedetError, match="--names"):
        load_backend(tmp_path / "v8.onnx")
    backend = load_backend(tmp_path / "v8.onnx", names=["a", "b"])
    assert backend.spec.layout == "yolov8" and backend.spec.input_size_hw == (64, 64)
    assert backend.spec.level_outputs == ["output0"] and backend.run(np.zeros((1, 3, 64, 64), np.float32))["output0"].shape == (1, 6, 4)
    helper.set_model_props(model, {"names": "{0: 'person', 1: 'car'}", "imgsz": "[64, 64]", "task": "detect",
                                   "stride": "32"})
    onnx.save(model, str(tmp_path / "v8meta.onnx"))
    spec = load_backend(tmp_path / "v8meta.onnx").spec
    assert spec.names == ["person", "car"] and spec.layout == "yolov8"


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "tensorrt"}, "unknown backend"),
    ({"threads": 0}, "--threads"),
    ({"layout": "yolov99"}, "unknown --layout"),
    ({"imgsz": "a,b,c"}, None),
])
def test_bad_backend_arguments_raise_one_line_errors(tmp_path, kwargs, message):
    path = make_onnx_model(tmp_path / "toy.onnx")
    if message is None:
        with pytest.raises((EdgedetError, ValueError)):
            load_backend(path, **kwargs)
        return
    with pytest.raises(EdgedetError, match=message):
        load_backend(path, **kwargs)


def test_missing_unknown_and_corrupt_model_files(tmp_path):
    with pytest.raises(EdgedetError, match="model file not found"):
        load_backend(tmp_path / "nope.onnx")
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(EdgedetError, match="--backend"):
        load_backend(tmp_path / "model.bin")
    (tmp_path / "broken.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(EdgedetError, match="onnxruntime cannot load") as info:
        load_backend(tmp_path / "broken.onnx")
    assert "\n" not in str(info.value)
    (tmp_path / "broken.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(EdgedetError, match="cannot load") as info:
        load_backend(tmp_path / "broken.tflite")
    assert "\n" not in str(info.value)


def test_missing_runtime_names_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_runtimes(name, *args, **kwargs):
        if name.split(".")[0] in ("onnxruntime", "ai_edge_litert", "tflite_runtime", "tensorflow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_runtimes)
    with pytest.raises(EdgedetError, match=r'pip install "edgedet\[onnx\]"'):
        load_backend(make_onnx_model(tmp_path / "toy.onnx"))
    (tmp_path / "toy.tflite").write_bytes(b"x")
    with pytest.raises(EdgedetError, match=r'pip install "edgedet\[tflite\]"'):
        load_backend(tmp_path / "toy.tflite")


# ---------------------------------------------------------------------------------------------- tflite


@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite")
    return {"fp32": make_tflite_model(folder / "toy.tflite"), "int8": make_tflite_model(folder / "toy_int8.tflite", int8=True)}


def test_tflite_backend_maps_outputs_by_shape_and_reads_the_sidecar(tflite_models):
    backend = load_backend(tflite_models["fp32"], threads=2)
    assert backend.spec.names == NAMES and backend.spec.input_layout == "NHWC"
    assert backend.spec.output_layout == "NHWC" and "XNNPACK" in backend.describe()
    out = backend.run(np.random.rand(1, 64, 64, 3).astype(np.float32))
    assert {k: v.shape for k, v in out.items()} == {
        "p3_box": (1, 8, 8, 8), "p3_score": (1, 8, 8, 6), "p4_box": (1, 4, 4, 8), "p4_score": (1, 4, 4, 6),
        "p5_box": (1, 2, 2, 8), "p5_score": (1, 2, 2, 6)}


def test_tflite_int8_model_runs_and_stays_close_to_fp32(tflite_models):
    fp32 = load_backend(tflite_models["fp32"])
    int8 = load_backend(tflite_models["int8"])
    x = np.random.default_rng(1).random((1, 64, 64, 3), dtype=np.float32)
    a, b = fp32.run(x), int8.run(x)
    for role in a:
        deq = b[role].astype(np.float32)
        quant = int8.spec.output_quant.get(role)
        if quant is not None:
            deq = quant.scale * (deq - quant.zero_point)
        assert np.abs(deq - a[role]).max() < 0.1 * (np.abs(a[role]).max() + 1e-6) + 0.05


def test_integer_input_is_quantized_with_the_input_parameters(tflite_models):
    from edgedet.device.backends import TensorDetails
    from edgedet.device.preprocessing import as_input
    from edgedet.device.spec import QuantParams

    details = TensorDetails("x", (1, 2), "int8", QuantParams(1 / 255, -128, "int8"))
    q = as_input(np.array([[0.0, 1.0]], np.float32), details)
    assert q.dtype == np.int8 and q.tolist() == [[-128, 127]]
    from edgedet.device.preprocessing import quantize  # the one quantizer: the runtime's preprocess and the backend agree

    real = np.random.default_rng(0).uniform(-0.2, 1.2, size=(1, 3, 8, 8)).astype(np.float32)
    wide = TensorDetails("x", real.shape, "int8", QuantParams(1 / 255, -128, "int8"))
    assert np.array_equal(as_input(real, wide), quantize(real, wide.quant))


def test_ultralytics_style_tflite_with_zipped_metadata(tmp_path, tflite_models):
    """A foreign TFLite (NHWC input, (1, 4+C, N) output, boxes in 0..1) with Ultralytics' appended metadata.json."""
    import zipfile

    import litert_torch
    import torch

    class Yolov8Like(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Conv2d(3, 6, 16, 16)

        def forward(self, x):
            y = torch.sigmoid(self.head(x))  # (1, 6, 4, 4): cx, cy, w, h in 0..1, two class scores
            return y.reshape(1, 6, 16)

    model = litert_torch.to_channel_last_io(Yolov8Like().eval(), args=[0])
    path = tmp_path / "yolo_float32.tflite"
    litert_torch.convert(model, (torch.rand(1, 64, 64, 3),)).export(str(path))
    with pytest.raises(EdgedetError, match="--names"):
        load_backend(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("metadata.json", json.dumps({"names": {"0": "person", "1": "car"}, "imgsz": [64, 64],
                                                      "task": "detect", "stride": 32}))
    backend = load_backend(path)
    spec = backend.spec
    assert spec.names == ["person", "car"] and spec.layout == "yolov8"
    assert spec.input_layout == "NHWC" and spec.boxes_normalized
    from edgedet.device import Detector

    detections = Detector(backend, conf=0.01).predict(np.full((100, 200, 3), 128, np.uint8))
    assert len(detections) > 0
    assert detections.xyxy[:, 2].max() <= 200 and detections.xyxy[:, 3].max() <= 100
    assert detections.xyxy[:, 2].max() > 20  # scaled from 0..1 to pixels, not left normalised


def test_onnxruntime_threads_do_not_spin_after_run():
    import onnxruntime as ort

    from edgedet.device.ort_session import session_options

    options = session_options(ort, threads=2, optimization="all")
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_a_tflite_file_copied_without_its_sidecar_says_so(exported_models, tmp_path):
    import shutil

    lone = tmp_path / "edgedet-int8.tflite"
    shutil.copy(exported_models["tflite-int8"], lone)
    with pytest.raises(EdgedetError, match=r"edgedet-int8\.tflite\.json beside it: copy that along.*--names"):
        load_backend(str(lone))
