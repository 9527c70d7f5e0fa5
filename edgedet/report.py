"""`edgedet report DIR [DIR ...] --out REPORT`: accuracy against latency from `edgedet bench` results.

Writes REPORT/report.md (one table per machine, sorted by end-to-end p50 latency, Pareto-optimal rows marked
with a star, deltas against the fp32 reference), REPORT/pareto.png (accuracy against latency, one marker per
format/precision, labelled points, the front drawn), REPORT/stages.png (per-stage latency bars) and
REPORT/report.html (the same on one self-contained page: images embedded as base64, no external files).

Each DIR is a bench output folder (its results.jsonl) or a .jsonl file; folders copied back from several
devices merge into one comparison. A bad input (an empty folder, a file from an incompatible edgedet version,
a truncated or malformed line) is reported per file and line, and everything else still renders.
matplotlib is imported only when the plots are drawn, so building this verb's parser stays light.
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
from .bench_record import STAGES, validate_record
from .provenance import machine_key

RESULTS_NAME = "results.jsonl"
MARKER_OF_FORMAT = {"onnx": "o", "tflite": "s", "pytorch": "^"}  # any other format gets "D"
COLOR_OF_PRECISION = {"fp32": "tab:blue", "fp16": "tab:green", "int8": "tab:orange"}  # others "tab:gray"
STAGE_COLORS = {"preprocess": "#4e79a7", "inference": "#f28e2b", "decode": "#59a14f", "nms": "#e15759",
                "masks": "#b07aa1", "semantic": "#76b7b2", "other": "#bab0ac"}


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
    """All rows of one machine, sorted by end-to-end p50 latency."""

    machine: str  # machine_key of the records' provenance
    rows: List[Row]
    provenance: List[dict]  # the distinct provenance dicts of its records (commit and date may differ)


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="bench output folders (or results .jsonl files); several merge")
    parser.add_argument("--out", required=True, metavar="REPORT", help="folder for report.md, report.html, pareto.png, stages.png")


def main(args: argparse.Namespace) -> int:
    records, problems = load_results(args.dirs)
    for problem in list(problems) + record_warnings(records):
        print(f"edgedet report: warning: {problem}", file=sys.stderr)
    measured = [r for r in records if not r.get("error")]
    if not measured:
        raise EdgedetError(f"no usable results in {', '.join(args.dirs)} ({len(problems)} problems listed above)")
    paths = write_report(records, problems, Path(args.out))
    print(markdown_tables(build_tables(measured)))
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


def build_tables(records: Sequence[dict]) -> List[MachineTable]:
    """One MachineTable per machine (first-seen order); rows sorted by end-to-end p50 latency."""
    groups: Dict[str, List[dict]] = {}
    for record in records:
        if not record.get("error"):
            groups.setdefault(machine_key(record["provenance"]), []).append(record)
    tables = []
    for machine, group in groups.items():
        group = sorted(group, key=latency_of)
        rows = [_row(record, flag, group) for record, flag in zip(group, pareto_flags(group))]
        provenance = _distinct([record["provenance"] for record in group])
        tables.append(MachineTable(machine, rows, provenance))
    return tables


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
    ("p50 ms", lambda r: _latency(r, "end_to_end", "p50")),
    ("p90 ms", lambda r: _latency(r, "end_to_end", "p90")),
    ("p99 ms", lambda r: _latency(r, "end_to_end", "p99")),
    ("infer p50", lambda r: _latency(r, "inference", "p50")),
    ("speedup", lambda r: "–" if r.speedup is None else f"{r.speedup:.2f}x"),
    ("FPS", lambda r: _fmt(r.record.get("fps"))),
    ("size MB", lambda r: _fmt(r.record["model"].get("size_mb"), ".2f")),
    ("peak MB", lambda r: _fmt(r.record.get("peak_mem_mb"), ".0f")),
]
TABLE_NOTE = ("★ = Pareto-optimal on this machine (no variant is both faster and more accurate; accuracies within "
              f"{ACCURACY_TIE} points count as equal). mAP = box "
              "mAP@0.5:0.95 in %; ΔmAP (points) and speedup (end-to-end p50) against the fp32 variant of the same "
              "format, input size and threads (else the PyTorch or ONNX fp32 one). Latency in ms: p50/p90/p99 end to end (one "
              "frame through preprocess, inference, decode, NMS, masks, semantic map); infer p50 = the model alone.")


def markdown_tables(tables: Sequence[MachineTable]) -> str:
    """The per-machine tables as Markdown, each under a "## <machine>" heading with its provenance line."""
    parts = []
    for table in tables:
        lines = [f"## {table.machine}", "", _provenance_line(table.provenance, [row.record for row in table.rows]), "",
                 "| " + " | ".join(h for h, _ in COLUMNS) + " |",
                 "|" + "|".join("---" for _ in COLUMNS) + "|"]
        lines += ["| " + " | ".join(cell(row) for _, cell in COLUMNS) + " |" for row in table.rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def cross_machine_rows(tables: Sequence[MachineTable]) -> Tuple[List[str], List[List[str]]]:
    """Header and rows comparing each variant (model, format, precision, imgsz, threads) across machines:
    cells are "p50 ms / mAP"."""
    header = ["model", "format", "precision", "imgsz", "threads"] + [t.machine for t in tables]
    cells: Dict[tuple, Dict[str, str]] = {}
    for table in tables:
        for row in table.rows:
            r = row.record
            key = (r["model"]["name"], r["model"]["format"], r["model"]["precision"], r["imgsz"], r["threads"])
            cells.setdefault(key, {})[table.machine] = f"{latency_of(r):.2f} ms / {_fmt(accuracy_of(r))}"
    rows = [[str(v) for v in key] + [cells[key].get(t.machine, "–") for t in tables] for key in sorted(cells, key=str)]
    return header, rows


def _provenance_line(provenance: Sequence[dict], records: Sequence[dict] = ()) -> str:
    """CPU, cores, arch, OS, Python, library versions, commits, dates and the run settings of one machine."""
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
    settings = sorted({(s.get("conf"), s.get("iou")) for s in (r.get("settings") or {} for r in records) if s})
    if settings:
        line += "; measured at " + ", ".join(f"conf {conf} / NMS IoU {iou}" for conf, iou in settings)
    return line


def render_markdown(tables: Sequence[MachineTable], problems: Sequence[str], records: Sequence[dict]) -> str:
    parts = ["# edgedet report: accuracy vs latency", "", "![accuracy vs latency](pareto.png)", "",
             "![per-stage latency](stages.png)", "", TABLE_NOTE, "", markdown_tables(tables)]
    if len(tables) > 1:
        header, rows = cross_machine_rows(tables)
        parts += ["", "## Across machines (end-to-end p50 / mAP)", "", "| " + " | ".join(header) + " |",
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
th{background:#f3f3f3}td.l{text-align:left}tr.pareto{background:#fff6d5}img{max-width:100%}.prov{color:#555;font-size:85%}"""


