"""`sonify publish`: package a finished work directory as a Hugging Face dataset (and upload it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..settings import DEFAULT_WORKDIR
from .common import Workdir, one_line_errors


@one_line_errors("publish")
def publish(
    out: Annotated[Path, typer.Option("--out", "-o", help="Release folder (a Hub dataset repository layout).")],
    workdir: Workdir = Path(DEFAULT_WORKDIR),
    push_to: Annotated[
        str | None, typer.Option("--push-to-hub", help="Upload to this Hub dataset repo (ORG/NAME).")
    ] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repo as private.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Build the folder and list what would be uploaded; no network.")
    ] = False,
    rendered: Annotated[
        Path | None, typer.Option("--rendered", help="A `sonify render` output folder: adds a rendered_audio config.")
    ] = None,
    pretty_name: Annotated[str | None, typer.Option("--name", help="The card's pretty_name.")] = None,
    holdout: Annotated[
        float | None,
        typer.Option(
            "--holdout",
            metavar="FRACTION",
            help="Hold out this fraction of the images as a `validation` split (by a hash of the image id: "
            "the same images for every VLM and every rerun).",
        ),
    ] = None,
) -> None:
    """Write the release (parquet shards, dataset card, plots) and optionally upload it to the Hub."""
    from ..stages.publish import build_release, push_to_hub  # datasets + matplotlib: only when publishing

    console = Console()
    summary = build_release(workdir, out, repo_id=push_to, rendered=rendered, pretty_name=pretty_name, holdout=holdout)
    if summary.smoke_run:
        console.print("[bold red]SMOKE RUN: tiny random models made these pairs; they mean nothing.[/]")
    console.print(
        f"release: {summary.folder} ({summary.rows:,} pairs in {len(summary.data_files)} shard(s)"
        + (f", {summary.rendered_rows:,} rendered mixes" if summary.rendered_rows else "")
        + ")"
    )
    if dry_run or push_to is None:
        table = Table(title="would upload" if dry_run else "release files", show_footer=True)
        table.add_column("path", footer=f"{len(summary.files)} files")
        table.add_column("bytes", justify="right", footer=f"{sum(n for _, n in summary.files):,}")
        for path, size in summary.files:
            table.add_row(path, f"{size:,}")
        console.print(table)
        if dry_run:
            console.print(f"dry run: nothing uploaded{f' to {push_to}' if push_to else ''}")
        return
    console.print(f"uploaded: {push_to_hub(summary.folder, push_to, private=private)}")
