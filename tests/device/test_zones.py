"""device.zones: --zone / --line specs (pixels, fractions, every malformed form), geometry (inside, sides,
crossings between the end points), and the counter on scripted paths: enter / leave with dwell times, in / out
once per track even when it jitters on the line, tracks that vanish; events as JSON; drawing; the docstring."""
import numpy as np
import pytest

import edgedet.device.zones
from edgedet.device.detections import Detections
from edgedet.device.draw import draw_zones, line_label, zone_label
from edgedet.device.errors import EdgedetError
from edgedet.device.zones import Event, Line, Zone, ZoneCounter, check_names, reference_points
from tests.device.test_api_examples import run_examples

NAMES = ["person", "car"]
HALL = "hall:100,100,300,100,300,300,100,300"  # a square, 100..300 in x and y
DOOR = "door:0,200,400,200"  # left to right across y = 200: moving down is "in"


def objects(track_points, classes=None, scores=None):
    """Tracked detections whose reference points (box bottom centres) are the given (track id, x, y)."""
    ids = [t for t, _, _ in track_points]
    xyxy = [[x - 10, y - 30, x + 10, y] for _, x, y in track_points]
    n = len(ids)
    return Detections(np.array(xyxy, np.float32).reshape(-1, 4), [0.8] * n if scores is None else scores,
                      [0] * n if classes is None else classes, names=NAMES, tracker_ids=ids)


def walk(counter, paths, start_frame=0):
    """Feed `paths` ({track id: [(x, y), ...]}, one point per frame; None = not detected) -> every event."""
    events = []
    frames = max(len(p) for p in paths.values())
    for f in range(frames):
        points = [(t, *p[f]) for t, p in paths.items() if f < len(p) and p[f] is not None]
        events += counter.update(objects(points), start_frame + f, 1000.0 + f * 0.5).events
    return events


def kinds(events):
    return [(e.kind, e.zone, e.track_id) for e in events]


# ------------------------------------------------------------------------------ specs


def test_specs_in_pixels_and_fractions():
    zone = Zone.parse(HALL)
    assert zone.name == "hall" and zone.points[2] == (300.0, 300.0) and not zone.fractional
    assert zone.resolved((640, 480)) is zone
    fractional = Zone.parse("left:0,0,0.5,0,0.5,1,0,1")
    assert fractional.fractional and fractional.resolved((640, 480)).points == ((0, 0), (320, 0), (320, 480), (0, 480))
    line = Line.parse("gate:0,0.5,1,0.5").resolved((640, 480))
    assert (line.name, line.start, line.end, line.fractional) == ("gate", (0.0, 240.0), (640.0, 240.0), False)
    assert Line.parse(" gate-2.b :10,20,30,40").name == "gate-2.b"


@pytest.mark.parametrize("parse, spec, message", [
    (Zone.parse, "hall", "expected NAME:x1,y1,x2,y2,..."),
    (Zone.parse, ":1,2,3,4,5,6", "the name before ':' must be letters, digits, '_', '-' or '.' (it is empty)"),
    (Zone.parse, "my hall:1,2,3,4,5,6", "the name before ':' must be"),
    (Zone.parse, "a/b:1,2,3,4,5,6", "the name before ':' must be"),
    (Zone.parse, "hall:1,2,x,4,5,6", "'x' is not a number"),
    (Zone.parse, "hall:1,2,,4,5,6", "'' is not a number"),
    (Zone.parse, "hall:", "'' is not a number"),
    (Zone.parse, "hall:1,2,3,4", "needs x,y pairs of at least 3 points, got 4 numbers"),
    (Zone.parse, "hall:1,2,3,4,5,6,7", "got 7 numbers"),
    (Zone.parse, "hall:0,0,10,10,20,20", "the polygon has no area"),
    (Zone.parse, "bow:0,0,1,1,0,1,1,0", "the polygon crosses itself"),  # a bowtie: no area, yet not on one line
    (Zone.parse, "bow:0,0,100,100,0,100,60,0", "the polygon crosses itself"),  # lobes of unequal area
    (Zone.parse, "hall:1,-2,3,4,5,6", "coordinates must be finite and >= 0, got -2"),
    (Zone.parse, "hall:1,nan,3,4,5,6", "coordinates must be finite and >= 0, got nan"),
    (Zone.parse, "hall:1,2,3,inf,5,6", "got inf"),
    (Line.parse, "door", "expected NAME:x1,y1,x2,y2"),
    (Line.parse, "door:1,2,3", "needs exactly 2 points x1,y1,x2,y2, got 3 numbers"),
    (Line.parse, "door:1,2,3,4,5,6", "got 6 numbers"),
    (Line.parse, "door:5,5,5,5", "its two points are the same"),
    (Line.parse, "door:a,1,2,3", "'a' is not a number"),
    (Line.parse, "do or:1,2,3,4", "the name before ':' must be"),
])
def test_malformed_specs_name_the_flag_and_the_spec_in_one_line(parse, spec, message):
    with pytest.raises(EdgedetError) as error:
        parse(spec)
    text = str(error.value)
    flag = "--zone" if parse == Zone.parse else "--line"
    assert text.startswith(f"{flag} {spec!r}: ") and message in text and "\n" not in text


