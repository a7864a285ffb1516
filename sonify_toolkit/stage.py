"""The contract every stage follows: plan shards, set up once per worker, process a shard purely.

A stage is a small picklable object (its parameters only). Executors ship it to workers, call
`setup()` once per worker (models load there, never at import or construction) and then
`process(shard)` for each shard. `process` returns tables and counts; it never writes files, so
the same code runs inline, in a process pool, on Ray actors or on N machines.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from . import schema
from .errors import InputError


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


class ShardContext:
    """The bookkeeping of one shard being processed: error rows, counters, phase timers, progress.

    Stages used to write these by hand in every `process`; with a context they say what happened
    (`ctx.error(...)`, `ctx.count(...)`, `with ctx.phase("decode"):`, `ctx.advance()`) and
    `ctx.result(tables)` assembles the `ShardResult`, errors table and phase seconds included.
    """

    def __init__(self, shard: Shard, on_item: ItemCallback | None = None):
        self.shard = shard
        self.errors = ErrorLog()
        self.counters: Counter[str] = Counter()
        self.timer = StatsTimer()
        self._on_item = on_item

    def error(self, item: str, reason: str, detail: str = "") -> None:
        """One bad item: an error row and a count by reason ("errors are data")."""
        self.errors.add(item, reason, detail)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def phase(self, name: str) -> _Phase:
        """`with ctx.phase("decode"):` adds the block's seconds to that phase of the shard stats."""
        return self.timer(name)

    def advance(self, n: int = 1) -> None:
        """Report `n` items done (the progress bar of the inline executor)."""
        if self._on_item is not None:
            self._on_item(n)

    def result(
        self,
        tables: Mapping[str, pa.Table],
        *,
        arrays: Mapping[str, np.ndarray] | None = None,
        errors_table: str | None = "errors",
        extra: Mapping[str, Any] | None = None,
    ) -> ShardResult:
        """The shard's result: its tables (plus the error rows as `errors_table`), counts and phase times."""
        out_tables = dict(tables)
        if errors_table is not None:
            out_tables[errors_table] = self.errors.table()
        more = dict(extra or {})
        if self.timer.seconds:
            more["phase_seconds"] = {k: round(v, 4) for k, v in self.timer.seconds.items()}
        return ShardResult(
            tables=out_tables,
            arrays=dict(arrays or {}),
            counters=dict(self.counters),
            errors=dict(self.errors.counts),
            items=len(self.shard.items),
            extra=more,
        )


class Stage:
    """Base class: subclasses set `name`, `resources`, and implement `plan`, `params`, `process`.

    Per-worker state (a loaded model, an HTTP session, open tar files) lives in attributes named in
    `transient`: they are never pickled to workers (each worker builds its own in `setup`), and
    `teardown` closes each (its `close()`, if any) and forgets it, once per worker.
    """

    name: ClassVar[str] = "stage"
    resources: ClassVar[Resources] = Resources()
    transient: ClassVar[tuple[str, ...]] = ()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, **{attr: None for attr in self.transient if attr in self.__dict__}}

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

    def teardown(self) -> None:
        """Release per-worker state; called once per worker after its last shard (also on errors)."""
        for attr in self.transient:
            value = getattr(self, attr, None)
            close = getattr(value, "close", None)
            if callable(close):
                close()
            if attr in self.__dict__:
                setattr(self, attr, None)

    def finalize(self, workdir: Path) -> dict[str, Any] | None:
        """Runs once when every shard is complete (indexes, manifests). Returns summary facts."""
        return None

    def location_roots(self) -> Mapping[str, Path]:
        """The input folders this stage reads, by name (collection roots, image folders).

        Plan items and parameters under them are fingerprinted relative to them, never by absolute
        path, so the same data mounted elsewhere resumes; `_stage.json` records them for humans.
        """
        return {}

    def finalize_params(self) -> Mapping[str, Any]:
        """Options that change what `finalize` writes but no shard (pool's `--faiss-index`).

        Left out of the fingerprint, so asking for them later reuses every shard; a finalize run
        without them is not reused for a run that asks for them.
        """
        return {}


def named_roots(paths: Sequence[Path]) -> dict[str, Path]:
    """Input roots named by their last component (`images`, `sa_000.tar`); a repeated name gets `-2`, `-3`."""
    out: dict[str, Path] = {}
    for path in paths:
        out[unique_name(Path(path).expanduser().resolve().name or "root", out)] = Path(path)
    return out


def unique_name(base: str, taken: Container[str]) -> str:
    """`base`, or `base-2`, `base-3`, ... : the first that is not taken."""
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def chunk(items: Sequence[Any], size: int) -> list[Shard]:
    """Split an ordered item list into shards of `size` items (the last may be shorter)."""
    if size <= 0:
        raise InputError("shard size must be positive")
    return [Shard(i, tuple(items[s : s + size])) for i, s in enumerate(range(0, len(items), size))]
