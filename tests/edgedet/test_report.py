"""`edgedet report`: tables, Pareto marking, fp32 deltas, merging machines, refusing incomparable folders, the
recommendation headline, thermals, bad input, plots (accuracy axis, labels) and the HTML page."""
import base64
import json
import re

import cv2
import numpy as np
import pytest

from edgedet import report
from edgedet.bench_record import SCHEMA_VERSION
from edgedet.cli import main as cli_main


def provenance(host="pi5", cpu="Cortex-A76", cores=4, arch="aarch64"):
    return {"machine": {"cpu": cpu, "cores": cores, "usable_cores": cores, "arch": arch, "hostname": host,
                        "os": "Debian GNU/Linux 12 (bookworm), Linux 6.6"},
            "python": "3.11.2", "libraries": {"numpy": "2.1.0", "onnxruntime": "1.20.0"},
            "commit": "abc123", "date": "2026-11-24T01:00:00+00:00"}


def loops(conf=0.25, outputs=()):
    """The record's "loops" as `edgedet bench` writes them (deployment threshold `conf`, timed-loop `outputs`)."""
    return {"accuracy": {"conf": 0.001, "nms_iou": 0.6, "images": 10},
            "deploy_accuracy": {"conf": conf, "nms_iou": 0.45, "match_iou": 0.5, "images": 10},
            "timed": {"loop": "edgedet run", "conf": conf, "nms_iou": 0.45, "warmup": 10, "repeats": 100,
                      "outputs": list(outputs), "written": {}, "frames_failed": 0}}


NO_THERMALS = {"cpu_temp_c": None, "zones": [], "throttled": None}


def record(fmt, precision, latency, map_, imgsz=320, threads=2, host="pi5", fingerprint="f00d", **extra):
    """A results record as `edgedet bench` writes it (schema version 2), latency = end-to-end p50 in ms."""
    stages = {"preprocess": 0.1, "inference": 0.6, "decode": 0.1, "nms": 0.05, "masks": 0.05}
    rec = {
        "schema_version": SCHEMA_VERSION,
        "variant": f"m.{precision} {fmt} {precision} {imgsz}px {threads}t",
        "model": {"path": f"/x/m.{fmt}", "name": "m", "format": fmt, "precision": precision,
                  "runtime": {"onnx": "onnxruntime", "tflite": "tflite", "pytorch": "torch"}[fmt], "size_mb": 4.0},
        "imgsz": imgsz, "threads": threads,
        "data": {"path": "/data", "images": 10, "failed_images": 0, "fingerprint": fingerprint},
        "loops": loops(),
        "accuracy": {"map": map_, "map50": map_ + 0.2, "mask_ap": None, "miou": 0.5},
        "deploy_accuracy": {"precision": 0.8, "recall": 0.6, "f1": 0.6857, "tp": 6, "fp": 2, "fn": 4},
        "latency_ms": {**{s: {"p50": latency * f, "p90": latency * f * 1.1, "p99": latency * f * 1.3,
                              "trimmed_mean": latency * f} for s, f in stages.items()},
                       "end_to_end": {"p50": latency, "p90": latency * 1.1, "p99": latency * 1.3,
                                      "trimmed_mean": latency}},
        "fps": 1000.0 / latency, "thermals": {"start": NO_THERMALS, "end": NO_THERMALS},
        "peak_mem_mb": 120.0, "wall_s": 3.0,
        "provenance": provenance(host=host, cpu="Intel Xeon" if host != "pi5" else "Cortex-A76"),
    }
    rec.update(extra)
    return rec


def write_results(folder, records, extra_lines=()):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    return folder


# fp32 onnx 40ms mAP .50, int8 onnx 15ms .49, fp32 tflite 35ms .50, int8 tflite 20ms .47 (dominated by onnx int8)
PI_RECORDS = [record("onnx", "fp32", 40.0, 0.50), record("onnx", "int8", 15.0, 0.49),
              record("tflite", "fp32", 35.0, 0.50), record("tflite", "int8", 20.0, 0.47)]


