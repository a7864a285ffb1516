"""prepare: the released pairs -> AST audio features + VAE image latents, sharded and resumable.

    python -m training_recipe.prepare --dataset RELEASE_OR_HUB_ID --images SA1B_ROOT \
        --rendered-audio --out FEATURES [--split validation]
        # or --audio RENDER_DIR (a `sonify render` folder), or --source fsd50k=/data/FSD50K ... (render on the fly)

The release is read through `datasets.load_dataset` (a local folder, a parquet file, `ORG/NAME`,
`hf://ORG/NAME` or `hf://datasets/ORG/NAME`; Hub ids stream), one split at a time: prepare `train` for
training and `validation` (the held-out SA-1B images of `sonify publish --holdout`) for the sample grids.

Output (a sonify stage folder, so reruns skip finished shards and `--num-shards/--shard-index`
split the work over machines):

    FEATURES/NNNNN.parquet          pair_id, image_id, vlm, row       (FEATURES_SCHEMA)
    FEATURES/audio/NNNNN.npy        (rows, 101, 768) float16  AST sequence (sonify_toolkit.models.ast)
    FEATURES/latents/NNNNN.npy      (rows, 4, 64, 64) float16 VAE posterior mean x scaling_factor
    FEATURES/errors/NNNNN.parquet   image missing locally, audio not rendered, undecodable files ...
    FEATURES/features.json          encoder ids, shapes, resolution: what train and generate must match

Latents are the VAE posterior *mean* (deterministic, so reruns are byte-identical), scaled by
`vae.config.scaling_factor` as PixArt's pipeline expects; images are resized on the short side and
centre-cropped to the resolution (paper A.10).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sonify_toolkit.cli.common import Device, RunOptions, parse_assignments, stage_command
from sonify_toolkit.models.ast import DEFAULT_AST

from .features import DEFAULT_BASE, PAIRS_PER_SHARD, build_stage


@stage_command("prepare")
def prepare(
    dataset: Annotated[
        str,
        typer.Option("--dataset", help="Release folder, parquet file, or Hub id (ORG/NAME, hf://datasets/ORG/NAME)."),
    ],
    images: Annotated[Path, typer.Option("--images", help="SA-1B root: image files or .tar shards below it.")],
    out: Annotated[Path, typer.Option("--out", help="Features folder to write.")],
    audio_dir: Annotated[
        Path | None, typer.Option("--audio", help="A `sonify render` output folder (DIR/index/*.parquet).")
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="NAME=ROOT: render on the fly from this collection.")
    ] = None,
    rendered_audio: Annotated[
        bool, typer.Option("--rendered-audio", help="Take the mixes from the release's rendered_audio config.")
    ] = False,
    split: Annotated[str, typer.Option("--split", help="Release split: train, or validation (held-out images).")] = (
        "train"
    ),
    cache_dir: Annotated[str | None, typer.Option("--cache-dir", help="datasets cache folder.")] = None,
    base_model: Annotated[str, typer.Option("--base-model", help="PixArt checkpoint holding the VAE.")] = DEFAULT_BASE,
    vae_subfolder: Annotated[str, typer.Option("--vae-subfolder", help="'' for a bare VAE path.")] = "vae",
    ast_model: Annotated[str, typer.Option("--ast", help="AST checkpoint (Hub id or path).")] = DEFAULT_AST,
    resolution: Annotated[int, typer.Option("--resolution", min=8)] = 512,
    device: Device = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1)] = PAIRS_PER_SHARD,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N pairs (by pair_id).")] = None,
    *,
    run: RunOptions,
) -> None:
    """AST features and VAE latents for every released pair whose image and audio are available locally."""
    stage = build_stage(
        dataset,
        images,
        audio_dir=audio_dir,
        sources={k: v[-1] for k, v in parse_assignments(source, "--source").items()},
        release_audio=rendered_audio,
        split=split,
        cache_dir=cache_dir,
        base_model=base_model,
        vae_subfolder=vae_subfolder or None,
        ast_model=ast_model,
        resolution=resolution,
        device=device,
        batch_size=batch_size,
        shard_size=shard_size,
        limit=limit,
    )
    summary = run.run(stage, out)
    if summary.finalized:
        print(json.dumps(summary.facts))


def main() -> None:
    typer.run(prepare)


if __name__ == "__main__":
    main()
