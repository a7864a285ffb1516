"""Where and in what precision a model runs: one rule for every model adapter and stage fingerprint."""

from __future__ import annotations

from typing import Any

from ..errors import DeviceError, InputError


def pick_device(device: str | None) -> str:
    """`auto` (or None) means cuda when available; anything else is passed to torch as is."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_device(device: str | None) -> str:
    """The device a model is loaded on here: `pick_device`, refusing CUDA where none is visible.

    Fingerprints use `pick_device` alone, since a driver without a GPU may plan work for GPU workers.
    """
    import torch

    resolved = pick_device(device)
    if resolved.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device}: no CUDA device is visible here (use --device cpu or auto)")
    return resolved


DTYPES = ("auto", "fp32", "float32", "bf16", "bfloat16", "fp16", "float16")


def torch_dtype(name: str | None, device: str) -> Any:
    """`auto` is bf16 on GPU and fp32 on CPU; an unknown name is a one-line error."""
    import torch

    if name in (None, "", "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if name not in DTYPES:
        raise InputError(f"unknown --dtype '{name}' (choose: {', '.join(DTYPES)})")
    return {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }[name]