def test_pareto_flags_mark_the_non_dominated_points():
    records = [record("onnx", "fp32", lat, acc) for lat, acc in [(10, .3), (20, .5), (15, .2), (30, .5), (40, .6)]]
    assert report.pareto_flags(records) == [True, True, False, False, True]


def test_pareto_ignores_rows_without_accuracy():
    no_accuracy = record("onnx", "fp32", 1.0, 0.5, accuracy={"map": None, "map50": None, "mask_ap": None, "miou": None})
    assert report.pareto_flags([no_accuracy, record("onnx", "int8", 2.0, 0.4)]) == [False, True]


def test_accuracy_ties_within_rounding_do_not_keep_a_slower_variant_on_the_front():
    records = [record("tflite", "fp32", 100.0, 0.18287), record("onnx", "fp32", 270.0, 0.18298)]
    assert report.pareto_flags(records) == [True, False]
    assert report.pareto_flags(records, tie=0.0) == [True, True]


def test_fp32_reference_is_taken_from_the_same_model_family():
    small8, small32 = record("onnx", "int8", 10, .4), record("onnx", "fp32", 20, .41)
    big32 = record("onnx", "fp32", 40, .5)
    small8["model"]["name"], small32["model"]["name"] = "edgedet-n-320-int8", "edgedet-n-320"
    big32["model"]["name"] = "edgedet-s-320"
    assert report.model_family(small8) == "edgedet-n-320"
    assert report.fp32_reference(small8, [big32, small32, small8]) is small32
    assert report.fp32_reference(small8, [big32, small8]) is big32  # no same-family fp32: any fp32 at that size


def test_fp32_reference_prefers_the_same_format_then_pytorch():
    onnx32, tfl8, onnx8 = record("onnx", "fp32", 40, .5), record("tflite", "int8", 20, .47), record("onnx", "int8", 15, .49)
    pt32 = record("pytorch", "fp32", 90, .51)
    assert report.fp32_reference(onnx8, [onnx32, tfl8, onnx8, pt32]) is onnx32
    assert report.fp32_reference(tfl8, [onnx32, tfl8, onnx8, pt32]) is pt32
    assert report.fp32_reference(onnx32, [onnx32, pt32]) is None
    assert report.fp32_reference(record("onnx", "int8", 15, .49, threads=1), [onnx32]) is None


