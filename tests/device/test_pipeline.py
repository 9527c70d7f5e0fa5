"""device.Detector on the exported tiny checkpoint (ONNX/TFLite, fp32/int8) and on hand-built models."""
import numpy as np
import pytest

from edgedet.device import Detector, Detections
from edgedet.device.errors import EdgedetError
from tests.device.test_backends import NAMES, make_onnx_model


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    image[30:90, 40:100] = (20, 200, 40)
    return image


@pytest.mark.parametrize("variant", ["onnx", "onnx-int8", "tflite", "tflite-int8"])
def test_every_exported_variant_predicts_in_frame_pixels(exported_models, frame, variant):
    detector = Detector(exported_models[variant], conf=0.01, iou=0.5, max_det=50, threads=1)
    detections = detector.predict(frame)
    assert isinstance(detections, Detections) and len(detections) <= 50
    if len(detections):
        assert detections.xyxy[:, [0, 2]].min() >= 0 and detections.xyxy[:, [0, 2]].max() <= 200
        assert detections.xyxy[:, [1, 3]].min() >= 0 and detections.xyxy[:, [1, 3]].max() <= 120
        assert detections.scores.min() >= 0.01
    if detector.spec.num_mask_coefs:
        assert detections.masks is not None and detections.masks.shape[1:] == (120, 200)
    semantic = detector.predict_semantic(frame)
    assert semantic.shape == (120, 200) and semantic.max() < len(detector.spec.semantic_names)
    stages = set(detector.timer.summary())
    assert {"preprocess", "inference", "decode", "nms", "semantic"} <= stages


def test_int8_scores_follow_fp32(exported_models, frame):
    fp32 = Detector(exported_models["tflite"], conf=0.0, max_det=1000, threads=1)
    int8 = Detector(exported_models["tflite-int8"], conf=0.0, max_det=1000, threads=1)
    prepared = fp32.prepare(frame)
    a = fp32.backend.run(prepared.x)
    b = int8.backend.run(int8.prepare(frame).x)
    assert set(a) == set(b)
    for role in a:
        deq = b[role].astype(np.float32)
        if role in int8.spec.output_quant:
            q = int8.spec.output_quant[role]
            deq = q.scale * (deq - q.zero_point)
        assert np.corrcoef(a[role].ravel(), deq.ravel())[0, 1] > 0.9


def test_predict_all_runs_one_inference_for_both_heads(exported_models, frame):
    detector = Detector(exported_models["onnx"], conf=0.05)
    detections, semantic = detector.predict_all(frame)
    assert semantic.shape == frame.shape[:2]
    assert detector.timer.summary()["inference"]["count"] == 1
    assert "tiny.onnx" in detector.describe() and "onnxruntime" in detector.describe()


def test_detector_accepts_a_backend_object_and_filters_classes(tmp_path, frame):
    from edgedet.device.backends import load_backend

    backend = load_backend(make_onnx_model(tmp_path / "toy.onnx"))
    every = Detector(backend, conf=0.05, max_det=100000).predict(frame)
    squares = Detector(backend, conf=0.05, max_det=100000, classes=["square"]).predict(frame)
    assert len(every) > 0 and set(squares.class_ids.tolist()) == {1}
    # class-aware NMS: filtering before NMS equals filtering its result
    np.testing.assert_allclose(np.sort(squares.scores), np.sort(every.scores[every.class_ids == 1]))
    assert Detector(backend, classes=[0, "square"]).classes == [0, 1]


def test_model_without_semantic_head_says_so(tmp_path, frame):
    detector = Detector(make_onnx_model(tmp_path / "toy.onnx"))
    assert not detector.has_semantic and detector.names == NAMES
    with pytest.raises(EdgedetError, match="no semantic"):
        detector.predict_semantic(frame)


@pytest.mark.parametrize("kwargs, message", [
    ({"conf": 1.5}, "--conf"), ({"iou": -0.1}, "--iou"), ({"max_det": 0}, "--max-det"),
    ({"classes": ["giraffe"]}, "unknown class 'giraffe'"), ({"classes": [7]}, "out of range"),
])
def test_bad_detector_arguments(tmp_path, kwargs, message):
    with pytest.raises(EdgedetError, match=message):
        Detector(make_onnx_model(tmp_path / "toy.onnx"), **kwargs)


# ---- the one-call API: callable, paths and any uint8 image layout, names, annotate


@pytest.fixture()
def toy_detector(tmp_path):
    return Detector(make_onnx_model(tmp_path / "toy.onnx"), conf=0.3, threads=1)


def test_detector_is_callable_on_a_path_or_an_array_and_names_the_classes(tmp_path, toy_detector, frame):
    import cv2

    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), frame)
    from_array = toy_detector(frame)
    assert from_array.names == tuple(NAMES) and len(from_array) > 0
    for image in (str(path), path):
        from_path = toy_detector(image)
        np.testing.assert_array_equal(from_path.xyxy, from_array.xyxy)
        assert from_path.names == tuple(NAMES)
    assert toy_detector.predict(frame).names == tuple(NAMES)
    assert {r.name for r in from_array} <= set(NAMES)


def test_bgra_and_grey_images_are_converted(toy_detector, frame):
    import cv2

    bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    np.testing.assert_array_equal(toy_detector(bgra).xyxy, toy_detector(frame).xyxy)  # alpha dropped
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    expected = toy_detector(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)).xyxy
    for image in (grey, grey[:, :, None]):
        np.testing.assert_array_equal(toy_detector(image).xyxy, expected)


@pytest.mark.parametrize("make_image, message", [
    (lambda tmp: str(tmp / "missing.jpg"), "image not found: .*missing.jpg"),
    (lambda tmp: (tmp / "broken.jpg").write_bytes(b"not a jpeg") and str(tmp / "broken.jpg"), "cannot read image"),
    (lambda tmp: np.zeros((8, 8, 3), np.float32), "uint8"),
    (lambda tmp: np.zeros((8, 8, 2), np.uint8), "got shape"),
])
def test_unreadable_images_give_one_line_errors(tmp_path, toy_detector, make_image, message):
    with pytest.raises(EdgedetError, match=message) as info:
        toy_detector(make_image(tmp_path))
    assert "\n" not in str(info.value)


def test_annotate_draws_on_a_copy_with_the_model_names(tmp_path, toy_detector, frame):
    import cv2

    detections = toy_detector(frame)
    original = frame.copy()
    drawn = toy_detector.annotate(frame, detections)
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8 and not np.array_equal(drawn, frame)
    np.testing.assert_array_equal(frame, original)
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), frame)
    np.testing.assert_array_equal(toy_detector.annotate(path, detections), drawn)
    grey = toy_detector.annotate(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), detections)
    assert grey.shape == frame.shape
