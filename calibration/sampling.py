"""Deterministic choice of calibration images: random, or balanced over classes.

An item is a `CalibrationItem`: an image path plus the class ids annotated in it (empty when unknown).
The same (items, size, seed) always gives the same list, in the same order.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from edgedet.device.errors import EdgedetError
from edgedet.device.image_files import IMAGE_SUFFIXES

STRATEGIES = ("random", "balanced")


@dataclass(frozen=True)
class CalibrationItem:
    """One candidate calibration image."""

    path: Path  # image file (any format OpenCV reads)
    class_ids: Tuple[int, ...] = field(default_factory=tuple)  # classes annotated in the image; empty if unlabelled


def items_from_folder(folder) -> List[CalibrationItem]:
    """Every image file directly in `folder` (or below it), sorted by path; unlabelled."""
    root = Path(folder)
    if not root.is_dir():
        raise EdgedetError(f"calibration folder {root} does not exist or is not a folder")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise EdgedetError(f"calibration folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [CalibrationItem(p) for p in paths]


def sample_items(items: Sequence[CalibrationItem], size: int, strategy: str = "random",
                 seed: int = 0) -> List[CalibrationItem]:
    """At most `size` items chosen deterministically by `strategy` ("random" or "balanced")."""
    if size < 1:
        raise EdgedetError(f"calibration size must be at least 1, got {size}")
    if not items:
        raise EdgedetError("no calibration images to sample from")
    if strategy == "random":
        return random_sample(items, size, seed)
    if strategy == "balanced":
        return class_balanced_sample(items, size, seed)
    raise EdgedetError(f"unknown calibration sampling {strategy!r}; expected one of {', '.join(STRATEGIES)}")


def random_sample(items: Sequence[CalibrationItem], size: int, seed: int = 0) -> List[CalibrationItem]:
    """`size` items drawn without replacement by a seeded RNG (all of them, shuffled, if fewer)."""
    chosen = list(items)
    random.Random(seed).shuffle(chosen)
    return chosen[:size]


def class_balanced_sample(items: Sequence[CalibrationItem], size: int, seed: int = 0) -> List[CalibrationItem]:
    """Round-robin over classes: each turn takes an unused image showing the class seen least so far.

    Rare classes get into the calibration set even when common ones dominate the data set, so
    their activations shape the int8 ranges. Unlabelled images fill any remaining room at random.
    """
    if not any(item.class_ids for item in items):
        raise EdgedetError("class-balanced calibration needs labelled images; use --calib-sampling random")
    rng = random.Random(seed)
    by_class = _shuffled_index_by_class(items, rng)
    used, chosen = set(), []
    counts = {c: 0 for c in by_class}
    while len(chosen) < size and by_class:
        cls = min(by_class, key=lambda c: (counts[c], c))
        candidates = [i for i in by_class[cls] if i not in used]
        if not candidates:
            del by_class[cls]
            continue
        index = candidates[0]
        used.add(index)
        chosen.append(items[index])
        for c in set(items[index].class_ids):
            counts[c] = counts.get(c, 0) + 1
    rest = [items[i] for i in range(len(items)) if i not in used]
    rng.shuffle(rest)
    return chosen + rest[: size - len(chosen)]


def _shuffled_index_by_class(items: Sequence[CalibrationItem], rng: random.Random) -> Dict[int, List[int]]:
    """class id -> indices of items showing it, in a seeded random order."""
    by_class: Dict[int, List[int]] = {}
    for index, item in enumerate(items):
        for cls in sorted(set(item.class_ids)):
            by_class.setdefault(cls, []).append(index)
    for indices in by_class.values():
        rng.shuffle(indices)
    return by_class
