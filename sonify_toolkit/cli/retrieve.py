"""`sonify retrieve`: CLAP text->audio retrieval per sounding concept (Algorithm 1) -> the pairs table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..choices import ConceptText, Dtype, IndexKind
from ..pipeline import run_retrieve
from ..settings import CLAP_BATCH_SIZE, DEFAULT_WORKDIR, LUFS_MAX, LUFS_MIN, SEED, TOP_K
from .common import (
    Device,
    DtypeOpt,
    RunOptions,
    Workdir,
    stage_command,
)


@stage_command("retrieve")
def retrieve(
    workdir: Workdir = Path(DEFAULT_WORKDIR),
    clap: Annotated[
        str | None, typer.Option("--clap", help="CLAP checkpoint; must be the pool's (default: the pool's).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Pool matches per concept (k of Algorithm 1).")] = TOP_K,
    concept_text: Annotated[
        ConceptText,
        typer.Option("--concept-text", help="What CLAP reads: description, name or both ('name: description')."),
    ] = ConceptText.description,
    seed: Annotated[int, typer.Option("--seed", help="Global seed of the draws and target loudness.")] = SEED,
    lufs_min: Annotated[float, typer.Option("--lufs-min", help="Lowest target loudness per source.")] = LUFS_MIN,
    lufs_max: Annotated[float, typer.Option("--lufs-max", help="Highest target loudness per source.")] = LUFS_MAX,
    max_reuse: Annotated[
        int | None,
        typer.Option("--max-reuse", min=1, help="Use a clip at most N times, moving on to the next candidate (off)."),
    ] = None,
    index: Annotated[
        IndexKind,
        typer.Option("--index", help="exact (matmul), flat (faiss exact), ivf / hnsw for huge pools (recall printed)."),
    ] = IndexKind.exact,
    nlist: Annotated[int | None, typer.Option("--nlist", min=1, help="IVF cells (default 4*sqrt(pool)).")] = None,
    nprobe: Annotated[int, typer.Option("--nprobe", min=1, help="IVF cells visited per query.")] = 32,
    ef_search: Annotated[int, typer.Option("--ef-search", min=1, help="HNSW search breadth.")] = 128,
    device: Device = "auto",
    dtype: DtypeOpt = Dtype.auto,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="CLAP text batch size.")] = CLAP_BATCH_SIZE,
    vlm: Annotated[
        list[str] | None,
        typer.Option(
            "--vlm",
            metavar="NAME",
            help="Use only this VLM's concepts (its id as given to extract, or its folder under concepts/); "
            "repeatable. Default: every complete concepts folder (folders with no shard written are skipped).",
        ),
    ] = None,
    *,
    run: RunOptions,
) -> None:
    """Pick one pool segment per sounding concept (SSR, top-k threshold, random draw) and write the pairs table."""
    from ..stages.retrieve import RetrievePairsStage, RetrieveSearchStage, concept_folders, pool_clap
    from ..vector_index import IndexSpec

    vlms = tuple(vlm) if vlm else None
    for name, why in concept_folders(workdir, vlms).skipped:  # a failed start blocks nothing: it is named
        print(f"sonify retrieve: skipped concepts/{name}: {why}", file=sys.stderr)

    search = RetrieveSearchStage(
        workdir=str(workdir),
        clap=pool_clap(workdir, clap),
        top_k=top_k,
        concept_text=concept_text.value,
        index=IndexSpec(index.value, nlist=nlist, nprobe=nprobe, ef_search=ef_search),
        device=device,
        dtype=dtype.value,
        batch_size=batch_size,
        vlms=vlms,
    )
    pairs = RetrievePairsStage(
        workdir=str(workdir), search=search, seed=seed, lufs_min=lufs_min, lufs_max=lufs_max, max_reuse=max_reuse
    )
    run_retrieve(run, workdir, search, pairs)
