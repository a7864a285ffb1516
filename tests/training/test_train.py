"""train: the loop overfits four pairs, and a resumed run continues exactly like an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training_recipe.config import TrainConfig, accumulation_for
from training_recipe.train import latest_checkpoint, main, train

TINY = Path(__file__).parents[2] / "training_recipe" / "configs" / "tiny.yaml"


def tiny_config(features: Path, base: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig.from_yaml(TINY, features=str(features), base_model=str(base), output_dir=str(out), **kw)


def test_paper_config_loads_and_batch_is_computed_and_checked() -> None:
    cfg = TrainConfig.from_yaml(TINY.with_name("pixart_512.yaml"))
    assert (cfg.learning_rate, cfg.weight_decay, cfg.global_batch_size) == (3.16e-5, 3e-2, 640)
    assert cfg.accumulation(8) == 2 and cfg.accumulation(16) == 1
    cfg.gradient_accumulation_steps = 3
    with pytest.raises(ValueError, match="global batch 640"):
        cfg.accumulation(8)
    with pytest.raises(ValueError, match="not a multiple"):
        accumulation_for(640, 40, 3)


@pytest.mark.parametrize(("key", "value"), [("checkpoint_every", 0), ("log_every", 0), ("null_audio_rate", 1.0)])
def test_config_refuses_values_that_would_fail_inside_the_loop(key: str, value) -> None:
    with pytest.raises(ValueError, match=key):
        TrainConfig.from_yaml(TINY, **{key: value})


def test_loop_overfits_four_pairs(features, tiny_pixart, tmp_path) -> None:
    out, _ = features
    cfg = tiny_config(out, tiny_pixart, tmp_path / "run", max_steps=40, null_audio_rate=0.0, sample_every=20)
    result = train(cfg)
    assert result.steps == 40 and len(result.losses) == 40
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
