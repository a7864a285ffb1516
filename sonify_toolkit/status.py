"""`sonify status`: where a work directory stands, stage by stage, and the command that continues it.

Everything is read from the stage folders (`_stage.json`, `_stats/`): a run on another machine, or
one killed mid-shard, is described the same way. Rerunning the command that made a stage resumes
it, and every stage records that command (`argv` in `_stage.json`), so status prints it back as
is. A folder made before stages recorded their command gets the stage's name and a generic hint.
"""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .errors import InputError
from .shards import StageDir
from .stats import find_stage_dirs, is_smoke_run, read_pool_manifest
from .workdir import WORKDIR_MARKER, is_workdir, workdirs_below

# stage name (as recorded in _stage.json) -> the `sonify` command that runs it (for folders without "argv")
COMMANDS = {
    "pool": "pool",
    "pool-embed": "pool",
    "extract": "extract",
    "retrieve-search": "retrieve",
    "retrieve": "retrieve",
    "render": "render",
}
ORDER = ["pool", "pool-embed", "extract", "retrieve-search", "retrieve", "render"]


@dataclass
class StageStatus:
    path: str  # relative to the work directory
    stage: str
    shards_done: int
    shards_total: int
    rows: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    command: str | None = None  # the recorded command line that made the stage (None: not recorded)

    @property
    def complete(self) -> bool:
        return self.shards_total > 0 and self.shards_done == self.shards_total


def stage_status(rel: str, sd: StageDir) -> StageStatus:
    manifest = sd.manifest() or {}
    rows: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for stats in sd.stats():
        rows.update(stats.get("rows", {}))
        errors.update(stats.get("errors", {}))
    st = StageStatus(
        path=rel,
        stage=manifest.get("stage", rel),
        shards_done=len(sd.complete_shards()),
        shards_total=int(manifest.get("num_shards", 0)),
        rows=dict(sorted(rows.items())),
        errors=dict(errors.most_common()),
        fingerprint=manifest.get("fingerprint", ""),
        params=manifest.get("params", {}),
    )
    st.command = continue_command(manifest)
    return st


def workdir_status(workdir: str | Path) -> list[StageStatus]:
    """Every stage folder of a work directory in pipeline order."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise InputError(f"no work directory at {workdir}")
    if not is_workdir(workdir):
        below = workdirs_below(workdir)
        hint = (
            f"; work directories below it: {', '.join(str(p) for p in below[:5])}"
            if below
            else f" (stages write {WORKDIR_MARKER} when they first run in one)"
        )
        raise InputError(f"{workdir} is not a sonify work directory{hint}")
    found = [stage_status(rel, sd) for rel, sd in find_stage_dirs(workdir).items()]
    return sorted(found, key=lambda s: (ORDER.index(s.stage) if s.stage in ORDER else len(ORDER), s.path))


# --- the command that continues a stage ---------------------------------------------------------
def continue_command(manifest: dict[str, Any]) -> str | None:
    """The recorded command line that made the stage, shell-quoted; None when the folder predates recording it."""
    argv = manifest.get("argv")
    if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        return shlex.join(argv)
    return None


def generic_hint(stage: str) -> str:
    """For a folder without a recorded command: which command made it, and what resuming it takes."""
    command = COMMANDS.get(stage)
    if command is None:
        return f"rerun the command that made stage '{stage}'"
    return f"rerun `sonify {command}` with the same inputs and options as the first run"


# --- printing -----------------------------------------------------------------------------------
def print_status(workdir: str | Path, console: Console | None = None) -> list[StageStatus]:
    console = console or Console()
    workdir = Path(workdir)
    states = workdir_status(workdir)
    if not states:
        console.print(f"{workdir}: no stage has run yet (start with `sonify pool NAME=ROOT --workdir {workdir}`)")
        return states
    manifests = {s.path: {"params": s.params} for s in states}
    if is_smoke_run(manifests, read_pool_manifest(workdir)):
        console.print("[bold red]SMOKE RUN: tiny random models; the pairings mean nothing.[/]")
    table = Table(title=f"sonify status: {workdir}")
    for col in ("stage", "folder", "shards", "rows", "errors by reason", "fingerprint"):
        table.add_column(col, overflow="fold")
    for s in states:
        shards = f"{s.shards_done}/{s.shards_total}"
        table.add_row(
            s.stage,
            s.path,
            f"[green]{shards}[/]" if s.complete else f"[yellow]{shards}[/]",
            "\n".join(f"{k or 'rows'}: {v:,}" for k, v in s.rows.items()) or "0",
            "\n".join(f"{k}: {v:,}" for k, v in s.errors.items()) or "0",
            s.fingerprint,
        )
    console.print(table)
    unfinished = [s for s in states if not s.complete]
    if not unfinished:
        console.print("every stage that has started is complete.")
        if (workdir / "pairs").is_dir():
            console.print(f"next: sonify publish --workdir {shlex.quote(str(workdir))} --out RELEASE_FOLDER")
        return states
    for s in unfinished:
        console.print(f"[bold]{s.path}[/] is unfinished ({s.shards_done}/{s.shards_total} shards); to continue:")
        if s.command:
            console.print(f"  {s.command}", markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(
                f"  {generic_hint(s.stage)} (stage {s.stage}: {s.path}/_stage.json records no command)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    return states
