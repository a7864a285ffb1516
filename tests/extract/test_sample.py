"""`extract --sample N --sample-seed S`: a uniform random subset of the images, whatever the sharding."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sonify_toolkit import images as imgs
from sonify_toolkit.executors import ShardSelection
from sonify_toolkit.shards import StageDir, StageMismatchError

from .conftest import FakeServer, color_images
from .test_stage import concepts, openai_stage, run


def items(ids: list[str]) -> list[imgs.Item]:
    return [("file", i, f"/x/{i}.jpg") for i in ids]


def test_sample_is_a_seeded_function_of_the_ids_only() -> None:
    ids = [f"sa_{i}" for i in range(200)]
    chosen = [it[1] for it in imgs.sample_items(items(ids), 30, seed=7)]
    assert len(chosen) == len(set(chosen)) == 30 and chosen == sorted(chosen, key=ids.index)  # plan order kept
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert {it[1] for it in imgs.sample_items(items(shuffled), 30, seed=7)} == set(chosen)  # input order is irrelevant
    assert set(chosen) <= {it[1] for it in imgs.sample_items(items(ids), 60, seed=7)}  # a larger N keeps a smaller one
    assert {it[1] for it in imgs.sample_items(items(ids), 30, seed=8)} != set(chosen)


def test_sample_is_uniform_over_seeds() -> None:
    """Each of 50 images is drawn in ~30% of 600 seeded samples of 15 (binomial sd ~11: a 5-sd band)."""
    ids = [f"img{i:03d}" for i in range(50)]
    counts = dict.fromkeys(ids, 0)
    for seed in range(600):
        for it in imgs.sample_items(items(ids), 15, seed):
            counts[it[1]] += 1
    assert all(180 - 56 <= c <= 180 + 56 for c in counts.values()), counts
    assert sum(counts.values()) == 600 * 15


def test_more_than_there_is_is_refused() -> None:
    with pytest.raises(imgs.ImageSourceError, match="--sample 11 but the inputs hold 10 images"):
        imgs.sample_items(items([str(i) for i in range(10)]), 11, 0)


def test_the_same_images_for_any_shard_count_and_shard_size(openai_server: FakeServer, tmp_path: Path) -> None:
    names = [f"{c}_{i}" for c in ("red", "blue", "green") for i in range(4)]
    pics = color_images(tmp_path / "pics", names)
    expected = {it[1] for it in imgs.sample_items(imgs.plan_folder(pics), 5, seed=3)}

    run(openai_stage(openai_server, [str(pics)], sample=5, sample_seed=3, images_per_shard=2), tmp_path / "one")
    for i in range(3):  # three machines of a SLURM array
        stage = openai_stage(openai_server, [str(pics)], sample=5, sample_seed=3, images_per_shard=2)
        run(stage, tmp_path / "three", selection=ShardSelection(3, i))
    run(openai_stage(openai_server, [str(pics)], sample=5, sample_seed=3, images_per_shard=4), tmp_path / "big")

    one = concepts(tmp_path / "one", "served/vlm")
    assert set(one.column("image_id").to_pylist()) == expected and one.num_rows == 5
    assert concepts(tmp_path / "three", "served/vlm").equals(one)
    assert concepts(tmp_path / "big", "served/vlm").equals(one)
    params = StageDir(tmp_path / "one" / "concepts" / "served--vlm").manifest()["params"]
    assert (params["sample"], params["sample_seed"]) == (5, 3)


def test_another_seed_refuses_to_mix_and_no_sample_records_none(openai_server: FakeServer, tmp_path: Path) -> None:
    pics = color_images(tmp_path / "pics", ["red_1", "red_2", "blue_1"])
    run(openai_stage(openai_server, [str(pics)], sample=2, sample_seed=1), tmp_path / "w")
    with pytest.raises(StageMismatchError, match="sample_seed"):
        run(openai_stage(openai_server, [str(pics)], sample=2, sample_seed=2), tmp_path / "w")
    params = openai_stage(openai_server, [str(pics)]).params()
    assert params["sample"] is None and params["sample_seed"] is None
