"""Zones (polygons) and lines (directed segments) over tracked objects: who is inside, who crossed, for how long.

    --zone NAME:x1,y1,x2,y2,x3,y3[,...]   a polygon of 3 or more points
    --line NAME:x1,y1,x2,y2               a segment directed from (x1, y1) to (x2, y2)

Coordinates are frame pixels, or fractions of the frame's width and height when every value is in 0..1
(`Zone.resolved` turns them into pixels once the frame size is known).

    >>> import numpy as np
    >>> from edgedet.device.detections import Detections
    >>> door = Line.parse("door:0,100,200,100")      # left to right: walking down the picture crosses it "in"
    >>> counter = ZoneCounter([Zone.parse("hall:0,100,200,100,200,200,0,200")], [door])
    >>> for frame, y in enumerate((40, 70, 100, 130)):   # a person walking down: box bottom at y + 40
    ...     person = Detections([[80, y, 120, y + 40]], [0.9], [0], names=["person"], tracker_ids=[7])
    ...     update = counter.update(person, frame, timestamp=100.0 + frame)
    ...     print(frame, [(e.kind, e.zone, e.track_id) for e in update.events])
    0 []
    1 [('enter', 'hall', 7), ('cross_in', 'door', 7)]
    2 []
    3 []
    >>> update.counts["lines"]["door"], update.counts["zones"]["hall"]["dwell_s"]
    ({'in': {'person': 1}, 'out': {}}, {'7': 2.0})

Each object is placed by its reference point, the bottom centre of its box (where it stands on the ground).
Direction: "in" is crossing from the left of the directed segment to its right, as seen on screen walking from
(x1, y1) to (x2, y2); with image y pointing down, a line drawn left to right counts objects moving down the
picture as "in" and up as "out". A crossing counts only where the point passes between the two end points.
Hysteresis: a point is on one side of a line, or inside / outside a zone, only when farther than `margin`
pixels from it; nearer, it keeps the side it had, so an object jittering on a line or an edge is not counted
again. Each track crosses each line at most once per direction. A track unseen for more than `forget_after`
updates is gone: it leaves the zones it was in, and its state is dropped (memory stays bounded on long runs).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .detections import Detections
from .errors import EdgedetError

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]+")  # names go into MQTT topics and JSON keys: no spaces or slashes
EVENT_KINDS = ("enter", "leave", "cross_in", "cross_out")


# ---- zones and lines, parsed from their flags


def _parse_spec(spec: str, flag: str, example: str) -> Tuple[str, List[float]]:
    """"NAME:v1,v2,..." -> (name, values); an EdgedetError naming the flag and the spec otherwise."""
    name, colon, values = str(spec).partition(":")
    prefix = f"{flag} {spec!r}"
    if not colon:
        raise EdgedetError(f"{prefix}: expected NAME:x1,y1,x2,y2,... (e.g. {flag} {example})")
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise EdgedetError(f"{prefix}: the name before ':' must be letters, digits, '_', '-' or '.'"
                           f"{'' if name else ' (it is empty)'}")
    numbers = []
    for text in values.split(","):
        try:
            value = float(text)
        except ValueError:
            raise EdgedetError(f"{prefix}: {text.strip()!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise EdgedetError(f"{prefix}: coordinates must be finite and >= 0, got {text.strip()}")
        numbers.append(value)
    return name, numbers


def _is_fractional(values: Sequence[float]) -> bool:
    return all(v <= 1.0 for v in values)


@dataclass(frozen=True)
class Zone:
    """A named polygon, in frame pixels or (fractional) in fractions of the frame's width and height."""

    name: str  # names the zone in events and counts
    points: Tuple[Tuple[float, float], ...]  # corners (x, y) in order, 3 or more
    fractional: bool = False  # points are fractions (0..1) of the frame's width and height

    @classmethod
    def parse(cls, spec: str) -> "Zone":
        """`NAME:x1,y1,x2,y2,x3,y3[,...]` -> Zone; an EdgedetError naming the spec when malformed."""
        name, values = _parse_spec(spec, "--zone", "door:100,200,300,200,300,400")
        if len(values) < 6 or len(values) % 2:
            raise EdgedetError(f"--zone {spec!r}: needs x,y pairs of at least 3 points, got {len(values)} numbers")
        points = tuple(zip(values[0::2], values[1::2]))
        if crosses_itself(points):
            raise EdgedetError(f"--zone {spec!r}: the polygon crosses itself (give its corners in order around it)")
        if polygon_area(np.array(points)) <= 0:
            raise EdgedetError(f"--zone {spec!r}: the polygon has no area (its points are on one line)")
        return cls(name, points, _is_fractional(values))

    def resolved(self, size_wh: Tuple[int, int]) -> "Zone":
        """This zone in pixels of a frame of `size_wh` = (W, H) (itself when already in pixels)."""
        if not self.fractional:
            return self
        w, h = size_wh
        return Zone(self.name, tuple((x * w, y * h) for x, y in self.points))

    def signed_distance(self, points_xy: np.ndarray) -> np.ndarray:
        """(N, 2) points -> float64 (N,): distance to the polygon's outline, positive inside, negative outside."""
        polygon = np.asarray(self.points, dtype=np.float64)
        points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        starts, ends = polygon, np.roll(polygon, -1, axis=0)
        distance = _distance_to_segments(points, starts, ends).min(axis=1)
        return np.where(_inside_polygon(points, starts, ends), distance, -distance)


