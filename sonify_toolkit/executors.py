"""Where shards run: inline, in a local process pool, on a Ray cluster; and which shards this machine takes.

Executors are interchangeable: each takes a stage and the shards still to do, runs
`stage.setup()` once per worker, and yields each finished shard's stats. Workers write their own
shard files (see `shards.StageDir`), so nothing large travels back to the driver; on Ray this
means the work directory must be on storage every node sees at the same path (as the inputs are).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.util as mp_util
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import DeviceError, InputError
from .shards import StageDir
from .stage import ItemCallback, Resources, Shard, Stage


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
            raise InputError(f"--shard-index must be in [0, {self.num_shards}), got {self.shard_index}")

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


def execute_shard(
    stage: Stage,
    shard: Shard,
    stage_dir: Path,
    on_item: ItemCallback | None = None,
    generation: str | None = None,
) -> dict[str, Any]:
    """Process one shard and write it; the stats file goes last and marks it complete.

    `generation` is the stage folder's token when the run started: each write checks it, so a
    folder cleared or restarted by another process is never written into.
    """
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
    StageDir(stage_dir).write_shard(shard.index, result.tables, stats, result.arrays, generation=generation)
    return stats


class Executor(Protocol):
    workers: int

    def map(
        self,
        stage: Stage,
        shards: Iterable[Shard],
        stage_dir: Path,
        on_item: ItemCallback | None = None,
        generation: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Run shards as they are pulled from `shards` (lazily: one per free worker, so the caller can
        claim each just before it starts), yielding each finished shard's stats. The first error
        stops the run: shards not yet started are never started."""
        ...


class StageHolder:
    """One stage for many shards: set up at its first shard, so a failing setup is that shard's error
    (reaching the driver as such, where a pool initializer's exception would only break the pool),
    and torn down once."""

    def __init__(self, stage: Stage):
        self.stage = stage
        self.ready = False

    def set_up(self) -> bool:
        """Set the stage up unless it is; whether this call did."""
        if self.ready:
            return False
        self.stage.setup()
        self.ready = True
        return True

    def run(
        self, shard: Shard, stage_dir: Path, on_item: ItemCallback | None = None, generation: str | None = None
    ) -> dict[str, Any]:
        self.set_up()
        return execute_shard(self.stage, shard, Path(stage_dir), on_item, generation)

    def teardown(self) -> None:
        if self.ready:
            self.stage.teardown()
            self.ready = False


class InlineExecutor:
    """Runs shards one after another in this process: simplest, and reports progress per item."""

    workers = 1

    def map(
        self,
        stage: Stage,
        shards: Iterable[Shard],
        stage_dir: Path,
        on_item: ItemCallback | None = None,
        generation: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        holder = StageHolder(stage)
        try:
            for shard in shards:
                yield holder.run(shard, stage_dir, on_item, generation)
        finally:
            holder.teardown()


_WORKER: StageHolder | None = None


def _init_worker(stage: Stage) -> None:
    """Pool worker start: one thread, Ctrl-C left to the driver (which stops the pool), the stage kept."""
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker: workers are the parallelism
    if "torch" in sys.modules:  # already imported (by unpickling the stage): the variable came too late
        sys.modules["torch"].set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER = StageHolder(stage)


def _run_in_worker(shard: Shard, stage_dir: Path, generation: str | None) -> dict[str, Any]:
    """A shard in a pool worker; the stage is set up at the worker's first shard and torn down at its exit."""
    assert _WORKER is not None, "worker was not initialised"
    if _WORKER.set_up():
        mp_util.Finalize(None, _WORKER.teardown, exitpriority=10)  # runs when the pool shuts the worker down
    return _WORKER.run(shard, stage_dir, None, generation)


class ProcessPoolShardExecutor:
    """A local pool of `workers` processes (spawned, so torch and threads are safe), each set up once.

    Only `workers` shards are in flight at a time: the first error cancels everything not yet
    started (shards already complete stay); an interrupt stops the workers at once.
    """

    def __init__(self, workers: int):
        self.workers = workers

    def map(
        self,
        stage: Stage,
        shards: Iterable[Shard],
        stage_dir: Path,
        on_item: ItemCallback | None = None,
        generation: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        feed = iter(shards)
        first = next(feed, None)
        if first is None:
            return
        ctx = mp.get_context("spawn")
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=(stage,))
        pending: set[Future[dict[str, Any]]] = {pool.submit(_run_in_worker, first, stage_dir, generation)}
        graceful = False
        try:
            while True:
                while len(pending) < self.workers:
                    shard = next(feed, None)
                    if shard is None:
                        break
                    pending.add(pool.submit(_run_in_worker, shard, stage_dir, generation))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut.exception() is not None:
                        graceful = True  # a shard failed: let the ones in flight finish, start no more
                    yield fut.result()
            graceful = True
        finally:
            if not graceful:  # interrupted (or the caller stopped listening): stop the workers now
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)


