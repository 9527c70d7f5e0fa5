"""Tracking against supervision's ByteTrack on the same detections in the same run: MOTA, IDF1 and time per frame.

    scripts/peer_env.sh                                   # once: .cache/peer-venv (supervision 0.30.9, motmetrics)
    .venv/bin/python benchmarks/bench_tracking.py [--frames 900] [--seeds 3] [--repeats 5]

1. Accuracy: `--seeds` sequences of edgedet.data.track_sequence (objects entering and leaving through the edges,
   crossing, hiding one another; ground-truth identities). The detections are simulated from the ground truth
   (box jitter, misses, lower scores when partly hidden, none when mostly hidden, false positives), not made by a
   model, so the trackers differ in association alone. edgedet's Tracker (defaults) against supervision's
   ByteTrack with its defaults and with the thresholds set as edgedet's (activation 0.5, so new tracks from 0.6;
   both keep lost tracks 30 frames). MOTA and IDF1 from edgedet.metrics.mot, summed over the sequences, and
   cross-checked against motmetrics (in the peer venv) when it is installed.
2. Speed: 50 objects in view on every frame (`--speed-frames` frames), each tracker's median time per frame over
   all frames, median over `--repeats` runs after a warm-up run; the ratio is edgedet / peer.
supervision runs in its own venv (it must not reach .venv) through scripts/peer_bytetrack.py, a subprocess fed
the same detections through an .npz file; its timings are taken inside that process, the same way as ours.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from edgedet.data.track_sequence import SequenceConfig, TrackSequence, make_sequence
from edgedet.device.detections import Detections
from edgedet.device.tracking import Tracker, TrackerConfig
from edgedet.metrics.mot import MotFrame, mot_metrics

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".cache" / "peer-venv" / "bin" / "python"
PEER_SCRIPT = ROOT / "scripts" / "peer_bytetrack.py"
# supervision's ByteTrack as run: its defaults, and with edgedet's thresholds (its low-score band is fixed at 0.1)
PEER_SETTINGS = {"supervision defaults": {},
                 "supervision, edgedet's thresholds": {"track_activation_threshold": 0.5, "lost_track_buffer": 30,
                                                       "minimum_matching_threshold": 0.8, "frame_rate": 30,
                                                       "minimum_consecutive_frames": 1}}
Rows = Tuple[np.ndarray, np.ndarray, np.ndarray]  # a tracker's output as flat rows: frame, track id, xyxy


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=900, help="frames per accuracy sequence")
    parser.add_argument("--objects", type=int, default=20, help="objects in view at a time, about")
    parser.add_argument("--seeds", type=int, default=3, help="accuracy sequences (seeds 0, 1, ...)")
    parser.add_argument("--speed-objects", type=int, default=50, help="objects in view in the speed sequence")
    parser.add_argument("--speed-frames", type=int, default=300, help="frames of the speed sequence")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the speed sequence per tracker")
    parser.add_argument("--peer-python", default=str(PEER_PYTHON), help="python of the peer venv")
    return parser.parse_args()


# ---- edgedet's side


def run_edgedet(sequence: TrackSequence, repeats: int = 1) -> Tuple[Rows, np.ndarray]:
    """(output rows of the last run, seconds per frame (repeats, frames)) of edgedet's Tracker, defaults."""
    inputs = [Detections(xyxy, scores, np.zeros(len(scores), np.int32))
              for xyxy, scores in zip(sequence.det_xyxy, sequence.det_scores)]
    times = np.zeros((repeats, len(inputs)))
    for r in range(repeats):
        tracker, rows = Tracker(TrackerConfig()), ([], [], [])
        for f, detections in enumerate(inputs):
            start = time.perf_counter()
            tracked = tracker.update(detections)
            times[r, f] = time.perf_counter() - start
            rows[0].append(np.full(len(tracked), f))
            rows[1].append(tracked.tracker_ids)
            rows[2].append(tracked.xyxy.astype(np.float64))
    return tuple(np.concatenate(part) for part in rows), times


