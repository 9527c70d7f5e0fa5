"""`edgedet data`: generate the synthetic shapes data set, convert COCO <-> YOLO, summarise a data set."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from edgedet.device.errors import EdgedetError
from edgedet.device.imgsz import parse_imgsz
from edgedet.progress import progress_bar
from .coco import write_coco
from .loader import load_dataset
from .synth import SynthConfig, THING_NAMES, synth_dataset_yaml, write_split
from .yamlio import read_yaml, write_yaml
from .yolo import write_yolo

EPILOG = """\
subcommands:
  synth    edgedet data synth --out DIR [--train 2000 --val 300 --imgsz 320 --seed 0]
           writes DIR/{train,val}/images/*.jpg, DIR/{train,val}/semantic/*.png,
           DIR/annotations/instances_{train,val}.json (COCO, RLE masks) and DIR/dataset.yaml
  convert  edgedet data convert SRC --to yolo|coco --out DIR [--from coco|yolo] [--split train val]
           SRC: a data set folder, a dataset.yaml or a COCO .json (then --images DIR if not guessable).
           --to yolo writes DIR/{images,labels,semantic}/<split>/ and DIR/dataset.yaml;
           --to coco writes the synth layout (DIR/<split>/images, DIR/annotations/instances_<split>.json).
  info     edgedet data info SRC [--split val]: classes, images, instances, per-class counts.
Malformed records (missing image, box outside the image, unknown category, bad JSON) stop with an error
naming file, record and problem; --skip-invalid drops such records and prints how many.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Fill the `data` verb's parser with its subcommands."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    synth = sub.add_parser("synth", help="generate the synthetic shapes data set (deterministic per seed)")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--train", type=_count, default=2000, help="training images (default 2000; 0 skips)")
    synth.add_argument("--val", type=_count, default=300, help="validation images (default 300; 0 skips)")
    synth.add_argument("--imgsz", default="320", help="image side in pixels, a multiple of 32, at least 64 (default 320)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--things", default=",".join(THING_NAMES),
                       help=f"thing classes to draw, comma separated, in class-id order (default all: "
                            f"{','.join(THING_NAMES)}); a subset makes a variant with other classes")
    synth.add_argument("--workers", type=_count, default=min(os.cpu_count() or 1, 4),
                       help="processes drawing images (default: CPU count, at most 4); output is identical for any value")
    convert = sub.add_parser("convert", help="convert a data set between COCO and YOLO formats")
    convert.add_argument("src", type=Path, help="data set folder, dataset.yaml or COCO .json")
    convert.add_argument("--from", dest="src_format", choices=["auto", "coco", "yolo"], default="auto",
                         help="source format (default: detected from SRC)")
    convert.add_argument("--to", dest="dst_format", choices=["coco", "yolo"], required=True, help="target format")
    convert.add_argument("--out", type=Path, required=True, help="output folder")
    convert.add_argument("--split", nargs="+", default=None,
                         help="splits to convert (default: train and val where present; the JSON's own split for a .json)")
    _add_source_options(convert)
    info = sub.add_parser("info", help="summarise a data set split")
    info.add_argument("src", type=Path, help="data set folder, dataset.yaml or COCO .json")
    info.add_argument("--split", default="val", help="split to read (default val)")
    _add_source_options(info)


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, default=None, help="image folder of a COCO .json (default: guessed)")
    parser.add_argument("--semantic", type=Path, default=None, help="class-map PNG folder of a COCO .json (optional)")
    parser.add_argument("--skip-invalid", action="store_true", help="drop malformed records (and count them) instead of stopping")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def synth_imgsz(text: str) -> int:
    """The side of the square synthetic images from the --imgsz text; EdgedetError naming a bad value."""
    height, width = parse_imgsz(text, stride=32, minimum=64)
    if height != width:
        raise EdgedetError(f"--imgsz {text!r}: the synthetic images are square; give one size")
    return height


def main(args: argparse.Namespace) -> int:
    """Run the chosen `data` subcommand; returns the exit code."""
    if args.data_command == "synth":
        return run_synth(args)
    if args.data_command == "convert":
        return run_convert(args)
    if args.data_command == "info":
        return run_info(args)
    raise EdgedetError("choose a subcommand: synth, convert or info (see edgedet data --help)")


def run_synth(args: argparse.Namespace) -> int:
    """Generate the synthetic data set and its dataset.yaml; prints images per second."""
    imgsz = synth_imgsz(args.imgsz)
    cfg = SynthConfig(imgsz=imgsz, things=tuple(name.strip() for name in args.things.split(",") if name.strip()))
    args.out.mkdir(parents=True, exist_ok=True)
    yaml_path = args.out / "dataset.yaml"  # written first: an interrupted run still leaves a readable folder
    splits = [split for split, count in (("train", args.train), ("val", args.val)) if count]
    write_yaml(yaml_path, synth_dataset_yaml(args.out, cfg, args.seed, splits),
               header=f"edgedet synthetic shapes: edgedet data synth --seed {args.seed} --imgsz {imgsz}"
                      + ("" if list(cfg.things) == THING_NAMES else f" --things {','.join(cfg.things)}"))
    start = time.perf_counter()
    for split, count in (("train", args.train), ("val", args.val)):
        if count:
            with progress_bar(count, f"synth {split}", "img") as bar:
                write_split(args.out, split, count, args.seed, cfg, progress=bar.update, workers=args.workers)
    total, seconds = args.train + args.val, time.perf_counter() - start
    print(f"wrote {args.train} train + {args.val} val images ({imgsz}x{imgsz}) to {args.out} "
          f"in {seconds:.1f} s ({total / max(seconds, 1e-9):.0f} images/s)")
    print(f"things: {', '.join(cfg.things)}; semantic: {', '.join(cfg.semantic_names)}; {yaml_path}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Read SRC split by split and write it in the target format."""
    if not args.src.exists():
        raise EdgedetError(f"{args.src} does not exist (a data set folder, dataset.yaml or COCO JSON)")
    _check_source_format(args.src, args.src_format)
    for split in _splits(args):
        dataset = _load(args, split)
        if args.dst_format == "yolo":
            write_yolo(dataset, args.out, split)
        else:
            _write_coco_folder(dataset, args.out, split)
        skipped = f", skipped {len(dataset.skipped)} invalid records" if dataset.skipped else ""
        print(f"{split}: {len(dataset)} images, {sum(len(s) for s in dataset)} instances -> {args.out}{skipped}")
    return 0


def _check_source_format(src: Path, src_format: str) -> None:
    """Stop if --from names another format than SRC holds."""
    if src_format == "auto":
        return
    detected = detect_format(src)
    if detected != src_format:
        raise EdgedetError(f"{src}: --from {src_format} given, but this is {detected.upper()} data")


def detect_format(src: Path) -> str:
    """"coco" or "yolo": a .json is COCO; a dataset.yaml (or a folder holding one) is COCO if it names coco_<split>
    annotations; a folder without a yaml is COCO if it has annotations/, else YOLO."""
    yaml_path = src if src.suffix.lower() in (".yaml", ".yml") else src / "dataset.yaml"
    if src.suffix.lower() == ".json":
        return "coco"
    if yaml_path.is_file():
        return "coco" if any(str(key).startswith("coco_") for key in read_yaml(yaml_path)) else "yolo"
    return "coco" if (src / "annotations").is_dir() else "yolo"


def _splits(args: argparse.Namespace) -> list:
    """Requested splits; by default the JSON's own split, else train and val where present."""
    if args.split:
        return list(args.split)
    if args.src.suffix.lower() == ".json":
        return [args.src.stem.split("_", 1)[-1]]
    found = [split for split in ("train", "val") if _has_split(args.src, split)]
    if not found:
        raise EdgedetError(f"{args.src}: found neither a train nor a val split; name one with --split")
    return found


def _has_split(src: Path, split: str) -> bool:
    folder = src if src.is_dir() else src.parent
    yaml_path = src if src.suffix.lower() in (".yaml", ".yml") else folder / "dataset.yaml"
    if yaml_path.is_file():
        return bool(read_yaml(yaml_path).get(split))
    return (folder / "annotations" / f"instances_{split}.json").is_file() or (folder / "images" / split).is_dir()


def _write_coco_folder(dataset, out: Path, split: str) -> None:
    """The synth layout: out/<split>/images, out/<split>/semantic, out/annotations/instances_<split>.json, dataset.yaml."""
    image_dir, semantic_dir = out / split / "images", out / split / "semantic"
    image_dir.mkdir(parents=True, exist_ok=True)
    for sample in dataset.samples:
        shutil.copyfile(sample.image_path, image_dir / sample.image_path.name)
        if sample.semantic_path is not None:
            semantic_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample.semantic_path, semantic_dir / sample.semantic_path.name)
    write_coco(dataset, out / "annotations" / f"instances_{split}.json")
    yaml_path = out / "dataset.yaml"
    config = read_yaml(yaml_path) if yaml_path.is_file() else {}
    config.update({"path": str(out.resolve()), split: f"{split}/images",
                   f"coco_{split}": f"annotations/instances_{split}.json",
                   "names": {i: n for i, n in enumerate(dataset.names)}})
    if dataset.semantic_names:
        config["semantic_names"] = list(dataset.semantic_names)
    write_yaml(yaml_path, config, header="COCO-format data set written by edgedet data convert")


def _load(args: argparse.Namespace, split: str):
    dataset = load_dataset(args.src, split, images_dir=args.images, semantic_dir=args.semantic,
                           skip_invalid=args.skip_invalid)
    for message in dataset.skipped[:20]:
        print(f"skipped: {message}", file=sys.stderr)
    if len(dataset.skipped) > 20:
        print(f"skipped: ... and {len(dataset.skipped) - 20} more", file=sys.stderr)
    return dataset


def run_info(args: argparse.Namespace) -> int:
    """Print classes, image and instance counts of one split."""
    dataset = _load(args, args.split)
    counts = np.bincount(np.concatenate([s.class_ids for s in dataset] + [np.zeros(0, np.int32)]),
                         minlength=len(dataset.names))
    print(f"{args.src} [{args.split}]: {len(dataset)} images, {int(counts.sum())} instances, "
          f"{len(dataset.skipped)} skipped records")
    for class_id, name in enumerate(dataset.names):
        print(f"  {class_id:3d} {name:20s} {int(counts[class_id])}")
    if dataset.semantic_names:
        print(f"semantic: {', '.join(dataset.semantic_names)}")
    return 0
