"""`edgedet bench`: the results record, CSV, progress line, variant planning, failures and bad input."""
import csv
import io
import json

import pytest

from edgedet import bench, bench_record
from edgedet.cli import main as cli_main

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


def test_csv_has_one_flat_row_per_record(tmp_path):
    records = [record("onnx", "int8", 10.0, 0.4), record("tflite", "fp32", 30.0, 0.5, host="vm")]
    bench_record.write_csv(records, tmp_path / "results.csv")
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert list(rows[0]) == bench_record.CSV_COLUMNS
    assert [(r["format"], r["precision"]) for r in rows] == [("onnx", "int8"), ("tflite", "fp32")]
    assert float(rows[0]["end_to_end_p50_ms"]) == 10.0 and float(rows[0]["map"]) == 0.4
    assert rows[0]["mask_ap"] == "" and rows[1]["machine"].startswith("vm (")
    assert not (tmp_path / "results.csv.tmp").exists()


def test_accuracy_and_latency_from_an_evaluation_result():
    result = {"bbox": {"AP": 0.41, "AP50": 0.7}, "segm": {"AP": -1.0}, "semantic": {"mIoU": 0.55},
              "latency_ms": {"inference": {"p50": 5, "p90": 6, "p99": 7, "mean": 5.5},
                             "end_to_end": {"p50": 9, "p90": 10, "p99": 12}, "capture": {"p50": 1}}}
    assert bench.accuracy_from_eval(result) == {"map": 0.41, "map50": 0.7, "mask_ap": None, "miou": 0.55}
    assert bench.latency_from_eval(result["latency_ms"]) == {"inference": {"p50": 5.0, "p90": 6.0, "p99": 7.0},
                                                             "end_to_end": {"p50": 9.0, "p90": 10.0, "p99": 12.0}}
    with pytest.raises(bench.EdgedetError, match="no end-to-end latency"):
        bench.latency_from_eval({"inference": {"p50": 5, "p90": 6, "p99": 7}})


def test_progress_shows_variants_done_and_eta():
    stream = io.StringIO()
    progress = bench.Progress(4, stream)
    progress.started("m onnx int8 320px 1t")
    progress.finished(record("onnx", "int8", 10.0, 0.4))
    first, second = stream.getvalue().splitlines()
    assert "0/4 variants" in first and "ETA ?" in first
    assert "[#####...............] 1/4 variants" in second and "ETA 0m" in second
    assert "mAP 40.0, end to end p50 10.00 ms (100.0 FPS)" in second


@pytest.mark.parametrize("argv, message", [
    (["--models", "{tmp}/m.onnx", "--data", "{data}", "--out", "{tmp}/o"], "model file not found: {tmp}/m.onnx"),
    (["--models", "{tmp}/m.txt", "--data", "{data}", "--out", "{tmp}/o"], "expected a .onnx, .tflite or .pt file"),
    (["--models", "{tmp}/m.onnx", "--data", "{tmp}/nodata", "--out", "{tmp}/o"], "data set not found"),
    (["--models", "{tmp}/m.onnx", "--data", "{tmp}", "--out", "{tmp}/o"], "{tmp}"),  # a folder that is no data set
    (["--sweep", "{tmp}/none.pt", "--data", "{data}", "--out", "{tmp}/o"], "checkpoint not found: {tmp}/none.pt"),
    (["--models", "{tmp}/m.onnx", "--data", "{data}", "--frames", "0", "--out", "{tmp}/o"], "--frames must be >= 1"),
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


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_bench_exported_models_and_checkpoint(exported_models, tiny_checkpoint, synth_data, tmp_path, capsys):
    models = [exported_models["onnx-int8"], exported_models["tflite"], exported_models["tflite-int8"], tiny_checkpoint]
    code = cli_main(["bench", "--models", *map(str, models), "--data", str(synth_data), "--threads", "1,2",
                     "--frames", "3", "--out", str(tmp_path / "b")])
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
        assert r["settings"] == {"conf": 0.001, "iou": 0.6}
        assert set(r["accuracy"]) == {"map", "map50", "mask_ap", "miou"}
        assert 0 <= r["accuracy"]["map"] <= 1 and 0 <= r["accuracy"]["miou"] <= 1  # tiny model: boxes, masks, semantic
        stages = r["latency_ms"]
        assert {"preprocess", "inference", "decode", "nms", "end_to_end"} <= set(stages)
        assert all(0 < s["p50"] <= s["p90"] <= s["p99"] for s in stages.values())
        assert r["fps"] == pytest.approx(1000 / stages["end_to_end"]["p50"])
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
                     "--data", str(synth_data), "--frames", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (out / "models" / "128").glob("*.onnx")) == ["tiny-int8.onnx", "tiny.onnx"]
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
