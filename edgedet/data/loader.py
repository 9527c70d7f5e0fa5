"""`load_dataset`: one entry point for every data set layout the project reads.

Accepted paths: a folder written by `edgedet data synth` / `edgedet data convert --to coco`
(DIR/annotations/instances_<split>.json), a YOLO folder (DIR/images/<split>, DIR/labels/<split>),
a dataset.yaml (Ultralytics keys, plus edgedet's optional coco_<split> and semantic_names), or a
COCO instances JSON.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgedet.device.errors import EdgedetError
from .coco import read_coco
from .sample import Dataset
from .yamlio import read_yaml
from .yolo import read_yolo


def load_dataset(path, split: str = "val", images_dir: Optional[Path] = None, semantic_dir: Optional[Path] = None,
                 skip_invalid: bool = False) -> Dataset:
    """Read `split` of the data set at `path` (folder, dataset.yaml or COCO JSON) into a Dataset.

    images_dir / semantic_dir override the image and class-map folders of a COCO JSON. Malformed records raise
    EdgedetError naming file, record and problem; with skip_invalid they are dropped and listed in Dataset.skipped.
    """
    path = Path(path)
    if not path.exists():
        raise EdgedetError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".json":
        return read_coco(path, images_dir, semantic_dir, skip_invalid)
    if path.suffix.lower() in (".yaml", ".yml"):
        return _load_yaml(path, split, skip_invalid)
    if path.is_dir():
        return _load_folder(path, split, images_dir, semantic_dir, skip_invalid)
    raise EdgedetError(f"{path}: expected a data set folder, a dataset.yaml or a COCO .json file")


def _load_folder(folder: Path, split: str, images_dir, semantic_dir, skip_invalid: bool) -> Dataset:
    """A folder: its dataset.yaml if any, else the COCO or YOLO layout found inside."""
    for name in ("dataset.yaml", "data.yaml"):
        if (folder / name).is_file():
            return _load_yaml(folder / name, split, skip_invalid)
    coco_json = folder / "annotations" / f"instances_{split}.json"
    if coco_json.is_file():
        return read_coco(coco_json, images_dir, semantic_dir, skip_invalid)
    if (folder / "images" / split).is_dir():
        return read_yolo(folder / "images" / split, names=None, skip_invalid=skip_invalid)
    raise EdgedetError(f"{folder}: no dataset.yaml, annotations/instances_{split}.json or images/{split} folder")


def _load_yaml(yaml_path: Path, split: str, skip_invalid: bool) -> Dataset:
    """A dataset.yaml: COCO annotations if it names coco_<split>, else YOLO images/labels folders."""
    config = read_yaml(yaml_path)
    root = Path(config.get("path") or yaml_path.parent)
    if not root.is_absolute():
        root = yaml_path.parent / root
    if not root.is_dir():
        root = yaml_path.parent  # the folder was moved since the yaml was written
    names = _names_list(config.get("names"), yaml_path)
    semantic_names = list(config.get("semantic_names") or [])
    if config.get(f"coco_{split}"):
        images_dir = root / config[split] if config.get(split) else None
        dataset = read_coco(root / config[f"coco_{split}"], images_dir, None, skip_invalid, semantic_names or None)
    elif config.get(split):
        dataset = read_yolo(root / str(config[split]), names=names, skip_invalid=skip_invalid,
                            semantic_names=semantic_names)
    else:
        raise EdgedetError(f"{yaml_path}: no '{split}' entry")
    if names and dataset.names != names:
        raise EdgedetError(f"{yaml_path}: names {names} differ from the annotations' categories {dataset.names}")
    return dataset


def _names_list(names, yaml_path: Path) -> list:
    """Ultralytics `names` as a list (given as a list or as a {index: name} mapping with indices 0..C-1)."""
    if names is None:
        return []
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    raise EdgedetError(f"{yaml_path}: 'names' must be a list or a mapping 0..C-1 -> name")
