"""The pairs core over constructed search results: no model, answers known by hand."""

from __future__ import annotations

import numpy as np

from sonify_toolkit import schema
from sonify_toolkit.stages.retrieve import DrawParams, PoolColumns, TopK, build_pairs, concept_items

from .conftest import concept_row

POOL = PoolColumns(
    clip_id=[f"s/f{i}.wav#0" for i in range(6)],
    source=["s"] * 6,
    path=[f"f{i}.wav" for i in range(6)],
    segment=[0] * 6,
    source_sha256=["ab" * 32] * 6,
    lufs=np.linspace(-30, -10, 6),
)
# "dog": few very good matches (rows 4 and 2); "rain": many equal matches (every row)
TOPK = TopK(
    where={"dog": 0, "rain": 1},
    rows=np.array([[4, 2, 0, 1], [0, 1, 2, 3]]),
    similarity=np.array([[0.81, 0.64, 0.01, 0.01], [0.36, 0.36, 0.36, 0.36]], np.float32),
)


def items(rows: list[dict]) -> object:
    return concept_items(schema.table(rows, schema.CONCEPTS), "name")


def test_sources_follow_algorithm_1_and_concept_order() -> None:
    rows = [concept_row(f"i{n}", "v", [("rain", ""), ("dog", "")]) for n in range(200)]
    table, counters = build_pairs(items(rows), TOPK, POOL, DrawParams(seed=1))
    pairs = table.to_pylist()
    assert len(pairs) == 200 and counters["sources"] == 400
    rain = [p["sources"][0] for p in pairs]
    dog = [p["sources"][1] for p in pairs]
    assert {s["concept"] for s in rain} == {"rain"} and {s["concept"] for s in dog} == {"dog"}
    assert {s["clip_id"] for s in dog} == {"s/f4.wav#0", "s/f2.wav#0"}  # only the two above tau
    assert {s["clip_id"] for s in rain} == {f"s/f{i}.wav#0" for i in range(4)}  # all equal: all candidates
    assert all(abs(s["threshold"] - (0.9 + 0.8 + 0.1 + 0.1) / 4) < 1e-6 for s in dog)
    top = next(s for s in dog if s["clip_id"] == "s/f4.wav#0")
    assert abs(top["score"] - 0.9) < 1e-6 and abs(top["similarity"] - 0.81) < 1e-6 and top["clip_lufs"] == -14.0
    share = sum(s["clip_id"] == "s/f4.wav#0" for s in dog) / 200
    assert abs(share - 0.9 / 1.7) < 0.1  # p proportional to r
    again, _ = build_pairs(items(rows[::-1]), TOPK, POOL, DrawParams(seed=1))
    assert again.to_pylist() == pairs  # input order does not matter


def test_rows_without_pairs_are_counted_and_bad_concepts_are_error_rows() -> None:
    rows = [
        concept_row("a", "v", [("dog", ""), ("", "")]),
        concept_row("a", "v", [("dog", "")]),
        concept_row("b", "v", [], keep=False),
        concept_row("c", "v", [], error="timeout"),
        concept_row("d", "v", []),
        concept_row("e", "v", [("", "")]),
    ]
    it = items(rows)
    table, counters = build_pairs(it, TOPK, POOL, DrawParams())
    assert table.column("pair_id").to_pylist() == ["a|v"]
    assert len(table.to_pylist()[0]["sources"]) == 1
    assert counters["images_dropped"] == counters["images_failed_extraction"] == 1
    assert counters["images_without_concepts"] == 1 and counters["pairs_without_sources"] == 1
    assert dict(it.errors.counts) == {"empty_concept_text": 2, "duplicate_pair": 1}
    assert it.errors.rows[0]["item"] == "a|v#1"  # the concept index is kept in the error item


def test_an_assignment_overrides_the_draw_and_keeps_its_numbers() -> None:
    rows = [concept_row("a", "v", [("dog", "")])]
    table, _ = build_pairs(items(rows), TOPK, POOL, DrawParams(), assigned={("a|v", 0): 2})
    src = table.to_pylist()[0]["sources"][0]
    assert src["clip_id"] == "s/f2.wav#0" and abs(src["similarity"] - 0.64) < 1e-6
    assert abs(src["score"] - 0.8) < 1e-6


def test_a_shard_without_concepts_gives_an_empty_typed_table() -> None:
    table, _ = build_pairs(items([concept_row("b", "v", [], keep=False)]), TOPK, POOL, DrawParams())
    assert table.num_rows == 0 and table.schema == schema.PAIRS


def test_a_concept_without_search_result_is_an_error_row() -> None:
    it = items([concept_row("a", "v", [("wind", ""), ("dog", "")])]).only_searched(TOPK.where)
    table, _ = build_pairs(it, TOPK, POOL, DrawParams())
    assert [s["concept"] for s in table.to_pylist()[0]["sources"]] == ["dog"]
    assert it.errors.rows == [{"item": "a|v#0", "reason": "missing_search_result", "detail": "wind"}]
