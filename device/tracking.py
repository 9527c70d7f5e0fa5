"""ByteTrack-style multi-object tracking in NumPy: `Tracker.update(detections)` gives each object a stable track id.

    >>> from edgedet.device.detections import Detections
    >>> from edgedet.device.tracking import Tracker
    >>> tracker = Tracker()
    >>> for x in (10, 14, 18):     # a person walking right by 4 px a frame, a dog standing still
    ...     frame = Detections([[x, 10, x + 20, 50], [100, 10, 130, 60]], [0.9, 0.8], [0, 1], names=["person", "dog"])
    ...     tracked = tracker.update(frame)
    >>> tracked
    Detections(2 objects: 1 person, 1 dog; tracks #1 #2)
    >>> [(d.track_id, d.name) for d in tracked]
    [(1, 'person'), (2, 'dog')]

One frame, as in ByteTrack (Zhang et al., ECCV 2022):
1. every track's box is predicted by a constant-velocity Kalman filter on (cx, cy, w, h);
2. the detections split by score: high (>= high_score) and low (low_score up to high_score);
3. confirmed tracks (seen last frame or lost) are matched to the high detections by IoU times score;
4. those still unmatched that were seen last frame are matched to the low detections (an object being occluded
   scores low); low detections left over start nothing and are dropped;
5. tentative tracks (born, not yet confirmed) are matched to the high detections left;
6. each high detection still left scoring >= new_track_score starts a tentative track.
Birth and death have hysteresis: a tentative track is confirmed, and gets its id, after `min_hits` frames matched
in a row (missing once, it is dropped); a confirmed track is removed after more than `max_missed` frames unmatched.
Ids count up from 1 and are never reused. Each matching is an optimal assignment (`max_gain_assignment`), solved
per group of overlapping boxes, so a frame of well separated objects costs little more than its IoU matrix.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import List, Optional, Tuple

import numpy as np

from .boxes import box_iou, cxcywh_to_xyxy, xyxy_to_cxcywh
from .detections import Detections
from .errors import EdgedetError

MATCH_EPS = 1e-4  # gain of a pair exactly at the matching threshold: matched, as ByteTrack's `cost <= thresh`


@dataclass(frozen=True)
class TrackerConfig:
    """How `Tracker` associates, starts and ends tracks (defaults: ByteTrack's on MOT17)."""

    high_score: float = 0.5  # detections at or above this score take part in the first association
    low_score: float = 0.1  # detections from this score up to high_score: only the second association
    new_track_score: float = 0.6  # an unmatched high detection starts a track only at or above this score
    match_iou: float = 0.2  # first association: least IoU (times the score, with fuse_score) to match
    low_match_iou: float = 0.5  # second association (low-score detections): least IoU to match
    tentative_match_iou: float = 0.3  # tentative tracks: least IoU (times the score, with fuse_score) to match
    min_hits: int = 2  # frames matched in a row before a track is confirmed and gets its id (birth)
    max_missed: int = 30  # frames a confirmed track may stay unmatched before it is removed (death)
    fuse_score: bool = True  # weight IoU by the detection's score in the first and tentative associations
    class_aware: bool = False  # match a track only to detections of its class (ByteTrack ignores classes)
    confirm_first_frame: bool = True  # tracks born on the first frame are confirmed at once (objects already there)
    position_noise: float = 1 / 20  # Kalman position noise std, as a fraction of the box's width / height
    velocity_noise: float = 1 / 160  # Kalman velocity noise std, as a fraction of the box's width / height

    def __post_init__(self):
        for name in ("high_score", "low_score", "new_track_score", "match_iou", "low_match_iou",
                     "tentative_match_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise EdgedetError(f"TrackerConfig.{name} must be in 0..1, got {getattr(self, name)}")
        if self.low_score > self.high_score:
            raise EdgedetError(f"TrackerConfig.low_score {self.low_score} is above high_score {self.high_score}")
        if self.new_track_score < self.high_score:  # else low-score detections, kept for the second pass, start tracks
            raise EdgedetError(f"TrackerConfig.new_track_score {self.new_track_score} is below high_score "
                               f"{self.high_score}")
        if self.min_hits < 1 or self.max_missed < 0:
            raise EdgedetError(f"TrackerConfig: min_hits must be >= 1 and max_missed >= 0, "
                               f"got {self.min_hits} and {self.max_missed}")
        if self.position_noise <= 0 or self.velocity_noise <= 0:
            raise EdgedetError("TrackerConfig: position_noise and velocity_noise must be > 0")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---- assignment


def max_gain_assignment(gain: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs of rows and columns of `gain` (R, C) that maximise the summed gain, using only pairs with
    gain > 0 -> (rows int64 (K,), cols int64 (K,)), sorted by row.

    A row and a column that only have each other are paired at once (most objects, in a frame of well separated
    ones); the rest is solved exactly (Hungarian) per connected group of positive entries."""
    gain = np.asarray(gain, dtype=np.float64)
    if gain.ndim != 2:
        raise ValueError(f"max_gain_assignment: gain must be 2-D (R, C), got shape {gain.shape}")
    if gain.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    edges = gain > 0
    row_degree, col_degree = edges.sum(1), edges.sum(0)
    lone_rows = np.flatnonzero(row_degree == 1)
    lone_cols = edges[lone_rows].argmax(1)
    alone = col_degree[lone_cols] == 1
    rows, cols = lone_rows[alone].tolist(), lone_cols[alone].tolist()
    rest = row_degree > 0
    rest[lone_rows[alone]] = False
    rest_r = np.flatnonzero(rest)
    if len(rest_r):
        rest_c = np.flatnonzero(edges[rest_r].any(0))
        sub = gain[np.ix_(rest_r, rest_c)].tolist()
        for group_rows, group_cols in _groups(sub):
            for r, c in _hungarian_max([[sub[i][j] for j in group_cols] for i in group_rows]):
                rows.append(int(rest_r[group_rows[r]]))
                cols.append(int(rest_c[group_cols[c]]))
    rows_array, cols_array = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)
    order = np.argsort(rows_array)
    return rows_array[order], cols_array[order]


def _groups(gain: List[List[float]]) -> List[Tuple[List[int], List[int]]]:
    """Connected groups of rows and columns linked by positive entries of an (R, C) list of lists in which every
    row and column has one -> [(rows, cols), ...], each sorted."""
    cols_of = [[j for j, value in enumerate(row) if value > 0] for row in gain]
    rows_of: List[List[int]] = [[] for _ in gain[0]]
    for i, linked in enumerate(cols_of):
        for j in linked:
            rows_of[j].append(i)
    row_seen, col_seen = [False] * len(gain), [False] * len(gain[0])
    groups = []
    for start in range(len(gain)):
        if row_seen[start]:
            continue
        row_seen[start] = True
        group_rows, group_cols, stack = [], [], [start]
        while stack:
            i = stack.pop()
            group_rows.append(i)
            for j in cols_of[i]:
                if not col_seen[j]:
                    col_seen[j] = True
                    group_cols.append(j)
                    for k in rows_of[j]:
                        if not row_seen[k]:
                            row_seen[k] = True
                            stack.append(k)
        groups.append((sorted(group_rows), sorted(group_cols)))
    return groups


def _hungarian_max(gain: List[List[float]]) -> List[Tuple[int, int]]:
    """Maximum-gain assignment of a small dense (R, C) list of lists -> the (row, col) pairs with gain > 0."""
    transposed = len(gain) > len(gain[0])
    if transposed:
        gain = [list(column) for column in zip(*gain)]
    top = max(map(max, gain))
    # minimising top - gain over a full assignment of the shorter side maximises the gain
    col_of_row = _hungarian_min([[top - value for value in row] for row in gain])
    pairs = [(i, j) for i, j in enumerate(col_of_row) if gain[i][j] > 0]
    return [(j, i) for i, j in pairs] if transposed else pairs


def _hungarian_min(cost: List[List[float]]) -> List[int]:
    """Minimum-cost assignment of every row of a dense (n, m) list of lists, n <= m -> the column of each row.
    Shortest augmenting paths with potentials (Kuhn-Munkres, O(n^2 m)), in plain Python floats: the groups it
    solves are small, where a NumPy call per step would cost more than the arithmetic."""
    n, m = len(cost), len(cost[0])
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    row_of_col = [0] * (m + 1)  # 1-based row matched to column j; column 0 holds the row being added
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        row_of_col[0], j0 = i, 0
        min_to, used = [inf] * (m + 1), [False] * (m + 1)
        while True:
            used[j0] = True
            row, u0 = cost[row_of_col[j0] - 1], u[row_of_col[j0]]
            delta, j1 = inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = row[j - 1] - u0 - v[j]
                    if reduced < min_to[j]:
                        min_to[j], way[j] = reduced, j0
                    if min_to[j] < delta:
                        delta, j1 = min_to[j], j
            for j in range(m + 1):
                if used[j]:
                    u[row_of_col[j]] += delta
                    v[j] -= delta
                else:
                    min_to[j] -= delta
            j0 = j1
            if row_of_col[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            row_of_col[j0] = row_of_col[j1]
            j0 = j1
    col_of_row = [0] * n
    for j in range(1, m + 1):
        if row_of_col[j]:
            col_of_row[row_of_col[j] - 1] = j - 1
    return col_of_row


def _match(similarity: np.ndarray, min_similarity: float) -> Tuple[np.ndarray, np.ndarray]:
    """Pairs maximising the summed similarity among pairs with similarity >= min_similarity (ByteTrack's
    thresholded linear assignment)."""
    gain = np.where(similarity >= min_similarity, similarity - min_similarity + MATCH_EPS, 0.0)
    return max_gain_assignment(gain)


# ---- the Kalman filter, batched over tracks: state (cx, cy, w, h, vcx, vcy, vw, vh), one frame per step
#
# With a constant-velocity model, diagonal process and measurement noise and a diagonal start, each coordinate
# and its velocity form an independent pair: the 8x8 covariance only ever has 4 non-zero 2x2 blocks. They are
# kept as (T, 3, 4) arrays: per coordinate, var(position), cov(position, velocity), var(velocity); every step is
# then elementwise arithmetic, equal to the full matrix filter (tests/device/test_tracking.py checks it).


def _noise_size(boxes: np.ndarray) -> np.ndarray:
    """(K, >=4) cxcywh boxes or states -> (K, 4) the (w, h, w, h) that scale the noise, at least 1 px: a box
    clipped to zero width at the frame edge would otherwise give zero variances and 0/0 = NaN gains."""
    wh = np.maximum(boxes[:, 2:4], 1.0)
    return np.concatenate([wh, wh], axis=1)


def kalman_initiate(cxcywh: np.ndarray, config: TrackerConfig) -> Tuple[np.ndarray, np.ndarray]:
    """(K, 4) boxes -> state means (K, 8) at zero velocity and covariance blocks (K, 3, 4)."""
    size = _noise_size(cxcywh)
    cov = np.stack([(2 * config.position_noise * size) ** 2, np.zeros_like(size),
                    (10 * config.velocity_noise * size) ** 2], axis=1)
    return np.concatenate([cxcywh, np.zeros_like(cxcywh)], axis=1), cov


def kalman_predict(mean: np.ndarray, cov: np.ndarray, config: TrackerConfig) -> Tuple[np.ndarray, np.ndarray]:
    """One frame ahead: means (T, 8), covariance blocks (T, 3, 4) -> the predicted ones (new arrays)."""
    size = _noise_size(mean)
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    predicted = np.stack([pp + 2 * pv + vv + (config.position_noise * size) ** 2, pv + vv,
                          vv + (config.velocity_noise * size) ** 2], axis=1)
    return np.concatenate([mean[:, :4] + mean[:, 4:], mean[:, 4:]], axis=1), predicted


def kalman_update(mean: np.ndarray, cov: np.ndarray, cxcywh: np.ndarray,
                  config: TrackerConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Correct means (T, 8), covariance blocks (T, 3, 4) with measured boxes (T, 4) -> the corrected ones."""
    size = _noise_size(mean)
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    innovation_var = pp + (config.position_noise * size) ** 2
    gain_p, gain_v = pp / innovation_var, pv / innovation_var
    innovation = cxcywh - mean[:, :4]
    corrected = np.concatenate([mean[:, :4] + gain_p * innovation, mean[:, 4:] + gain_v * innovation], axis=1)
    return corrected, np.stack([(1 - gain_p) * pp, (1 - gain_p) * pv, vv - gain_v * pv], axis=1)


# ---- the tracker


@dataclass
class TrackSet:
    """The tracks of a `Tracker`, as parallel arrays (T = number of tracks, confirmed and tentative)."""

    mean: np.ndarray  # float64 (T, 8): Kalman state (cx, cy, w, h, vcx, vcy, vw, vh), frame pixels
    cov: np.ndarray  # float64 (T, 3, 4): state covariance blocks (see the Kalman filter above)
    ids: np.ndarray  # int64 (T,): track id, meaningful once confirmed
    confirmed: np.ndarray  # bool (T,): born (min_hits reached); only confirmed tracks are output
    hits: np.ndarray  # int64 (T,): frames matched in a row
    missed: np.ndarray  # int64 (T,): frames since the last match (0: matched in the latest frame)
    class_ids: np.ndarray  # int32 (T,): class of the latest matched detection

    @classmethod
    def empty(cls) -> "TrackSet":
        return cls(np.zeros((0, 8)), np.zeros((0, 3, 4)), np.zeros(0, np.int64), np.zeros(0, bool),
                   np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, index: np.ndarray) -> "TrackSet":
        return TrackSet(*(getattr(self, f.name)[index] for f in fields(self)))

    def extend(self, other: "TrackSet") -> "TrackSet":
        return TrackSet(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)))

    def boxes(self) -> np.ndarray:
        """float64 (T, 4) xyxy of the current state."""
        return cxcywh_to_xyxy(self.mean[:, :4])


class Tracker:
    """Feed it one `Detections` per frame, in order; it returns the objects on confirmed tracks with their ids.

    `update(detections)` -> `Detections`: the input's objects that belong to a confirmed track, in input order,
    each with its `tracker_ids` entry (int64); low-score detections that matched no track and detections of
    tracks not yet confirmed are left out. Boxes, scores and classes are the input's, unchanged.
    """

    def __init__(self, config: Optional[TrackerConfig] = None):
        self.config = config or TrackerConfig()
        self.frames = 0  # frames seen
        self.tracks = TrackSet.empty()
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (ids start again from 1): for a new video."""
        self.frames, self.tracks, self._next_id = 0, TrackSet.empty(), 1

    @property
    def active_ids(self) -> np.ndarray:
        """int64 (K,): ids of the confirmed tracks, matched in the latest frame or lost but kept."""
        tracks = self.tracks  # one snapshot: `update` replaces the set, it never resizes one in place
        return tracks.ids[tracks.confirmed]

    def update(self, detections: Detections) -> Detections:
        """One frame's detections (boxes in frame pixels) -> those on confirmed tracks, with `tracker_ids`."""
        config, tracks = self.config, self.tracks
        self.frames += 1
        if len(tracks):
            tracks.mean, tracks.cov = kalman_predict(_still_size(tracks), tracks.cov, config)
        track_of = self._associate(detections)
        matched = np.flatnonzero(track_of >= 0)
        if len(matched):
            self._correct(track_of[matched], detections.xyxy[matched], detections.class_ids[matched])
        unmatched = np.ones(len(tracks), dtype=bool)
        unmatched[track_of[matched]] = False
        self._age_unmatched(unmatched)
        born = self._start_tracks(detections, track_of)
        track_of[born] = len(self.tracks) - len(born) + np.arange(len(born))
        output = np.flatnonzero(track_of >= 0)
        output = output[self.tracks.confirmed[track_of[output]]]
        ids = self.tracks.ids[track_of[output]]
        self._remove_dead()
        return detections[output].with_tracker_ids(ids)

    # ---- one frame's steps

    def _associate(self, detections: Detections) -> np.ndarray:
        """int64 (N,): the index of the track each detection matched in the three associations, -1 for none."""
        config, tracks = self.config, self.tracks
        scores = detections.scores.astype(np.float64)
        track_of = np.full(len(detections), -1, dtype=np.int64)
        if not len(tracks) or not len(detections):
            return track_of
        iou = box_iou(tracks.boxes(), detections.xyxy)
        if config.class_aware:
            iou[tracks.class_ids[:, None] != detections.class_ids[None, :]] = 0.0
        fused = iou * scores[None, :] if config.fuse_score else iou
        high = np.flatnonzero(scores >= config.high_score)
        low = np.flatnonzero((scores >= config.low_score) & (scores < config.high_score))
        confirmed = np.flatnonzero(tracks.confirmed)
        left = self._match_into(track_of, fused, confirmed, high, config.match_iou)
        seen_last = left[tracks.missed[left] == 0]
        self._match_into(track_of, iou, seen_last, low, config.low_match_iou)
        free_high = high[track_of[high] < 0]
        self._match_into(track_of, fused, np.flatnonzero(~tracks.confirmed), free_high, config.tentative_match_iou)
        return track_of

    @staticmethod
    def _match_into(track_of: np.ndarray, similarity: np.ndarray, track_index: np.ndarray, det_index: np.ndarray,
                    min_similarity: float) -> np.ndarray:
        """Match tracks `track_index` to detections `det_index` (similarity (T, N) over all of them), writing
        `track_of`; returns the tracks left unmatched."""
        if not len(track_index) or not len(det_index):
            return track_index
        rows, cols = _match(similarity[np.ix_(track_index, det_index)], min_similarity)
        track_of[det_index[cols]] = track_index[rows]
        return np.delete(track_index, rows)

    def _correct(self, track_index: np.ndarray, xyxy: np.ndarray, class_ids: np.ndarray) -> None:
        """Kalman-correct the matched tracks with their detections' boxes (K, 4) and take their classes (K,);
        confirm the tracks with enough hits."""
        tracks = self.tracks
        measured = xyxy_to_cxcywh(xyxy.astype(np.float64))
        tracks.mean[track_index], tracks.cov[track_index] = kalman_update(
            tracks.mean[track_index], tracks.cov[track_index], measured, self.config)
        tracks.hits[track_index] += 1
        tracks.missed[track_index] = 0
        tracks.class_ids[track_index] = class_ids
        born = track_index[~tracks.confirmed[track_index] & (tracks.hits[track_index] >= self.config.min_hits)]
        self._confirm(born)

    def _age_unmatched(self, unmatched: np.ndarray) -> None:
        """bool (T,): the tracks no detection matched this frame."""
        self.tracks.hits[unmatched] = 0
        self.tracks.missed[unmatched] += 1

    def _start_tracks(self, detections: Detections, track_of: np.ndarray) -> np.ndarray:
        """Start tentative tracks for the unmatched detections scoring >= new_track_score -> their indices."""
        config = self.config
        start = np.flatnonzero((track_of < 0) & (detections.scores >= config.new_track_score))
        if not len(start):
            return start
        mean, cov = kalman_initiate(xyxy_to_cxcywh(detections.xyxy[start].astype(np.float64)), config)
        k = len(start)
        new = TrackSet(mean, cov, np.zeros(k, np.int64), np.zeros(k, bool), np.ones(k, np.int64),
                       np.zeros(k, np.int64), detections.class_ids[start].copy())
        first = len(self.tracks)
        self.tracks = self.tracks.extend(new)
        if config.min_hits <= 1 or (config.confirm_first_frame and self.frames == 1):
            self._confirm(first + np.arange(k))
        return start

    def _confirm(self, track_index: np.ndarray) -> None:
        self.tracks.confirmed[track_index] = True
        self.tracks.ids[track_index] = self._next_id + np.arange(len(track_index))
        self._next_id += len(track_index)

    def _remove_dead(self) -> None:
        """Drop tentative tracks that missed a frame and confirmed ones unmatched for more than max_missed."""
        tracks = self.tracks
        dead = (~tracks.confirmed & (tracks.missed > 0)) | (tracks.missed > self.config.max_missed)
        if dead.any():
            self.tracks = tracks.select(~dead)


def _still_size(tracks: TrackSet) -> np.ndarray:
    """Track means with the size velocity of unmatched tracks zeroed (ByteTrack: a lost box keeps its size)."""
    mean = tracks.mean.copy()
    mean[tracks.missed > 0, 6:8] = 0.0
    return mean