@dataclass(frozen=True)
class Line:
    """A named segment directed from `start` to `end`, in frame pixels or (fractional) fractions of the frame."""

    name: str  # names the line in events and counts
    start: Tuple[float, float]  # (x1, y1)
    end: Tuple[float, float]  # (x2, y2); crossing from the left of start -> end to its right is "in"
    fractional: bool = False  # start and end are fractions (0..1) of the frame's width and height

    @classmethod
    def parse(cls, spec: str) -> "Line":
        """`NAME:x1,y1,x2,y2` -> Line; an EdgedetError naming the spec when malformed."""
        name, values = _parse_spec(spec, "--line", "gate:0,240,640,240")
        if len(values) != 4:
            raise EdgedetError(f"--line {spec!r}: needs exactly 2 points x1,y1,x2,y2, got {len(values)} numbers")
        if values[:2] == values[2:]:
            raise EdgedetError(f"--line {spec!r}: its two points are the same")
        return cls(name, (values[0], values[1]), (values[2], values[3]), _is_fractional(values))

    def resolved(self, size_wh: Tuple[int, int]) -> "Line":
        """This line in pixels of a frame of `size_wh` = (W, H) (itself when already in pixels)."""
        if not self.fractional:
            return self
        w, h = size_wh
        return Line(self.name, (self.start[0] * w, self.start[1] * h), (self.end[0] * w, self.end[1] * h))

    def signed_distance(self, points_xy: np.ndarray) -> np.ndarray:
        """(N, 2) points -> float64 (N,): distance to the line through the segment, positive on its right ("in"
        side: y points down, so right of a left-to-right line is below it), negative on its left."""
        start, direction = np.asarray(self.start, np.float64), np.subtract(self.end, self.start)
        offset = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2) - start
        return (direction[0] * offset[:, 1] - direction[1] * offset[:, 0]) / np.hypot(*direction)

    def passes_between(self, a_xy: np.ndarray, b_xy: np.ndarray) -> bool:
        """True when the path from point a to point b (on opposite sides) meets the segment between its ends."""
        start, direction = np.asarray(self.start, np.float64), np.subtract(self.end, self.start)
        da, db = self.signed_distance(np.stack([a_xy, b_xy]))
        meet = a_xy + (b_xy - a_xy) * (da / (da - db))  # where the path meets the line through the segment
        along = float(np.dot(meet - start, direction) / np.dot(direction, direction))
        return 0.0 <= along <= 1.0


def check_names(zones: Sequence[Zone], lines: Sequence[Line]) -> None:
    """An EdgedetError when two zones or lines share a name (events and counts are keyed by name)."""
    seen = set()
    for item in (*zones, *lines):
        if item.name in seen:
            raise EdgedetError(f"--zone/--line: the name {item.name!r} is used twice; give each its own")
        seen.add(item.name)


def crosses_itself(points: Sequence[Tuple[float, float]]) -> bool:
    """Whether two edges of the closed polygon that share no corner cross (a bowtie): properly, at a point
    inside both."""
    n = len(points)
    edges = [(points[k], points[(k + 1) % n]) for k in range(n)]
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # the first and last edges share corner 0
            if _cross_properly(*edges[i], *edges[j]):
                return True
    return False


