"""Device choice: fingerprints resolve `auto` without a GPU check; loading a model refuses a missing GPU in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sonify_toolkit.cli import app
from sonify_toolkit.errors import DeviceError, InputError
from sonify_toolkit.models.device import load_device, pick_device, torch_dtype


def test_auto_follows_the_machine_and_precision_follows_the_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto") == pick_device(None) == expected
    assert pick_device("cuda:1") == "cuda:1"  # a driver without a GPU may plan work for GPU workers
    assert torch_dtype("auto", "cuda") is torch.bfloat16 and torch_dtype("auto", "cpu") is torch.float32
    assert torch_dtype("fp16", "cpu") is torch.float16


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_gpu_is_a_one_line_error(tmp_path: Path, sample_sounds: Path, tiny_clap: Path) -> None:
    with pytest.raises(DeviceError, match="no CUDA device is visible"):
        load_device("cuda")
    args = ["pool", f"demo={sample_sounds}", "-w", str(tmp_path), "--clap", str(tiny_clap), "--device", "cuda"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "sonify pool: error: --device cuda: no CUDA device is visible here" in result.output


def test_unknown_dtype_is_a_one_line_error(tmp_path: Path, sample_sounds: Path, tiny_clap: Path) -> None:
    with pytest.raises(InputError, match="unknown --dtype 'fp8'"):
        torch_dtype("fp8", "cpu")
    args = ["pool", f"demo={sample_sounds}", "-w", str(tmp_path), "--clap", str(tiny_clap), "--dtype", "fp8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "sonify pool: error: Invalid value for '--dtype': 'fp8' is not one of" in result.output
