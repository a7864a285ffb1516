"""Runs one stage: plan, claim the output folder, skip finished shards, execute, finalize, summarise.

This is the only place that knows about resume, progress, leases and interrupts, so every stage
gets them for free: any number of processes may run the same stage on one work directory.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .errors import EXIT_SIGINT, EXIT_SIGTERM
from .executors import Executor, InlineExecutor, ShardSelection, make_executor
from .leases import LeaseKeeper, held_lock, lease_is_live, sweep_temporaries
from .shards import StageDir, fingerprint, shard_name
from .stage import Shard, Stage
from .workdir import mark_workdir


@dataclass
class RunSummary:
    stage: str
    stage_dir: Path
    shards_total: int
    shards_selected: int
    shards_done_now: int
    shards_skipped: int
    shards_complete: int
    items_now: int
    seconds: float
    rows: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    finalized: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    shards_by_others: int = 0  # finished meanwhile by other processes on the same work directory

    @property
    def items_per_second(self) -> float:
        return self.items_now / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class RunInterrupted(BaseException):
    """Ctrl-C or SIGTERM stopped a run: leases are released; `line` says where it stands and how to go on.

    A BaseException like KeyboardInterrupt, so nothing that catches `Exception` swallows it.
    """

    def __init__(self, line: str, exit_code: int):
        super().__init__(line)
        self.line, self.exit_code = line, exit_code


class _Terminated(BaseException):
    """SIGTERM (SLURM's time limit, `scancel`, a Ray node going away), raised in the main thread."""


class _Signals:
    """Ctrl-C and SIGTERM for the block: raised at once, and remembered.

    An exception raised by a signal handler can be swallowed where it lands (inside a C callback,
    e.g. soundfile's reader), so the signal is also kept here and `check()` (after every item and
    shard) raises it again: a run always stops within one item, and the swallowed one is not
    reported as "Exception ignored" (the one line stays one line).
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def _raise(self, signum: int) -> None:
        raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = signum
        self._raise(signum)

    def check(self) -> None:
        if self.received is not None:
            self._raise(self.received)

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Signals]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        previous_hook = sys.unraisablehook

        def hook(unraisable: Any) -> None:
            if not isinstance(unraisable.exc_value, (KeyboardInterrupt, _Terminated)):
                previous_hook(unraisable)

        signal.signal(signal.SIGTERM, self._handler)
        if previous[signal.SIGINT] is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._handler)
        sys.unraisablehook = hook
        try:
            yield self
        finally:
            sys.unraisablehook = previous_hook
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def location_free(obj: Any, roots: Mapping[str, Path]) -> Any:
    """`obj` with every string naming a path under one of `roots` written relative to it (`{workdir}/pairs`).

    Fingerprints and `_stage.json` then survive a work directory that is moved, copied or mounted
    elsewhere, and no local absolute path of the work directory travels into a release.
    """
    prefixes = sorted(
        {(str(Path(p).resolve()), name) for name, p in roots.items()} | {(str(p), n) for n, p in roots.items()},
        key=lambda kv: -len(kv[0]),
    )

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            for prefix, name in prefixes:
                if prefix not in ("", ".", "/") and (value == prefix or value.startswith(prefix.rstrip("/") + "/")):
                    rest = value[len(prefix) :].lstrip("/")
                    return f"{{{name}}}" + (f"/{rest}" if rest else "")
            return value
        if isinstance(value, Mapping):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [fix(v) for v in value]
        return value

    return fix(obj)


def command_argv(argv: Sequence[str] | None = None) -> list[str]:
    """The command line that started this process, as the user would retype it (`sonify ...`)."""
    args = list(sys.argv if argv is None else argv)
    return ["sonify", *args[1:]] if args else ["sonify"]


def run_stage(
    stage: Stage,
    workdir: Path,
    executor: Executor | None = None,
    selection: ShardSelection | None = None,
    *,
    overwrite: bool = False,
    console: Console | None = None,
    show_progress: bool = True,
    argv: Sequence[str] | None = None,
    lease_ttl: float | None = None,
) -> RunSummary:
    """Run (or resume, or join) a stage: many processes may run this on one work directory at once.

    Each shard is claimed with a lease just before it starts; shards under another process's live
    lease are left to it and waited for at the end (taken over if that process dies), so every
    shard is done once. Finalize runs once, under a lock, for a given set of complete shards.
    """
    executor = executor or InlineExecutor()
    selection = selection or ShardSelection()
    console = console or Console(stderr=True)
    t0 = time.perf_counter()

    shards = list(stage.plan())
    inputs = dict(stage.location_roots())
    roots = {**inputs, "workdir": Path(workdir)}
    plan_hash = fingerprint(location_free([list(s.items) for s in shards], roots))
    params = location_free(dict(stage.params()), roots)
    sd = StageDir(stage.output_dir(workdir))
    keeper = LeaseKeeper(lease_ttl)
    generation = sd.prepare(
        stage.name,
        {**params, "plan": plan_hash},
        len(shards),
        overwrite=overwrite,
        argv=location_free(list(argv), {"workdir": Path(workdir)}) if argv is not None else None,  # as moved
        roots={name: str(Path(p).expanduser().resolve()) for name, p in sorted(inputs.items())},
    )
    if sd.path.resolve() != Path(workdir).resolve():  # render's --out is a stage folder, not a work directory
        mark_workdir(workdir)
    sweep_temporaries(sd.path, keeper.ttl)

    mine = selection.take(shards)
    todo = [s for s in mine if not sd.is_complete(s.index)]
    total_items = sum(len(s.items) for s in todo)

    done_now = 0
    items_now = 0
    by_others: list[Shard] = []
    signals = _Signals()
    try:
        with (
            signals.installed(),
            Progress(
                TextColumn(f"[bold]{stage.name}[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                disable=not show_progress or not todo,
                transient=False,
            ) as progress,
        ):
            task = progress.add_task(stage.name, total=total_items, rate="")
            live = 0  # items reported by on_item for the shard in flight (inline executor only)

            def on_item(n: int = 1) -> None:
                nonlocal live
                signals.check()
                live += n
                progress.advance(task, n)
                _show_rate(progress, task, t0)

            waiting = todo
            poll = min(1.0, max(0.02, keeper.ttl / 20))
            while waiting:
                deferred: list[Shard] = []
                feed = _claimed(waiting, sd, keeper, deferred, by_others)
                for stats in executor.map(stage, feed, sd.path, on_item if executor.workers == 1 else None, generation):
                    keeper.release(_lease_path(sd, stats["shard"]))
                    signals.check()
                    done_now += 1
                    items_now += stats["items"]
                    progress.advance(task, max(0, stats["items"] - live))
                    live = 0
                    _show_rate(progress, task, t0)
                seen = len(by_others)
                waiting = _wait_for_others(deferred, sd, keeper, poll, by_others)
                progress.advance(task, sum(len(s.items) for s in by_others[seen:]))
    except (KeyboardInterrupt, _Terminated) as exc:
        keeper.close()
        sd.discard_if_unstarted(generation)
        sigterm = isinstance(exc, _Terminated)
        complete = len(sd.complete_shards())
        line = (
            f"interrupted ({'SIGTERM' if sigterm else 'Ctrl-C'}): {complete}/{len(shards)} shards of {stage.name} "
            f"complete; continue with: {shlex.join(command_argv(argv))}"
        )
        raise RunInterrupted(line, EXIT_SIGTERM if sigterm else EXIT_SIGINT) from None
    except BaseException:
        keeper.close()
        sd.discard_if_unstarted(generation)  # a failed start (a model that did not load) blocks nothing
        raise
    keeper.close()

    summary = RunSummary(
        stage=stage.name,
        stage_dir=sd.path,
        shards_total=len(shards),
        shards_selected=len(mine),
        shards_done_now=done_now,
        shards_skipped=len(mine) - len(todo),
        shards_complete=len(sd.complete_shards()),
        items_now=items_now,
        seconds=0.0,
        shards_by_others=len({s.index for s in by_others}),
    )
    all_stats = sd.stats()
    for stats in all_stats:
        summary.rows.update(stats.get("rows", {}))
        summary.errors.update(stats.get("errors", {}))
        summary.counters.update(stats.get("counters", {}))
    if sd.all_complete():
        summary.facts = finalize_once(stage, workdir, sd, generation, all_stats)
        summary.finalized = True
    summary.seconds = time.perf_counter() - t0
    return summary


def _lease_path(sd: StageDir, index: int) -> Path:
    return sd.lease_dir / f"{shard_name(index)}.json"


def _claimed(
    shards: Sequence[Shard], sd: StageDir, keeper: LeaseKeeper, deferred: list[Shard], by_others: list[Shard]
) -> Iterator[Shard]:
    """The shards this process may start, claimed one at a time as a worker frees up.

    A shard complete meanwhile is skipped; one under another live lease is put in `deferred`.
    The completion check after the claim closes the race with a process that just finished it.
    """
    for shard in shards:
        if sd.is_complete(shard.index):
            by_others.append(shard)
            continue
        lease = _lease_path(sd, shard.index)
        if not keeper.claim(lease, f"{sd.path.name} shard {shard.index}"):
            deferred.append(shard)
            continue
        if sd.is_complete(shard.index):
            keeper.release(lease)
            by_others.append(shard)
            continue
        yield shard


def _wait_for_others(
    deferred: list[Shard], sd: StageDir, keeper: LeaseKeeper, poll: float, by_others: list[Shard]
) -> list[Shard]:
    """Wait until other processes finish the shards they hold; return those whose holder died (to take over)."""
    pending = list(deferred)
    while pending:
        still = []
        for shard in pending:
            if sd.is_complete(shard.index):
                by_others.append(shard)
                continue
            if not lease_is_live(_lease_path(sd, shard.index), keeper.ttl):
                return [s for s in pending if not sd.is_complete(s.index)]
            still.append(shard)
        pending = still
        if pending:
            time.sleep(poll)
    return []


def finalize_once(
    stage: Stage, workdir: Path, sd: StageDir, generation: str, all_stats: list[dict[str, Any]]
) -> dict[str, Any]:
    """Run `stage.finalize` once per set of complete shards, under a lock, whoever finishes last.

    Processes finishing together queue on the lock; the ones after the first find the finalize
    already recorded for exactly these shards and return its facts. A shard redone (its stats
    change) makes the next run finalize again.
    """
    extra = dict(stage.finalize_params())
    key = fingerprint([generation, all_stats, *([extra] if extra else [])])
    with held_lock(sd.lease_dir / "finalize.json", f"finalizing {stage.name}"):
        facts = sd.finalized(key)
        if facts is None:
            facts = dict(stage.finalize(workdir) or {})
            sd.mark_finalized(key, facts)
    return facts


def _show_rate(progress: Progress, task: Any, t0: float) -> None:
    elapsed = time.perf_counter() - t0
    done = progress.tasks[task].completed
    progress.update(task, rate=f"{done / elapsed:,.1f} items/s" if elapsed > 0 else "")


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    """The one-screen end-of-run report: shards, rows, errors by reason, speed."""
    console = console or Console()
    t = Table(title=f"sonify {summary.stage}: {summary.stage_dir}", show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    t.add_row(
        "shards",
        f"{summary.shards_complete}/{summary.shards_total} complete "
        f"({summary.shards_done_now} done now, {summary.shards_skipped} skipped as already complete"
        + (f", {summary.shards_by_others} done by other processes meanwhile" if summary.shards_by_others else "")
        + ")",
    )
    if summary.shards_selected != summary.shards_total:
        t.add_row("this machine", f"{summary.shards_selected} shards selected")
    for name, n in sorted(summary.rows.items()):
        t.add_row(f"rows: {name or summary.stage}", f"{n:,}")
    for name, n in sorted(summary.counters.items()):
        t.add_row(name.replace("_", " "), f"{n:,}")
    if summary.errors:
        t.add_row("errors", f"{summary.error_count:,}")
        for reason, n in summary.errors.most_common():
            t.add_row(f"  {reason}", f"{n:,}")
    else:
        t.add_row("errors", "0")
    t.add_row("time", f"{summary.seconds:.1f} s ({summary.items_per_second:,.1f} items/s this run)")
    for key, value in summary.facts.items():
        t.add_row(key.replace("_", " "), str(value))
    if not summary.finalized:
        t.add_row("note", "not every shard is complete yet: rerun (or finish the other machines' shards) to finalize")
    console.print(t)


_COLLECTORS: list[list[RunSummary]] = []


@contextlib.contextmanager
def collect_summaries() -> Iterator[list[RunSummary]]:
    """Every summary `RunOptions.run` prints inside the block: the CLI's exit code reads their errors."""
    sink: list[RunSummary] = []
    _COLLECTORS.append(sink)
    try:
        yield sink
    finally:
        _COLLECTORS.remove(sink)


@dataclass(frozen=True)
class RunOptions:
    """How and where a stage command runs its shards: the options every stage command shares."""

    workers: int = 1
    num_shards: int | None = None
    shard_index: int | None = None
    overwrite: bool = False
    executor: str = "local"
    ray_address: str | None = None
    quiet: bool = False
    argv: tuple[str, ...] | None = None  # the command line to record and to quote on interrupt (default: sys.argv)

    def run(self, stage: Stage, workdir: Path, console: Console | None = None) -> RunSummary:
        """Run (or resume) the stage and print its one-screen summary.

        Ctrl-C or SIGTERM prints one line (shards complete of total, the command that continues)
        and exits 130 or 143.
        """
        argv = command_argv(self.argv)
        try:
            summary = run_stage(
                stage,
                workdir,
                make_executor(self.executor, self.workers, address=self.ray_address),
                ShardSelection.resolve(self.num_shards, self.shard_index),
                overwrite=self.overwrite,
                show_progress=not self.quiet,
                argv=argv,
            )
        except RunInterrupted as stop:
            print(f"{argv[0]} {stage.name}: {stop.line}", file=sys.stderr, flush=True)
            raise SystemExit(stop.exit_code) from None
        print_summary(summary, console or Console())
        for sink in _COLLECTORS:
            sink.append(summary)
        return summary
