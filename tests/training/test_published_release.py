"""The recipe on what `sonify publish --holdout` really writes: load_release and `prepare` for both splits.

The release comes from the real command over a synthetic work directory (tests/publish/synthetic.py);
what prepare should encode is worked out from the release's files with pyarrow alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from sonify_toolkit.cli import app as sonify
from sonify_toolkit.errors import EXIT_ITEM_ERRORS
from sonify_toolkit.shards import StageDir
from tests.publish.synthetic import make_workdir, pairs_table
from training_recipe import data
from training_recipe.prepare import prepare

SPLITS = ("train", "validation")


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(release folder, image root) of `sonify publish --holdout 0.5 --rendered` over a synthetic work dir."""
    root = tmp_path_factory.mktemp("published")
    work = make_workdir(root)
    out = root / "release"
    args = ["publish", "-w", str(work), "--out", str(out), "--rendered", str(work / "render"), "--holdout", "0.5"]
    result = CliRunner().invoke(sonify, args)
    assert result.exit_code == 0, result.output
    return out, root / "images"


def _split_files(release: Path, folder: str, split: str, columns: list[str]) -> dict[str, list]:
    files = sorted((release / folder).glob(f"{split}-*.parquet"))
    assert files, f"publish wrote no {folder}/{split} files"
    tables = [pq.read_table(f, columns=columns) for f in files]
    return {c: [v for t in tables for v in t.column(c).to_pylist()] for c in columns}


def test_load_release_reads_each_split_the_command_wrote(published: tuple[Path, Path], tmp_path: Path) -> None:
    release, _ = published
    assert data.release_splits(str(release)) == list(SPLITS)
    assert data.release_splits(str(release), data.RENDERED_CONFIG) == list(SPLITS)
    seen: dict[str, set[str]] = {}
    for split in SPLITS:
        table = data.load_pairs(str(release), split, cache_dir=str(tmp_path / "c"))
        written = _split_files(release, "data", split, ["pair_id", "image_id"])
        assert table.column("pair_id").to_pylist() == sorted(written["pair_id"])
        seen[split] = set(written["image_id"])
    assert seen["train"] and seen["validation"] and not seen["train"] & seen["validation"]
    everything = pairs_table(release.parent / "work")
    assert sum(len(_split_files(release, "data", s, ["pair_id"])["pair_id"]) for s in SPLITS) == everything.num_rows


@pytest.mark.parametrize("split", SPLITS)
def test_prepare_command_encodes_each_split_from_the_rendered_audio_config(
    published: tuple[Path, Path], split: str, tiny_pixart: Path, tiny_ast: Path, tmp_path: Path
) -> None:
    release, images = published
    pairs = _split_files(release, "data", split, ["pair_id", "image_id"])
    mixes = set(_split_files(release, "rendered", split, ["pair_id"])["pair_id"])
    local_images = {p.stem for p in images.glob("*.png")}  # the tar's members are named t0, t1: not found by id
    expected = sorted(
        pid
        for pid, image in zip(pairs["pair_id"], pairs["image_id"], strict=True)
        if pid in mixes and image in local_images
    )
    assert expected, "the synthetic release should leave something to encode in every split"
    out = tmp_path / "features"
    command = typer.Typer()
    command.command()(prepare)
    args = ["--dataset", str(release), "--images", str(images), "--rendered-audio", "--split", split, "--out", str(out)]
    args += ["--cache-dir", str(tmp_path / "hf"), "--base-model", str(tiny_pixart), "--ast", str(tiny_ast)]
    args += ["--resolution", "32", "--device", "cpu", "--batch-size", "4", "--quiet"]
    result = CliRunner().invoke(command, args)
    failed = len(pairs["pair_id"]) - len(expected)
    assert result.exit_code == (EXIT_ITEM_ERRORS if failed else 0), result.output
    assert "Traceback" not in result.output
    encoded = StageDir(out).read_table("")
    assert encoded.column("pair_id").to_pylist() == expected
    assert StageDir(out).read_array("audio").shape[0] == len(expected)
    errors = StageDir(out).read_table("errors")
    assert errors.num_rows == failed
    assert set(errors.column("reason").to_pylist()) <= {"image_missing", "audio_missing"}
    assert re.search(rf"\b{split}\b", (out / "features.json").read_text())
