"""`edgedet eval`: COCO box/mask AP of a results file, or of any model file run through the device runtime.

    edgedet eval --gt GT.json --pred PRED.json [--iou-type bbox|segm] [--json OUT.json]
    edgedet eval --model MODEL --data DATASET [--imgsz N] [--conf 0.001] [--iou 0.6] [--max-det 300]
                 [--threads N] [--json OUT.json] [--save-pred P.json]

The first form prints pycocotools' 12-line summary; the second also reports mask AP, mIoU and PQ where the model
has those heads, per-stage latency (p50/p90/p99) measured on the same run, and the model's provenance.
Torch is loaded only when a .pt checkpoint is evaluated.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from edgedet.device import layouts
from edgedet.device.errors import EdgedetError
from edgedet.device.output_paths import check_output_file, check_outputs_spare_inputs
from edgedet.device.pipeline import Detector
from .data import Dataset, coco_gt_dict, load_dataset
from .metrics import PanopticMeter, SemanticMeter, evaluate_coco, panoptic_from_semantic_and_instances, voc_evaluate
from .metrics.coco import STAT_KEYS, CocoParams, _STAT_SPECS, _summary_line
from .models.loading import is_shipped, torch_backend
from .progress import progress_bar

IOU_TYPES = ("bbox", "segm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `edgedet eval` (building the parser imports nothing heavy)."""
    files = parser.add_argument_group("evaluate a COCO results file")
    files.add_argument("--gt", help="COCO ground-truth JSON")
    files.add_argument("--pred", help="COCO results JSON (list of {image_id, category_id, score, bbox|segmentation})")
    files.add_argument("--iou-type", default="bbox", help="bbox (default) or segm")
    model = parser.add_argument_group("evaluate a model file")
    model.add_argument("--model", help="model file: .pt checkpoint, .onnx or .tflite (fp32, fp16 or int8)")
    model.add_argument("--data", help="data set: a folder from `edgedet data synth` (val split), a dataset.yaml or a COCO JSON")
    model.add_argument("--split", default="val", help="data set split (default val)")
    model.add_argument("--imgsz", type=int, default=None, help="input size for models without a fixed one (default: the model's)")
    model.add_argument("--conf", type=float, default=0.001, help="score threshold (default 0.001, as for mAP)")
    model.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold (default 0.6)")
    model.add_argument("--max-det", type=int, default=300, help="detections kept per image (default 300)")
    model.add_argument("--threads", type=int, default=None, help="inference threads (default: the backend's)")
    model.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    model.add_argument("--save-pred", help="write the predictions as a COCO results JSON")
    model.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--json", dest="json_out", help="write the metrics to this JSON file")


def main(args: argparse.Namespace) -> int:
    check_eval_outputs(args)
    if args.model is not None and not args.model.strip():
        raise EdgedetError("--model: empty value")
    if args.model or args.data:
        return _main_model(args)
    if not (args.gt and args.pred):
        raise EdgedetError("give --gt GT.json --pred PRED.json, or --model MODEL --data DATASET")
    return _main_files(args)


# ---------------------------------------------------------------- --gt / --pred


def _main_files(args: argparse.Namespace) -> int:
    iou_type = _check_iou_type(args.iou_type)
    gt = read_json(args.gt, "ground truth")
    results = read_json(args.pred, "results")
    evaluation = evaluate_coco(gt, results, iou_type)
    print(f"COCO {iou_type} evaluation of {args.pred} against {args.gt}")
    print("\n".join(evaluation.summary_lines()))
    _print_per_class(evaluation, gt)
    if iou_type == "bbox" and all("bbox" in r for r in results):

        voc = voc_evaluate(gt, results)["mAP"]
        voc11 = voc_evaluate(gt, results, use_11_point=True)["mAP"]
        print(f"VOC mAP@0.5: {_fmt(voc)} (all-point), {_fmt(voc11)} (11-point)")
    if args.json_out:
        write_json(args.json_out, evaluation.stats)
    return 0


def _check_iou_type(iou_type: str) -> str:
    if iou_type not in IOU_TYPES:
        raise EdgedetError(f"unknown iou type {iou_type!r}; expected bbox or segm")
    return iou_type


