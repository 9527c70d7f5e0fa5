"""`edgedet bench`: the results record, CSV, progress line, variant planning, failures and bad input; precision,
recall and F1 at the deployment threshold; the data set fingerprint; both loops of a real run (the accuracy pass
and the timed `edgedet run` loop with its outputs and thermals)."""
import csv
import io
import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest

from edgedet import bench, bench_record
from edgedet.cli import main as cli_main
from edgedet.data import coco_gt_dict, load_dataset
from tests.device.test_app import read_jsonl
from tests.device.test_backends import make_onnx_model
from tests.device.test_thermals import fake_vcgencmd

from .test_report import record


def test_record_validation_names_the_problem():
    good = record("onnx", "int8", 10.0, 0.4)
    assert bench_record.validate_record(good) is None
    assert "schema_version 0" in bench_record.validate_record(dict(good, schema_version=0))
    assert "missing fields ['imgsz']" in bench_record.validate_record({k: v for k, v in good.items() if k != "imgsz"})
    assert "end-to-end latency" in bench_record.validate_record(dict(good, latency_ms={"inference": {"p50": 1.0}}))
    assert "not a JSON object" in bench_record.validate_record([1, 2])
    failed = {k: good[k] for k in ("schema_version", "variant", "model", "imgsz", "threads", "provenance")}
    assert bench_record.validate_record(dict(failed, error="boom")) is None
    assert bench_record.validate_record(dict(good, schema_version=1)).startswith(
        "schema_version 1: its latency came from the accuracy pass (conf 0.001, no warm-up, no outputs)")
    assert "lacks ['timed']" in bench_record.validate_record(
        dict(good, loops={k: v for k, v in good["loops"].items() if k != "timed"}))
    assert "fingerprint" in bench_record.validate_record(dict(good, data={"path": "/data", "images": 10}))
    assert "'deploy_accuracy' missing" in bench_record.validate_record(
        {k: v for k, v in good.items() if k != "deploy_accuracy"})


def test_csv_has_one_flat_row_per_record(tmp_path):
    records = [record("onnx", "int8", 10.0, 0.4), record("tflite", "fp32", 30.0, 0.5, host="vm")]
    bench_record.write_csv(records, tmp_path / "results.csv")
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert list(rows[0]) == bench_record.CSV_COLUMNS
    assert [(r["format"], r["precision"]) for r in rows] == [("onnx", "int8"), ("tflite", "fp32")]
    assert float(rows[0]["end_to_end_p50_ms"]) == 10.0 and float(rows[0]["map"]) == 0.4
    assert rows[0]["mask_ap"] == "" and rows[1]["machine"].startswith("vm (")
    assert (rows[0]["f1_at_conf"], rows[0]["conf"], rows[0]["match_iou"], rows[0]["outputs"]) == ("0.6857", "0.25",
                                                                                               "0.5", "")
    assert rows[0]["data_fingerprint"] == "f00d" and rows[0]["end_to_end_trimmed_mean_ms"] == "10.0"
    assert not (tmp_path / "results.csv.tmp").exists()


def test_accuracy_from_an_evaluation_result():
    result = {"bbox": {"AP": 0.41, "AP50": 0.7}, "segm": {"AP": -1.0}, "semantic": {"mIoU": 0.55}}
    assert bench.accuracy_from_eval(result) == {"map": 0.41, "map50": 0.7, "mask_ap": None, "miou": 0.55}


