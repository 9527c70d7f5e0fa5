"""Issue 13: produce Ultralytics-format test models for edgedet's tests and benchmarks.

Runs ONLY in the Ultralytics venv made by scripts/ultralytics_env.sh; the edgedet package never imports Ultralytics
(AGPL) and nothing here is imported by it. Usage (from the repository root):

    PYTHONPATH=scripts/ultralytics_shim YOLO_OFFLINE=1 .cache/ultralytics-venv/bin/python \
        scripts/ultralytics_models.py fixtures --out tests/fixtures/ultralytics
    ... scripts/ultralytics_models.py train --data runs/shapes320/dataset.yaml --task detect --imgsz 320 \
        --epochs 2 --out runs/ultralytics

fixtures: small UNTRAINED models (scaled-down YOLOv8 / YOLO11 detect and -seg, built from Ultralytics' own model
yaml with a tiny width multiple; an anchor-based YOLOv5 from the PyPI `yolov5` package), head output convs
randomised (seeded) so the files give a spread of scores and boxes, exported to static-shape ONNX.
train: YOLOv8n / YOLOv8n-seg from scratch (model yaml, no downloaded weights) on an edgedet synthetic data set
(converted to YOLO labels with `edgedet data convert` when needed), best weights exported to ONNX.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics-config"))

NAMES = ["circle", "square", "triangle", "star", "hexagon"]
SEED = 0
# (file stem, Ultralytics model yaml, task); one tiny scale for all: depth 0.33, width 1/16, max channels 1024
FIXTURES = [
    ("yolov8-det", "yolov8.yaml", "detect"),
    ("yolov8-seg", "yolov8-seg.yaml", "segment"),
    ("yolo11-det", "yolo11.yaml", "detect"),
    ("yolo11-seg", "yolo11-seg.yaml", "segment"),
]
TINY_SCALE = [0.33, 0.03125, 256]  # 8 channels throughout; the head's 4*16-channel box branch sets the size floor


def _seed(seed: int):
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _randomise_conv(conv, gen, w_gain: float, b_mean: float, b_std: float, b_ramp: float = 0.0, period: int = 0):
    """conv.weight ~ N(0, (w_gain / sqrt(fan_in))^2), conv.bias ~ N(b_mean - b_ramp * (c % period), b_std^2)."""
    import torch

    with torch.no_grad():
        fan_in = conv.weight[0].numel()
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (w_gain / math.sqrt(fan_in)))
        ramp = torch.arange(conv.bias.numel()) % period * b_ramp if period else 0.0
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * b_std + b_mean - ramp)


# What the fixtures' heads get instead of Ultralytics' init (whose class bias log(5/nc/(640/s)^2) makes every score
# ~1e-4 and whose box bias 2.0 makes every box alike): per output conv, (weight gain, bias mean, bias std).
RAND_BOX = (2.0, 0.0, 1.0, 0.5, 16)  # 4*16 DFL logits, falling by 0.5 per bin: distances ~0.5..4 strides
RAND_CLS = (2.0, -2.5, 1.0)  # class logits: most scores low, some cells up to ~0.9
RAND_MASK = (1.0, 0.0, 1.0)  # 32 mask coefficients


def _randomise_v8_head(head, seed: int) -> list[str]:
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    done = []
    for name, params in (("cv2", RAND_BOX), ("cv3", RAND_CLS), ("cv4", RAND_MASK)):
        branch = getattr(head, name, None)
        if branch is None:
            continue
        for i, seq in enumerate(branch):
            _randomise_conv(seq[-1], gen, *params)
            done.append(f"{name}[{i}][-1]")
    return done


_CALIB: list = []  # calibration pictures (NCHW float 0..1), set by cmd_fixtures


def _calib_pictures(imgsz: int, n: int = 24) -> list:
    """The pictures BatchNorm statistics are calibrated on: edgedet's own synthetic shapes (`edgedet data synth
    --seed 0`, run through the project's CLI as a separate process) when the project venv is there, otherwise
    procedural look-alikes. An untrained network's activation scale depends strongly on the kind of picture, so
    the fixtures are calibrated on the kind the tests feed them (pure noise still drives most scores to ~1)."""
    import cv2
    import numpy as np
    import torch

    edgedet = ROOT / ".venv" / "bin" / "edgedet"
    d = ROOT / ".cache" / "ultralytics-fixtures" / f"calib{imgsz}"
    if edgedet.exists() and not (d / "dataset.yaml").exists():
        subprocess.run([str(edgedet), "data", "synth", "--out", str(d), "--train", str(n), "--val", "2",
                        "--imgsz", str(imgsz), "--seed", "0"], check=True, stdout=subprocess.DEVNULL)
    files = sorted((d / "train" / "images").glob("*.jpg"))[:n] if (d / "dataset.yaml").exists() else []
    if not files:
        print("  (no edgedet synthetic pictures: calibrating on procedural pictures)")
        return [_probe_image(imgsz, seed=1000 + i) for i in range(n)]
    out = []
    for f in files:
        im = cv2.resize(cv2.imread(str(f))[:, :, ::-1], (imgsz, imgsz)).astype(np.float32) / 255
        out.append(torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))[None]))
    return out


def _calibrate_bn(net, imgsz: int, batch: int = 6):
    """Give every BatchNorm the running statistics of real activations (the calibration pictures, forward passes in
    train mode, cumulative averages). Freshly initialised weights with BN's identity statistics shrink the signal
    layer by layer until the head sees ~constant features and every cell gets the same output; with calibrated
    statistics each layer's output is unit-scale and depends on the picture."""
    import torch

    pics = _CALIB or [_probe_image(imgsz, seed=1000 + i) for i in range(24)]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
    net.train()
    with torch.no_grad():
        for i in range(0, len(pics), batch):
            net(torch.cat(pics[i : i + batch]))
    net.eval()
    for m in bns:
        m.momentum = 0.03
    return len(bns)


def _stats(tag: str, y, nc: int, layout: str):
    """Print the spread of scores and box sizes of a decoded output (a fixture must not be near-constant)."""
    import torch

    y = y.detach().float()
    if layout == "v8":  # (1, 4+nc(+32), N)
        box, cls = y[0, :4], y[0, 4 : 4 + nc]
        wh = box[2:4]
        score = cls.max(0).values
    else:  # v5: (1, N, 5+nc)
        wh = y[0, :, 2:4].T
        score = y[0, :, 4] * y[0, :, 5:].max(1).values
    q = torch.quantile(score, torch.tensor([0.0, 0.5, 0.9, 1.0])).tolist()
    print(
        f"  {tag}: max-class score min/median/p90/max {q[0]:.3f}/{q[1]:.3f}/{q[2]:.3f}/{q[3]:.3f}; "
        f"box w {wh[0].min():.1f}..{wh[0].max():.1f} px, h {wh[1].min():.1f}..{wh[1].max():.1f} px; "
        f"{int((score > 0.25).sum())} of {score.numel()} candidates above 0.25"
    )


def _probe_image(imgsz: int, seed: int = 123):
    """A fixed, seeded picture like edgedet's synthetic shapes (a flat background with a gradient, 2..6 filled
    polygons and discs of random colours, mild noise), 0..1 float32 NCHW. Calibration and the spread check use these:
    an untrained network's activations depend strongly on the kind of picture, so the fixtures are tuned for pictures
    like the ones the tests feed them (pure noise drives most scores to ~1)."""
    import cv2
    import numpy as np
    import torch

    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:imgsz, 0:imgsz] / imgsz
    img = r.random(3) * 0.6 + 0.2 + (r.random(3) - 0.5)[None, None] * 0.4 * (xx if seed % 2 else yy)[..., None]
    img = np.ascontiguousarray(img.astype(np.float32))
    for _ in range(int(r.integers(2, 7))):
        colour = tuple(float(c) for c in r.random(3))
        c = r.integers(0, imgsz, 2)
        rad = int(r.integers(imgsz // 16, imgsz // 4))
        if r.random() < 0.4:
            cv2.circle(img, (int(c[0]), int(c[1])), rad, colour, -1)
        else:
            k = int(r.integers(3, 7))
            ang = np.sort(r.random(k)) * 2 * np.pi
            pts = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], colour)
    img = np.clip(img + r.normal(0, 0.03, img.shape), 0, 1).astype(np.float32)
    return torch.from_numpy(img.transpose(2, 0, 1)[None].copy())


def build_ultralytics_fixture(stem: str, base_yaml: str, task: str, imgsz: int, work: Path, out: Path):
    from ultralytics import YOLO
    from ultralytics.utils import YAML
    from ultralytics.utils.checks import check_yaml

    cfg = YAML.load(check_yaml(base_yaml))  # Ultralytics' own architecture file, only the scale changed
    cfg["scales"] = {"t": TINY_SCALE}
    cfg["nc"] = len(NAMES)
    cfg_path = work / f"{stem}-tiny.yaml"  # no n/s/m/l/x in the name: the one scale 't' is used
    YAML.save(cfg_path, cfg)
    _seed(SEED)
    model = YOLO(str(cfg_path), task=task)
    net = model.model
    net.names = dict(enumerate(NAMES))
    done = _randomise_v8_head(net.model[-1], SEED)
    n_bn = _calibrate_bn(net, imgsz)
    print(f"{stem}: {sum(p.numel() for p in net.parameters())} parameters; randomised {', '.join(done)}; "
          f"{n_bn} BatchNorm statistics calibrated")
    import torch

    with torch.no_grad():
        y = net(_CALIB[-1] if _CALIB else _probe_image(imgsz))
        while isinstance(y, (tuple, list)):
            y = y[0]
    _stats(stem, y, len(NAMES), "v8")
    cwd = os.getcwd()
    os.chdir(work)  # Ultralytics writes the export beside the (relative) model file name
    try:
        f = model.export(format="onnx", imgsz=imgsz, dynamic=False, simplify=_has("onnxslim"), batch=1, device="cpu")
    finally:
        os.chdir(cwd)
    dst = out / f"{stem}.onnx"
    shutil.move(work / Path(f).name if not Path(f).is_absolute() else f, dst)
    print(f"  -> {dst} ({dst.stat().st_size} bytes)")


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def _yolov5_imports():
    """Import the PyPI `yolov5` package's model code. Its import chain touches torchvision.transforms and
    torchvision.datasets.ImageFolder at module level (augmentations, dataloaders); building and exporting a model
    uses neither, so empty placeholders are registered here for this process only (not in the shared shim)."""
    import torchvision  # the stand-in from scripts/ultralytics_shim

    def placeholder(name: str, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        m.__getattr__ = lambda attr: None  # any attribute read at import time
        sys.modules.setdefault(name, m)
        return sys.modules[name]

    if not hasattr(torchvision, "transforms"):
        torchvision.transforms = placeholder("torchvision.transforms")
        placeholder("torchvision.transforms.functional")
    if not hasattr(torchvision, "datasets"):
        torchvision.datasets = placeholder("torchvision.datasets", ImageFolder=type("ImageFolder", (), {}))
    import warnings

    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import yolov5
    from yolov5.models.yolo import Detect, Model

    return yolov5, Model, Detect


def build_yolov5_fixture(imgsz: int, work: Path, out: Path, opset: int = 17):
    import onnx
    import torch
    import yaml

    yolov5, Model, Detect = _yolov5_imports()
    cfg = yaml.safe_load((Path(yolov5.__file__).parent / "models" / "yolov5n.yaml").read_text())
    cfg["nc"] = len(NAMES)
    cfg["depth_multiple"], cfg["width_multiple"] = 0.33, 0.0625
    _seed(SEED)
    model = Model(cfg, ch=3, nc=len(NAMES))
    model.names = list(NAMES)
    head = model.model[-1]
    gen = torch.Generator().manual_seed(SEED + 1)
    no = head.no  # 5 + nc per anchor: x, y, w, h, objectness, classes
    for conv in head.m:
        _randomise_conv(conv, gen, 1.0, 0.0, 1.0)
        with torch.no_grad():  # w, h below the anchor; objectness and classes sharper, so scores spread over 0..1
            b = conv.bias.view(head.na, no)
            w = conv.weight.view(head.na, no, -1)
            b[:, 2:4] -= 1.0
            w[:, 2:4] *= 0.2
            b[:, 4:] += torch.randn(b[:, 4:].shape, generator=gen) * 1.0 - 1.0
            w[:, 4:] *= 1.5
    n_params = sum(p.numel() for p in model.parameters())
    n_bn = _calibrate_bn(model, imgsz)
    print(f"yolov5-det: {n_params} parameters; randomised Detect.m[0..2] (1x1 output convs, 3 anchors x {no}); "
          f"{n_bn} BatchNorm statistics calibrated")
    # as yolov5's export.py does: eval, fuse Conv+BN, Detect in export mode (single output), inplace, static grid
    model = model.fuse()
    for m in model.modules():
        if isinstance(m, Detect):
            m.inplace, m.dynamic, m.export = True, False, True
    im = _CALIB[-1] if _CALIB else _probe_image(imgsz)
    with torch.no_grad():
        for _ in range(2):
            y = model(im)[0]
    _stats("yolov5-det", y, len(NAMES), "v5")
    dst = out / "yolov5-det.onnx"
    # yolov5's export_onnx, with the TorchScript exporter (dynamo=False) that produced the files users have
    torch.onnx.export(
        model, im, str(dst), opset_version=opset, do_constant_folding=True, input_names=["images"],
        output_names=["output0"], dynamic_axes=None, dynamo=False,
    )
    m = onnx.load(str(dst))
    onnx.checker.check_model(m)
    for k, v in {"stride": int(max(model.stride)), "names": dict(enumerate(NAMES))}.items():
        p = m.metadata_props.add()
        p.key, p.value = k, str(v)
    onnx.save(m, str(dst))
    print(f"  -> {dst} ({dst.stat().st_size} bytes)")


def cmd_fixtures(args):
    import ultralytics

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = ROOT / ".cache" / "ultralytics-fixtures"
    work.mkdir(parents=True, exist_ok=True)
    print(f"ultralytics {ultralytics.__version__}, imgsz {args.imgsz}, seed {SEED}")
    _CALIB[:] = _calib_pictures(args.imgsz)
    for stem, base, task in FIXTURES:
        build_ultralytics_fixture(stem, base, task, args.imgsz, work, out)
    if args.no_yolov5:
        return
    try:
        build_yolov5_fixture(args.imgsz, work, out)
    except Exception as e:  # the PyPI package is optional: say so, keep the others
        print(f"yolov5-det skipped: {type(e).__name__}: {e}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------- training
def yolo_dataset_yaml(data: Path) -> Path:
    """An Ultralytics-readable dataset.yaml for an edgedet data set.

    Ultralytics finds labels by replacing /images/ with /labels/ in each image path, and reads YOLO txt files
    (polygons serve both detect, as their bounding boxes, and segment). `edgedet data synth` writes COCO json only
    (DIR/{train,val}/images + DIR/annotations), so it is converted once with `edgedet data convert --to yolo`
    into DIR-yolo/ (images/<split>, labels/<split>, dataset.yaml); a data set already in YOLO form is used as is.
    """
    import yaml

    yml = data if data.suffix in (".yaml", ".yml") else data / "dataset.yaml"
    d = yaml.safe_load(yml.read_text())
    base = Path(d.get("path") or yml.parent)
    train = base / str(d["train"])
    labels = Path(str(train).replace(f"{os.sep}images", f"{os.sep}labels"))
    if labels != train and labels.is_dir() and any(labels.iterdir()):
        return yml
    dst = base.parent / f"{base.name}-yolo"
    done = dst / "dataset.yaml"
    if not (done.exists() and done.stat().st_mtime >= yml.stat().st_mtime):
        edgedet = ROOT / ".venv" / "bin" / "edgedet"
        cmd = [str(edgedet) if edgedet.exists() else "edgedet", "data", "convert", str(yml), "--to", "yolo",
               "--out", str(dst)]
        print("converting to YOLO labels:", " ".join(cmd))
        if dst.exists():
            shutil.rmtree(dst)
        subprocess.run(cmd, check=True)
    return done


def cmd_train(args):
    import ultralytics
    from ultralytics import YOLO

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = yolo_dataset_yaml(Path(args.data).resolve())
    cfg, stem = {"detect": ("yolov8n.yaml", "yolov8n-det"), "segment": ("yolov8n-seg.yaml", "yolov8n-seg")}[args.task]
    print(f"ultralytics {ultralytics.__version__}: {cfg} from scratch on {data}, {args.epochs} epochs at {args.imgsz}")
    _seed(SEED)
    model = YOLO(cfg, task=args.task)  # built from the model yaml: no weights are downloaded
    warmup = args.warmup_epochs if args.warmup_epochs is not None else min(3.0, args.epochs / 4)
    t0 = time.time()
    model.train(
        data=str(data), task=args.task, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
        workers=args.workers, device="cpu", pretrained=False, amp=False, plots=False, seed=SEED,
        deterministic=True, project=str(out / "train"), name=stem, exist_ok=True, warmup_epochs=warmup,
        close_mosaic=min(10, max(1, args.epochs // 4)) if args.epochs > 1 else 0, val=True, verbose=False,
        fraction=args.fraction, **({"time": args.time_hours} if args.time_hours else {}),
    )
    print(f"trained in {time.time() - t0:.0f} s")
    wdir = out / "train" / stem / "weights"
    best = wdir / "best.pt" if (wdir / "best.pt").exists() else wdir / "last.pt"
    f = YOLO(str(best)).export(format="onnx", imgsz=args.imgsz, dynamic=False, simplify=_has("onnxslim"),
                               batch=1, device="cpu")
    dst = out / f"{stem}.onnx"
    shutil.copy(f, dst)
    print(f"-> {dst} ({dst.stat().st_size} bytes) from {best}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures", help="small untrained Ultralytics-format ONNX files for tests")
    f.add_argument("--out", required=True)
    f.add_argument("--imgsz", type=int, default=96)
    f.add_argument("--no-yolov5", action="store_true", help="skip the anchor-based yolov5-det.onnx")
    t = sub.add_parser("train", help="train YOLOv8n(-seg) from scratch on an edgedet data set, export ONNX")
    t.add_argument("--data", required=True, help="edgedet dataset.yaml (or its folder)")
    t.add_argument("--task", choices=["detect", "segment"], required=True)
    t.add_argument("--imgsz", type=int, default=320)
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--warmup-epochs", type=float, default=None, help="default: min(3, epochs/4)")
    t.add_argument("--fraction", type=float, default=1.0, help="fraction of the train split to use")
    t.add_argument("--time-hours", type=float, default=None, help="Ultralytics' time= (overrides --epochs)")
    t.add_argument("--out", required=True)
    args = p.parse_args(argv)
    {"fixtures": cmd_fixtures, "train": cmd_train}[args.cmd](args)


if __name__ == "__main__":
    main()
