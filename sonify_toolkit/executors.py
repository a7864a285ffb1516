"""Where shards run: inline, in a local process pool, (later) on Ray; and which shards this machine takes.

Executors are interchangeable: each takes a stage and the shards still to do, runs
`stage.setup()` once per worker, and yields each finished shard's stats. Workers write their own
shard files (see `shards.StageDir`), so nothing large travels back to the driver.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .shards import StageDir
from .stage import ItemCallback, Shard, Stage


@dataclass(frozen=True)
class ShardSelection:
    """This machine's share of a run: shards whose index % num_shards == shard_index.

    Shard boundaries depend only on the inputs, never on how many machines split them, so the
    union of every machine's shards is exactly the single-machine output.
    """

    num_shards: int = 1
    shard_index: int = 0

    def __post_init__(self) -> None:
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"--shard-index must be in [0, {self.num_shards}), got {self.shard_index}")

    def take(self, shards: Sequence[Shard]) -> list[Shard]:
        return [s for s in shards if s.index % self.num_shards == self.shard_index]

    @classmethod
    def resolve(
        cls, num_shards: int | None, shard_index: int | None, env: dict[str, str] | None = None
    ) -> ShardSelection:
        """Explicit flags win; otherwise a SLURM array's variables; otherwise the whole run."""
        env = dict(os.environ) if env is None else env
        if num_shards is None and "SLURM_ARRAY_TASK_ID" in env:
            task_min = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            count = env.get("SLURM_ARRAY_TASK_COUNT")
            if count is None:
                count = str(int(env.get("SLURM_ARRAY_TASK_MAX", "0")) - task_min + 1)
            return cls(int(count), int(env["SLURM_ARRAY_TASK_ID"]) - task_min)
        return cls(num_shards or 1, shard_index or 0)


def execute_shard(stage: Stage, shard: Shard, stage_dir: Path, on_item: ItemCallback | None = None) -> dict[str, Any]:
    """Process one shard and write it; the stats file goes last and marks it complete."""
    t0 = time.perf_counter()
    result = stage.process(shard, on_item)
    seconds = time.perf_counter() - t0
    stats = {
        "shard": shard.index,
        "items": result.items,
        "rows": {name: tbl.num_rows for name, tbl in result.tables.items()},
        "counters": dict(result.counters),
        "errors": dict(result.errors),
        "seconds": round(seconds, 4),
        **result.extra,
    }
    StageDir(stage_dir).write_shard(shard.index, result.tables, stats, result.arrays)
    return stats


class Executor(Protocol):
    workers: int

    def map(
        self, stage: Stage, shards: Sequence[Shard], stage_dir: Path, on_item: ItemCallback | None = None
    ) -> Iterator[dict[str, Any]]: ...


class InlineExecutor:
    """Runs shards one after another in this process: simplest, and reports progress per item."""

    workers = 1

    def map(
        self, stage: Stage, shards: Sequence[Shard], stage_dir: Path, on_item: ItemCallback | None = None
    ) -> Iterator[dict[str, Any]]:
        if not shards:
            return
        stage.setup()
        for shard in shards:
            yield execute_shard(stage, shard, stage_dir, on_item)


_WORKER_STAGE: Stage | None = None


def _init_worker(stage: Stage) -> None:
    global _WORKER_STAGE
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker: workers are the parallelism
    stage.setup()
    _WORKER_STAGE = stage


def _run_in_worker(shard: Shard, stage_dir: Path) -> dict[str, Any]:
    assert _WORKER_STAGE is not None, "worker was not initialised"
    return execute_shard(_WORKER_STAGE, shard, stage_dir)


class ProcessPoolShardExecutor:
    """A local pool of `workers` processes (spawned, so torch and threads are safe), each set up once."""

    def __init__(self, workers: int):
        self.workers = workers

    def map(
        self, stage: Stage, shards: Sequence[Shard], stage_dir: Path, on_item: ItemCallback | None = None
    ) -> Iterator[dict[str, Any]]:
        if not shards:
            return
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=(stage,)) as pool:
            pending: set[Future[dict[str, Any]]] = {pool.submit(_run_in_worker, s, stage_dir) for s in shards}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()


ExecutorFactory = Callable[[int], Executor]


def local_executor(workers: int) -> Executor:
    """Inline for one worker, a process pool for more."""
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    return InlineExecutor() if workers == 1 else ProcessPoolShardExecutor(workers)


def make_executor(kind: str, workers: int, **options: Any) -> Executor:
    """The executor named on the command line (`local`, and `ray` once it exists)."""
    if kind == "local":
        return local_executor(workers)
    raise ValueError(f"unknown executor '{kind}' (choose: local)")
