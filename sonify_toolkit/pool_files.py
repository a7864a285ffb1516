"""Where a work directory's pool lives and how it is read back: `W/pool/`, its manifest, `load_pool`.

The pool stages write these files and retrieval, the demo and reports read them; the helpers live
here rather than in `stages/pool.py` so that a reader does not import a stage (and the audio stack)
for a path or a manifest.

The CLAP vectors are read as `PoolVectors`: one read-only memory map per embeddings shard file, never
concatenated. At 4M x 512 float32 the pool is 8 GB; every worker on a machine maps the same files, so
the kernel keeps one copy in its page cache, and a search that streams over the rows releases each
block's pages from the process once it has scored them (`blocks`), so a worker's own memory stays a
block, not the pool.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import schema
from .errors import StageMismatchError
from .leases import held_lock
from .shards import StageDir, atomic_write_json


def pool_dir(workdir: Path) -> Path:
    return Path(workdir) / "pool"


def update_manifest(workdir: Path, key: str, value: Mapping[str, Any]) -> None:
    """`pool/manifest.json` gathers what each pool stage made (segments, clap) in one place."""
    path = pool_dir(workdir) / "manifest.json"
    with held_lock(path.with_name(".manifest.json.lock"), "updating the pool manifest"):  # one read-modify-write
        manifest = json.loads(path.read_text()) if path.exists() else {}
        manifest[key] = dict(value)
        atomic_write_json(path, manifest)


class _MappedNpy:
    """One `.npy` file as a read-only memory map whose pages can be handed back to the kernel."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
            if fortran or len(shape) != 2:
                raise StageMismatchError(f"{path} is not a C-ordered 2-d array: rerun `sonify pool` with --overwrite")
            nbytes = int(np.prod(shape)) * dtype.itemsize
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if nbytes else None
        self.offset = offset
        self.array = (
            np.frombuffer(self._map, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
            if self._map is not None
            else np.empty(shape, dtype)
        )

    def release(self, start: int, stop: int) -> None:
        """Drop rows [start, stop) from this process's resident pages (the page cache keeps them for others)."""
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        row_bytes = self.array.strides[0]
        lo = (self.offset + start * row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        hi = self.offset + stop * row_bytes
        if hi > lo:
            self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


class PoolVectors:
    """The pool's CLAP vectors as one (n, dim) matrix over per-shard memory maps, read without copying.

    `blocks` streams contiguous float32 row blocks (what a search reads); `take` gathers given rows
    (what the rescoring reads); `__array__` materialises the whole matrix only for callers that
    really need it in memory (faiss index building, small pools in tests).
    """

    def __init__(self, paths: list[Path]):
        self._files = [_MappedNpy(p) for p in paths]
        if not self._files:
            raise FileNotFoundError("no embeddings shards to read")
        dims = {f.array.shape[1] for f in self._files}
        if len(dims) != 1:
            raise StageMismatchError(f"pool embeddings shards disagree on the vector size ({sorted(dims)})")
        self.dim = dims.pop()
        self.dtype = np.result_type(*[f.array.dtype for f in self._files])
        self.starts = np.cumsum([0] + [f.array.shape[0] for f in self._files]).tolist()

    @property
    def shape(self) -> tuple[int, int]:
        return (self.starts[-1], self.dim)

    def __len__(self) -> int:
        return self.starts[-1]

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 block of `rows` rows, the last one shorter) in row order.

        A block inside one shard file is a view of its memory map; blocks that span files (pools of
        many small shards) are gathered into a new array, so a consumer sees full blocks whatever
        the shard sizes. Pages are released from this process once read, so the resident memory of
        a full pass is about one block whatever the pool size.
        """
        rows = max(1, int(rows))
        gathered = np.empty((0, self.dim), np.float32)
        fill = first = 0
        for file, start in zip(self._files, self.starts, strict=False):
            n, s = file.array.shape[0], 0
            while s < n:
                if fill == 0 and n - s >= rows:  # a whole block in this file: no copy
                    yield start + s, np.asarray(file.array[s : s + rows], dtype=np.float32)
                    file.release(s, s + rows)
                    s += rows
                    continue
                if fill == 0:
                    gathered, first = np.empty((rows, self.dim), np.float32), start + s
                take = min(rows - fill, n - s)
                gathered[fill : fill + take] = file.array[s : s + take]
                file.release(s, s + take)
                fill, s = fill + take, s + take
                if fill == rows:
                    yield first, gathered
                    fill = 0
        if fill:
            yield first, gathered[:fill]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows by pool index, any shape: (*rows.shape, dim) float32."""
        flat = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((flat.size, self.dim), np.float32)
        if flat.size:
            if flat.min() < 0 or flat.max() >= len(self):
                raise IndexError(f"pool rows must lie in [0, {len(self)})")
            which = np.searchsorted(self.starts, flat, side="right") - 1
            for f in np.unique(which):
                sel = which == f
                out[sel] = self._files[f].array[flat[sel] - self.starts[f]]
        return out.reshape(*np.shape(rows), self.dim)

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, slice):
            return self.take(np.arange(len(self))[rows])
        return self.take(np.asarray(rows))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, np.float32)
        for start, block in self.blocks(1 << 16):
            out[start : start + len(block)] = block
        return out if dtype is None else out.astype(dtype, copy=False)


def pool_vectors(workdir: Path) -> PoolVectors:
    """The CLAP vectors of a finished pool, memory-mapped shard by shard in shard order."""
    sd = StageDir(pool_dir(workdir) / "clap")
    paths = [sd.array_path("embeddings", i) for i in sd.complete_shards()]
    paths = [p for p in paths if p.exists()]
    if not paths:
        raise FileNotFoundError(f"no complete shards of array 'embeddings' in {sd.path}")
    vectors = PoolVectors(paths)
    manifest_path = pool_dir(workdir) / "manifest.json"
    segments = json.loads(manifest_path.read_text()).get("segments", {}) if manifest_path.exists() else {}
    if "count" in segments and segments["count"] != len(vectors):
        raise StageMismatchError(
            f"pool embeddings ({len(vectors)}) and segments ({segments['count']}) disagree: "
            "rerun `sonify pool` with --overwrite"
        )
    return vectors


@dataclass
class PoolView:
    """A finished pool as retrieval and reports see it: segments with `row`, vectors, manifest."""

    segments: pa.Table
    manifest: dict[str, Any]
    embeddings: PoolVectors | None


def load_pool(workdir: Path, with_embeddings: bool = True) -> PoolView:
    """The pool of a work directory; raises FileNotFoundError with a hint when it is not built."""
    pd_ = pool_dir(workdir)
    manifest_path = pd_ / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"no finished pool in {pd_}: run `sonify pool` first")
    manifest = json.loads(manifest_path.read_text())
    segs = StageDir(pd_).read_table("segments", schema.POOL_SEGMENTS)
    segs = segs.append_column("row", pa.array(np.arange(segs.num_rows, dtype=np.int64)))
    emb = None
    if with_embeddings:
        if "clap" not in manifest:
            raise FileNotFoundError(f"the pool in {pd_} has no CLAP embeddings: run `sonify pool` without --no-embed")
        emb = pool_vectors(workdir)
        if len(emb) != segs.num_rows:
            raise StageMismatchError(
                f"pool embeddings ({len(emb)}) and segments ({segs.num_rows}) disagree: "
                "rerun `sonify pool` with --overwrite"
            )
    return PoolView(segments=segs, manifest=manifest, embeddings=emb)
