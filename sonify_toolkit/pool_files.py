"""Where a work directory's pool lives and how it is read back: `W/pool/`, its manifest, `load_pool`.

The pool stages write these files and retrieval, the demo and reports read them; the helpers live
here rather than in `stages/pool.py` so that a reader does not import a stage (and the audio stack)
for a path or a manifest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import schema
from .shards import StageDir, atomic_write_json


def pool_dir(workdir: Path) -> Path:
    return Path(workdir) / "pool"


def update_manifest(workdir: Path, key: str, value: Mapping[str, Any]) -> None:
    """`pool/manifest.json` gathers what each pool stage made (segments, clap) in one place."""
    path = pool_dir(workdir) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest[key] = dict(value)
    atomic_write_json(path, manifest)


@dataclass
class PoolView:
    """A finished pool as retrieval and reports see it: segments with `row`, vectors, manifest."""

    segments: pa.Table
    manifest: dict[str, Any]
    embeddings: np.ndarray | None


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
        emb = StageDir(pd_ / "clap").read_array("embeddings")
        if emb.shape[0] != segs.num_rows:
            raise RuntimeError(f"pool embeddings ({emb.shape[0]}) and segments ({segs.num_rows}) disagree")
    return PoolView(segments=segs, manifest=manifest, embeddings=emb)
