"""`sonify pool`: index sound collections into the retrieval pool."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..choices import Dtype
from ..errors import InputError
from ..pipeline import run_pool
from ..settings import CLAP_BATCH_SIZE, DEFAULT_CLAP, DEFAULT_WORKDIR, MAX_AUDIO_SECONDS, POOL_FILES_PER_SHARD
from .common import (
    Device,
    DtypeOpt,
    RunOptions,
    Workdir,
    parse_assignments,
    parse_collections,
    stage_command,
)


def _positive_seconds(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter(f"must be more than 0 seconds (got {value:g})")
    return value


@stage_command("pool")
def pool(
    collections: Annotated[
        list[str],
        typer.Argument(metavar="NAME=ROOT", help="Sound collections as NAME=ROOT (e.g. fsd50k=/data/FSD50K)."),
    ],
    workdir: Workdir = Path(DEFAULT_WORKDIR),
    labels: Annotated[
        list[str] | None,
        typer.Option(
            "--labels",
            metavar="NAME=CSV",
            help="NAME=CSV label file (FSD50K, AudioSet, BBC SFX or path,label); repeatable.",
        ),
    ] = None,
    clap: Annotated[
        str, typer.Option("--clap", metavar="MODEL", help="CLAP checkpoint (Hub id or local path).")
    ] = DEFAULT_CLAP,
    no_embed: Annotated[
        bool, typer.Option("--no-embed", help="Loudness and checksums only (enough to render).")
    ] = False,
    device: Device = "auto",
    dtype: DtypeOpt = Dtype.auto,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            help="CLAP batch size (keep it fixed within a run: vectors are exact per batch shape).",
        ),
    ] = CLAP_BATCH_SIZE,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Files per shard.")] = POOL_FILES_PER_SHARD,
    max_seconds: Annotated[
        float,
        typer.Option(
            "--max-seconds",
            callback=_positive_seconds,
            help="Longest recording accepted, in seconds (by its header, or once decoded); longer files are "
            "error rows (too_long), so one mislabelled hours-long file cannot stall a worker.",
        ),
    ] = MAX_AUDIO_SECONDS,
    faiss_index: Annotated[
        bool,
        typer.Option(
            "--faiss-index",
            help="Also write pool/clap/index.faiss (IndexFlatIP over every vector) for tools outside sonify; "
            "retrieval itself searches the vectors directly and builds --index ivf/hnsw indexes as it needs them.",
        ),
    ] = False,
    *,
    run: RunOptions,
) -> None:
    """Index sound collections into 5-s, 16 kHz mono segments with loudness, checksums, labels and CLAP vectors."""
    sources = parse_collections(collections, "a collection")
    label_files = parse_assignments(labels, "--labels")
    unknown = set(label_files) - set(sources)
    if unknown:
        raise InputError(f"--labels names unknown collection(s): {', '.join(sorted(unknown))}")
    from ..stages.pool import PoolEmbedStage, PoolSegmentsStage  # audio stack: only when a pool is built

    segments = PoolSegmentsStage(sources, label_files, files_per_shard=shard_size, max_seconds=max_seconds)
    embed = None
    if not no_embed:
        embed = PoolEmbedStage(
            sources,
            model=clap,
            device=device,
            dtype=dtype.value,
            batch_size=batch_size,
            files_per_shard=shard_size,
            workdir=str(workdir),
            faiss_index=faiss_index,
        )
    run_pool(run, workdir, segments, embed)
