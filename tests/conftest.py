"""Session fixtures shared by the test suite (owner H5): a tiny checkpoint, synthetic data, its exported models.

- `synth_data`:       a small synthetic data set folder (8 train, 4 val images, 160x160) from `edgedet data synth`.
- `tiny_checkpoint`:  path of a seeded, untrained edgedet "n" model (5 classes, 9 semantic classes, 8 mask
                      coefficients) saved as an edgedet checkpoint with input size 160x160.
- `exported_models`:  {"onnx", "onnx-int8", "tflite", "tflite-int8"} -> path of that checkpoint exported once per
                      session (int8 calibrated on the synthetic train images, minmax).
Heavy imports (torch, litert_torch) happen only inside the fixtures that need them.
"""
from __future__ import annotations

from pathlib import Path

import pytest

TINY_IMGSZ = 160  # input size of the tiny checkpoint and its exports
SYNTH_NAMES = ["circle", "square", "triangle", "star", "hexagon"]
SYNTH_SEMANTIC = ["sky", "grass", "water", "sand", *SYNTH_NAMES]


def write_tiny_shapes(out: Path, imgsz: int, train: int, val: int, min_size: float = 10, max_things: int = 4,
                      seed: int = 0, **options) -> Path:
    """A small synthetic data set in `out` (train and val splits, dataset.yaml), written directly (no CLI)."""
    from edgedet.data.synth import SynthConfig, synth_dataset_yaml, write_split
    from edgedet.data.yamlio import write_yaml

    cfg = SynthConfig(imgsz=imgsz, min_size=min_size, max_things=max_things, **options)
    write_split(out, "train", train, seed, cfg)
    write_split(out, "val", val, seed, cfg)
    write_yaml(out / "dataset.yaml", synth_dataset_yaml(out, cfg, seed))
    return out


def train_tiny(data: Path, model: str, out: Path, imgsz: int = 64, epochs: int = 2) -> Path:
    """`edgedet train --model <model>` on a tiny data set: batch 8, no workers, one thread; asserts it ends well."""
    from edgedet.cli import main

    code = main(["train", "--data", str(data), "--model", model, "--imgsz", str(imgsz), "--epochs", str(epochs),
                 "--batch", "8", "--workers", "0", "--threads", "1", "--out", str(out)])
    assert code == 0
    return out


def fit_steps(model, loss_fn, images, targets, steps: int = 30, lr: float = 3e-3):
    """`steps` AdamW steps of `model` on one batch -> (the loss of every step, the last step's loss parts)."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, parts = loss_fn(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses, parts


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """Folder with dataset.yaml, train/ (8 images) and val/ (4 images), 160x160, seed 0."""
    from edgedet.cli import main

    out = tmp_path_factory.mktemp("synth")
    code = main(["data", "synth", "--out", str(out), "--train", "8", "--val", "4", "--imgsz", str(TINY_IMGSZ),
                 "--seed", "0", "--workers", "1"])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained but seeded edgedet-n checkpoint (160x160, detect + semantic + instance masks)."""
    import torch

    from edgedet.models.checkpoint import checkpoint_dict, save_checkpoint
    from edgedet.models.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(preset="n", num_classes=len(SYNTH_NAMES), num_semantic=len(SYNTH_SEMANTIC),
                         num_mask_coefs=8, input_size_hw=(TINY_IMGSZ, TINY_IMGSZ))
    model = build_model(config).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(checkpoint_dict(model, SYNTH_NAMES, SYNTH_SEMANTIC), path)
    return path


@pytest.fixture(scope="session")
def exported_models(tiny_checkpoint, synth_data, tmp_path_factory) -> dict:
    """format -> path for onnx, onnx-int8, tflite, tflite-int8 of `tiny_checkpoint` (built once per session)."""
    from edgedet.calibration.calibset import build_calibration_set
    from edgedet.calibration.onnx_quant import default_int8_scheme
    from edgedet.export_inputs import calibration_items
    from edgedet.export.checkpoint import output_roles
    from edgedet.export.onnx_export import export_onnx
    from edgedet.export.onnx_int8 import export_onnx_int8
    from edgedet.export.tflite_export import export_tflite
    from edgedet.models.loading import load_for_export

    out = tmp_path_factory.mktemp("exported")
    model, spec = load_for_export(tiny_checkpoint)
    roles = output_roles(model, spec)
    items, _ = calibration_items(synth_data)
    calib = build_calibration_set(items, spec, size=4, strategy="random", seed=0)
    paths = {"onnx": out / "tiny.onnx", "onnx-int8": out / "tiny-int8.onnx",
             "tflite": out / "tiny.tflite", "tflite-int8": out / "tiny-int8.tflite"}
    export_onnx(model, spec, paths["onnx"], roles)
    export_onnx_int8(paths["onnx"], paths["onnx-int8"], calib, "minmax", default_int8_scheme()[0])
    export_tflite(model, spec, paths["tflite"], roles, "fp32")
    export_tflite(model, spec, paths["tflite-int8"], roles, "int8", calib, "minmax")
    return paths
