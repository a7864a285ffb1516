"""loudness_retention: how much loudness AST features keep (paper A.8, Fig. 15).

    python -m training_recipe.loudness_retention --audio a.wav --audio b.wav ... --out fig15
    python -m training_recipe.loudness_retention --pool sonify-work --count 50 --out fig15

The paper's experiment: a few clips, each its own class, are encoded by AST at their nominal loudness
(the references). Each clip is then played at gains drawn from a range that widens step by step
(`--range-db 0 6 12 24 48`: gains uniform in [-R/2, +R/2] dB) and classified by its nearest reference
(cosine, 1-NN over the time-averaged AST sequence the recipe trains on). If AST ignored loudness the
accuracy would stay at 1 for every range; the more it falls, the more loudness the features retain.
Also reported: the mean cosine of each gained clip to its own reference.

Writes OUT.json (one row per range) and OUT.png (accuracy and cosine against the range).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from sonify_toolkit import audio as au
from sonify_toolkit.cli.common import CliError, Device, one_line_errors
from sonify_toolkit.models.ast import DEFAULT_AST
from sonify_toolkit.settings import SAMPLE_RATE

from .evaluate import unit

Embed = Callable[[list[np.ndarray]], np.ndarray]  # clips -> (n, dim)
DEFAULT_RANGES = (0.0, 6.0, 12.0, 24.0, 36.0, 48.0)


def retention_curve(
    embed: Embed,
    clips: Sequence[np.ndarray],
    ranges_db: Sequence[float],
    variants: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per range: 1-NN accuracy of gained clips against the references, and their mean cosine to their own."""
    if len(clips) < 2:
        raise ValueError("the experiment needs at least 2 clips (each is its own class)")
    refs = unit(embed(list(clips)))
    rng = np.random.default_rng(seed)
    rows = []
    for r in ranges_db:
        gains = rng.uniform(-r / 2, r / 2, size=(len(clips), variants)) if r > 0 else np.zeros((len(clips), variants))
        gained = [
            np.asarray(c, np.float32) * np.float32(au.db_to_gain(g))
            for c, gs in zip(clips, gains, strict=True)
            for g in gs
        ]
        emb = unit(embed(gained))
        sims = emb @ refs.T
        truth = np.repeat(np.arange(len(clips)), variants)
        rows.append(
            {
                "range_db": float(r),
                "accuracy": float(np.mean(sims.argmax(axis=1) == truth)),
                "own_cosine": float(np.mean(sims[np.arange(len(truth)), truth])),
                "samples": len(truth),
            }
        )
    return rows


def ast_embedder(model: str, device: str) -> Embed:
    """The recipe's audio feature (AST sequence, mean over its 12 frequency patches) averaged over time."""
    from sonify_toolkit.models.ast import AstEncoder

    encoder = AstEncoder(model, device=device, dtype="fp32")
    return lambda clips: encoder.encode(clips).astype(np.float32).mean(axis=1)


def pool_clips(workdir: Path, count: int) -> list[np.ndarray]:
    """`count` pool segments spread evenly over the pool (deterministic), read from their collections."""
    from sonify_toolkit.pool_files import load_pool

    from .pool_sources import segment_window

    pool = load_pool(workdir, with_embeddings=False)
    roots = pool.manifest.get("segments", {}).get("roots", {})
    picks = np.linspace(0, pool.segments.num_rows - 1, min(count, pool.segments.num_rows)).round().astype(int)
    rows = pool.segments.take(np.unique(picks)).to_pylist()
    return [segment_window(roots, s) for s in rows]


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = [r["range_db"] for r in rows]
    ax.plot(x, [r["accuracy"] for r in rows], "o-", label="1-NN accuracy")
    ax.plot(x, [r["own_cosine"] for r in rows], "s--", label="cosine to own reference")
    ax.set_xlabel("loudness range (dB)")
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title("AST features vs gain (Fig. 15)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@one_line_errors("loudness_retention")
def loudness_retention(
    out: Annotated[Path, typer.Option("--out", help="Output stem: OUT.json and OUT.png.")],
    audio_files: Annotated[list[Path] | None, typer.Option("--audio", help="Clips, each its own class.")] = None,
    pool: Annotated[Path | None, typer.Option("--pool", help="Work directory: take clips from its pool.")] = None,
    count: Annotated[int, typer.Option("--count", min=2, help="Clips taken from --pool.")] = 50,
    range_db: Annotated[list[float] | None, typer.Option("--range-db", help="Gain ranges (dB), widening.")] = None,
    variants: Annotated[int, typer.Option("--variants", min=1, help="Gains drawn per clip and range.")] = 5,
    lufs: Annotated[float, typer.Option("--lufs", help="Nominal loudness of the references.")] = -23.0,
    ast: Annotated[str, typer.Option("--ast", help="AST checkpoint (Hub id or path).")] = DEFAULT_AST,
    device: Device = "auto",
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Fig. 15: 1-NN accuracy of AST features as the gain range widens."""
    clips = [au.load_standard(p, SAMPLE_RATE) for p in audio_files or []]
    if pool is not None:
        clips += pool_clips(pool, count)
    if len(clips) < 2:
        raise CliError("give at least 2 clips: --audio files or --pool W")
    levels = [au.loudness(c) for c in clips]
    clips = [au.normalize_loudness(c, lv, lufs) if np.isfinite(lv) else c for c, lv in zip(clips, levels, strict=True)]
    rows = retention_curve(ast_embedder(ast, device), clips, range_db or DEFAULT_RANGES, variants, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"clips": len(clips), "variants": variants, "ast": ast, "lufs": lufs, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, out.with_suffix(".png"))
    for r in rows:
        print(f"range {r['range_db']:5.1f} dB  accuracy {r['accuracy']:.3f}  own cosine {r['own_cosine']:.4f}")


def main() -> None:
    typer.run(loudness_retention)


if __name__ == "__main__":
    main()
