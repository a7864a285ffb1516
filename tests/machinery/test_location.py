"""Location independence: a work directory moved together with its data, the data now under other
roots, resumes without --overwrite and redoes nothing; `_stage.json` records where the inputs are now."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sonify_toolkit.errors import EXIT_ITEM_ERRORS
from sonify_toolkit.pool_files import pool_dir
from sonify_toolkit.shards import StageDir
from tests.extract.conftest import FakeServer, color_images
from tests.pool.cli_helpers import shard_files, sonify


def run_pool(site: Path) -> str:
    args = ["pool", f"syn={site / 'sounds'}", "-w", site / "w", "--no-embed", "--shard-size", "3", "-q"]
    return sonify(*args, expect=EXIT_ITEM_ERRORS).stdout


def run_extract(site: Path, server: FakeServer) -> str:
    engine = ["--engine", "openai", "--base-url", server.url, "--vlm", "org/vlm", "--concurrency", "2"]
    return sonify("extract", site / "pics", "-w", site / "w", *engine, "--shard-size", "2", "-q").stdout


def test_work_directory_and_data_moved_together_resume_without_overwrite(
    corpus: Path, vlm_server: FakeServer, tmp_path: Path
) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    shutil.copytree(corpus, here / "sounds")
    color_images(here / "pics", [f"{c}_{i}" for i, c in enumerate(["red", "blue", "green"] * 2)])
    run_pool(here)
    run_extract(here, vlm_server)
    asked = vlm_server.count()
    before = shard_files(here / "w")
    concepts = StageDir(here / "w" / "concepts" / "org--vlm")
    assert json.loads(concepts.manifest_path.read_text())["roots"] == {"pics": str((here / "pics").resolve())}

    shutil.move(here, there)  # the work directory and both data roots: the old paths no longer exist
    assert "(0 done now, 5 skipped" in run_pool(there)  # no "changed:", no --overwrite
    assert "(0 done now, 3 skipped" in run_extract(there, vlm_server)
    assert vlm_server.count() == asked  # no image was asked again
    assert shard_files(there / "w") == before

    stage = json.loads((pool_dir(there / "w") / "_stage.json").read_text())
    assert stage["roots"] == {"syn": str((there / "sounds").resolve())}  # recorded for humans, not fingerprinted
    manifest = json.loads((pool_dir(there / "w") / "manifest.json").read_text())
    assert manifest["segments"]["roots"] == {"syn": str((there / "sounds").resolve())}  # refreshed by finalize
    moved = StageDir(there / "w" / "concepts" / "org--vlm").manifest()
    assert moved is not None and moved["roots"] == {"pics": str((there / "pics").resolve())}
    assert str(here) not in json.dumps(moved["params"])
