"""generate: images from audio with a trained checkpoint, and the paper's ablations (section 4.5) as options.

    python -m training_recipe.generate --checkpoint runs/pixart_512/checkpoints/step-0500000 \
        --audio dog.wav sirens.wav --out grid.png [options]

Rows of the output grid are audio conditions, columns are seeds; every row is labelled.

- semantic mixing: several `--audio` files are summed in the time domain before AST, each scaled by
  `--weights` (linear gains, default 1), after loudness-normalising every file to `--lufs`;
- loudness interpolation: `--sweep-db -30 -20 -10 0` steps the first source's gain (dB) with the others fixed;
- separated vs mixed: `--arrange mix` (summed) or `sequence` (played one after the other), `--solo` adds a
  row per source alone;
- acoustic space: `--reverb room.wav [church.wav ...]` convolves the condition with each impulse response
  (one row each, beside the dry row), rescaled to the dry loudness so that only the space changes;
- sources from the pool by concept (Fig. 4): `--concept "cows" --concept "police siren" --pool W` finds each
  concept's best clip with the pool's CLAP, as retrieval does, and mixes them like `--audio` files;
- held-out pairs: `--features FEATURES_VAL` (prepare --split validation) renders the first `--count` pairs of
  the validation split, whose SA-1B images were held out of training, beside their real image.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from sonify_toolkit import audio as au
from sonify_toolkit.choices import Arrange, Dtype
from sonify_toolkit.cli.common import CliError, Device, DtypeOpt, one_line_errors
from sonify_toolkit.errors import InputError, ModelLoadError
from sonify_toolkit.settings import SAMPLE_RATE

DEFAULT_LUFS = -23.0


def arrange(waves: Sequence[np.ndarray], weights: Sequence[float], mode: Arrange | str) -> np.ndarray:
    """`mix`: weighted time-domain sum (peak-limited like the renderer); `sequence`: concatenated in order."""
    if len(waves) != len(weights):
        raise ValueError(f"{len(waves)} sources but {len(weights)} weights")
    try:
        kind = Arrange(mode)
    except ValueError:
        raise InputError(f"--arrange must be {' or '.join(a.value for a in Arrange)}, not {mode!r}") from None
    scaled = [np.asarray(w, np.float32) * np.float32(g) for w, g in zip(waves, weights, strict=True)]
    if kind is Arrange.mix:
        n = max(len(w) for w in scaled)
        return au.mix([np.pad(w, (0, n - len(w))) for w in scaled])[0]
    return np.concatenate(scaled).astype(np.float32)


def reverberate(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Convolve with a room impulse response; keep the tail, match the dry signal's loudness."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(x, ir / (np.max(np.abs(ir)) or 1.0)).astype(np.float32)
    dry_lufs, wet_lufs = au.loudness(x), au.loudness(wet)
    if np.isfinite(dry_lufs) and np.isfinite(wet_lufs):
        wet = au.normalize_loudness(wet, wet_lufs, dry_lufs)
    return au.mix([wet])[0]  # peak-limit


def normalized(x: np.ndarray, lufs: float | None) -> np.ndarray:
    measured = au.loudness(x)
    return au.normalize_loudness(x, measured, lufs) if lufs is not None and np.isfinite(measured) else x


@dataclass(frozen=True)
class Condition:
    label: str
    wave: np.ndarray


def conditions(
    names: Sequence[str],
    waves: Sequence[np.ndarray],
    *,
    weights: Sequence[float] | None = None,
    arrange_mode: str = "mix",
    sweep_db: Sequence[float] | None = None,
    solo: bool = False,
    reverbs: Sequence[tuple[str, np.ndarray]] = (),
) -> list[Condition]:
    """The grid's rows: solos, the arranged condition or a loudness sweep, each also through every IR."""
    weights = list(weights) if weights else [1.0] * len(waves)
    joiner = " + " if arrange_mode == "mix" else " -> "
    rows: list[Condition] = []
    if solo and len(waves) > 1:
        rows += [Condition(n, w) for n, w in zip(names, waves, strict=True)]
    if sweep_db:
        for db in sweep_db:
            g = [weights[0] * au.db_to_gain(db), *weights[1:]]
            label = joiner.join([f"{names[0]} {db:+g} dB", *names[1:]])
            rows.append(Condition(label, arrange(waves, g, arrange_mode)))
    else:
        label = joiner.join(n if w == 1 else f"{w:g}x {n}" for n, w in zip(names, weights, strict=True))
        rows.append(Condition(label, arrange(waves, weights, arrange_mode)))
    if reverbs:
        dry = list(rows)
        for ir_name, ir in reverbs:
            rows += [Condition(f"{c.label} @ {ir_name}", reverberate(c.wave, ir)) for c in dry]
    return rows


