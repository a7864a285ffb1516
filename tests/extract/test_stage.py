"""The extract stage end to end: tiny LLaVA (noise) and the loopback server (scripted answers)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sonify_toolkit import schema
from sonify_toolkit.errors import InputError
from sonify_toolkit.executors import ShardSelection
from sonify_toolkit.runner import run_stage
from sonify_toolkit.shards import StageDir
from sonify_toolkit.stages.extract import ExtractStage, vlm_slug

from .conftest import FakeServer, color_images


def run(stage: ExtractStage, workdir: Path, **kw: object):
    return run_stage(stage, workdir, show_progress=False, **kw)  # type: ignore[arg-type]


def concepts(workdir: Path, vlm: str):
    return StageDir(workdir / "concepts" / vlm_slug(vlm)).read_table("", schema.CONCEPTS)


def test_tiny_llava_end_to_end(tiny_llava: Path, awkward_images: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, expected = awkward_images
    stage = ExtractStage(
        vlm=str(tiny_llava),
        inputs=[str(root)],
        device="cpu",
        batch_size=3,
        max_new_tokens=8,
        images_per_shard=5,
        prompt="List at most {max_concepts} sounds as JSON.",  # short: the tiny model's cost is the prompt
    )
    summary = run(stage, tmp_path)
    assert summary.finalized and summary.shards_total == 3
    out = concepts(tmp_path, str(tiny_llava))
    rows = {r["image_id"]: r for r in out.to_pylist()}
    assert sorted(rows) == sorted(str(Path(r).with_suffix("")) for r in expected)
    assert out.column("image_id").to_pylist() == sorted(rows)  # plan order
    for rel, outcome in expected.items():
        r = rows[str(Path(rel).with_suffix(""))]
        assert r["vlm"] == tiny_llava.name and r["image_path"] == str(root / rel)  # a local checkpoint: its name
        if outcome == "ok":  # noise: unparsable after one retry (an error row) or parsed; never a crash
            assert r["raw_response"] is not None
            assert (r["error"] is None) == (r["drop_reason"] != "unparsable_response")
        else:
            assert r["drop_reason"] == outcome and r["error"] and not r["keep"] and r["raw_response"] is None
    errors = StageDir(tmp_path / "concepts" / vlm_slug(str(tiny_llava))).read_table("errors", schema.ERRORS)
    assert sorted(errors.column("item").to_pylist()) == sorted(
        r["image_id"] for r in rows.values() if r["error"] is not None
    )
    stats = StageDir(tmp_path / "concepts" / vlm_slug(str(tiny_llava))).stats()
    assert sum(s["counters"]["generated_tokens"] for s in stats) > 0
    assert all(s["images_per_second"] and s["tokens_per_second"] for s in stats if s["counters"].get("images"))
    assert "images/s" in summary.facts["throughput"] and "per worker" in summary.facts["throughput"]


def openai_stage(server: FakeServer, inputs: list[str], **kw: object) -> ExtractStage:
    opts = dict(
        vlm="served/vlm",
        inputs=inputs,
        engine="openai",
        base_url=server.url,
        api_key="sk-do-not-leak",
        concurrency=3,
        max_retries=2,
        images_per_shard=3,
    )
    return ExtractStage(**(opts | kw))  # type: ignore[arg-type]


def test_openai_keep_drop_errors_and_no_key_leak(openai_server: FakeServer, tmp_path: Path) -> None:
    names = ["red_1", "blue_1", "green_1", "black_1", "red_2", "green_2", "red_3"]
    pics = color_images(tmp_path / "pics", names)
    (pics / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    summary = run(openai_stage(openai_server, [str(pics)]), tmp_path / "w")
    rows = {r["image_id"]: r for r in concepts(tmp_path / "w", "served/vlm").to_pylist()}
    assert rows["red_1"]["keep"] and rows["red_1"]["caption"] == "A dog next to a river."
    assert rows["red_1"]["concepts"] == [
        {"name": "dog", "description": "a dog barking"},
        {"name": "river", "description": "water flowing"},
    ]
    assert (rows["blue_1"]["keep"], rows["blue_1"]["drop_reason"]) == (False, "non_sonic:logo")
    assert (rows["green_1"]["keep"], rows["green_1"]["drop_reason"]) == (False, "no_sounding_concepts")
    assert rows["green_1"]["error"] is None
    assert rows["black_1"]["drop_reason"] == "unparsable_response" and "retry" in rows["black_1"]["error"]
    assert rows["broken"]["drop_reason"] == "unreadable_image"
    assert summary.errors == {"unparsable_response": 1, "unreadable_image": 1}
    assert summary.counters["kept"] == 3 and summary.counters["retried"] == 1
    # black_1 was asked twice (greedy, then sampled); the broken file never reached the server
    assert openai_server.count() == len(names) + 1
    for f in (tmp_path / "w").rglob("*"):
        if f.is_file():
            assert b"sk-do-not-leak" not in f.read_bytes(), f
    manifest = json.loads((tmp_path / "w" / "concepts" / "served--vlm" / "_stage.json").read_text())
    assert "api_key" not in manifest["params"] and "base_url" not in manifest["params"]
    assert "sk-do-not-leak" not in repr(openai_stage(openai_server, [str(pics)]))


def test_resume_sends_no_finished_image_again(openai_server: FakeServer, tmp_path: Path) -> None:
    pics = color_images(tmp_path / "pics", [f"red_{i}" for i in range(7)])
    w = tmp_path / "w"
    stage = openai_stage(openai_server, [str(pics)])
    first = run(stage, w)
    assert first.shards_done_now == 3 and openai_server.count() == 7
    sd = StageDir(w / "concepts" / "served--vlm")
    table_before = pq.read_table(sd.table_path("", 1))
    sd.stats_path(1).unlink()  # as if the run was killed while shard 1 was in flight
    again = run(openai_stage(openai_server, [str(pics)]), w)
    assert again.shards_done_now == 1 and again.shards_skipped == 2
    assert openai_server.count() == 7 + 3  # only shard 1's three images were sent again
    assert pq.read_table(sd.table_path("", 1)).equals(table_before)
    assert run(openai_stage(openai_server, [str(pics)]), w).shards_done_now == 0 and openai_server.count() == 10


def test_machine_split_gives_the_same_tables(openai_server: FakeServer, tmp_path: Path) -> None:
    pics = color_images(tmp_path / "pics", ["red_1", "blue_1", "green_1", "red_2", "blue_2", "green_2", "red_3"])
    run(openai_stage(openai_server, [str(pics)]), tmp_path / "one")
    for i in range(2):
        run(openai_stage(openai_server, [str(pics)]), tmp_path / "two", selection=ShardSelection(2, i))
    a, b = concepts(tmp_path / "one", "served/vlm"), concepts(tmp_path / "two", "served/vlm")
    assert a.equals(b)


def test_changed_prompt_refuses_to_mix(openai_server: FakeServer, tmp_path: Path) -> None:
    from sonify_toolkit.shards import StageMismatchError

    pics = color_images(tmp_path / "pics", ["red_1"])
    run(openai_stage(openai_server, [str(pics)]), tmp_path)
    with pytest.raises(StageMismatchError, match="prompt"):
        run(openai_stage(openai_server, [str(pics)], prompt="just list sounds, {max_concepts} at most"), tmp_path)


def test_vlm_slugs() -> None:
    assert vlm_slug("llava-hf/llava-1.5-7b-hf") == "llava-hf--llava-1.5-7b-hf"
    assert vlm_slug("Qwen/Qwen2.5-VL-7B-Instruct") == "Qwen--Qwen2.5-VL-7B-Instruct"
    assert vlm_slug("/models/my vlm/") == "my--vlm"


def test_openai_without_url_is_refused() -> None:
    with pytest.raises(InputError, match="base-url"):
        ExtractStage(engine="openai", inputs=["x"])


def test_tar_and_hf_dataset_inputs_through_the_stage(openai_server: FakeServer, tmp_path: Path) -> None:
    import datasets
    from PIL import Image

    from .conftest import COLORS
    from .test_images import make_sa1b_tar

    tar = make_sa1b_tar(tmp_path / "sa_000000.tar", [223750, 7])
    ds = datasets.Dataset.from_dict(
        {"key": ["k-red", "k-blue"], "img": [Image.new("RGB", (20, 20), COLORS[c]) for c in ("red", "blue")]},
        features=datasets.Features({"key": datasets.Value("string"), "img": datasets.Image()}),
    )
    ds.save_to_disk(str(tmp_path / "hf"))
    stage = openai_stage(
        openai_server, [str(tar)], hf_dataset=str(tmp_path / "hf"), image_column="img", id_column="key"
    )
    run(stage, tmp_path / "w")
    rows = {r["image_id"]: r for r in concepts(tmp_path / "w", "served/vlm").to_pylist()}
    assert sorted(rows) == ["k-blue", "k-red", "sa_223750", "sa_7"]
    assert rows["sa_7"]["image_path"] == f"{tar}::sa_7.jpg"
    assert rows["k-red"]["image_path"] == f"hf://{tmp_path / 'hf'}/train#0" and rows["k-red"]["keep"]
    assert rows["k-blue"]["drop_reason"] == "non_sonic:logo"


def test_process_pool_matches_inline(openai_server: FakeServer, tmp_path: Path) -> None:
    from sonify_toolkit.executors import local_executor

    pics = color_images(tmp_path / "pics", ["red_1", "blue_1", "green_1", "red_2", "blue_2"])
    run(openai_stage(openai_server, [str(pics)], images_per_shard=2), tmp_path / "a")
    run(openai_stage(openai_server, [str(pics)], images_per_shard=2), tmp_path / "b", executor=local_executor(2))
    assert concepts(tmp_path / "a", "served/vlm").equals(concepts(tmp_path / "b", "served/vlm"))


def test_retry_seeds_belong_to_the_image_not_its_batch(openai_server: FakeServer, tmp_path: Path) -> None:
    """Unparsable (dark) images are retried sampled; each with the same seed whatever the batch size."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    pics = tmp_path / "pics"
    pics.mkdir()
    for k in range(6):
        Image.new("RGB", (24, 24), (10 * k, 0, 0)).save(pics / f"dark_{k}.png")

    def retry_seeds() -> dict[int, int]:
        out = {}
        for body in openai_server.requests:
            if "seed" in body:
                url = body["messages"][0]["content"][0]["image_url"]["url"]
                img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
                out[round(float(np.asarray(img)[..., 0].mean()) / 10)] = body["seed"]
        openai_server.requests.clear()
        return out

    run(openai_stage(openai_server, [str(pics)], concurrency=1, images_per_shard=6), tmp_path / "a")  # batches of 4
    first = retry_seeds()
    run(openai_stage(openai_server, [str(pics)], concurrency=3, images_per_shard=6), tmp_path / "b")  # one batch
    assert sorted(first) == list(range(6)) and retry_seeds() == first
    assert len(set(first.values())) == 6


def test_fingerprint_records_the_resolved_precision() -> None:
    """auto is fp32 on CPU and bf16 on GPU: a run resumed on the other must refuse to mix answers."""
    dtype = {d: ExtractStage(inputs=["x"], device="cpu", dtype=d).params()["dtype"] for d in ("auto", "fp32", "bf16")}
    assert dtype == {"auto": "float32", "fp32": "float32", "bf16": "bfloat16"}
    assert ExtractStage(inputs=["x"], device="cuda", dtype="auto").params()["dtype"] == "bfloat16"
    assert (
        ExtractStage(inputs=["x"], engine="openai", base_url="http://h/v1", dtype="bf16").params()["dtype"] == "server"
    )
