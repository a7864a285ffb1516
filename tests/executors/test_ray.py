"""The Ray executor gives exactly the local executor's tables, resume markers and manifests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sonify_toolkit.errors import DeviceError, InputError
from sonify_toolkit.executors import InlineExecutor, RayShardExecutor, actors_that_fit, make_executor
from sonify_toolkit.runner import run_stage
from sonify_toolkit.stage import Resources
from sonify_toolkit.stages.pool import PoolEmbedStage, PoolSegmentsStage

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


RUN_RECORDS = ("_stage.json", "_finalized.json", ".sonify-workdir.json")  # command line, dates, timings


def _files(root: Path) -> dict[str, bytes]:
    """Every output file by relative path, minus the run records (timings, command line, finalize record)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and "_stats" not in p.parts and p.name not in RUN_RECORDS:
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def _run_pool(executor, workdir: Path, sounds: Path, clap: Path) -> None:
    sources = {"demo": str(sounds)}
    labels = {"demo": [str(sounds / "labels.csv")]}
    run_stage(PoolSegmentsStage(sources, labels, files_per_shard=4), workdir, executor, show_progress=False)
    embed = PoolEmbedStage(sources, model=str(clap), device="cpu", files_per_shard=4, workdir=str(workdir))
    run_stage(embed, workdir, executor, show_progress=False)


def test_ray_matches_local_executor(local_ray, tmp_path: Path, sample_sounds: Path, tiny_clap: Path) -> None:
    _run_pool(InlineExecutor(), tmp_path / "local", sample_sounds, tiny_clap)
    _run_pool(RayShardExecutor(workers=2), tmp_path / "ray", sample_sounds, tiny_clap)
    local, on_ray = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert any(name.endswith(".npy") for name in local) and any(name.endswith(".parquet") for name in local)
    assert local.keys() == on_ray.keys()
    differing = [name for name in local if local[name] != on_ray[name] and not name.endswith("manifest.json")]
    assert differing == []
    stats = sorted((tmp_path / "ray" / "pool" / "_stats").glob("*.json"))
    assert len(stats) == len(sorted((tmp_path / "local" / "pool" / "_stats").glob("*.json"))) > 1


def test_ray_resumes_from_local_markers(local_ray, tmp_path: Path, sample_sounds: Path) -> None:
    """A run started locally and finished on Ray redoes only the missing shards."""
    stage = PoolSegmentsStage({"demo": str(sample_sounds)}, files_per_shard=4)
    first = run_stage(stage, tmp_path, InlineExecutor(), show_progress=False)
    marker = sorted((tmp_path / "pool" / "_stats").glob("*.json"))[1]
    marker.unlink()
    second = run_stage(stage, tmp_path, RayShardExecutor(), show_progress=False)
    assert second.shards_done_now == 1 and second.shards_skipped == first.shards_total - 1
    assert second.rows == first.rows


def test_actor_count_follows_declared_resources() -> None:
    cluster = {"CPU": 16.0, "GPU": 4.0}
    assert actors_that_fit(cluster, Resources(num_cpus=1), None, 100) == 16
    assert actors_that_fit(cluster, Resources(num_cpus=2, num_gpus=1), None, 100) == 4
    assert actors_that_fit(cluster, Resources(num_cpus=1, num_gpus=0.5), 3, 100) == 3
    assert actors_that_fit(cluster, Resources(num_cpus=1), None, 5) == 5
    with pytest.raises(DeviceError, match="no room"):
        actors_that_fit({"CPU": 8.0}, Resources(num_gpus=1), None, 10)


def test_make_executor_names() -> None:
    assert isinstance(make_executor("ray", 1, address="auto"), RayShardExecutor)
    with pytest.raises(InputError, match="unknown executor"):
        make_executor("dask", 1)
    with pytest.raises(InputError, match="needs --executor ray"):
        make_executor("local", 1, address="auto")


def test_cli_executor_ray(local_ray, tmp_path: Path, sample_sounds: Path) -> None:
    from typer.testing import CliRunner

    from sonify_toolkit.cli import app

    args = ["pool", f"demo={sample_sounds}", "--no-embed", "--shard-size", "8", "--quiet"]
    on_ray = CliRunner().invoke(app, [*args, "--workdir", str(tmp_path / "ray"), "--executor", "ray"])
    local = CliRunner().invoke(app, [*args, "--workdir", str(tmp_path / "local")])
    assert on_ray.exit_code == 0 and local.exit_code == 0, on_ray.output + local.output
    ray_files, local_files = _files(tmp_path / "ray"), _files(tmp_path / "local")
    assert ray_files == local_files