def test_a_name_used_twice_is_refused():
    with pytest.raises(EdgedetError, match="the name 'door' is used twice"):
        check_names([Zone.parse("door:1,1,5,1,5,5")], [Line.parse(DOOR)])
    with pytest.raises(EdgedetError, match="used twice"):
        ZoneCounter([], [Line.parse(DOOR), Line.parse(DOOR)])


def test_fractional_zones_need_the_frame_size():
    with pytest.raises(ValueError, match="need size_wh"):
        ZoneCounter([Zone.parse("left:0,0,0.5,0,0.5,1")])
    counter = ZoneCounter([Zone.parse("left:0,0,0.5,0,0.5,1,0,1")], size_wh=(200, 100))
    assert counter.zones[0].points[1] == (100.0, 0.0)


# ------------------------------------------------------------------------------ geometry


def test_signed_distances_of_a_concave_zone_and_a_line():
    # an L shape: the notch (200..300, 100..200) is outside
    zone = Zone.parse("l:100,100,200,100,200,200,300,200,300,300,100,300")
    d = zone.signed_distance(np.array([[150, 150], [250, 150], [250, 250], [100, 250], [50, 250]]))
    assert d[0] == pytest.approx(50) and d[1] == pytest.approx(-50) and d[2] == pytest.approx(50)
    assert d[3] == pytest.approx(0) and d[4] == pytest.approx(-50)
    line = Line.parse(DOOR)
    assert line.signed_distance(np.array([[10, 250], [10, 150]])).tolist() == [50.0, -50.0]  # below = right = in
    reverse = Line.parse("back:400,200,0,200")
    assert reverse.signed_distance(np.array([[10, 250]])).tolist() == [-50.0]
    assert line.passes_between(np.array([200.0, 150]), np.array([220.0, 250]))
    assert not Line.parse("short:0,200,100,200").passes_between(np.array([200.0, 150]), np.array([220.0, 250]))


def test_reference_point_is_the_bottom_centre():
    assert reference_points(np.array([[10, 20, 30, 60]])).tolist() == [[20.0, 60.0]]


# ------------------------------------------------------------------------------ counting scripted paths


def test_enter_and_leave_a_zone_with_dwell_time_and_counts_per_class():
    counter = ZoneCounter([Zone.parse(HALL)])
    path = [(200, y) for y in range(40, 400, 40)]  # through the hall, top to bottom, 0.5 s a frame
    events = walk(counter, {5: path, 6: [(50, 50)] * len(path)})
    assert kinds(events) == [("enter", "hall", 5), ("leave", "hall", 5)]
    enter, leave = events
    assert enter.frame == 2 and leave.frame == 7 and leave.dwell_s == pytest.approx(2.5)
    assert enter.class_name == "person" and enter.xyxy == (190.0, 90.0, 210.0, 120.0)
    counts = counter.counts(2000.0)["zones"]["hall"]
    assert counts == {"inside": {}, "entered": {"person": 1}, "dwell_s": {}}


def test_counts_inside_per_class_and_dwell_while_there():
    counter = ZoneCounter([Zone.parse(HALL)])
    counter.update(objects([(1, 150, 150), (2, 250, 250), (3, 20, 20)], classes=[0, 1, 1]), 0, 10.0)
    update = counter.update(objects([(1, 150, 160), (2, 250, 250), (3, 20, 20)], classes=[0, 1, 1]), 1, 12.5)
    assert update.counts["zones"]["hall"] == {"inside": {"person": 1, "car": 1}, "entered": {"person": 1, "car": 1},
                                              "dwell_s": {"1": 2.5, "2": 2.5}}
    assert update.events == []


