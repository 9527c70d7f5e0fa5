"""`edgedet train`: train an edgedet model on CPU or CUDA: the YOLO family (detection + instance masks + semantic
segmentation), SSD, or the two-stage Faster/Mask R-CNN (`--model`, edgedet.models.family).

    edgedet train --data shapes --model n --imgsz 320 --epochs 30 --out runs/n320
    edgedet train --data shapes --model ssd-n --out runs/ssd          (or --model rcnn-n: two-stage)
    edgedet train --data DIR --weights shipped --freeze backbone       (fine-tune the shipped model)
    torchrun --nproc_per_node 2 -m edgedet train --data DIR ...      (DistributedDataParallel: gloo, NCCL on GPUs)
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m edgedet train ...

--batch is the total batch over every process (each takes batch / processes), so the learning rate needs no
scaling when the number of processes changes; when you change the batch, scale --lr with the square root of the
batch ratio (AdamW's rule: the default 2e-3 is for batch 16, batch 64 takes 4e-3).

Each epoch: augmented batches (flip, scale jitter, colour), AdamW with warm-up and a cosine schedule, an EMA
of the weights, a progress bar with running losses and ETA, then validation of the EMA model (COCO box/mask
AP and mIoU) and OUT/last.pt (resumable with --resume) plus OUT/best.pt (best validation fitness).
Ctrl-C (or SIGTERM) saves OUT/last.pt before exiting.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from edgedet.device.errors import EdgedetError
from edgedet.device.imgsz import parse_imgsz
from .data import load_dataset
from .data.synth import SynthConfig, synth_dataset_yaml, write_split
from .data.yamlio import write_yaml
from .models import family as families
from .models.anchors import kmeans_anchors, split_levels
from .progress import progress_bar

SHAPES = "shapes"  # --data value that generates (once) and uses the synthetic shapes data set


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved into every checkpoint."""

    data: str = SHAPES  # "shapes", a data set folder, a dataset.yaml or a COCO JSON (edgedet.data.load_dataset)
    model: str = "n"  # model preset: n or s (YOLO family), ssd-n (SSD), rcnn-n (Faster/Mask R-CNN); edgedet.models.family
    imgsz: int = 320  # square training/validation input size, divisible by 32
    epochs: int = 30  # passes over the training split
    batch: int = 16  # total batch size (split over DDP processes)
    lr: float = 2e-3  # peak AdamW learning rate
    weight_decay: float = 5e-4  # AdamW decoupled weight decay of conv weights (not BN, not biases)
    warmup_steps: int = 200  # linear warm-up steps (capped at one epoch)
    final_lr_frac: float = 0.02  # cosine schedule ends at lr * final_lr_frac
    ema_decay: float = 0.998  # EMA decay at full strength (ramped up over the first steps)
    mask_coefs: int = 16  # M: instance-mask coefficients / prototypes (0 = no instance masks)
    num_anchors: int = 3  # K: anchors per cell per level (chosen by k-means on the training boxes)
    workers: int = 1  # DataLoader worker processes per training process
    threads: int = 0  # torch threads per process (0 = cores / processes)
    seed: int = 0  # seed of initialisation, shuffling and augmentation
    synth_train: int = 4000  # --data shapes: training images to generate
    synth_val: int = 300  # --data shapes: validation images to generate
    val_batch: int = 16  # batch size of validation
    max_steps: int = 0  # stop after this many optimizer steps in total (0 = no limit; for smoke tests)
    time_limit: float = 0.0  # minutes of training; the cosine schedule follows elapsed time when it is the tighter limit (0 = none)
    out: str = "runs/train"  # output folder: last.pt, best.pt, metrics.jsonl
    device: str = "auto"  # auto (CUDA when available), cpu, cuda (GPU LOCAL_RANK under torchrun) or cuda:N
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 with a grad scaler); never on CPU
    weights: str = ""  # fine-tune from this checkpoint ("shipped", "shipped:ssd", "shipped:rcnn" or a .pt): backbone, neck and the head where it fits
    freeze: str = ""  # "backbone": its weights and batch-norm statistics stay as loaded (with --weights)
    cache: bool = False  # decode every training image once, into memory, before the first epoch
    prefetch: int = 2  # batches each data loader worker prepares ahead


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `edgedet train`; defaults come from TrainConfig."""
    defaults = TrainConfig()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--data", default=defaults.data, help="'shapes' (synthetic, generated once), a data set folder, dataset.yaml or COCO JSON")
    parser.add_argument("--model", default=None, help=f"model preset: n or s (YOLO with FPN and mask/semantic "
                        f"heads), ssd-n (SSD), rcnn-n (Faster R-CNN with a Mask R-CNN head) (default "
                        f"{defaults.model}; with --weights, the checkpoint's)")
    parser.add_argument("--imgsz", type=int, default=defaults.imgsz, help="input size, a multiple of 32 (of 64 for ssd-n; "
                        "default 320)")
    parser.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {defaults.epochs})")
    parser.add_argument("--batch", type=int, default=defaults.batch, help="total batch size (default 16)")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate (default 2e-3)")
    parser.add_argument("--mask-coefs", type=int, default=defaults.mask_coefs, help="instance-mask prototypes M, 0 = none (default 16)")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="data loader workers per process (default 1)")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads per process (default: cores / processes)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default 0)")
    parser.add_argument("--synth-train", type=int, default=defaults.synth_train, help="--data shapes: training images (default 4000)")
    parser.add_argument("--synth-val", type=int, default=defaults.synth_val, help="--data shapes: validation images (default 300)")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps, help="stop after N optimizer steps (0 = no limit)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="stop after this many minutes of training, the LR schedule ending on time (default: no "
                             "limit; 0 = none)")
    parser.add_argument("--out", default=defaults.out, help="output folder (default runs/train)")
    parser.add_argument("--device", default=defaults.device, help="auto (CUDA when torch sees a GPU), cpu, cuda "
                        "(under torchrun: the GPU of each process's LOCAL_RANK) or cuda:N (default auto)")
    parser.add_argument("--no-amp", dest="amp", action="store_false",
                        help="full float32 on CUDA too (default: bf16 autocast, or fp16 with a grad scaler)")
    parser.add_argument("--weights", default=None, help="fine-tune: start from this checkpoint ('shipped', 'shipped:ssd', 'shipped:rcnn' or a .pt); "
                        "backbone and neck are loaded, the head too where the classes match (else re-initialised)")
    parser.add_argument("--freeze", choices=["backbone"], default=None,
                        help="with --weights: keep the backbone's weights and batch-norm statistics as loaded")
    parser.add_argument("--cache", action="store_true", help="decode the training images once into memory")
    parser.add_argument("--prefetch", type=int, default=defaults.prefetch,
                        help=f"batches each loader worker prepares ahead (default {defaults.prefetch})")
    parser.add_argument("--resume", default=None,
                        help="continue from a last.pt written by an earlier run, with its settings; --epochs and "
                             "--time-limit given with it extend the run (the cosine schedule stretches to the new end; "
                             "--epochs alone also lifts a saved time limit)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed flags (flag names are the field names with '-' for '_')."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    config = TrainConfig(**values)
    multiple = families.input_multiple(families.family_of_preset(config.model))  # EdgedetError naming an unknown preset
    parse_imgsz(config.imgsz, stride=multiple)  # EdgedetError naming a size that is not a positive multiple
    if config.epochs <= 0 or config.batch <= 0:
        raise EdgedetError("--epochs and --batch must be positive")
    if config.freeze and not config.weights:
        raise EdgedetError("--freeze backbone keeps loaded weights: give --weights shipped or --weights PATH.pt")
    if config.weights:
        from .finetune import preset_for_weights

        config = replace(config, model=preset_for_weights(config.weights, getattr(args, "model", None)))
    return config


RESUME_OVERRIDES = ("epochs", "time_limit")  # flags that may change a resumed run's settings (to extend it)


def resumed_config(saved: TrainConfig, args: argparse.Namespace, trained_epochs: int) -> TrainConfig:
    """A resumed run's saved settings, with RESUME_OVERRIDES given on the command line taken from the flags.
    --epochs without --time-limit lifts a saved time limit (a run that ended on its limit could not go on).
    EdgedetError if --epochs would end before the epochs already trained."""
    changes = {name: getattr(args, name) for name in RESUME_OVERRIDES if getattr(args, name, None) is not None}
    if "epochs" in changes and changes["epochs"] < trained_epochs:
        raise EdgedetError(f"--epochs {changes['epochs']}: the resumed run has already trained {trained_epochs} epochs")
    if "epochs" in changes and "time_limit" not in changes:
        changes["time_limit"] = 0.0
    return replace(saved, **changes)


def main(args: argparse.Namespace) -> int:
    """Entry point of `edgedet train` (single process or one rank of torchrun)."""
    from .models.checkpoint import read_checkpoint

    resume = None
    if args.resume:
        resume = read_checkpoint(args.resume)
        if "train_state" not in resume:
            raise EdgedetError(f"{args.resume} has no training state (only last.pt files can be resumed)")
        config = resumed_config(TrainConfig(**resume["config"]["train"]), args, int(resume["epoch"]))
    else:
        config = config_from_args(args)
    trainer = Trainer(config, resume)
    return trainer.run()


# ---- data ---------------------------------------------------------------------------------------

def synthetic_data_dir(config: TrainConfig) -> Path:
    """Cache folder of the generated shapes data set for this config (generated on first use)."""
    return Path(".cache") / "edgedet" / f"shapes-{config.imgsz}-seed{config.seed}-{config.synth_train}-{config.synth_val}"


def ensure_synthetic_data(config: TrainConfig, is_main: bool) -> Path:
    """Generate the shapes data set once (main process) and return its folder."""
    folder = synthetic_data_dir(config)
    if is_main and not (folder / "dataset.yaml").is_file():
        print(f"generating synthetic shapes into {folder} ...", file=sys.stderr)
        synth = SynthConfig(imgsz=config.imgsz)
        for split, count in (("train", config.synth_train), ("val", config.synth_val)):
            write_split(folder, split, count, config.seed, synth)
        write_yaml(folder / "dataset.yaml", synth_dataset_yaml(folder, synth, config.seed))
    return folder


def load_splits(config: TrainConfig, is_main: bool):
    """(train Dataset, val Dataset) named by config.data."""
    path = ensure_synthetic_data(config, is_main) if config.data == SHAPES else Path(config.data)
    distributed_barrier()
    train_set = load_dataset(path, split="train")
    val_set = load_dataset(path, split="val")
    if not len(train_set) or not len(val_set):
        raise EdgedetError(f"{path}: training needs images in both the train and the val split")
    return train_set, val_set


def anchors_for(train_set, imgsz: int, num_anchors: int):
    """K anchors per level by k-means (IoU distance) on the training boxes as the network sees them (letterboxed)."""
    from .models.model import STRIDES  # torch: the model module defines the strides

    wh = [s.xyxy[:, 2:] - s.xyxy[:, :2] for s in train_set.samples]
    scales = [imgsz / max(s.shape_hw) for s in train_set.samples]
    sizes = np.concatenate([w * r for w, r in zip(wh, scales)]) if wh else np.zeros((0, 2))
    return split_levels(kmeans_anchors(sizes, k=num_anchors * len(STRIDES)), len(STRIDES))


# ---- distributed --------------------------------------------------------------------------------

def distributed_env() -> tuple:
    """(rank, world size) from torchrun's environment; (0, 1) when not launched by torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def distributed_barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ---- schedule, EMA ------------------------------------------------------------------------------

