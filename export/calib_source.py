"""Where calibration images come from: a data set (labelled, so class-balanced sampling works) or an image folder."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from calibration.sampling import CalibrationItem, items_from_folder
from device.errors import EdgedetError


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
    from edgedet.data import load_dataset

    try:
        return load_dataset(path, split=split)
    except EdgedetError:
        if split == "val":
            raise
        return load_dataset(path, split="val")
