"""scripts/pi_compare.py: the x86-vs-emulated-Pi detection comparison used by `make pi-check`."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pi_compare.py"


def load_compare():
    """Import scripts/pi_compare.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("pi_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


pc = load_compare()


def write_run(path, frames):
    """Write frames {source: [(xyxy, score, class_id), ...]} in the `edgedet run --json` shape."""
    with open(path, "w") as handle:
        for index, (source, dets) in enumerate(frames.items()):
            record = {
                "frame": index,
                "source": f"/some/dir/{source}",
                "width": 320,
                "height": 240,
                "detections": [
                    {"xyxy": list(xyxy), "score": score, "class_id": cls, "class_name": f"c{cls}"}
                    for xyxy, score, cls in dets
                ],
                "latency_ms": {"inference": 3.0},
            }
            handle.write(json.dumps(record) + "\n")
        handle.write(json.dumps({"summary": {"frames": len(frames)}}) + "\n")


def test_box_iou_known_values():
    assert pc.box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert pc.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert pc.box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert pc.box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_identical_runs_agree_and_order_does_not_matter(tmp_path):
    dets = [((10, 10, 50, 60), 0.9, 1), ((100, 20, 140, 90), 0.6, 0), ((102, 22, 141, 91), 0.55, 2)]
    write_run(tmp_path / "a.jsonl", {"a.jpg": dets, "b.jpg": [], "c.jpg": dets[:1]})
    write_run(tmp_path / "b.jsonl", {"c.jpg": dets[:1], "b.jpg": [], "a.jpg": list(reversed(dets))})
    assert pc.main([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--min-images", "3"]) == 0
    result = pc.compare_runs(pc.read_run(tmp_path / "a.jsonl"), pc.read_run(tmp_path / "b.jsonl"))
    assert (result.images, result.matched, result.ok) == (3, 4, True)


def test_small_differences_within_tolerance_match():
    ref = {"a.jpg": [pc.Det((10, 10, 50, 60), 0.90, 1)]}
    cand = {"a.jpg": [pc.Det((10.5, 10.2, 50.3, 60.4), 0.86, 1)]}
    assert pc.compare_runs(ref, cand).ok


@pytest.mark.parametrize(
    "cand_det, reason",
    [
        (pc.Det((10, 10, 50, 60), 0.90, 2), "class differs"),
        (pc.Det((14, 10, 54, 60), 0.90, 1), "IoU 0.82 < 0.9"),
        (pc.Det((10, 10, 50, 60), 0.80, 1), "score differs by 0.10"),
    ],
)
def test_each_tolerance_is_enforced(cand_det, reason):
    ref = {"a.jpg": [pc.Det((10, 10, 50, 60), 0.90, 1)]}
    result = pc.compare_runs(ref, {"a.jpg": [cand_det]})
    assert not result.ok, reason
    assert len(result.problems) == 2  # one unmatched on each side
    assert result.matched == 0


def test_extra_or_missing_detection_fails(tmp_path):
    write_run(tmp_path / "a.jsonl", {"a.jpg": [((10, 10, 50, 60), 0.9, 1)]})
    write_run(tmp_path / "b.jsonl", {"a.jpg": [((10, 10, 50, 60), 0.9, 1), ((70, 70, 90, 90), 0.3, 0)]})
    assert pc.main([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]) == 1
    assert pc.main([str(tmp_path / "b.jsonl"), str(tmp_path / "a.jsonl")]) == 1


def test_matching_is_one_to_one():
    # Two reference boxes, one candidate box that fits both: only one pair may form.
    ref = {"a.jpg": [pc.Det((10, 10, 50, 60), 0.9, 1), pc.Det((10, 10, 50, 61), 0.9, 1)]}
    cand = {"a.jpg": [pc.Det((10, 10, 50, 60), 0.9, 1)]}
    result = pc.compare_runs(ref, cand)
    assert result.matched == 1 and not result.ok


def test_missing_image_and_too_few_images_fail(tmp_path, capsys):
    write_run(tmp_path / "a.jsonl", {"a.jpg": [], "b.jpg": []})
    write_run(tmp_path / "b.jsonl", {"a.jpg": []})
    assert pc.main([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]) == 1
    assert "b.jpg: only in the reference run" in capsys.readouterr().out
    write_run(tmp_path / "c.jsonl", {})
    assert pc.main([str(tmp_path / "c.jsonl"), str(tmp_path / "c.jsonl")]) == 1


def test_bad_input_exits_2(tmp_path):
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    write_run(tmp_path / "a.jsonl", {"a.jpg": []})
    assert pc.main([str(tmp_path / "bad.jsonl"), str(tmp_path / "a.jsonl")]) == 2
    assert pc.main([str(tmp_path / "missing.jsonl"), str(tmp_path / "a.jsonl")]) == 2
    write_run(tmp_path / "dup.jsonl", {"a.jpg": []})
    with open(tmp_path / "dup.jsonl", "a") as handle:
        handle.write(json.dumps({"source": "x/a.jpg", "detections": []}) + "\n")
    assert pc.main([str(tmp_path / "dup.jsonl"), str(tmp_path / "a.jsonl")]) == 2


def write_eval(path, bbox_ap, segm_ap=None, miou=None, images=8, errors=()):
    """An `edgedet eval --json` shaped file with the given APs."""
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    record = {"bbox": {k: bbox_ap for k in keys}, "latency_ms": {}, "images": images, "errors": list(errors)}
    if segm_ap is not None:
        record["segm"] = {k: segm_ap for k in keys}
    if miou is not None:
        record["semantic"] = {"mIoU": miou, "pixel_accuracy": 0.5, "per_class_iou": {}}
    path.write_text(json.dumps(record))
    return str(path)


def test_eval_mode_compares_map_within_tolerance(tmp_path):
    ref = write_eval(tmp_path / "ref.json", 0.412, 0.300)
    assert pc.main(["--eval", ref, write_eval(tmp_path / "ok.json", 0.405, 0.309)]) == 0
    assert pc.main(["--eval", ref, write_eval(tmp_path / "box.json", 0.380, 0.300)]) == 1
    assert pc.main(["--eval", ref, write_eval(tmp_path / "mask.json", 0.412, 0.250)]) == 1
    # segm is compared only when both sides have it; bbox is required.
    assert pc.main(["--eval", ref, write_eval(tmp_path / "nosegm.json", 0.412)]) == 0
    (tmp_path / "empty.json").write_text("{}")
    assert pc.main(["--eval", ref, str(tmp_path / "empty.json")]) == 1
    assert pc.main(["--eval", ref, str(tmp_path / "absent.json")]) == 2


def test_eval_mode_checks_miou_image_count_and_errors(tmp_path):
    ref = write_eval(tmp_path / "ref.json", 0.4, miou=0.50)
    assert pc.main(["--eval", ref, write_eval(tmp_path / "ok.json", 0.4, miou=0.505)]) == 0
    assert pc.main(["--eval", ref, write_eval(tmp_path / "miou.json", 0.4, miou=0.47)]) == 1
    assert pc.main(["--eval", ref, write_eval(tmp_path / "fewer.json", 0.4, miou=0.5, images=7)]) == 1
    assert pc.main(["--eval", ref, write_eval(tmp_path / "err.json", 0.4, miou=0.5, errors=["x.jpg: boom"])]) == 1


def test_borderline_detections_at_the_threshold_are_tolerated_only_with_conf():
    ref = {"a.jpg": [pc.Det((10, 10, 50, 60), 0.90, 1), pc.Det((70, 70, 90, 90), 0.27, 0)]}
    cand = {"a.jpg": [pc.Det((10, 10, 50, 60), 0.90, 1)]}
    assert not pc.compare_runs(ref, cand).ok
    result = pc.compare_runs(ref, cand, conf=0.25)
    assert result.ok and result.borderline == 1 and result.matched == 1
    # Far above the threshold a missing detection is still a failure.
    ref["a.jpg"][1] = pc.Det((70, 70, 90, 90), 0.40, 0)
    assert not pc.compare_runs(ref, cand, conf=0.25).ok


def test_min_matched_keeps_empty_runs_from_passing(tmp_path):
    write_run(tmp_path / "a.jsonl", {"a.jpg": [], "b.jpg": []})
    assert pc.main([str(tmp_path / "a.jsonl"), str(tmp_path / "a.jsonl")]) == 0
    assert pc.main([str(tmp_path / "a.jsonl"), str(tmp_path / "a.jsonl"), "--min-matched", "1"]) == 1
