"""`edgedet report DIR [DIR ...] --out REPORT [--budget 1.0] [--allow-mixed]`: accuracy against latency from
`edgedet bench` results, and which variant to deploy.

Writes REPORT/report.md (a headline per machine naming the recommended variant, then one table per machine,
sorted by end-to-end p50 latency, Pareto-optimal rows marked with a star, deltas against the fp32 reference,
thermals beside the latency), REPORT/pareto.png (accuracy against latency, one marker per format/precision, each
point labelled with its variant, the front drawn), REPORT/stages.png (per-stage latency bars) and
REPORT/report.html (the same on one self-contained page: images embedded as base64, no external files).

The recommended variant of a machine is the fastest (lowest end-to-end p50 of the timed `edgedet run` loop)
whose accuracy is at most --budget points (default 1.0) below the best variant's there; the headline gives its
speed-up over its fp32 baseline (`fp32_reference`).

Each DIR is a bench output folder (its results.jsonl) or a .jsonl file; folders copied back from several
devices merge into one comparison, but only when they were measured alike: on the same data (the data set
fingerprint), at the same thresholds and with the same outputs in the timed loop (`setup_key`). Otherwise the
report is refused with a one-line message naming the difference; with --allow-mixed each setup gets tables of
its own, titled with its setup, and is never compared with another. A bad input (an empty folder, a file from an
incompatible edgedet version, a truncated or malformed line) is reported per file and line, and everything else
still renders. matplotlib is imported only when the plots are drawn, so building this verb's parser stays light.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edgedet.device.errors import EdgedetError
from edgedet.device.thermals import thermal_summary
from .bench_record import IN_FRAME_STAGES, validate_record
from .provenance import machine_key

RESULTS_NAME = "results.jsonl"
MARKER_OF_FORMAT = {"onnx": "o", "tflite": "s", "pytorch": "^"}  # any other format gets "D"
COLOR_OF_PRECISION = {"fp32": "tab:blue", "fp16": "tab:green", "int8": "tab:orange"}  # others "tab:gray"
# one colour per stage of IN_FRAME_STAGES plus "other" and "output" (a test holds that every stage has one)
STAGE_COLORS = {"preprocess": "#4e79a7", "inference": "#f28e2b", "decode": "#59a14f", "roi_align": "#8cd17d",
                "stage2": "#f1ce63", "nms": "#e15759", "masks": "#b07aa1", "track": "#ff9da7", "zones": "#d37295",
                "semantic": "#76b7b2", "draw": "#edc948", "other": "#bab0ac", "output": "#9c755f"}
DEFAULT_BUDGET = 1.0  # accuracy points the recommended variant may lose against the best one
MIN_ACCURACY_SPAN = 10.0  # points: the accuracy axis spans at least this, so a 0.7-point gap does not look like a cliff


@dataclass
class Row:
    """One measured variant as the report shows it."""

    record: dict  # the results record (see edgedet.bench)
    pareto: bool  # no other variant on this machine is both faster and more accurate
    reference: Optional[dict]  # the fp32 record this row is compared with (None for fp32 rows without a peer)
    map_delta: Optional[float]  # accuracy minus the reference's, in points (percent)
    speedup: Optional[float]  # reference end-to-end p50 / this row's


@dataclass
class MachineTable:
    """All rows of one machine and one setup, sorted by end-to-end p50 latency."""

    machine: str  # machine_key of the records' provenance
    rows: List[Row]
    provenance: List[dict]  # the distinct provenance dicts of its records (commit and date may differ)
    setup: tuple = ()  # setup_key of its records: rows of different setups never share a table
    setup_text: str = ""  # describe_setup of its records
    mixed: bool = False  # the report holds several setups: the title names this one

    @property
    def title(self) -> str:
        return f"{self.machine}, {self.setup_text}" if self.mixed else self.machine


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="bench output folders (or results .jsonl files); several merge")
    parser.add_argument("--out", required=True, metavar="REPORT", help="folder for report.md, report.html, pareto.png, stages.png")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, metavar="POINTS",
                        help="accuracy (mAP points) the recommended variant may lose against the best (default 1.0)")
    parser.add_argument("--allow-mixed", action="store_true", help="report results measured on different data, "
                        "thresholds or outputs in separate tables instead of refusing them")


def main(args: argparse.Namespace) -> int:
    if not args.budget >= 0:
        raise EdgedetError(f"--budget must be >= 0 points, got {args.budget}")
    records, problems = load_results(args.dirs)
    for problem in list(problems) + record_warnings(records):
        print(f"edgedet report: warning: {problem}", file=sys.stderr)
    measured = [r for r in records if not r.get("error")]
    if not measured:
        raise EdgedetError(f"no usable results in {', '.join(args.dirs)} ({len(problems)} problem{'' if len(problems) == 1 else 's'} listed above)")
    if not args.allow_mixed:
        check_comparable(measured)
    paths = write_report(records, problems, Path(args.out), args.budget)
    tables = build_tables(measured)
    print("\n".join(headline(table, args.budget) for table in tables) + "\n")
    print(markdown_tables(tables))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


# ---------------------------------------------------------------- reading results


def load_results(paths: Sequence[str]) -> Tuple[List[dict], List[str]]:
    """All valid records from the given folders / .jsonl files, and one message per problem (file and line)."""
    records: List[dict] = []
    problems: List[str] = []
    seen = set()
    for path in paths:
        files, problem = _results_files(Path(path))
        if problem:
            problems.append(problem)
        for file in files:
            file_records, file_problems = read_results_file(file)
            problems.extend(file_problems)
            for record in file_records:
                key = (machine_key(record["provenance"]), record["variant"], record["provenance"].get("date"))
                if key not in seen:
                    seen.add(key)
                    records.append(record)
    return records, problems


def read_results_file(path: Path) -> Tuple[List[dict], List[str]]:
    """Records of one results.jsonl; a malformed, truncated or incompatible line is a problem, the rest is kept."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        return [], [f"{path}: cannot read ({error.strerror or error})"]
    records, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{path}:{number}: not valid JSON, truncated line? ({error.msg})")
            continue
        reason = validate_record(record)
        if reason:
            problems.append(f"{path}:{number}: {reason}")
        else:
            records.append(record)
    if not lines or not any(line.strip() for line in lines):
        problems.append(f"{path}: empty file")
    return records, problems


