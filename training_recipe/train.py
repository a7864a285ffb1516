"""train: fine-tune PixArt-α on (AST features, VAE latents) with accelerate.

    accelerate launch --config_file training_recipe/configs/accelerate_1gpu.yaml \
        -m training_recipe.train --config training_recipe/configs/pixart_512.yaml

Reads top to bottom: launch check -> config -> accelerator -> data -> model -> optimiser -> (resume) -> loop.
The main process shows a progress bar (loss, steps/s, ETA); `--report-to` picks accelerate's tracker.
Checkpoints (`output_dir/checkpoints/step-NNNNNNN/`) hold accelerate's state (model, optimiser,
LR scheduler, every RNG), the step, and an inference export (`pipeline/`); a rerun resumes from
the latest one and continues exactly where it stopped (same data order, same noise).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from sonify_toolkit.errors import EXIT_CANNOT_RUN, InputError, SonifyError
from sonify_toolkit.shards import StageDir

from .config import ReportTo, TrainConfig
from .features import MANIFEST
from .launch import check_accelerate_config, check_launch
from .model import AudioPixArt, attach_audio_projector, export, load_base_transformer

CHECKPOINTS = "checkpoints"
STATE_FILE = "train_state.json"


class FeatureDataset(Dataset):
    """The prepare output as one map-style dataset; arrays are memory-mapped, one file per shard."""

    def __init__(self, features: str | Path):
        sd = StageDir(features)
        manifest_path = Path(features) / MANIFEST
        if not manifest_path.exists():
            raise InputError(f"{features} has no {MANIFEST}: run training_recipe.prepare to completion first")
        self.manifest = json.loads(manifest_path.read_text())
        self.index: list[tuple[int, int]] = []
        self._audio: dict[int, np.ndarray] = {}
        self._latents: dict[int, np.ndarray] = {}
        for shard, table in sd.iter_tables(""):
            self.index.extend((shard, row) for row in table["row"].to_pylist())
        self._sd = sd
        if not self.index:
            raise InputError(f"{features} holds no encoded pairs")

    def _arrays(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        if shard not in self._audio:  # opened lazily, so that each DataLoader worker maps its own
            self._audio[shard] = np.load(self._sd.array_path("audio", shard), mmap_mode="r")
            self._latents[shard] = np.load(self._sd.array_path("latents", shard), mmap_mode="r")
        return self._audio[shard], self._latents[shard]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        shard, row = self.index[i]
        audio, latents = self._arrays(shard)
        return {"audio": torch.from_numpy(np.array(audio[row])), "latents": torch.from_numpy(np.array(latents[row]))}


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch drawn from (seed, epoch) only: the data order is a pure function
    of the step, so a resumed run sees exactly the batches an uninterrupted one would have."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)  # one per optimiser step run in this call
    output_dir: Path | None = None
    last_checkpoint: Path | None = None


def _step_dirs(checkpoints: Path) -> list[Path]:
    """The `step-NNNNNNN` folders under `checkpoints`, oldest step first (complete or not)."""
    return sorted(checkpoints.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = [p for p in _step_dirs(output_dir / CHECKPOINTS) if (p / STATE_FILE).exists()]  # state file goes last
    return found[-1] if found else None


def _tracker_config(cfg: TrainConfig) -> dict[str, Any]:
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in cfg.to_dict().items()}


def sample_audio(cfg: TrainConfig, train_set: FeatureDataset) -> tuple[torch.Tensor, str]:
    """The clips of the sample grids: held-out pairs (validation split) when given, else training clips."""
    source, where = train_set, "training clips (no validation_features: sample grids show pairs seen in training)"
    if cfg.validation_features:
        source = FeatureDataset(cfg.validation_features)
        for key in ("ast_model", "audio_shape", "resolution"):
            if source.manifest.get(key) != train_set.manifest.get(key):
                raise InputError(
                    f"validation_features {cfg.validation_features} has {key}={source.manifest.get(key)!r}, "
                    f"the training features {train_set.manifest.get(key)!r}: prepare both with the same encoders"
                )
        split = source.manifest.get("split", "validation")
        where = f"{split} split ({cfg.validation_features})"
    count = min(cfg.num_samples, len(source))
    return torch.stack([source[i]["audio"] for i in range(count)]).float(), where


def _progress_bar(accelerator, cfg: TrainConfig, step: int):
    """tqdm on the local main process only: steps done, loss, steps/s and the ETA to max_steps."""
    from tqdm.auto import tqdm

    return tqdm(
        total=cfg.max_steps,
        initial=step,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=not (cfg.progress and accelerator.is_local_main_process),
    )


def train(cfg: TrainConfig) -> TrainResult:
    from accelerate import Accelerator, PartialState
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    check_launch()  # before PartialState: a process group on missing GPUs would hang or run N CPU copies
    out = Path(cfg.output_dir)
    accumulation = cfg.accumulation(PartialState().num_processes)  # asserted: per-device x devices x accum = global
    report_to = ReportTo(cfg.report_to)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=accumulation,
        log_with=None if report_to is ReportTo.NONE else report_to.value,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    set_seed(cfg.seed)

    # --- data ------------------------------------------------------------------------------------
    dataset = FeatureDataset(cfg.features)
    audio_shape = tuple(dataset.manifest["audio_shape"])
    sampler = EpochSampler(len(dataset), cfg.seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.per_device_batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=cfg.num_workers,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(cfg.seed),  # keeps the loader off the global RNG
    )

    # --- model: pretrained PixArt, caption projection -> audio projector ----------------------------
    transformer = load_base_transformer(cfg.base_model, cfg.revision)
    attach_audio_projector(transformer, audio_shape[1], cfg.projector_hidden)
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    model = AudioPixArt(transformer, audio_shape, cfg.null_audio)
    noise_scheduler = DDPMScheduler.from_pretrained(cfg.base_model, subfolder="scheduler", revision=cfg.revision)

    # --- optimiser (paper 4.3) ---------------------------------------------------------------------
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, betas=cfg.adam_betas, eps=cfg.adam_eps
    )
    lr_scheduler = get_scheduler(
        "constant_with_warmup", optimizer, num_warmup_steps=cfg.lr_warmup_steps * accelerator.num_processes
    )
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)

    # --- resume --------------------------------------------------------------------------------------
    step = 0
    resume_from = latest_checkpoint(out) if cfg.resume == "latest" else (Path(cfg.resume) if cfg.resume else None)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        step = json.loads((resume_from / STATE_FILE).read_text())["step"]
        accelerator.print(f"resumed from {resume_from} at step {step}")
    batches_per_epoch = len(loader)
    if batches_per_epoch < accumulation:
        raise InputError(f"{len(dataset)} pairs give fewer batches per process than one optimiser step needs")
    steps_per_epoch = batches_per_epoch // accumulation
    epoch, skip = divmod(step, steps_per_epoch)
    skip *= accumulation

    if accelerator.is_main_process:
        accelerator.init_trackers("audio_pixart", config=_tracker_config(cfg))
    result = TrainResult(steps=step, output_dir=out)
    val_audio, val_source = sample_audio(cfg, dataset)
    if cfg.sample_every:
        accelerator.print(f"sample grids every {cfg.sample_every} steps from the {val_source}")
    accelerator.print(
        f"{len(dataset)} pairs, {accelerator.num_processes} process(es) x {cfg.per_device_batch_size} x "
        f"{accumulation} accumulation = batch {cfg.global_batch_size}; logs: {report_to.value}"
    )
    running = torch.zeros((), device=accelerator.device)
    bar = _progress_bar(accelerator, cfg, step)

    model.train()
    while step < cfg.max_steps:
        # accelerate's loader re-seeds the sampler with its own epoch counter on every pass: set it
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        batches.set_epoch(epoch)
        seen = 0
        for batch in batches:
            seen += 1
            if seen > steps_per_epoch * accumulation - skip:
                break  # a partial accumulation at an epoch's end is dropped: steps never span epochs
            with accelerator.accumulate(model):
                latents = batch["latents"].float()
                audio = batch["audio"].float()
                noise = torch.randn_like(latents)
                timesteps = torch.randint(
                    0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device
                )
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                drop = torch.rand(latents.shape[0], device=latents.device) < cfg.null_audio_rate
                pred = model(noisy, timesteps, audio, drop)
                if pred.shape[1] == 2 * latents.shape[1]:
                    pred = pred.chunk(2, dim=1)[0]  # learned sigma: the first half predicts the noise
                loss = F.mse_loss(pred.float(), noise.float())
                running += loss.detach() / accumulation
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step += 1
            step_loss = accelerator.gather(running.reshape(1)).mean().item()
            running.zero_()
            result.losses.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr_scheduler.get_last_lr()[0]:.2e}", refresh=False)
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                accelerator.log({"loss": step_loss, "lr": lr_scheduler.get_last_lr()[0], "epoch": epoch}, step=step)
            if cfg.sample_every and step % cfg.sample_every == 0:
                _sample(accelerator, model, cfg, val_audio, dataset.manifest["resolution"], step)
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                result.last_checkpoint = _checkpoint(accelerator, model, cfg, dataset.manifest, step)
            if step >= cfg.max_steps:
                break
        epoch, skip = epoch + 1, 0

    bar.close()
    result.steps = step
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def _recipe(cfg: TrainConfig, manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "base_model": cfg.base_model,
        "revision": cfg.revision,
        "ast_model": manifest["ast_model"],
        "audio_shape": manifest["audio_shape"],
        "resolution": manifest["resolution"],
    }


def _checkpoint(accelerator, model, cfg: TrainConfig, manifest: dict[str, Any], step: int) -> Path:
    """accelerate state + step + inference export; the step file goes last (marks it complete)."""
    path = Path(cfg.output_dir) / CHECKPOINTS / f"step-{step:07d}"
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()  # every rank's RNG file is on disk before the step file says "complete"
    if accelerator.is_main_process:
        export(accelerator.unwrap_model(model), path / "pipeline", _recipe(cfg, manifest))
        (path / STATE_FILE).write_text(json.dumps({"step": step}) + "\n")
        if cfg.checkpoints_total_limit:
            done = _step_dirs(path.parent)
            for old in done[: max(0, len(done) - cfg.checkpoints_total_limit)]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def _sample(accelerator, model, cfg: TrainConfig, val_audio: torch.Tensor, resolution: int, step: int) -> None:
    """Render the validation clips with the current weights (main process), save a grid, log it."""
    if not accelerator.is_main_process:
        return
    from .pipeline import image_grid, images_from_audio, make_pipeline, save_grid

    net = accelerator.unwrap_model(model)
    pipe = make_pipeline(cfg.base_model, net.transformer, revision=cfg.revision).to(accelerator.device)
    net.eval()
    with accelerator.autocast():
        images = images_from_audio(
            pipe,
            val_audio,
            net.null_audio.detach(),
            resolution=resolution,
            guidance_scale=cfg.sample_guidance,
            steps=cfg.sample_steps,
            seed=cfg.seed,
        )
    net.train()
    grid = image_grid(images, cols=len(images))
    save_grid(grid, Path(cfg.output_dir) / "samples" / f"step-{step:07d}.png")
    if cfg.report_to == ReportTo.TENSORBOARD.value:
        accelerator.get_tracker("tensorboard", unwrap=True).add_image(
            "samples", np.asarray(grid).transpose(2, 0, 1), step
        )
    elif cfg.report_to == ReportTo.WANDB.value:
        import wandb

        accelerator.get_tracker("wandb", unwrap=True).log({"samples": wandb.Image(grid)}, step=step)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML file (see training_recipe/configs/pixart_512.yaml)")
    parser.add_argument("--features", help="override: prepare output folder")
    parser.add_argument("--validation-features", help="override: prepare output of the validation split (samples)")
    parser.add_argument(
        "--report-to", choices=[r.value for r in ReportTo], help="override: accelerate tracker (default tensorboard)"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")
    parser.add_argument(
        "--accelerate-config",
        help="the accelerate YAML this run is launched with: refused at once if it names more GPUs than exist",
    )
    parser.add_argument("--output-dir", help="override: run folder")
    parser.add_argument("--base-model", help="override: PixArt checkpoint (Hub id or path)")
    parser.add_argument("--max-steps", type=int, help="override: optimiser steps")
    parser.add_argument("--per-device-batch-size", type=int, help="override (accumulation is recomputed)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "accelerate_config")}
    try:
        if args.accelerate_config:
            import torch

            check_accelerate_config(args.accelerate_config, torch.cuda.device_count())
        cfg = TrainConfig.from_yaml(args.config, **overrides)
        if args.per_device_batch_size is not None:
            cfg.gradient_accumulation_steps = None
        result = train(cfg)
    except SonifyError as exc:
        import os

        if os.environ.get("LOCAL_RANK", "0") == "0":  # one line per machine, not one per process
            print(f"training_recipe.train: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        raise SystemExit(EXIT_CANNOT_RUN) from None
    if result.losses:
        print(f"trained to step {result.steps}; last loss {result.losses[-1]:.4f}")


if __name__ == "__main__":
    main()
