"""Compare two `edgedet run --json` outputs frame by frame: do both machines see the same objects?

Used by `make pi-check` to hold the emulated Raspberry Pi (arm64) run against the same run on the
x86 host. Each input file holds one JSON object per frame (the `edgedet run --json` schema): at least
``source`` (the image path) or ``frame``, and ``detections``: a list of ``{xyxy, score, class_id, ...}``
with ``xyxy`` in original-image pixels.

Two detections match when their class ids are equal, their box IoU is at least ``min_iou`` and their
scores differ by at most ``max_score_diff``. Matching is greedy per image and class, best IoU first;
every detection of either file must find a partner, and both files must cover the same images.
With ``--conf`` (the score threshold both runs used), an unmatched detection scoring below
``conf + max_score_diff`` is counted as borderline instead of a failure: within the score tolerance,
the other machine may legitimately have dropped it at the threshold.

Standard library only: this file also runs inside the emulated root, where only the device extras exist.

    python scripts/pi_compare.py reference.jsonl candidate.jsonl [--min-iou 0.9] [--max-score-diff 0.05]
    python scripts/pi_compare.py --eval reference.json candidate.json [--max-map-diff 0.01]

With ``--eval`` the two files are `edgedet eval --model ... --json` outputs instead, and their
mAP@0.5:0.95 (``bbox.AP``; ``segm.AP``, ``semantic.mIoU`` and ``panoptic.PQ`` when both have them)
must agree within ``max_map_diff``, over the same number of images, with no per-image errors.

Exit status 0 when the two runs agree, 1 when they do not (each disagreement is printed), 2 on
unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

Box = Tuple[float, float, float, float]  # x1, y1, x2, y2 in original-image pixels


@dataclass(frozen=True)
class Det:
    """One detection read from a JSON line."""

    xyxy: Box  # corners in original-image pixels
    score: float  # confidence in 0..1
    class_id: int  # index into the model's class names


@dataclass
class Comparison:
    """The outcome of comparing two runs."""

    images: int = 0  # images present in both runs
    matched: int = 0  # detection pairs that agree
    reference_total: int = 0  # detections in the reference run
    candidate_total: int = 0  # detections in the candidate run
    borderline: int = 0  # unmatched detections within max_score_diff of the score threshold (tolerated)
    problems: List[str] = field(default_factory=list)  # one human-readable line per disagreement

    @property
    def ok(self) -> bool:
        """True when every detection on every image found its partner."""
        return not self.problems

    def summary(self) -> str:
        """One line: images, detections and matches."""
        return (
            f"{self.images} images, {self.reference_total} x86 / {self.candidate_total} device detections, "
            f"{self.matched} matched, {self.borderline} borderline at the threshold, {len(self.problems)} problems"
        )


def box_iou(a: Box, b: Box) -> float:
    """IoU of two xyxy boxes (continuous coordinates, no +1); 0.0 when the union is empty."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def frame_key(record: dict) -> str:
    """The image a JSON line belongs to: the base name of its source path, else its frame index."""
    source = record.get("source")
    if isinstance(source, str) and source:
        return os.path.basename(source)
    if "frame" in record:
        return f"frame:{record['frame']}"
    raise ValueError("JSON line has neither 'source' nor 'frame'")


def parse_detection(item: dict) -> Det:
    """A `Det` from one entry of a frame's ``detections`` list."""
    x1, y1, x2, y2 = (float(v) for v in item["xyxy"])
    return Det((x1, y1, x2, y2), float(item["score"]), int(item["class_id"]))


