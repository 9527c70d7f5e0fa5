"""Training: a few steps lower the loss, the train verb writes checkpoints and per-epoch validation, Ctrl-C saves
a resumable checkpoint, resume continues, augmentation keeps boxes on their objects. Tiny images, tiny data."""
import json

import numpy as np
import pytest
import torch

from edgedet.cli import main as cli_main
from tests.conftest import fit_steps, write_tiny_shapes

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    """A 64x64 synthetic data set: 24 train and 4 val images."""
    return write_tiny_shapes(tmp_path_factory.mktemp("shapes64"), 64, train=24, val=4)


def test_a_few_steps_lower_the_loss(tiny_shapes):
    from edgedet.data import load_dataset
    from edgedet.loss import EdgeDetLoss
    from edgedet.models.model import ModelConfig, build_model
    from edgedet.train_data import TrainDataset, collate

    dataset = load_dataset(tiny_shapes, split="train")
    images, targets, _ = collate([TrainDataset(dataset.samples, (64, 64))[i] for i in range(8)])
    torch.manual_seed(0)
    config = ModelConfig(num_classes=5, num_semantic=9, num_mask_coefs=8, input_size_hw=(64, 64),
                         anchors=[[(10.0, 10.0)] * 3, [(20.0, 20.0)] * 3, [(40.0, 40.0)] * 3])
    losses, parts = fit_steps(build_model(config), EdgeDetLoss(config), images, targets)
    assert all(parts[k] > 0 for k in ("box", "obj", "cls", "mask", "seg"))
    assert np.mean(losses[-3:]) < 0.65 * np.mean(losses[:3])


def test_augmentation_keeps_boxes_on_their_masks(tiny_shapes):
    from edgedet.data import load_dataset
    from edgedet.loss import PROTO_STRIDE
    from edgedet.train_data import AugmentConfig, TrainDataset

    dataset = load_dataset(tiny_shapes, split="train")
    train = TrainDataset(dataset.samples, (64, 64), AugmentConfig(scale_jitter=0.5, translate=0.2, flip_lr=0.5))
    for epoch in range(2):
        train.epoch = epoch
        for index in range(len(train)):
            item = train[index]
            assert item["image"].shape == (3, 64, 64) and item["semantic"].shape == (64, 64)
            for (cls, cx, cy, w, h), mask in zip(item["boxes"].numpy(), item["masks"].numpy()):
                ys, xs = np.nonzero(mask > 0.5)
                if len(xs):  # the soft mask at 1/4 resolution lies within the box (1 cell of slack)
                    assert xs.min() >= (cx - w / 2) / PROTO_STRIDE - 1 and xs.max() <= (cx + w / 2) / PROTO_STRIDE + 1
                    assert ys.min() >= (cy - h / 2) / PROTO_STRIDE - 1 and ys.max() <= (cy + h / 2) / PROTO_STRIDE + 1
                assert 0 <= cls < 5 and w > 2 and h > 2


def test_train_verb_writes_checkpoints_and_validation(tiny_shapes, tmp_path):
    from edgedet.models import load_checkpoint

    out = tmp_path / "run"
    code = cli_main(["train", "--data", str(tiny_shapes), "--imgsz", "64", "--epochs", "2", "--batch", "8",
                     "--workers", "0", "--threads", "1", "--mask-coefs", "8", "--out", str(out)])
    assert code == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert {"box/AP", "box/AP50", "mask/AP50", "semantic/mIoU", "fitness"} <= set(lines[0])
    model, spec = load_checkpoint(out / "best.pt")
    assert spec.names == ["circle", "square", "triangle", "star", "hexagon"] and spec.num_mask_coefs == 8
    raw = torch.load(out / "last.pt", weights_only=True)
    assert raw["epoch"] == 2 and raw["config"]["train"]["epochs"] == 2 and "train_state" in raw
    assert "train_state" not in torch.load(out / "best.pt", weights_only=True)


