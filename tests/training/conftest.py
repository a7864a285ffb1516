"""Fixtures of the training recipe: tiny PixArt/VAE/AST/CLIP, a tiny release with images and rendered audio."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from sonify_toolkit import audio, schema

N_PAIRS = 5  # pair 4's image is missing locally -> an error row


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is ~20x faster than two fighting others."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_pixart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny.pixart import build_tiny_pixart

    return build_tiny_pixart(tmp_path_factory.mktemp("tiny_pixart"))


@pytest.fixture(scope="session")
def tiny_ast(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny.ast import build_tiny_ast

    return build_tiny_ast(tmp_path_factory.mktemp("tiny_ast"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny.clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


def tone(freq: float, seconds: float = 5.0, sr: int = 16_000, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    if noise:
        x += noise * np.random.default_rng(seed).standard_normal(t.shape)
    return x.astype(np.float32)


def _pair(i: int, sha: str = "", lufs: float = -30.0) -> dict:
    src = {
        "concept": "tone",
        "clip_id": f"x/{i}.wav#0",
        "source": "x",
        "path": f"{i}.wav",
        "segment": 0,
        "source_sha256": sha,
        "clip_lufs": lufs,
        "target_lufs": -23.0,
    }
    return {
        "pair_id": f"sa_{i}|tiny-vlm",
        "image_id": f"sa_{i}",
        "image_source": "sa1b",
        "vlm": "tiny-vlm",
        "caption": f"scene {i}",
        "seed": 0,
        "sources": [src],
    }


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A release folder, an SA-1B-like image root (loose files + one tar; one image missing), a render
    folder, and the sound collection "x" the pairs name (its file for pair 1 missing)."""
    from sonify_toolkit.fileio import sha256_bytes

    root = tmp_path_factory.mktemp("release")
    collection = root / "collection"
    collection.mkdir()
    pairs = []
    for i in range(N_PAIRS):
        wave = tone(220.0 * (i + 1), noise=0.05, seed=i)
        data = audio.encode(wave, fmt="wav")
        if i != 1:
            (collection / f"{i}.wav").write_bytes(data)
        pairs.append(_pair(i, sha256_bytes(data), audio.loudness(audio.load_standard(data))))
    rel = root / "release"
    (rel / "data").mkdir(parents=True)
    pq.write_table(schema.table(pairs, schema.PAIRS), rel / "data" / "train-00000.parquet")

    images = root / "sa1b"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(N_PAIRS - 1):
        arr = np.zeros((40, 48, 3), np.uint8)
        arr[..., i % 3] = 60 * (i + 1)
        arr += rng.integers(0, 30, arr.shape, dtype=np.uint8)
        im = Image.fromarray(arr)
        if i == 3:  # one image only inside a tar shard, as SA-1B ships
            im.save(root / "sa_3.jpg")
            with tarfile.open(images / "sa_000001.tar", "w") as tar:
                tar.add(root / "sa_3.jpg", arcname="sa_3.jpg")
        else:
            im.save(images / "sub" / f"sa_{i}.jpg")

    rendered = root / "render"
    (rendered / "audio").mkdir(parents=True)
    rows = []
    for i in range(N_PAIRS):
        path = f"audio/{i:05d}.flac"
        (rendered / path).write_bytes(audio.encode(tone(220.0 * (i + 1), noise=0.05, seed=i)))
        rows.append({"pair_id": f"sa_{i}|tiny-vlm", "path": path, "status": "ok", "lufs": -23.0, "peak": 0.4})
    (rendered / "index").mkdir()
    pq.write_table(schema.table(rows, schema.RENDERED), rendered / "index" / "00000.parquet")
    return {"release": rel, "images": images, "audio": rendered, "collection": collection}


RELEASE_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: validation
    path: data/validation-*
- config_name: rendered_audio
  data_files:
  - split: train
    path: rendered/train-*
  - split: validation
    path: rendered/validation-*
