"""The label-free gate: how well an int8 model's detections agree with the fp32 model's on the same images.

Without labels there is no mAP, but the fp32 model's detections are the reference a user has: a detection of
the int8 model agrees when the fp32 model has a detection of the same class at IoU >= 0.5. Precision is the
share of int8 detections that agree, recall the share of fp32 detections that int8 reproduces, and the mean IoU
is taken over the reproduced ones. `--min-agreement Y` fails an artifact whose precision or recall is below Y.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, List, Sequence

import numpy as np

from edgedet.device.boxes import box_iou
from edgedet.device.detections import Detections
from edgedet.device.pipeline import Detector

AGREEMENT_IOU = 0.5  # same class and at least this IoU: the same object
AGREEMENT_CONF = 0.25  # both models run at this score threshold (what `edgedet run` shows by default)


@dataclass
class Agreement:
    """Agreement of a test model with the reference model over a set of images."""

    images: int  # images compared
    reference_boxes: int  # detections of the reference (fp32) model
    test_boxes: int  # detections of the test (int8) model
    precision: float  # share of test detections with a reference twin (1.0 when there are none)
    recall: float  # share of reference detections with a test twin (1.0 when there are none)
    mean_iou: float  # mean IoU of the reference detections' twins (NaN when none is reproduced)

    def describe(self) -> str:
        return (f"agreement with fp32 on {self.images} images: precision {self.precision:.3f}, recall "
                f"{self.recall:.3f}, mean IoU {self.mean_iou:.3f} ({self.test_boxes} vs {self.reference_boxes} boxes)")


def best_same_class_iou(reference: Detections, other: Detections) -> np.ndarray:
    """(N,) for each detection of `reference` the highest IoU with a detection of `other` of the same class."""
    if len(reference) == 0 or len(other) == 0:
        return np.zeros(len(reference))
    same_class = reference.class_ids[:, None] == other.class_ids[None, :]
    return np.where(same_class, box_iou(reference.xyxy, other.xyxy), 0.0).max(axis=1)


def agreement(reference: Sequence[Detections], test: Sequence[Detections], min_iou: float = AGREEMENT_IOU) -> Agreement:
    """Agreement of per-image `test` detections with per-image `reference` detections (same images, same order)."""
    if len(reference) != len(test):
        raise ValueError(f"{len(reference)} reference results for {len(test)} test results")
    recalled = [best_same_class_iou(ref, tst) for ref, tst in zip(reference, test)]
    precise = [best_same_class_iou(tst, ref) for ref, tst in zip(reference, test)]
    ious = np.concatenate(recalled) if recalled else np.zeros(0)
    found = ious[ious >= min_iou]
    test_ious = np.concatenate(precise) if precise else np.zeros(0)
    return Agreement(images=len(reference), reference_boxes=len(ious), test_boxes=len(test_ious),
                     precision=_share(test_ious >= min_iou), recall=_share(ious >= min_iou),
                     mean_iou=float(found.mean()) if len(found) else math.nan)


def _share(hits: np.ndarray) -> float:
    return float(hits.mean()) if len(hits) else 1.0


def detections_of(model, images: Iterable[np.ndarray], conf: float = AGREEMENT_CONF, threads=None) -> List[Detections]:
    """Detections of a model file (or backend; `threads` then ignored) on BGR images, through the device runtime."""
    detector = Detector(model, conf=conf, threads=threads)
    return [detector.predict(image) for image in images]


def agreement_failures(rows: Sequence[tuple], min_agreement: float) -> List[str]:
    """One message per (name, path, Agreement) whose precision or recall is below `min_agreement`."""
    failures = []
    for name, path, measured in rows:
        worst = min(measured.precision, measured.recall)
        if worst < min_agreement:
            failures.append(f"{name} ({path}) agrees with fp32 at precision {measured.precision:.3f} / recall "
                            f"{measured.recall:.3f}, below --min-agreement {min_agreement}")
    return failures
