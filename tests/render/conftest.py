"""Render fixtures: a synthetic pool with known loudness and pairs tables built directly from it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from sonify_toolkit import audio, schema
from sonify_toolkit.fileio import sha256_file

SR_FILES = {  # relative path -> (sample rate, channels, seconds, kind)
    "tones/a440.wav": (44_100, 2, 11.0, "sine"),
    "tones/b1k.flac": (16_000, 1, 7.0, "sine"),
    "noise/pink.flac": (22_050, 1, 12.0, "noise"),
    "noise/white.wav": (48_000, 1, 6.0, "noise"),
}


def _synth(kind: str, sr: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    if kind == "sine":
        return 0.3 * np.sin(2 * np.pi * rng.uniform(300, 1200) * t)
    return 0.1 * np.convolve(rng.standard_normal(t.size), np.ones(4) / 4, mode="same")


def write_collection(root: Path, seed: int) -> dict[str, str]:
    """Write the files of SR_FILES under root (deterministic); returns path -> sha256."""
    shas = {}
    for i, (rel, (sr, ch, seconds, kind)) in enumerate(sorted(SR_FILES.items())):
        x = _synth(kind, sr, seconds, seed * 100 + i)
        data = np.stack([x, 0.8 * x], axis=1) if ch == 2 else x
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, data.astype(np.float32), sr, subtype="PCM_16")
        shas[rel] = sha256_file(root / rel)
    return shas


@pytest.fixture(scope="session")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two collections, `alpha` and `beta`, plus a file outside both (`outside.wav` beside them)."""
    base = tmp_path_factory.mktemp("render_pool")
    out = {}
    for seed, name in enumerate(("alpha", "beta")):
        write_collection(base / name, seed + 1)
        out[name] = str(base / name)
    sf.write(base / "outside.wav", _synth("sine", 16_000, 6.0, 99).astype(np.float32), 16_000)
    os.symlink(base / "outside.wav", base / "alpha" / "link.wav")  # a link inside alpha that leaves it
    return out


@pytest.fixture(scope="session")
def make_source(roots: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """A PAIR_SOURCE dict for (collection, path, segment, target) with clip_lufs measured as the pool does."""
    memo: dict[tuple[str, str, int], tuple[float, str]] = {}

    def make(collection: str, path: str, segment: int = 0, target: float = -23.0, **override: Any) -> dict[str, Any]:
        key = (collection, path, segment)
        if key not in memo:
            full = Path(roots[collection]) / path
            win, _ = audio.window(audio.load_standard(full), segment)
            memo[key] = (audio.loudness(win), sha256_file(full))
        lufs, sha = memo[key]
        row = {
            "concept": path.split("/")[-1],
            "description": "",
            "clip_id": f"{collection}/{path}#{segment}",
            "source": collection,
            "path": path,
            "segment": segment,
            "source_sha256": sha,
            "similarity": 0.5,
            "score": 0.7,
            "threshold": 0.6,
            "clip_lufs": lufs,
            "target_lufs": target,
        }
        return row | override

    return make


def pair(pair_id: str, sources: list[dict[str, Any]]) -> dict[str, Any]:
    image_id, _, vlm = pair_id.partition("|")
    return {"pair_id": pair_id, "image_id": image_id, "image_source": "test", "vlm": vlm or "v", "caption": "c"} | {
        "seed": 0,
        "sources": sources,
    }


def write_pairs(folder: Path, rows: list[dict[str, Any]], per_file: int = 4) -> Path:
    """A pairs folder `folder/NNNNN.parquet` (as retrieve writes, without its stage manifest)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(range(0, len(rows), per_file)):
        pq.write_table(schema.table(rows[s : s + per_file], schema.PAIRS), folder / f"{i:05d}.parquet")
    return folder


@pytest.fixture(scope="session")
def good_pairs(make_source: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    """Ten pairs of one to three sources with heavy file reuse, all renderable."""
    files = [("alpha", p) for p in sorted(SR_FILES)] + [("beta", p) for p in sorted(SR_FILES)]
    rng = np.random.default_rng(0)
    rows = []
    for k in range(10):
        picks = rng.choice(len(files), size=1 + k % 3, replace=False)
        sources = []
        for j in picks:
            coll, path = files[j]
            segs = audio.num_segments(int(SR_FILES[path][2] * 16_000))
            sources.append(make_source(coll, path, int(rng.integers(segs)), float(rng.uniform(-26, -22))))
        rows.append(pair(f"img{k:03d}/x y|vlm-{k % 2}", sources))
    return rows


def read_dir_bytes(folder: Path, pattern: str) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.glob(pattern)) if p.is_file()}


def table_of(folder: Path, name: str) -> pa.Table:
    from sonify_toolkit.shards import StageDir

    return StageDir(folder).read_table(name)
