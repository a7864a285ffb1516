"""Finding input files (every entry accounted for), checksums, and resolving untrusted relative paths safely."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO


class UnsafePathError(ValueError):
    """A metadata path that is absolute, climbs with '..', or resolves outside its root."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    with open(path, "rb") as f:
        return sha256_open_file(f, chunk)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_open_file(f: BinaryIO, chunk: int = 1 << 20) -> str:
    """The sha256 of an open file from its start, leaving it at the start for a decoder: the bytes
    hashed and the bytes decoded then come from the same open file, never a second, changed one."""
    h = hashlib.sha256()
    f.seek(0)
    while block := f.read(chunk):
        h.update(block)
    f.seek(0)
    return h.hexdigest()


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


@dataclass
class TreeScan:
    """Every entry under a collection root, accounted for: the files to read, the other files counted
    by extension (hidden entries as "hidden"), and the entries that cannot be read, with a reason."""

    files: list[str] = field(default_factory=list)
    other: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (relative path, reason, detail)


def _reason(exc: OSError) -> str:
    return "permission_denied" if isinstance(exc, PermissionError) else "unreadable_folder"


def scan_tree(root: str | Path, extensions: Iterable[str]) -> TreeScan:
    """Walk `root` (sorted, deterministic) and account for every entry, so nothing is skipped in silence.

    Files with one of `extensions` are listed (POSIX paths relative to `root`). Other files count
    under their lower-case extension ("(none)" without one); hidden files and folders (".cache",
    "._x.wav" from macOS) count under "hidden" without being entered; a symlinked folder counts as
    "symlinked folder" and is not followed (its files would be pooled twice or from outside). A
    folder that cannot be listed, a dangling symlink, a symlink leaving the root, and anything that
    is not a regular file (a FIFO, a socket) become problems.
    """
    root = Path(root)
    exts = {e.lower() for e in extensions}
    scan = TreeScan()
    root_resolved = root.resolve()

    def walk(folder: Path, rel: PurePosixPath | None) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            scan.problems.append((rel.as_posix() if rel else ".", _reason(exc), exc.strerror or type(exc).__name__))
            return
        for entry in entries:
            path = PurePosixPath(entry.name) if rel is None else rel / entry.name
            if entry.name.startswith("."):
                scan.other["hidden"] += 1
                continue
            try:
                if entry.is_symlink():
                    target = Path(entry.path)
                    if not target.exists():
                        scan.problems.append((path.as_posix(), "dangling_symlink", "the link points to nothing"))
                        continue
                    if target.is_dir():
                        scan.other["symlinked folder"] += 1
                        continue
                    if not target.resolve().is_relative_to(root_resolved):
                        scan.problems.append((path.as_posix(), "symlink_outside_root", "the link leaves the root"))
                        continue
                if entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), path)
                elif not entry.is_file():
                    scan.problems.append((path.as_posix(), "not_a_regular_file", "a FIFO, socket or device"))
                elif Path(entry.name).suffix.lower() in exts:
                    scan.files.append(path.as_posix())
                else:
                    scan.other[Path(entry.name).suffix.lower() or "(none)"] += 1
            except OSError as exc:
                scan.problems.append((path.as_posix(), _reason(exc), exc.strerror or type(exc).__name__))

    walk(root, None)
    scan.files.sort()
    scan.problems.sort()
    return scan