def _results_files(path: Path) -> Tuple[List[Path], Optional[str]]:
    if path.is_file():
        return [path], None
    if not path.exists():
        return [], f"{path}: no such file or folder"
    if (path / RESULTS_NAME).is_file():
        return [path / RESULTS_NAME], None
    return [], f"{path}: no {RESULTS_NAME} in this folder (not an `edgedet bench` output folder?)"


# ---------------------------------------------------------------- analysis


def accuracy_of(record: dict) -> Optional[float]:
    """The accuracy the front is drawn on: box mAP@0.5:0.95 in percent, else mIoU in percent, else None."""
    accuracy = record.get("accuracy") or {}
    for key in ("map", "miou"):
        value = accuracy.get(key)
        if isinstance(value, (int, float)) and value >= 0:
            return 100.0 * value
    return None


def latency_of(record: dict) -> float:
    """End-to-end p50 latency in ms."""
    return float(record["latency_ms"]["end_to_end"]["p50"])


ACCURACY_TIE = 0.05  # points: accuracies closer than this (the tables' rounding) count as equal on the front


def pareto_flags(records: Sequence[dict], tie: float = ACCURACY_TIE) -> List[bool]:
    """True for each record that no other record beats on latency (lower) without losing accuracy (more than
    `tie` points), or on accuracy (higher by more than `tie`) without losing latency."""
    points = [(latency_of(r), accuracy_of(r)) for r in records]
    flags = []
    for latency, accuracy in points:
        if accuracy is None:
            flags.append(False)
            continue
        dominated = any(
            other_acc is not None and other_lat <= latency and other_acc >= accuracy - tie
            and (other_lat < latency or other_acc > accuracy + tie)
            for other_lat, other_acc in points
        )
        flags.append(not dominated)
    return flags


def model_family(record: dict) -> str:
    """The model name without a precision suffix: "edgedet-n-320-int8" -> "edgedet-n-320"."""
    return re.sub(r"[-_.](int8|fp16|fp32|float16|float32|quant)$", "", record["model"]["name"], flags=re.IGNORECASE)


