"""Calibration sets, readers and methods for int8 quantization. Never imports torch."""
