"""Finding input files, checksums, and resolving untrusted relative paths safely inside a root."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath


class UnsafePathError(ValueError):
    """A metadata path that is absolute, climbs with '..', or resolves outside its root."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_files(root: str | Path, extensions: Iterable[str]) -> list[str]:
    """POSIX paths relative to `root` of files with the given extensions, sorted (deterministic).

    Hidden files and folders (".cache", "._x.wav" from macOS) are skipped.
    """
    root = Path(root)
    exts = {e.lower() for e in extensions}
    found = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in exts and p.is_file():
            found.append(rel.as_posix())
    return sorted(found)


def safe_join(root: str | Path, relpath: str) -> Path:
    """`root/relpath`, refusing paths that could read outside `root` (metadata may come from anyone)."""
    if not relpath or "\x00" in relpath:
        raise UnsafePathError(f"empty or invalid path {relpath!r}")
    pure = PurePosixPath(relpath)
    if pure.is_absolute() or relpath.startswith(("\\", "/")) or (len(relpath) > 1 and relpath[1] == ":"):
        raise UnsafePathError(f"absolute path {relpath!r}")
    if ".." in pure.parts:
        raise UnsafePathError(f"path climbs out with '..': {relpath!r}")
    root_resolved = Path(root).resolve()
    full = (root_resolved / Path(*pure.parts)).resolve()
    if not full.is_relative_to(root_resolved):
        raise UnsafePathError(f"path resolves outside its root (symlink?): {relpath!r}")
    return full