class Generator:
    """A trained checkpoint with its VAE and AST, ready to turn waveforms into images."""

    def __init__(self, checkpoint: str | Path, *, ast: str | None = None, device: str = "auto", dtype: str = "auto"):
        import torch

        from sonify_toolkit.models.ast import AstEncoder
        from sonify_toolkit.models.device import load_device, torch_dtype

        from .model import load_export
        from .pipeline import make_pipeline

        path = Path(checkpoint)
        if (path / "pipeline").is_dir():
            path = path / "pipeline"  # a training checkpoint: use its export
        self.device = load_device(device)
        self.dtype = torch_dtype(dtype, self.device)
        transformer, self.null_audio, self.recipe = load_export(path, dtype=self.dtype)
        self.pipe = make_pipeline(
            self.recipe["base_model"], transformer, revision=self.recipe.get("revision"), dtype=self.dtype
        )
        self.pipe.to(self.device)
        self.ast = AstEncoder(ast or self.recipe["ast_model"], device=self.device, dtype="fp32")
        if list(self.ast.shape) != list(self.recipe["audio_shape"]):
            raise ModelLoadError(
                f"the AST {self.ast.identity['model']} gives features of shape {list(self.ast.shape)}, the "
                f"checkpoint was trained on {self.recipe['audio_shape']} (from {self.recipe['ast_model']}): "
                "drop --ast or pass that one"
            )
        self.resolution = int(self.recipe["resolution"])
        self._torch = torch

    def images(self, waves: Sequence[np.ndarray], seed: int, guidance: float, steps: int):
        return self.images_from_features(self._torch.from_numpy(self.ast.encode(list(waves))), seed, guidance, steps)

    def decode_latents(self, latents: np.ndarray):
        """Prepared VAE latents (scaled posterior means) back to images: the pairs' real pictures."""
        torch = self._torch
        vae = self.pipe.vae
        x = torch.from_numpy(np.asarray(latents, np.float32)).to(self.device, vae.dtype) / vae.config.scaling_factor
        with torch.inference_mode():
            decoded = vae.decode(x).sample
        return self.pipe.image_processor.postprocess(decoded.float(), output_type="pil")

    def images_from_features(self, feats, seed: int, guidance: float, steps: int):
        from .pipeline import images_from_audio

        return images_from_audio(
            self.pipe,
            feats,
            self.null_audio,
            resolution=self.resolution,
            guidance_scale=guidance,
            steps=steps,
            seed=seed,
        )


def render_grid(gen: Generator, rows: Sequence[Condition], seeds: Sequence[int], guidance: float, steps: int):
    """Row-major images (conditions x seeds) and the labelled grid."""
    from .pipeline import image_grid

    per_seed = [gen.images([c.wave for c in rows], seed, guidance, steps) for seed in seeds]
    images = [per_seed[s][r] for r in range(len(rows)) for s in range(len(seeds))]
    grid = image_grid(
        images, cols=len(seeds), row_labels=[c.label for c in rows], col_labels=[f"seed {s}" for s in seeds]
    )
    return images, grid


