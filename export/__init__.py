"""PyTorch -> ONNX / TFLite export, int8 quantization and parity checks. Imports torch only inside functions that need it."""
