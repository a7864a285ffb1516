"""The `sonify` command: one thin Typer command per stage, registered here in pipeline order."""

from __future__ import annotations

import typer

from . import demo, extract, pool, publish, render, report, retrieve, status

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
app.command("extract")(extract.extract)
app.command("retrieve")(retrieve.retrieve)
app.command("render")(render.render)
app.command("publish")(publish.publish)
app.command("report")(report.report)
app.command("status")(status.status)
app.command("demo")(demo.demo)


def main() -> None:
    app()