def test_stage_statistics_of_the_timed_frames():
    """11 frames: end to end 1..10 ms plus one 100 ms outlier; draw on only two of them; an unknown stage ignored."""
    records = [{"end_to_end": float(ms), "inference": 2.0, "zones": 1.0, "upload": 1.0} for ms in range(1, 11)]
    records.append({"end_to_end": 100.0, "inference": 2.0})
    records[0]["draw"], records[1]["draw"] = 3.0, 5.0
    stats = bench.stage_stats(records)
    assert set(stats) == {"end_to_end", "inference", "zones", "draw"}  # the runner's zones stage counts
    assert stats["end_to_end"]["p50"] == 6.0 and stats["end_to_end"]["p99"] == pytest.approx(91.0)
    assert stats["end_to_end"]["trimmed_mean"] == pytest.approx(6.0)  # 1 and 100 cut: mean of 2..10
    assert stats["draw"] == {"p50": 4.0, "p90": 4.8, "p99": 4.98, "trimmed_mean": 4.0}
    assert bench.trimmed_mean([7.0]) == 7.0 and bench.trimmed_mean([1.0, 50.0]) == 25.5
    with pytest.raises(bench.EdgedetError, match="no end-to-end latency"):
        bench.stage_stats([{"inference": 5.0}])
    assert bench.loop_fps([0.0, 0.5, 1.0, 1.5]) == 2.0 and bench.loop_fps([1.0]) is None


def coco(boxes):
    """COCO ground truth of image 1 from (category, x, y, w, h, iscrowd) rows."""
    return {"images": [{"id": 1, "file_name": "a.jpg", "height": 100, "width": 100}],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": [x, y, w, h], "iscrowd": crowd,
                             "area": w * h} for i, (c, x, y, w, h, crowd) in enumerate(boxes)]}


def result(category, x, y, w, h, score):
    return {"image_id": 1, "category_id": category, "bbox": [x, y, w, h], "score": score}


def test_precision_recall_f1_against_a_hand_computed_case():
    """Ground truth A, B (class 1) and C (class 2). Detections, best first: on A (IoU 0.81: TP), a duplicate of A
    (FP: A is taken), one on B at IoU 0.25 (FP; B stays missed: FN), C's box as class 1 (FP: wrong class), C as
    class 2 (TP). TP 2, FP 3, FN 1: precision 2/5, recall 2/3, F1 4/8."""
    gt = coco([(1, 0, 0, 10, 10, 0), (1, 50, 50, 10, 10, 0), (2, 20, 20, 10, 10, 0)])
    results = [result(1, 1, 1, 9, 9, 0.9), result(1, 0, 1, 10, 9, 0.8), result(1, 50, 50, 5, 5, 0.7),
               result(1, 20, 20, 10, 10, 0.6), result(2, 20, 20, 10, 10, 0.3)]
    out = bench.precision_recall_f1(gt, results)
    assert (out["tp"], out["fp"], out["fn"]) == (2, 3, 1)
    assert out["precision"] == pytest.approx(0.4) and out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(0.5)
    # at match IoU 0.85 the first misses A (0.81) and the duplicate (0.90) takes it; at 0.95 only C is found
    strict = [bench.precision_recall_f1(gt, results, match_iou=t) for t in (0.85, 0.95)]
    assert [(o["tp"], o["fp"], o["fn"]) for o in strict] == [(2, 3, 1), (1, 4, 2)]


def test_greedy_matching_goes_by_score_not_by_list_order():
    """The better-scored detection takes the one ground truth even though it is listed second."""
    gt = coco([(1, 0, 0, 10, 10, 0)])
    out = bench.precision_recall_f1(gt, [result(1, 5, 5, 10, 10, 0.4), result(1, 0, 0, 10, 10, 0.9)])
    assert (out["tp"], out["fp"], out["fn"]) == (1, 1, 0)
    # the low-scored one alone overlaps at IoU 25/175: no match
    assert bench.precision_recall_f1(gt, [result(1, 5, 5, 10, 10, 0.4)])["tp"] == 0


def test_crowd_regions_neither_reward_nor_penalise():
    """A detection inside a crowd region is ignored (IoU over its own area: 1.0), crowd counts in no recall."""
    gt = coco([(1, 0, 0, 10, 10, 0), (1, 40, 40, 40, 40, 1)])
    out = bench.precision_recall_f1(gt, [result(1, 0, 0, 10, 10, 0.9), result(1, 50, 50, 10, 10, 0.8)])
    assert (out["tp"], out["fp"], out["fn"]) == (1, 0, 0) and out["f1"] == 1.0


