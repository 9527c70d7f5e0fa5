"""The Python API examples in the docstrings of device.pipeline and device.detections run as written (doctest).

The pipeline example reads `model.onnx` and `image.jpg` from the working folder: here the seeded toy model of
tests.device.test_backends and a drawn 160x120 image, in a temporary folder."""
import doctest

import cv2
import numpy as np
import pytest

import edgedet.device.detections
import edgedet.device.pipeline
from tests.device.test_backends import make_onnx_model


def run_examples(module) -> doctest.TestResults:
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, module.__name__):
        runner.run(test)
    return runner.summarize(verbose=False)


def example_image() -> np.ndarray:
    """uint8 BGR (120, 160, 3): a filled circle and a filled square on grey."""
    image = np.full((120, 160, 3), 90, np.uint8)
    cv2.circle(image, (50, 60), 25, (40, 200, 240), -1)
    cv2.rectangle(image, (95, 30), (140, 75), (200, 80, 30), -1)
    return image


@pytest.mark.parametrize("module", [edgedet.device.detections, edgedet.device.pipeline])
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    make_onnx_model(tmp_path / "model.onnx")
    cv2.imwrite(str(tmp_path / "image.jpg"), example_image())
    monkeypatch.chdir(tmp_path)
    results = run_examples(module)
    assert results.attempted > 0 and results.failed == 0
    if module is edgedet.device.pipeline:
        assert cv2.imread("annotated.jpg").shape == (120, 160, 3)
