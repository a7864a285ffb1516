"""Leases: which process works on which shard of a stage folder shared by many processes and machines.

A lease is a small JSON file created with `O_CREAT | O_EXCL` (host, pid, start, heartbeat, token).
Whoever creates it owns the shard; a background thread refreshes the heartbeat of every lease this
process holds. Another process skips a shard under a live lease and takes over a stale one: its
heartbeat is older than the TTL, or its pid is dead on this very host. Takeover renames the stale
file away (only one rename of a given file succeeds) and then creates a fresh one with `O_EXCL`.

Leases are an optimisation of *work*, never a guard of *correctness*: every shard write is atomic
and byte-identical whoever makes it, so the worst a lying filesystem or clock can cause is a shard
computed twice. See docs/scaling.md ("Many processes, one work directory").
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

LEASE_DIR = "_leases"
TTL_ENV = "SONIFY_LEASE_TTL"
DEFAULT_TTL_S = 300.0  # 10 heartbeats: survives a GC pause, an NFS hiccup, a loaded login node
HEARTBEATS_PER_TTL = 10

# the project's own temporary names: `.<name>.<32 hex>.tmp` (atomic writes), `.<name>.<32 hex>.deleting|stale`
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{32}\.(tmp|deleting|stale)$")


def lease_ttl() -> float:
    """Seconds without a heartbeat after which a lease is stale (`$SONIFY_LEASE_TTL`, default 300)."""
    value = os.environ.get(TTL_ENV)
    return float(value) if value else DEFAULT_TTL_S


@dataclass(frozen=True)
class LeaseRecord:
    """What a lease file holds: who works, since when, and the last sign of life (wall clock, seconds)."""

    host: str
    pid: int
    started: float
    heartbeat: float
    token: str
    what: str = ""

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.heartbeat

    def is_live(self, ttl: float, now: float | None = None) -> bool:
        """Live: heartbeat within the TTL, and (on this host) the process still exists."""
        if self.host == socket.gethostname() and not pid_alive(self.pid):
            return False
        return self.age(now) <= ttl

    def describe(self) -> str:
        return f"host {self.host} pid {self.pid} ({self.what or 'lease'}, heartbeat {max(0.0, self.age()):.0f} s ago)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_lease(path: Path) -> LeaseRecord | None:
    """The record at `path`, or None when absent or unreadable (garbage, or a filesystem without hard links
    where a create is not atomic with its content)."""
    try:
        return LeaseRecord(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError, ValueError):
        return None


def lease_is_live(path: Path, ttl: float, record: LeaseRecord | None = None) -> bool:
    """Whether the lease at `path` holds: its record says so, or, unreadable, its file is younger than the TTL
    (it may be being written). The one rule for waiting on a lease and for taking it over: if the two
    disagreed, a waiter would loop between "stale, take it over" and "cannot take it over"."""
    record = read_lease(path) if record is None else record
    if record is not None:
        return record.is_live(ttl)
    try:
        return time.time() - path.stat().st_mtime <= ttl
    except FileNotFoundError:
        return False


def _temp_sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.{kind}")


def _create_exclusive(path: Path, text: str) -> bool:
    """Create `path` holding `text` unless it exists; False when it does.

    The record is written to a temporary sibling and hard-linked into place, so a lease never exists
    without its content: a process killed between `O_EXCL` create and write would otherwise leave an
    empty lease that nobody may take over for a whole TTL (`link` is atomic and exclusive on NFS too).
    Where hard links are not supported, it falls back to `O_EXCL` create then write.
    """
    tmp = _temp_sibling(path, "tmp")
    tmp.write_text(text)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
            raise
    finally:
        tmp.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


class LeaseKeeper:
    """This process's leases: claim, heartbeat (one thread for all), release.

    `on_lost` is told about a lease whose file no longer carries our token (taken over after we
    stalled past the TTL): the shard may then be done twice, which is harmless (writes are atomic
    and identical), so losing a lease is reported, not fatal.
    """

    def __init__(self, ttl: float | None = None):
        self.ttl = lease_ttl() if ttl is None else ttl
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._held: dict[Path, LeaseRecord] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: list[Path] = []

    # --- claiming --------------------------------------------------------------------------------
    def claim(self, path: Path, what: str = "") -> bool:
        """Own `path` now, or False while another process holds it live. Stale leases are taken over."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # create; or take a stale one over and create again
            now = time.time()
            record = LeaseRecord(self.host, self.pid, now, now, uuid.uuid4().hex, what)
            if not _create_exclusive(path, json.dumps(asdict(record))):
                if not self._take_over(path):
                    return False
                continue
            with self._lock:
                self._held[path] = record
            self._ensure_heartbeat()
            return True
        return False

    def _take_over(self, path: Path) -> bool:
        """Remove a stale lease at `path`; False when it is live (or someone else just replaced it)."""
        seen = read_lease(path)
        if lease_is_live(path, self.ttl, seen):
            return False
        doomed = _temp_sibling(path, "stale")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return True  # someone else removed it: race for the create
        moved = read_lease(doomed)
        if seen is not None and moved is not None and moved.token != seen.token:
            # between our read and our rename another process took it over: give theirs back
            with contextlib.suppress(FileExistsError, FileNotFoundError):
                os.link(doomed, path)
            doomed.unlink(missing_ok=True)
            return False
        doomed.unlink(missing_ok=True)
        return True

    def holds(self, path: Path) -> bool:
        with self._lock:
            return path in self._held

    def release(self, path: Path) -> None:
        """Give up a lease (its file goes only if it still carries our token)."""
        with self._lock:
            record = self._held.pop(path, None)
        if record is None:
            return
        current = read_lease(path)
        if current is not None and current.token == record.token:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def release_all(self) -> None:
        with self._lock:
            paths = list(self._held)
        for path in paths:
            self.release(path)

    def close(self) -> None:
        self.release_all()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- heartbeat -------------------------------------------------------------------------------
    def _ensure_heartbeat(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="sonify-lease-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        interval = max(0.05, self.ttl / HEARTBEATS_PER_TTL)
        while not self._stop.wait(interval):
            self.refresh()

    def refresh(self) -> None:
        """Rewrite each held lease with a new heartbeat, if it is still ours."""
        with self._lock:
            held = list(self._held.items())
        for path, record in held:
            current = read_lease(path)
            if current is None or current.token != record.token:
                with self._lock:
                    if self._held.pop(path, None) is not None:
                        self.lost.append(path)
                continue
            fresh = LeaseRecord(**{**asdict(record), "heartbeat": time.time()})
            tmp = _temp_sibling(path, "tmp")
            try:
                tmp.write_text(json.dumps(asdict(fresh)))
                os.replace(tmp, path)
            except OSError:  # the folder went away (cleared by an --overwrite we could not see): stop beating it
                tmp.unlink(missing_ok=True)
                continue
            with self._lock:
                if path in self._held:
                    self._held[path] = fresh


def live_leases(folder: Path, ttl: float | None = None) -> list[LeaseRecord]:
    """Live leases in `folder` and in the stage folders nested one level below it (pool/clap in pool)."""
    ttl = lease_ttl() if ttl is None else ttl
    found = []
    for lease_dir in [folder / LEASE_DIR, *folder.glob(f"*/{LEASE_DIR}")]:
        if not lease_dir.is_dir():
            continue
        for path in sorted(lease_dir.glob("*.json")):
            record = read_lease(path)
            if record is None or not lease_is_live(path, ttl, record):
                continue  # an unreadable lease names no holder to report
            found.append(record)
    return found


@contextlib.contextmanager
def held_lock(path: Path, what: str) -> Iterator[None]:
    """Hold the lease at `path` for the block: waits for a live holder to finish (or go stale)."""
    keeper = LeaseKeeper()
    while not keeper.claim(path, what):
        time.sleep(0.05)
    try:
        yield
    finally:
        keeper.close()


def sweep_temporaries(folder: Path, older_than_s: float) -> int:
    """Delete the project's own temporary files and renamed-away folders under `folder` older than the TTL.

    Killed writes leave `.<name>.<uuid>.tmp` behind; nothing else ever matches the pattern, and
    anything younger than the lease TTL may belong to a live writer, so it stays.
    """
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for root, dirs, files in os.walk(folder):
        for name in files + dirs:
            if not TEMP_NAME.match(name):
                continue
            path = Path(root) / name
            try:
                if path.lstat().st_mtime > cutoff:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                    if name in dirs:
                        dirs.remove(name)
                else:
                    path.unlink()
                removed += 1
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
                    raise
    return removed
