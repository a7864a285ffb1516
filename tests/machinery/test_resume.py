"""Resume: a run killed at any point and rerun ends with exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sonify_toolkit.errors import EXIT_ITEM_ERRORS
from sonify_toolkit.pool_files import pool_dir
from sonify_toolkit.shards import StageDir
from tests.pool.cli_helpers import errors, pool_args, segments, shard_files, sonify


def test_rerun_after_lost_shards_and_stray_temporaries(corpus: Path, tmp_path: Path) -> None:
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    sonify(
        "pool", f"syn={corpus}", "--workdir", clean, "--no-embed", "--shard-size", "2", "-q", expect=EXIT_ITEM_ERRORS
    )
    sonify(
        "pool", f"syn={corpus}", "--workdir", broken, "--no-embed", "--shard-size", "2", "-q", expect=EXIT_ITEM_ERRORS
    )
    sd = StageDir(pool_dir(broken))
    # simulate kills at three moments: before the stats (shard 1), mid-parquet (shard 3), mid-stats (shard 5)
    sd.stats_path(1).unlink()
    sd.stats_path(3).unlink()
    sd.table_path("segments", 3).write_bytes(b"PAR1 half a parquet file")
    sd.stats_path(5).unlink()
    (sd.path / "_stats" / ".00005.json.0123.tmp").write_text('{"items": ')
    (sd.path / "segments" / ".00005.parquet.4567.tmp").write_bytes(b"PAR1")
    (pool_dir(broken) / "manifest.json").unlink()
    total = len(StageDir(pool_dir(clean)).complete_shards())
    assert sd.complete_shards() == [i for i in range(total) if i not in (1, 3, 5)]
    assert segments(broken).num_rows < segments(clean).num_rows  # partial shards never leak rows

    out = sonify(
        "pool", f"syn={corpus}", "--workdir", broken, "--no-embed", "--shard-size", "2", "-q", expect=EXIT_ITEM_ERRORS
    ).stdout
    assert f"3 done now, {total - 3} skipped" in out
    assert segments(broken).equals(segments(clean)) and errors(broken).equals(errors(clean))
    assert shard_files(broken) == shard_files(clean)
    ids = segments(broken).column("clip_id").to_pylist()
    assert len(ids) == len(set(ids))
    assert (pool_dir(broken) / "manifest.json").exists()


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun(long_corpus: Path, tmp_path: Path) -> None:
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    sonify("pool", f"noise={long_corpus}", "--workdir", clean, "--no-embed", "--shard-size", "2", "-q")
    exe = shutil.which("sonify", path=str(Path(sys.executable).parent))
    assert exe
    cmd = [exe, "pool", f"noise={long_corpus}", "--workdir", str(killed), "--no-embed", "--shard-size", "2", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    stats_dir = pool_dir(killed) / "_stats"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(stats_dir.glob("*.json"))) < 3:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = StageDir(pool_dir(killed)).complete_shards()
    assert 3 <= len(done) < 12, f"the kill should land mid-run, {len(done)} of 12 shards were complete"
    assert not (pool_dir(killed) / "manifest.json").exists()

    out = sonify("pool", f"noise={long_corpus}", "--workdir", killed, "--no-embed", "--shard-size", "2", "-q").stdout
    assert f"{12 - len(done)} done now, {len(done)} skipped" in out
    assert segments(killed).equals(segments(clean))
    assert shard_files(killed) == shard_files(clean)


def test_embeddings_resume_to_the_same_bytes(corpus: Path, tiny_clap: Path, tmp_path: Path) -> None:
    args = pool_args(corpus, tmp_path, tiny_clap, "3")
    sonify(*args, "-q", expect=EXIT_ITEM_ERRORS)
    before = shard_files(tmp_path)
    clap = StageDir(pool_dir(tmp_path) / "clap")
    clap.stats_path(1).unlink()  # killed after its embeddings were written, before its stats
    clap.stats_path(3).unlink()
    clap.array_path("embeddings", 3).write_bytes(b"\x93NUMPY half")  # killed while replacing the array
    (clap.path / "embeddings" / ".00003.npy.89ab.tmp").write_bytes(b"\x93NUMPY")
    out = sonify(*args, "-q", expect=EXIT_ITEM_ERRORS).stdout
    assert "0 done now, 5 skipped" in out and "2 done now, 3 skipped" in out  # segments kept, two embed shards redone
    assert shard_files(tmp_path) == before
