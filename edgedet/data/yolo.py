"""YOLO-format data sets: images/<split>/*.jpg beside labels/<split>/*.txt, one object per line.

A label line is `class cx cy w h` (a box) or `class x1 y1 x2 y2 ...` (a segment polygon, >= 3 points),
all coordinates normalised to 0..1 by the image width/height. An image without a label file has no
objects. Class-map PNGs, if any, live in semantic/<split>/<stem>.png (an edgedet addition).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from edgedet.device.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh
from edgedet.device.errors import EdgedetError
from edgedet.device.image_files import IMAGE_SUFFIXES
from edgedet.device.polygons import mask_to_polygon
from edgedet.rle import polygons_to_mask
from .coco import RecordProblems
from .sample import Dataset, Sample, mask_to_xyxy
from .yamlio import read_yaml, write_yaml

COORD_TOLERANCE = 1e-3  # normalised coordinates may exceed 0..1 by this much (rounding) before they are malformed


def sibling_dir(images_dir: Path, kind: str) -> Path:
    """The labels/ or semantic/ folder matching an images/ folder (last 'images' path part replaced by `kind`)."""
    parts = list(Path(images_dir).parts)
    if "images" not in parts:
        raise EdgedetError(f"{images_dir}: a YOLO image folder must have 'images' in its path")
    index = len(parts) - 1 - parts[::-1].index("images")
    parts[index] = kind
    return Path(*parts)


def read_yolo(images_dir: Path, names: Optional[List[str]] = None, skip_invalid: bool = False,
              semantic_names: Optional[List[str]] = None) -> Dataset:
    """Read a YOLO split (images_dir and its sibling labels dir) into a Dataset.

    names: class names (from dataset.yaml); without them, classes are named by index up to the largest id seen.
    Malformed lines (bad numbers, coordinates outside 0..1, unknown class) raise EdgedetError naming file and
    line, or drop the line (listed in Dataset.skipped) when skip_invalid.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise EdgedetError(f"{images_dir}: image folder not found")
    labels_dir, semantic_dir = sibling_dir(images_dir, "labels"), sibling_dir(images_dir, "semantic")
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    samples, skipped = [], []
    for image_id, path in enumerate(paths, start=1):
        label_path = labels_dir / f"{path.stem}.txt"
        problems = RecordProblems(label_path, skip_invalid)
        shape_hw = _image_shape(path, problems)
        if shape_hw is None:
            skipped += problems.messages
            continue
        semantic_path = semantic_dir / f"{path.stem}.png"
        samples.append(_read_label_file(label_path, path, image_id, shape_hw, names, problems,
                                        semantic_path if semantic_path.is_file() else None))
        skipped += problems.messages
    if names is None:
        names = [str(i) for i in range(max((int(s.class_ids.max()) + 1 for s in samples if len(s)), default=0))]
    return Dataset(names=list(names), semantic_names=list(semantic_names or []), samples=samples,
                   root=images_dir.parent, skipped=skipped)


def _image_shape(path: Path, problems: RecordProblems) -> Optional[Tuple[int, int]]:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        problems.report(f"image {path.name}", f"cannot read image {path}")
        return None
    return image.shape[0], image.shape[1]


def _read_label_file(label_path: Path, image_path: Path, image_id: int, shape_hw: Tuple[int, int],
                     names: Optional[List[str]], problems: RecordProblems, semantic_path: Optional[Path]) -> Sample:
    """One image's Sample from its label file (missing file = no objects)."""
    boxes, class_ids, segmentations = [], [], []
    lines = label_path.read_text().splitlines() if label_path.is_file() else []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parsed = _parse_line(line, shape_hw, names)
        if isinstance(parsed, str):
            problems.report(f"line {number}", parsed)
            continue
        class_ids.append(parsed[0])
        boxes.append(parsed[1])
        segmentations.append(parsed[2])
    return Sample(image_path=image_path, image_id=image_id, shape_hw=shape_hw,
                  xyxy=np.array(boxes, np.float32).reshape(-1, 4), class_ids=np.array(class_ids, np.int32),
                  segmentations=segmentations, semantic_path=semantic_path)


