"""edgedet.train_device: device choice, mixed precision and the process group's backend; `edgedet train --device`."""

import pytest
import torch

from edgedet.cli import main as cli_main
from edgedet.device.errors import EdgedetError
from edgedet.train_device import precision_for, process_group_backend, select_device


@pytest.mark.parametrize("text, local_rank, world, gpus, expected", [
    ("auto", 0, 1, 0, "cpu"),
    ("auto", 0, 1, 2, "cuda:0"),
    ("auto", 1, 2, 2, "cuda:1"),      # under torchrun: the GPU of LOCAL_RANK
    ("cpu", 0, 1, 4, "cpu"),
    ("cuda", 0, 1, 1, "cuda:0"),
    ("CUDA:1", 0, 1, 2, "cuda:1"),
])
def test_select_device(text, local_rank, world, gpus, expected):
    assert select_device(text, local_rank, world, gpus=gpus) == torch.device(expected)


@pytest.mark.parametrize("text, local_rank, world, gpus, message", [
    ("cuda", 0, 1, 0, "sees no CUDA GPU"),
    ("cuda:0", 0, 1, 0, "sees no CUDA GPU"),
    ("cuda:2", 0, 1, 2, "GPU 2 does not exist (2 visible); use cuda:0..cuda:1"),
    ("cuda", 2, 3, 2, "GPU 2 does not exist (2 visible); start at most one process per GPU"),
    ("cuda:1", 1, 2, 2, "use --device cuda"),
    ("cuda:x", 0, 1, 1, "expected auto, cpu, cuda or cuda:N"),
    ("tpu", 0, 1, 1, "expected auto, cpu, cuda or cuda:N"),
])
def test_bad_devices_name_the_problem(text, local_rank, world, gpus, message):
    with pytest.raises(EdgedetError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        select_device(text, local_rank, world, gpus=gpus)


def test_mixed_precision_only_on_cuda():
    cpu = precision_for(torch.device("cpu"))
    assert (cpu.autocast, cpu.dtype, cpu.scaled, cpu.name) == (False, None, False, "fp32")
    bf16 = precision_for(torch.device("cuda", 0), bf16=True)
    assert (bf16.autocast, bf16.dtype, bf16.scaled, bf16.name) == (True, torch.bfloat16, False, "bf16")
    fp16 = precision_for(torch.device("cuda", 0), bf16=False)
    assert (fp16.autocast, fp16.dtype, fp16.scaled, fp16.name) == (True, torch.float16, True, "fp16")
    assert not precision_for(torch.device("cuda", 0), amp=False, bf16=True).autocast


def test_backend_nccl_between_gpus_gloo_on_cpus():
    assert process_group_backend(torch.device("cuda", 0)) == "nccl"
    assert process_group_backend(torch.device("cpu")) == "gloo"


def test_train_on_a_machine_without_cuda_refuses_device_cuda_in_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert cli_main(["train", "--device", "cuda", "--out", str(tmp_path / "r"), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA GPU" in err and "Traceback" not in err and len(err.splitlines()) == 1
