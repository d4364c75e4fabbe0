"""`--device cuda` refuses cleanly, before reading any data, where no CUDA GPU is usable."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from training.cli import main
from training.devices import cuda_problem, require_device
from training.exceptions import DeviceUnavailableError

NO_GPU = cuda_problem() is not None


@pytest.mark.skipif(not NO_GPU, reason="this machine has a usable CUDA GPU")
def test_train_with_device_cuda_and_no_gpu_exits_1_saying_why_and_what_to_do(tmp_path):
    record = tmp_path / "run.json"
    result = CliRunner().invoke(
        main,
        ["train", "--data", "synthetic:50", "--label", "synthetic", "--device", "cuda"]
        + ["--run-record", str(record)],
    )

    assert result.exit_code == 1
    assert "--device cuda needs an NVIDIA GPU" in result.output
    assert "--device cpu" in result.output
    run = json.loads(record.read_text())
    assert (run["status"], run["tag"], run["timings"]) == ("failed", None, {})


def test_an_unknown_device_is_refused_naming_the_allowed_ones():
    with pytest.raises(DeviceUnavailableError, match=r"one of \('cpu', 'cuda'\)"):
        require_device("tpu")


def test_the_cpu_is_always_usable():
    require_device("cpu")
