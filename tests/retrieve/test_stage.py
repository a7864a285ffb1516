"""`sonify retrieve` end to end with a tiny random CLAP: the pairs table, its determinism and its refusals."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from sonify_toolkit import schema
from sonify_toolkit.models.clap import ClapEncoder
from sonify_toolkit.pool_files import load_pool
from sonify_toolkit.shards import StageDir
from sonify_toolkit.stages.retrieve import concept_items

from .conftest import TEXTS, concept_row, sample_concepts, sonify, write_concepts

Rows = Callable[[Path], list[dict[str, Any]]]


def stats(work: Path, stage: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for s in StageDir(work / stage).stats():
        total.update(s["counters"])
    return dict(total)


def test_pairs_table_end_to_end(work: Path, tiny_clap: Path, read_pairs: Rows) -> None:
    rows = sample_concepts()
    write_concepts(work, "vlm-a", [rows[:7], rows[7:]])
    out = sonify("retrieve", "-w", work, "--device", "cpu", "-q")
    pairs = read_pairs(work)
    assert [p["pair_id"] for p in pairs] == sorted(f"img{i:03d}|tiny/vlm-a" for i in range(12))
    counters = stats(work, "pairs")
    assert counters["images_dropped"] == 1
    assert counters["images_failed_extraction"] == 1
    assert counters["images_without_concepts"] == 1
    pool = load_pool(work)
    by_clip = {c: i for i, c in enumerate(pool.segments.column("clip_id").to_pylist())}
    encoder = ClapEncoder(str(tiny_clap), device="cpu")
    for pair in pairs:
        i = int(pair["image_id"][3:])
        assert [s["concept"] for s in pair["sources"]] == [TEXTS[(i + j) % len(TEXTS)][0] for j in range(1 + i % 3)]
        assert pair["seed"] == 0 and pair["image_source"] == f"images/{pair['image_id']}.jpg"
        for s in pair["sources"]:
            row = by_clip[s["clip_id"]]
            text = encoder.embed_text([s["description"]])[0]
            assert abs(float(pool.embeddings[row] @ text) - s["similarity"]) < 1e-4  # CLAP text . audio
            assert s["score"] == np.float32(np.sign(s["similarity"]) * np.sqrt(abs(s["similarity"])))
            assert s["score"] >= s["threshold"] - 1e-6
            assert -24 <= s["target_lufs"] <= -22
            assert s["clip_lufs"] == np.float32(pool.segments.column("lufs")[row].as_py())
    params = json.loads((work / "pairs" / "_stage.json").read_text())["params"]
    assert params["clap"]["model"] == str(tiny_clap) and params["top_k"] == 16 and params["seed"] == 0
    assert params["index"] == "exact" and params["concept_text"] == "description" and params["lufs_min"] == -24
    usage = json.loads((work / "pairs" / "usage.json").read_text())
    assert usage["sources"] == sum(len(p["sources"]) for p in pairs)
    assert "candidates per concept" in out.output
    assert stats(work, "retrieve/search")["texts"] == len(TEXTS)  # each distinct text searched once


def test_one_or_three_machines_give_byte_identical_pairs(work: Path, tmp_path: Path, pool_work: Path) -> None:
    rows = sample_concepts(15)
    write_concepts(work, "vlm-a", [rows[:5], rows[5:10], rows[10:]])
    write_concepts(work, "vlm-b", [[{**r, "vlm": "tiny/vlm-b"} for r in rows[:6]]])
    sonify("retrieve", "-w", work, "--device", "cpu", "-q")
    other = tmp_path / "other"
    shutil.copytree(pool_work / "pool", other / "pool")
    shutil.copytree(work / "concepts", other / "concepts")
    args = ("retrieve", "-w", other, "--device", "cpu", "-q", "--num-shards", 3)
    early = sonify(*args, "--shard-index", 2)  # the single search shard belongs to machine 0
    assert "not complete yet" in early.output and not (other / "pairs").exists()
    for i in (0, 1, 2):
        sonify(*args, "--shard-index", i)
    names = sorted(p.name for p in (work / "pairs").glob("*.parquet"))
    assert names == [f"{i:05d}.parquet" for i in range(4)]
    for name in names:
        assert (work / "pairs" / name).read_bytes() == (other / "pairs" / name).read_bytes()


def test_results_do_not_depend_on_how_concepts_were_sharded(work: Path, tmp_path: Path, pool_work: Path) -> None:
    rows = sample_concepts(10)
    write_concepts(work, "vlm-a", [rows])
    sonify("retrieve", "-w", work, "--device", "cpu", "-q", "--max-reuse", 2)
    other = tmp_path / "other"
    shutil.copytree(pool_work / "pool", other / "pool")
    write_concepts(other, "vlm-a", [rows[i::3] for i in range(3)])
    sonify("retrieve", "-w", other, "--device", "cpu", "-q", "--max-reuse", 2)

    def pairs(w: Path) -> list[dict[str, Any]]:
        out = [
            r
            for i in StageDir(w / "pairs").complete_shards()
            for r in pq.read_table(w / "pairs" / f"{i:05d}.parquet").to_pylist()
        ]
        return sorted(out, key=lambda r: r["pair_id"])

    assert pairs(work) == pairs(other)


def test_reuse_cap_limits_clip_use(work: Path, read_pairs: Rows) -> None:
    rows = [concept_row(f"img{i}", "v", [TEXTS[0]]) for i in range(6)]
    write_concepts(work, "v", [rows])
    out = sonify("retrieve", "-w", work, "--device", "cpu", "-q", "--top-k", 8, "--max-reuse", 1)
    sources = [s for p in read_pairs(work) for s in p["sources"]]
    assert all(s["score"] >= s["threshold"] - 1e-6 for s in sources)  # the cap never goes below the threshold
    topk = pq.read_table(work / "retrieve" / "search" / "topk" / "00000.parquet").to_pylist()[0]
    r = np.sign(topk["similarity"]) * np.sqrt(np.abs(topk["similarity"]))
    n_candidates = int((r >= r.mean() - 1e-9).sum())
    uses = Counter(s["clip_id"] for s in sources)
    assert len(uses) == min(6, n_candidates)  # distinct clips until every candidate is full
    overflow = sum(max(0, n - 1) for n in uses.values())
    assert overflow == max(0, 6 - n_candidates)
    assert f"{overflow:,} sources over it" in out.output
    free = sonify("retrieve", "-w", work, "--device", "cpu", "-q", "--top-k", 8, "--overwrite")
    assert "reuse cap" not in free.output


def test_rerun_skips_and_new_parameters_reuse_the_text_cache(work: Path) -> None:
    write_concepts(work, "vlm-a", [sample_concepts(6)])
    sonify("retrieve", "-w", work, "--device", "cpu", "-q")
    assert stats(work, "retrieve/search")["texts_embedded"] == len(TEXTS)
    out = sonify("retrieve", "-w", work, "--device", "cpu")
    assert "0 done now" in out.output
    refused = sonify("retrieve", "-w", work, "--device", "cpu", "-q", "--top-k", 4, expect=2)
    assert "other parameters" in refused.output
    sonify("retrieve", "-w", work, "--device", "cpu", "-q", "--top-k", 4, "--overwrite")
    counters = stats(work, "retrieve/search")
    assert counters["texts_embedded"] == 0 and counters["texts_from_cache"] == len(TEXTS)


def test_concept_text_modes_choose_what_clap_reads(work: Path) -> None:
    write_concepts(work, "vlm-a", [sample_concepts(6)])
    sonify("retrieve", "-w", work, "--device", "cpu", "-q", "--concept-text", "both")
    texts = pq.read_table(work / "retrieve" / "search" / "topk" / "00000.parquet").column("text").to_pylist()
    assert "dog: a dog barking in the distance" in texts
    items = concept_items(schema.table([concept_row("x", "v", [("dog", "")])], schema.CONCEPTS), "description")
    assert items.texts == ["dog"]  # an empty description falls back to the name


def test_approximate_index_prints_recall(work: Path) -> None:
    write_concepts(work, "vlm-a", [sample_concepts(6)])
    out = sonify("retrieve", "-w", work, "--device", "cpu", "-q", "--index", "hnsw", "--top-k", 4)
    assert "recall@4 (hnsw vs exact)" in out.output


def test_clap_mismatch_is_refused_in_one_line(work: Path) -> None:
    write_concepts(work, "vlm-a", [sample_concepts(3)])
    out = sonify("retrieve", "-w", work, "--clap", "laion/clap-htsat-fused", expect=2)
    assert "differs from the pool's CLAP" in out.output
    assert out.output.count("\n") == 1


def test_missing_concepts_and_unfinished_extraction_are_refused(work: Path) -> None:
    assert "run `sonify extract` first" in sonify("retrieve", "-w", work, expect=2).output
    sd = StageDir(work / "concepts" / "v")
    sd.prepare("extract", {}, 2)
    sd.write_shard(0, {"": schema.table([concept_row("a", "v", [TEXTS[0]])], schema.CONCEPTS)}, {})
    assert "incomplete (1/2 shards)" in sonify("retrieve", "-w", work, expect=2).output


def test_top_k_larger_than_the_pool(work: Path, read_pairs: Rows) -> None:
    write_concepts(work, "vlm-a", [sample_concepts(4)])
    sonify("retrieve", "-w", work, "--device", "cpu", "-q", "--top-k", 10_000)
    pool_size = load_pool(work, with_embeddings=False).segments.num_rows
    topk = pq.read_table(work / "retrieve" / "search" / "topk" / "00000.parquet").to_pylist()
    assert all(sorted(t["rows"]) == list(range(pool_size)) for t in topk)
    assert len(read_pairs(work)) == 4


def test_every_image_dropped_gives_an_empty_pairs_table(work: Path, read_pairs: Rows) -> None:
    write_concepts(work, "vlm-a", [[concept_row("logo", "v", [], keep=False)]])
    sonify("retrieve", "-w", work, "--device", "cpu", "-q")
    assert read_pairs(work) == []
    assert stats(work, "pairs")["images_dropped"] == 1
