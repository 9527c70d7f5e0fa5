"""edgedet: train, export, int8-quantize and run YOLO detectors and segmenters on edge devices."""

__version__ = "0.1.0"
