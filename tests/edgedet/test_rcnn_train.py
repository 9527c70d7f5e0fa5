"""`edgedet train --model rcnn-n`: the two-stage model through the training loop (its forward is its loss),
validated every epoch through its PyTorch predict (box and mask AP), saved as an "rcnn" checkpoint."""
import json

import pytest
import torch

from edgedet.cli import main as cli_main
from tests.conftest import train_tiny, write_tiny_shapes

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    """A 64x64 synthetic data set: 16 train and 4 val images."""
    return write_tiny_shapes(tmp_path_factory.mktemp("rcnn64"), 64, train=16, val=4)


@pytest.fixture(scope="module")
def trained_rcnn(tiny_shapes, tmp_path_factory):
    return train_tiny(tiny_shapes, "rcnn-n", tmp_path_factory.mktemp("rcnn-run"))


def test_train_verb_trains_and_validates_the_two_stage_model(trained_rcnn):
    from edgedet.models import load_checkpoint

    lines = [json.loads(line) for line in (trained_rcnn / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2] and lines[-1]["step"] == 4
    assert {"box/AP50", "box/AP", "mask/AP50", "mask/AP"} <= set(lines[0]) and "semantic/mIoU" not in lines[0]
    raw = torch.load(trained_rcnn / "last.pt", weights_only=True)
    assert raw["family"] == "rcnn" and raw["semantic_names"] == [] and len(raw["anchors"]) == 3
    assert "train_state" in raw
    model, spec = load_checkpoint(trained_rcnn / "best.pt")
    assert spec.layout == "rcnn" and spec.task == "segment" and type(model).__name__ == "FasterRCNN"


def test_resume_continues_a_two_stage_run(trained_rcnn, capsys):
    code = cli_main(["train", "--resume", str(trained_rcnn / "last.pt"), "--epochs", "3"])
    assert code == 0
    lines = [json.loads(line) for line in (trained_rcnn / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["epoch"] == 3
    assert "resuming from epoch 2" in capsys.readouterr().err


def test_shipped_rcnn_is_a_name_wherever_shipped_is():
    from edgedet.models import SHIPPED_CHECKPOINTS
    from edgedet.models.loading import load_for_export, resolve_checkpoint

    assert resolve_checkpoint("shipped:rcnn") == SHIPPED_CHECKPOINTS["shipped:rcnn"]
    model, spec = load_for_export("shipped:rcnn")
    assert spec.layout == "rcnn" and type(model).__name__ == "FasterRCNN" and spec.input_size_hw == (320, 320)
    assert spec.second_stage["post_nms_top_k"] == 100
