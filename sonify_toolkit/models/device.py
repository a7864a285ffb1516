"""Where and in what precision a model runs: one rule for every model adapter and stage fingerprint."""

from __future__ import annotations

import re
from typing import Any

from ..errors import DeviceError, InputError


def pick_device(device: str | None) -> str:
    """`auto` (or None) means cuda when available; anything else is passed to torch as is."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def available_devices() -> list[str]:
    """The devices this process can load a model on: cpu, then cuda:0..N-1, then mps."""
    import torch

    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def check_device_name(device: str) -> str:
    """The `--device` value normalised, or a one-line `DeviceError` naming the accepted forms and what exists.

    Only the form is checked here (no torch import): a driver without a GPU may plan work for GPU workers.
    """
    name = (device or "auto").strip().lower()
    if not _DEVICE_PATTERN.match(name):
        raise DeviceError(
            f"--device {device!r} is not a device (choose: {', '.join(DEVICE_FORMS)}; "
            f"here: {', '.join(available_devices())})"
        )
    return name


def load_device(device: str | None) -> str:
    """The device a model is loaded on here: `pick_device`, refusing a device this machine does not have.

    Fingerprints use `pick_device` alone, since a driver without a GPU may plan work for GPU workers.
    """
    resolved = pick_device(check_device_name(device or "auto"))
    if resolved == "cpu":
        return resolved
    here = available_devices()
    present = resolved in here or (resolved == "cuda" and any(d.startswith("cuda:") for d in here))
    if not present:
        kind = "CUDA" if resolved.startswith("cuda") else resolved.upper()
        raise DeviceError(f"--device {device}: no {kind} device is visible here (devices here: {', '.join(here)})")
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
