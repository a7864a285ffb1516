"""Sharded, atomic, resumable table IO for a stage's output folder.

Layout of one stage folder::

    <stage_dir>/_stage.json            stage name, parameters and their fingerprint, shard count
    <stage_dir>/<table>/NNNNN.parquet  one file per table per shard (table "" = the folder itself)
    <stage_dir>/<array>/NNNNN.npy      optional arrays aligned with a table (e.g. embeddings)
    <stage_dir>/_stats/NNNNN.json      written last: its presence marks shard NNNNN complete
    <stage_dir>/_leases/NNNNN.json     who works on shard NNNNN right now (see `leases`)
    <stage_dir>/_finalized.json        the shards the last finalize saw, and its facts

Every file is written under a temporary name and renamed, so a reader never sees half a file, and
a run killed at any point leaves at most the shards in flight incomplete (they are redone).
Readers only look at shards whose stats exist, so a partial shard can never leak rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import schema as schema_mod
from .errors import ConcurrentRunError, StageMismatchError
from .leases import LEASE_DIR, held_lock, live_leases

STAGE_FILE = "_stage.json"
STATS_DIR = "_stats"
FINALIZED_FILE = "_finalized.json"  # which complete shards the last finalize saw, and its facts


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


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """`with atomic_output(p) as tmp:` write `tmp` with any library (faiss, torch); renamed to `p` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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

    def prepare(
        self,
        stage: str,
        params: Mapping[str, Any],
        num_shards: int,
        *,
        overwrite: bool = False,
        argv: Sequence[str] | None = None,
        roots: Mapping[str, str] | None = None,
    ) -> str:
        """Claim the folder for these parameters, or refuse to mix with shards made otherwise.

        Returns the folder's generation token (its fingerprint), so a process whose stage was
        cleared or re-fingerprinted under it notices before its next write (`check_generation`);
        a folder cleared and restarted with the same parameters receives the same bytes either way.
        Runs under a lock beside the folder, so processes starting together agree on one manifest.
        A folder without one complete shard is replaced without `--overwrite`: a failed start (a
        model that did not load) is no work to protect. `roots` (where this run found its inputs) is
        recorded for humans outside the fingerprint, and refreshed when the data moved.
        """
        fp = fingerprint({"stage": stage, "params": params, "num_shards": num_shards})
        with held_lock(self._lock_path, f"preparing {stage}"):
            old = self.manifest()
            has_work = bool(self.complete_shards())
            if old is None and has_work:
                if not overwrite:
                    raise StageMismatchError(
                        f"{self.path} holds '{stage}' shards but no {STAGE_FILE} to say how they were made; "
                        "rerun with --overwrite to start over"
                    )
                self.clear()
            elif old is not None and old.get("fingerprint") != fp:
                if has_work and not overwrite:
                    changed = sorted(
                        k
                        for k in set(old.get("params", {})) | set(params)
                        if old.get("params", {}).get(k) != params.get(k)
                    )
                    if old.get("num_shards") != num_shards:
                        changed.append("shard plan")
                    raise StageMismatchError(
                        f"{self.path} holds '{stage}' shards made with other parameters "
                        f"(changed: {', '.join(changed) or 'unknown'}); rerun with --overwrite to start over"
                    )
                self.clear()
                old = None
            as_stored = json.loads(json.dumps(dict(params), sort_keys=True, default=str))
            if old is not None and old.get("params") == as_stored and old.get("roots") == (roots or None):
                return fp
            manifest: dict[str, Any] = {
                "stage": stage,
                "fingerprint": fp,
                "params": dict(params),
                "num_shards": num_shards,
            }
            recorded = (old or {}).get("argv", list(argv) if argv is not None else None)
            if recorded is not None:
                manifest["argv"] = recorded
            if roots:
                manifest["roots"] = dict(roots)
            atomic_write_json(self.manifest_path, manifest)
            return fp

    @property
    def _lock_path(self) -> Path:
        """The lock beside the folder that `prepare` and `discard_if_unstarted` hold."""
        return self.path.with_name(f".{self.path.name}.lock")

    def clear(self) -> None:
        """Remove the folder; renamed away first so a kill mid-delete never leaves stale shards behind.

        Refused while another process holds a live lease in it: its shards would land in the new folder.
        """
        if not self.path.exists():
            return
        busy = live_leases(self.path)
        if busy:
            raise ConcurrentRunError(
                f"{self.path} is being worked on by {busy[0].describe()}: "
                "stop that run or let it finish before starting over"
            )
        doomed = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.deleting")
        os.replace(self.path, doomed)
        shutil.rmtree(doomed)

    def discard_if_unstarted(self, generation: str) -> bool:
        """Remove the folder a run of this generation claimed but never completed one shard in.

        A start that failed (a model id that does not load) must not leave a folder that later
        commands count as unfinished work. Kept when any shard is complete or anyone holds a lease.
        """
        with held_lock(self._lock_path, "discarding an unstarted stage"):
            if self.generation() != generation or self.complete_shards() or live_leases(self.path):
                return False
            self.clear()
            return True

    def generation(self) -> str | None:
        """The token writers check: the fingerprint in `_stage.json` (None while there is none)."""
        m = self.manifest()
        return None if m is None else m.get("fingerprint")

    def check_generation(self, expected: str | None) -> None:
        """Stop before writing into a folder that was cleared or restarted since this run claimed it."""
        if expected is None:
            return
        try:
            current = self.generation()
        except json.JSONDecodeError:
            current = None
        if current != expected:
            raise ConcurrentRunError(
                f"{self.path} was cleared or restarted with other parameters by another process while this "
                "run worked in it; this run stopped without writing there"
            )

    # --- finalize bookkeeping ----------------------------------------------------------------
    @property
    def lease_dir(self) -> Path:
        return self.path / LEASE_DIR

    def finalized(self, key: str) -> dict[str, Any] | None:
        """The facts of a finalize already run for exactly these complete shards (`key`), else None."""
        try:
            done = json.loads((self.path / FINALIZED_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return done.get("facts", {}) if done.get("key") == key else None

    def mark_finalized(self, key: str, facts: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / FINALIZED_FILE, {"key": key, "facts": dict(facts)})

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
        *,
        generation: str | None = None,
    ) -> None:
        """Write every table and array of a shard, then its stats (the completion marker).

        With `generation`, each write first checks that the folder is still the one this run
        claimed, so a run never writes into a folder that `--overwrite` restarted under it.
        """
        for name, tbl in tables.items():
            self.check_generation(generation)
            atomic_write_table(self.table_path(name, index), tbl)
        for name, arr in (arrays or {}).items():
            self.check_generation(generation)
            atomic_write_array(self.array_path(name, index), arr)
        self.check_generation(generation)
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
            parts = [schema_mod.conform(t, schema) for t in parts]  # older tables lack newer nullable columns
        return pa.concat_tables(parts)

    def read_array(self, name: str) -> np.ndarray:
        parts = [np.load(self.array_path(name, i)) for i in self.complete_shards() if self.array_path(name, i).exists()]
        if not parts:
            raise FileNotFoundError(f"no complete shards of array '{name}' in {self.path}")
        return np.concatenate(parts)