def test_interrupt_saves_and_resume_continues(tiny_shapes, tmp_path, monkeypatch, capsys):
    from edgedet import train

    out = tmp_path / "run"
    original = train.Trainer._train_one_epoch

    def interrupted_in_second_epoch(self, epoch, steps_per_epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        original(self, epoch, steps_per_epoch)

    monkeypatch.setattr(train.Trainer, "_train_one_epoch", interrupted_in_second_epoch)
    args = ["train", "--data", str(tiny_shapes), "--imgsz", "64", "--epochs", "2", "--batch", "8", "--workers", "0",
            "--threads", "1", "--out", str(out)]
    assert cli_main(args) == 130
    assert "interrupted: saved" in capsys.readouterr().err
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["train_state"]["step"] == 3

    monkeypatch.setattr(train.Trainer, "_train_one_epoch", original)
    assert cli_main(["train", "--resume", str(out / "last.pt")]) == 0
    assert "resuming from epoch 1" in capsys.readouterr().err
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    resumed = torch.load(out / "last.pt", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["train_state"]["step"] == 6

    assert cli_main(["train", "--resume", str(out / "last.pt"), "--epochs", "3"]) == 0  # extend the finished run
    extended = torch.load(out / "last.pt", weights_only=True)
    assert extended["epoch"] == 3 and extended["train_state"]["step"] == 9
    assert extended["config"]["train"]["epochs"] == 3 and extended["config"]["train"]["imgsz"] == 64
    capsys.readouterr()
    assert cli_main(["train", "--resume", str(out / "last.pt"), "--epochs", "2"]) == 2
    assert "already trained 3 epochs" in capsys.readouterr().err


def test_resume_with_epochs_extends_a_run_that_ended_on_its_time_limit(tiny_shapes, tmp_path):
    out = tmp_path / "timed"
    args = ["train", "--data", str(tiny_shapes), "--imgsz", "64", "--epochs", "1", "--batch", "8", "--workers", "0",
            "--threads", "1", "--time-limit", "0.0001", "--out", str(out)]  # the limit ends the first epoch early
    assert cli_main(args) == 0
    first = torch.load(out / "last.pt", weights_only=True)
    assert first["train_state"]["step"] < 3 and first["config"]["train"]["time_limit"] == 0.0001
    assert cli_main(["train", "--resume", str(out / "last.pt"), "--epochs", "2"]) == 0
    extended = torch.load(out / "last.pt", weights_only=True)
    assert extended["config"]["train"]["epochs"] == 2 and extended["config"]["train"]["time_limit"] == 0.0
    assert extended["train_state"]["step"] > first["train_state"]["step"]


def test_resume_flags_count_when_given_even_with_their_default_value():
    import argparse

    from edgedet.train import TrainConfig, resumed_config

    saved = TrainConfig(epochs=10, time_limit=5.0)
    default_epochs = TrainConfig().epochs
    given = resumed_config(saved, argparse.Namespace(epochs=default_epochs, time_limit=None), trained_epochs=10)
    assert (given.epochs, given.time_limit) == (default_epochs, 0.0)
    kept = resumed_config(saved, argparse.Namespace(epochs=None, time_limit=None), trained_epochs=4)
    assert kept == saved
    lifted = resumed_config(saved, argparse.Namespace(epochs=None, time_limit=0.0), trained_epochs=4)
    assert (lifted.epochs, lifted.time_limit) == (10, 0.0)


def test_resume_needs_a_training_state(tiny_shapes, tmp_path, capsys):
    from edgedet.models.checkpoint import checkpoint_dict, save_checkpoint
    from edgedet.models.model import ModelConfig, build_model

    path = save_checkpoint(checkpoint_dict(build_model(ModelConfig(input_size_hw=(64, 64))), ["a"] * 5, []), tmp_path / "x.pt")
    assert cli_main(["train", "--resume", str(path)]) == 2
    assert "no training state" in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [(["--imgsz", "100"], "multiple of 32"), (["--data", "/nonexistent"], "no such")])
def test_bad_flags_are_one_line_errors(flags, message, tmp_path, capsys):
    assert cli_main(["train", "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ddp_two_processes_on_loopback(tiny_shapes, tmp_path):
    """torchrun --nproc_per_node 2 -m edgedet train: gloo on 127.0.0.1, DistributedSampler, rank 0 saves."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "edgedet", "train", "--data", str(tiny_shapes), "--imgsz", "64",
               "--epochs", "1", "--batch", "8", "--max-steps", "2", "--workers", "0", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["train_state"]["step"] == 2 and saved["config"]["train"]["batch"] == 8
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_data_shapes_generates_the_synthetic_set_once(tmp_path, monkeypatch):
    from edgedet.train import TrainConfig, synthetic_data_dir

    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", "shapes", "--synth-train", "6", "--synth-val", "2", "--imgsz", "64", "--epochs", "1",
            "--batch", "4", "--max-steps", "1", "--workers", "0", "--threads", "1", "--out", "run"]
    assert cli_main(args) == 0
    folder = tmp_path / synthetic_data_dir(TrainConfig(imgsz=64, synth_train=6, synth_val=2))
    assert len(list((folder / "train" / "images").iterdir())) == 6
    stamp = (folder / "dataset.yaml").stat().st_mtime_ns
    assert cli_main(args[:-1] + ["run2"]) == 0
    assert (folder / "dataset.yaml").stat().st_mtime_ns == stamp
    assert (tmp_path / "run2" / "best.pt").is_file()
