"""Retrieve fixtures: a pool built once with the tiny CLAP through `sonify pool`, and concepts
tables written directly (the extract stage is not needed to test retrieval)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from sonify_toolkit import schema
from sonify_toolkit.cli import app
from sonify_toolkit.shards import StageDir

TEXTS = [
    ("dog", "a dog barking in the distance"),
    ("rain", "rain falling on a tin roof"),
    ("piano", "a piano playing a slow melody"),
    ("birds", "birds singing in the morning"),
    ("car", "a car engine starting"),
    ("crowd", "people talking in a crowded room"),
    ("siren", "sound of a siren"),
    ("waves", "waves crashing on the beach"),
]


def sonify(*args: Any, expect: int = 0) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == expect, result.output
    return result


def concept_row(image_id: str, vlm: str, concepts: Sequence[tuple[str, str]], **kw: Any) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "image_path": f"images/{image_id}.jpg",
        "vlm": vlm,
        "caption": f"a photo of {image_id}",
        "concepts": [{"name": n, "description": d} for n, d in concepts],
        "keep": True,
        **kw,
    }


def write_concepts(work: Path, vlm_dir: str, shards: Sequence[Sequence[dict[str, Any]]]) -> None:
    """Concepts tables as the extract stage leaves them: a stage folder, shard tables, completion markers."""
    sd = StageDir(work / "concepts" / vlm_dir)
    sd.prepare("extract", {"vlm": vlm_dir}, len(shards), overwrite=True)
    for i, rows in enumerate(shards):
        sd.write_shard(i, {"": schema.table(list(rows), schema.CONCEPTS)}, {"items": len(rows)})


def sample_concepts(n_images: int = 12) -> list[dict[str, Any]]:
    """Images with 1-3 concepts each (texts repeat across images), plus a dropped, a failed and an empty one."""
    rows = [
        concept_row(f"img{i:03d}", "tiny/vlm-a", [TEXTS[(i + j) % len(TEXTS)] for j in range(1 + i % 3)])
        for i in range(n_images)
    ]
    rows.append(concept_row("logo01", "tiny/vlm-a", [], keep=False, drop_reason="non_sonic_keyword"))
    rows.append(concept_row("broken", "tiny/vlm-a", [], error="unparsable_response"))
    rows.append(concept_row("quiet", "tiny/vlm-a", []))
    return rows


@pytest.fixture(scope="session")
def pool_work(tmp_path_factory: pytest.TempPathFactory, tiny_clap: Path, sample_sounds: Path) -> Path:
    """A work directory holding a finished pool embedded with the tiny CLAP (built once)."""
    work = tmp_path_factory.mktemp("pool_work")
    sonify("pool", f"sounds={sample_sounds}", "--clap", tiny_clap, "-w", work, "--device", "cpu", "-q")
    return work


@pytest.fixture
def work(tmp_path: Path, pool_work: Path) -> Path:
    """A fresh work directory with a copy of the pool."""
    dst = tmp_path / "work"
    shutil.copytree(pool_work / "pool", dst / "pool")
    return dst


@pytest.fixture
def read_pairs() -> Callable[[Path], list[dict[str, Any]]]:
    def read(work: Path) -> list[dict[str, Any]]:
        sd = StageDir(work / "pairs")
        return [r for i in sd.complete_shards() for r in pq.read_table(sd.table_path("", i)).to_pylist()]

    return read
