"""Anchor boxes by k-means with the IoU distance (d = 1 - IoU of centre-aligned boxes), as in YOLOv2.

NumPy only: anchors are (w, h) pairs in input pixels, sorted by area and split evenly over the FPN levels
(smallest anchors on the finest level).
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from edgedet.device.errors import EdgedetError


def wh_iou(wh_a: np.ndarray, wh_b: np.ndarray) -> np.ndarray:
    """IoU of centre-aligned boxes: (N, 2) and (K, 2) widths/heights -> (N, K) float64."""
    a = np.asarray(wh_a, dtype=np.float64)[:, None, :]
    b = np.asarray(wh_b, dtype=np.float64)[None, :, :]
    inter = np.minimum(a[..., 0], b[..., 0]) * np.minimum(a[..., 1], b[..., 1])
    union = a[..., 0] * a[..., 1] + b[..., 0] * b[..., 1] - inter
    return inter / np.maximum(union, 1e-12)


def _kmeans_plus_plus_init(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k initial centroids, each drawn with probability proportional to its IoU distance to the chosen ones."""
    centroids = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        distance = 1.0 - wh_iou(wh, np.array(centroids)).max(axis=1)
        total = distance.sum()
        probs = distance / total if total > 0 else None
        centroids.append(wh[rng.choice(len(wh), p=probs)])
    return np.array(centroids, dtype=np.float64)


def kmeans_anchors(wh: np.ndarray, k: int = 9, iterations: int = 100, seed: int = 0) -> np.ndarray:
    """Cluster box sizes (N, 2) in pixels into k anchors (k, 2), sorted by area; each centroid is its cluster's median."""
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    wh = wh[(wh > 0).all(axis=1)]
    if len(wh) < k:
        raise EdgedetError(f"k-means anchors need at least {k} boxes with positive size, got {len(wh)}")
    rng = np.random.default_rng(seed)
    centroids = _kmeans_plus_plus_init(wh, k, rng)
    assignment = None
    for _ in range(iterations):
        new_assignment = wh_iou(wh, centroids).argmax(axis=1)
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        for cluster in range(k):
            members = wh[assignment == cluster]
            centroids[cluster] = np.median(members, axis=0) if len(members) else wh[rng.integers(len(wh))]
    return centroids[np.argsort(centroids.prod(axis=1))]


def mean_best_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """Average over boxes of the IoU with their best-fitting anchor (higher = anchors fit the data better)."""
    return float(wh_iou(np.asarray(wh).reshape(-1, 2), np.asarray(anchors).reshape(-1, 2)).max(axis=1).mean())


def split_levels(anchors: np.ndarray, num_levels: int = 3) -> List[List[Tuple[float, float]]]:
    """(L*K, 2) anchors sorted by area -> L lists of K (w, h) tuples, finest level (smallest anchors) first."""
    anchors = np.asarray(anchors, dtype=np.float64)
    if len(anchors) % num_levels:
        raise EdgedetError(f"{len(anchors)} anchors cannot be split evenly over {num_levels} levels")
    per_level = len(anchors) // num_levels
    ordered = anchors[np.argsort(anchors.prod(axis=1))]
    return [
        [(round(float(w), 2), round(float(h), 2)) for w, h in ordered[i * per_level:(i + 1) * per_level]]
        for i in range(num_levels)
    ]
