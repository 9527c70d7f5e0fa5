"""The one value type for detector results: parallel NumPy arrays in original-image pixels.

    >>> import numpy as np
    >>> detections = Detections(np.array([[10, 20, 50, 80], [60, 10, 90, 40]]), np.array([0.9, 0.4]),
    ...                         np.array([0, 1]), names=["person", "dog"])
    >>> detections
    Detections(2 objects: 1 person, 1 dog)
    >>> detections[detections.scores > 0.5]
    Detections(1 object: 1 person)
    >>> [(d.name, round(d.score, 2)) for d in detections]
    [('person', 0.9), ('dog', 0.4)]
    >>> detections.to_dict()["detections"][0]
    {'xyxy': [10.0, 20.0, 50.0, 80.0], 'score': 0.9, 'class_id': 0, 'class_name': 'person'}
    >>> detections.to_coco(image_id=7)[1]
    {'image_id': 7, 'category_id': 1, 'bbox': [60.0, 10.0, 30.0, 30.0], 'score': 0.4}
    >>> tracked = detections.with_tracker_ids([3, 8])     # what device.tracking.Tracker.update returns
    >>> tracked
    Detections(2 objects: 1 person, 1 dog; tracks #3 #8)
    >>> [d.track_id for d in tracked[tracked.scores > 0.5]], tracked.to_dict()["detections"][1]["track_id"]
    ([3], 8)
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .boxes import box_area, xyxy_to_xywh
from .rle import rle_encode

REPR_TRACKS = 8  # track ids shown by the repr at most

@dataclass(frozen=True)
class Detection:
    """One object of a `Detections`, as iteration yields it."""

    xyxy: Tuple[float, float, float, float]  # corners in original-image pixels, continuous coordinates
    score: float  # confidence in 0..1
    class_id: int  # index into the model's class names
    name: str  # the class name (the id as text when the names are unknown)
    mask: Optional[np.ndarray] = field(default=None, repr=False, compare=False)  # bool (H, W) at image size, or None
    track_id: Optional[int] = None  # the object's track id (device.tracking), None when not tracked


@dataclass(frozen=True, eq=False)
class Detections:
    """N detections of one image.

    xyxy:      float32 (N, 4), corners (x1, y1, x2, y2) in original-image pixels, continuous coordinates.
    scores:    float32 (N,), confidence in 0..1.
    class_ids: int32 (N,), index into the model's class names.
    masks:     optional bool (N, H, W), instance masks at original-image resolution.
    names:     optional tuple of str, the model's class names (index = class id); kept by indexing.
    tracker_ids: optional int64 (N,), each object's track id (device.tracking.Tracker); None when not tracked.
    mask_spans: optional int64 (N, 4) [row0, row1, col0, col1): mask k is False outside these rows and columns
               (the mask builders know it: device.masks.mask_spans), so encoding masks (`to_dict`, `to_coco`) reads
               only those pixels, not whole frames; None: found by a scan. Kept by indexing; not part of equality.
               They describe `masks`: change masks with `with_masks` / `without_masks`, not dataclasses.replace.

    Filtering is indexing (`d[d.scores > 0.5]`) and returns a new value; "nothing found" is `Detections.empty()`.
    Iterating yields one `Detection` record per object.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    masks: Optional[np.ndarray] = None
    names: Optional[Tuple[str, ...]] = None
    tracker_ids: Optional[np.ndarray] = None
    mask_spans: Optional[np.ndarray] = field(default=None, repr=False)

    def __eq__(self, other) -> bool:
        """Equal values: the same boxes, scores, classes, masks, names and track ids (arrays compared element-wise)."""
        if not isinstance(other, Detections):
            return NotImplemented
        return (_same_optional(self.masks, other.masks) and _same_optional(self.tracker_ids, other.tracker_ids)
                and self.names == other.names and np.array_equal(self.xyxy, other.xyxy)
                and np.array_equal(self.scores, other.scores) and np.array_equal(self.class_ids, other.class_ids))

    __hash__ = None  # arrays are not hashable; equal values need not be the same object

    def __post_init__(self):
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids, dtype=np.int32).reshape(-1)
        n = len(xyxy)
        if len(scores) != n or len(class_ids) != n:
            raise ValueError(f"Detections: xyxy has {n} rows but scores {len(scores)} and class_ids {len(class_ids)}")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)
        if self.masks is not None:
            masks = np.asarray(self.masks, dtype=bool)
            if masks.ndim != 3 or len(masks) != n:
                raise ValueError(f"Detections: masks must be (N={n}, H, W), got {masks.shape}")
            object.__setattr__(self, "masks", masks)
        if self.names is not None:
            object.__setattr__(self, "names", tuple(str(name) for name in self.names))
        if self.tracker_ids is not None:
            tracker_ids = np.asarray(self.tracker_ids, dtype=np.int64).reshape(-1)
            if len(tracker_ids) != n:
                raise ValueError(f"Detections: tracker_ids has {len(tracker_ids)} entries for {n} detections")
            object.__setattr__(self, "tracker_ids", tracker_ids)
        if self.mask_spans is not None:
            object.__setattr__(self, "mask_spans", _checked_spans(self.mask_spans, self.masks, n))

    @classmethod
    def empty(cls, mask_shape_hw: Optional[tuple] = None, names: Optional[Sequence[str]] = None) -> "Detections":
        """No detections; with `mask_shape_hw` the masks field is an empty (0, H, W) array."""
        masks = None if mask_shape_hw is None else np.zeros((0, *mask_shape_hw), dtype=bool)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), masks, names)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index) -> "Detections":
        """Select by integer array, slice or boolean mask; always returns a `Detections` (names, track ids kept)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        masks = None if self.masks is None else self.masks[index]
        tracker_ids = None if self.tracker_ids is None else self.tracker_ids[index]
        spans = None if self.mask_spans is None else self.mask_spans[index]
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index], masks, self.names, tracker_ids,
                          spans)

    def __iter__(self) -> Iterator[Detection]:
        """One `Detection` per object, in order (most confident first for a detector's output)."""
        track_ids = [None] * len(self) if self.tracker_ids is None else self.tracker_ids.tolist()
        for k, name in enumerate(self.class_names):
            mask = None if self.masks is None else self.masks[k]
            yield Detection(tuple(float(v) for v in self.xyxy[k]), float(self.scores[k]), int(self.class_ids[k]),
                            name, mask, track_ids[k])

    def __repr__(self) -> str:
        """`Detections(3 objects: 2 person, 1 dog; masks 480x640; tracks #4 #7 #9)`: counts per class, most
        frequent first; when tracked, the track ids (the first REPR_TRACKS of them)."""
        n = len(self)
        counts = Counter(self.class_names)
        text = f"{n} object{'' if n == 1 else 's'}"
        if n:
            text += ": " + ", ".join(f"{count} {name}" for name, count in counts.most_common())
        if self.masks is not None:
            text += f"; masks {self.masks.shape[1]}x{self.masks.shape[2]}"
        if self.tracker_ids is not None:
            shown = " ".join(f"#{i}" for i in self.tracker_ids[:REPR_TRACKS].tolist())
            text += f"; tracks {shown}{' ...' if n > REPR_TRACKS else ''}" if n else "; tracked"
        return f"Detections({text})"

    @property
    def class_names(self) -> List[str]:
        """The class name of each detection (its id as text when `names` is unknown or too short)."""
        names = self.names or ()
        return [names[c] if 0 <= c < len(names) else str(c) for c in self.class_ids.tolist()]

    @property
    def area(self) -> np.ndarray:
        """float32 (N,): box areas in pixels squared (continuous, no +1)."""
        return box_area(self.xyxy)

    def with_names(self, names: Optional[Sequence[str]]) -> "Detections":
        """The same detections carrying `names` (class names, index = class id)."""
        return Detections(self.xyxy, self.scores, self.class_ids, self.masks, names, self.tracker_ids, self.mask_spans)

    def with_tracker_ids(self, tracker_ids: Optional[Sequence[int]]) -> "Detections":
        """The same detections carrying `tracker_ids` (int (N,), one track id per object; None: untracked)."""
        return Detections(self.xyxy, self.scores, self.class_ids, self.masks, self.names, tracker_ids, self.mask_spans)

    def with_masks(self, masks: Optional[np.ndarray], spans: Optional[np.ndarray] = None) -> "Detections":
        """The same detections with other instance masks (bool (N, H, W), or None) and their `mask_spans` (None:
        unknown, found by a scan when encoding)."""
        return Detections(self.xyxy, self.scores, self.class_ids, masks, self.names, self.tracker_ids, spans)

    def without_masks(self) -> "Detections":
        """The same detections without instance masks (boxes only)."""
        return self.with_masks(None)

    # ---- serialisation

    def to_dict(self, ndigits: int = 2) -> dict:
        """JSON-ready {"count": N, "detections": [{"xyxy": [x1, y1, x2, y2], "score", "class_id", "class_name",
        "track_id" (tracked only), "segmentation" (masks only: COCO compressed RLE {"size": [H, W], "counts": str})},
        ...]}.
        Box coordinates are rounded to `ndigits` decimals, scores to 4."""
        segmentations = self._segmentations()
        items = []
        for k, name in enumerate(self.class_names):
            item = {"xyxy": [round(float(v), ndigits) for v in self.xyxy[k]], "score": round(float(self.scores[k]), 4),
                    "class_id": int(self.class_ids[k]), "class_name": name}
            if self.tracker_ids is not None:
                item["track_id"] = int(self.tracker_ids[k])
            if segmentations is not None:
                item["segmentation"] = segmentations[k]
            items.append(item)
        return {"count": len(items), "detections": items}

    def to_json(self, ndigits: int = 2, **dumps_kwargs) -> str:
        """`to_dict()` as a JSON string; keyword arguments go to `json.dumps` (e.g. indent=2)."""
        return json.dumps(self.to_dict(ndigits), **dumps_kwargs)

    def to_coco(self, image_id: int, category_ids: Optional[Sequence[int]] = None) -> List[dict]:
        """COCO results of this image: {"image_id", "category_id", "bbox": [x, y, w, h] (3 decimals), "score"
        (5 decimals), "segmentation" (masks only, compressed RLE)} per object. category_ids[class_id] is the
        category id (COCO files number them from 1); None: the class id itself."""
        xywh = xyxy_to_xywh(self.xyxy.astype(np.float64))
        segmentations = self._segmentations()
        results = []
        for k, class_id in enumerate(self.class_ids.tolist()):
            category = class_id if category_ids is None else int(category_ids[class_id])
            result = {"image_id": int(image_id), "category_id": category,
                      "bbox": [round(float(v), 3) for v in xywh[k]], "score": round(float(self.scores[k]), 5)}
            if segmentations is not None:
                result["segmentation"] = segmentations[k]
            results.append(result)
        return results

    def _segmentations(self) -> Optional[List[dict]]:
        """COCO compressed RLE of each mask (reading only its span when known), None without masks or objects."""
        if self.masks is None or not len(self):
            return None
        return rle_encode(self.masks, spans=self.mask_spans)


def _checked_spans(spans, masks: Optional[np.ndarray], n: int) -> np.ndarray:
    """int64 (N, 4) `mask_spans` beside bool (N, H, W) masks, each 0 <= row0 <= row1 <= H, 0 <= col0 <= col1 <= W;
    ValueError naming the problem otherwise."""
    spans = np.asarray(spans, dtype=np.int64)
    if masks is None or spans.shape != (n, 4):
        raise ValueError(f"Detections: mask_spans must be (N={n}, 4) beside masks, got {spans.shape}"
                         + ("" if masks is not None else " without masks"))
    starts, ends = spans[:, 0::2], spans[:, 1::2]  # (N, 2) [row, col] each
    bad = (starts < 0) | (ends < starts) | (ends > masks.shape[1:])
    if bad.any():
        h, w = masks.shape[1:]
        k = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"Detections: mask_spans[{k}] = {spans[k].tolist()} is not [row0, row1, col0, col1) "
                         f"within the {h}x{w} masks")
    return spans


def _same_optional(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:
    """Both None, or both arrays with equal shapes and elements."""
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a, b)