def render_html(tables: Sequence[MachineTable], problems: Sequence[str], records: Sequence[dict],
                images: Dict[str, bytes]) -> str:
    """One self-contained page: the tables, provenance, problems and the PNGs embedded as data URIs."""
    body = ["<h1>edgedet report: accuracy vs latency</h1>"]
    body += [f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
             for alt, png in images.items()]
    body.append(f"<p>{html.escape(TABLE_NOTE)}</p>")
    for table in tables:
        body.append(f"<h2>{html.escape(table.machine)}</h2>")
        body.append(f'<p class="prov">{html.escape(_provenance_line(table.provenance, [row.record for row in table.rows]))}</p>')
        rows = [([cell(row) for _, cell in COLUMNS], row.pareto) for row in table.rows]
        body.append(_html_table([h for h, _ in COLUMNS], rows))
    if len(tables) > 1:
        header, rows = cross_machine_rows(tables)
        body.append("<h2>Across machines (end-to-end p50 / mAP)</h2>")
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


def plot_pareto(tables: Sequence[MachineTable], path: Path) -> None:
    """Accuracy (%) against end-to-end p50 latency (ms), one panel per machine; marker shape = format, colour =
    precision; each point labelled with input size and threads; the Pareto front as a dashed step line."""
    plt = _pyplot()
    columns = min(len(tables), 2)
    lines = -(-len(tables) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(7 * columns, 5 * lines), squeeze=False)
    for ax, table in zip(axes.flat, tables):
        _pareto_panel(ax, table)
    for ax in list(axes.flat)[len(tables):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pareto_panel(ax, table: MachineTable) -> None:
    rows = [row for row in table.rows if accuracy_of(row.record) is not None]  # sorted by latency
    families = {model_family(row.record) for row in rows}
    plotted = set()
    for rank, row in enumerate(rows):
        x, y = latency_of(row.record), accuracy_of(row.record)
        fmt, precision = row.record["model"]["format"], row.record["model"]["precision"]
        label = f"{fmt} {precision}"
        ax.scatter(x, y, marker=MARKER_OF_FORMAT.get(fmt, "D"), s=60, color=COLOR_OF_PRECISION.get(precision, "tab:gray"),
                   edgecolors="black", label=None if label in plotted else label, zorder=3)
        plotted.add(label)
        text = f"{row.record['imgsz']}px {row.record['threads']}t"
        text = f"{model_family(row.record)} {text}" if len(families) > 1 else text
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 5 if rank % 2 == 0 else -11), fontsize=7)
    _draw_front(ax, [(latency_of(r.record), accuracy_of(r.record)) for r in rows if r.pareto],
                max((latency_of(r.record) for r in rows), default=0.0))
    ax.margins(x=0.15, y=0.12)
    ax.set_title(table.machine, fontsize=9)
    ax.set_xlabel("end-to-end latency p50 (ms)")
    ax.set_ylabel("box mAP@0.5:0.95 (%)")
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
    """Per-stage p50 latency (ms) as stacked horizontal bars, one bar per variant, one panel per machine;
    "other" is the end-to-end p50 not covered by the stage medians."""
    plt = _pyplot()
    heights = [max(2.0, 0.35 * len(t.rows) + 1.2) for t in tables]
    fig, axes = plt.subplots(len(tables), 1, figsize=(9, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, table in zip(axes.flat, tables):
        _stages_panel(ax, table)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _stages_panel(ax, table: MachineTable) -> None:
    stages = [s for s in STAGES if s != "end_to_end"]
    labels = [f"{r.record['model']['format']} {r.record['model']['precision']} {r.record['imgsz']}px "
              f"{r.record['threads']}t" for r in table.rows]
    left = [0.0] * len(table.rows)
    for stage in stages + ["other"]:
        widths = [_stage_p50(row.record, stage) for row in table.rows]
        if not any(widths):
            continue
        ax.barh(range(len(table.rows)), widths, left=left, color=STAGE_COLORS[stage], label=stage)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(table.rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("latency p50 (ms)")
    ax.set_title(table.machine, fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _stage_p50(record: dict, stage: str) -> float:
    latency = record.get("latency_ms") or {}
    if stage == "other":
        covered = sum(_stage_p50(record, s) for s in STAGES if s != "end_to_end")
        return max(0.0, latency_of(record) - covered)
    value = (latency.get(stage) or {}).get("p50")
    return float(value) if isinstance(value, (int, float)) else 0.0


# ---------------------------------------------------------------- writing


def write_report(records: Sequence[dict], problems: Sequence[str], out: Path) -> Dict[str, Path]:
    """REPORT/{report.md, pareto.png, stages.png, report.html}; returns their paths by name."""
    tables = build_tables(records)
    if not tables:
        raise EdgedetError("no measured variant to report (every record failed or none was given)")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "pareto": out / "pareto.png", "stages": out / "stages.png",
             "html": out / "report.html"}
    plot_pareto(tables, paths["pareto"])
    plot_stages(tables, paths["stages"])
    paths["markdown"].write_text(render_markdown(tables, problems, records), encoding="utf-8")
    images = {"accuracy vs latency": paths["pareto"].read_bytes(), "per-stage latency": paths["stages"].read_bytes()}
    paths["html"].write_text(render_html(tables, problems, records, images), encoding="utf-8")
    return paths