# ---- the peer, in its venv


def run_peer(peer_python: str, sequence: TrackSequence, repeats: int, crosscheck: Dict[str, Rows]) -> dict:
    """supervision's ByteTrack (every PEER_SETTINGS entry) on the sequence's detections, in the peer venv ->
    {"rows": {setting: Rows}, "times": {setting: (repeats, frames)}, "motmetrics": {...}, "versions": {...}}."""
    frames = len(sequence.det_xyxy)
    payload = {"frames": frames, "repeats": repeats, "settings": json.dumps(list(PEER_SETTINGS.values())),
               **flat_rows("det", [np.zeros(len(s)) for s in sequence.det_scores], sequence.det_xyxy),
               "det_scores": np.concatenate(sequence.det_scores).astype(np.float32)}
    if crosscheck:
        payload.update(flat_rows("gt", sequence.gt_ids, sequence.gt_xyxy))
        payload["crosscheck"] = json.dumps(list(crosscheck))
        for name, (frame, ids, xyxy) in crosscheck.items():
            payload.update({f"{name}_frame": frame, f"{name}_ids": ids, f"{name}_xyxy": xyxy})
    with tempfile.TemporaryDirectory() as folder:
        source, target = os.path.join(folder, "in.npz"), os.path.join(folder, "out.npz")
        np.savez(source, **payload)
        done = subprocess.run([peer_python, str(PEER_SCRIPT), source, target], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the peer failed (did scripts/peer_env.sh run?):\n{done.stderr[-3000:]}")
        out = np.load(target)
        rows = {name: (out[f"out{k}_frame"], out[f"out{k}_ids"], out[f"out{k}_xyxy"])
                for k, name in enumerate(PEER_SETTINGS)}
        times = {name: out[f"times{k}"] for k, name in enumerate(PEER_SETTINGS)}
        return {"rows": rows, "times": times, "motmetrics": json.loads(str(out["motmetrics"])),
                "versions": json.loads(str(out["versions"]))}


def flat_rows(prefix: str, ids: List[np.ndarray], xyxy: List[np.ndarray]) -> Dict[str, np.ndarray]:
    """Per-frame arrays -> {"<prefix>_frame", "<prefix>_ids", "<prefix>_xyxy"} flat arrays."""
    return {f"{prefix}_frame": np.concatenate([np.full(len(i), f) for f, i in enumerate(ids)]).astype(np.int64),
            f"{prefix}_ids": np.concatenate(ids).astype(np.int64),
            f"{prefix}_xyxy": np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in xyxy])}


# ---- scoring


def mot_frames(rows: Rows, frames: int) -> List[MotFrame]:
    frame, ids, xyxy = rows
    return [MotFrame.of(ids[frame == f], xyxy[frame == f]) for f in range(frames)]


def combine(results: List[dict]) -> dict:
    """MOTA and IDF1 over several sequences: their error and identity counts summed."""
    gt = sum(r["ground_truth"] for r in results)
    errors = sum(r["misses"] + r["false_positives"] + r["switches"] for r in results)
    boxes = sum(r["idtp"] * 2 + r["idfp"] + r["idfn"] for r in results)
    return {"mota": 1 - errors / gt, "idf1": 2 * sum(r["idtp"] for r in results) / boxes,
            "switches": sum(r["switches"] for r in results), "false_positives": sum(r["false_positives"] for r in results),
            "misses": sum(r["misses"] for r in results)}


