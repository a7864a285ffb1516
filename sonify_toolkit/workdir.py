"""What makes a folder a sonify work directory: a marker file the stages write when they first prepare a folder in it.

`sonify status` reads only folders that carry the marker (or, for work directories made before
it existed, stage folders at the places the stages use), so it never mixes in unrelated
sub-folders nor offers to start a run in a system folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import __version__
from .shards import STAGE_FILE, atomic_write_bytes

WORKDIR_MARKER = ".sonify-workdir.json"
# where stages put their folders (relative to W), for work directories made before the marker
KNOWN_STAGE_FOLDERS = ("pool", "pool/clap", "concepts/*", "retrieve/search", "pairs", "render")


def mark_workdir(workdir: str | Path) -> None:
    """Write W/.sonify-workdir.json once (atomically; concurrent writers leave one complete file, the same bytes)."""
    marker = Path(workdir) / WORKDIR_MARKER
    if marker.is_file():
        return
    # no time: outputs stay byte-identical across runs
    atomic_write_bytes(marker, (json.dumps({"sonify": __version__}) + "\n").encode(), fsync=False)


def is_workdir(path: str | Path) -> bool:
    """True for a folder with the marker, or with stage folders where the stages put them (older runs)."""
    path = Path(path)
    if (path / WORKDIR_MARKER).is_file():
        return True
    return any(any(path.glob(f"{rel}/{STAGE_FILE}")) for rel in KNOWN_STAGE_FOLDERS)


def workdirs_below(path: str | Path, max_depth: int = 2) -> list[Path]:
    """Work directories just below `path` (to suggest one when `path` itself is not one)."""
    found: list[Path] = []
    level = [Path(path)]
    for _ in range(max_depth):
        nxt: list[Path] = []
        for folder in level:
            try:
                subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
            except OSError:
                continue
            for sub in subs:
                (found if (sub / WORKDIR_MARKER).is_file() else nxt).append(sub)
        level = nxt
    return found