def fp32_reference(record: dict, candidates: Sequence[dict]) -> Optional[dict]:
    """The fp32 record `record` is compared with: same input size and threads, the same model family if there is
    one; of those the same format, else the PyTorch checkpoint, else ONNX, else any. None for fp32 records."""
    if record["model"]["precision"] == "fp32":
        return None
    same = [c for c in candidates if c["model"]["precision"] == "fp32" and c["imgsz"] == record["imgsz"]
            and c["threads"] == record["threads"]]
    same = [c for c in same if model_family(c) == model_family(record)] or same
    for fmt in (record["model"]["format"], "pytorch", "onnx"):
        for candidate in same:
            if candidate["model"]["format"] == fmt:
                return candidate
    return same[0] if same else None


def setup_key(record: dict) -> tuple:
    """What must be equal for two records to be compared: the data set fingerprint, the thresholds of the three
    passes and the outputs the timed loop wrote."""
    loops = record["loops"]
    accuracy, deploy, timed = loops["accuracy"], loops["deploy_accuracy"], loops["timed"]
    return (record["data"]["fingerprint"], accuracy.get("conf"), accuracy.get("nms_iou"), deploy.get("conf"),
            deploy.get("nms_iou"), deploy.get("match_iou"), timed.get("conf"), timed.get("nms_iou"),
            tuple(sorted(set(timed.get("outputs") or ()))))  # a set: "json,save" is "save,json"


def describe_setup(record: dict) -> str:
    """E.g. "data shapes (fingerprint 0123456789abcdef, 100 images); mAP at conf 0.001 / NMS IoU 0.6; P/R/F1 (match
    IoU 0.5) and the run loop at conf 0.25 / NMS IoU 0.45, outputs json"."""
    data, loops = record["data"], record["loops"]
    accuracy, deploy, timed = loops["accuracy"], loops["deploy_accuracy"], loops["timed"]
    run = f"conf {timed.get('conf')} / NMS IoU {timed.get('nms_iou')}"
    if (deploy.get("conf"), deploy.get("nms_iou")) == (timed.get("conf"), timed.get("nms_iou")):
        deployed = f"P/R/F1 (match IoU {deploy.get('match_iou')}) and the run loop at {run}"
    else:
        deployed = (f"P/R/F1 (match IoU {deploy.get('match_iou')}) at conf {deploy.get('conf')} / NMS IoU "
                    f"{deploy.get('nms_iou')}, the run loop at {run}")
    return (f"data {Path(str(data.get('path'))).name} (fingerprint {data['fingerprint']}, {data.get('images')} "
            f"images); mAP at conf {accuracy.get('conf')} / NMS IoU {accuracy.get('nms_iou')}; {deployed}, "
            f"outputs {','.join(timed.get('outputs') or []) or 'none'}")


SETUP_FIELDS = ("fingerprint", "mAP conf", "mAP NMS IoU", "P/R/F1 conf", "P/R/F1 NMS IoU", "match IoU",
                "run loop conf", "run loop NMS IoU", "outputs")  # names of setup_key's entries, in its order


def check_comparable(records: Sequence[dict]) -> None:
    """EdgedetError (one line) naming two records measured on different data, thresholds or outputs, and how
    their setups differ."""
    first: Dict[tuple, dict] = {}
    for record in records:
        first.setdefault(setup_key(record), record)
    if len(first) > 1:
        (key_a, a), (key_b, b) = list(first.items())[:2]
        differences = "; ".join(f"{name} {_setup_value(x)} vs {name} {_setup_value(y)}"
                                for name, x, y in zip(SETUP_FIELDS, key_a, key_b) if x != y)
        raise EdgedetError(f"cannot compare results measured differently: {a['variant']} on "
                           f"{machine_key(a['provenance'])} (data {a['data'].get('path')}) and {b['variant']} on "
                           f"{machine_key(b['provenance'])} (data {b['data'].get('path')}) differ in {differences} "
                           "(pass --allow-mixed to report each setup in tables of its own)")


def _setup_value(value) -> str:
    return (",".join(value) or "none") if isinstance(value, tuple) else str(value)


def build_tables(records: Sequence[dict]) -> List[MachineTable]:
    """One MachineTable per machine and setup (first-seen order); rows sorted by end-to-end p50 latency. With
    several setups each table's title names its own."""
    groups: Dict[tuple, List[dict]] = {}
    for record in records:
        if not record.get("error"):
            groups.setdefault((machine_key(record["provenance"]), setup_key(record)), []).append(record)
    mixed = len({setup for _, setup in groups}) > 1
    tables = []
    for (machine, setup), group in groups.items():
        group = sorted(group, key=latency_of)
        rows = [_row(record, flag, group) for record, flag in zip(group, pareto_flags(group))]
        provenance = _distinct([record["provenance"] for record in group])
        tables.append(MachineTable(machine, rows, provenance, setup, describe_setup(group[0]), mixed))
    return tables