def cpu_model() -> str:
    """lscpu's model name (the machine the figures belong to)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def speed_sequence(args: argparse.Namespace) -> TrackSequence:
    """About `--speed-objects` objects in view on every frame from the first (they start scattered in view and walk
    slowly), without false positives, so both trackers carry the same load all along."""
    return make_sequence(SequenceConfig(frames=args.speed_frames, objects=args.speed_objects, speed=(0.5, 1.5),
                                        false_positives=0.0, start_in_view=True, seed=100))


# ---- the run


def accuracy(args: argparse.Namespace) -> None:
    per_tracker: Dict[str, List[dict]] = {}
    crosscheck_gap: Optional[float] = None  # None until motmetrics ran in the peer environment
    versions = {}
    for seed in range(args.seeds):
        sequence = make_sequence(SequenceConfig(frames=args.frames, objects=args.objects, speed=(3.0, 8.0),
                                                turn=0.05, seed=seed))
        stats = sequence.stats()
        print(f"sequence {seed}: {stats['frames']} frames, {stats['objects']} objects, {stats['gt_boxes']} "
              f"ground-truth boxes, {stats['detections']} detections + {stats['false_positives']} false positives, "
              f"{stats['crossings']} crossings", flush=True)
        ours, _ = run_edgedet(sequence)
        peer = run_peer(args.peer_python, sequence, 1, {"edgedet": ours})
        versions = peer["versions"]
        truth = [MotFrame.of(i, b) for i, b in zip(sequence.gt_ids, sequence.gt_xyxy)]
        outputs = {"edgedet Tracker": ours, **peer["rows"]}
        for name, rows in outputs.items():
            per_tracker.setdefault(name, []).append(mot_metrics(truth, mot_frames(rows, stats["frames"])))
        reference = peer["motmetrics"].get("edgedet")
        if reference:
            mine = per_tracker["edgedet Tracker"][-1]
            crosscheck_gap = max(crosscheck_gap or 0.0, abs(mine["mota"] - reference["mota"]),
                                 abs(mine["idf1"] - reference["idf1"]))
    print(f"\npeer: {versions}")
    print(f"\nAccuracy over {args.seeds} sequences ({args.frames} frames each), IoU 0.5:")
    print("| tracker | MOTA | IDF1 | ID switches | false positives | misses | IDF1 ratio (edgedet / this) |")
    print("|---|---|---|---|---|---|---|")
    ours_idf1 = combine(per_tracker["edgedet Tracker"])["idf1"]
    for name, results in per_tracker.items():
        c = combine(results)
        print(f"| {name} | {c['mota']:.4f} | {c['idf1']:.4f} | {c['switches']} | {c['false_positives']} | "
              f"{c['misses']} | {ours_idf1 / c['idf1']:.3f} |")
    if crosscheck_gap is None:
        print("edgedet.metrics.mot: not cross-checked (motmetrics did not run in the peer environment)")
    else:
        print(f"edgedet.metrics.mot against motmetrics on edgedet's output: largest MOTA/IDF1 difference "
              f"{crosscheck_gap:.2e}")


def speed(args: argparse.Namespace) -> None:
    sequence = speed_sequence(args)
    in_view = np.mean([len(i) for i in sequence.gt_ids])
    _, ours = run_edgedet(sequence, args.repeats + 1)
    peer = run_peer(args.peer_python, sequence, args.repeats + 1, {})
    print(f"\nSpeed: {len(sequence.gt_ids)} frames, {in_view:.1f} objects in view on average; median ms per frame "
          f"(median of {args.repeats} runs after a warm-up run):")
    print("| tracker | ms per frame | ratio (edgedet / this) |")
    print("|---|---|---|")
    ours_ms = float(np.median(np.median(ours[1:], axis=1))) * 1e3
    print(f"| edgedet Tracker | {ours_ms:.3f} | 1.00 |")
    for name, times in peer["times"].items():
        ms = float(np.median(np.median(times[1:], axis=1))) * 1e3
        print(f"| {name} | {ms:.3f} | {ours_ms / ms:.2f} |")


def main() -> int:
    args = parse_args()
    if not Path(args.peer_python).exists():
        raise SystemExit(f"{args.peer_python} not found: run scripts/peer_env.sh first")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; python {sys.version.split()[0]}, numpy {np.__version__}")
    start = time.perf_counter()
    accuracy(args)
    speed(args)
    print(f"\nbench_tracking.py took {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
