"""evaluate: AIS, IIS and FID over (audio, reference image, generated image) triples (paper 4.2).

    python -m training_recipe.evaluate --pairs bench/pairs.parquet --generated gen/ \
        --wav2clip wav2clip --clip openai/clip-vit-base-patch32 --out metrics.json

- AIS, audio-image similarity: Wav2CLIP audio embedding vs CLIP image embedding of the generated
  image. Peers define it differently, so three forms are reported: `ais_cosine` (mean paired cosine,
  as Seeing Sound and AudioToken), `ais_win_rate` (SonicDiffusion: how often an audio is closer to its
  own image than to another image of the pool) and `ais_zscore` (MACS-style: the paired cosine
  standardised by the audio's cosines to every other image).
- IIS, image-image similarity: CLIP image embeddings of generated vs reference image, mean cosine.
- FID: Fréchet distance between Gaussian fits of Inception-v3 pool features (`--fid-features
  inception`, needs `pytorch-fid`) or of CLIP image features (`--fid-features clip`, "FID_CLIP").

Wav2CLIP: `--wav2clip wav2clip` uses the `wav2clip` package and its released weights; `--wav2clip
Wav2CLIP.pt` loads that release file from a path (through the package's ResNet); a path to a
TorchScript module mapping (batch, samples) 16 kHz audio to CLIP-space vectors works without it.
AIS is never silently absent: without `--wav2clip` the command refuses in one line, unless `--no-ais`
asks for a report without it, which then holds `"ais": null` and the reason, and says so on stderr.

`--generated` is any folder of images named by the benchmark's ids (`ID.png`, `.jpg`, `.webp`...): our
model's `generate --pairs` output and a baseline's (Sound2Scene, GlueGen, AudioToken, SonicDiffusion)
are scored by the same code; pairs without an image are counted in `"missing"` and named on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from PIL import Image

from sonify_toolkit import audio as au
from sonify_toolkit.cli.common import Device, one_line_errors
from sonify_toolkit.errors import InputError
from sonify_toolkit.settings import IMAGE_EXTENSIONS, SAMPLE_RATE

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
NO_AUDIO_ENCODER = "no audio encoder was given (--no-ais): AIS needs Wav2CLIP (--wav2clip)"


class FidFeatures(str, Enum):
    """Inception-v3 pool features with the FID weights (the paper's FID), or CLIP image features."""

    INCEPTION = "inception"
    CLIP = "clip"


class EvaluateError(InputError):
    """An evaluation that cannot be run as asked (no audio encoder, no matching images, a bad pairs table)."""


# --- metrics: pure functions over embeddings ----------------------------------------------------
def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a_i, b_i) for each row: (n,) in [-1, 1]."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{a.shape[0]} vs {b.shape[0]} rows")
    return np.sum(unit(a) * unit(b), axis=-1)


