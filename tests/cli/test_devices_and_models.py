"""Point 2: a device this machine lacks, and a model that cannot be loaded, are each one line saying what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sonify_toolkit.errors import ModelLoadError
from sonify_toolkit.models.loading import load_failure_reason, load_pretrained

from .conftest import sonify


def test_a_device_name_that_is_no_device_is_refused_before_anything_runs(tmp_path: Path) -> None:
    out = sonify("pool", f"x={tmp_path}", "-w", tmp_path / "w", "--device", "gpu")
    assert out.exit_code == 2
    assert "sonify pool: error: Invalid value for '--device': 'gpu' is not a device" in out.error_line
    assert "(choose: auto, cpu, cuda, cuda:N, mps; here: cpu" in out.error_line  # then cuda:0... where present
    assert not (tmp_path / "w").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_gpu_names_what_exists(tmp_path: Path, sample_sounds: Path, tiny_clap: Path) -> None:
    out = sonify("pool", f"demo={sample_sounds}", "-w", tmp_path, "--clap", tiny_clap, "--device", "cuda:1", "-q")
    assert out.exit_code == 2
    assert out.error_line == "sonify pool: error: --device cuda:1: no CUDA device is visible here (devices here: cpu)"


def test_a_hub_model_in_offline_mode_names_the_model_the_cause_and_the_local_folder_option(
    tmp_path: Path, sample_sounds: Path
) -> None:
    out = sonify("pool", f"demo={sample_sounds}", "-w", tmp_path, "--clap", "laion/clap-htsat-unfused", "-q")
    assert out.exit_code == 2
    line = out.error_line
    assert line.startswith("sonify pool: error: cannot load the CLAP model 'laion/clap-htsat-unfused': offline mode")
    assert "pass a local folder with --clap PATH" in line


def test_a_folder_that_is_not_a_checkpoint(tmp_path: Path, sample_sounds: Path) -> None:
    out = sonify("pool", f"demo={sample_sounds}", "-w", tmp_path / "w", "--clap", tmp_path, "-q")
    assert out.exit_code == 2
    assert f"cannot load the CLAP model '{tmp_path}': the folder exists but is not a loadable checkpoint" in (
        out.error_line
    )


class ConnectError(Exception):
    """Named like httpx's: what transformers chains under its "couldn't connect" OSError."""


def test_an_unreachable_hub_is_told_apart_from_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def unreachable(model: str) -> None:
        try:
            raise ConnectError("[Errno -2] Name or service not known")
        except ConnectError as exc:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from exc

    with pytest.raises(ModelLoadError) as caught:
        load_pretrained(unreachable, "org/model", what="AST model", option="--ast")
    assert str(caught.value) == (
        "cannot load the AST model 'org/model': the Hub (https://huggingface.co) cannot be reached and it is not "
        "in the local Hub cache; pass a local folder with --ast PATH (a save_pretrained or `hf download` copy)"
    )
    assert load_failure_reason("./no/such/folder", OSError("x")) == "no such folder"
