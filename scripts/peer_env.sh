#!/usr/bin/env bash
# Issue 17: a venv of its own for the peer tracker of benchmarks/bench_tracking.py, supervision's ByteTrack.
# edgedet never imports supervision. Idempotent: re-running only checks and prints the versions.
#   scripts/peer_env.sh            -> .cache/peer-venv
# supervision 0.30.9 is the last release with `supervision.ByteTrack` (0.31 moved it to the `trackers` package).
# It imports cv2, served here by OpenCV headless (the GUI opencv-python must never reach .venv, where it would
# replace the headless one); its wheel also asks for PyAV (video files, unused by the tracker). So supervision
# goes in with --no-deps and its light dependencies explicitly; pip's note that `av` is missing is expected.
# motmetrics (with pandas) goes in too: the benchmark cross-checks its MOTA and IDF1 against it when present.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/peer-venv
STAMP=$VENV/.installed-v3
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p .cache
if [ ! -f "$STAMP" ]; then
  test -x "$VENV/bin/python" || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy scipy opencv-python-headless pillow pyyaml defusedxml requests tqdm matplotlib \
    "pydeprecate>=0.9,<0.14"
  "$VENV/bin/pip" install -q --no-deps supervision==0.30.9
  "$VENV/bin/pip" install -q pandas motmetrics==1.4.0 \
    || echo "motmetrics not installed; bench_tracking.py will skip its cross-check" >&2
  touch "$STAMP"
fi
"$VENV/bin/python" -c 'import supervision, numpy; from supervision.tracker.byte_tracker.core import ByteTrack; print("supervision", supervision.__version__, "numpy", numpy.__version__)'
