"""Sources for generate drawn from a sonify pool by concept (paper Fig. 4): the CLAP text query that
retrieval runs, over the pool's own vectors, and the matching 5-s window read from its collection.

Nothing here searches differently from the toolkit: the text tower is `models.clap.ClapEncoder` loaded
from the pool's manifest, the search is retrieval's `vector_index.ExactIndex` over the memory-mapped
`W/pool/clap/` vectors, and the window is `soundtrack.load_window` (checksum verified), so a concept
finds the clip retrieval would rank first for the same text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonify_toolkit.errors import InputError


@dataclass(frozen=True)
class PoolSource:
    concept: str
    clip_id: str
    similarity: float
    wave: np.ndarray  # the raw 16 kHz window; generate normalises every source to --lufs

    @property
    def label(self) -> str:
        return self.concept


def segment_window(roots: Mapping[str, str], segment: Mapping[str, Any]) -> np.ndarray:
    """A pool segment's raw 16 kHz window read from its collection (checksum verified; raises SourceError)."""
    from sonify_toolkit.soundtrack import load_window

    return load_window(roots, {**segment, "clip_lufs": segment["lufs"], "target_lufs": segment["lufs"]})


def concept_sources(
    workdir: str | Path,
    concepts: Sequence[str],
    roots: Mapping[str, str] | None = None,
    *,
    rank: int = 0,
    device: str = "auto",
) -> list[PoolSource]:
    """For each concept text, the pool segment CLAP ranks at `rank` (0: the best) and its audio.

    `roots`: collection -> folder; defaults to the roots the pool was built from (its manifest)."""
    from sonify_toolkit.models.clap import ClapEncoder
    from sonify_toolkit.pool_files import load_pool
    from sonify_toolkit.soundtrack import SourceError
    from sonify_toolkit.vector_index import ExactIndex

    try:
        pool = load_pool(Path(workdir))
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    clap = pool.manifest["clap"]
    roots = dict(pool.manifest.get("segments", {}).get("roots", {})) | dict(roots or {})
    encoder = ClapEncoder(clap["model"], device=device, revision=clap.get("revision"))
    if encoder.identity.dim != pool.embeddings.shape[1]:
        raise InputError(f"CLAP {clap['model']} gives {encoder.identity.dim}-d vectors, the pool holds another size")
    scores, rows = ExactIndex(pool.embeddings).search(encoder.embed_text(list(concepts)), rank + 1)
    out = []
    for concept, score, row in zip(concepts, scores[:, rank], rows[:, rank], strict=True):
        seg = pool.segments.slice(int(row), 1).to_pylist()[0]
        try:
            wave = segment_window(roots, seg)
        except SourceError as exc:
            raise InputError(f"concept {concept!r} -> {seg['clip_id']}: {exc.reason}: {exc}") from None
        out.append(PoolSource(concept, seg["clip_id"], float(score), wave))
    return out
