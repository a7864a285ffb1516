"""Many processes, one work directory: real `sonify` processes against a loopback VLM server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sonify_toolkit.errors import EXIT_CANNOT_RUN, EXIT_ITEM_ERRORS, EXIT_SIGINT, EXIT_SIGTERM
from sonify_toolkit.leases import live_leases
from sonify_toolkit.shards import StageDir
from sonify_toolkit.stages.pool import pool_dir
from tests.extract.conftest import FakeServer, color_images
from tests.pool.cli_helpers import segments, shard_files, sonify

COLORS = ("red", "blue", "green")


def start(*args: object, ttl: float = 30.0) -> subprocess.Popen[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "SONIFY_LEASE_TTL": str(ttl), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "sonify_toolkit", *(str(a) for a in args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def extract_args(pics: Path, work: Path, server: FakeServer, *more: object) -> list[object]:
    engine = ["--engine", "openai", "--base-url", server.url, "--vlm", "org/vlm", "--concurrency", "2"]
    return ["extract", pics, "-w", work, *engine, "--shard-size", "2", "--quiet", *more]


def concept_files(work: Path) -> dict[str, bytes]:
    root = work / "concepts" / "org--vlm"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_three_processes_send_each_image_once_and_write_the_single_run(vlm_server: FakeServer, tmp_path: Path) -> None:
    pics = color_images(tmp_path / "pics", [f"{COLORS[i % 3]}_{i:02d}" for i in range(24)])
    procs = [start(*extract_args(pics, tmp_path / "shared", vlm_server)) for _ in range(3)]
    results = [finish(p) for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0], results
    assert vlm_server.count() == 24  # every image asked once, whichever process took its shard
    sd = StageDir(tmp_path / "shared" / "concepts" / "org--vlm")
    assert sd.all_complete() and live_leases(sd.path) == []

    rc, err = finish(start(*extract_args(pics, tmp_path / "alone", vlm_server)))
    assert rc == 0, err
    assert concept_files(tmp_path / "shared") == concept_files(tmp_path / "alone")


def test_overwrite_refused_under_a_live_lease_then_a_killed_holder_is_taken_over(
    vlm_server: FakeServer, tmp_path: Path
) -> None:
    pics = color_images(tmp_path / "pics", [f"{COLORS[i % 3]}_{i}" for i in range(6)])
    vlm_server.script = ["slow"]  # the first request hangs: its process holds shard 0's lease meanwhile
    vlm_server.slow_seconds = 60
    holder = start(*extract_args(pics, tmp_path / "w", vlm_server, "--max-concepts", "3", "--workers", "1"))
    lease = tmp_path / "w" / "concepts" / "org--vlm" / "_leases" / "00000.json"
    deadline = time.monotonic() + 30
    while not lease.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lease.exists()

    rc, err = finish(start(*extract_args(pics, tmp_path / "w", vlm_server, "--max-concepts", "1", "--overwrite")))
    assert rc == EXIT_CANNOT_RUN
    assert len(err.strip().splitlines()) == 1 and f"pid {holder.pid}" in err, err

    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    rc, err = finish(start(*extract_args(pics, tmp_path / "w", vlm_server, "--max-concepts", "3"), ttl=2))
    assert rc == 0, err  # the dead holder's lease (same host, dead pid) was taken over at once
    assert StageDir(lease.parent.parent).all_complete()
    assert vlm_server.count() == 2 + 6  # the killed process's shard in flight (2 images), then each image once


@pytest.mark.parametrize(
    ("sig", "code", "word"), [(signal.SIGINT, EXIT_SIGINT, "Ctrl-C"), (signal.SIGTERM, EXIT_SIGTERM, "SIGTERM")]
)
def test_an_interrupt_prints_one_line_and_releases_its_leases(
    long_corpus: Path, tmp_path: Path, sig: signal.Signals, code: int, word: str
) -> None:
    args = ["pool", f"noise={long_corpus}", "--workdir", tmp_path, "--no-embed", "--shard-size", "2", "-q"]
    proc = start(*args)
    stats = pool_dir(tmp_path) / "_stats"
    deadline = time.monotonic() + 60
    while len(list(stats.glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(sig)
    rc, err = finish(proc)
    assert rc == code, err
    line = err.strip().splitlines()
    assert len(line) == 1, err
    done = len(StageDir(pool_dir(tmp_path)).complete_shards())
    assert f"interrupted ({word}): {done}/12 shards of pool complete; continue with: sonify pool noise=" in line[0]
    assert live_leases(pool_dir(tmp_path)) == []
    out = sonify(*args).stdout
    assert f"{12 - done} done now, {done} skipped" in out


def test_a_moved_work_directory_resumes(corpus: Path, tmp_path: Path) -> None:
    args = ["pool", f"syn={corpus}", "--no-embed", "--shard-size", "2", "-q"]
    sonify(*args, "--workdir", tmp_path / "here", expect=EXIT_ITEM_ERRORS)
    before = shard_files(tmp_path / "here")
    shutil.move(tmp_path / "here", tmp_path / "there")
    StageDir(pool_dir(tmp_path / "there")).stats_path(1).unlink()
    out = sonify(
        *args, "--workdir", tmp_path / "there", expect=EXIT_ITEM_ERRORS
    ).stdout  # no "changed:", no --overwrite
    assert "1 done now" in out
    assert shard_files(tmp_path / "there") == before and segments(tmp_path / "there").num_rows > 0
    assert str(tmp_path) not in (pool_dir(tmp_path / "there") / "_stage.json").read_text().replace(str(corpus), "")
