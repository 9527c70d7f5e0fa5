"""Where a training process runs: its device, its mixed precision, its process group's backend.

One code path for every device: the trainer asks these functions and never tests `cuda` itself, so the CPU tests run
the same lines a GPU run does (with autocast and the grad scaler switched off).

    --device auto      CUDA when torch sees a GPU, else the CPU
    --device cpu       the CPU (gloo under torchrun)
    --device cuda      GPU LOCAL_RANK under torchrun (one process per GPU), else GPU 0; NCCL under torchrun
    --device cuda:N    GPU N (single process only)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from edgedet.device.errors import EdgedetError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: autocast to a 16-bit type on CUDA, full float32 elsewhere."""

    autocast: bool  # forward pass under torch.autocast
    dtype: Optional[torch.dtype]  # torch.bfloat16 or torch.float16 under autocast, None without
    scaled: bool  # a GradScaler scales the loss (fp16 gradients would underflow without it)

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")


def cuda_device_count() -> int:
    """GPUs torch can use (0 on a CPU-only build)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def select_device(text: str, local_rank: int = 0, world: int = 1, gpus: Optional[int] = None) -> torch.device:
    """The torch.device of this process for `--device text`. gpus: CUDA devices visible (None = ask torch).
    EdgedetError naming the problem for an unknown value, CUDA asked where there is none, or a GPU index out of range."""
    gpus = cuda_device_count() if gpus is None else gpus
    text = text.strip().lower()
    if text == "auto":
        text = "cuda" if gpus else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index = local_rank if text == "cuda" else _gpu_index(text)
        if text != "cuda" and world > 1:
            raise EdgedetError(f"--device {text}: under torchrun each process takes the GPU of its LOCAL_RANK; "
                               "use --device cuda")
        if not gpus:
            raise EdgedetError(f"--device {text}: torch {torch.__version__} sees no CUDA GPU here; use --device cpu "
                               "(or auto)")
        if index >= gpus:
            raise EdgedetError(f"--device {text}: GPU {index} does not exist ({gpus} visible); "
                               + ("start at most one process per GPU" if text == "cuda" else f"use cuda:0..cuda:{gpus - 1}"))
        return torch.device("cuda", index)
    raise EdgedetError(f"--device {text!r}: expected {DEVICE_CHOICES}")


def _gpu_index(text: str) -> int:
    value = text.split(":", 1)[1]
    if not value.isdigit():
        raise EdgedetError(f"--device {text!r}: expected {DEVICE_CHOICES}")
    return int(value)


def precision_for(device: torch.device, amp: bool = True, bf16: Optional[bool] = None) -> Precision:
    """Mixed precision on CUDA (bf16 where the GPU supports it, else fp16 with a grad scaler); none on the CPU or
    with amp off. bf16: whether the GPU supports bfloat16 (None = ask torch)."""
    if device.type != "cuda" or not amp:
        return Precision(autocast=False, dtype=None, scaled=False)
    if bf16 is None:
        bf16 = torch.cuda.is_bf16_supported()
    if bf16:
        return Precision(autocast=True, dtype=torch.bfloat16, scaled=False)
    return Precision(autocast=True, dtype=torch.float16, scaled=True)


def process_group_backend(device: torch.device) -> str:
    """torch.distributed backend for processes on `device`: NCCL between GPUs, gloo on CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"
