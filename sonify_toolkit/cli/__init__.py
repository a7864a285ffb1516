"""The `sonify` command: one thin Typer command per stage, registered here in pipeline order."""

from __future__ import annotations

from typing import IO, Annotated, Any

import typer
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from .. import __version__
from . import demo, extract, pool, publish, render, report, retrieve, status


class OneLineUsageError(UsageError):
    """A usage error shown as the CLI shows every error: `sonify COMMAND: error: <one line>` (exit 2)."""

    def show(self, file: IO[Any] | None = None) -> None:
        lines = self.format_message().replace("Value error, ", "").strip().splitlines()
        message = lines[0] if lines else "invalid usage"
        command = self.ctx.info_name if self.ctx is not None and self.ctx.parent is not None else None
        where = f"sonify {command}" if command else "sonify"
        typer.echo(f"{where}: error: {message} (see {where} --help)", err=True)


class OneLineGroup(TyperGroup):
    """The root command: a wrong option value, a missing argument or an unknown command is one line, not a usage box."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            if isinstance(exc, OneLineUsageError):
                raise
            raise OneLineUsageError(exc.format_message(), exc.ctx) from None


app = typer.Typer(
    name="sonify",
    cls=OneLineGroup,
    help="Make audio-image training data from any image collection (pool -> extract -> retrieve -> render -> publish).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags show as flags (the rich panel prints `<bool>` beside them)
)


def _print_version(value: bool) -> None:
    if value:
        print(f"sonify {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """sonify: audio-image training data from any image collection."""


app.command("pool")(pool.pool)
app.command("extract")(extract.extract)
app.command("retrieve")(retrieve.retrieve)
app.command("render")(render.render)
app.command("publish")(publish.publish)
app.command("report")(report.report)
app.command("status")(status.status)
app.command("demo")(demo.demo)


def main() -> None:
    app()
