"""The features of the recipe as a sonify stage: AST sequences and VAE latents per released pair.

`prepare.py` is its command line. The stage lives in its own module so that process-pool workers
(spawned) import it by name rather than re-running a `__main__` script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from sonify_toolkit.errors import InputError
from sonify_toolkit.models.ast import DEFAULT_AST
from sonify_toolkit.shards import atomic_write_json
from sonify_toolkit.stage import (
    ErrorLog,
    ItemCallback,
    Resources,
    Shard,
    ShardResult,
    Stage,
    StatsTimer,
    chunk,
    model_resources,
)

from . import data

FEATURES_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("vlm", pa.string()),
        pa.field("row", pa.int32(), nullable=False),  # row in this shard's audio/latents arrays
    ]
)
DEFAULT_BASE = "PixArt-alpha/PixArt-XL-2-512x512"
PAIRS_PER_SHARD = 1000
MANIFEST = "features.json"


def plan_items(
    pairs: pa.Table,
    images: Mapping[str, str],
    rendered: Mapping[str, tuple[str | None, str]] | None,
    from_release: bool = False,
) -> list[dict[str, Any]]:
    """One JSON-able item per pair, sorted by pair_id: where its image and audio are (or why not).
    `from_release`: the audio is looked up in the release's rendered_audio config when the shard runs."""
    cols = [
        c
        for c in ("pair_id", "image_id", "vlm", "sources", "seed", "image_source", "caption")
        if c in pairs.column_names
    ]
    items = []
    for row in pairs.select(cols).to_pylist():
        item: dict[str, Any] = {"pair_id": row["pair_id"], "image_id": row["image_id"], "vlm": row.get("vlm")}
        item["image"] = images.get(row["image_id"])
        if from_release:
            pass  # the pair_id is the key into the rendered_audio config
        elif rendered is None:
            item["pair"] = row  # rendered on the fly from the pair's own metadata
        else:
            path, status = rendered.get(row["pair_id"], (None, "not_rendered"))
            item["audio"] = path if status == "ok" else None
            item["audio_status"] = status
        items.append(item)
    items.sort(key=lambda it: it["pair_id"])
    return items


