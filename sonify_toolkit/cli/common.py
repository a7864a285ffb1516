"""Options every stage command shares, and the one-line error policy of the CLI."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from ..executors import ShardSelection, make_executor
from ..runner import RunSummary, print_summary, run_stage
from ..shards import StageMismatchError
from ..stage import Stage

Workdir = Annotated[Path, typer.Option("--workdir", "-w", help="Work directory holding every stage's tables.")]
Workers = Annotated[int, typer.Option("--workers", min=1, help="Local worker processes (each loads its own model).")]
NumShards = Annotated[
    int | None, typer.Option("--num-shards", min=1, help="Split the run over N machines (default: SLURM array or 1).")
]
ShardIndex = Annotated[int | None, typer.Option("--shard-index", min=0, help="Which of the N parts this machine runs.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Discard shards made with other parameters.")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="Where shards run: local (process pool) or ray.")]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", help="Ray cluster to join with --executor ray (e.g. auto; default: local)."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """Raised by commands for a run that cannot go on: printed as one line, exit code 2."""


# What a user can cause and fix: printed as one line; anything else is a bug and keeps its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    CliError,
    StageMismatchError,
    ValueError,
    FileNotFoundError,
    PermissionError,
    OSError,
)


def one_line_errors(command: str) -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except EXPECTED_ERRORS as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                print(f"sonify {command}: error: {msg}", file=sys.stderr)
                raise typer.Exit(2) from None

        return inner  # type: ignore[return-value]

    return wrap


def parse_assignments(values: list[str] | None, what: str) -> dict[str, list[str]]:
    """`NAME=VALUE` arguments to {name: [values]} (a name may repeat)."""
    out: dict[str, list[str]] = {}
    for v in values or []:
        name, sep, value = v.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise CliError(f"expected {what} as NAME=VALUE, got {v!r}")
        out.setdefault(name.strip(), []).append(value.strip())
    return out


def run_and_report(
    stage: Stage,
    workdir: Path,
    *,
    workers: int,
    num_shards: int | None,
    shard_index: int | None,
    overwrite: bool,
    executor: str = "local",
    ray_address: str | None = None,
    quiet: bool = False,
) -> RunSummary:
    summary = run_stage(
        stage,
        workdir,
        make_executor(executor, workers, address=ray_address),
        ShardSelection.resolve(num_shards, shard_index),
        overwrite=overwrite,
        show_progress=not quiet,
    )
    print_summary(summary, Console())
    return summary
