"""Options every stage command shares, and the one-line error policy of the CLI.

The policy: a `SonifyError` (a situation the user must act on) and an `OSError` (a missing or
unreadable input, which names its file) print one line and exit 2; every other exception is a bug,
even a `ValueError` from deep in pyarrow, and keeps its traceback (exit 1).
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer._click import core as click_core  # Typer 0.29 runs its own copy of click: its context, not click's
from typer._click.globals import get_current_context

from ..choices import Dtype, ExecutorKind
from ..errors import EXIT_CANNOT_RUN, EXIT_ITEM_ERRORS, DeviceError, InputError, SonifyError
from ..models.device import check_device_name
from ..runner import RunOptions, RunSummary, collect_summaries

Workdir = Annotated[Path, typer.Option("--workdir", "-w", help="Work directory holding every stage's tables.")]
Workers = Annotated[int, typer.Option("--workers", min=1, help="Local worker processes (each loads its own model).")]
NumShards = Annotated[
    int | None, typer.Option("--num-shards", min=1, help="Split the run over N machines (default: SLURM array or 1).")
]
ShardIndex = Annotated[int | None, typer.Option("--shard-index", min=0, help="Which of the N parts this machine runs.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Discard shards made with other parameters.")]
ExecutorOpt = Annotated[
    ExecutorKind, typer.Option("--executor", help="Where shards run: local (process pool) or ray actors.")
]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", help="Ray cluster to join with --executor ray (e.g. auto; default: local)."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _device_callback(value: str) -> str:
    """Refuse a value that is no device in one line (the accepted forms and the devices here)."""
    try:
        return check_device_name(value)
    except DeviceError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--device ")) from None


Device = Annotated[
    str,
    typer.Option(
        "--device",
        callback=_device_callback,
        metavar="<auto|cpu|cuda|cuda:N|mps>",
        help="Where models run (auto: cuda when present); a device this machine lacks is refused when a model loads.",
    ),
]
DtypeOpt = Annotated[Dtype, typer.Option("--dtype", help="Model precision (auto: bf16 on GPU, fp32 on CPU).")]

F = TypeVar("F", bound=Callable[..., Any])


class CliError(InputError):
    """A command-line value that cannot be used as given (a malformed NAME=VALUE, a name given twice)."""


# What a user can cause and fix: printed as one line; anything else is a bug and keeps its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (SonifyError, OSError)


def one_line_errors(command: str) -> Callable[[F], F]:
    """Print an expected error as `sonify COMMAND: error: <its first line>` and exit 2; let the rest raise."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except EXPECTED_ERRORS as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                print(f"sonify {command}: error: {msg}", file=sys.stderr)
                raise typer.Exit(EXIT_CANNOT_RUN) from None

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


def parse_collections(values: list[str] | None, what: str) -> dict[str, str]:
    """`NAME=ROOT` collection arguments to {name: root}; a collection named twice is an error."""
    out = {}
    for name, roots in parse_assignments(values, what).items():
        if len(roots) > 1:
            raise CliError(f"collection '{name}' is given twice")
        out[name] = roots[0]
    return out


RUN_OPTIONS: dict[str, Any] = {
    "workers": Workers,
    "num_shards": NumShards,
    "shard_index": ShardIndex,
    "overwrite": Overwrite,
    "executor": ExecutorOpt,
    "ray_address": RayAddress,
    "quiet": Quiet,
}


def exit_on_item_errors(command: str, summaries: list[RunSummary]) -> None:
    """Exit 3 (after the summary) when any stage of the command left error rows: the run finished, items failed."""
    failed = [s for s in summaries if s.error_count]
    if not failed:
        return
    detail = ", ".join(f"{s.stage}: {s.error_count:,} in {s.stage_dir / 'errors'}" for s in failed)
    print(f"sonify {command}: finished with item errors ({detail}); exit {EXIT_ITEM_ERRORS}", file=sys.stderr)
    raise typer.Exit(EXIT_ITEM_ERRORS)


def _default(hint: Any, value: Any) -> Any:
    """A RunOptions default as the CLI type wants it (the enum member for an enum option)."""
    base = typing.get_args(hint)[0] if typing.get_args(hint) else hint
    return base(value) if isinstance(base, type) and issubclass(base, Enum) and value is not None else value


def _option_words(param: Any, value: Any) -> list[str]:
    """One parsed option as the words that give it again (`--shard-size 2`, `--overwrite`, `--no-embed`)."""
    name = max(param.opts, key=len)  # the long form reads best in a record
    if param.is_flag and isinstance(value, bool):
        if value:
            return [name]
        return [max(param.secondary_opts, key=len)] if param.secondary_opts else []
    values = value if param.multiple else [value]
    return [word for v in values for word in (name, *_value_words(v))]


def _value_words(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [w for v in value for w in _value_words(v)]
    return [str(getattr(value, "value", value))]


def invoked_command_line(ctx: click_core.Context | None = None) -> list[str] | None:
    """`sonify <cmd> ...` as this command was given, rebuilt from what click parsed (None outside click).

    `sys.argv` is the interpreter's command line: under Typer's CliRunner (tests, the demo, a
    notebook) it is pytest's or the kernel's. The parsed parameters are this command's own, so the
    argv `_stage.json` records and the interrupt line quotes is `sonify <cmd> ...` wherever it ran.
    Only values taken from the command line or the environment are written; defaults stay implicit.
    """
    ctx = ctx or get_current_context(silent=True)
    if ctx is None:
        return None
    words = ["sonify", ctx.info_name or ""]
    for param in ctx.command.params:
        if param.name is None or param.name not in ctx.params:
            continue
        source = ctx.get_parameter_source(param.name)
        if source not in (click_core.ParameterSource.COMMANDLINE, click_core.ParameterSource.ENVIRONMENT):
            continue
        value = ctx.params[param.name]
        if param.param_type_name == "option":
            words += _option_words(param, value)
        elif value is not None:
            words += _value_words(value)
    return words


def stage_command(command: str) -> Callable[[F], F]:
    """Decorate `fn(..., run: RunOptions)`: the CLI gets the shared run options, `fn` gets them as one object.

    The shared options are declared once here rather than in every command's signature; Typer reads
    the combined signature, and the command gets the one-line error policy too.
    """

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "run"]
        defaults = RunOptions()
        shared = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=_default(hint, getattr(defaults, name)), annotation=hint
            )
            for name, hint in RUN_OPTIONS.items()
        ]

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            shared = {name: kwargs.pop(name) for name in RUN_OPTIONS if name in kwargs}
            argv = invoked_command_line()
            run = RunOptions(
                **{name: getattr(value, "value", value) for name, value in shared.items()},
                argv=tuple(argv) if argv is not None else None,
            )
            with collect_summaries() as summaries:
                result = fn(*args, run=run, **kwargs)
            exit_on_item_errors(command, summaries)
            return result

        params = own + shared
        inner.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        inner.__annotations__ = {p.name: p.annotation for p in params} | {"return": sig.return_annotation}
        return one_line_errors(command)(inner)  # type: ignore[arg-type]

    return wrap