def test_precision_recall_f1_without_detections_or_ground_truth():
    assert bench.precision_recall_f1(coco([(1, 0, 0, 10, 10, 0)]), []) == {
        "precision": None, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 1}
    assert bench.precision_recall_f1(coco([]), []) == {
        "precision": None, "recall": None, "f1": None, "tp": 0, "fp": 0, "fn": 0}


def test_data_fingerprint_follows_file_names_and_labels_not_folders(synth_data, tmp_path):
    dataset = load_dataset(synth_data, split="val")

    def fingerprint(ds):
        return bench.data_fingerprint(coco_gt_dict(ds), ds)

    same = fingerprint(dataset)
    assert len(same) == 16 and fingerprint(load_dataset(synth_data, split="val")) == same
    moved = []  # the same files under another folder
    for sample in dataset.samples:
        shutil.copy(sample.semantic_path, tmp_path / sample.semantic_path.name)
        moved.append(replace(sample, image_path=tmp_path / sample.image_path.name,
                             semantic_path=tmp_path / sample.semantic_path.name))
    assert fingerprint(replace(dataset, samples=moved, root=tmp_path)) == same
    shifted = replace(dataset.samples[0], xyxy=dataset.samples[0].xyxy + np.float32(1.0))
    assert fingerprint(replace(dataset, samples=[shifted, *dataset.samples[1:]])) != same
    assert fingerprint(replace(dataset, samples=dataset.samples[:3])) != same  # --frames 3
    (tmp_path / moved[0].semantic_path.name).write_bytes(b"another label map")
    assert fingerprint(replace(dataset, samples=moved)) != same


def test_progress_shows_variants_done_and_eta():
    stream = io.StringIO()
    progress = bench.Progress(4, stream)
    progress.started("m onnx int8 320px 1t")
    progress.finished(record("onnx", "int8", 10.0, 0.4))
    first, second = stream.getvalue().splitlines()
    assert "0/4 variants" in first and "ETA ?" in first
    assert "[#####...............] 1/4 variants" in second and "ETA 0m" in second
    assert "mAP 40.0, F1 0.69 at conf 0.25; run loop p50 10.00 ms, 100.0 FPS; 120.0 MB" in second