def recommend(table: MachineTable, budget: float = DEFAULT_BUDGET) -> Optional[Row]:
    """The fastest row (end-to-end p50) whose accuracy is at most `budget` points below the table's best; ties on
    latency go to the more accurate. None when no row has an accuracy."""
    rows = [row for row in table.rows if accuracy_of(row.record) is not None]
    if not rows:
        return None
    best = max(accuracy_of(row.record) for row in rows)
    within = [row for row in rows if accuracy_of(row.record) >= best - budget - 1e-9]
    return min(within, key=lambda row: (latency_of(row.record), -accuracy_of(row.record)))


def headline(table: MachineTable, budget: float = DEFAULT_BUDGET) -> str:
    """One line: the recommended variant of `table`, its latency and frame rate, its accuracy against the best,
    its speed-up over its fp32 baseline and the thermals of its timed loop."""
    row = recommend(table, budget)
    if row is None:
        return f"{table.title}: no variant has an accuracy to recommend on"
    r, metric = row.record, accuracy_name(row.record)
    best = max((x for x in table.rows if accuracy_of(x.record) is not None), key=lambda x: accuracy_of(x.record))
    gap = accuracy_of(r) - accuracy_of(best.record)
    against = "the most accurate" if best is row else f"{gap:+.1f} points against {best.record['variant']}"
    text = (f"Recommended on {table.title}: {r['variant']}: {latency_of(r):.2f} ms end to end p50, "
            f"{_fmt(r.get('fps'))} FPS in the run loop, {metric} {accuracy_of(r):.1f} ({against}; budget "
            f"{_points(budget)}), {_speedup_text(row)}")
    thermals = (r.get("thermals") or {}).get("end")
    if thermals and thermals.get("throttled") and thermals["throttled"].get("now"):
        text += f"; throttled at the end of its timed loop ({thermal_summary(thermals)})"
    return text + "."


def _points(budget: float) -> str:
    return f"{budget:g} point" if budget == 1 else f"{budget:g} points"


def _speedup_text(row: Row) -> str:
    if row.record["model"]["precision"] == "fp32":
        return "itself an fp32 variant (no speed-up over fp32)"
    if row.reference is None or row.speedup is None:
        return "no fp32 baseline measured to compare with"
    return f"{row.speedup:.2f}x the speed of its fp32 baseline {row.reference['variant']}"


def accuracy_name(record: dict) -> str:
    """"mAP" when `accuracy_of` is the box mAP, else "mIoU"."""
    value = (record.get("accuracy") or {}).get("map")
    return "mAP" if isinstance(value, (int, float)) and value >= 0 else "mIoU"


def _row(record: dict, pareto: bool, group: Sequence[dict]) -> Row:
    reference = fp32_reference(record, group)
    map_delta = speedup = None
    if reference is not None:
        accuracy, ref_accuracy = accuracy_of(record), accuracy_of(reference)
        if accuracy is not None and ref_accuracy is not None:
            map_delta = accuracy - ref_accuracy
        speedup = latency_of(reference) / max(latency_of(record), 1e-9)
    return Row(record, pareto, reference, map_delta, speedup)


