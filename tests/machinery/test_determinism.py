"""Same inputs, same bytes: whatever the shard size, the machine split, the worker count or SLURM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonify_toolkit.errors import EXIT_ITEM_ERRORS
from sonify_toolkit.pool_files import pool_dir
from sonify_toolkit.shards import StageDir
from tests.pool.cli_helpers import embeddings, errors, pool_args, segments, shard_files, sonify


@pytest.fixture(scope="module")
def reference(corpus: Path, tiny_clap: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run, one worker, shards of 3 files, with embeddings."""
    work = tmp_path_factory.mktemp("reference")
    sonify(*pool_args(corpus, work, tiny_clap, "3"), "-q", expect=EXIT_ITEM_ERRORS)
    return work


def test_shard_size_changes_files_not_content(reference: Path, corpus: Path, tiny_clap: Path, tmp_path: Path) -> None:
    for size in ("2", "100"):
        work = tmp_path / size
        sonify(*pool_args(corpus, work, tiny_clap, size), "-q", expect=EXIT_ITEM_ERRORS)
        files = sum(st["items"] for st in StageDir(pool_dir(reference)).stats())
        assert len(StageDir(pool_dir(work)).complete_shards()) == (-(-files // 2) if size == "2" else 1)
        assert segments(work).equals(segments(reference))
        assert errors(work).equals(errors(reference))
        np.testing.assert_array_equal(embeddings(work), embeddings(reference))


def test_three_machines_make_the_single_run(reference: Path, corpus: Path, tiny_clap: Path, tmp_path: Path) -> None:
    args = pool_args(corpus, tmp_path, tiny_clap, "3")
    for i in range(3):
        out = sonify(*args, "--num-shards", "3", "--shard-index", str(i), "-q", expect=EXIT_ITEM_ERRORS).stdout
        assert ("not every shard is complete" in out) == (i < 2)
    assert shard_files(tmp_path) == shard_files(reference)


def test_slurm_array_variables_pick_the_share(reference: Path, corpus: Path, tmp_path: Path) -> None:
    args = ["pool", f"syn={corpus}", "--workdir", tmp_path, "--no-embed", "--shard-size", "3", "-q"]
    sonify(*args, env={"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}, expect=EXIT_ITEM_ERRORS)
    assert StageDir(pool_dir(tmp_path)).complete_shards() == [1, 3]
    sonify(
        *args,
        env={"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "6"},
        expect=EXIT_ITEM_ERRORS,
    )
    assert StageDir(pool_dir(tmp_path)).complete_shards() == [0, 1, 2, 3, 4]
    assert segments(tmp_path).equals(segments(reference))


@pytest.mark.slow
def test_two_workers_write_the_same_bytes(reference: Path, corpus: Path, tiny_clap: Path, tmp_path: Path) -> None:
    sonify(*pool_args(corpus, tmp_path, tiny_clap, "3"), "--workers", "2", "-q", expect=EXIT_ITEM_ERRORS)
    assert shard_files(tmp_path) == shard_files(reference)