class _ShardActor(StageHolder):
    """A Ray actor holding one set-up stage (one model on its GPU) for many shards."""

    def __init__(self, stage: Stage):
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, int(stage.resources.num_cpus))))
        super().__init__(stage)

    def run_shard(self, shard: Shard, stage_dir: str, generation: str | None = None) -> dict[str, Any]:
        return self.run(shard, Path(stage_dir), None, generation)


def actors_that_fit(cluster: dict[str, float], resources: Resources, cap: int | None, shards: int) -> int:
    """How many stage actors to start: what the cluster's CPUs and GPUs hold, within `cap` and the shards."""
    fits = [int(cluster.get("CPU", 1) // resources.num_cpus)] if resources.num_cpus > 0 else []
    if resources.num_gpus > 0:
        fits.append(int(cluster.get("GPU", 0) // resources.num_gpus))
    n = min(fits) if fits else 1
    if n < 1:
        need = f"{resources.num_gpus:g} GPU" if resources.num_gpus else f"{resources.num_cpus:g} CPU"
        raise DeviceError(f"the Ray cluster has no room for one worker of this stage (needs {need} per worker)")
    return max(1, min(n, cap or n, shards))


class RayShardExecutor:
    """Shards as Ray actor calls: each actor loads the stage's model once and declares its resources.

    Outputs, resume markers and determinism are those of the local executors, because the same
    `execute_shard` writes each shard. `address=None` starts a local Ray instance; `"auto"` or
    `ray://host:10001` joins a cluster. `workers` > 1 caps the actors; 1 fills the cluster.
    """

    def __init__(self, workers: int = 1, address: str | None = None):
        self.cap = workers if workers > 1 else None
        self.workers = max(workers, 2)  # shards finish in other processes: progress is per shard
        self.address = address

    def map(
        self,
        stage: Stage,
        shards: Iterable[Shard],
        stage_dir: Path,
        on_item: ItemCallback | None = None,
        generation: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        feed = iter(shards)
        first = next(feed, None)
        if first is None:
            return
        import ray
        from ray.util import ActorPool

        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
        res = stage.resources
        expected = len(shards) if isinstance(shards, Sized) else (self.cap or 1 << 30)
        n = actors_that_fit(ray.cluster_resources(), res, self.cap, max(1, expected))
        actor_cls = ray.remote(_ShardActor).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus)
        actors = [actor_cls.remote(stage) for _ in range(n)]
        try:
            pool = ActorPool(actors)
            pool.submit(lambda a, s: a.run_shard.remote(s, str(stage_dir), generation), first)
            while True:
                while pool.has_free():
                    shard = next(feed, None)
                    if shard is None:
                        break
                    pool.submit(lambda a, s: a.run_shard.remote(s, str(stage_dir), generation), shard)
                if not pool.has_next():
                    break
                yield pool.get_next_unordered()
        finally:
            with contextlib.suppress(Exception):  # teardown is a courtesy: the actors are killed next
                ray.get([a.teardown.remote() for a in actors], timeout=30)
            for actor in actors:
                ray.kill(actor)


def local_executor(workers: int) -> Executor:
    """Inline for one worker, a process pool for more."""
    if workers < 1:
        raise InputError("--workers must be at least 1")
    return InlineExecutor() if workers == 1 else ProcessPoolShardExecutor(workers)


EXECUTORS = ("local", "ray")


def make_executor(kind: str, workers: int, address: str | None = None) -> Executor:
    """The executor named on the command line."""
    if kind == "local":
        if address:
            raise InputError("--ray-address needs --executor ray")
        return local_executor(workers)
    if kind == "ray":
        return RayShardExecutor(workers, address)
    raise InputError(f"unknown executor '{kind}' (choose: {', '.join(EXECUTORS)})")