@dataclass
class PrepareStage(Stage):
    """Encode each pair's image (VAE) and audio (AST) in batches; missing inputs become error rows."""

    name: ClassVar[str] = "prepare"

    items: Sequence[dict[str, Any]]
    images_root: str
    audio_dir: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    release_audio: str | None = None  # a release whose rendered_audio config holds the mixes
    split: str = "train"
    release_splits: Sequence[str] = ("train",)
    cache_dir: str | None = None
    base_model: str = DEFAULT_BASE
    vae_subfolder: str | None = "vae"
    ast_model: str = DEFAULT_AST
    resolution: int = 512
    device: str = "auto"
    batch_size: int = 16
    shard_size: int = PAIRS_PER_SHARD

    @property  # type: ignore[override]
    def resources(self) -> Resources:
        """One GPU per worker when encoding on CUDA (AST + VAE), else one CPU."""
        return model_resources(self.device)

    def output_dir(self, workdir: Path) -> Path:
        return Path(workdir)

    def plan(self) -> list[Shard]:
        return chunk(list(self.items), self.shard_size)

    def params(self) -> dict[str, Any]:
        return {
            "base_model": self.base_model,
            "vae_subfolder": self.vae_subfolder,
            "ast_model": self.ast_model,
            "resolution": self.resolution,
            "audio": "release" if self.release_audio else "rendered" if self.audio_dir else "on_the_fly",
            "split": self.split,
        }

    def setup(self) -> None:
        import torch
        from diffusers import AutoencoderKL

        from sonify_toolkit.models.ast import AstEncoder
        from sonify_toolkit.models.device import load_device

        self._device = load_device(self.device)
        self._ast = AstEncoder(self.ast_model, device=self._device, dtype="fp32", batch_size=self.batch_size)
        kw = {"subfolder": self.vae_subfolder} if self.vae_subfolder else {}
        self._vae = AutoencoderKL.from_pretrained(self.base_model, **kw).to(self._device).eval()
        self._latent_shape = (
            int(self._vae.config.latent_channels),
            *(self.resolution // (2 ** (len(self._vae.config.block_out_channels) - 1)),) * 2,
        )
        self._torch = torch
        self._cache = None
        self._release_audio = None
        if self.release_audio is not None:
            self._release_audio = data.ReleaseAudio(self.release_audio, cache_dir=self.cache_dir)
        elif self.audio_dir is None:
            from sonify_toolkit.soundtrack import FileCache

            self._cache = FileCache()

    def _load(self, item: dict[str, Any], errors: ErrorLog) -> tuple[np.ndarray, np.ndarray] | None:
        pid = item["pair_id"]
        if item.get("image") is None:
            errors.add(pid, "image_missing", f"{item['image_id']} not found under {self.images_root}")
            return None
        try:
            pixels = data.center_crop(data.open_image(self.images_root, item["image"]), self.resolution)
        except Exception as exc:  # PIL raises many types for broken files
            errors.add(pid, "image_unreadable", f"{item['image']}: {exc}")
            return None
        try:
            if self._release_audio is not None:
                if pid not in self._release_audio:
                    errors.add(pid, "audio_missing", "not in the release's rendered_audio config")
                    return None
                wave = self._release_audio.read(pid)
            elif self.audio_dir is not None:
                if item.get("audio") is None:
                    errors.add(pid, "audio_missing", f"render status: {item.get('audio_status')}")
                    return None
                wave = data.load_rendered_audio(self.audio_dir, item["audio"])
            else:
                wave = data.render_on_the_fly(item["pair"], self.sources, self._cache)
        except Exception as exc:  # decode errors, missing source files, render failures
            errors.add(pid, "audio_unreadable", f"{type(exc).__name__}: {exc}")
            return None
        return pixels, wave

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        torch = self._torch
        errors, timer = ErrorLog(), StatsTimer()
        rows: list[dict[str, Any]] = []
        audio_out: list[np.ndarray] = []
        latent_out: list[np.ndarray] = []
        items = list(shard.items)
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            ok, pixels, waves = [], [], []
            with timer("load"):
                for item in batch:
                    loaded = self._load(item, errors)
                    if loaded is not None:
                        ok.append(item)
                        pixels.append(loaded[0])
                        waves.append(loaded[1])
            if ok:
                with timer("ast"):
                    audio_out.append(self._ast.encode(waves).astype(np.float16))
                with timer("vae"), torch.inference_mode():
                    x = torch.from_numpy(np.stack(pixels)).to(self._device, dtype=self._vae.dtype)
                    lat = self._vae.encode(x).latent_dist.mean * self._vae.config.scaling_factor
                    latent_out.append(lat.float().cpu().numpy().astype(np.float16))
                for item in ok:
                    rows.append(
                        {
                            "pair_id": item["pair_id"],
                            "image_id": item["image_id"],
                            "vlm": item.get("vlm"),
                            "row": len(rows),
                        }
                    )
            if on_item:
                on_item(len(batch))
        t, d = self._ast.shape
        arrays = {
            "audio": np.concatenate(audio_out) if audio_out else np.zeros((0, t, d), np.float16),
            "latents": np.concatenate(latent_out) if latent_out else np.zeros((0, *self._latent_shape), np.float16),
        }
        return ShardResult(
            tables={"": pa.Table.from_pylist(rows, schema=FEATURES_SCHEMA), "errors": errors.table()},
            arrays=arrays,
            counters={"pairs_encoded": len(rows)},
            errors=dict(errors.counts),
            items=len(items),
            extra={"seconds_by_phase": {k: round(v, 4) for k, v in timer.seconds.items()}},
        )

    def finalize(self, workdir: Path) -> dict[str, Any]:
        """Write what train/generate must agree with: encoders, shapes, resolution."""
        from sonify_toolkit.shards import StageDir

        sd = StageDir(self.output_dir(workdir))
        count = sum(s.get("counters", {}).get("pairs_encoded", 0) for s in sd.stats())
        first = sd.complete_shards()[0]  # every shard holds both arrays, empty ones too
        audio_shape, latent_shape = (
            list(np.load(sd.array_path(name, first), mmap_mode="r").shape[1:]) for name in ("audio", "latents")
        )
        manifest = {
            "count": count,
            "ast_model": self.ast_model,
            "audio_feature": "AST last hidden state, CLS/dist dropped, mean over 12 frequency patches",
            "audio_shape": audio_shape,
            "base_model": self.base_model,
            "vae_subfolder": self.vae_subfolder,
            "latent_shape": latent_shape,
            "resolution": self.resolution,
            "dtype": "float16",
            "split": self.split,  # train's sample grids and generate --features check it is held out
            "release_splits": list(self.release_splits),
        }
        atomic_write_json(sd.path / MANIFEST, manifest)
        return {"pairs_encoded": count, "audio_shape": audio_shape, "latent_shape": latent_shape}


def build_stage(
    dataset: str,
    images: str | Path,
    *,
    audio_dir: str | Path | None = None,
    sources: Mapping[str, str] | None = None,
    release_audio: bool = False,
    split: str = "train",
    limit: int | None = None,
    cache_dir: str | None = None,
    **kwargs: Any,
) -> PrepareStage:
    """Read the release and the local indexes, and plan the stage (shared by the CLI and tests).

    The audio comes from exactly one place: the release's rendered_audio config (`release_audio`), a
    render folder (`audio_dir`), or the sound collections (`sources`, rendered on the fly)."""
    given = [release_audio, audio_dir is not None, bool(sources)]
    if sum(given) != 1:
        raise InputError("give exactly one audio input: --rendered-audio, --audio RENDER_DIR or --source NAME=ROOT")
    pairs = data.load_pairs(dataset, split, cache_dir=cache_dir)
    if limit is not None:
        pairs = pairs.slice(0, limit)
    if pairs.num_rows == 0:
        raise InputError(f"no pairs to prepare in {dataset}" + (f" (--limit {limit})" if limit is not None else ""))
    rendered = data.load_rendered_index(audio_dir) if audio_dir is not None else None
    items = plan_items(pairs, data.index_images(images), rendered, from_release=release_audio)
    return PrepareStage(
        items=items,
        images_root=str(images),
        audio_dir=str(audio_dir) if audio_dir is not None else None,
        sources=dict(sources or {}),
        release_audio=dataset if release_audio else None,
        split=split,
        release_splits=data.release_splits(dataset) if not Path(dataset).is_file() else ["train"],
        cache_dir=cache_dir,
        **kwargs,
    )
