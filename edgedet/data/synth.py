"""The synthetic "shapes" data set: coloured geometric things on textured stuff regions.

Every image is drawn from its own generator seeded by (seed, split, index), so a split is
byte-identical for a given seed whatever else is generated. Things are placed one at a time, each
on top of the earlier ones; a placement is rejected if it would hide too much of an earlier thing,
so every annotated thing stays recognisable. Boxes, areas and masks come from the visible pixels
after occlusion, so a box encloses its mask exactly.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np

from edgedet.device.errors import EdgedetError
from edgedet.rle import mask_to_rle
from .sample import mask_to_xyxy

THING_NAMES = ["circle", "square", "triangle", "star", "hexagon"]
STUFF_NAMES = ["sky", "grass", "water", "sand"]
SEMANTIC_NAMES = STUFF_NAMES + THING_NAMES  # semantic label = stuff index, or len(STUFF_NAMES) + thing class id
SPLIT_CODES = {"train": 1, "val": 2}  # part of each image's seed, so splits never share images


@dataclass
class SynthConfig:
    """How scenes are drawn. Sizes are in pixels of a `imgsz` x `imgsz` image."""

    imgsz: int = 320  # image side in pixels
    min_things: int = 3  # fewest things attempted per image
    max_things: int = 10  # most things attempted per image
    min_size: float = 12.0  # smallest thing diameter (before occlusion)
    max_size_frac: float = 0.5  # largest thing diameter as a fraction of imgsz
    small_frac: float = 0.35  # share of things drawn small (min_size .. 3 * min_size)
    min_visible_frac: float = 0.45  # a thing must keep this share of its pixels visible after occlusion
    min_visible_side: int = 8  # visible box width and height of a thing must be at least this many pixels
    min_colour_dist: float = 90.0  # least BGR distance between a thing's colour and the stuff beneath it
    min_neighbour_dist: float = 70.0  # least BGR distance between the colours of two touching things
    placement_tries: int = 40  # attempts to place things before giving up on the image's target count
    jpeg_quality: int = 95  # quality of the written JPEG images
    things: Tuple[str, ...] = tuple(THING_NAMES)  # the thing classes drawn, in class-id order (a subset: a variant
    # with other classes, e.g. for fine-tuning)

    def __post_init__(self):
        unknown = [name for name in self.things if name not in THING_NAMES]
        if unknown or not self.things or len(set(self.things)) != len(self.things):
            raise EdgedetError(f"synthetic thing classes must be distinct names among {', '.join(THING_NAMES)}; "
                               f"got {', '.join(self.things) or 'none'}")

    @property
    def semantic_names(self) -> List[str]:
        """Semantic classes: the stuff classes, then the drawn thing classes (label = stuff index or
        len(STUFF_NAMES) + thing class id)."""
        return STUFF_NAMES + list(self.things)


@dataclass
class Scene:
    """One generated image with its annotations (N things)."""

    image: np.ndarray  # uint8 (H, W, 3) BGR
    semantic: np.ndarray  # uint8 (H, W) labels into SEMANTIC_NAMES
    masks: np.ndarray  # bool (N, H, W) visible masks
    class_ids: np.ndarray  # int32 (N,) indices into the config's `things`


# ---- stuff: region layout and textures ----------------------------------------------------------

def _stuff_layout(rng: np.random.Generator, size: int) -> np.ndarray:
    """uint8 (size, size) stuff labels: 2-3 classes in large smooth regions with slightly ragged borders."""
    present = rng.choice(len(STUFF_NAMES), size=int(rng.integers(2, 4)), replace=False)
    coarse = rng.random((3, 3, len(present)), dtype=np.float32)
    fine = rng.random((16, 16, len(present)), dtype=np.float32) * 0.08
    fields = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).reshape(size, size, -1)
    fields += cv2.resize(fine, (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, -1)
    return present[np.argmax(fields, axis=2)].astype(np.uint8)


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """float32 (size, size) smooth noise in about -1..1 with `cells` random values per side."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