def learning_rate(step: int, progress: float, config: TrainConfig, steps_per_epoch: int) -> float:
    """Linear warm-up over the first steps, then cosine decay from config.lr to config.lr * final_lr_frac as
    `progress` (fraction of the run done, 0..1) goes to 1."""
    warmup = max(1, min(config.warmup_steps, steps_per_epoch))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = min(1.0, max(0.0, progress))
    floor = config.lr * config.final_lr_frac
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class ModelEMA:
    """Exponential moving average of a model's floating-point state; decay ramps up as 1 - exp(-updates / 200)."""

    def __init__(self, model, decay: float, updates: int = 0):
        self.module = copy.deepcopy(getattr(model, "module", model)).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.updates = updates

    def update(self, model) -> None:
        import torch

        self.updates += 1
        decay = self.decay * (1 - math.exp(-self.updates / 200))
        source = getattr(model, "module", model).state_dict()
        with torch.no_grad():
            for name, value in self.module.state_dict().items():
                if value.dtype.is_floating_point:
                    value.mul_(decay).add_(source[name].detach(), alpha=1 - decay)
                else:
                    value.copy_(source[name])


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (data loader workers), in seconds."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def fitness(metrics: Dict[str, float]) -> float:
    """One number to pick best.pt: mean of box AP50, box AP50:95, mask AP50 and mIoU (those present)."""
    keys = ("box/AP50", "box/AP", "mask/AP50", "semantic/mIoU")
    values = [metrics[k] for k in keys if k in metrics]
    return sum(values) / len(values) if values else 0.0


