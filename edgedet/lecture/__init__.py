"""The lecture's worked examples, on the host side with their tests (tests/edgedet/test_lecture_*.py).

- `edgedet.lecture.upsampling`: nearest, bed of nails, bilinear and bicubic upsampling, max unpooling and
  transposed convolution in NumPy, checked against the lecture's 2x2 -> 4x4 tables and against torch.
- `edgedet.lecture.sliding_window`: the number of windows of every size and position in an H x W image,
  H(H+1)/2 * W(W+1)/2, against brute-force enumeration (800x600: 5.78e10, not the slide's "57 million").

Nothing here runs on the device: `edgedet run` and `Detector` use only `edgedet.device`.
"""
