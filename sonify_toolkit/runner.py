"""Runs one stage: plan, claim the output folder, skip finished shards, execute, finalize, summarise.

This is the only place that knows about resume and progress, so every stage gets them for free.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .executors import Executor, InlineExecutor, ShardSelection, make_executor
from .shards import StageDir, fingerprint
from .stage import Stage


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

    @property
    def items_per_second(self) -> float:
        return self.items_now / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def run_stage(
    stage: Stage,
    workdir: Path,
    executor: Executor | None = None,
    selection: ShardSelection | None = None,
    *,
    overwrite: bool = False,
    console: Console | None = None,
    show_progress: bool = True,
) -> RunSummary:
    executor = executor or InlineExecutor()
    selection = selection or ShardSelection()
    console = console or Console(stderr=True)
    t0 = time.perf_counter()

    shards = list(stage.plan())
    plan_hash = fingerprint([list(s.items) for s in shards])
    sd = StageDir(stage.output_dir(workdir))
    sd.prepare(stage.name, {**stage.params(), "plan": plan_hash}, len(shards), overwrite=overwrite)

    mine = selection.take(shards)
    todo = [s for s in mine if not sd.is_complete(s.index)]
    total_items = sum(len(s.items) for s in todo)

    done_now = 0
    items_now = 0
    with Progress(
        TextColumn(f"[bold]{stage.name}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress or not todo,
        transient=False,
    ) as progress:
        task = progress.add_task(stage.name, total=total_items, rate="")
        live = 0  # items reported by on_item for the shard in flight (inline executor only)

        def on_item(n: int = 1) -> None:
            nonlocal live
            live += n
            progress.advance(task, n)
            _show_rate(progress, task, t0)

        for stats in executor.map(stage, todo, sd.path, on_item if executor.workers == 1 else None):
            done_now += 1
            items_now += stats["items"]
            progress.advance(task, max(0, stats["items"] - live))
            live = 0
            _show_rate(progress, task, t0)

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
    )
    for stats in sd.stats():
        summary.rows.update(stats.get("rows", {}))
        summary.errors.update(stats.get("errors", {}))
        summary.counters.update(stats.get("counters", {}))
    if sd.all_complete():
        summary.facts = stage.finalize(workdir) or {}
        summary.finalized = True
    summary.seconds = time.perf_counter() - t0
    return summary


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
        f"({summary.shards_done_now} done now, {summary.shards_skipped} skipped as already complete)",
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

    def run(self, stage: Stage, workdir: Path, console: Console | None = None) -> RunSummary:
        """Run (or resume) the stage and print its one-screen summary."""
        summary = run_stage(
            stage,
            workdir,
            make_executor(self.executor, self.workers, address=self.ray_address),
            ShardSelection.resolve(self.num_shards, self.shard_index),
            overwrite=self.overwrite,
            show_progress=not self.quiet,
        )
        print_summary(summary, console or Console())
        return summary
