"""The `sonify` command: one thin Typer command per stage, registered here (logic lives in stages/)."""

from __future__ import annotations

import typer

from . import pool

app = typer.Typer(
    name="sonify",
    help="Make audio-image training data from any image collection (pool -> extract -> retrieve -> render -> publish).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """sonify: audio-image training data from any image collection."""


app.command("pool")(pool.pool)


def main() -> None:
    app()
