"""Atomic shard files, completion markers, fingerprints and the shard plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sonify_toolkit import schema
from sonify_toolkit.errors import InputError
from sonify_toolkit.executors import ShardSelection
from sonify_toolkit.shards import StageDir, StageMismatchError, atomic_write_json, fingerprint
from sonify_toolkit.stage import ErrorLog, Shard, chunk


def err_table(*items: str) -> pa.Table:
    log = ErrorLog()
    for item in items:
        log.add(item, "bad", "detail")
    return log.table()


def test_fingerprint_ignores_key_order_and_sees_values() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_atomic_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    sd = StageDir(tmp_path / "stage")
    sd.write_shard(3, {"errors": err_table("x")}, {"items": 1}, {"emb": np.ones((1, 4), np.float32)})
    atomic_write_json(tmp_path / "stage" / "m.json", {"k": 1})
    names = sorted(p.relative_to(sd.path).as_posix() for p in sd.path.rglob("*") if p.is_file())
    assert names == ["_stats/00003.json", "emb/00003.npy", "errors/00003.parquet", "m.json"]
    assert sd.complete_shards() == [3] and json.loads(sd.stats_path(3).read_text()) == {"items": 1}


def test_only_shards_with_stats_are_read(tmp_path: Path) -> None:
    sd = StageDir(tmp_path)
    sd.write_shard(0, {"errors": err_table("a")}, {"items": 1})
    sd.write_shard(1, {"errors": err_table("b")}, {"items": 1})
    sd.stats_path(1).unlink()  # shard 1 was written but never marked complete (killed before its stats)
    (sd.path / "_stats" / ".00002.json.abc.tmp").write_text("{")  # a stats file killed mid-write
    assert sd.complete_shards() == [0]
    assert sd.read_table("errors", schema.ERRORS).column("item").to_pylist() == ["a"]
    assert StageDir(tmp_path / "none").read_table("errors", schema.ERRORS).num_rows == 0
    with pytest.raises(FileNotFoundError):
        StageDir(tmp_path / "none").read_table("errors")


def test_prepare_refuses_other_parameters_until_overwrite(tmp_path: Path) -> None:
    sd = StageDir(tmp_path / "s")
    sd.prepare("pool", {"rate": 16000, "labels": "a"}, 2)
    sd.write_shard(0, {"errors": err_table("a")}, {"items": 1})
    sd.prepare("pool", {"labels": "a", "rate": 16000}, 2)  # same parameters: shards are kept
    assert sd.complete_shards() == [0]
    with pytest.raises(StageMismatchError, match=r"changed: labels\)"):
        sd.prepare("pool", {"rate": 16000, "labels": "b"}, 2)
    with pytest.raises(StageMismatchError, match="shard plan"):
        sd.prepare("pool", {"rate": 16000, "labels": "a"}, 3)
    assert sd.complete_shards() == [0]  # refusing touched nothing
    sd.prepare("pool", {"rate": 16000, "labels": "b"}, 2, overwrite=True)
    assert sd.complete_shards() == [] and sd.manifest()["params"]["labels"] == "b"


def test_chunk_and_selection_partition_the_plan() -> None:
    shards = chunk(list(range(10)), 3)
    assert [s.items for s in shards] == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    parts = [ShardSelection(3, i).take(shards) for i in range(3)]
    assert sorted(s.index for p in parts for s in p) == [0, 1, 2, 3]
    assert [s.index for s in parts[0]] == [0, 3]
    with pytest.raises(InputError, match="positive"):
        chunk([1], 0)
    with pytest.raises(InputError, match="shard-index"):
        ShardSelection(2, 2)
    assert Shard(0, ("a",)) == Shard(0, ("a",))


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ((None, None), {}, (1, 0)),
        ((4, 2), {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, (4, 2)),  # flags win
        ((None, None), {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, (3, 1)),
        ((None, None), {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "4"}, (4, 2)),
    ],
)
def test_selection_from_flags_or_slurm(flags, env, expected) -> None:
    sel = ShardSelection.resolve(*flags, env=env)
    assert (sel.num_shards, sel.shard_index) == expected


def test_shards_without_a_stage_file_are_not_trusted(tmp_path: Path) -> None:
    sd = StageDir(tmp_path / "s")
    sd.write_shard(0, {"errors": err_table("a")}, {"items": 1})  # e.g. a delete killed after _stage.json went
    with pytest.raises(StageMismatchError, match=r"no _stage\.json"):
        sd.prepare("pool", {"rate": 16000}, 1)
    sd.prepare("pool", {"rate": 16000}, 1, overwrite=True)
    assert sd.complete_shards() == [] and sd.manifest()["params"] == {"rate": 16000}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # the renamed-away copy is gone
