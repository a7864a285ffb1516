"""The contract every stage follows: plan shards, set up once per worker, process a shard purely.

A stage is a small picklable object (its parameters only). Executors ship it to workers, call
`setup()` once per worker (models load there, never at import or construction) and then
`process(shard)` for each shard. `process` returns tables and counts; it never writes files, so
the same code runs inline, in a process pool, on Ray actors or on N machines.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from . import schema


@dataclass(frozen=True)
class Shard:
    """A unit of work: a fixed, ordered list of JSON-able items (file paths, image refs, ...)."""

    index: int
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs; Ray actors are sized from this."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


def model_resources(device: str) -> Resources:
    """One model worker's needs: a GPU when its model runs on CUDA (asked for, or `auto` on a GPU machine).

    Ray sizes its actors from this, so `--executor ray` puts one model on each GPU of the cluster.
    """
    from .models.device import pick_device

    return Resources(num_cpus=1, num_gpus=1 if pick_device(device).startswith("cuda") else 0)


@dataclass
class ShardResult:
    tables: dict[str, pa.Table]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    items: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class ErrorLog:
    """Collects error rows and per-reason counts while a shard is processed ("errors are data")."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []
        self.counts: Counter[str] = Counter()

    def add(self, item: str, reason: str, detail: str = "") -> None:
        self.rows.append({"item": item, "reason": reason, "detail": detail[:2000]})
        self.counts[reason] += 1

    def table(self) -> pa.Table:
        return schema.table(self.rows, schema.ERRORS)


class StatsTimer:
    """`with timer("decode"):` accumulates seconds per named phase for the shard stats."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()

    def __call__(self, name: str) -> _Phase:
        return _Phase(self, name)


class _Phase:
    def __init__(self, timer: StatsTimer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timer.seconds[self.name] += time.perf_counter() - self.t0


ItemCallback = Callable[[int], None]


class Stage:
    """Base class: subclasses set `name`, `resources`, and implement `plan`, `params`, `process`."""

    name: ClassVar[str] = "stage"
    resources: ClassVar[Resources] = Resources()

    def output_dir(self, workdir: Path) -> Path:
        """The stage folder under the work directory."""
        raise NotImplementedError

    def plan(self) -> Sequence[Shard]:
        """The full, deterministic list of shards for the current inputs (cheap: no decoding)."""
        raise NotImplementedError

    def params(self) -> Mapping[str, Any]:
        """Everything that changes the output; fingerprinted to refuse mixing runs."""
        raise NotImplementedError

    def setup(self) -> None:
        """Load models and other heavy state; called once per worker before any shard."""

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        """Turn one shard into tables. Pure apart from reading its inputs."""
        raise NotImplementedError

    def finalize(self, workdir: Path) -> dict[str, Any] | None:
        """Runs once when every shard is complete (indexes, manifests). Returns summary facts."""
        return None


def chunk(items: Sequence[Any], size: int) -> list[Shard]:
    """Split an ordered item list into shards of `size` items (the last may be shorter)."""
    if size <= 0:
        raise ValueError("shard size must be positive")
    return [Shard(i, tuple(items[s : s + size])) for i, s in enumerate(range(0, len(items), size))]