def _print_per_class(evaluation, gt: dict) -> None:
    names = {c.get("id"): c.get("name", str(c.get("id"))) for c in gt.get("categories", [])}
    ap = evaluation.per_class_ap()
    ap50 = evaluation.per_class_ap(iou=0.5)
    print(f"{'class':<20} {'AP':>7} {'AP50':>7}")
    for cat, value in ap.items():
        print(f"{str(names.get(cat, cat))[:20]:<20} {_fmt(value):>7} {_fmt(ap50[cat]):>7}")


def _fmt(value: float) -> str:
    return "-" if value < 0 else f"{value:.3f}"


def read_json(path, what: str):
    """Parsed JSON of `path`; a missing or malformed file is an EdgedetError naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise EdgedetError(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise EdgedetError(f"{what} file {path} is a directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EdgedetError(f"{what} file {path} is not valid JSON ({_short(error)})") from None


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:120]


def check_eval_outputs(args: argparse.Namespace) -> None:
    """EdgedetError, before the (long) evaluation, when --json or --save-pred cannot become a file, would replace
    an input (the model, --gt, --pred, a file of the data set) or both name one file."""
    outputs = [("--json", args.json_out), ("--save-pred", args.save_pred)]
    for flag, path in outputs:
        if path:
            check_output_file(path, flag)
    inputs = [("the model", args.model), ("the ground truth", args.gt), ("the results file", args.pred)]
    inputs += [("a file of the data set", path) for path in _dataset_files(args.data)]
    check_outputs_spare_inputs(outputs, inputs)


def _dataset_files(data) -> List[str]:
    """The annotation and description files of a data set (its JSON and YAML files), or [] without one."""
    if not data:
        return []
    path = Path(data)
    if path.is_file():
        return [str(path)]
    return [str(p) for p in path.rglob("*") if p.suffix.lower() in (".json", ".yaml", ".yml")] if path.is_dir() else []


def write_json(path, data) -> None:
    """Write `data` as JSON atomically (a temporary file renamed into place: never half a file, and no temporary
    file left when writing fails); an OSError becomes an EdgedetError naming `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise EdgedetError(f"cannot write {path}: {error.strerror or error}") from None


# ---------------------------------------------------------------- --model / --data


def _main_model(args: argparse.Namespace) -> int:
    if not (args.model and args.data):
        raise EdgedetError("--model and --data go together")

    dataset = load_dataset(args.data, split=args.split)
    report = evaluate_model(args.model, dataset, conf=args.conf, iou=args.iou, max_det=args.max_det,
                            threads=args.threads, progress=not args.no_progress, imgsz=args.imgsz,
                            limit=args.limit, save_pred=args.save_pred)
    print(format_report(report))
    if args.json_out:
        write_json(args.json_out, report)
    return 0


def evaluate_model(model_path_or_backend, dataset, conf: float = 0.001, iou: float = 0.6, max_det: int = 300,
                   threads: Optional[int] = None, progress: bool = True, imgsz=None, split: str = "val",
                   limit: Optional[int] = None, save_pred=None) -> dict:
    """Run a model over a data set through `device.Detector` and measure accuracy and latency in the same run.

    model_path_or_backend: .pt checkpoint (or "shipped", "shipped:ssd", "shipped:rcnn"), .onnx, .tflite, or a backend object (`.spec`, `.run`).
    dataset: an `edgedet.data.Dataset` or anything `load_dataset` reads (its `split`).
    limit: evaluate only the first N images (None: all).
    Returns a JSON-ready dict: "bbox" (12 COCO stats), "segm" (when the model has instance masks), "semantic"
    (mIoU, pixel_accuracy, per_class_iou, when the model has a semantic head), "panoptic" (PQ/SQ/RQ, with both),
    "latency_ms" ({stage: p50/p90/p99/mean/count}, including "end_to_end"), "provenance", "images", "errors".
    """
    dataset = _as_dataset(dataset, split)
    count = _image_count(len(dataset.samples), limit)
    samples = dataset.samples[:count]
    detector, provenance = _build_detector(model_path_or_backend, conf, iou, max_det, threads, imgsz)
    labelled = any(sample.semantic_path is not None for sample in samples)  # semantic ground truth exists
    plan = _EvalPlan.make(detector.spec, dataset, with_semantic=detector.has_semantic and labelled)
    state = _run_images(detector, samples, plan, progress, save_pred)
    report = _metrics(state, samples, dataset, plan)
    report["latency_ms"] = _latency(detector.timer)
    report["provenance"] = {**provenance, "conf": conf, "iou": iou, "max_det": max_det}
    report["images"] = len(samples)
    report["errors"] = state.errors
    return report


def _as_dataset(dataset, split: str):
    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset, split=split)


def _image_count(available: int, limit: Optional[int]) -> int:
    if available == 0:
        raise EdgedetError("the data set has no images to evaluate")
    if limit is None:
        return available
    if int(limit) < 1:
        raise EdgedetError(f"--limit must be >= 1, got {limit}")
    return min(int(limit), available)


def _build_detector(model, conf, iou, max_det, threads, imgsz):
    """(device.Detector, provenance dict) for a model path or a backend object."""
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if is_shipped(model) or path.suffix.lower() == ".pt":
            detector = Detector(torch_backend(model, threads, imgsz), conf=conf, iou=iou, max_det=max_det)
            fmt = "torch"
        else:
            detector = Detector(path, conf=conf, iou=iou, max_det=max_det, threads=threads, imgsz=imgsz)
            fmt = path.suffix.lstrip(".").lower()
        file = str(model)
    else:
        detector = Detector(model, conf=conf, iou=iou, max_det=max_det)
        file, fmt = str(getattr(model, "path", "")), str(getattr(model, "name", type(model).__name__))
    spec = detector.spec
    runtime = detector.backend.describe() if hasattr(detector.backend, "describe") else type(detector.backend).__name__
    provenance = {"file": file, "format": fmt, "precision": spec.precision, "input_size_hw": list(spec.input_size_hw),
                  "threads": getattr(detector.backend, "threads", threads), "runtime": runtime, "layout": spec.layout}
    return detector, provenance


@dataclass
class _EvalPlan:
    """What to measure and how model labels map onto the data set's."""
    category_of_class: List[int]  # model class id -> COCO category id of the data set
    with_masks: bool  # the model predicts instance masks (mask AP also needs segmentations in the ground truth)
    semantic_lut: Optional[np.ndarray]  # model semantic label -> data set semantic label (255 = none); None = no semantic
    thing_label_of_class: Optional[List[int]]  # model class id -> data set semantic label (panoptic); None = no panoptic
    stuff_labels: List[int]  # data set semantic labels that are stuff
    semantic_names: List[str]  # data set semantic names

    @classmethod
    def make(cls, spec, dataset, with_semantic: bool) -> "_EvalPlan":
        categories = _category_map(spec.names, dataset)
        has_protos = layouts.by_name(spec.layout).has_masks(spec)
        semantic_lut = None
        if with_semantic and dataset.semantic_names:
            semantic_lut = _label_lut(spec.semantic_names, dataset.semantic_names)
        things = None
        if semantic_lut is not None and has_protos and all(n in dataset.semantic_names for n in spec.names):
            things = [dataset.semantic_names.index(n) for n in spec.names]
        stuff = [i for i, n in enumerate(dataset.semantic_names) if n not in dataset.names]
        return cls(categories, has_protos, semantic_lut, things, stuff, list(dataset.semantic_names))


def _category_map(model_names: Sequence[str], dataset) -> List[int]:
    """Model class id -> data set category id: by name when the names match, else by index."""
    if all(n in dataset.names for n in model_names):
        return [int(dataset.category_ids[dataset.names.index(n)]) for n in model_names]
    if len(model_names) == len(dataset.names):
        return [int(c) for c in dataset.category_ids]
    raise EdgedetError(f"the model's {len(model_names)} classes ({', '.join(model_names[:5])}...) do not match the "
                       f"data set's {len(dataset.names)} ({', '.join(dataset.names[:5])}...)")


def _label_lut(model_names: Sequence[str], data_names: Sequence[str]) -> np.ndarray:
    """uint8 (256,) lookup: model semantic label -> data set label by name (by index when names are missing)."""
    lut = np.full(256, 255, dtype=np.uint8)
    for i, name in enumerate(model_names or data_names):
        if name in data_names:
            lut[i] = data_names.index(name)
        elif not model_names and i < len(data_names):
            lut[i] = i
    return lut


@dataclass
class _RunState:
    """What one pass over the images accumulates."""
    results: List[dict] = field(default_factory=list)  # COCO results (bbox, and segmentation when masks)
    semantic_meter: object = None  # SemanticMeter or None
    panoptic_meter: object = None  # PanopticMeter or None
    errors: List[str] = field(default_factory=list)  # one line per image that failed


EARLY_ABORT = 5  # stop when this many first images all fail (a broken model, not a bad frame)


def _run_images(detector, samples, plan: "_EvalPlan", progress: bool, save_pred) -> _RunState:
    """Predict every sample; accumulate COCO results, semantic confusion and panoptic counts."""
    state = _RunState()
    if plan.semantic_lut is not None:
        state.semantic_meter = SemanticMeter(len(plan.semantic_names))
        if plan.thing_label_of_class is not None:
            isthing = {i: i not in plan.stuff_labels for i in range(len(plan.semantic_names))}
            state.panoptic_meter = PanopticMeter(isthing)
    bar = progress_bar(len(samples), "eval", "img", enabled=progress)
    try:
        for done, sample in enumerate(samples):
            try:
                _evaluate_one(detector, sample, plan, state)
            except Exception as error:  # one bad frame must not end a long run: log it, go on
                text = str(error) if isinstance(error, EdgedetError) else f"{type(error).__name__}: {error}"
                state.errors.append(f"image {sample.image_id}: {text}")
                print(f"edgedet eval: image {sample.image_id} skipped: {text}", file=sys.stderr)
                if len(state.errors) == done + 1 == EARLY_ABORT:
                    raise EdgedetError(f"the first {EARLY_ABORT} images all failed; first: {state.errors[0]}") from None
            bar.update()
    except KeyboardInterrupt:
        if save_pred:
            write_json(save_pred, state.results)  # keep what was predicted so far
        raise
    finally:
        bar.close()
    if len(state.errors) == len(samples):
        raise EdgedetError(f"every image failed; first: {state.errors[0]}")
    if save_pred:
        write_json(save_pred, state.results)
    return state


def _evaluate_one(detector, sample, plan: "_EvalPlan", state: _RunState) -> None:
    image = sample.load_image()
    start = time.perf_counter()
    prepared = detector.prepare(image)
    outputs = detector.infer(prepared)
    semantic = detector.finish_semantic(outputs, prepared) if plan.semantic_lut is not None else None
    detections = detector.finish(outputs, prepared)
    detector.timer.add("end_to_end", (time.perf_counter() - start) * 1000.0)
    state.results += _coco_results(detections, sample.image_id, plan)
    if semantic is not None:
        pred = plan.semantic_lut[np.clip(semantic, 0, 255).astype(np.uint8)]
        gt = sample.semantic_map()
        state.semantic_meter.update(pred, gt)
        if state.panoptic_meter is not None:
            _panoptic_update(state.panoptic_meter, detections, pred, sample, gt, plan)


def _coco_results(detections, image_id, plan: "_EvalPlan") -> List[dict]:
    """COCO results of one image under an evaluation plan (its category ids, masks only where the model has them)."""
    kept = detections if plan.with_masks else detections.without_masks()
    return kept.to_coco(image_id, plan.category_of_class)


PANOPTIC_SCORE = 0.5  # detections at or above this score become panoptic thing segments


def _panoptic_update(meter, detections, semantic_pred, sample, semantic_gt, plan: "_EvalPlan") -> None:
    """Predicted panoptic map = confident instance masks (best first) + stuff from the semantic prediction."""
    keep = np.flatnonzero(detections.scores >= PANOPTIC_SCORE)
    keep = keep[np.argsort(-detections.scores[keep], kind="stable")]
    masks = detections.masks[keep] if detections.masks is not None else np.zeros((0, *semantic_pred.shape), bool)
    cats = [plan.thing_label_of_class[int(c)] for c in detections.class_ids[keep]]
    pred_ids, pred_segments = panoptic_from_semantic_and_instances(semantic_pred, masks, cats, plan.stuff_labels)
    gt_cats = [plan.thing_label_of_class[int(c)] for c in sample.class_ids]
    gt_ids, gt_segments = panoptic_from_semantic_and_instances(
        semantic_gt, sample.instance_masks(), gt_cats, plan.stuff_labels, sample.iscrowd, overlap_keep=0.0)
    meter.update(gt_ids, gt_segments, pred_ids, {k: s.category for k, s in pred_segments.items()})


def _metrics(state: _RunState, samples, dataset, plan: "_EvalPlan") -> dict:
    """COCO bbox (+ segm), semantic and panoptic figures of one run."""
    subset = Dataset(dataset.names, dataset.semantic_names, list(samples), dataset.root, dataset.category_ids)
    gt = coco_gt_dict(subset)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    box = evaluate_coco(gt, state.results, "bbox")
    report = {"bbox": box.stats, "per_class_ap": {"bbox": _named(box.per_class_ap(), names)}}
    with_segm = all("segmentation" in r for r in state.results) and all("segmentation" in a for a in gt["annotations"])
    if plan.with_masks and with_segm:
        mask = evaluate_coco(gt, state.results, "segm")
        report["segm"] = mask.stats
        report["per_class_ap"]["segm"] = _named(mask.per_class_ap(), names)
    if state.semantic_meter is not None:
        report["semantic"] = state.semantic_meter.compute(plan.semantic_names)
    if state.panoptic_meter is not None:
        report["panoptic"] = state.panoptic_meter.compute(dict(enumerate(plan.semantic_names)))
    return report


def _named(per_class: dict, names: dict) -> dict:
    """{category id: AP} -> {class name: AP (IoU .50:.95, -1 without ground truth)}."""
    return {str(names.get(cat, cat)): value for cat, value in per_class.items()}


def _latency(timer) -> dict:
    """{stage: {p50, p90, p99, mean, count}} in ms over the run."""
    return {stage: {k: float(v) for k, v in stats.items()} for stage, stats in timer.summary().items()}


def format_report(report: dict) -> str:
    """Human-readable summary of evaluate_model's dict: COCO lines, semantic, panoptic, latency, provenance."""
    lines = []
    prov = report.get("provenance", {})
    lines.append(f"model {prov.get('file')} [{prov.get('format')} {prov.get('precision')} "
                 f"{'x'.join(str(v) for v in prov.get('input_size_hw', []))}] on {prov.get('runtime')}; "
                 f"{report.get('images')} images")
    for kind in ("bbox", "segm"):
        if kind in report:
            lines.append(f"COCO {kind}:")
            lines += [_summary_line(CocoParams(), spec, report[kind][k]) for k, spec in zip(STAT_KEYS, _STAT_SPECS)]
            per_class = report.get("per_class_ap", {}).get(kind, {})
            lines.append("  AP per class: " + "  ".join(f"{name} {_fmt(v)}" for name, v in per_class.items()))
    if "semantic" in report:
        sem = report["semantic"]
        lines.append(f"semantic: mIoU {sem['mIoU']:.4f}  pixel accuracy {sem['pixel_accuracy']:.4f}")
        lines.append("  " + "  ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in sem["per_class_iou"].items()))
    if "panoptic" in report:
        pan = report["panoptic"]
        lines.append("panoptic: " + "  ".join(
            f"{name} PQ {d['PQ']:.4f} SQ {d['SQ']:.4f} RQ {d['RQ']:.4f}"
            for name, d in (("all", pan), ("things", pan["things"]), ("stuff", pan["stuff"]))))
    lines.append(f"{'latency ms':<12} {'p50':>9} {'p90':>9} {'p99':>9}")
    for stage, stats in report.get("latency_ms", {}).items():
        lines.append(f"{stage:<12} {stats['p50']:>9.2f} {stats['p90']:>9.2f} {stats['p99']:>9.2f}")
    if report.get("errors"):
        lines.append(f"{len(report['errors'])} image(s) failed; first: {report['errors'][0]}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    from .cli import main as cli_main

    sys.exit(cli_main(["eval", *sys.argv[1:]]))