# Each stuff class: base BGR colour, per-image colour jitter, and a BGR tint of its single-channel detail field.
STUFF_COLOURS = np.array([[230, 195, 140], [45, 140, 70], [125, 75, 25], [125, 180, 215]], np.float32)
STUFF_JITTER = np.array([15, 15, 15, 12], np.float32)
STUFF_TINTS = np.array([[1, 1, 1], [0.6, 1.0, 0.7], [1, 1, 1], [1, 1, 1]], np.float32)


def _detail_sky(rng, white):
    """Vertical brightness ramp and soft clouds."""
    size = white.shape[0]
    return np.linspace(-25, 20, size, dtype=np.float32)[:, None] + 8 * _noise(rng, size, 5)


def _detail_grass(rng, white):
    """Vertical blades (noise smeared vertically) over patchy shading."""
    return 45 * cv2.blur(white, (1, 5)) + 12 * _noise(rng, white.shape[0], 8)


def _detail_water(rng, white):
    """Horizontal waves bent by smooth noise, with a little sparkle."""
    size = white.shape[0]
    y = np.arange(size, dtype=np.float32)[:, None]
    return 22 * np.sin(y * rng.uniform(0.35, 0.6) + 3 * _noise(rng, size, 6)) + 5 * white


def _detail_sand(rng, white):
    """Fine speckle over patchy shading."""
    return 18 * white + 10 * _noise(rng, white.shape[0], 10)


DETAILS: List[Callable[[np.random.Generator, np.ndarray], np.ndarray]] = [
    _detail_sky, _detail_grass, _detail_water, _detail_sand]


