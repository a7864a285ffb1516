"""`sonify report`: an HTML page with the run's parameters, statistics, plots and a listening gallery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..hub_ids import local_release
from .common import one_line_errors, parse_collections


@one_line_errors("report")
def report(
    source: Annotated[
        str,
        typer.Argument(
            help="A work directory, a release folder, or a Hub release (hf://ORG/NAME, hf://datasets/ORG/NAME)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for index.html and its files.")],
    rendered: Annotated[
        Path | None, typer.Option("--rendered", help="A `sonify render` output folder (default: WORKDIR/render).")
    ] = None,
    sources: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            metavar="NAME=ROOT",
            help="NAME=ROOT of a sound collection: adds a player per source; repeatable.",
        ),
    ] = None,
    images: Annotated[
        list[Path] | None, typer.Option("--images", help="Folder holding a release's images as ID or ID.ext.")
    ] = None,
    max_pairs: Annotated[int, typer.Option("--max-pairs", min=1, help="Pairs in the preview gallery.")] = 240,
) -> None:
    """Write a self-contained HTML report (open OUT/index.html in a browser)."""
    from ..report import build_report  # jinja2 + matplotlib: only when a report is built

    summary = build_report(
        local_release(source),
        out,
        rendered=rendered,
        source_roots=parse_collections(sources, "--source"),
        image_roots=images or [],
        max_pairs=max_pairs,
    )
    console = Console()
    console.print(
        f"report: {summary.index} ({summary.pairs_shown} pairs previewed, {summary.thumbnails} thumbnails, "
        f"{summary.mixes} mixes, {summary.source_clips} source clips)"
    )
    for reason, n in sorted(summary.problems.items()):
        console.print(f"  preview: {reason}: {n}")