def _distinct(dicts: Sequence[dict]) -> List[dict]:
    seen, out = set(), []
    for d in dicts:
        key = json.dumps(d, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


# ---------------------------------------------------------------- tables (one column model for Markdown and HTML)


def _fmt(value, spec: str = ".1f", scale: float = 1.0) -> str:
    return "–" if not isinstance(value, (int, float)) or value < 0 else format(value * scale, spec)


def _latency(row: Row, stage: str, p: str) -> str:
    return _fmt(((row.record.get("latency_ms") or {}).get(stage) or {}).get(p), ".2f")


def _signed(value: Optional[float], spec: str = "+.1f") -> str:
    return "–" if value is None else format(value, spec)


def _deploy(row: Row, key: str) -> str:
    return _fmt((row.record.get("deploy_accuracy") or {}).get(key), ".2f")


def _temperatures(row: Row) -> str:
    """CPU °C at the start and the end of the timed loop, "52.0→61.3"; "–" where not readable."""
    thermals = row.record.get("thermals") or {}
    start, end = ((thermals.get(when) or {}).get("cpu_temp_c") for when in ("start", "end"))
    return "–" if start is None and end is None else f"{_fmt(start)}→{_fmt(end)}"


def _throttling(row: Row) -> str:
    """Throttling at the end of the timed loop: "no", "now: ..." and/or "since boot: ..."; "–" without vcgencmd."""
    throttled = ((row.record.get("thermals") or {}).get("end") or {}).get("throttled")
    if not throttled:
        return "–"
    parts = [f"now: {', '.join(throttled['now'])}"] if throttled.get("now") else []
    parts += [f"since boot: {', '.join(throttled['since_boot'])}"] if throttled.get("since_boot") else []
    return "; ".join(parts) or "no"


# (header, cell function); accuracy in percent, latency in ms
COLUMNS: List[Tuple[str, Callable[[Row], str]]] = [
    ("Pareto", lambda r: "★" if r.pareto else ""),
    ("model", lambda r: r.record["model"]["name"]),
    ("format", lambda r: r.record["model"]["format"]),
    ("precision", lambda r: r.record["model"]["precision"]),
    ("imgsz", lambda r: str(r.record["imgsz"])),
    ("threads", lambda r: str(r.record["threads"])),
    ("mAP", lambda r: _fmt(r.record["accuracy"].get("map"), scale=100)),
    ("ΔmAP", lambda r: _signed(r.map_delta)),
    ("mAP50", lambda r: _fmt(r.record["accuracy"].get("map50"), scale=100)),
    ("mask AP", lambda r: _fmt(r.record["accuracy"].get("mask_ap"), scale=100)),
    ("mIoU", lambda r: _fmt(r.record["accuracy"].get("miou"), scale=100)),
    ("P", lambda r: _deploy(r, "precision")),
    ("R", lambda r: _deploy(r, "recall")),
    ("F1", lambda r: _deploy(r, "f1")),
    ("p50 ms", lambda r: _latency(r, "end_to_end", "p50")),
    ("p90 ms", lambda r: _latency(r, "end_to_end", "p90")),
    ("p99 ms", lambda r: _latency(r, "end_to_end", "p99")),
    ("infer p50", lambda r: _latency(r, "inference", "p50")),
    ("speedup", lambda r: "–" if r.speedup is None else f"{r.speedup:.2f}x"),
    ("FPS", lambda r: _fmt(r.record.get("fps"))),
    ("CPU °C", _temperatures),
    ("throttled", _throttling),
    ("size MB", lambda r: _fmt(r.record["model"].get("size_mb"), ".2f")),
    ("peak MB", lambda r: _fmt(r.record.get("peak_mem_mb"), ".0f")),
]
TABLE_NOTE = ("★ = Pareto-optimal on this machine (no variant is both faster and more accurate; accuracies within "
              f"{ACCURACY_TIE} points count as equal). mAP, mAP50, mask AP and mIoU (in %) come from the accuracy "
              "pass at conf 0.001; P, R and F1 (0..1) from the boxes at the deployment threshold, matched at the IoU "
              "named below. Latency and FPS come from the timed loop of `edgedet run` at the deployment threshold "
              "(after the warm-up, over the repeats, with the outputs named below): p50/p90/p99 end to end in ms (a "
              "captured frame through preprocess, inference, decode, NMS, masks, semantic map and drawing, queues "
              "included, up to its outputs); infer p50 = the model alone; FPS = frames the loop delivered per second. "
              "ΔmAP (points) and speedup (end-to-end p50) against the fp32 variant of the same format, input size "
              "and threads (else the PyTorch or ONNX fp32 one). CPU °C and throttled: at the start → end of the timed "
              "loop (throttling from `vcgencmd get_throttled`, Raspberry Pi only; – where not readable).")


def markdown_tables(tables: Sequence[MachineTable]) -> str:
    """The per-machine tables as Markdown, each under a "## <machine>" heading with its provenance line."""
    parts = []
    for table in tables:
        lines = [f"## {table.title}", "", _provenance_line(table), "",
                 "| " + " | ".join(h for h, _ in COLUMNS) + " |",
                 "|" + "|".join("---" for _ in COLUMNS) + "|"]
        lines += ["| " + " | ".join(cell(row) for _, cell in COLUMNS) + " |" for row in table.rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def comparable_groups(tables: Sequence[MachineTable]) -> List[List[MachineTable]]:
    """The tables of each setup (first-seen order) that span more than one machine: what a cross-machine table
    may compare."""
    groups: Dict[tuple, List[MachineTable]] = {}
    for table in tables:
        groups.setdefault(table.setup, []).append(table)
    return [group for group in groups.values() if len(group) > 1]


def cross_machine_rows(tables: Sequence[MachineTable]) -> Tuple[List[str], List[List[str]]]:
    """Header and rows comparing each variant (model, format, precision, imgsz, threads) across the machines of
    tables of one setup: cells are "p50 ms / mAP"."""
    header = ["model", "format", "precision", "imgsz", "threads"] + [t.machine for t in tables]
    cells: Dict[tuple, Dict[str, str]] = {}
    for table in tables:
        for row in table.rows:
            r = row.record
            key = (r["model"]["name"], r["model"]["format"], r["model"]["precision"], r["imgsz"], r["threads"])
            cells.setdefault(key, {})[table.machine] = f"{latency_of(r):.2f} ms / {_fmt(accuracy_of(r))}"
    rows = [[str(v) for v in key] + [cells[key].get(t.machine, "–") for t in tables] for key in sorted(cells, key=str)]
    return header, rows


def _provenance_line(table: MachineTable) -> str:
    """CPU, cores, arch, OS, Python, library versions, commits, dates and the setup of one table."""
    provenance = table.provenance
    first = provenance[0]
    machine = first.get("machine") or {}
    libraries = first.get("libraries") or {}
    libs = ", ".join(f"{name} {version}" for name, version in sorted(libraries.items()))
    commits = sorted({str(p.get("commit"))[:12] + ("-dirty" if str(p.get("commit")).endswith("-dirty") else "")
                      for p in provenance})
    dates = sorted(str(p.get("date")) for p in provenance)
    date = dates[0] if dates[0] == dates[-1] else f"{dates[0]} .. {dates[-1]}"
    line = (f"CPU {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('arch')}; {machine.get('os')}; "
            f"Python {first.get('python')}; {libs}; commit {', '.join(commits)}; {date}")
    return f"{line}; measured on {table.setup_text}"


def _across_title(group: Sequence[MachineTable]) -> str:
    title = "Across machines (end-to-end p50 / mAP)"
    return f"{title}, {group[0].setup_text}" if group[0].mixed else title


def render_markdown(tables: Sequence[MachineTable], problems: Sequence[str], records: Sequence[dict],
                    budget: float = DEFAULT_BUDGET) -> str:
    parts = ["# edgedet report: accuracy vs latency", ""] + [f"**{headline(t, budget)}**\n" for t in tables]
    parts += ["![accuracy vs latency](pareto.png)", "", "![per-stage latency](stages.png)", "", TABLE_NOTE, "",
              markdown_tables(tables)]
    for group in comparable_groups(tables):
        header, rows = cross_machine_rows(group)
        parts += ["", f"## {_across_title(group)}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---" for _ in header) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]
    issues = list(problems) + record_warnings(records)
    if issues:
        parts += ["", "## Problems", ""] + [f"- {line}" for line in issues]
    return "\n".join(parts) + "\n"


def _failure_line(record: dict) -> str:
    return f"variant {record['variant']} on {machine_key(record['provenance'])} failed: {record['error']}"


def record_warnings(records: Sequence[dict]) -> List[str]:
    """One line per failed variant and per variant some of whose images failed during the evaluation."""
    lines = [_failure_line(r) for r in records if r.get("error")]
    for r in records:
        failed_images = (r.get("data") or {}).get("failed_images") or 0
        if not r.get("error") and failed_images:
            lines.append(f"variant {r['variant']} on {machine_key(r['provenance'])}: {failed_images} of "
                         f"{r['data'].get('images')} images failed (counted as no detections)")
    return lines


# ---------------------------------------------------------------- HTML


HTML_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:90%}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td.l{text-align:left}tr.pareto{background:#fff6d5}img{max-width:100%}.prov{color:#555;font-size:85%}
.headline{font-weight:bold}"""


def render_html(tables: Sequence[MachineTable], problems: Sequence[str], records: Sequence[dict],
                images: Dict[str, bytes], budget: float = DEFAULT_BUDGET) -> str:
    """One self-contained page: the headlines, tables, provenance, problems and the PNGs embedded as data URIs."""
    body = ["<h1>edgedet report: accuracy vs latency</h1>"]
    body += [f'<p class="headline">{html.escape(headline(table, budget))}</p>' for table in tables]
    body += [f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
             for alt, png in images.items()]
    body.append(f"<p>{html.escape(TABLE_NOTE)}</p>")
    for table in tables:
        body.append(f"<h2>{html.escape(table.title)}</h2>")
        body.append(f'<p class="prov">{html.escape(_provenance_line(table))}</p>')
        rows = [([cell(row) for _, cell in COLUMNS], row.pareto) for row in table.rows]
        body.append(_html_table([h for h, _ in COLUMNS], rows))
    for group in comparable_groups(tables):
        header, rows = cross_machine_rows(group)
        body.append(f"<h2>{html.escape(_across_title(group))}</h2>")
        body.append(_html_table(header, [(r, False) for r in rows]))
    issues = list(problems) + record_warnings(records)
    if issues:
        body.append("<h2>Problems</h2><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in issues) + "</ul>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>edgedet report</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _html_table(header: Sequence[str], rows: Sequence[Tuple[Sequence[str], bool]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = [f"<table><tr>{head}</tr>"]
    for cells, pareto in rows:
        tds = "".join(f'<td{" class=l" if not _numeric(c) else ""}>{html.escape(c)}</td>' for c in cells)
        lines.append(f'<tr{" class=pareto" if pareto else ""}>{tds}</tr>')
    return "\n".join(lines + ["</table>"])


def _numeric(text: str) -> bool:
    return text[:1].isdigit() or text[:1] in "+-–"


# ---------------------------------------------------------------- plots


def _pyplot():
    """matplotlib.pyplot on the Agg backend (no display), imported only when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(tables: Sequence[MachineTable], path: Path, budget: float = DEFAULT_BUDGET) -> None:
    """`pareto_figure` saved as a PNG."""
    plt = _pyplot()
    fig = pareto_figure(tables, budget)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def pareto_figure(tables: Sequence[MachineTable], budget: float = DEFAULT_BUDGET):
    """Accuracy (%) against end-to-end p50 latency (ms), one panel per table; marker shape = format, colour =
    precision; each point labelled with its variant; the Pareto front as a dashed step line; the recommended
    variant (`recommend`) starred. The accuracy axis follows `accuracy_axis`. Returns the matplotlib Figure."""
    plt = _pyplot()
    columns = min(len(tables), 2)
    lines = -(-len(tables) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(7.5 * columns, 5.5 * lines), squeeze=False)
    for ax, table in zip(axes.flat, tables):
        _pareto_panel(ax, table, budget)
    for ax in list(axes.flat)[len(tables):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def accuracy_axis(values: Sequence[float], min_span: float = MIN_ACCURACY_SPAN) -> Tuple[float, float]:
    """(low, high) of the accuracy axis in points: the values' range plus 10% each side, widened about its middle
    to at least `min_span` points, then moved inside 0..100. So a 0.7-point difference fills a tenth of the axis,
    not all of it."""
    low, high = min(values), max(values)
    pad = 0.1 * (high - low)
    low, high = low - pad, high + pad
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    if low < 0:
        low, high = 0.0, high - low
    if high > 100:
        low, high = max(0.0, low - (high - 100)), 100.0
    return low, high


def _pareto_panel(ax, table: MachineTable, budget: float) -> None:
    rows = [row for row in table.rows if accuracy_of(row.record) is not None]  # sorted by latency
    plotted = set()
    for rank, row in enumerate(rows):
        x, y = latency_of(row.record), accuracy_of(row.record)
        fmt, precision = row.record["model"]["format"], row.record["model"]["precision"]
        label = f"{fmt} {precision}"
        ax.scatter(x, y, marker=MARKER_OF_FORMAT.get(fmt, "D"), s=60, color=COLOR_OF_PRECISION.get(precision, "tab:gray"),
                   edgecolors="black", label=None if label in plotted else label, zorder=3)
        plotted.add(label)
        ax.annotate(row.record["variant"], (x, y), textcoords="offset points",
                    xytext=(6, 5 if rank % 2 == 0 else -11), fontsize=7)
    _draw_front(ax, [(latency_of(r.record), accuracy_of(r.record)) for r in rows if r.pareto],
                max((latency_of(r.record) for r in rows), default=0.0))
    chosen = recommend(table, budget)
    if chosen is not None:
        ax.scatter(latency_of(chosen.record), accuracy_of(chosen.record), marker="*", s=320, color="gold",
                   edgecolors="black", zorder=5, label=f"recommended (fastest within {_points(budget)} of the best)")
    if rows:
        ax.set_ylim(*accuracy_axis([accuracy_of(r.record) for r in rows]))
    ax.margins(x=0.25)
    ax.set_title(table.title, fontsize=9, wrap=True)
    ax.set_xlabel("end-to-end latency p50 (ms), edgedet run loop")
    ax.set_ylabel(f"{'box mAP@0.5:0.95' if rows and accuracy_name(rows[0].record) == 'mAP' else 'mIoU'} (%), "
                  f"axis spans >= {MIN_ACCURACY_SPAN:g} points")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _draw_front(ax, front: List[Tuple[float, float]], x_end: float) -> None:
    """The front as a dashed staircase (best accuracy within a latency budget), carried on to the slowest
    variant's latency, with each Pareto-optimal point ringed."""
    if not front:
        return
    xs, ys = (list(v) for v in zip(*sorted(front)))
    ax.scatter(xs, ys, s=220, facecolors="none", edgecolors="black", linewidths=1.2, zorder=4)
    xs.append(max(x_end, xs[-1]))
    ys.append(ys[-1])
    ax.step(xs, ys, where="post", linestyle="--", color="black", linewidth=1, label="Pareto front (ringed)", zorder=2)


def plot_stages(tables: Sequence[MachineTable], path: Path) -> None:
    """Per-stage p50 latency (ms) of the timed loop as stacked horizontal bars, one bar per variant, one panel per
    table: the stages inside end to end, "other" (the end-to-end p50 they do not cover: queues and waits between
    the loop's threads), then "output" (writing the outputs, after end to end)."""
    plt = _pyplot()
    heights = [max(2.0, 0.35 * len(t.rows) + 1.2) for t in tables]
    fig, axes = plt.subplots(len(tables), 1, figsize=(10, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, table in zip(axes.flat, tables):
        _stages_panel(ax, table)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _stages_panel(ax, table: MachineTable) -> None:
    labels = [row.record["variant"] for row in table.rows]
    left = [0.0] * len(table.rows)
    for stage in list(IN_FRAME_STAGES) + ["other", "output"]:
        widths = [_stage_p50(row.record, stage) for row in table.rows]
        if not any(widths):
            continue
        ax.barh(range(len(table.rows)), widths, left=left, color=STAGE_COLORS[stage], label=stage)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(table.rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("latency p50 (ms): end to end, then output")
    ax.set_title(table.title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _stage_p50(record: dict, stage: str) -> float:
    latency = record.get("latency_ms") or {}
    if stage == "other":
        covered = sum(_stage_p50(record, s) for s in IN_FRAME_STAGES)
        return max(0.0, latency_of(record) - covered)
    value = (latency.get(stage) or {}).get("p50")
    return float(value) if isinstance(value, (int, float)) else 0.0


# ---------------------------------------------------------------- writing


def write_report(records: Sequence[dict], problems: Sequence[str], out: Path,
                 budget: float = DEFAULT_BUDGET) -> Dict[str, Path]:
    """REPORT/{report.md, pareto.png, stages.png, report.html}; returns their paths by name."""
    tables = build_tables(records)
    if not tables:
        raise EdgedetError("no measured variant to report (every record failed or none was given)")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "pareto": out / "pareto.png", "stages": out / "stages.png",
             "html": out / "report.html"}
    plot_pareto(tables, paths["pareto"], budget)
    plot_stages(tables, paths["stages"])
    paths["markdown"].write_text(render_markdown(tables, problems, records, budget), encoding="utf-8")
    images = {"accuracy vs latency": paths["pareto"].read_bytes(), "per-stage latency": paths["stages"].read_bytes()}
    paths["html"].write_text(render_html(tables, problems, records, images, budget), encoding="utf-8")
    return paths
