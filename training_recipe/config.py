"""The training configuration: one YAML file holds everything a researcher tunes (read top to bottom)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from sonify_toolkit.errors import InputError


class ReportTo(str, Enum):
    """Where accelerate sends the scalars and sample grids ("none": only the progress bar and RUN/samples/)."""

    TENSORBOARD = "tensorboard"
    WANDB = "wandb"
    NONE = "none"


NULL_AUDIO_KINDS = ("learned", "zero")  # the unconditional audio for CFG: a trained sequence, or zeros


class ConfigError(InputError):
    """A training configuration that cannot run as written."""


@dataclass
class TrainConfig:
    # inputs and outputs
    features: str = "features"  # the prepare output folder
    # held-out pairs (prepare --split validation): sample grids come from them, never from training clips
    validation_features: str | None = None
    output_dir: str = "runs/pixart_512"
    base_model: str = "PixArt-alpha/PixArt-XL-2-512x512"  # Hub id or path with transformer/, vae/, scheduler/
    revision: str | None = None
    # paper 4.3: AdamW, lr 3.16e-5, weight decay 3e-2, global batch 640, ~0.5M steps on 8xA100
    learning_rate: float = 3.16e-5
    weight_decay: float = 3e-2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    lr_warmup_steps: int = 1000
    global_batch_size: int = 640
    per_device_batch_size: int = 40
    gradient_accumulation_steps: int | None = None  # null: computed (640 / (40 x 8 GPUs) = 2); set: checked
    max_steps: int = 500_000
    mixed_precision: str = "bf16"  # "no" | "fp16" | "bf16"
    gradient_checkpointing: bool = True
    # the audio projector (replaces PixArt's caption projection; trained from scratch, paper A.10)
    projector_hidden: int | None = None  # default: the transformer's inner dim, as PixArt's caption MLP
    # classifier-free guidance: a "null audio" replaces the audio at this rate
    null_audio: str = "learned"  # "learned" (a trained sequence) or "zero"
    null_audio_rate: float = 0.1
    # bookkeeping
    seed: int = 0
    num_workers: int = 4
    checkpoint_every: int = 2000
    checkpoints_total_limit: int | None = 3
    log_every: int = 10
    report_to: str = "tensorboard"  # tensorboard | wandb | none (accelerate's trackers)
    progress: bool = True  # a progress bar with loss, steps/s and ETA on the main process
    sample_every: int = 5000
    num_samples: int = 4  # held-out clips (validation_features; else the first training clips) per sample grid
    sample_steps: int = 20
    sample_guidance: float = 4.5
    resume: str | None = "latest"  # "latest", a checkpoint folder, or null

    def __post_init__(self) -> None:
        """Values that would otherwise fail deep in the loop (a modulo by zero at the first step)."""
        for name in ("checkpoint_every", "log_every", "max_steps", "per_device_batch_size", "global_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.null_audio not in NULL_AUDIO_KINDS:
            raise ConfigError(f"null_audio must be {' or '.join(NULL_AUDIO_KINDS)}, not {self.null_audio!r}")
        if not 0.0 <= self.null_audio_rate < 1.0:
            raise ConfigError(f"null_audio_rate must be in [0, 1), not {self.null_audio_rate}")
        try:
            self.report_to = ReportTo(self.report_to).value  # a ReportTo or its value, stored as the value
        except ValueError:
            choices = ", ".join(r.value for r in ReportTo)
            raise ConfigError(f"report_to must be one of {choices}, not {self.report_to!r}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        raw.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"unknown keys in {path}: {', '.join(unknown)}")
        if "adam_betas" in raw:
            raw["adam_betas"] = tuple(raw["adam_betas"])
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def accumulation(self, num_processes: int) -> int:
        """The paper's batch is global: per-device x devices x accumulation must equal it exactly."""
        if self.gradient_accumulation_steps is None:
            return accumulation_for(self.global_batch_size, self.per_device_batch_size, num_processes)
        got = self.per_device_batch_size * num_processes * self.gradient_accumulation_steps
        if got != self.global_batch_size:
            raise ConfigError(
                f"global batch {self.global_batch_size} != per_device_batch_size {self.per_device_batch_size} "
                f"x {num_processes} processes x gradient_accumulation_steps {self.gradient_accumulation_steps} "
                f"= {got}; leave gradient_accumulation_steps empty to compute it"
            )
        return self.gradient_accumulation_steps


def accumulation_for(global_batch: int, per_device: int, num_processes: int) -> int:
    """The accumulation that reaches `global_batch`, or an error when it does not divide."""
    per_step = per_device * num_processes
    if global_batch % per_step:
        raise ConfigError(
            f"global batch {global_batch} is not a multiple of per-device batch {per_device}"
            f" x {num_processes} processes"
        )
    return global_batch // per_step