# ---- the trainer --------------------------------------------------------------------------------

class Trainer:
    """One training run (one process of it under torchrun)."""

    def __init__(self, config: TrainConfig, resume: Optional[dict] = None):
        self.config = config
        self.resume = resume
        self.rank, self.world = distributed_env()
        self.is_main = self.rank == 0
        self.out = Path(config.out)

    def run(self) -> int:
        import torch

        self._setup_torch(torch)
        on_main_thread = threading.current_thread() is threading.main_thread()
        if on_main_thread:  # `kill` saves like Ctrl-C does; the caller's handler comes back afterwards
            previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self._build()
            self._train_epochs()
        except KeyboardInterrupt:
            if self.is_main and hasattr(self, "started"):  # the loop had begun: there is state to save
                path = self._save_last(self.epoch, {})
                print(f"\ninterrupted: saved {path} (resume with --resume {path})", file=sys.stderr)
            raise
        finally:
            if on_main_thread:
                signal.signal(signal.SIGTERM, previous_sigterm)
            if self.world > 1 and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
        return 0

    def _setup_torch(self, torch) -> None:
        from .train_device import precision_for, process_group_backend, select_device

        threads = self.config.threads or max(1, (os.cpu_count() or 1) // self.world)
        torch.set_num_threads(threads)
        torch.manual_seed(self.config.seed)
        self.device = select_device(self.config.device, int(os.environ.get("LOCAL_RANK", 0)), self.world)
        self.precision = precision_for(self.device, self.config.amp)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
        if self.world > 1:
            torch.distributed.init_process_group(process_group_backend(self.device))

    def _build(self) -> None:
        import torch

        from .train_data import AugmentConfig, TrainDataset

        from .finetune import freeze_backbone, load_pretrained, pretrained_checkpoint

        config = self.config
        self.train_set, self.val_set = load_splits(config, self.is_main)
        pretrained = pretrained_checkpoint(config.weights) if config.weights and not self.resume else None
        semantic_names = list(self.train_set.semantic_names) if self.family == families.YOLO else []
        model_config = self._model_config(pretrained, semantic_names)
        self.model = families.build(model_config)
        self.spec = families.model_spec(model_config, self.train_set.names, semantic_names)
        if pretrained is not None:
            note = load_pretrained(self.model, pretrained, self.train_set.names, semantic_names)
            if self.is_main:
                print(f"fine-tuning from {config.weights}: {note}", file=sys.stderr)
        if config.freeze == "backbone":
            freeze_backbone(self.model)
        self.loss = families.loss_for(model_config)
        # NHWC: faster convolutions in oneDNN (CPU) and on tensor cores (CUDA)
        self.model.to(self.device, memory_format=torch.channels_last)
        self.optimizer = self._optimizer(self.model)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.scaled)
        self.ema = ModelEMA(self.model, config.ema_decay) if self.is_main else None
        self.start_epoch, self.step, self.best_fitness, self.epoch, self.elapsed_before = 0, 0, -1.0, 0, 0.0
        if self.resume:
            self._load_resume_state(self.resume)
        if self.world > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        else:
            self.ddp = self.model
        with_masks = self.family == families.RCNN or (self.family == families.YOLO and bool(config.mask_coefs))
        dataset = TrainDataset(self.train_set.samples, (config.imgsz, config.imgsz), AugmentConfig(), config.seed,
                               with_masks=with_masks, with_semantic=bool(semantic_names),
                               cache_images=config.cache)
        self.train_data = dataset
        self.loader = self._loader(dataset)

    @property
    def family(self) -> str:
        return families.family_of_preset(self.config.model)

    def _model_config(self, pretrained: Optional[dict], semantic_names):
        """The model config of this run: its family's, with anchors (default boxes for SSD) from a resumed or
        fine-tuned checkpoint (the box offsets are relative to them), else new ones for the training boxes."""
        config = self.config
        size_hw = (config.imgsz, config.imgsz)
        saved = self.resume or pretrained
        if self.family == families.RCNN:
            from .models.rcnn import RCNNConfig

            return RCNNConfig(preset=config.model, num_classes=len(self.train_set.names), input_size_hw=size_hw)
        if self.family == families.SSD:
            from .models.ssd import SSDConfig, default_box_sizes

            anchors = saved["anchors"] if saved else default_box_sizes(config.imgsz)
            return SSDConfig(preset=config.model, num_classes=len(self.train_set.names), anchors=anchors,
                             input_size_hw=size_hw)
        from .models.model import ModelConfig

        anchors = saved["anchors"] if saved else anchors_for(self.train_set, config.imgsz, config.num_anchors)
        return ModelConfig(preset=config.model, num_classes=len(self.train_set.names),
                           num_semantic=len(semantic_names), num_mask_coefs=config.mask_coefs, anchors=anchors,
                           input_size_hw=size_hw)

    def _optimizer(self, model):
        """AdamW; weight decay on conv weights only (BN weights and all biases are not decayed)."""
        import torch

        decay, no_decay = [], []
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:  # frozen parts (--freeze) are left out
                (decay if parameter.ndim > 1 else no_decay).append(parameter)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.config.lr, betas=(0.9, 0.999))

    def _loader(self, dataset):
        import torch

        from .train_data import collate

        per_process = max(1, self.config.batch // self.world)
        sampler = None
        if self.world > 1:
            sampler = torch.utils.data.distributed.DistributedSampler(
                dataset, num_replicas=self.world, rank=self.rank, shuffle=True, seed=self.config.seed, drop_last=True)
        generator = torch.Generator().manual_seed(self.config.seed)
        workers = self.config.workers
        return torch.utils.data.DataLoader(
            dataset, batch_size=per_process, shuffle=sampler is None, sampler=sampler, drop_last=len(dataset) > per_process,
            num_workers=workers, collate_fn=collate, generator=generator, persistent_workers=False,
            pin_memory=self.device.type == "cuda", prefetch_factor=self.config.prefetch if workers else None,
        )

    def _load_resume_state(self, checkpoint: dict) -> None:
        state = checkpoint["train_state"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.module.load_state_dict(checkpoint["model"])
            self.ema.updates = int(state["ema_updates"])
        self.start_epoch = int(checkpoint["epoch"])
        self.step = int(state["step"])
        self.best_fitness = float(state["best_fitness"])
        self.elapsed_before = float(state["elapsed"])
        if self.is_main:
            print(f"resuming from epoch {self.start_epoch} (step {self.step})", file=sys.stderr)

    # -- loop --

    def _train_epochs(self) -> None:
        config = self.config
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(asdict(config), indent=2))
            print(f"training {config.model} at {config.imgsz} on {len(self.train_set)} images "
                  f"({len(self.val_set)} val), {self.world} process(es) on {self.device} ({self.precision.name}), "
                  f"batch {config.batch} in all, anchors {self.spec.anchors}", file=sys.stderr)
        steps_per_epoch = len(self.loader)
        self.total_steps = steps_per_epoch * config.epochs
        if config.max_steps:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.started = time.perf_counter() - self.elapsed_before
        for epoch in range(self.start_epoch, config.epochs):
            self.epoch = epoch
            if self.progress() >= 1.0:
                break
            self._train_one_epoch(epoch, steps_per_epoch)
            self._end_epoch(epoch + 1)

    def progress(self) -> float:
        """Fraction of the run done: steps over total steps, or elapsed over the time limit if that is further."""
        done = self.step / max(1, self.total_steps)
        if self.config.time_limit > 0:
            done = max(done, self.elapsed() / (60.0 * self.config.time_limit))
        return done

    def elapsed(self) -> float:
        """Seconds of training so far (including earlier runs of a resumed training), agreed by all processes."""
        import torch

        seconds = torch.tensor([time.perf_counter() - self.started], dtype=torch.float64)
        if self.world > 1:
            torch.distributed.broadcast(seconds, src=0)
        return float(seconds)

    def _train_one_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        from .finetune import train_mode

        train_mode(self.model, frozen_backbone=self.config.freeze == "backbone")
        self.train_data.epoch = epoch
        if hasattr(self.loader.sampler, "set_epoch"):
            self.loader.sampler.set_epoch(epoch)
        running: Dict[str, float] = {}  # exponentially smoothed loss parts, shown beside the bar
        start, images_seen = time.perf_counter(), 0
        with progress_bar(steps_per_epoch, f"epoch {epoch + 1}/{self.config.epochs}", "step", self.is_main) as bar:
            for images, targets, _ in self.loader:
                done = self.progress()
                if done >= 1.0:
                    break
                parts = self._train_step(images, targets, learning_rate(self.step, done, self.config, steps_per_epoch))
                running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in parts.items()}
                images_seen += len(images) * self.world  # every process steps on a batch of the same size
                rate = images_seen / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix_str(" ".join(f"{k} {v:.3f}" for k, v in running.items()) + f" {rate:.1f} img/s",
                                    refresh=False)
                bar.update()

    def _train_step(self, images, targets, lr: float) -> Dict[str, float]:
        """One optimizer step at learning rate `lr` (and EMA update) on a batch; returns the batch's loss parts."""
        import torch

        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        loss, parts = self._loss(images, targets.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # the scaler is a pass-through unless fp16 needs it
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model)
        return parts

    def _loss(self, images, targets):
        """(loss, its parts) of one batch: the forward under the run's autocast, then the family's loss in float32;
        the two-stage model's forward is its loss."""
        import torch

        precision = self.precision
        with torch.autocast(self.device.type, dtype=precision.dtype, enabled=precision.autocast):
            if self.loss is None:
                return self.ddp(images, targets)
            outputs = self.ddp(images)
        outputs = [o.float() for o in outputs]  # the loss in float32 (a no-op without autocast)
        loss, parts = self.loss(outputs, targets)
        return loss + sum(o.sum() for o in outputs) * 0.0, parts  # every head takes part in every DDP reduction

    def _end_epoch(self, epochs_done: int) -> None:
        from .train_val import validate

        if self.is_main:
            start = time.perf_counter()
            metrics = validate(self.ema.module, self.val_set, self.spec, self.config.val_batch)
            metrics["epoch"] = epochs_done
            metrics["fitness"] = fitness(metrics)
            metrics["val_seconds"] = round(time.perf_counter() - start, 1)
            metrics["train_minutes"] = round((start - self.started) / 60.0, 2)
            metrics["step"] = self.step
            metrics["cpu_minutes"] = round(cpu_seconds() / 60.0, 2)
            self._log_metrics(metrics)
            self._save_last(epochs_done, metrics)
            if metrics["fitness"] > self.best_fitness:
                self.best_fitness = metrics["fitness"]
                self._save_best(epochs_done, metrics)
        distributed_barrier()

    def _log_metrics(self, metrics: Dict[str, float]) -> None:
        shown = ("box/AP50", "box/AP", "mask/AP50", "mask/AP", "semantic/mIoU", "fitness")
        text = "  ".join(f"{k} {metrics[k]:.4f}" for k in shown if k in metrics)
        print(f"epoch {metrics['epoch']} val: {text} ({metrics['val_seconds']} s)", file=sys.stderr)
        with open(self.out / "metrics.jsonl", "a") as log:
            log.write(json.dumps(metrics) + "\n")

    def _checkpoint(self, epochs_done: int, metrics: dict, resumable: bool) -> dict:
        from .models.checkpoint import checkpoint_dict

        train_state = None
        if resumable:
            train_state = {
                "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "ema_updates": self.ema.updates,
                "step": self.step,
                "best_fitness": self.best_fitness,
                "elapsed": time.perf_counter() - self.started,
            }
        return checkpoint_dict(self.ema.module, self.train_set.names, self.spec.semantic_names,
                               asdict(self.config), epochs_done, metrics, train_state)

    def _save_last(self, epochs_done: int, metrics: dict) -> Path:
        from .models.checkpoint import save_checkpoint

        return save_checkpoint(self._checkpoint(epochs_done, metrics, resumable=True), self.out / "last.pt")

    def _save_best(self, epochs_done: int, metrics: dict) -> Path:
        from .models.checkpoint import save_checkpoint

        return save_checkpoint(self._checkpoint(epochs_done, metrics, resumable=False), self.out / "best.pt")