def _cross_properly(a, b, c, d) -> bool:
    """Segments ab and cd cross at a point strictly inside both."""
    def side(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    return side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0


def polygon_area(points: np.ndarray) -> float:
    """(K, 2) polygon corners -> its area (shoelace formula, either orientation)."""
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def _distance_to_segments(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(N, 2) points, (K, 2) segment starts and ends -> float64 (N, K) Euclidean distances."""
    direction = ends - starts  # (K, 2)
    offset = points[:, None, :] - starts[None, :, :]  # (N, K, 2)
    length2 = np.maximum((direction ** 2).sum(1), 1e-12)
    t = np.clip((offset * direction[None]).sum(2) / length2, 0.0, 1.0)
    return np.hypot(*np.moveaxis(offset - t[..., None] * direction[None], 2, 0))


def _inside_polygon(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(N, 2) points -> bool (N,): inside the polygon of edges starts -> ends (even-odd ray casting)."""
    px, py = points[:, 0:1], points[:, 1:2]
    x1, y1, x2, y2 = starts[:, 0], starts[:, 1], ends[:, 0], ends[:, 1]
    straddles = (y1 > py) != (y2 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
    return (straddles & (px < x_cross)).sum(1) % 2 == 1


def reference_points(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) boxes -> float64 (N, 2): each box's bottom centre (x, y), the point zones and lines test."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1)


# ---- events and counts


@dataclass(frozen=True)
class Event:
    """One thing that happened to a tracked object: it entered or left a zone, or crossed a line."""

    kind: str  # "enter", "leave" (zones), "cross_in", "cross_out" (lines)
    zone: str  # name of the zone or line
    track_id: int  # the object's track id
    class_id: int  # its class id (of its latest detection)
    class_name: str  # its class name
    score: float  # score of its latest detection
    xyxy: Tuple[float, float, float, float]  # its latest box, frame pixels
    frame: int  # index of the frame the event happened in
    timestamp: float  # capture time of that frame, seconds since the epoch
    dwell_s: Optional[float] = None  # "leave" only: seconds it spent inside

    def to_dict(self) -> dict:
        """JSON-ready: every field (box to 2 decimals, score to 4); dwell_s only on "leave"."""
        item = {"kind": self.kind, "zone": self.zone, "track_id": int(self.track_id), "class_id": int(self.class_id),
                "class_name": self.class_name, "score": round(float(self.score), 4),
                "xyxy": [round(float(v), 2) for v in self.xyxy], "frame": int(self.frame),
                "timestamp": round(float(self.timestamp), 6)}
        if self.dwell_s is not None:
            item["dwell_s"] = round(float(self.dwell_s), 3)
        return item


@dataclass(frozen=True)
class ZoneUpdate:
    """What one frame changed: its events, and every zone's and line's counts after it."""

    events: List[Event]  # in order: zones, then lines, then tracks gone
    counts: dict  # {"zones": {name: {"inside": {class: n}, "entered": {class: n}, "dwell_s": {track id: s}}},
    #               "lines": {name: {"in": {class: n}, "out": {class: n}}}}


@dataclass
class TrackSeen:
    """What a `ZoneCounter` remembers of one track between frames."""

    class_id: int  # class of its latest detection
    class_name: str  # that class's name
    score: float  # score of its latest detection
    xyxy: Tuple[float, float, float, float]  # its latest box
    last_update: int  # the counter's update number when it was last seen
    last_frame: int  # the frame index it was last seen in
    last_timestamp: float  # that frame's timestamp (a vanished track's "leave" happened then, not when noticed)


@dataclass
class LineState:
    """One line's memory: the side each track last settled on, and what it has been counted for."""

    sides: Dict[int, Tuple[int, np.ndarray]] = field(default_factory=dict)  # track -> (+1 right / -1 left, point)
    counted: Dict[int, set] = field(default_factory=dict)  # track -> the directions it was counted ("in", "out")
    totals: Dict[str, Counter] = field(default_factory=lambda: {"in": Counter(), "out": Counter()})  # per class


@dataclass
class ZoneState:
    """One zone's memory: the tracks inside (with the time they entered) and the entries per class."""

    inside: Dict[int, float] = field(default_factory=dict)  # track -> timestamp of its entry
    entered: Counter = field(default_factory=Counter)  # entries per class name


class ZoneCounter:
    """Counts tracked objects in zones and across lines; `update` once per frame, in order.

    zones, lines: in pixels, or fractional with `size_wh` = (W, H) of the frames to resolve them against.
    margin: hysteresis in pixels (module docstring). forget_after: updates a track may go unseen before it is
    gone (use the tracker's max_missed + 1: its ids are never reused, so a longer wait only delays "leave").
    """

    def __init__(self, zones: Sequence[Zone] = (), lines: Sequence[Line] = (), size_wh: Optional[Tuple[int, int]] = None,
                 margin: float = 2.0, forget_after: int = 31):
        check_names(zones, lines)
        if size_wh is None and any(item.fractional for item in (*zones, *lines)):
            raise ValueError("ZoneCounter: fractional zones or lines need size_wh, the frame size to resolve them")
        self.zones = [zone.resolved(size_wh) for zone in zones]  # in pixels
        self.lines = [line.resolved(size_wh) for line in lines]  # in pixels
        self.margin = float(margin)
        self.forget_after = int(forget_after)
        self.updates = 0  # frames seen
        self._tracks: Dict[int, TrackSeen] = {}
        self._zone_states = {zone.name: ZoneState() for zone in self.zones}
        self._line_states = {line.name: LineState() for line in self.lines}

    def update(self, detections: Detections, frame_index: int, timestamp: float) -> ZoneUpdate:
        """One frame's tracked detections (`Tracker.update`'s output) -> its events and the counts after it."""
        if detections.tracker_ids is None:
            raise ValueError("ZoneCounter.update needs tracked detections (device.tracking.Tracker.update's output)")
        self.updates += 1
        ids = detections.tracker_ids.tolist()
        for k, item in enumerate(detections):
            self._tracks[ids[k]] = TrackSeen(item.class_id, item.name, item.score, item.xyxy, self.updates,
                                             int(frame_index), float(timestamp))
        points = reference_points(detections.xyxy)
        events: List[Event] = []
        for zone in self.zones:
            events += self._update_zone(zone, ids, points, frame_index, timestamp)
        for line in self.lines:
            events += self._update_line(line, ids, points, frame_index, timestamp)
        events += self._forget_gone()
        return ZoneUpdate(events, self.counts(timestamp))

    def counts(self, timestamp: float) -> dict:
        """Per zone: tracks inside per class, entries per class, seconds inside per track (at `timestamp`);
        per line: "in" and "out" crossings per class."""
        zones = {}
        for name, state in self._zone_states.items():
            inside = Counter(self._tracks[track].class_name for track in state.inside)
            zones[name] = {"inside": dict(inside), "entered": dict(state.entered),
                           "dwell_s": {str(track): round(timestamp - since, 3) for track, since in state.inside.items()}}
        lines = {name: {direction: dict(totals) for direction, totals in state.totals.items()}
                 for name, state in self._line_states.items()}
        return {"zones": zones, "lines": lines}

    # ---- per frame

    def _update_zone(self, zone: Zone, ids: List[int], points: np.ndarray, frame: int, timestamp: float) -> List[Event]:
        state, events = self._zone_states[zone.name], []
        distance = zone.signed_distance(points).tolist()
        for track, d in zip(ids, distance):
            if track not in state.inside and d > self.margin:
                state.inside[track] = timestamp
                state.entered[self._tracks[track].class_name] += 1
                events.append(self._event("enter", zone.name, track, frame, timestamp))
            elif track in state.inside and d < -self.margin:
                since = state.inside.pop(track)
                events.append(self._event("leave", zone.name, track, frame, timestamp, timestamp - since))
        return events

    def _update_line(self, line: Line, ids: List[int], points: np.ndarray, frame: int, timestamp: float) -> List[Event]:
        state, events = self._line_states[line.name], []
        distance = line.signed_distance(points)
        for k in np.flatnonzero(np.abs(distance) > self.margin).tolist():
            track, side, point = ids[k], 1 if distance[k] > 0 else -1, points[k]
            previous = state.sides.get(track)
            state.sides[track] = (side, point)
            if previous is None or previous[0] == side or not line.passes_between(previous[1], point):
                continue
            direction = "in" if side > 0 else "out"
            done = state.counted.setdefault(track, set())
            if direction not in done:
                done.add(direction)
                state.totals[direction][self._tracks[track].class_name] += 1
                events.append(self._event(f"cross_{direction}", line.name, track, frame, timestamp))
        return events

    def _forget_gone(self) -> List[Event]:
        """Tracks unseen for more than forget_after updates leave their zones (at the frame they were last seen
        in: dwell ends there) and are forgotten."""
        gone = [track for track, seen in self._tracks.items() if self.updates - seen.last_update > self.forget_after]
        events = []
        for track in gone:
            frame, timestamp = self._tracks[track].last_frame, self._tracks[track].last_timestamp
            for name, state in self._zone_states.items():
                if track in state.inside:
                    since = state.inside.pop(track)
                    events.append(self._event("leave", name, track, frame, timestamp, timestamp - since))
            for state in self._line_states.values():
                state.sides.pop(track, None)
                state.counted.pop(track, None)
            del self._tracks[track]
        return events

    def _event(self, kind: str, name: str, track: int, frame: int, timestamp: float,
               dwell_s: Optional[float] = None) -> Event:
        seen = self._tracks[track]
        return Event(kind, name, int(track), seen.class_id, seen.class_name, seen.score, seen.xyxy, int(frame),
                     float(timestamp), dwell_s)