def _render_stuff(rng: np.random.Generator, stuff: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3) BGR background: each present stuff class's colour plus its tinted detail inside its region.

    One white-noise field serves every class: each class shows it only inside its own region.
    """
    white = rng.standard_normal(stuff.shape, dtype=np.float32)
    detail = np.zeros(stuff.shape, np.float32)
    colours = STUFF_COLOURS + rng.uniform(-1, 1, STUFF_COLOURS.shape).astype(np.float32) * STUFF_JITTER[:, None]
    for label in np.unique(stuff):
        np.copyto(detail, DETAILS[label](rng, white), where=stuff == label)
    return colours[stuff] + detail[..., None] * STUFF_TINTS[stuff]


# ---- things: shapes, placement with occlusion control ------------------------------------------

def _unit_polygon(name: str) -> np.ndarray:
    """float64 (V, 2) outline of a thing class (one of THING_NAMES) inscribed in the unit circle."""
    if name == "circle":
        return _regular(48, 0.0)
    if name == "square":
        return _regular(4, math.pi / 4)
    if name == "triangle":
        return _regular(3, -math.pi / 2)
    if name == "hexagon":
        return _regular(6, 0.0)
    outer = _regular(5, -math.pi / 2)
    inner = 0.45 * _regular(5, -math.pi / 2 + math.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


def _regular(vertices: int, phase: float) -> np.ndarray:
    angles = phase + np.arange(vertices) * 2 * math.pi / vertices
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _thing_mask(rng: np.random.Generator, class_id: int, size: int, cfg: SynthConfig) -> np.ndarray:
    """bool (size, size) full mask of one randomly sized, rotated and placed thing."""
    largest = max(cfg.max_size_frac * size, cfg.min_size)
    small_top = min(3 * cfg.min_size, largest)
    if rng.random() < cfg.small_frac:
        diameter = rng.uniform(cfg.min_size, small_top)
    else:
        diameter = math.exp(rng.uniform(math.log(small_top), math.log(largest)))
    radius = diameter / 2
    angle = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    name = cfg.things[class_id]
    aspect = np.array([1.0, 1.0]) if name != "triangle" else np.array([1.0, rng.uniform(0.85, 1.0)])
    centre = rng.uniform(0.25 * radius, size - 0.25 * radius, 2)
    points = (_unit_polygon(name) * aspect) @ rotation.T * radius + centre
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _visible_ok(trial: np.ndarray, covered: np.ndarray, full_areas: List[int], cfg: SynthConfig) -> bool:
    """True if the things `covered` by the newest one (indices into the int16 `trial` owner map, -1 = stuff)
    keep enough visible pixels and a large enough visible box."""
    if covered.size == 0:
        return True
    counts = np.bincount(trial.ravel() + 1, minlength=len(full_areas) + 1)[1:]
    if np.any(counts[covered] < cfg.min_visible_frac * np.asarray(full_areas)[covered]):
        return False
    for index in covered:
        x1, y1, x2, y2 = mask_to_xyxy(trial == index)
        if min(x2 - x1, y2 - y1) < cfg.min_visible_side:
            return False
    return True


def _place_things(rng: np.random.Generator, size: int, cfg: SynthConfig) -> Tuple[np.ndarray, List[int]]:
    """Place things painter-style. Returns the owner map int16 (H, W) (-1 = stuff, k = k-th thing) and class ids."""
    owner = np.full((size, size), -1, np.int16)
    class_ids: List[int] = []
    full_areas: List[int] = []
    target = int(rng.integers(cfg.min_things, cfg.max_things + 1))
    for _ in range(cfg.placement_tries):
        if len(class_ids) == target:
            break
        class_id = int(rng.integers(len(cfg.things)))
        mask = _thing_mask(rng, class_id, size, cfg)
        x1, y1, x2, y2 = mask_to_xyxy(mask)
        if min(x2 - x1, y2 - y1) < cfg.min_visible_side:
            continue
        covered = np.unique(owner[mask])
        trial = owner.copy()
        trial[mask] = len(class_ids)
        if _visible_ok(trial, covered[covered >= 0], full_areas + [int(mask.sum())], cfg):
            owner = trial
            class_ids.append(class_id)
            full_areas.append(int(mask.sum()))
    return owner, class_ids


def _thing_colour(rng: np.random.Generator, under: np.ndarray, neighbours: List[np.ndarray],
                  cfg: SynthConfig) -> np.ndarray:
    """float32 (3,) BGR colour at least `min_colour_dist` from the mean stuff colour `under` the thing and at least
    `min_neighbour_dist` from the colours of the things it touches (so every outline stays visible)."""
    for _ in range(30):
        hsv = np.array([[[rng.integers(0, 180), rng.integers(90, 256), rng.integers(70, 256)]]], np.uint8)
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        if np.linalg.norm(colour - under) >= cfg.min_colour_dist and all(
                np.linalg.norm(colour - other) >= cfg.min_neighbour_dist for other in neighbours):
            return colour
    return np.where(under > 127, 20.0, 235.0).astype(np.float32)  # the far corner of the colour cube


def _touching(owner: np.ndarray, mask: np.ndarray, below: int) -> List[int]:
    """Indices < `below` of the things whose visible pixels touch `mask` (8-neighbourhood) in the owner map."""
    grown = cv2.dilate(mask.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    found = np.unique(owner[grown])
    return [int(k) for k in found if 0 <= k < below]


# ---- the scene ----------------------------------------------------------------------------------

def _photometric(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Brightness/contrast change, optional blur and Gaussian noise on float BGR; returns uint8."""
    image = image * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)
    if rng.random() < 0.35:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.1))
    image = image + rng.standard_normal(image.shape[:2] + (1,), dtype=np.float32) * rng.uniform(0, 7)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_scene(seed: int, split: str, index: int, cfg: SynthConfig = SynthConfig()) -> Scene:
    """Draw image `index` of `split` for `seed`: deterministic, independent of every other image."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    size = cfg.imgsz
    stuff = _stuff_layout(rng, size)
    image = _render_stuff(rng, stuff)
    owner, class_ids = _place_things(rng, size, cfg)
    masks = owner[None] == np.arange(len(class_ids), dtype=np.int16)[:, None, None]
    palette = np.zeros((len(class_ids) + 1, 3), np.float32)  # row -1 (stuff) is never used
    for k in range(len(class_ids)):
        under = np.array(cv2.mean(image, masks[k].view(np.uint8))[:3], np.float32)
        palette[k] = _thing_colour(rng, under, [palette[j] for j in _touching(owner, masks[k], k)], cfg)
    shade = (1 + 0.08 * _noise(rng, size, 4))[..., None]
    is_thing = owner >= 0
    image = np.where(is_thing[..., None], palette[owner] * shade, image)
    thing_labels = len(STUFF_NAMES) + np.asarray(class_ids + [0], np.uint8)
    semantic = np.where(is_thing, thing_labels[owner], stuff).astype(np.uint8)
    return Scene(_photometric(rng, image), semantic, masks, np.asarray(class_ids, np.int32))


# ---- writing a split ----------------------------------------------------------------------------

def scene_annotations(scene: Scene, image_id: int, first_ann_id: int) -> List[dict]:
    """COCO annotation dicts of a scene (bbox xywh from the visible mask, area = mask pixels, RLE segmentation)."""
    annotations = []
    for k, (mask, class_id) in enumerate(zip(scene.masks, scene.class_ids)):
        x1, y1, x2, y2 = (float(v) for v in mask_to_xyxy(mask))
        annotations.append({
            "id": first_ann_id + k, "image_id": image_id, "category_id": int(class_id) + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(mask.sum()), "iscrowd": 0,
            "segmentation": mask_to_rle(mask),
        })
    return annotations


def coco_categories(things: Tuple[str, ...] = tuple(THING_NAMES)) -> List[dict]:
    """COCO categories of the thing classes: id = class index + 1."""
    return [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(things)]


def write_split(out: Path, split: str, count: int, seed: int, cfg: SynthConfig,
                progress: Optional[Callable[[], None]] = None, workers: int = 1) -> Path:
    """Write `count` images, semantic PNGs and annotations/instances_<split>.json under `out`; returns the JSON path.

    progress, if given, is called once after each image is written (a progress bar's `update`).

    workers > 1 draws images in that many processes; the output is identical (each image has its own seed).
    On Ctrl-C the JSON still lists every image finished so far, then KeyboardInterrupt propagates.
    """
    for folder in (out / split / "images", out / split / "semantic", out / "annotations"):
        folder.mkdir(parents=True, exist_ok=True)
    json_path = out / "annotations" / f"instances_{split}.json"
    images, annotations = [], []
    jobs = [(out, split, index, seed, cfg) for index in range(count)]
    try:
        for image, scene_annots in _map(_write_image, jobs, workers):
            images.append(image)
            annotations += [dict(a, id=len(annotations) + k + 1) for k, a in enumerate(scene_annots)]
            if progress is not None:
                progress()
    finally:
        _write_json_atomic(json_path, {
            "info": {"description": f"edgedet synthetic shapes, split {split}, seed {seed}, imgsz {cfg.imgsz}"},
            "images": images, "annotations": annotations, "categories": coco_categories(cfg.things),
            "semantic_names": cfg.semantic_names,
        })
    return json_path


def _write_image(job: Tuple[Path, str, int, int, SynthConfig]) -> Tuple[dict, List[dict]]:
    """Draw and write one image and its class map; returns its COCO image record and annotations (ids from 1)."""
    out, split, index, seed, cfg = job
    scene = make_scene(seed, split, index, cfg)
    stem, image_id = f"{index:06d}", index + 1
    cv2.imwrite(str(out / split / "images" / f"{stem}.jpg"), scene.image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    cv2.imwrite(str(out / split / "semantic" / f"{stem}.png"), scene.semantic, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    image = {"id": image_id, "file_name": f"{stem}.jpg", "height": cfg.imgsz, "width": cfg.imgsz,
             "semantic_file_name": f"{stem}.png"}
    return image, scene_annotations(scene, image_id, 1)


def _map(function, jobs: list, workers: int):
    """Ordered map over `jobs`, in `workers` processes when workers > 1."""
    if workers <= 1 or len(jobs) < 2:
        yield from map(function, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(function, jobs, chunksize=8)


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":")))
    tmp.replace(path)


def synth_dataset_yaml(out: Path, cfg: SynthConfig, seed: int, splits=("train", "val")) -> dict:
    """The dataset.yaml mapping of a synthetic folder (Ultralytics keys plus edgedet's coco_<split> and
    semantic_names) naming only the written `splits`."""
    config = {"path": str(out.resolve())}
    config.update({split: f"{split}/images" for split in splits})
    config.update({f"coco_{split}": f"annotations/instances_{split}.json" for split in splits})
    config.update({"names": dict(enumerate(cfg.things)), "semantic_names": cfg.semantic_names,
                   "imgsz": cfg.imgsz, "seed": seed})
    return config