def _parse_line(line: str, shape_hw: Tuple[int, int], names: Optional[List[str]]):
    """(class id, xyxy pixels, COCO polygons or None) of one label line, or a string naming the problem."""
    fields = line.split()
    try:
        class_id = int(fields[0])
        values = np.array([float(v) for v in fields[1:]], dtype=np.float64)
    except ValueError:
        return f"not numbers: {line.strip()!r}"
    if class_id < 0 or (names is not None and class_id >= len(names)):
        return f"unknown class {class_id} (the data set has {len(names) if names is not None else '?'} classes)"
    if len(values) != 4 and (len(values) < 6 or len(values) % 2):
        return f"expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...', got {len(values)} coordinates"
    if not np.all(np.isfinite(values)):
        return "non-finite coordinate"
    h, w = shape_hw
    if len(values) == 4:
        xyxy = cxcywh_to_xyxy(values)
        if xyxy.min() < -COORD_TOLERANCE or xyxy.max() > 1 + COORD_TOLERANCE or values[2] < 0 or values[3] < 0:
            return f"box {values.tolist()} lies outside the image (normalised coordinates must be in 0..1)"
        return class_id, np.clip(xyxy, 0, 1) * [w, h, w, h], None
    if values.min() < -COORD_TOLERANCE or values.max() > 1 + COORD_TOLERANCE:
        return "polygon lies outside the image (normalised coordinates must be in 0..1)"
    polygon = (np.clip(values.reshape(-1, 2), 0, 1) * [w, h]).ravel().tolist()
    xyxy = mask_to_xyxy(polygons_to_mask([polygon], shape_hw))
    return class_id, xyxy, [polygon]


# ---- writing -------------------------------------------------------------------------------------

def sample_label_lines(sample: Sample) -> List[str]:
    """YOLO label lines of a sample: a segment polygon where the instance has a mask, else a box."""
    h, w = sample.shape_hw
    lines = []
    masks = sample.instance_masks() if any(s is not None for s in sample.segmentations) else None
    for i in range(len(sample)):
        if sample.segmentations[i] is not None:
            polygon = mask_to_polygon(masks[i])
            if polygon is not None:
                coords = " ".join(f"{v:.6f}" for v in (polygon / [w, h]).ravel())
                lines.append(f"{sample.class_ids[i]} {coords}")
                continue
        cx, cy, bw, bh = xyxy_to_cxcywh(sample.xyxy[i].astype(np.float64)) / [w, h, w, h]
        lines.append(f"{sample.class_ids[i]} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return lines


def write_yolo(dataset: Dataset, out: Path, split: str, copy_images: bool = True) -> Path:
    """Write `dataset` as split `split` of a YOLO folder `out` (images/, labels/, semantic/ and dataset.yaml).

    Images are copied (or, with copy_images=False, referenced by the labels only). Returns the dataset.yaml path;
    an existing yaml keeps its other splits.
    """
    out = Path(out)
    image_dir, label_dir, semantic_dir = (out / kind / split for kind in ("images", "labels", "semantic"))
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    for sample in dataset.samples:
        name = sample.image_path.name
        if copy_images:
            shutil.copyfile(sample.image_path, image_dir / name)
        if sample.semantic_path is not None:
            semantic_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample.semantic_path, semantic_dir / f"{Path(name).stem}.png")
        (label_dir / f"{Path(name).stem}.txt").write_text("".join(line + "\n" for line in sample_label_lines(sample)))
    return _update_yaml(out, split, dataset)


def _update_yaml(out: Path, split: str, dataset: Dataset) -> Path:
    """Add `split` to out/dataset.yaml (created if missing) with the class names."""
    yaml_path = out / "dataset.yaml"
    config = read_yaml(yaml_path) if yaml_path.is_file() else {}
    config.update({"path": str(out.resolve()), split: f"images/{split}",
                   "names": {i: n for i, n in enumerate(dataset.names)}})
    if dataset.semantic_names:
        config["semantic_names"] = list(dataset.semantic_names)
    ordered = {k: config[k] for k in ("path", "train", "val", "test") if k in config}
    ordered.update({k: v for k, v in config.items() if k not in ordered})
    write_yaml(yaml_path, ordered, header="YOLO-format data set written by edgedet data convert")
    return yaml_path