def test_crossings_count_once_per_track_and_direction_even_when_jittering():
    counter = ZoneCounter(lines=[Line.parse(DOOR)], margin=3.0)
    jitter_on_line = [(200, 150), (200, 199), (200, 201), (200, 198), (200, 202), (200, 199)]  # within the margin
    back_and_forth = [(200, 210), (200, 190), (200, 210), (200, 190), (200, 210), (200, 260)]  # beyond it
    events = walk(counter, {1: jitter_on_line + back_and_forth})
    assert kinds(events) == [("cross_in", "door", 1), ("cross_out", "door", 1)]
    assert counter.counts(0)["lines"]["door"] == {"in": {"person": 1}, "out": {"person": 1}}


def test_two_objects_crossing_opposite_ways_and_one_passing_beside_the_line():
    counter = ZoneCounter(lines=[Line.parse("door:100,200,300,200")])
    down = [(150, y) for y in range(150, 260, 20)]
    up = [(250, y) for y in range(260, 150, -20)]
    beside = [(350, y) for y in range(150, 260, 20)]  # x = 350: past the end of the segment
    events = walk(counter, {1: down, 2: up, 3: beside})
    assert sorted(kinds(events)) == [("cross_in", "door", 1), ("cross_out", "door", 2)]


def test_a_track_seen_first_on_the_line_is_counted_once_it_settles():
    counter = ZoneCounter(lines=[Line.parse(DOOR)])
    assert kinds(walk(counter, {4: [(200, 200), (200, 195), (200, 150), (200, 260)]})) == [("cross_in", "door", 4)]


def test_a_track_that_vanishes_leaves_its_zone_after_forget_after_updates_and_is_forgotten():
    counter = ZoneCounter([Zone.parse(HALL)], [Line.parse(DOOR)], forget_after=3)
    walk(counter, {9: [(200, 150), (200, 250)]})  # enters, crosses in
    events = []
    for f in range(2, 7):  # nothing detected any more
        events += counter.update(objects([]), f, 1000.0 + f).events
    assert kinds(events) == [("leave", "hall", 9)]
    leave = events[0]  # noticed at frame 5, but dated to the last sighting: frame 1, 0.5 s after entering
    assert leave.frame == 1 and leave.timestamp == pytest.approx(1000.5) and leave.dwell_s == pytest.approx(0.5)
    assert counter.counts(0)["zones"]["hall"]["inside"] == {}
    assert counter.counts(0)["lines"]["door"]["in"] == {"person": 1}  # totals stay
    assert len(counter._tracks) == 0  # memory stays bounded on a long run


def test_counter_needs_tracked_detections():
    with pytest.raises(ValueError, match="needs tracked detections"):
        ZoneCounter([Zone.parse(HALL)]).update(Detections.empty(), 0, 0.0)


def test_event_to_dict_is_json_ready():
    event = Event("leave", "hall", 3, 1, "car", 0.87654, (1.234, 2.0, 3.0, 4.0), 12, 1700000000.5, 2.25)
    assert event.to_dict() == {"kind": "leave", "zone": "hall", "track_id": 3, "class_id": 1, "class_name": "car",
                               "score": 0.8765, "xyxy": [1.23, 2.0, 3.0, 4.0], "frame": 12,
                               "timestamp": 1700000000.5, "dwell_s": 2.25}
    assert "dwell_s" not in Event("enter", "hall", 3, 1, "car", 0.5, (0, 0, 1, 1), 1, 1.0).to_dict()


# ------------------------------------------------------------------------------ drawing, docstring


def test_draw_zones_outlines_zones_and_lines_with_their_counts():
    image = np.zeros((400, 400, 3), np.uint8)
    counts = {"zones": {"hall": {"inside": {"person": 2, "car": 1}}}, "lines": {"door": {"in": {"person": 3},
                                                                                          "out": {"car": 1}}}}
    draw_zones(image, [Zone.parse(HALL)], [Line.parse(DOOR)], counts)
    assert image[300, 200].any() and image[200, 20].any()  # the zone's bottom edge, the line
    assert not image[250, 150].any()  # inside the zone, away from outlines and labels: untouched
    assert zone_label("hall", counts["zones"]["hall"]) == "hall: 2 person, 1 car"
    assert zone_label("hall", {"inside": {}}) == "hall: 0" and zone_label("hall", None) == "hall"
    assert line_label("door", counts["lines"]["door"]) == "door: in 3 / out 1"


def test_docstring_example_runs():
    results = run_examples(edgedet.device.zones)
    assert results.attempted > 0 and results.failed == 0
