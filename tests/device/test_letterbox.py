"""Letterbox: Ultralytics' arithmetic (round, odd padding smaller half top/left, INTER_LINEAR) and exact inverse."""
import cv2
import numpy as np
import pytest

from edgedet.device.errors import EdgedetError
from edgedet.device.letterbox import Letterbox, letterbox
from edgedet.device.preprocessing import dequantize, preprocess
from edgedet.device.spec import ModelSpec, QuantParams


def boxes_to_input(box: Letterbox, xyxy) -> np.ndarray:
    """Reference forward map of (N, 4) xyxy frame pixels -> float32 network-input pixels (float64 arithmetic)."""
    out = np.array(xyxy, dtype=np.float64).reshape(-1, 4)
    out[:, 0::2] = out[:, 0::2] * box.resized_hw[1] / box.src_hw[1] + box.left
    out[:, 1::2] = out[:, 1::2] * box.resized_hw[0] / box.src_hw[0] + box.top
    return out.astype(np.float32)


@pytest.mark.parametrize("src_hw, dst_hw, resized_hw, top, left, bottom, right", [
    ((480, 640), (640, 640), (480, 640), 80, 0, 80, 0),
    ((481, 640), (640, 640), (481, 640), 79, 0, 80, 0),      # odd padding: smaller half on top
    ((640, 479), (640, 640), (640, 479), 0, 80, 0, 81),      # ... and on the left
    ((720, 1280), (320, 320), (180, 320), 70, 0, 70, 0),
    ((100, 333), (320, 320), (96, 320), 112, 0, 112, 0),     # 100 * 320/333 = 96.09 -> round -> 96
    ((333, 100), (320, 256), (320, 96), 0, 80, 0, 80),
    ((50, 50), (320, 320), (320, 320), 0, 0, 0, 0),
])
def test_fit_matches_ultralytics_arithmetic(src_hw, dst_hw, resized_hw, top, left, bottom, right):
    box = Letterbox.fit(src_hw, dst_hw)
    assert (box.resized_hw, box.top, box.left, box.bottom, box.right) == (resized_hw, top, left, bottom, right)


def test_scaleup_off_never_enlarges():
    box = Letterbox.fit((100, 200), (640, 640), scaleup=False)
    assert box.resized_hw == (100, 200) and box.top == 270 and box.left == 220


def test_a_thin_strip_keeps_one_row_instead_of_failing_in_opencv():
    box = Letterbox.fit((2, 3000), (320, 320))  # 2 * 320 / 3000 rounds to 0 rows
    assert box.resized_hw == (1, 320) and box.top + 1 + box.bottom == 320
    image, _ = letterbox(np.full((2, 3000, 3), 200, np.uint8), (320, 320))
    assert image.shape == (320, 320, 3) and (image[box.top] == 200).all()


def test_apply_resizes_linear_and_pads_with_pad_value():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (37, 91, 3), dtype=np.uint8)
    image, box = letterbox(frame, (64, 64), pad_value=7)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    expected = cv2.resize(frame, (box.resized_hw[1], box.resized_hw[0]), interpolation=cv2.INTER_LINEAR)
    rows, cols = box.content_slices()
    np.testing.assert_array_equal(image[rows, cols], expected)
    assert (image[:box.top] == 7).all() and (image[box.top + box.resized_hw[0]:] == 7).all()


def test_frame_corners_map_exactly_onto_content_corners():
    for src_hw in [(480, 640), (481, 643), (1080, 1920), (17, 300), (300, 17)]:
        box = Letterbox.fit(src_hw, (320, 320))
        corners = boxes_to_input(box, [[0, 0, src_hw[1], src_hw[0]]])[0]
        assert corners.tolist() == [box.left, box.top, box.left + box.resized_hw[1], box.top + box.resized_hw[0]]
        back = box.boxes_to_original(corners[None])[0]
        assert back.tolist() == [0, 0, src_hw[1], src_hw[0]]


