"""`sonify render`: rebuild each pair's soundtrack from the metadata and local sound collections."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..choices import RenderFormat
from ..errors import InputError
from ..settings import PAIRS_PER_RENDER_SHARD, RENDER_CACHE_MB, RENDER_FORMAT
from .common import RunOptions, parse_collections, stage_command

DEFAULT_FORMAT = RenderFormat(RENDER_FORMAT)


@stage_command("render")
def render(
    pairs: Annotated[
        str, typer.Argument(metavar="PAIRS", help="Pairs folder (W/pairs), release folder, or hf://ORG/NAME.")
    ],
    source: Annotated[
        list[str],
        typer.Option("--source", metavar="NAME=ROOT", help="Local copy of a collection as NAME=ROOT; repeatable."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (audio files + index, or an HF dataset).")],
    format: Annotated[
        RenderFormat, typer.Option("--format", help="Audio files (flac, wav) or an HF dataset (hf: parquet, FLAC).")
    ] = DEFAULT_FORMAT,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the sha256 check of source files.")] = False,
    cache_mb: Annotated[
        int, typer.Option("--cache-mb", min=0, help="Decoded-file cache per worker (MB).")
    ] = RENDER_CACHE_MB,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Pairs per shard.")] = PAIRS_PER_RENDER_SHARD,
    *,
    run: RunOptions,
) -> None:
    """Rebuild each pair's 5-s, 16 kHz mono mix: verify, decode, loudness-normalise and sum its sources."""
    from ..pair_collections import check_collection_names, collections_line, source_counts
    from ..stages.render import RenderStage, check_output_dir  # the audio stack: only when rendering

    roots = parse_collections(source, "--source")
    for name, root in roots.items():
        if not Path(root).is_dir():
            raise InputError(f"collection '{name}': root {root} is not a folder")
    check_output_dir(out)
    resolved = {name: str(Path(root).resolve()) for name, root in roots.items()}
    stage = RenderStage(
        pairs,
        resolved,
        out=str(out),
        format=format.value,
        verify=not no_verify,
        pairs_per_shard=shard_size,
        cache_mb=cache_mb,
    )
    used = source_counts(stage.source)
    check_collection_names(resolved, used)
    run.run(stage, out)
    print(collections_line(resolved, used))
