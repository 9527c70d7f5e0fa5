"""`make gpu-check`: the CUDA path of `edgedet train` against the CPU path, and its speed, on a machine with a GPU.

    .venv/bin/python benchmarks/gpu_check.py [--steps 5] [--speed-steps 30] [--batch 64]

1. Agreement: the same initial weights and the same first batches through the trainer's own step
   (`edgedet.train.Trainer`) on the CPU and on CUDA in float32 (TF32 off); the loss parts of every step must agree
   within --rtol (default 2e-3: cuDNN and oneDNN sum in different orders).
2. Speed: training images per second on CUDA with the default mixed precision (bf16, or fp16 with a grad scaler)
   and in float32, and on the CPU for reference, at the same batch (medians over steps after a warm-up).

Exit 0 when the losses agree, 1 when they do not, 2 without a CUDA GPU (nothing is measured).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from edgedet.data.synth import SynthConfig, synth_dataset_yaml, write_split
from edgedet.data.yamlio import write_yaml
from edgedet.train import Trainer, TrainConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="steps compared between CPU and CUDA")
    parser.add_argument("--speed-steps", type=int, default=30, help="steps timed per speed measurement")
    parser.add_argument("--batch", type=int, default=64, help="batch of the speed measurement")
    parser.add_argument("--rtol", type=float, default=2e-3, help="relative tolerance of the loss agreement")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"gpu-check: torch {torch.__version__} sees no CUDA GPU here; nothing measured", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "shapes", max(args.batch * 2, 64))
        agree = compare_losses(data, args.steps, args.rtol)
        for device, amp in (("cuda", True), ("cuda", False), ("cpu", False)):
            rate = images_per_second(data, device, amp, args.batch, args.speed_steps if device == "cuda" else 5)
            print(f"speed: {device} {'AMP' if amp else 'fp32'}, batch {args.batch}: {rate:.1f} images/s")
    print("gpu-check:", "PASS" if agree else "FAIL")
    return 0 if agree else 1


def make_data(out: Path, count: int) -> Path:
    cfg = SynthConfig(imgsz=320)
    write_split(out, "train", count, 0, cfg)
    write_split(out, "val", 8, 0, cfg)
    write_yaml(out / "dataset.yaml", synth_dataset_yaml(out, cfg, 0))
    return out


def trainer(data: Path, device: str, amp: bool, batch: int) -> Trainer:
    """A built trainer (weights initialised from the seed, anchors from the data) on `device`."""
    run = Trainer(TrainConfig(data=str(data), device=device, amp=amp, batch=batch, workers=0, seed=0,
                              out=str(data.parent / "run")))
    run._setup_torch(torch)
    run._build()
    run.model.train()
    return run


def compare_losses(data: Path, steps: int, rtol: float) -> bool:
    """Loss parts of the first `steps` steps on CPU and CUDA (fp32) from the same weights and batches."""
    cpu, cuda = trainer(data, "cpu", False, 16), trainer(data, "cuda", False, 16)
    cuda.model.load_state_dict(cpu.model.state_dict())
    batches = [batch for _, batch in zip(range(steps), cpu.loader)]
    ok = True
    for step, (images, targets, _) in enumerate(batches):
        a = cpu._train_step(images, targets, 1e-3)
        b = cuda._train_step(images, targets, 1e-3)
        worst = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-6) for k in a)
        ok &= worst <= rtol
        print(f"step {step + 1}: cpu {fmt(a)} | cuda {fmt(b)} | largest relative difference {worst:.2e}")
    return ok


def images_per_second(data: Path, device: str, amp: bool, batch: int, steps: int) -> float:
    run = trainer(data, device, amp, batch)
    images, targets, _ = next(iter(run.loader))
    for _ in range(3):  # warm-up: cuDNN autotuning, allocator
        run._train_step(images, targets, 1e-3)
    seconds = []
    for _ in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run._train_step(images, targets, 1e-3)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return len(images) / statistics.median(seconds)


def fmt(parts) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in parts.items())


if __name__ == "__main__":
    sys.exit(main())
