"""What `edgedet export` and `edgedet calibrate` hand to export/ besides the checkpoint (edgedet.models.loading):
calibration samples from a data set or image folder, and the evaluator behind the accuracy gate.

export/ never imports edgedet (ARCHITECTURE.md: edgedet -> export), so everything that needs edgedet's models,
data sets or evaluator is built here and passed to export/ as an argument.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from edgedet.calibration.sampling import CalibrationItem, items_from_folder
from edgedet.device.errors import EdgedetError
from edgedet.export.accuracy import Evaluate
from .data import load_dataset
from .evaluate import evaluate_model


# ---------------------------------------------------------------- calibration samples


def calibration_items(path, split: str = "train") -> Tuple[List[CalibrationItem], str]:
    """(items, description) from a data set (`split`, else its val split) or a plain folder of images."""
    path = Path(path)
    if not path.exists():
        raise EdgedetError(f"calibration data {path} does not exist")
    if is_dataset(path):
        dataset = _load_split(path, split)
        items = [CalibrationItem(Path(s.image_path), tuple(int(c) for c in s.class_ids)) for s in dataset.samples]
        if not items:
            raise EdgedetError(f"calibration data set {path} has no images")
        return items, f"data set {path}"
    return items_from_folder(path), f"image folder {path}"


def is_dataset(path: Path) -> bool:
    """A dataset.yaml / COCO JSON, or a folder holding one (what `edgedet.data.load_dataset` reads)."""
    if path.is_file():
        return path.suffix.lower() in (".yaml", ".yml", ".json")
    return any((path / name).is_file() for name in ("dataset.yaml", "data.yaml")) or (path / "annotations").is_dir()


def _load_split(path: Path, split: str):
    try:
        return load_dataset(path, split=split)
    except EdgedetError:
        if split == "val":
            raise
        return load_dataset(path, split="val")


def validation_data(data: Optional[str], calib: Optional[str]) -> Optional[str]:
    """The data set the accuracy check runs on: `data`, else `calib` if it is a data set, else None."""
    return data or (calib if calib and is_dataset(Path(calib)) else None)


# ---------------------------------------------------------------- the evaluator


def evaluator(data, limit: Optional[int] = None, threads: Optional[int] = None) -> Evaluate:
    """export.accuracy.Evaluate over `data`'s val split: model path or backend -> the four metrics in points."""
    def evaluate(model) -> Dict[str, float]:
        return evaluate_backend(model, data, limit=limit, threads=threads)

    return evaluate


def evaluate_backend(backend, data, split: str = "val", limit: Optional[int] = None,
                     threads: Optional[int] = None) -> Dict[str, float]:
    """mAP@.5:.95, mAP@.5, mask AP and mIoU (points) of a backend or model path, via edgedet.evaluate.evaluate_model."""
    return metrics_from_report(evaluate_model(backend, data, split=split, limit=limit, threads=threads, progress=False))


# export.accuracy.METRICS key -> (section, key) in evaluate_model's report
_REPORT_KEYS = {"map": ("bbox", "AP"), "map50": ("bbox", "AP50"), "mask_ap": ("segm", "AP"), "miou": ("semantic", "mIoU")}


def metrics_from_report(report: dict) -> Dict[str, float]:
    """The four figures in points; NaN where the report lacks the section or marks it undefined (-1)."""
    out = {}
    for key, (section, name) in _REPORT_KEYS.items():
        value = report.get(section, {}).get(name)
        out[key] = float("nan") if value is None or value < 0 else float(value) * 100.0
    return out
