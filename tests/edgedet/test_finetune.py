"""Fine-tuning (`edgedet train --weights`, `--freeze backbone`) and the training options around it (--cache,
--device cpu without autocast, resume with another number of processes, rank-0-only checkpoints)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from edgedet.cli import main as cli_main
from edgedet.data.synth import SynthConfig, synth_dataset_yaml, write_split
from edgedet.data.yamlio import write_yaml
from edgedet.models import SHIPPED_CHECKPOINT

VARIANT = ("triangle", "star", "hexagon")  # a synthetic variant with other classes than the shipped model's five
STEPS = 12


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    out = tmp_path_factory.mktemp("variant128")
    cfg = SynthConfig(imgsz=128, things=VARIANT)
    write_split(out, "train", 48, 3, cfg)
    write_split(out, "val", 12, 3, cfg)
    write_yaml(out / "dataset.yaml", synth_dataset_yaml(out, cfg, 3))
    return out


def train(data, out, *flags, steps=STEPS):
    args = ["train", "--data", str(data), "--imgsz", "128", "--epochs", "1", "--max-steps", str(steps), "--batch", "8",
            "--workers", "0", "--threads", "1", "--out", str(out), *flags]
    assert cli_main(args) == 0
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])


def test_fine_tuning_the_shipped_model_on_other_classes_beats_training_from_scratch(variant, tmp_path, capsys):
    tuned = train(variant, tmp_path / "tuned", "--weights", "shipped")
    err = capsys.readouterr().err
    assert "fine-tuning from shipped" in err and "class scores re-initialised for 3 classes" in err
    scratch = train(variant, tmp_path / "scratch")
    # after the same 12 steps, the fine-tuned model is past 0.2 box AP50 and the one from scratch is not
    assert tuned["box/AP50"] >= 0.2 > scratch["box/AP50"], (tuned["box/AP50"], scratch["box/AP50"])
    saved = torch.load(tmp_path / "tuned" / "best.pt", weights_only=True)
    assert saved["names"] == list(VARIANT)
    assert saved["model"]["det_heads.0.score.weight"].shape[0] == 3 * (1 + len(VARIANT))  # K * (1 + C)
    shipped = torch.load(SHIPPED_CHECKPOINT, weights_only=True)
    assert saved["anchors"] == shipped["anchors"]  # the box head's offsets are relative to them


def test_freeze_backbone_keeps_its_weights_and_statistics(variant, tmp_path):
    train(variant, tmp_path / "frozen", "--weights", "shipped", "--freeze", "backbone", "--cache", steps=3)
    shipped = torch.load(SHIPPED_CHECKPOINT, weights_only=True)["model"]
    trained = torch.load(tmp_path / "frozen" / "last.pt", weights_only=True)["train_state"]["model"]
    backbone = [k for k in trained if k.startswith("backbone.")]
    assert backbone and all(torch.equal(trained[k], shipped[k]) for k in backbone)  # running stats included
    assert not torch.equal(trained["neck.lateral.0.0.weight"], shipped["neck.lateral.0.0.weight"])


def test_same_classes_load_the_whole_head(tmp_path, capsys):
    from edgedet.finetune import load_pretrained
    from edgedet.models.checkpoint import model_from_checkpoint, read_checkpoint
    from edgedet.models.model import ModelConfig, build_model

    checkpoint = read_checkpoint(SHIPPED_CHECKPOINT)
    config = ModelConfig(**{**checkpoint["config"]["model"], "input_size_hw": (128, 128)})
    model = build_model(config)
    note = load_pretrained(model, checkpoint, checkpoint["names"], checkpoint["semantic_names"])
    assert "the head with its classes" in note and "re-initialised" not in note
    reference = model_from_checkpoint(checkpoint).state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())


@pytest.mark.parametrize("flags, message", [
    (["--freeze", "backbone"], "--freeze backbone keeps loaded weights"),
    (["--weights", "shipped", "--model", "s"], "is a 'n' model"),
    (["--weights", "missing.pt"], "checkpoint not found: missing.pt"),
])
def test_bad_fine_tuning_flags_are_one_line_errors(flags, message, tmp_path, capsys):
    assert cli_main(["train", "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_cpu_training_runs_without_autocast(variant, tmp_path, capsys):
    train(variant, tmp_path / "cpu", "--device", "cpu", steps=1)
    assert "1 process(es) on cpu (fp32), batch 8 in all" in capsys.readouterr().err


RANK_RECORDER = """
import os, sys
import edgedet.models.checkpoint as checkpoint
original = checkpoint.save_checkpoint
def recorded(state, path):
    with open(os.path.join({out!r}, "saves-rank" + os.environ.get("RANK", "0")), "a") as log:
        log.write(str(path) + "\\n")
    return original(state, path)
checkpoint.save_checkpoint = recorded
from edgedet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_resume_under_another_world_size_and_only_rank_0_writes(variant, tmp_path):
    """One process trains epoch 1; torchrun with two processes resumes it for epoch 2 (each taking batch / 2)."""
    out = tmp_path / "run"
    train(variant, out, "--epochs", "1", steps=0)
    first = torch.load(out / "last.pt", weights_only=True)
    script = tmp_path / "recorder.py"
    script.write_text(RANK_RECORDER.format(out=str(tmp_path)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(script), "train", "--resume", str(out / "last.pt"),
               "--epochs", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from epoch 1" in result.stderr and "2 process(es)" in result.stderr
    resumed = torch.load(out / "last.pt", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["train_state"]["step"] == 2 * first["train_state"]["step"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "saves-rank0").read_text().count("last.pt") == 1
    assert not (tmp_path / "saves-rank1").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