def test_round_trip_over_many_sizes_and_aspect_ratios():
    rng = np.random.default_rng(1)
    for _ in range(200):
        src_hw = tuple(int(v) for v in rng.integers(8, 2000, 2))
        dst_hw = tuple(int(v) * 32 for v in rng.integers(4, 21, 2))
        box = Letterbox.fit(src_hw, dst_hw)
        assert box.bottom >= 0 and box.right >= 0 and abs(box.top - box.bottom) <= 1 and box.top <= box.bottom
        xy = rng.uniform(0, 1, (20, 2)) * [src_hw[1], src_hw[0]]
        wh = rng.uniform(0, 1, (20, 2)) * ([src_hw[1], src_hw[0]] - xy)
        xyxy = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        back = box.boxes_to_original(boxes_to_input(box, xyxy))
        np.testing.assert_allclose(back, xyxy, atol=1e-3 * max(src_hw), rtol=1e-5)


def test_boxes_to_original_clips_to_frame():
    box = Letterbox.fit((240, 320), (320, 320))
    out = box.boxes_to_original([[-50, 0, 400, 330]])
    assert out.tolist() == [[0, 0, 320, 240]]


def test_content_slices_cut_the_padding():
    box = Letterbox.fit((240, 320), (320, 320))
    plane = np.zeros((320, 320), np.uint8)
    plane[box.top:box.top + 240] = 1
    back = plane[box.content_slices()]
    assert back.shape == (240, 320) and back.all()


def test_wrong_frame_size_and_empty_frame_raise():
    box = Letterbox.fit((240, 320), (320, 320))
    with pytest.raises(EdgedetError):
        box.apply(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(EdgedetError):
        Letterbox.fit((0, 5), (320, 320))


def _spec(**kw):
    return ModelSpec(names=["a"], input_size_hw=(32, 32), **kw)


def test_preprocess_float_nchw_rgb():
    frame = np.zeros((16, 32, 3), np.uint8)
    frame[..., 0], frame[..., 2] = 10, 200  # B = 10, R = 200
    x, box = preprocess(frame, _spec())
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    rows, cols = box.content_slices()
    np.testing.assert_allclose(x[0, 0, rows, cols], 200 / 255, rtol=1e-6)  # R first
    np.testing.assert_allclose(x[0, 2, rows, cols], 10 / 255, rtol=1e-6)
    np.testing.assert_allclose(x[0, 1, :box.top], 114 / 255, rtol=1e-6)


def test_preprocess_nhwc_bgr_uint8_raw_pixels():
    frame = np.full((32, 32, 3), (1, 2, 3), np.uint8)
    x, _ = preprocess(frame, _spec(input_layout="NHWC", channel_order="BGR", input_dtype="uint8"))
    assert x.shape == (1, 32, 32, 3) and x.dtype == np.uint8 and x[0, 0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("quant", [QuantParams(1 / 255, -128, "int8"), QuantParams(0.00392, 0, "uint8"),
                                   QuantParams(0.0078, 3, "int8")])
def test_preprocess_quantizes_with_model_parameters(quant):
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x, _ = preprocess(frame, _spec(input_dtype=quant.dtype, input_quant=quant))
    assert x.dtype == np.dtype(quant.dtype)
    real = frame[..., ::-1].transpose(2, 0, 1)[None] / 255.0
    np.testing.assert_allclose(dequantize(x, quant), np.clip(real, dequantize(np.array(np.iinfo(quant.dtype).min), quant),
                                                             dequantize(np.array(np.iinfo(quant.dtype).max), quant)),
                               atol=quant.scale / 2 + 1e-6)


def test_preprocess_bad_frames_raise():
    with pytest.raises(EdgedetError):
        preprocess(np.zeros((4, 4, 3), np.float32), _spec())
    with pytest.raises(EdgedetError):
        preprocess(np.zeros((4, 4, 5), np.uint8), _spec())
    with pytest.raises(EdgedetError):
        preprocess(np.zeros((4, 4, 3), np.uint8), _spec(input_dtype="int8"))
