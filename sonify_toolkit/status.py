"""`sonify status`: where a work directory stands, stage by stage, and the command that continues it.

Everything is read from the stage folders (`_stage.json`, `_stats/`): a run on another machine, or
one killed mid-shard, is described the same way. Rerunning the command that made a stage resumes
it; that command is rebuilt from the recorded parameters by matching them to the CLI's options. What
the manifests do not record (input folders, label files) is shown as a `<PLACEHOLDER>` and said so.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .shards import StageDir
from .stats import find_stage_dirs, is_smoke_run, read_pool_manifest

# stage name (as recorded in _stage.json) -> CLI command that runs it
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
    command: str | None = None
    missing: list[str] = field(default_factory=list)  # what the command could not be rebuilt with

    @property
    def complete(self) -> bool:
        return self.shards_total > 0 and self.shards_done == self.shards_total


def stage_status(workdir: Path, rel: str, sd: StageDir) -> StageStatus:
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
    st.command, st.missing = continue_command(workdir, rel, manifest)
    return st


def workdir_status(workdir: str | Path) -> list[StageStatus]:
    """Every stage folder of a work directory in pipeline order."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"no work directory at {workdir}")
    found = [stage_status(workdir, rel, sd) for rel, sd in find_stage_dirs(workdir).items()]
    return sorted(found, key=lambda s: (ORDER.index(s.stage) if s.stage in ORDER else len(ORDER), s.path))


# --- rebuilding the command -----------------------------------------------------------------------
def _cli_params(command: str) -> list[Any]:
    """The click parameters of `sonify COMMAND` (empty when the command is not registered)."""
    import typer.main

    from .cli import app

    group = typer.main.get_command(app)
    cmd = getattr(group, "commands", {}).get(command)
    return list(cmd.params) if cmd is not None else []


def _recorded(workdir: Path, rel: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """What the manifests say about the CLI's inputs, beyond `params` (pool roots, the VLM of a folder)."""
    params = dict(manifest.get("params", {}))
    stage = manifest.get("stage")
    if stage in ("pool", "pool-embed"):
        roots = read_pool_manifest(workdir).get("segments", {}).get("roots", {})
        names = params.get("sources") or sorted(roots)
        params["collections"] = [f"{n}={roots.get(n, f'<ROOT_OF_{n.upper()}>')}" for n in names]
        if stage == "pool-embed" and "model" in params:
            params["clap"] = params["model"]
    if stage == "render":
        params["source"] = [f"{n}=<ROOT_OF_{n.upper()}>" for n in params.get("sources", [])]
        params["out"] = str(Path(workdir) / rel)
        params["no_verify"] = not params.get("verify", True)
    if stage == "pool":  # one `sonify pool` command runs both pool stages: keep the embed's checkpoint
        embed = StageDir(Path(workdir) / "pool" / "clap").manifest() or {}
        if "model" in embed.get("params", {}):
            params["clap"] = embed["params"]["model"]
    for key in sorted(params):  # the shard size is part of the plan: resuming needs the same one
        if key.endswith("_per_shard") and "shard_size" not in params:
            params["shard_size"] = params[key]
    if isinstance(params.get("clap"), dict):  # retrieve records the CLAP identity
        params["clap"] = params["clap"].get("model")
    return params


def continue_command(workdir: Path, rel: str, manifest: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The command that resumes (or reruns) this stage, and the inputs it had to leave as placeholders."""
    command = manifest.get("command")  # a stage that records its own argv is quoted verbatim
    if isinstance(command, list):
        return shlex.join(command), []
    if isinstance(command, str):
        return command, []
    name = COMMANDS.get(manifest.get("stage", ""))
    params = _cli_params(name) if name else []
    if not params:
        return None, [f"the command for stage {manifest.get('stage')!r} (`sonify {name}` is not in this install)"]
    recorded = _recorded(workdir, rel, manifest)
    args: list[str] = ["sonify", name]
    missing: list[str] = []
    for p in params:
        value = recorded.get(p.name)
        if p.param_type_name == "argument":
            if value is None:
                missing.append(p.name)
                args.append(f"<{p.name.upper()}>")
            else:
                args.extend(str(v) for v in (value if isinstance(value, list) else [value]))
            continue
        flag = p.opts[0]
        if p.name == "workdir":
            args += [flag, str(workdir)]
            continue
        if value is None:
            if p.required:
                missing.append(p.name)
                args += [flag, f"<{p.name.upper()}>"]
            continue
        if getattr(p, "is_flag", False):
            if bool(value) != bool(p.default):
                args.append(flag if value else (p.secondary_opts or [flag])[0])
            continue
        if isinstance(value, (dict,)):
            continue  # a recorded fingerprint, not an option value
        values = value if isinstance(value, list) and p.multiple else [value]
        if not p.multiple and values == [p.default]:
            continue
        for v in values:
            args += [flag, str(v)]
    for a in args:
        if "<ROOT_OF_" in a:
            missing.append(f"the root folder of collection {a.split('=')[0]} (only its name is recorded)")
    if "prompt" in recorded and any(p.name == "prompt_file" for p in params):
        missing.append("--prompt-file, if the first run used one (the prompt text is in _stage.json)")
    if manifest.get("stage") == "pool" and recorded.get("label_files"):
        missing.append("labels (the same --labels NAME=CSV as the first run: only their checksums are recorded)")
    return " ".join(_quote(a) for a in args), missing


def _quote(arg: str) -> str:
    """Shell-quote an argument, leaving a trailing `<PLACEHOLDER>` readable (`name=<ROOT_OF_NAME>`).

    Only placeholders made here stay bare: a recorded value holding `<` and `>` is quoted like any other.
    """
    m = re.fullmatch(r"(.*?)(<[A-Z0-9_]+>)", arg)
    if m is None or "<" in m.group(1) or ">" in m.group(1):
        return shlex.quote(arg)
    return (shlex.quote(m.group(1)) if m.group(1) else "") + m.group(2)


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
        for m in s.missing:
            console.print(f"  (not recorded in {s.path}/_stage.json, fill in: {m})", markup=False)
    return states
