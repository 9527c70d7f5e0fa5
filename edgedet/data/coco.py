"""COCO instances JSON: read into a `Dataset`, write from one, and build the ground-truth dict for evaluation.

Class ids are contiguous indices over the categories sorted by COCO id; `Dataset.category_ids`
maps them back (`category_id = dataset.category_ids[class_id]`), so predictions and ground truth
speak the same ids. Boxes in COCO are xywh (top-left, size) in pixels.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from edgedet.device.boxes import xywh_to_xyxy, xyxy_to_xywh
from edgedet.device.errors import EdgedetError
from .sample import Dataset, Sample

BOX_TOLERANCE_PX = 1.0  # a box may stick out of its image by this much (rounding) before it is malformed


class RecordProblems:
    """Per-record problems of one source file: raise EdgedetError on the first, or, when skipping invalid records,
    keep one message per dropped record in `messages`."""

    def __init__(self, source: Path, skip_invalid: bool):
        self.source = source  # the file the records come from (named in every message)
        self.skip_invalid = skip_invalid  # drop and list instead of raising
        self.messages: List[str] = []  # "<file>: <record>: <problem>" of each dropped record

    def report(self, record: str, problem: str) -> None:
        """Raise, or remember, `problem` of `record` (e.g. "annotation id 7 (#6)")."""
        message = f"{self.source}: {record}: {problem}"
        if not self.skip_invalid:
            raise EdgedetError(message + " (use --skip-invalid to drop such records)")
        self.messages.append(message)


def read_json(path: Path) -> dict:
    """Load a JSON file; EdgedetError naming the file and the position of a syntax error."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError as error:
        raise EdgedetError(f"{path}: file not found") from error
    except json.JSONDecodeError as error:
        raise EdgedetError(f"{path}: bad JSON: {error.msg} at line {error.lineno} column {error.colno}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise EdgedetError(f"{path}: cannot read: {error}") from error


def read_coco(json_path: Path, images_dir: Optional[Path] = None, semantic_dir: Optional[Path] = None,
              skip_invalid: bool = False, semantic_names: Optional[List[str]] = None) -> Dataset:
    """Read a COCO instances JSON into a Dataset.

    images_dir: folder of the `file_name`s (default: guessed next to the JSON, see `guess_images_dir`).
    semantic_dir: folder of class-map PNGs (per image `semantic_file_name`, else `<stem>.png`); default: the
    `semantic` folder beside images_dir if it exists. Malformed records raise EdgedetError, or are dropped and
    listed in `Dataset.skipped` when skip_invalid.
    """
    json_path = Path(json_path)
    coco = read_json(json_path)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise EdgedetError(f"{json_path}: not a COCO instances file (no 'images' list)")
    problems = RecordProblems(json_path, skip_invalid)
    category_ids, names = _read_categories(coco, json_path)
    images_dir = Path(images_dir) if images_dir else guess_images_dir(json_path, coco["images"])
    if semantic_dir is None and (images_dir.parent / "semantic").is_dir():
        semantic_dir = images_dir.parent / "semantic"
    images = _read_images(coco["images"], images_dir, semantic_dir, problems)
    listed = {record.get("id") for record in coco["images"] if isinstance(record, dict)}
    instances = _read_annotations(coco.get("annotations", []), images, listed, category_ids, problems)
    samples = [_make_sample(record, instances.get(image_id, [])) for image_id, record in images.items()]
    semantic_names = semantic_names if semantic_names is not None else list(coco.get("semantic_names", []))
    return Dataset(names=names, semantic_names=semantic_names, samples=samples, root=images_dir.parent,
                   category_ids=category_ids, skipped=problems.messages)


def _read_categories(coco: dict, json_path: Path) -> Tuple[List[int], List[str]]:
    """(category ids sorted, names in the same order) of the 'categories' list."""
    categories = coco.get("categories")
    if not isinstance(categories, list) or not categories:
        raise EdgedetError(f"{json_path}: no 'categories' list")
    try:
        ordered = sorted(categories, key=lambda c: int(c["id"]))
        return [int(c["id"]) for c in ordered], [str(c["name"]) for c in ordered]
    except (KeyError, TypeError, ValueError) as error:
        raise EdgedetError(f"{json_path}: category without a valid 'id' and 'name': {error}") from error


def guess_images_dir(json_path: Path, images: List[dict]) -> Path:
    """The folder holding the images of `json_path`: tries the edgedet layout (<root>/<split>/images), COCO's
    (<root>/<split>2017, <root>/images/<split>), then <json dir>/images and the JSON's own folder."""
    split = json_path.stem.split("_", 1)[-1]
    root = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    candidates = [root / split / "images", root / split, root / "images" / split, root / "images",
                  json_path.parent / "images", json_path.parent]
    first = next((img.get("file_name") for img in images if isinstance(img, dict) and img.get("file_name")), None)
    for candidate in candidates:
        if first is not None and (candidate / first).is_file():
            return candidate
    raise EdgedetError(f"{json_path}: cannot find the image folder (tried {', '.join(str(c) for c in candidates)}); "
                       "pass it explicitly (--images DIR)")


def _read_images(records: list, images_dir: Path, semantic_dir: Optional[Path], problems: RecordProblems) -> Dict[int, dict]:
    """image id -> validated image record with resolved paths."""
    images: Dict[int, dict] = {}
    for index, record in enumerate(records):
        name = f"image #{index}" if not isinstance(record, dict) else f"image id {record.get('id')} ({record.get('file_name')})"
        problem = _image_problem(record, images_dir, images)
        if problem:
            problems.report(name, problem)
            continue
        path = images_dir / record["file_name"]
        height, width = _image_size(record, path)
        semantic_path = None
        if semantic_dir is not None:
            semantic_name = record.get("semantic_file_name") or Path(record["file_name"]).with_suffix(".png").name
            semantic_path = Path(semantic_dir) / semantic_name
            if not semantic_path.is_file():
                problems.report(name, f"semantic map not found: {semantic_path}")
                continue
        images[int(record["id"])] = {"id": int(record["id"]), "path": path, "shape_hw": (height, width),
                                     "semantic_path": semantic_path}
    return images


def _image_problem(record, images_dir: Path, seen: Dict[int, dict]) -> Optional[str]:
    """Why an image record is unusable, or None."""
    if not isinstance(record, dict) or "id" not in record or not record.get("file_name"):
        return "image record needs 'id' and 'file_name'"
    if not isinstance(record["id"], int) or record["id"] in seen:
        return f"image id {record['id']!r} is not a unique integer"
    if not (images_dir / record["file_name"]).is_file():
        return f"image file not found: {images_dir / record['file_name']}"
    height, width = record.get("height"), record.get("width")
    if height is not None and (not isinstance(height, int) or not isinstance(width, int) or height <= 0 or width <= 0):
        return f"bad image size height={height!r} width={width!r}"
    return None


def _image_size(record: dict, path: Path) -> Tuple[int, int]:
    """(height, width) from the record, else read from the image file."""
    if record.get("height") and record.get("width"):
        return int(record["height"]), int(record["width"])
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgedetError(f"{path}: cannot read image")
    return image.shape[0], image.shape[1]


def _read_annotations(records: list, images: Dict[int, dict], listed: set, category_ids: List[int],
                      problems: RecordProblems) -> Dict[int, List[dict]]:
    """image id -> list of validated annotations (with 'class_id' and 'xyxy' added). Annotations of listed images
    that were dropped as invalid go with their image, without a message of their own."""
    class_of = {cid: index for index, cid in enumerate(category_ids)}
    if not isinstance(records, list):
        problems.report("annotations", "'annotations' is not a list")
        return {}
    per_image: Dict[int, List[dict]] = {}
    for index, record in enumerate(records):
        if isinstance(record, dict) and record.get("image_id") in listed and record.get("image_id") not in images:
            continue
        name = f"annotation #{index}" if not isinstance(record, dict) else f"annotation id {record.get('id', '?')} (#{index})"
        problem = _annotation_problem(record, images, class_of)
        if problem:
            problems.report(name, problem)
            continue
        xyxy = xywh_to_xyxy(np.asarray(record["bbox"], dtype=np.float64))
        h, w = images[record["image_id"]]["shape_hw"]
        xyxy = np.clip(xyxy, 0, [w, h, w, h])
        per_image.setdefault(record["image_id"], []).append(dict(record, class_id=class_of[record["category_id"]], xyxy=xyxy))
    return per_image


def _annotation_problem(record, images: Dict[int, dict], class_of: Dict[int, int]) -> Optional[str]:
    """Why an annotation is unusable (unknown image or category, malformed or out-of-image box), or None."""
    if not isinstance(record, dict):
        return "annotation is not an object"
    if record.get("image_id") not in images:
        return f"unknown image_id {record.get('image_id')!r}"
    if record.get("category_id") not in class_of:
        return f"unknown category_id {record.get('category_id')!r}"
    bbox = record.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
        return f"bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}"
    x, y, bw, bh = bbox
    h, w = images[record["image_id"]]["shape_hw"]
    if bw < 0 or bh < 0:
        return f"bbox {bbox} has negative size"
    tol = BOX_TOLERANCE_PX
    if x < -tol or y < -tol or x + bw > w + tol or y + bh > h + tol:
        return f"bbox {bbox} lies outside the {w}x{h} image"
    return _segmentation_problem(record.get("segmentation"), (h, w))


def _segmentation_problem(segmentation, shape_hw: Tuple[int, int]) -> Optional[str]:
    """Why a COCO segmentation is malformed (wrong type, RLE of another size, odd polygon), or None."""
    if segmentation is None or segmentation == []:
        return None
    if isinstance(segmentation, dict):
        if list(segmentation.get("size", [])) != list(shape_hw) or "counts" not in segmentation:
            return f"RLE segmentation needs 'counts' and size {list(shape_hw)}, got size {segmentation.get('size')!r}"
        return None
    if not isinstance(segmentation, list) or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                                                     and all(isinstance(v, (int, float)) for v in p)
                                                     for p in segmentation):
        return "segmentation must be an RLE dict or a list of polygons [x, y, x, y, ...] with >= 3 points"
    return None