def win_rate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row i, the fraction of j != i with cos(a_i, b_i) > cos(a_i, b_j) (ties count half): (n,) in [0, 1]."""
    sim = unit(a) @ unit(b).T
    n = sim.shape[0]
    if n < 2:
        raise ValueError("a win rate needs at least 2 pairs")
    own = np.diag(sim)[:, None]
    wins = (own > sim).astype(np.float64) + 0.5 * (own == sim)
    np.fill_diagonal(wins, 0.0)
    return wins.sum(axis=1) / (n - 1)


def zscore_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row i, (cos(a_i, b_i) - mean_j cos(a_i, b_j)) / std_j over j != i: (n,)."""
    sim = unit(a) @ unit(b).T
    n = sim.shape[0]
    if n < 3:
        raise ValueError("a z-score needs at least 3 pairs")
    others = sim[~np.eye(n, dtype=bool)].reshape(n, n - 1)
    return (np.diag(sim) - others.mean(axis=1)) / np.maximum(others.std(axis=1), 1e-12)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the FID formula (Heusel et al. 2017)."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as pytorch-fid does
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    return float(max(0.0, diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


# --- encoders ----------------------------------------------------------------------------------------
class ClipImages:
    """CLIP image embeddings (projected, as used for IIS and AIS)."""

    def __init__(self, model: str = DEFAULT_CLIP, device: str = "auto", batch_size: int = 32):
        from transformers import CLIPModel
        from transformers.models.clip import CLIPImageProcessorPil

        from sonify_toolkit.models.device import load_device

        self.device = load_device(device)
        self.model = CLIPModel.from_pretrained(model).to(self.device).eval()
        self.processor = CLIPImageProcessorPil.from_pretrained(model)
        self.batch_size = batch_size

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        out = []
        for i in range(0, len(images), self.batch_size):
            px = self.processor(images=list(images[i : i + self.batch_size]), return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                emb = self.model.get_image_features(pixel_values=px.to(self.device))
            emb = emb if isinstance(emb, torch.Tensor) else emb.pooler_output
            out.append(emb.float().cpu().numpy())
        return np.concatenate(out)


class Wav2ClipAudio:
    """Wav2CLIP audio embeddings in CLIP's image space (16 kHz mono input)."""

    def __init__(self, spec: str = "wav2clip", device: str = "auto"):
        import torch

        from sonify_toolkit.models.device import load_device

        self.device = load_device(device)
        self._w2c = None
        if spec != "wav2clip":
            try:  # a TorchScript export: (batch, samples) -> (batch, dim)
                self.model = torch.jit.load(spec, map_location=self.device).eval()
                return
            except RuntimeError:
                pass  # not TorchScript: the released Wav2CLIP.pt state dict, loaded through the package
        try:
            import wav2clip
        except ImportError as exc:  # the package also imports torchaudio, which has no build beside CPU torch here
            raise EvaluateError(
                f"AIS needs Wav2CLIP: pip install wav2clip (for its release or a Wav2CLIP.pt path), "
                f"or pass --wav2clip PATH to a TorchScript audio encoder ({type(exc).__name__}: {exc})"
            ) from None
        self._w2c = wav2clip
        if spec == "wav2clip":
            self.model = wav2clip.get_model(device=self.device)  # downloads the released weights once
        else:
            from wav2clip.model.encoder import ResNetExtractor

            checkpoint = torch.load(spec, map_location=self.device)
            self.model = ResNetExtractor(checkpoint=checkpoint, scenario="frozen", transform=True).to(self.device)
        self.model.eval()

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        out = []
        for clip in clips:
            x = np.asarray(clip, np.float32)[None]
            if self._w2c is not None:
                out.append(np.asarray(self._w2c.embed_audio(x, self.model), np.float32).reshape(1, -1))
            else:
                with torch.inference_mode():
                    out.append(self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy().reshape(1, -1))
        return np.concatenate(out)


class InceptionPool:
    """Inception-v3 2048-d pool features with the FID weights (pytorch-fid's port of the TF graph)."""

    def __init__(self, device: str = "auto", batch_size: int = 50):
        try:
            from pytorch_fid.inception import InceptionV3
        except ImportError as exc:
            raise EvaluateError(
                f"--fid-features inception needs `pip install pytorch-fid` (or use clip) ({type(exc).__name__}: {exc})"
            ) from None
        from sonify_toolkit.models.device import load_device

        self.device = load_device(device)
        self.model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(self.device).eval()
        self.batch_size = batch_size

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        out = []
        for i in range(0, len(images), self.batch_size):
            arr = np.stack(
                [
                    np.asarray(im.convert("RGB").resize((299, 299), Image.BICUBIC))
                    for im in images[i : i + self.batch_size]
                ]
            )
            x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255).to(self.device)
            with torch.inference_mode():
                out.append(self.model(x)[0].squeeze(-1).squeeze(-1).cpu().numpy())
        return np.concatenate(out)


# --- the evaluation ----------------------------------------------------------------------------------
def evaluate_triples(
    audio: Sequence[np.ndarray],
    references: Sequence[Image.Image],
    generated: Sequence[Image.Image],
    clip: ClipImages,
    wav2clip: Wav2ClipAudio | None = None,
    fid_features: Any | None = None,
) -> dict[str, Any]:
    """Every metric over aligned lists; AIS needs an audio encoder (else `"ais": None` and the reason),
    FID a feature extractor (else CLIP's)."""
    if not (len(audio) == len(references) == len(generated)):
        raise ValueError("audio, references and generated images must be aligned lists")
    gen_emb, ref_emb = clip.embed(generated), clip.embed(references)
    metrics: dict[str, Any] = {"count": float(len(generated)), "iis": float(paired_cosine(gen_emb, ref_emb).mean())}
    if wav2clip is None:
        metrics["ais"] = None
        metrics["ais_reason"] = NO_AUDIO_ENCODER
    else:
        aud = wav2clip.embed(audio)
        metrics["ais_cosine"] = float(paired_cosine(aud, gen_emb).mean())
        if len(audio) >= 2:
            metrics["ais_win_rate"] = float(win_rate(aud, gen_emb).mean())
        if len(audio) >= 3:
            metrics["ais_zscore"] = float(zscore_cosine(aud, gen_emb).mean())
        metrics["ais_reference_cosine"] = float(paired_cosine(aud, ref_emb).mean())  # the data's own ceiling
    if len(generated) >= 2:
        if fid_features is None:
            metrics["fid_clip"] = fid(gen_emb, ref_emb)
        else:
            metrics["fid"] = fid(fid_features.embed(generated), fid_features.embed(references))
    return metrics


def _read_pairs(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    if path.is_dir():
        path = path / "pairs.parquet"
    if not path.is_file():
        raise EvaluateError(f"no benchmark pairs at {path} (run training_recipe.benchmarks first)")
    rows = pq.read_table(path).to_pylist()
    for name in ("id", "image", "audio"):
        if rows and name not in rows[0]:
            raise EvaluateError(f"{path} lacks column {name!r} (expected the output of training_recipe.benchmarks)")
    return rows


def generated_images(folder: Path) -> dict[str, Path]:
    """id -> image file for any folder of images named by benchmark id (ours or a baseline's, any format)."""
    if not folder.is_dir():
        raise EvaluateError(f"--generated {folder} is not a folder")
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in exts:
            found.setdefault(p.stem, p)  # sorted: ID.jpg before ID.png if both exist
    return found


def warn(message: str) -> None:
    """A line a person must not miss, on stderr (stdout stays the JSON)."""
    print(f"WARNING: {message}", file=sys.stderr)


@one_line_errors("evaluate")
def evaluate(
    pairs: Annotated[
        Path, typer.Option("--pairs", help="pairs.parquet (or its folder) from training_recipe.benchmarks.")
    ],
    generated: Annotated[
        Path, typer.Option("--generated", help="Folder of images named by pair id (ID.png/.jpg): ours or a baseline's.")
    ],
    clip: Annotated[str, typer.Option("--clip", help="CLIP checkpoint for IIS/AIS.")] = DEFAULT_CLIP,
    wav2clip: Annotated[
        str | None, typer.Option("--wav2clip", help="'wav2clip' (the package), Wav2CLIP.pt, or a TorchScript path.")
    ] = None,
    no_ais: Annotated[
        bool, typer.Option("--no-ais", help='Report without AIS ("ais": null and why) instead of refusing.')
    ] = False,
    fid_features: Annotated[FidFeatures, typer.Option("--fid-features", help="FID features.")] = FidFeatures.INCEPTION,
    device: Device = "auto",
    out: Annotated[Path | None, typer.Option("--out", help="Write the metrics JSON here.")] = None,
) -> None:
    """AIS (cosine, win rate, z-score), IIS and FID over a benchmark's pairs and a folder of generated images."""
    try:
        fid_kind = FidFeatures(fid_features)  # a FidFeatures or its value
    except ValueError:
        raise EvaluateError(f"--fid-features must be inception or clip, not {fid_features!r}") from None
    if wav2clip is None and not no_ais:
        raise EvaluateError(
            "AIS needs an audio encoder: --wav2clip wav2clip (pip install '.[eval]'), --wav2clip PATH "
            "(Wav2CLIP.pt or TorchScript), or --no-ais to report without it"
        )
    root = (pairs if pairs.is_dir() else pairs.parent).resolve()
    images = generated_images(generated)
    all_rows = _read_pairs(pairs)
    rows = [r for r in all_rows if r["id"] in images]
    if not rows:
        raise EvaluateError(f"no images in {generated} are named by the ids in {pairs} (expected ID.png or ID.jpg)")
    missing = [r["id"] for r in all_rows if r["id"] not in images]
    if missing:
        warn(f"{len(missing)} of {len(all_rows)} pairs have no image in {generated} (first: {missing[0]})")
    audio = [au.load_standard(root / r["audio"], SAMPLE_RATE) for r in rows]
    refs = [Image.open(root / r["image"]).convert("RGB") for r in rows]
    gens = [Image.open(images[r["id"]]).convert("RGB") for r in rows]
    metrics = evaluate_triples(
        audio,
        refs,
        gens,
        ClipImages(clip, device),
        Wav2ClipAudio(wav2clip, device) if wav2clip else None,
        InceptionPool(device) if fid_kind is FidFeatures.INCEPTION else None,
    )
    metrics["missing"] = len(missing)
    metrics["generated"] = str(generated)
    if metrics.get("ais", 0) is None:
        warn(f"AIS not computed: {metrics['ais_reason']}")
    text = json.dumps(metrics, indent=2)
    if out:
        out.write_text(text + "\n")
    print(text)


def main() -> None:
    typer.run(evaluate)


if __name__ == "__main__":
    main()
