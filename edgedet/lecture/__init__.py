"""The lecture's worked examples, on the host side with their tests (tests/edgedet/test_lecture_*.py).

- `edgedet.lecture.upsampling`: nearest, bed of nails, bilinear and bicubic upsampling, max unpooling and
  transposed convolution in NumPy, checked against the lecture's 2x2 -> 4x4 tables and against torch.

Nothing here runs on the device: `edgedet run` and `Detector` use only `edgedet.device`.
"""
