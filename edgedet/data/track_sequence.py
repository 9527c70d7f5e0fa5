"""A generated tracking sequence with ground-truth identities, and detections simulated from it.

Objects (boxes of person-like proportions) enter through the frame's edges, walk at a steady speed with small
random turns, cross one another and leave; one in front (the lower box bottom is nearer the camera) hides what is
behind it. The detections are not a model's: they are simulated from the ground truth, as a detector would
produce them, so a tracker is measured on association alone:
- a visible object is found with probability 1 - miss_rate, its box jittered by box_noise of its size, scoring
  high (0.55..0.95);
- a partly hidden one (visible fraction below `occluded`) scores low (0.1..0.5) and is missed more often;
  one hidden more than `hidden` is not found at all (it stays in the ground truth, as in MOTChallenge);
- false positives (Poisson, `false_positives` a frame) are boxes of the same sizes anywhere, scoring 0.1..0.7.
Everything comes from one seeded generator: a config gives the same sequence every time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from edgedet.device.boxes import box_iou


@dataclass(frozen=True)
class SequenceConfig:
    """How `make_sequence` generates a sequence and its detections."""

    frames: int = 600  # frames in the sequence
    size_wh: Tuple[int, int] = (1280, 720)  # frame (width, height) in pixels
    objects: int = 12  # objects in view at a time, about (new ones enter while fewer are in)
    speed: Tuple[float, float] = (2.0, 6.0)  # walking speed range, pixels per frame
    turn: float = 0.03  # std of the random heading change per frame, radians
    width: Tuple[float, float] = (30.0, 70.0)  # box width range, pixels (height 2..3 times it)
    miss_rate: float = 0.05  # a fully visible object is not detected with this probability
    occluded: float = 0.7  # visible fraction below this: partly hidden (low score, missed twice as often)
    hidden: float = 0.3  # visible fraction below this: not detected at all
    box_noise: float = 0.05  # std of the detection box jitter, as a fraction of the box's width / height
    false_positives: float = 1.0  # spurious detections per frame (Poisson mean)
    start_in_view: bool = False  # the first frame already holds `objects` objects, scattered over the frame
    seed: int = 0  # seed of the one generator everything is drawn from


@dataclass
class TrackSequence:
    """Per frame: the ground truth and the simulated detections (lists of length `frames`)."""

    config: SequenceConfig
    gt_ids: List[np.ndarray] = field(default_factory=list)  # int64 (K,): identity of each object in view
    gt_xyxy: List[np.ndarray] = field(default_factory=list)  # float64 (K, 4): their boxes, clipped to the frame
    det_xyxy: List[np.ndarray] = field(default_factory=list)  # float32 (N, 4): detection boxes
    det_scores: List[np.ndarray] = field(default_factory=list)  # float32 (N,): detection scores
    det_source: List[np.ndarray] = field(default_factory=list)  # int64 (N,): gt id detected, -1 = false positive

    def stats(self) -> dict:
        """Frames, objects (and those detected at least once), ground-truth boxes, detections, false positives and
        crossings (pairs of objects whose boxes overlapped at IoU >= 0.3 at some frame)."""
        crossings = set()
        for ids, boxes in zip(self.gt_ids, self.gt_xyxy):
            iou = np.triu(box_iou(boxes, boxes), 1)
            for i, j in zip(*np.nonzero(iou >= 0.3)):
                crossings.add((int(ids[i]), int(ids[j])))
        detected = {int(i) for source in self.det_source for i in source if i >= 0}
        gt_boxes = sum(len(ids) for ids in self.gt_ids)
        found = sum(int((source >= 0).sum()) for source in self.det_source)
        return {"frames": len(self.gt_ids), "objects": len({int(i) for ids in self.gt_ids for i in ids}),
                "objects_detected": len(detected), "gt_boxes": gt_boxes, "detections": found,
                "false_positives": sum(int((s < 0).sum()) for s in self.det_source), "crossings": len(crossings)}


@dataclass
class Walkers:
    """The objects alive, as parallel arrays."""

    ids: np.ndarray  # int64 (K,)
    centre: np.ndarray  # float64 (K, 2): box centre
    heading: np.ndarray  # float64 (K,): direction of motion, radians
    speed: np.ndarray  # float64 (K,): pixels per frame
    wh: np.ndarray  # float64 (K, 2): box width and height


def make_sequence(config: SequenceConfig = SequenceConfig()) -> TrackSequence:
    """The sequence of `config`: ground truth and simulated detections for every frame."""
    rng = np.random.default_rng(config.seed)
    sequence = TrackSequence(config)
    walkers = Walkers(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros((0, 2)))
    next_id = 1
    if config.start_in_view:
        for _ in range(config.objects):
            walkers = _enter(walkers, next_id, config, rng, anywhere=True)
            next_id += 1
    for _ in range(config.frames):
        if len(walkers.ids) < config.objects and rng.random() < 0.3:
            walkers = _enter(walkers, next_id, config, rng)
            next_id += 1
        walkers = _walk(walkers, config, rng)
        boxes, inside = _boxes_in_frame(walkers, config)
        ids, boxes = walkers.ids[inside], boxes[inside]
        sequence.gt_ids.append(ids)
        sequence.gt_xyxy.append(boxes)
        xyxy, scores, source = _detect(ids, boxes, config, rng)
        sequence.det_xyxy.append(xyxy)
        sequence.det_scores.append(scores)
        sequence.det_source.append(source)
    return sequence


def _enter(walkers: Walkers, object_id: int, config: SequenceConfig, rng: np.random.Generator,
           anywhere: bool = False) -> Walkers:
    """One more object, just outside a random edge (anywhere: at a random place in view), heading across the
    frame."""
    w, h = config.size_wh
    width = rng.uniform(*config.width)
    wh = np.array([width, width * rng.uniform(2.0, 3.0)])
    edge = rng.integers(4)
    along = rng.uniform(0.1, 0.9)
    start = [(along * w, -wh[1] / 2), (w + wh[0] / 2, along * h), (along * w, h + wh[1] / 2), (-wh[0] / 2, along * h)][edge]
    if anywhere:
        start = (rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h)
    target = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h])
    heading = np.arctan2(target[1] - start[1], target[0] - start[0])
    return Walkers(np.append(walkers.ids, object_id), np.vstack([walkers.centre, start]),
                   np.append(walkers.heading, heading), np.append(walkers.speed, rng.uniform(*config.speed)),
                   np.vstack([walkers.wh, wh]))


def _walk(walkers: Walkers, config: SequenceConfig, rng: np.random.Generator) -> Walkers:
    """One frame of motion; objects wholly outside the frame (after entering) are dropped."""
    heading = walkers.heading + rng.normal(0, config.turn, len(walkers.ids))
    step = np.stack([np.cos(heading), np.sin(heading)], axis=1) * walkers.speed[:, None]
    centre = walkers.centre + step
    w, h = config.size_wh
    margin = walkers.wh  # a box starts half outside; it is gone once a whole box beyond the edge
    gone = ((centre[:, 0] < -margin[:, 0]) | (centre[:, 0] > w + margin[:, 0])
            | (centre[:, 1] < -margin[:, 1]) | (centre[:, 1] > h + margin[:, 1]))
    keep = ~gone
    return Walkers(walkers.ids[keep], centre[keep], heading[keep], walkers.speed[keep], walkers.wh[keep])


def _boxes_in_frame(walkers: Walkers, config: SequenceConfig) -> Tuple[np.ndarray, np.ndarray]:
    """(boxes clipped to the frame (K, 4), bool (K,): at least 30% of the box is inside the frame)."""
    w, h = config.size_wh
    full = np.concatenate([walkers.centre - walkers.wh / 2, walkers.centre + walkers.wh / 2], axis=1)
    clipped = np.clip(full, 0, [w, h, w, h])
    area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # noqa: E731
    return clipped, area(clipped) >= 0.3 * area(full)


def visible_fractions(boxes: np.ndarray) -> np.ndarray:
    """(K, 4) boxes -> (K,) fraction of each box not covered by the boxes in front of it (larger bottom y =
    nearer the camera), counting overlaps of the covering boxes once (on a coarse grid)."""
    visible = np.ones(len(boxes))
    for k, box in enumerate(boxes):
        front = boxes[boxes[:, 3] > box[3]]
        if not len(front):
            continue
        xs = np.linspace(box[0], box[2], 12)
        ys = np.linspace(box[1], box[3], 24)
        gx, gy = np.meshgrid(xs, ys)
        covered = np.zeros(gx.shape, bool)
        for f in front:
            covered |= (gx >= f[0]) & (gx <= f[2]) & (gy >= f[1]) & (gy <= f[3])
        visible[k] = 1.0 - covered.mean()
    return visible


def _detect(ids: np.ndarray, boxes: np.ndarray, config: SequenceConfig,
            rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulated detections of one frame -> (xyxy float32 (N, 4), scores float32 (N,), gt id or -1 (N,))."""
    visible = visible_fractions(boxes)
    partly = visible < config.occluded
    miss = np.where(partly, 2 * config.miss_rate, config.miss_rate)
    found = (visible >= config.hidden) & (rng.random(len(ids)) >= miss)
    size = np.tile(boxes[:, 2:4] - boxes[:, 0:2], 2)
    jittered = boxes + rng.normal(0, config.box_noise, boxes.shape) * size
    scores = np.where(partly, rng.uniform(0.1, 0.5, len(ids)), rng.uniform(0.55, 0.95, len(ids)))
    spurious = _false_positives(rng.poisson(config.false_positives), config, rng)
    xyxy = np.concatenate([jittered[found], spurious]).astype(np.float32)
    all_scores = np.concatenate([scores[found], rng.uniform(0.1, 0.7, len(spurious))]).astype(np.float32)
    source = np.concatenate([ids[found], np.full(len(spurious), -1)]).astype(np.int64)
    return xyxy, all_scores, source


def _false_positives(count: int, config: SequenceConfig, rng: np.random.Generator) -> np.ndarray:
    w, h = config.size_wh
    width = rng.uniform(*config.width, count)
    wh = np.stack([width, width * rng.uniform(2.0, 3.0, count)], axis=1)
    top_left = rng.uniform(0, 1, (count, 2)) * ([w, h] - wh)
    return np.concatenate([top_left, top_left + wh], axis=1).reshape(-1, 4)
