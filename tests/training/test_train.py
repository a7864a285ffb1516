"""train: the loop overfits four pairs, a resumed run continues exactly like an uninterrupted one, a person can
watch it (progress bar, trackers), and a launch naming more GPUs than exist is refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonify_toolkit.errors import DeviceError
from training_recipe.config import ConfigError, TrainConfig, accumulation_for
from training_recipe.launch import check_accelerate_config, check_launch
from training_recipe.train import latest_checkpoint, main, train

TINY = Path(__file__).parents[2] / "training_recipe" / "configs" / "tiny.yaml"


def tiny_config(features: Path, base: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig.from_yaml(TINY, features=str(features), base_model=str(base), output_dir=str(out), **kw)


def test_paper_config_loads_and_batch_is_computed_and_checked() -> None:
    cfg = TrainConfig.from_yaml(TINY.with_name("pixart_512.yaml"))
    assert (cfg.learning_rate, cfg.weight_decay, cfg.global_batch_size) == (3.16e-5, 3e-2, 640)
    assert cfg.accumulation(8) == 2 and cfg.accumulation(16) == 1
    cfg.gradient_accumulation_steps = 3
    with pytest.raises(ConfigError, match="global batch 640"):
        cfg.accumulation(8)
    with pytest.raises(ConfigError, match="not a multiple"):
        accumulation_for(640, 40, 3)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("checkpoint_every", 0),
        ("log_every", 0),
        ("null_audio_rate", 1.0),
        ("report_to", "tensorbord"),
        ("null_audio", "random"),
    ],
)
def test_config_refuses_values_that_would_fail_inside_the_loop(key: str, value) -> None:
    with pytest.raises(ConfigError, match=key):
        TrainConfig.from_yaml(TINY, **{key: value})


def test_loop_overfits_four_pairs(features, tiny_pixart, tmp_path, capsys) -> None:
    out, _ = features
    cfg = tiny_config(out, tiny_pixart, tmp_path / "run", max_steps=40, null_audio_rate=0.0, sample_every=20)
    result = train(cfg)
    assert result.steps == 40 and len(result.losses) == 40
    captured = capsys.readouterr()
    bar = captured.err.replace("\r", "\n").splitlines()
    final = [line for line in bar if "40/40" in line]  # the progress bar: steps, rate, loss of the last step
    assert final and ("step/s" in final[-1] or "s/step" in final[-1]), bar[-3:]
    assert f"loss={result.losses[-1]:.4f}" in final[-1]
    assert "sample grids every 20 steps from the training clips" in captured.out  # no validation split given
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last <= 0.5 * first, (first, last)
    assert (tmp_path / "run" / "samples" / "step-0000020.png").exists()  # sample images every N steps
    assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents*"))  # tensorboard logs
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt is not None and ckpt.name == "step-0000040"
    assert (ckpt / "pipeline" / "transformer" / "config.json").exists()


@pytest.mark.parametrize(
    ("global_batch", "stop"),
    [(4, 2), (2, 1)],  # 4: one step per epoch, resume at an epoch start; 2: two per epoch, resume mid-epoch
)
def test_resume_continues_exactly(features, tiny_pixart, tmp_path, global_batch: int, stop: int) -> None:
    out, _ = features
    kw = {"global_batch_size": global_batch, "null_audio_rate": 0.5}
    straight = train(tiny_config(out, tiny_pixart, tmp_path / "a", max_steps=stop + 2, checkpoint_every=100, **kw))
    first = train(tiny_config(out, tiny_pixart, tmp_path / "b", max_steps=stop, checkpoint_every=stop, **kw))
    assert latest_checkpoint(tmp_path / "b").name == f"step-{stop:07d}"
    resumed = train(tiny_config(out, tiny_pixart, tmp_path / "b", max_steps=stop + 2, checkpoint_every=100, **kw))
    assert first.losses == straight.losses[:stop]
    assert resumed.losses == straight.losses[stop:]  # bit-exact: same weights, optimiser, data, noise


def test_command_line_overrides(features, tiny_pixart, tmp_path, capsys) -> None:
    out, _ = features
    argv = ["--config", str(TINY), "--features", str(out), "--base-model", str(tiny_pixart)]
    main([*argv, "--output-dir", str(tmp_path / "run"), "--max-steps", "1", "--per-device-batch-size", "1"])
    assert "trained to step 1" in capsys.readouterr().out  # accumulation recomputed: 4 / (1 x 1) = 4
    assert latest_checkpoint(tmp_path / "run").name == "step-0000001"
    assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents*"))  # tensorboard is the default


def test_report_to_none_writes_no_tracker_logs_and_no_progress_bar(features, tiny_pixart, tmp_path, capsys) -> None:
    out, _ = features
    argv = ["--config", str(TINY), "--features", str(out), "--base-model", str(tiny_pixart), "--max-steps", "2"]
    main([*argv, "--output-dir", str(tmp_path / "run"), "--report-to", "none", "--no-progress"])
    captured = capsys.readouterr()
    assert "trained to step 2" in captured.out and "logs: none" in captured.out
    assert "2/2" not in captured.err  # --no-progress
    assert not list(tmp_path.rglob("events.out.tfevents*"))
    with pytest.raises(SystemExit) as bad:
        main([*argv, "--output-dir", str(tmp_path / "x"), "--report-to", "tensorbord"])
    assert bad.value.code == 2 and "invalid choice: 'tensorbord'" in capsys.readouterr().err


def test_samples_come_from_the_validation_split(features, validation_features, tiny_pixart, tmp_path, capsys) -> None:
    out, _ = features
    val = str(validation_features)
    cfg = tiny_config(out, tiny_pixart, tmp_path / "run", max_steps=1, sample_every=1, validation_features=val)
    train(cfg)
    assert f"sample grids every 1 steps from the validation split ({val})" in capsys.readouterr().out
    assert (tmp_path / "run" / "samples" / "step-0000001.png").exists()


CONFIGS = TINY.parent


def test_an_accelerate_config_naming_more_gpus_than_exist_is_refused() -> None:
    with pytest.raises(DeviceError, match=r"accelerate_8gpu\.yaml names 8 GPU process"):
        check_accelerate_config(CONFIGS / "accelerate_8gpu.yaml", cuda_devices=1)
    check_accelerate_config(CONFIGS / "accelerate_8gpu.yaml", cuda_devices=8)
    check_accelerate_config(CONFIGS / "accelerate_1gpu.yaml", cuda_devices=1)
    with pytest.raises(DeviceError, match=r"accelerate_1gpu\.yaml"):
        check_accelerate_config(CONFIGS / "accelerate_1gpu.yaml", cuda_devices=0)
    check_accelerate_config(CONFIGS / "accelerate_cpu.yaml", cuda_devices=0)  # CPU: no GPU needed


def test_a_launch_with_more_processes_than_gpus_is_refused() -> None:
    with pytest.raises(DeviceError, match="started 8 processes on this machine but it has 0 CUDA"):
        check_launch({"LOCAL_WORLD_SIZE": "8", "ACCELERATE_USE_CPU": "False"}, cuda_devices=0)
    check_launch({"LOCAL_WORLD_SIZE": "8"}, cuda_devices=8)
    check_launch({"LOCAL_WORLD_SIZE": "2", "ACCELERATE_USE_CPU": "True"}, cuda_devices=0)  # asked for CPU
    check_launch({}, cuda_devices=0)  # a plain single process


def test_too_many_gpus_is_one_line_and_no_traceback(tmp_path) -> None:
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "training_recipe.train", "--config", str(TINY)]
    cmd += ["--accelerate-config", str(CONFIGS / "accelerate_8gpu.yaml"), "--output-dir", str(tmp_path / "run")]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=TINY.parents[2], timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("training_recipe.train: error: accelerate_8gpu.yaml names 8 GPU")
    assert "accelerate_1gpu.yaml" in lines[0] and not (tmp_path / "run").exists()


def test_main_refuses_a_launch_without_the_gpus_in_one_line(features, monkeypatch, capsys) -> None:
    out, _ = features
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "False")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(SystemExit) as refused:
        main(["--config", str(TINY), "--features", str(out), "--output-dir", "unused"])
    assert refused.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "started 8 processes on this machine" in err[0]
