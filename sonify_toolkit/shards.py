"""Sharded, atomic, resumable table IO for a stage's output folder.

Layout of one stage folder::

    <stage_dir>/_stage.json            stage name, parameters and their fingerprint, shard count
    <stage_dir>/<table>/NNNNN.parquet  one file per table per shard (table "" = the folder itself)
    <stage_dir>/<array>/NNNNN.npy      optional arrays aligned with a table (e.g. embeddings)
    <stage_dir>/_stats/NNNNN.json      written last: its presence marks shard NNNNN complete

Every file is written under a temporary name and renamed, so a reader never sees half a file, and
a run killed at any point leaves at most the shards in flight incomplete (they are redone).
Readers only look at shards whose stats exist, so a partial shard can never leak rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import StageMismatchError

STAGE_FILE = "_stage.json"
STATS_DIR = "_stats"


def shard_name(index: int) -> str:
    return f"{index:05d}"


def fingerprint(obj: Any) -> str:
    """A stable short hash of JSON-able parameters (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Temporary name, then rename. `fsync=False` for many small files whose shard marker comes later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_write_table(path: Path, table: pa.Table, **options: Any) -> None:
    """A zstd parquet file under a temporary name, then renamed; `options` go to `pq.write_table`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    pq.write_table(table, tmp, compression="zstd", **options)
    os.replace(tmp, path)


def atomic_write_array(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)


class StageDir:
    """One stage's output folder: shard files, completion markers and the parameter manifest."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    # --- manifest and fingerprint ------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / STAGE_FILE

    def manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None

    def prepare(self, stage: str, params: Mapping[str, Any], num_shards: int, *, overwrite: bool = False) -> None:
        """Claim the folder for these parameters, or refuse to mix with shards made otherwise."""
        fp = fingerprint({"stage": stage, "params": params, "num_shards": num_shards})
        old = self.manifest()
        if old is None and self.complete_shards():
            if not overwrite:
                raise StageMismatchError(
                    f"{self.path} holds '{stage}' shards but no {STAGE_FILE} to say how they were made; "
                    "rerun with --overwrite to start over"
                )
            self.clear()
        if old is not None and old.get("fingerprint") != fp:
            if not overwrite:
                changed = sorted(
                    k for k in set(old.get("params", {})) | set(params) if old.get("params", {}).get(k) != params.get(k)
                )
                if old.get("num_shards") != num_shards:
                    changed.append("shard plan")
                raise StageMismatchError(
                    f"{self.path} holds '{stage}' shards made with other parameters "
                    f"(changed: {', '.join(changed) or 'unknown'}); rerun with --overwrite to start over"
                )
            self.clear()
        if old is None or old.get("fingerprint") != fp:
            atomic_write_json(
                self.manifest_path,
                {"stage": stage, "fingerprint": fp, "params": dict(params), "num_shards": num_shards},
            )

    def clear(self) -> None:
        """Remove the folder; renamed away first so a kill mid-delete never leaves stale shards behind."""
        if self.path.exists():
            doomed = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.deleting")
            os.replace(self.path, doomed)
            shutil.rmtree(doomed)

    # --- completion ----------------------------------------------------------------------------
    def stats_path(self, index: int) -> Path:
        return self.path / STATS_DIR / f"{shard_name(index)}.json"

    def is_complete(self, index: int) -> bool:
        return self.stats_path(index).exists()

    def complete_shards(self) -> list[int]:
        d = self.path / STATS_DIR
        if not d.is_dir():
            return []
        return sorted(int(p.stem) for p in d.glob("*.json") if p.stem.isdigit())

    def all_complete(self) -> bool:
        m = self.manifest()
        return m is not None and len(self.complete_shards()) == m["num_shards"]

    def stats(self) -> list[dict[str, Any]]:
        return [json.loads(self.stats_path(i).read_text()) for i in self.complete_shards()]

    # --- writing ------------------------------------------------------------------------------
    def table_path(self, table: str, index: int) -> Path:
        return self.path / table / f"{shard_name(index)}.parquet"

    def array_path(self, name: str, index: int) -> Path:
        return self.path / name / f"{shard_name(index)}.npy"

    def write_shard(
        self,
        index: int,
        tables: Mapping[str, pa.Table],
        stats: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Write every table and array of a shard, then its stats (the completion marker)."""
        for name, tbl in tables.items():
            atomic_write_table(self.table_path(name, index), tbl)
        for name, arr in (arrays or {}).items():
            atomic_write_array(self.array_path(name, index), arr)
        atomic_write_json(self.stats_path(index), dict(stats))

    # --- reading ------------------------------------------------------------------------------
    def iter_tables(self, table: str = "", shards: list[int] | None = None) -> Iterator[tuple[int, pa.Table]]:
        """Complete shards' tables in shard order, one at a time (memory stays one shard)."""
        for i in self.complete_shards() if shards is None else shards:
            path = self.table_path(table, i)
            if path.exists():
                yield i, pq.read_table(path)

    def read_table(self, table: str = "", schema: pa.Schema | None = None) -> pa.Table:
        """All complete shards of a table, concatenated in shard order."""
        parts = [t for _, t in self.iter_tables(table)]
        if not parts:
            if schema is None:
                raise FileNotFoundError(f"no complete shards of '{table or self.path.name}' in {self.path}")
            return schema.empty_table()
        if schema is not None:
            parts = [t.cast(schema) for t in parts]
        return pa.concat_tables(parts)

    def read_array(self, name: str) -> np.ndarray:
        parts = [np.load(self.array_path(name, i)) for i in self.complete_shards() if self.array_path(name, i).exists()]
        if not parts:
            raise FileNotFoundError(f"no complete shards of array '{name}' in {self.path}")
        return np.concatenate(parts)
