"""Refuse a launch that asks for more GPUs than this machine has, before any process group starts.

An 8-GPU accelerate config on a machine without them otherwise starts 8 CPU trainings writing into
one output folder without a word. The check reads what the launcher set (torchrun's
`LOCAL_WORLD_SIZE`, accelerate's `ACCELERATE_USE_CPU`) and, when given, the accelerate YAML itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from sonify_toolkit.errors import DeviceError, InputError

CONFIGS = Path(__file__).parent / "configs"
HINT = (
    f"use {CONFIGS.name}/accelerate_1gpu.yaml (one GPU), {CONFIGS.name}/accelerate_cpu.yaml (a CPU smoke run), "
    "or pass --num_processes N to accelerate launch"
)


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes"}


def processes_per_machine(config: Mapping[str, object]) -> int:
    """What an accelerate YAML asks of each machine: num_processes spread over num_machines."""
    processes = int(config.get("num_processes") or 1)
    machines = int(config.get("num_machines") or 1)
    return max(1, processes // max(1, machines))


def check_accelerate_config(path: str | Path, cuda_devices: int) -> None:
    """A GPU config naming more processes per machine than there are CUDA devices: refused."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read accelerate config {path}: {exc}") from None
    if _truthy(config.get("use_cpu", False)):
        return
    wanted = processes_per_machine(config)
    if wanted > cuda_devices:
        raise DeviceError(
            f"{path.name} names {wanted} GPU process(es) per machine but this machine has {cuda_devices} CUDA "
            f"GPU(s): {HINT}"
        )


def check_launch(env: Mapping[str, str] | None = None, cuda_devices: int | None = None) -> None:
    """The processes the launcher started on this machine must each have a GPU, unless it asked for CPU."""
    env = os.environ if env is None else env
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count()
    local = int(env.get("LOCAL_WORLD_SIZE") or 1)
    if local > 1 and local > cuda_devices and not _truthy(env.get("ACCELERATE_USE_CPU", "")):
        raise DeviceError(
            f"accelerate started {local} processes on this machine but it has {cuda_devices} CUDA GPU(s): {HINT}"
        )
