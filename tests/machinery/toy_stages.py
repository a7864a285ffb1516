"""A small stage for machinery tests: importable by spawned workers, it logs setup, teardown and finalize."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from sonify_toolkit.errors import ModelLoadError
from sonify_toolkit.stage import ItemCallback, Shard, ShardContext, ShardResult, Stage, chunk


class LoggedHandle:
    """Stands for a model or an HTTP session: its `close()` leaves a file behind, one per worker."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir

    def close(self) -> None:
        (self.log_dir / f"teardown-{os.getpid()}-{uuid.uuid4().hex[:8]}").touch()


@dataclass
class ToyStage(Stage):
    log_dir: str
    items: int = 8
    per_shard: int = 1
    seconds: float = 0.0
    fail_shard: int | None = None
    fail_setup: bool = False

    name: ClassVar[str] = "toy"
    transient: ClassVar[tuple[str, ...]] = ("_handle",)

    def __post_init__(self) -> None:
        self._handle: LoggedHandle | None = None

    def output_dir(self, workdir: Path) -> Path:
        return Path(workdir) / "toy"

    def plan(self) -> Sequence[Shard]:
        return chunk([f"item-{i:03d}" for i in range(self.items)], self.per_shard)

    def params(self) -> dict[str, Any]:
        return {"items": self.items, "per_shard": self.per_shard}

    def setup(self) -> None:
        if self.fail_setup:
            raise ModelLoadError("toy model 'org/missing' cannot be loaded")
        (Path(self.log_dir) / f"setup-{os.getpid()}-{uuid.uuid4().hex[:8]}").touch()
        self._handle = LoggedHandle(Path(self.log_dir))

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        assert self._handle is not None, "process before setup"
        if shard.index == self.fail_shard:
            raise ModelLoadError(f"toy failure on shard {shard.index}")
        ctx = ShardContext(shard, on_item)
        with ctx.phase("work"):
            time.sleep(self.seconds)
        for item in shard.items:
            if item.endswith("3"):
                ctx.error(item, "ends_in_three")
            ctx.count("seen")
            ctx.advance()
        return ctx.result({"": pa.table({"item": list(shard.items)})})

    def finalize(self, workdir: Path) -> dict[str, Any]:
        with open(Path(self.log_dir) / "finalize.log", "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.3)  # long enough for a second finisher to arrive while this one runs
        return {"finalized_by": os.getpid()}


def logged(log_dir: Path, kind: str) -> list[Path]:
    return sorted(log_dir.glob(f"{kind}-*"))
