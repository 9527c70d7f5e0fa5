#!/usr/bin/env bash
# Issue 13: a venv of its own for Ultralytics (AGPL), used only to PRODUCE test models for edgedet.
# edgedet never imports Ultralytics. Idempotent: re-running only checks and prints the version.
#   scripts/ultralytics_env.sh            -> .cache/ultralytics-venv
# Use it as:
#   PYTHONPATH=scripts/ultralytics_shim YOLO_OFFLINE=1 .cache/ultralytics-venv/bin/python scripts/ultralytics_models.py ...
# torch is pinned to the local CPU build (an unpinned torch pulls CUDA wheels); Ultralytics and yolov5 go in
# with --no-deps, their light dependencies explicitly. torchvision cannot be installed here: the stand-in
# package scripts/ultralytics_shim/torchvision provides the one call Ultralytics needs (ops.nms).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/ultralytics-venv
STAMP=$VENV/.installed-v2
CONSTRAINTS=.cache/ultralytics-constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p .cache
printf 'torch==2.13.0\n' > "$CONSTRAINTS"
if [ ! -f "$STAMP" ]; then
  test -x "$VENV/bin/python" || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -c "$CONSTRAINTS" torch==2.13.0
  "$VENV/bin/pip" install -q -c "$CONSTRAINTS" \
    numpy opencv-python-headless pyyaml pillow psutil requests scipy polars ultralytics-thop matplotlib \
    pandas tqdm onnx onnxslim onnxruntime
  "$VENV/bin/pip" install -q -c "$CONSTRAINTS" --no-deps ultralytics
  # anchor-based YOLOv5 (its models/yolo.py Detect) for yolov5-det.onnx; its import chain needs pkg_resources
  # (setuptools<81) and seaborn. Optional: the fixtures skip yolov5-det.onnx when it cannot be imported.
  "$VENV/bin/pip" install -q -c "$CONSTRAINTS" "setuptools<81" \
    && "$VENV/bin/pip" install -q -c "$CONSTRAINTS" --no-deps yolov5 seaborn \
    || echo "yolov5 (PyPI) not installed; the yolov5-det fixture will be skipped" >&2
  touch "$STAMP"
fi
PYTHONPATH=scripts/ultralytics_shim YOLO_OFFLINE=1 YOLO_CONFIG_DIR="$PWD/.cache/ultralytics-config" "$VENV/bin/python" -c \
  'import ultralytics, torchvision; print("ultralytics", ultralytics.__version__, "(stand-in torchvision:", torchvision.__file__ + ")")'