@pytest.mark.parametrize("argv, message", [
    (["--models", "{tmp}/m.onnx", "--data", "{data}", "--out", "{tmp}/o"], "model file not found: {tmp}/m.onnx"),
    (["--models", "{tmp}/m.txt", "--data", "{data}", "--out", "{tmp}/o"], "expected a .onnx, .tflite or .pt file"),
    (["--models", "{tmp}/m.onnx", "--data", "{tmp}/nodata", "--out", "{tmp}/o"], "data set not found"),
    (["--models", "{tmp}/m.onnx", "--data", "{tmp}", "--out", "{tmp}/o"], "{tmp}"),  # a folder that is no data set
    (["--sweep", "{tmp}/none.pt", "--data", "{data}", "--out", "{tmp}/o"], "checkpoint not found: {tmp}/none.pt"),
    (["--models", "{tmp}/m.onnx", "--data", "{data}", "--frames", "0", "--out", "{tmp}/o"], "--frames must be >= 1"),
    (["--models", "{tmp}/m.onnx", "--data", "{data}", "--conf", "2", "--out", "{tmp}/o"], "--conf must be in 0..1"),
    (["--models", "{tmp}/m.onnx", "--data", "{data}", "--warmup", "-1", "--out", "{tmp}/o"], "--warmup must be >= 0"),
    (["--models", "{tmp}/m.onnx", "--data", "{data}", "--repeats", "1", "--out", "{tmp}/o"], "--repeats must be >= 2"),
    (["--models", "{tmp}/m.onnx", "--data", "{data}", "--outputs", "json,mqtt", "--out", "{tmp}/o"],
     "--outputs: unknown output 'mqtt'; choose from json, save, stream"),
    (["--models", "{tmp}/m.onnx", "--data", "{data}", "--formats", "onnx", "--out", "{tmp}/o"],
     "--formats names what --sweep exports"),
    (["--sweep", "shipped", "--data", "{data}", "--imgsz", "333", "--out", "{tmp}/o"],
     "--imgsz 333: export sizes are multiples of 32"),  # before anything is exported
])
def test_bad_input_is_a_one_line_error(tmp_path, synth_data, capsys, argv, message):
    (tmp_path / "m.txt").write_text("not a model")
    code = cli_main(["bench"] + [a.format(tmp=tmp_path, data=synth_data) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("edgedet bench: error: ") and message.format(tmp=tmp_path) in err[0]


def test_bad_thread_list_is_rejected_by_the_parser(tmp_path):
    with pytest.raises(SystemExit):
        cli_main(["bench", "--models", "m.onnx", "--data", str(tmp_path), "--threads", "1,x", "--out", "o"])


def test_a_failing_variant_becomes_a_failure_record(tmp_path, synth_data):
    """The child process fails (the file is not a model): the run goes on and records why."""
    fake = tmp_path / "broken.int8.onnx"
    fake.write_bytes(b"\x00not an onnx model")
    variant = bench.Variant(str(fake), 320, 1, "onnx", "int8")
    config = bench.BenchConfig(data=str(synth_data), out=tmp_path / "out")
    out = bench.run_variant(variant, config, tmp_path)
    assert out["variant"] == "broken.int8 onnx int8 320px 1t"
    assert out["error"].startswith(f"onnxruntime cannot load {fake}")
    assert bench_record.validate_record(out) is None and "latency_ms" not in out
    assert out["provenance"]["machine"]["cores"] >= 1



def test_bench_records_both_loops_with_outputs_and_thermals(synth_data, tmp_path, monkeypatch, capsys):
    """A toy model through the real path: the accuracy pass at conf 0.001, P/R/F1 at the deployment threshold, and
    the timed `edgedet run` loop writing JSON lines, a video and an MJPEG stream that a viewer reads (asked for in
    any order, recorded once each in one order); the thermals
    come from a fake vcgencmd on PATH (the child process inherits it)."""
    monkeypatch.setenv("PATH", f"{fake_vcgencmd(tmp_path / 'bin', 'throttled=0x50005')}{os.pathsep}{os.environ['PATH']}")
    toy = make_onnx_model(tmp_path / "toy.onnx")
    code = cli_main(["bench", "--models", str(toy), str(toy), "--data", str(synth_data), "--warmup", "2", "--repeats", "6",
                     "--outputs", "stream,json,save,json", "--out", str(tmp_path / "b")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "--models names 1 value(s) twice; each is measured once" in captured.err
    (r,) = read_jsonl(tmp_path / "b" / "results.jsonl")
    assert bench_record.validate_record(r) is None and not r.get("error"), r.get("error")
    loops = r["loops"]
    assert loops["accuracy"] == {"conf": 0.001, "nms_iou": 0.6, "images": 4}
    assert loops["deploy_accuracy"] == {"conf": 0.25, "nms_iou": 0.45, "match_iou": 0.5, "images": 4}
    timed = loops["timed"]
    assert {k: timed[k] for k in ("loop", "conf", "nms_iou", "warmup", "repeats", "outputs", "frames_failed")} == {
        "loop": "edgedet run", "conf": 0.25, "nms_iou": 0.45, "warmup": 2, "repeats": 6,
        "outputs": ["json", "save", "stream"], "frames_failed": 0}
    written = timed["written"]
    assert written["json_lines"] >= 8 and written["video_bytes"] > 1000 and written["stream_frames_viewed"] >= 1
    stages = r["latency_ms"]
    assert {"capture", "preprocess", "inference", "decode", "nms", "draw", "output", "end_to_end"} <= set(stages)
    for name, stats in stages.items():
        assert 0 <= stats["p50"] <= stats["p90"] <= stats["p99"], name
        assert name == "encode" or stats["trimmed_mean"] >= 0, name  # the encoder thread has no trimmed mean
    assert r["fps"] > 0
    dataset = load_dataset(synth_data, split="val")
    gt = coco_gt_dict(dataset)
    deploy = r["deploy_accuracy"]
    assert deploy["tp"] + deploy["fn"] == len(gt["annotations"])
    assert deploy["precision"] == pytest.approx(deploy["tp"] / (deploy["tp"] + deploy["fp"]))
    assert r["data"]["fingerprint"] == bench.data_fingerprint(gt, dataset)
    for when in ("start", "end"):
        assert r["thermals"][when]["throttled"] == {"raw": "0x50005", "now": ["under_voltage", "throttled"],
                                                    "since_boot": ["under_voltage", "throttled"]}
    assert "F1" in captured.err and "run loop p50" in captured.err


def test_bench_without_outputs_draws_nothing(synth_data, tmp_path, capsys):
    toy = make_onnx_model(tmp_path / "toy.onnx")
    code = cli_main(["bench", "--models", str(toy), "--data", str(synth_data), "--frames", "2", "--warmup", "0",
                     "--repeats", "3", "--out", str(tmp_path / "b")])
    assert code == 0, capsys.readouterr().err
    (r,) = read_jsonl(tmp_path / "b" / "results.jsonl")
    assert r["loops"]["timed"]["outputs"] == [] and r["loops"]["timed"]["written"] == {}
    assert "draw" not in r["latency_ms"] and {"inference", "output", "end_to_end"} <= set(r["latency_ms"])
    assert r["data"]["images"] == 2 and r["loops"]["accuracy"]["images"] == 2


@pytest.mark.slow
def test_bench_exported_models_and_checkpoint(exported_models, tiny_checkpoint, synth_data, tmp_path, capsys):
    models = [exported_models["onnx-int8"], exported_models["tflite"], exported_models["tflite-int8"], tiny_checkpoint]
    code = cli_main(["bench", "--models", *map(str, models), "--data", str(synth_data), "--threads", "1,2",
                     "--frames", "3", "--warmup", "1", "--repeats", "4", "--out", str(tmp_path / "b")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = read_jsonl(tmp_path / "b" / "results.jsonl")
    assert [bench_record.validate_record(r) for r in records] == [None] * 8
    assert not any(r.get("error") for r in records), [r.get("error") for r in records]
    assert [(r["model"]["format"], r["model"]["precision"], r["threads"]) for r in records] == [
        ("onnx", "int8", 1), ("onnx", "int8", 2), ("tflite", "fp32", 1), ("tflite", "fp32", 2),
        ("tflite", "int8", 1), ("tflite", "int8", 2), ("pytorch", "fp32", 1), ("pytorch", "fp32", 2)]
    for r in records:
        assert r["imgsz"] == 160 and r["data"]["images"] == 3 and r["data"]["failed_images"] == 0
        assert r["loops"]["accuracy"]["conf"] == 0.001 and r["loops"]["timed"]["conf"] == 0.25
        assert set(r["accuracy"]) == {"map", "map50", "mask_ap", "miou"}
        assert 0 <= r["accuracy"]["map"] <= 1 and 0 <= r["accuracy"]["miou"] <= 1  # tiny model: boxes, masks, semantic
        stages = r["latency_ms"]
        assert {"preprocess", "inference", "decode", "nms", "end_to_end"} <= set(stages)
        assert all(0 < s["p50"] <= s["p90"] <= s["p99"] for s in stages.values())
        assert r["fps"] > 0 and 0 <= r["deploy_accuracy"]["tp"] <= r["deploy_accuracy"]["tp"] + r["deploy_accuracy"]["fn"]
        assert 10 < r["peak_mem_mb"] < 4000 and r["model"]["size_mb"] > 0
        assert r["provenance"]["libraries"]["numpy"] and r["provenance"]["machine"]["arch"]
    int8, fp32 = records[0]["model"]["size_mb"], records[2]["model"]["size_mb"]
    assert int8 < 0.5 * fp32  # int8 weights: about a quarter
    rows = list(csv.DictReader(open(tmp_path / "b" / "results.csv")))
    assert len(rows) == 8 and rows[0]["precision"] == "int8"
    assert "8/8 variants" in captured.err and "ETA" in captured.err
    assert "| Pareto |" in captured.out  # the summary table


@pytest.mark.slow
def test_tiny_sweep_exports_then_measures_and_reports(tiny_checkpoint, synth_data, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = cli_main(["bench", "--sweep", str(tiny_checkpoint), "--formats", "onnx,onnx-int8", "--imgsz", "128,160",
                     "--data", str(synth_data), "--frames", "2", "--warmup", "1", "--repeats", "3", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (out / "models" / "128").glob("*.onnx")) == ["tiny-128-int8.onnx", "tiny-128.onnx"]
    records = read_jsonl(out / "results.jsonl")
    assert [(r["imgsz"], r["model"]["precision"]) for r in records] == [
        (128, "fp32"), (128, "int8"), (160, "fp32"), (160, "int8")]
    assert not any(r.get("error") for r in records)
    assert cli_main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.count("| tiny") == 4 and "★" in md
    assert (tmp_path / "rep" / "pareto.png").stat().st_size > 1000


def test_interrupted_run_keeps_every_finished_variant(tmp_path, monkeypatch):
    """Ctrl-C during the second variant: the first one's record is already in results.jsonl and results.csv."""
    variants = [bench.Variant(f"/m/{p}.onnx", 320, 1, "onnx", p) for p in ("fp32", "int8")]
    monkeypatch.setattr(bench, "plan_variants", lambda models, imgsz, threads: variants)
    calls = []

    def fake_run_variant(variant, config, workdir):
        calls.append(variant.label)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return record("onnx", variant.precision, 10.0, 0.4)

    monkeypatch.setattr(bench, "run_variant", fake_run_variant)
    config = bench.BenchConfig(data=str(tmp_path), out=tmp_path / "out", models=["/m/fp32.onnx", "/m/int8.onnx"])
    with pytest.raises(KeyboardInterrupt):
        bench.run_bench(config)
    assert len(calls) == 2
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1 and bench_record.validate_record(json.loads(lines[0])) is None
    assert len(list(csv.DictReader(open(tmp_path / "out" / "results.csv")))) == 1


def test_provenance_names_machine_libraries_commit_and_date(tmp_path):
    from edgedet import provenance as prov

    x86 = tmp_path / "cpuinfo-x86"
    x86.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold\nflags\t\t: avx2\n\nprocessor\t: 1\n")
    pi = tmp_path / "cpuinfo-pi"
    pi.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd0b\n")
    board = tmp_path / "model"
    board.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert prov.cpu_model(str(x86), str(tmp_path / "absent")) == "Intel(R) Xeon(R) Gold"
    assert prov.cpu_model(str(pi), str(board)) == "Raspberry Pi 5 Model B Rev 1.0"
    assert prov.cpu_model(str(pi), str(tmp_path / "absent")) == "CPU part 0xd0b"
    record = prov.provenance()
    assert set(record) == {"machine", "python", "libraries", "commit", "date"}
    assert record["libraries"]["numpy"] and "matplotlib" not in record["libraries"]
    assert record["commit"] is None or len(record["commit"].split("-")[0]) == 40
    assert record["date"].endswith("+00:00")
    assert prov.git_commit(tmp_path) is None  # not a git checkout
    assert prov.machine_key(record).startswith(f"{record['machine']['hostname']} (")


def test_a_variant_named_twice_is_measured_once(tmp_path, capsys, monkeypatch):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert bench.once_each(["m.onnx", str(model), "./m.onnx", "shipped"], "--models", key=bench._same_model) == \
        ["m.onnx", "shipped"]  # one file under three names
    assert bench.once_each([1, 2, 1, 3, 2], "--threads") == [1, 2, 3]
    assert capsys.readouterr().err.count("each is measured once") == 2
