"""calibration/: sampling, runtime-identical preprocessing, readers, the three methods, int8 scheme choice, sensitivity."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgedet.calibration.sampling import CalibrationItem, items_from_folder, sample_items
from edgedet.device.errors import EdgedetError
from edgedet.device.spec import ModelSpec

SPEC = ModelSpec(names=["a", "b", "c"], input_size_hw=(64, 96))


def _items(class_lists):
    return [CalibrationItem(Path(f"img{i}.jpg"), tuple(c)) for i, c in enumerate(class_lists)]


# ------------------------------------------------------------------------------------------- sampling


def test_random_sampling_is_deterministic_and_limited():
    items = _items([[0]] * 50)
    first = sample_items(items, 10, "random", seed=3)
    assert first == sample_items(items, 10, "random", seed=3)
    assert first != sample_items(items, 10, "random", seed=4)
    assert len(first) == 10 and len(set(first)) == 10
    assert len(sample_items(items, 500, "random")) == 50


def test_balanced_sampling_reaches_rare_classes():
    items = _items([[0]] * 90 + [[1]] * 8 + [[2]] * 2)
    chosen = sample_items(items, 6, "balanced", seed=0)
    classes = [c for item in chosen for c in item.class_ids]
    assert classes.count(2) == 2 and classes.count(1) == 2 and classes.count(0) == 2
    random_classes = [c for item in sample_items(items, 6, "random", seed=0) for c in item.class_ids]
    assert random_classes.count(2) < 2  # what balancing fixes
    assert chosen == sample_items(items, 6, "balanced", seed=0)


def test_balanced_sampling_fills_up_with_unlabelled_images():
    items = _items([[0], [1], [], [], []])
    chosen = sample_items(items, 4, "balanced", seed=1)
    assert len(chosen) == 4 and {c for item in chosen for c in item.class_ids} == {0, 1}


@pytest.mark.parametrize("items,size,strategy,message", [
    ([], 5, "random", "no calibration images"),
    (_items([[0]]), 0, "random", "at least 1"),
    (_items([[0]]), 1, "stratified", "unknown calibration sampling"),
    (_items([[], []]), 1, "balanced", "labelled"),
])
def test_bad_sampling_requests_raise(items, size, strategy, message):
    with pytest.raises(EdgedetError, match=message):
        sample_items(items, size, strategy)


def test_empty_or_missing_folder_is_an_error(tmp_path):
    with pytest.raises(EdgedetError, match="no images"):
        items_from_folder(tmp_path)
    with pytest.raises(EdgedetError, match="does not exist"):
        items_from_folder(tmp_path / "missing")


# ------------------------------------------------------------------------------- calibration set + readers


@pytest.fixture()
def image_folder(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), rng.integers(0, 256, (48 + 8 * i, 80, 3), dtype=np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    return tmp_path


def test_calibration_arrays_are_exactly_the_runtime_preprocessing(image_folder, capsys):
    import cv2

    from edgedet.calibration.calibset import calibration_set_from_folder
    from edgedet.device.preprocessing import preprocess

    calib = calibration_set_from_folder(image_folder, SPEC, size=10)
    assert len(calib) == 5  # the broken file is skipped ...
    assert "skipped 1 unreadable" in capsys.readouterr().err  # ... and reported
    arrays = list(calib.arrays())
    for item, x in zip(calib.items, arrays):
        expected, _ = preprocess(cv2.imread(str(item.path)), SPEC)
        assert x.dtype == np.float32 and x.shape == (1, 3, 64, 96)
        np.testing.assert_array_equal(x, expected)
    nhwc = next(calib.with_layout("NHWC").arrays())
    np.testing.assert_array_equal(nhwc, arrays[0].transpose(0, 2, 3, 1))


def test_calibration_set_of_only_unreadable_images_is_an_error(tmp_path):
    from edgedet.calibration.calibset import calibration_set_from_folder

    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(EdgedetError, match="could be read"):
        calibration_set_from_folder(tmp_path, SPEC)


def test_float_spec_of_an_int8_spec_feeds_float():
    from edgedet.calibration.calibset import float_input_spec
    from edgedet.device.spec import QuantParams

    int8 = ModelSpec(names=["a"], input_size_hw=(32, 32), input_dtype="int8", input_layout="NHWC",
                     input_quant=QuantParams(1 / 255, -128, "int8"))
    spec = float_input_spec(int8, "NCHW")
    assert spec.input_dtype == "float32" and spec.input_quant is None and spec.input_layout == "NCHW"


def test_onnx_reader_yields_each_image_once_then_none_and_rewinds(image_folder):
    from edgedet.calibration.calibset import calibration_set_from_folder
    from edgedet.calibration.readers import OnnxCalibrationReader, pt2e_batches

    calib = calibration_set_from_folder(image_folder, SPEC, size=3)
    reader = OnnxCalibrationReader(calib, "images")
    batches = [reader.get_next() for _ in range(4)]
    assert batches[3] is None and all(b["images"].shape == (1, 3, 64, 96) for b in batches[:3])
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["images"], batches[0]["images"])
    assert len(reader) == 3
    assert [x.shape for x in pt2e_batches(calib)] == [(1, 64, 96, 3)] * 3


# --------------------------------------------------------------------------------------------- methods


@pytest.fixture(scope="module")
def ranges_by_method(exported_models, synth_data, tmp_path_factory):
    """method -> (tensor -> (low, high)) on the tiny model, plus the cache files."""
    from edgedet.calibration.calibset import build_calibration_set
    from edgedet.calibration.onnx_quant import METHODS, compute_ranges
    from edgedet.calibration.readers import OnnxCalibrationReader
    from edgedet.export_inputs import calibration_items
    from edgedet.export.onnx_export import read_spec

    spec = read_spec(exported_models["onnx"])
    calib = build_calibration_set(calibration_items(synth_data)[0], spec, size=4)
    folder = tmp_path_factory.mktemp("ranges")
    results = {}
    for method in METHODS:
        cache = folder / f"{method}.json"
        results[method] = (compute_ranges(exported_models["onnx"], OnnxCalibrationReader(calib, "images"), method, cache), cache)
    return results


def test_entropy_histogram_has_more_bins_than_quantized_bins():
    from edgedet.calibration.onnx_quant import calibrator_options

    _, options = calibrator_options("entropy")
    assert options["num_bins"] > options["num_quantized_bins"]
    with pytest.raises(EdgedetError, match="unknown calibration method"):
        calibrator_options("kl")


def test_each_method_gives_ranges_and_entropy_is_not_minmax(ranges_by_method):
    minmax, _ = ranges_by_method["minmax"]
    entropy, _ = ranges_by_method["entropy"]
    percentile, _ = ranges_by_method["percentile"]
    assert set(minmax) == set(entropy) == set(percentile) and "p3_box" in minmax
    width = {name: {m: r[name][1] - r[name][0] for m, (r, _) in ranges_by_method.items()} for name in minmax}
    width = {name: w for name, w in width.items() if w["minmax"] > 0}  # drop constant (e.g. all-zero) tensors
    assert len(width) > 20
    changed = [n for n, w in width.items() if abs(w["entropy"] - w["minmax"]) > 1e-3 * w["minmax"]]
    assert len(changed) > len(width) // 4, "entropy ranges equal minmax: the KL search did not run"
    assert all(w["entropy"] <= w["minmax"] * 1.001 for w in width.values())  # clipping never widens
    assert all(w["percentile"] <= w["minmax"] * 1.001 for w in width.values())
    heads = [f"{level}_{part}" for level in ("p3", "p4", "p5") for part in ("box", "score", "mask")]
    for output in heads + ["seg", "proto"]:  # raw head outputs are never clipped
        assert entropy[output] == pytest.approx(minmax[output]) and percentile[output] == pytest.approx(minmax[output])


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_each_method_quantizes_to_a_working_int8_model(method, ranges_by_method, exported_models, tmp_path):
    from edgedet.calibration.onnx_quant import SCHEMES, quantize_qdq
    from edgedet.calibration.sensitivity import run_outputs, sqnr_db

    _, cache = ranges_by_method[method]
    out = tmp_path / f"{method}.onnx"
    quantize_qdq(exported_models["onnx"], out, cache, method, SCHEMES["U8S8-reduce-range"])
    x = [np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)]
    assert sqnr_db(run_outputs(exported_models["onnx"], x), run_outputs(out, x)) > 10.0


@pytest.mark.parametrize("machine,flags,expected", [
    ("x86_64", {"avx2", "fma"}, "U8S8-reduce-range"),
    ("x86_64", {"avx2", "avx_vnni"}, "U8S8"),
    ("x86_64", {"avx512f", "avx512_vnni"}, "U8S8"),
    ("aarch64", {"asimd", "asimddp"}, "S8S8"),
])
def test_int8_scheme_follows_the_cpu(machine, flags, expected):
    from edgedet.calibration.onnx_quant import default_int8_scheme

    scheme, reason = default_int8_scheme(machine, flags)
    assert scheme.name == expected and reason
    assert scheme.reduce_range == (expected == "U8S8-reduce-range")


def test_cpu_flags_reads_x86_and_arm_cpuinfo(tmp_path):
    from edgedet.calibration.onnx_quant import cpu_flags

    (tmp_path / "x86").write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n")
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert cpu_flags(str(tmp_path / "x86")) == {"fpu", "avx2", "avx512_vnni"}
    assert "asimddp" in cpu_flags(str(tmp_path / "arm"))
    assert cpu_flags(str(tmp_path / "missing")) == set()


# ----------------------------------------------------------------------------------------- sensitivity


def test_sensitivity_ranks_layers_and_writes_a_report(ranges_by_method, exported_models, tmp_path):
    from edgedet.calibration.onnx_quant import SCHEMES, quantizable_nodes
    from edgedet.calibration.sensitivity import format_table, layer_sensitivity, write_report

    nodes = quantizable_nodes(exported_models["onnx"])
    assert len(nodes) > 10
    chosen = nodes[:3] + nodes[-3:]
    x = [np.random.default_rng(1).random((1, 3, 160, 160), dtype=np.float32)]
    layers = layer_sensitivity(exported_models["onnx"], ranges_by_method["minmax"][1], "minmax",
                               SCHEMES["S8S8"], x, nodes=chosen)
    assert sorted(layer.name for layer in layers) == sorted(chosen)
    assert [layer.rank for layer in layers] == list(range(1, 7))
    scores = [layer.sqnr_db for layer in layers]
    assert scores == sorted(scores) and np.isfinite(scores).all() and len(set(scores)) > 1
    report = tmp_path / "s.json"
    write_report(report, layers, {"method": "minmax"})
    data = json.loads(report.read_text())
    assert data["method"] == "minmax" and data["layers"][0]["name"] == layers[0].name
    assert layers[0].name in format_table(layers, limit=2)
