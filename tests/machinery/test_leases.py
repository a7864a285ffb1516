"""Leases, generations, finalize-once, fail-fast, teardown and temp sweeping, in one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sonify_toolkit.errors import ConcurrentRunError, ModelLoadError, StageMismatchError
from sonify_toolkit.executors import InlineExecutor, ProcessPoolShardExecutor
from sonify_toolkit.leases import LeaseKeeper, live_leases, read_lease, sweep_temporaries
from sonify_toolkit.runner import location_free, run_stage
from sonify_toolkit.shards import StageDir
from tests.machinery.toy_stages import ToyStage, logged


def test_a_live_lease_is_refused_and_a_dead_or_silent_one_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "_leases" / "00000.json"
    holder, other = LeaseKeeper(ttl=0.5), LeaseKeeper(ttl=0.5)
    assert holder.claim(path, "shard 0")
    assert not other.claim(path)  # live: heartbeat fresh, pid (ours) alive
    time.sleep(0.3)
    assert read_lease(path).heartbeat > read_lease(path).started  # the heartbeat thread refreshes it
    holder._stop.set()  # the holder hangs: no more heartbeats
    holder._thread.join()
    time.sleep(0.6)
    assert other.claim(path)  # silent for longer than the TTL: taken over
    holder.refresh()
    assert holder.lost == [path] and not holder.holds(path)  # the old holder notices it lost the lease
    other.close()
    assert not path.exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"host": socket.gethostname(), "pid": int(dead.stdout), "started": time.time(), "token": "t"}
    path.write_text(json.dumps({**record, "heartbeat": time.time()}))
    fresh = LeaseKeeper(ttl=3600)
    assert fresh.claim(path)  # a dead pid on this host: taken over at once, whatever the TTL
    fresh.close()

    path.write_text(json.dumps({**record, "host": "elsewhere", "heartbeat": time.time()}))
    assert not LeaseKeeper(ttl=3600).claim(path)  # another host's pid cannot be checked: the TTL decides


def test_overwrite_is_refused_while_another_process_holds_a_lease(tmp_path: Path) -> None:
    work, logs = tmp_path / "w", tmp_path / "logs"
    logs.mkdir()
    run_stage(ToyStage(str(logs), items=4), work, show_progress=False)
    sd = StageDir(work / "toy")
    busy = LeaseKeeper(ttl=60)
    assert busy.claim(sd.lease_dir / "00002.json", "toy shard 2")
    with pytest.raises(ConcurrentRunError, match=rf"host {socket.gethostname()} pid {os.getpid()}"):
        run_stage(ToyStage(str(logs), items=6), work, overwrite=True, show_progress=False)
    assert sd.complete_shards() == [0, 1, 2, 3]  # refused before touching anything
    busy.close()
    run_stage(ToyStage(str(logs), items=6), work, overwrite=True, show_progress=False)
    assert sd.complete_shards() == list(range(6))


def test_a_writer_whose_folder_was_restarted_writes_nothing_there(tmp_path: Path) -> None:
    sd = StageDir(tmp_path / "s")
    mine = sd.prepare("toy", {"max_concepts": 3}, 2)
    sd.clear()
    sd.prepare("toy", {"max_concepts": 1}, 2)  # someone else restarted the folder with other parameters
    with pytest.raises(ConcurrentRunError, match="cleared or restarted"):
        sd.write_shard(0, {}, {"items": 1}, generation=mine)
    assert sd.complete_shards() == []


def test_finalize_runs_once_for_processes_finishing_together(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    stage = ToyStage(str(logs), items=6, seconds=0.05)
    summaries = []
    threads = [
        threading.Thread(target=lambda: summaries.append(run_stage(stage, tmp_path / "w", show_progress=False)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(summaries) == 3 and all(s.finalized for s in summaries)
    assert (logs / "finalize.log").read_text().count("\n") == 1
    assert len({s.facts["finalized_by"] for s in summaries}) == 1  # the others report the facts of that one run
    assert sum(s.shards_done_now for s in summaries) == 6  # every shard done once
    run_stage(stage, tmp_path / "w", show_progress=False)  # a rerun with nothing new does not finalize again
    assert (logs / "finalize.log").read_text().count("\n") == 1
    StageDir(tmp_path / "w" / "toy").stats_path(2).unlink()
    run_stage(stage, tmp_path / "w", show_progress=False)  # a shard redone: finalize again
    assert (logs / "finalize.log").read_text().count("\n") == 2


def test_the_pool_stops_at_the_first_fatal_error_and_keeps_complete_shards(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    stage = ToyStage(str(logs), items=40, seconds=0.2, fail_shard=3)
    t0 = time.monotonic()
    with pytest.raises(ModelLoadError, match="toy failure on shard 3"):
        run_stage(stage, tmp_path / "w", ProcessPoolShardExecutor(2), show_progress=False)
    done = StageDir(tmp_path / "w" / "toy").complete_shards()
    assert 3 <= len(done) < 10, done  # shards after the failure were never started
    assert time.monotonic() - t0 < 20
    assert live_leases(tmp_path / "w" / "toy") == []


def test_teardown_runs_once_per_worker(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    run_stage(
        ToyStage(str(logs), items=6, seconds=0.05), tmp_path / "pool", ProcessPoolShardExecutor(2), show_progress=False
    )
    assert len(logged(logs, "setup")) == len(logged(logs, "teardown")) == 2
    for f in logs.iterdir():
        f.unlink()
    summary = run_stage(ToyStage(str(logs), items=4), tmp_path / "inline", InlineExecutor(), show_progress=False)
    assert len(logged(logs, "setup")) == len(logged(logs, "teardown")) == 1
    # the shard context's bookkeeping: error rows and counts, counters, phase timers
    assert summary.errors == {"ends_in_three": 1} and summary.counters["seen"] == 4
    sd = StageDir(tmp_path / "inline" / "toy")
    assert sd.read_table("errors").column("item").to_pylist() == ["item-003"]
    assert "work" in sd.stats()[0]["phase_seconds"]


def test_a_failed_start_leaves_no_folder_and_needs_no_overwrite(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with pytest.raises(ModelLoadError):
        run_stage(ToyStage(str(logs), fail_setup=True), tmp_path / "w", show_progress=False)
    assert not (tmp_path / "w" / "toy").exists()
    sd = StageDir(tmp_path / "w" / "toy")
    sd.prepare("toy", {"engine": "a"}, 1)  # a folder claimed, nothing written...
    sd.prepare("toy", {"engine": "b"}, 1)  # ...is replaced without --overwrite
    assert sd.manifest()["params"] == {"engine": "b"}
    sd.write_shard(0, {}, {"items": 1})
    with pytest.raises(StageMismatchError, match="changed: engine"):
        sd.prepare("toy", {"engine": "c"}, 1)


def test_sweep_removes_only_old_project_temporaries(tmp_path: Path) -> None:
    old_tmp = tmp_path / "t" / f".00001.parquet.{'a' * 32}.tmp"
    young_tmp = tmp_path / f".00002.parquet.{'b' * 32}.tmp"
    old_dir = tmp_path / f".concepts.{'c' * 32}.deleting"
    foreign = tmp_path / ".00003.parquet.1234.tmp"
    old_tmp.parent.mkdir()
    old_dir.mkdir()
    for p in (old_tmp, young_tmp, foreign, old_dir / "x"):
        p.write_bytes(b"x")
    hour_ago = time.time() - 3600
    for p in (old_tmp, foreign, old_dir):
        os.utime(p, (hour_ago, hour_ago))
    assert sweep_temporaries(tmp_path, older_than_s=60) == 2
    assert not old_tmp.exists() and not old_dir.exists() and young_tmp.exists() and foreign.exists()


def test_fingerprints_do_not_see_where_the_work_directory_is(tmp_path: Path) -> None:
    params = {"pairs": str(tmp_path / "w" / "pairs"), "other": "/data/x", "n": [str(tmp_path / "w")]}
    assert location_free(params, {"workdir": tmp_path / "w"}) == {
        "pairs": "{workdir}/pairs",
        "other": "/data/x",
        "n": ["{workdir}"],
    }


def test_a_claimed_lease_is_never_seen_without_its_record(tmp_path: Path) -> None:
    path = tmp_path / "_leases" / "00000.json"
    keeper = LeaseKeeper(ttl=60)
    assert keeper.claim(path, "shard 0")
    record = read_lease(path)
    assert record is not None and record.pid == os.getpid() and record.what == "shard 0"
    assert sorted(p.name for p in path.parent.iterdir()) == ["00000.json"]  # the written temporary is gone
    keeper.close()


def test_an_unreadable_lease_is_waited_for_then_taken_over_without_spinning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease file without a readable record (left by a crash, or being written) holds for one TTL.

    Waiting and taking over must agree on that: before, the waiter judged it stale and the claim judged
    it live, and the run spun at full CPU until the TTL ran out."""
    monkeypatch.setenv("SONIFY_LEASE_TTL", "1.5")
    work, logs = tmp_path / "w", tmp_path / "logs"
    logs.mkdir()
    with pytest.raises(ModelLoadError, match="toy failure on shard 1"):
        run_stage(ToyStage(str(logs), items=2, fail_shard=1), work, show_progress=False)
    sd = StageDir(work / "toy")
    assert sd.complete_shards() == [0]
    (sd.lease_dir / "00001.json").write_text("")  # a claim that died between create and write
    wall, cpu = time.monotonic(), time.process_time()
    run_stage(ToyStage(str(logs), items=2), work, show_progress=False)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    assert sd.complete_shards() == [0, 1]
    assert 1.0 < wall < 15  # waited for the TTL, then took the shard over
    assert cpu < 0.6 * wall  # and slept while waiting