def test_single_machine_report_sorted_with_pareto_stars_and_deltas(tmp_path):
    results = write_results(tmp_path / "pi", PI_RECORDS)
    assert cli_main(["report", str(results), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "format" not in line]
    assert [r.split("|")[3].strip() + " " + r.split("|")[4].strip() for r in rows] == \
        ["onnx int8", "tflite int8", "tflite fp32", "onnx fp32"]
    stars = [r.split("|")[1].strip() for r in rows]
    assert stars == ["★", "", "★", ""]  # tflite int8 is slower and worse than onnx int8; onnx fp32 slower than tflite fp32
    onnx_int8 = [c.strip() for c in rows[0].split("|")]
    assert "-1.0" in onnx_int8 and "2.67x" in onnx_int8  # 49 - 50 points; 40 / 15 ms
    tflite_int8 = [c.strip() for c in rows[1].split("|")]
    assert "-3.0" in tflite_int8 and "1.75x" in tflite_int8
    assert "Cortex-A76" in md and "commit abc123" in md and "conf 0.001 / NMS IoU 0.6" in md
    assert "Problems" not in md and "Across machines" not in md


def test_two_machines_merge_into_one_comparison(tmp_path):
    pi = write_results(tmp_path / "pi", PI_RECORDS)
    x86 = write_results(tmp_path / "x86", [record("onnx", "fp32", 8.0, 0.50, host="vm"),
                                           record("onnx", "int8", 5.0, 0.49, host="vm")])
    assert cli_main(["report", str(pi), str(x86), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[0].startswith("## pi5 (Cortex-A76") and headings[1].startswith("## vm (Intel Xeon")
    assert "## Across machines (end-to-end p50 / mAP)" in md
    across = md.split("## Across machines")[1]
    onnx_int8 = next(line for line in across.splitlines() if "| onnx | int8 |" in line)
    assert "15.00 ms / 49.0" in onnx_int8 and "5.00 ms / 49.0" in onnx_int8
    tflite_int8 = next(line for line in across.splitlines() if "| tflite | int8 |" in line)
    assert tflite_int8.rstrip(" |").endswith("–")  # not measured on the x86 machine


def test_bad_inputs_are_reported_per_file_and_the_rest_renders(tmp_path, capsys):
    partly = dict(PI_RECORDS[1], data={**PI_RECORDS[1]["data"], "failed_images": 2})
    good = write_results(tmp_path / "good", [PI_RECORDS[0], partly], extra_lines=[json.dumps(PI_RECORDS[2])[:57]])
    old = write_results(tmp_path / "old", [dict(PI_RECORDS[3], schema_version=SCHEMA_VERSION + 1)])
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = write_results(tmp_path / "failed", [{k: v for k, v in record("tflite", "int8", 1, .1, host="vm").items()
                                                   if k in ("schema_version", "variant", "model", "imgsz", "threads",
                                                            "provenance")} | {"error": "model file is corrupt"}])
    code = cli_main(["report", str(good), str(old), str(empty), str(failed), str(tmp_path / "missing"),
                     "--out", str(tmp_path / "rep")])
    assert code == 0
    err = capsys.readouterr().err
    assert f"{good / 'results.jsonl'}:3: not valid JSON, truncated line?" in err
    assert f"{old / 'results.jsonl'}:1: schema_version {SCHEMA_VERSION + 1}" in err
    assert f"{empty}: no results.jsonl" in err
    assert f"{tmp_path / 'missing'}: no such file or folder" in err
    md = (tmp_path / "rep" / "report.md").read_text()
    problems = md.split("## Problems")[1]
    assert "truncated line" in problems and "incompatible edgedet version" in problems
    assert "failed: model file is corrupt" in problems
    assert "m.int8 onnx int8 320px 2t on pi5 (Cortex-A76, 4 cores, aarch64): 2 of 10 images failed" in problems
    assert md.count("| m | onnx |") == 2  # the two good records of the first file still render
    assert (tmp_path / "rep" / "report.html").read_text().count("<li>") == 6


def test_only_bad_input_is_a_one_line_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "trunc.jsonl").write_text('{"schema_version": 2, "varia')
    assert cli_main(["report", str(empty), str(tmp_path / "trunc.jsonl"), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edgedet report: error: no usable results in")
    assert not (tmp_path / "rep").exists()


def test_plots_decode_and_html_embeds_them(tmp_path):
    pi = write_results(tmp_path / "pi", PI_RECORDS)
    x86 = write_results(tmp_path / "x86", [record("onnx", "fp32", 8.0, 0.50, host="vm")])
    assert cli_main(["report", str(pi), str(x86), "--out", str(tmp_path / "rep")]) == 0
    for name in ("pareto.png", "stages.png"):
        image = cv2.imread(str(tmp_path / "rep" / name))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 5  # something was drawn
    page = (tmp_path / "rep" / "report.html").read_text()
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 2
    for uri in uris:
        decoded = cv2.imdecode(np.frombuffer(base64.b64decode(uri), np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None and decoded.size > 0
    assert "src=\"http" not in page and "<link" not in page  # nothing fetched from elsewhere
    assert page.count("<table>") == 3  # two machines + the cross-machine table
    assert page.count('<tr class=pareto>') == 3


def test_report_parser_does_not_import_matplotlib():
    import subprocess
    import sys

    code = ("from edgedet.cli import build_parser; build_parser('report').parse_args(['report', 'x', '--out', 'y'])\n"
            "import sys; print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def first_headline(md):
    return next(line for line in md.splitlines() if line.startswith("**Recommended on "))


@pytest.mark.parametrize("budget, chosen, speedup", [
    ("1.0", "m.int8 onnx int8 320px 2t", "2.67x the speed of its fp32 baseline m.fp32 onnx fp32 320px 2t"),
    ("0.5", "m.fp32 tflite fp32 320px 2t", "itself an fp32 variant (no speed-up over fp32)"),
    ("5", "m.int8 tflite int8 320px 1t", "3.50x the speed of its fp32 baseline m.fp32 tflite fp32 320px 1t"),
])
def test_headline_names_the_fastest_variant_within_the_budget(tmp_path, capsys, budget, chosen, speedup):
    """Best mAP 50.0; the 1-point budget keeps onnx int8 (49.0, 15 ms), not the faster tflite int8 at 1 thread
    (45.0, 10 ms); half a point keeps only the fp32 ones, of which tflite is faster."""
    fast_but_worse = [record("tflite", "int8", 10.0, 0.45, threads=1), record("tflite", "fp32", 35.0, 0.45, threads=1)]
    results = write_results(tmp_path / "pi", PI_RECORDS + fast_but_worse)
    assert cli_main(["report", str(results), "--budget", budget, "--out", str(tmp_path / "rep")]) == 0
    line = first_headline((tmp_path / "rep" / "report.md").read_text())
    assert line.startswith(f"**Recommended on pi5 (Cortex-A76, 4 cores, aarch64): {chosen}: "), line
    assert speedup in line
    assert f"Recommended on pi5 (Cortex-A76, 4 cores, aarch64): {chosen}" in capsys.readouterr().out
    assert chosen in (tmp_path / "rep" / "report.html").read_text().split("<table>")[0]


def test_recommendation_on_equal_latency_takes_the_more_accurate():
    table = report.build_tables([record("onnx", "int8", 15.0, 0.48), record("tflite", "int8", 15.0, 0.49),
                                 record("onnx", "fp32", 40.0, 0.50)])[0]
    assert report.recommend(table, 1.0).record["model"]["format"] == "tflite"
    assert report.recommend(table, 0.0).record["model"]["precision"] == "fp32"


@pytest.mark.parametrize("values, expected", [
    ([49.3, 50.0], (44.65, 54.65)),  # a 0.7-point gap: a tenth of the axis
    ([0.5, 1.0], (0.0, 10.0)),  # kept above 0
    ([95.0, 99.5], (90.0, 100.0)),  # and below 100
    ([10.0, 60.0], (5.0, 65.0)),  # a wide range: its own span plus 10% each side
])
def test_accuracy_axis_spans_at_least_ten_points(values, expected):
    assert report.accuracy_axis(values) == pytest.approx(expected)


def test_pareto_plot_labels_every_point_with_its_variant_and_keeps_the_axis_wide():
    close = [record("onnx", "fp32", 40.0, 0.500), record("onnx", "int8", 15.0, 0.493)]
    figure = report.pareto_figure(report.build_tables(close))
    ax = figure.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == sorted(r["variant"] for r in close)
    low, high = ax.get_ylim()
    assert high - low >= 10.0 and low <= 49.3 and high >= 50.0


@pytest.mark.parametrize("change, named", [
    ({"fingerprint": "beef"}, "differ in fingerprint f00d vs fingerprint beef ("),
    ({"loops": loops(conf=0.5)}, "differ in P/R/F1 conf 0.25 vs P/R/F1 conf 0.5; run loop conf 0.25 vs run loop conf 0.5 ("),
    ({"loops": loops(outputs=["json", "stream"])}, "differ in outputs none vs outputs json,stream ("),
])
def test_folders_measured_differently_are_refused_in_one_line(tmp_path, capsys, change, named):
    pi = write_results(tmp_path / "pi", PI_RECORDS)
    other = write_results(tmp_path / "x86", [record("onnx", "fp32", 8.0, 0.50, host="vm", **change)])
    assert cli_main(["report", str(pi), str(other), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgedet report: error: cannot compare results measured differently")
    assert named in err[0] and "m.fp32 onnx fp32 320px 2t on vm (Intel Xeon" in err[0] and "--allow-mixed" in err[0]
    assert not (tmp_path / "rep").exists()


def test_allow_mixed_reports_each_setup_in_tables_of_its_own(tmp_path):
    pi = write_results(tmp_path / "pi", PI_RECORDS)
    other_data = write_results(tmp_path / "x86", [record("onnx", "fp32", 8.0, 0.50, host="vm", fingerprint="beef"),
                                                  record("onnx", "int8", 5.0, 0.49, host="vm", fingerprint="beef")])
    assert cli_main(["report", str(pi), str(other_data), "--allow-mixed", "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert len(headings) == 2 and "fingerprint f00d" in headings[0] and "fingerprint beef" in headings[1]
    assert "Across machines" not in md  # two machines, but never compared across setups
    assert len([line for line in md.splitlines() if line.startswith("**Recommended on ")]) == 2


def test_thermals_are_shown_next_to_the_latency(tmp_path):
    hot = {"cpu_temp_c": 81.2, "zones": [{"name": "thermal_zone0", "type": "cpu-thermal", "temp_c": 81.2}],
           "throttled": {"raw": "0x60006", "now": ["frequency_capped", "throttled"],
                         "since_boot": ["frequency_capped", "throttled"]}}
    cool = dict(hot, cpu_temp_c=52.0, throttled={"raw": "0x0", "now": [], "since_boot": []})
    records = [dict(PI_RECORDS[0], thermals={"start": cool, "end": cool}),
               dict(PI_RECORDS[1], thermals={"start": cool, "end": hot})]
    results = write_results(tmp_path / "pi", records)
    assert cli_main(["report", str(results), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    int8 = next(line for line in md.splitlines() if line.startswith("| ") and "| int8 |" in line)
    fp32 = next(line for line in md.splitlines() if line.startswith("| ") and "| fp32 |" in line)
    assert "| 52.0→81.2 | now: frequency_capped, throttled; since boot: frequency_capped, throttled |" in int8
    assert "| 52.0→52.0 | no |" in fp32
    assert "throttled at the end of its timed loop (CPU 81.2 °C, throttled now: frequency_capped" in first_headline(md)
    assert "| – | – |" in cli_table_row(PI_RECORDS[2], tmp_path)  # no thermal zones, no vcgencmd: absent


def cli_table_row(rec, tmp_path):
    results = write_results(tmp_path / "one", [rec])
    assert cli_main(["report", str(results), "--out", str(tmp_path / "rep1")]) == 0
    md = (tmp_path / "rep1" / "report.md").read_text()
    return next(line for line in md.splitlines() if line.startswith("| ") and "| m |" in line)


def test_bad_budget_is_a_one_line_error(tmp_path, capsys):
    results = write_results(tmp_path / "pi", PI_RECORDS)
    assert cli_main(["report", str(results), "--budget", "-1", "--out", str(tmp_path / "rep")]) == 2
    assert capsys.readouterr().err.strip() == "edgedet report: error: --budget must be >= 0 points, got -1.0"


def test_every_stage_the_stage_bars_draw_has_a_colour():
    from edgedet.bench_record import IN_FRAME_STAGES
    from edgedet.report import STAGE_COLORS

    assert set(IN_FRAME_STAGES) | {"other", "output"} <= set(STAGE_COLORS)


def test_the_same_outputs_in_another_order_are_one_setup(tmp_path):
    one = write_results(tmp_path / "a", [record("onnx", "fp32", 40.0, 0.50, loops=loops(outputs=["json", "save"]))])
    two = write_results(tmp_path / "b", [record("onnx", "int8", 15.0, 0.49, loops=loops(outputs=["save", "json"]))])
    assert cli_main(["report", str(one), str(two), "--out", str(tmp_path / "rep")]) == 0