def read_run(path: str) -> Dict[str, List[Det]]:
    """Detections per image from a JSON-lines file; lines without ``detections`` (e.g. summaries) are skipped.

    Raises ValueError on malformed lines and on an image that appears twice.
    """
    frames: Dict[str, List[Det]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or "detections" not in record:
                continue
            key = frame_key(record)
            if key in frames:
                raise ValueError(f"{path}:{number}: image {key} appears twice")
            frames[key] = [parse_detection(item) for item in record["detections"]]
    return frames


def match_image(
    reference: Sequence[Det], candidate: Sequence[Det], min_iou: float, max_score_diff: float
) -> Tuple[int, List[Det], List[Det]]:
    """Greedy one-to-one matching of one image's detections.

    Pairs must share the class, overlap with IoU >= min_iou and differ in score by <= max_score_diff;
    among admissible pairs the highest IoU is taken first. Returns (matched count, unmatched reference,
    unmatched candidate).
    """
    pairs = []
    for i, ref in enumerate(reference):
        for j, cand in enumerate(candidate):
            if ref.class_id != cand.class_id or abs(ref.score - cand.score) > max_score_diff:
                continue
            iou = box_iou(ref.xyxy, cand.xyxy)
            if iou >= min_iou:
                pairs.append((iou, i, j))
    pairs.sort(key=lambda p: -p[0])
    used_ref, used_cand = set(), set()
    for _, i, j in pairs:
        if i not in used_ref and j not in used_cand:
            used_ref.add(i)
            used_cand.add(j)
    left_ref = [d for i, d in enumerate(reference) if i not in used_ref]
    left_cand = [d for j, d in enumerate(candidate) if j not in used_cand]
    return len(used_ref), left_ref, left_cand


def describe(det: Det) -> str:
    """A detection as a short string for problem reports."""
    x1, y1, x2, y2 = det.xyxy
    return f"class {det.class_id} score {det.score:.3f} box [{x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}]"


def compare_runs(
    reference: Dict[str, List[Det]],
    candidate: Dict[str, List[Det]],
    min_iou: float = 0.9,
    max_score_diff: float = 0.05,
    conf: Optional[float] = None,
) -> Comparison:
    """Compare detections per image; every image and every detection must agree (see module doc).

    conf: the score threshold of both runs; unmatched detections scoring below conf + max_score_diff
    are counted in ``borderline`` instead of ``problems``. None tolerates nothing.
    """
    result = Comparison()
    for key in sorted(set(reference) - set(candidate)):
        result.problems.append(f"{key}: only in the reference run")
    for key in sorted(set(candidate) - set(reference)):
        result.problems.append(f"{key}: only in the candidate run")
    for key in sorted(set(reference) & set(candidate)):
        ref, cand = reference[key], candidate[key]
        result.images += 1
        result.reference_total += len(ref)
        result.candidate_total += len(cand)
        matched, left_ref, left_cand = match_image(ref, cand, min_iou, max_score_diff)
        result.matched += matched
        for side, left in (("reference", left_ref), ("candidate", left_cand)):
            for det in left:
                if conf is not None and det.score < conf + max_score_diff:
                    result.borderline += 1
                else:
                    result.problems.append(f"{key}: {side} {describe(det)} has no match")
    return result


# Further eval metrics held to the same tolerance when both results have them: (section, key).
SECONDARY_METRICS = (("semantic", "mIoU"), ("panoptic", "PQ"))


def compare_eval(reference: dict, candidate: dict, max_map_diff: float = 0.01) -> Tuple[List[str], List[str]]:
    """Compare the mAPs of two `edgedet eval --json` outputs: (lines describing each AP, problems).

    ``bbox.AP`` must exist in both; ``segm.AP``, ``semantic.mIoU`` and ``panoptic.PQ`` are compared when
    both have them. All are in 0..1. The image counts must be equal and neither may list errors.
    """
    lines, problems = [], []
    for name, record in (("reference", reference), ("candidate", candidate)):
        if record.get("errors"):
            problems.append(f"{name} eval reported errors: {record['errors']}")
    if reference.get("images") != candidate.get("images"):
        problems.append(f"evaluated {candidate.get('images')} images, reference {reference.get('images')}")
    for iou_type in ("bbox", "segm"):
        if iou_type != "bbox" and not (iou_type in reference and iou_type in candidate):
            continue
        try:
            ref_ap = float(reference[iou_type]["AP"])
            cand_ap = float(candidate[iou_type]["AP"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"{iou_type}.AP missing from an eval result")
            continue
        diff = abs(ref_ap - cand_ap)
        lines.append(f"{iou_type} mAP {cand_ap:.4f} vs reference {ref_ap:.4f} (diff {diff:.4f})")
        if not diff <= max_map_diff:
            problems.append(f"{iou_type} mAP differs by {diff:.4f} > {max_map_diff}")
    for section, key in SECONDARY_METRICS:
        if isinstance(reference.get(section), dict) and isinstance(candidate.get(section), dict):
            ref_value, cand_value = reference[section].get(key), candidate[section].get(key)
            if isinstance(ref_value, (int, float)) and isinstance(cand_value, (int, float)):
                diff = abs(ref_value - cand_value)
                lines.append(f"{key} {cand_value:.4f} vs reference {ref_value:.4f} (diff {diff:.4f})")
                if not diff <= max_map_diff:
                    problems.append(f"{section} {key} differs by {diff:.4f} > {max_map_diff}")
    return lines, problems


def eval_main(args: argparse.Namespace, prefix: str) -> int:
    """The --eval mode of main."""
    try:
        with open(args.reference, encoding="utf-8") as handle:
            reference = json.load(handle)
        with open(args.candidate, encoding="utf-8") as handle:
            candidate = json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"{prefix}error: {exc}", file=sys.stderr)
        return 2
    lines, problems = compare_eval(reference, candidate, args.max_map_diff)
    for line in lines:
        print(f"{prefix}{line}")
    for problem in problems:
        print(f"{prefix}  {problem}")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", help="JSON lines (or with --eval, eval JSON) from the reference machine (x86)")
    parser.add_argument("candidate", help="the same from the machine under test (emulated Pi)")
    parser.add_argument("--eval", action="store_true", help="compare `edgedet eval --json` outputs (mAP) instead")
    parser.add_argument("--max-map-diff", type=float, default=0.01, help="largest allowed mAP difference (0..1 scale)")
    parser.add_argument("--min-iou", type=float, default=0.9, help="smallest box IoU that counts as the same object")
    parser.add_argument("--max-score-diff", type=float, default=0.05, help="largest allowed score difference")
    parser.add_argument("--conf", type=float, default=None,
                        help="score threshold both runs used: unmatched detections below conf + max-score-diff are borderline")
    parser.add_argument("--min-images", type=int, default=1, help="fail when fewer images are compared")
    parser.add_argument("--min-matched", type=int, default=0,
                        help="fail when fewer detection pairs match (keeps the check from passing on empty runs)")
    parser.add_argument("--label", default="", help="prefix for the printed lines")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Compare two runs; print a summary and each problem. Exit 0 when they agree, 1 if not, 2 on bad input."""
    args = build_parser().parse_args(argv)
    prefix = f"{args.label}: " if args.label else ""
    if args.eval:
        return eval_main(args, prefix)
    try:
        reference = read_run(args.reference)
        candidate = read_run(args.candidate)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"{prefix}error: {exc}", file=sys.stderr)
        return 2
    result = compare_runs(reference, candidate, args.min_iou, args.max_score_diff, args.conf)
    if result.images < args.min_images:
        result.problems.append(f"only {result.images} images compared, expected at least {args.min_images}")
    if result.matched < args.min_matched:
        result.problems.append(f"only {result.matched} detections matched, expected at least {args.min_matched}")
    for problem in result.problems[:20]:
        print(f"{prefix}  {problem}")
    if len(result.problems) > 20:
        print(f"{prefix}  ... and {len(result.problems) - 20} more")
    print(f"{prefix}{result.summary()}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
