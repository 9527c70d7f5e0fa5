"""The peer side of benchmarks/bench_tracking.py, run in .cache/peer-venv (scripts/peer_env.sh), never in .venv:
supervision's ByteTrack on the detections the benchmark wrote, and motmetrics' MOTA / IDF1 as a cross-check.

    .cache/peer-venv/bin/python scripts/peer_bytetrack.py IN.npz OUT.npz

IN.npz (written by the benchmark): "settings" (JSON list of ByteTrack keyword arguments), "repeats", "frames",
detections as flat arrays "det_frame" int (N,), "det_xyxy" float32 (N, 4), "det_scores" float32 (N,); for the
cross-check (optional) "crosscheck" (JSON list of names), "gt_frame", "gt_ids", "gt_xyxy" and, per name,
"<name>_frame", "<name>_ids", "<name>_xyxy".
OUT.npz: per setting k, the last repeat's output "out<k>_frame", "out<k>_ids", "out<k>_xyxy" and "times<k>"
float64 (repeats, frames), seconds per `update_with_detections` call; "motmetrics" and "versions" as JSON.
Imports only numpy, supervision and motmetrics: edgedet is not installed there.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np


def split_frames(frame_index: np.ndarray, frames: int, *arrays: np.ndarray) -> list:
    """Flat arrays with a frame index per row -> per frame, a tuple of each array's rows of that frame."""
    order = np.argsort(frame_index, kind="stable")
    bounds = np.searchsorted(frame_index[order], np.arange(frames + 1))
    return [tuple(a[order[bounds[f]:bounds[f + 1]]] for a in arrays) for f in range(frames)]


def run_bytetrack(settings: dict, frames: list, repeats: int):
    """(output rows (frame, id, xyxy) of the last repeat, seconds per frame (repeats, frames))."""
    import supervision as sv

    inputs = [sv.Detections(xyxy=xyxy.astype(np.float32), confidence=scores.astype(np.float32),
                            class_id=np.zeros(len(scores), dtype=int)) for xyxy, scores in frames]
    times = np.zeros((repeats, len(inputs)))
    for r in range(repeats):
        tracker = sv.ByteTrack(**settings)
        rows_frame, rows_ids, rows_xyxy = [], [], []
        for f, detections in enumerate(inputs):
            start = time.perf_counter()
            tracked = tracker.update_with_detections(detections)
            times[r, f] = time.perf_counter() - start
            rows_frame.append(np.full(len(tracked), f))
            rows_ids.append(np.asarray(tracked.tracker_id, dtype=np.int64).reshape(-1))
            rows_xyxy.append(np.asarray(tracked.xyxy, dtype=np.float64).reshape(-1, 4))
    return (np.concatenate(rows_frame), np.concatenate(rows_ids), np.concatenate(rows_xyxy)), times


def motmetrics_scores(data, frames: int) -> dict:
    """{name: {"mota", "idf1", "num_switches", "num_false_positives", "num_misses"}} from motmetrics (IoU 0.5)."""
    try:
        import motmetrics as mm
    except ImportError:
        return {}
    names = json.loads(str(data["crosscheck"]))
    truth = split_frames(data["gt_frame"], frames, data["gt_ids"], data["gt_xyxy"])
    scores = {}
    for name in names:
        hyp = split_frames(data[f"{name}_frame"], frames, data[f"{name}_ids"], data[f"{name}_xyxy"])
        accumulator = mm.MOTAccumulator(auto_id=True)
        for (gt_ids, gt_xyxy), (hyp_ids, hyp_xyxy) in zip(truth, hyp):
            accumulator.update(gt_ids.tolist(), hyp_ids.tolist(), iou_distances(gt_xyxy, hyp_xyxy))
        summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches",
                                                                    "num_false_positives", "num_misses"])
        scores[name] = {key: float(summary[key].iloc[0]) for key in summary.columns}
    return scores


def iou_distances(a_xyxy: np.ndarray, b_xyxy: np.ndarray, max_distance: float = 0.5) -> np.ndarray:
    """1 - IoU of (N, 4) and (M, 4) boxes, NaN where above max_distance: motmetrics' iou_matrix, which calls
    np.asfarray (gone in NumPy 2) in motmetrics 1.4.0, the latest release."""
    a, b = np.asarray(a_xyxy, np.float64).reshape(-1, 4), np.asarray(b_xyxy, np.float64).reshape(-1, 4)
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda boxes: (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    distance = 1.0 - np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.where(distance > max_distance, np.nan, distance)


def main(argv: list) -> int:
    source, target = argv
    data = np.load(source)
    frames, repeats = int(data["frames"]), int(data["repeats"])
    detections = split_frames(data["det_frame"], frames, data["det_xyxy"], data["det_scores"])
    out = {}
    for k, settings in enumerate(json.loads(str(data["settings"]))):
        (out[f"out{k}_frame"], out[f"out{k}_ids"], out[f"out{k}_xyxy"]), out[f"times{k}"] = run_bytetrack(
            settings, detections, repeats)
    out["motmetrics"] = json.dumps(motmetrics_scores(data, frames) if "crosscheck" in data else {})
    import supervision

    out["versions"] = json.dumps({"supervision": supervision.__version__, "numpy": np.__version__})
    np.savez(target, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