---
# a two-split sonify release (what `sonify publish --holdout` writes)
"""
TRAIN_IDS, VALIDATION_IDS = (0, 1, 2), (3, 4)  # sa_3 and sa_4 are the held-out images


@pytest.fixture(scope="session")
def split_release(tmp_path_factory: pytest.TempPathFactory, release: dict[str, Path]) -> Path:
    """A published release folder with `train` and `validation` splits in both configs, the card listing
    them. The rendered_audio config lacks pair 1's mix (an audio_missing row); pair 4's image is missing."""
    from sonify_toolkit.settings import SAMPLE_RATE

    folder = tmp_path_factory.mktemp("split_release")
    pairs = pq.read_table(release["release"] / "data" / "train-00000.parquet")
    index = {pid: i for i, pid in enumerate(pairs.column("pair_id").to_pylist())}
    rendered_schema = schema.rendered_features(SAMPLE_RATE).arrow_schema
    for split, ids in (("train", TRAIN_IDS), ("validation", VALIDATION_IDS)):
        (folder / "data").mkdir(exist_ok=True)
        rows = pairs.take([index[f"sa_{i}|tiny-vlm"] for i in ids])
        pq.write_table(rows, folder / "data" / f"{split}-00000-of-00001.parquet")
        mixes = [
            {
                "pair_id": f"sa_{i}|tiny-vlm",
                "audio": {"bytes": audio.encode(tone(220.0 * (i + 1), noise=0.05, seed=i)), "path": f"{i:05d}.flac"},
                "lufs": -23.0,
                "peak": 0.4,
                "mix_gain_db": 0.0,
            }
            for i in ids
            if i != 1
        ]
        (folder / "rendered").mkdir(exist_ok=True)
        pq.write_table(
            pa.Table.from_pylist(mixes, schema=rendered_schema), folder / "rendered" / f"{split}-00000-of-00001.parquet"
        )
    (folder / "README.md").write_text(RELEASE_CARD)
    return folder


def tiny_prepare_stage(release: dict[str, Path], tiny_pixart: Path, tiny_ast: Path, shard_size: int = 3):
    """The prepare stage of the `features` fixture: rendered audio, tiny models, 32 px, batches of 2."""
    from training_recipe.features import build_stage

    return build_stage(
        str(release["release"]),
        release["images"],
        audio_dir=release["audio"],
        base_model=str(tiny_pixart),
        ast_model=str(tiny_ast),
        resolution=32,
        device="cpu",
        batch_size=2,
        shard_size=shard_size,
    )


@pytest.fixture(scope="session")
def features(tmp_path_factory: pytest.TempPathFactory, release: dict[str, Path], tiny_pixart: Path, tiny_ast: Path):
    """The prepare output for the tiny release (4 encoded pairs, 1 error row)."""
    from sonify_toolkit.runner import run_stage

    out = tmp_path_factory.mktemp("features")
    summary = run_stage(tiny_prepare_stage(release, tiny_pixart, tiny_ast), out, show_progress=False)
    return out, summary


@pytest.fixture(scope="session")
def validation_features(
    tmp_path_factory: pytest.TempPathFactory, split_release: Path, release: dict[str, Path], tiny_pixart, tiny_ast
) -> Path:
    """The prepare output of the two-split release's validation split (pair 3; pair 4's image is missing)."""
    from sonify_toolkit.runner import run_stage
    from training_recipe.features import build_stage

    out = tmp_path_factory.mktemp("validation_features")
    stage = build_stage(
        str(split_release),
        release["images"],
        release_audio=True,
        split="validation",
        cache_dir=str(out.parent / f"{out.name}-hf-cache"),
        base_model=str(tiny_pixart),
        ast_model=str(tiny_ast),
        resolution=32,
        device="cpu",
        batch_size=2,
    )
    assert run_stage(stage, out, show_progress=False).finalized
    return out


@pytest.fixture(scope="session")
def tiny_wav2clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny.clip import build_tiny_wav2clip

    return build_tiny_wav2clip(tmp_path_factory.mktemp("tiny_wav2clip"))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, features, tiny_pixart: Path) -> Path:
    """A tiny trained checkpoint (a few steps) for generate."""
    from training_recipe.config import TrainConfig
    from training_recipe.train import train

    out, _ = features
    tiny = Path(__file__).parents[2] / "training_recipe" / "configs" / "tiny.yaml"
    run = tmp_path_factory.mktemp("run")
    cfg = TrainConfig.from_yaml(tiny, features=str(out), base_model=str(tiny_pixart), output_dir=str(run), max_steps=3)
    result = train(cfg)
    assert result.last_checkpoint is not None
    return result.last_checkpoint


@pytest.fixture(scope="session")
def clap_pool(tmp_path_factory: pytest.TempPathFactory, tiny_clap: Path, sample_sounds: Path) -> Path:
    """A work directory with a finished pool embedded by the tiny CLAP, built with `sonify pool`."""
    from typer.testing import CliRunner

    from sonify_toolkit.cli import app

    work = tmp_path_factory.mktemp("clap_pool")
    args = ["pool", f"sounds={sample_sounds}", "--clap", str(tiny_clap), "-w", str(work), "--device", "cpu", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return work
