"""An on-disk cache of CLAP text vectors keyed by (encoder, text), shared by reruns and new shards.

At a million images most concept texts repeat from one run to the next (new images, another
VLM, a changed top-k), and embedding them is the only model work of retrieval. The cache is a
folder per encoder identity holding immutable parquet files of (key, vector); a writer only
adds files (atomically), so concurrent workers never corrupt it, and a duplicate entry written
by two workers is harmless (both hold the same text's vector).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...shards import atomic_write_json, atomic_write_table, fingerprint


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class TextVectorCache:
    """`get` what is cached, `put` what was just embedded; one folder per encoder identity."""

    def __init__(self, root: str | Path, encoder: Mapping[str, Any]):
        self.encoder = dict(encoder)
        self.dir = Path(root) / fingerprint(self.encoder)
        self.dim = int(self.encoder["dim"])
        self._keys: dict[str, tuple[Path, int]] = {}
        self._seen: set[Path] = set()

    def _refresh(self) -> None:
        """Index the key columns of cache files not seen yet (vectors are read only on a hit)."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.parquet")):
            if path in self._seen:
                continue
            keys = pq.read_table(path, columns=["key"]).column("key").to_pylist()
            for row, key in enumerate(keys):
                self._keys.setdefault(key, (path, row))
            self._seen.add(path)

    def get(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (n, dim) float32, found (n,) bool); rows not found are zeros."""
        self._refresh()
        out = np.zeros((len(texts), self.dim), np.float32)
        found = np.zeros(len(texts), bool)
        by_file: dict[Path, list[tuple[int, int]]] = {}
        for i, text in enumerate(texts):
            hit = self._keys.get(text_key(text))
            if hit is not None:
                by_file.setdefault(hit[0], []).append((i, hit[1]))
        for path, pairs in by_file.items():
            col = pq.read_table(path, columns=["vector"]).column("vector")
            taken = pc.take(col, pa.array([r for _, r in pairs])).combine_chunks()
            vecs = taken.flatten().to_numpy(zero_copy_only=False).reshape(len(pairs), self.dim)
            idx = [i for i, _ in pairs]
            out[idx] = vecs
            found[idx] = True
        return out, found

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors for texts in one new immutable file (named by its keys, so a rewrite is a no-op)."""
        if len(texts) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(f"expected {len(texts)} x {self.dim} vectors, got {vectors.shape}")
        keys = [text_key(t) for t in texts]
        info = self.dir / "encoder.json"
        if not info.exists():
            atomic_write_json(info, self.encoder)
        vec = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self.dim)
        name = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
        atomic_write_table(self.dir / f"{name}.parquet", pa.table({"key": keys, "vector": vec}))