def _make_sample(image: dict, annotations: List[dict]) -> Sample:
    """A Sample of one validated image and its validated annotations."""
    n = len(annotations)
    return Sample(
        image_path=image["path"], image_id=image["id"], shape_hw=image["shape_hw"],
        xyxy=np.array([a["xyxy"] for a in annotations], dtype=np.float32).reshape(n, 4),
        class_ids=np.array([a["class_id"] for a in annotations], dtype=np.int32),
        segmentations=[a.get("segmentation") or None for a in annotations],
        iscrowd=np.array([int(a.get("iscrowd", 0)) for a in annotations], dtype=np.uint8),
        semantic_path=image["semantic_path"],
        areas=np.array([float(a.get("area", (a["bbox"][2] * a["bbox"][3]))) for a in annotations], dtype=np.float32),
    )


# ---- writing -------------------------------------------------------------------------------------

def coco_gt_dict(dataset: Dataset) -> dict:
    """The COCO ground-truth dict (images, annotations, categories) of a Dataset, as pycocotools' COCO() expects.

    file_name is relative to the image's folder; category ids come from `dataset.category_ids`; boxes are xywh
    pixels; area is the stored COCO area (else mask pixels); segmentation is kept as read (polygons or RLE).
    """
    images, annotations = [], []
    for sample in dataset.samples:
        h, w = sample.shape_hw
        images.append({"id": sample.image_id, "file_name": sample.image_path.name, "height": h, "width": w})
        annotations += _sample_annotations(sample, dataset.category_ids, len(annotations) + 1)
    categories = [{"id": cid, "name": name} for cid, name in zip(dataset.category_ids, dataset.names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _sample_annotations(sample: Sample, category_ids: List[int], first_id: int) -> List[dict]:
    """COCO annotation dicts of one sample (ids from first_id on)."""
    xywh = xyxy_to_xywh(sample.xyxy.astype(np.float64))
    areas = sample.instance_areas()
    annotations = []
    for i in range(len(sample)):
        annotation = {"id": first_id + i, "image_id": sample.image_id,
                      "category_id": int(category_ids[sample.class_ids[i]]),
                      "bbox": [round(float(v), 3) for v in xywh[i]], "area": float(areas[i]),
                      "iscrowd": int(sample.iscrowd[i])}
        if sample.segmentations[i] is not None:
            annotation["segmentation"] = sample.segmentations[i]
        annotations.append(annotation)
    return annotations


def write_coco(dataset: Dataset, json_path: Path, description: str = "") -> Path:
    """Write `dataset` as a COCO instances JSON (plus 'semantic_names' and per-image 'semantic_file_name')."""
    coco = coco_gt_dict(dataset)
    for record, sample in zip(coco["images"], dataset.samples):
        if sample.semantic_path is not None:
            record["semantic_file_name"] = sample.semantic_path.name
    coco["info"] = {"description": description or "written by edgedet"}
    coco["semantic_names"] = list(dataset.semantic_names)
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(coco, separators=(",", ":")))
    tmp.replace(json_path)
    return json_path