def generate_for_pairs(
    gen: Generator, pairs: Path, out_dir: Path, seed: int, guidance: float, steps: int, batch_size: int = 8
) -> int:
    """One image per benchmark pair (`training_recipe.benchmarks` output) as OUT_DIR/ID.png; existing skipped."""
    import pyarrow.parquet as pq

    rows = [r for r in pq.read_table(pairs).to_pylist() if not (out_dir / f"{r['id']}.png").exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        waves = [au.load_standard(pairs.parent / r["audio"], SAMPLE_RATE) for r in batch]
        for r, im in zip(batch, gen.images(waves, seed, guidance, steps), strict=True):
            im.save(out_dir / f"{r['id']}.png")
    return len(rows)


def held_out_features(features: Path):
    """The prepare output of the validation split; training clips are refused when the release holds some out."""
    from .train import FeatureDataset

    dataset = FeatureDataset(features)
    split = dataset.manifest.get("split", "train")
    if split == "train":
        splits = dataset.manifest.get("release_splits", ["train"])
        if "validation" in splits:
            raise InputError(
                f"{features} holds the train split: prepare the held-out images with --split validation and pass that"
            )
        print(f"note: the release has no validation split; {features} are training clips", file=sys.stderr)
    return dataset


def generate_from_features(
    gen: Generator, features: Path, count: int, seeds: Sequence[int], guidance: float, steps: int
):
    """Rows: the first `count` held-out pairs; columns: the real image, then one generated image per seed."""
    import pyarrow as pa

    from sonify_toolkit.shards import StageDir

    from .pipeline import image_grid

    dataset = held_out_features(features)
    chosen = range(min(count, len(dataset)))
    ids = pa.concat_tables([t for _, t in StageDir(features).iter_tables("")]).column("pair_id").to_pylist()
    feats = [dataset[i] for i in chosen]
    audio = gen._torch.stack([f["audio"] for f in feats]).float()
    real = gen.decode_latents(np.stack([f["latents"].float().numpy() for f in feats]))
    per_seed = [gen.images_from_features(audio, seed, guidance, steps) for seed in seeds]
    images = [im for r in range(len(chosen)) for im in (real[r], *(per_seed[s][r] for s in range(len(seeds))))]
    labels = [ids[i] for i in chosen]
    grid = image_grid(
        images, cols=1 + len(seeds), row_labels=labels, col_labels=["held-out image", *(f"seed {s}" for s in seeds)]
    )
    return images, labels, grid


@one_line_errors("generate")
def generate(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="A checkpoint folder or its pipeline/ export.")],
    audio_files: Annotated[list[Path] | None, typer.Option("--audio", help="Audio files (repeat for several).")] = None,
    out: Annotated[Path, typer.Option("--out", help="The grid image to write (.png).")] = Path("grid.png"),
    weights: Annotated[list[float] | None, typer.Option("--weights", help="Linear gain per --audio.")] = None,
    arrange_mode: Annotated[
        Arrange, typer.Option("--arrange", help="Sum the sources, or play them in turn.")
    ] = Arrange.mix,
    sweep_db: Annotated[list[float] | None, typer.Option("--sweep-db", help="Gains (dB) of the 1st source.")] = None,
    solo: Annotated[bool, typer.Option("--solo", help="Also one row per source alone.")] = False,
    reverb: Annotated[list[Path] | None, typer.Option("--reverb", help="Room impulse responses (.wav).")] = None,
    lufs: Annotated[float | None, typer.Option("--lufs", help="Normalise each file first (LUFS).")] = DEFAULT_LUFS,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="Seeds (grid columns).")] = None,
    guidance: Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale.")] = 4.5,
    steps: Annotated[int, typer.Option("--steps", min=1)] = 20,
    ast: Annotated[str | None, typer.Option("--ast", help="Override the checkpoint's AST.")] = None,
    device: Device = "auto",
    dtype: DtypeOpt = Dtype.auto,
    save_each: Annotated[bool, typer.Option("--save-each", help="Also write every image beside the grid.")] = False,
    pairs: Annotated[
        Path | None, typer.Option("--pairs", help="Benchmark pairs.parquet: one image per pair into --out-dir.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for --pairs images (ID.png).")] = Path("generated"),
    features: Annotated[
        Path | None,
        typer.Option("--features", help="Prepared validation split: a grid of held-out pairs beside their images."),
    ] = None,
    count: Annotated[int, typer.Option("--count", min=1, help="Held-out pairs to render with --features.")] = 8,
    concepts: Annotated[
        list[str] | None, typer.Option("--concept", help="A source from --pool by CLAP text query (repeat).")
    ] = None,
    pool: Annotated[Path | None, typer.Option("--pool", help="Work directory whose pool --concept searches.")] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="NAME=ROOT: a collection's folder (default: the pool's).")
    ] = None,
    concept_rank: Annotated[
        int, typer.Option("--concept-rank", min=0, help="Take each concept's Nth best clip (0: the best).")
    ] = 0,
) -> None:
    """Images from audio, with mixing, loudness sweeps, arrangement and reverberation ablations."""
    if features is not None:
        gen = Generator(checkpoint, ast=ast, device=device, dtype=dtype)
        seeds = seeds or [0]
        _, labels, grid = generate_from_features(gen, features, count, seeds, guidance, steps)
        out.parent.mkdir(parents=True, exist_ok=True)
        grid.save(out)
        print(f"{len(labels)} held-out pairs x {len(seeds)} seeds -> {out}")
        return
    if pairs is not None:
        gen = Generator(checkpoint, ast=ast, device=device, dtype=dtype)
        n = generate_for_pairs(gen, pairs, out_dir, (seeds or [0])[0], guidance, steps)
        print(f"{n} images -> {out_dir}")
        return
    names = [p.stem for p in audio_files or []]
    waves = [normalized(au.load_standard(p, SAMPLE_RATE), lufs) for p in audio_files or []]
    if concepts:
        if pool is None:
            raise CliError("--concept needs --pool W (a work directory with a CLAP-embedded pool)")
        from sonify_toolkit.cli.common import parse_collections

        from .pool_sources import concept_sources

        found = concept_sources(pool, concepts, parse_collections(source, "--source"), rank=concept_rank, device=device)
        for s in found:
            print(f"{s.concept!r} -> {s.clip_id} (CLAP similarity {s.similarity:.3f})", file=sys.stderr)
        names += [s.label for s in found]
        waves += [normalized(s.wave, lufs) for s in found]
    if not waves:
        raise CliError("give --audio files or --concept texts (or --pairs for a benchmark, --features for held-out)")
    if weights and len(weights) != len(waves):
        raise CliError(f"--weights needs one value per source ({len(waves)}: --audio files, then --concept texts)")
    irs = [(p.stem, au.load_standard(p, SAMPLE_RATE)) for p in reverb or []]
    rows = conditions(
        names,
        waves,
        weights=weights,
        arrange_mode=arrange_mode,
        sweep_db=sweep_db,
        solo=solo,
        reverbs=irs,
    )
    gen = Generator(checkpoint, ast=ast, device=device, dtype=dtype)
    seeds = seeds or [0]
    images, grid = render_grid(gen, rows, seeds, guidance, steps)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    if save_each:
        for i, im in enumerate(images):
            r, s = divmod(i, len(seeds))
            im.save(out.with_name(f"{out.stem}-r{r:02d}-seed{seeds[s]}.png"))
    print(f"{len(rows)} conditions x {len(seeds)} seeds -> {out}")


def main() -> None:
    typer.run(generate)


if __name__ == "__main__":
    main()
