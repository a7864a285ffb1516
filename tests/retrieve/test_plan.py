"""The columnar plan (`concept_frames`, `concept_items`, `distinct_texts`) against the row-by-row reading it
replaced: the same pairs, concepts, texts, counters and error rows, in the same order, on tables built to
hit every branch (errors, drops, duplicates, empty concepts, every kind of whitespace)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from sonify_toolkit import schema
from sonify_toolkit.stages.retrieve import concept_items, distinct_texts
from sonify_toolkit.stages.retrieve.plan import PY_WHITESPACE, concept_text, retrieve_dir

from .conftest import concept_row, write_concepts


def reference_items(table: pa.Table, mode: str) -> dict[str, Any]:
    """The previous row-by-row `concept_items`, kept verbatim as the reference."""
    out: dict[str, Any] = {k: [] for k in ("pairs", "pair_of", "pair_ids", "index", "names", "descriptions", "texts")}
    counters: Counter[str] = Counter()
    errors: list[tuple[str, str, str]] = []
    rows = sorted(table.to_pylist(), key=lambda r: (f"{r['image_id']}|{r['vlm']}", r["image_id"]))
    seen: set[str] = set()
    for row in rows:
        pair_id = f"{row['image_id']}|{row['vlm']}"
        if row.get("error"):
            counters["images_failed_extraction"] += 1
            continue
        if not row["keep"]:
            counters["images_dropped"] += 1
            continue
        if pair_id in seen:
            errors.append((pair_id, "duplicate_pair", "the same (image, VLM) appears twice in the concepts"))
            continue
        seen.add(pair_id)
        concepts = row["concepts"] or []
        if not concepts:
            counters["images_without_concepts"] += 1
            continue
        p = len(out["pairs"])
        out["pairs"].append(
            {
                "pair_id": pair_id,
                "image_id": row["image_id"],
                "image_source": row.get("image_path"),
                "vlm": row["vlm"],
                "caption": row.get("caption"),
            }
        )
        for ci, c in enumerate(concepts):
            text = concept_text(c.get("name"), c.get("description"), mode)
            if not text:
                errors.append((f"{pair_id}#{ci}", "empty_concept_text", "concept has neither name nor description"))
                continue
            out["pair_of"].append(p)
            out["pair_ids"].append(pair_id)
            out["index"].append(ci)
            out["names"].append(c.get("name"))
            out["descriptions"].append(c.get("description"))
            out["texts"].append(text)
    return {**out, "counters": dict(counters), "errors": errors}


WORDS = ["dog", "rain", "Piano", "crowd", "été", "鳥", ""]
SPACES = [" ", "  ", "\t", "\n", "\xa0", "\u2003", "\u3000", "\x1c", "\x85", "\u200b"]  # \u200b is not whitespace


def random_text(rng: np.random.Generator) -> str | None:
    if rng.random() < 0.08:
        return None
    parts = [str(rng.choice(SPACES)) if rng.random() < 0.3 else "" for _ in range(2)]
    words = [str(rng.choice(WORDS)) for _ in range(int(rng.integers(0, 4)))]
    return parts[0] + str(rng.choice(SPACES)).join(words) + parts[1]


def random_table(seed: int, n: int = 400) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        image = f"img{int(rng.integers(0, n // 2)):04d}"  # repeats: duplicate pairs
        vlm = str(rng.choice(["v/a", "v/b"]))
        concepts = [(random_text(rng), random_text(rng)) for _ in range(int(rng.integers(0, 4)))]
        row = concept_row(image, vlm, [], caption=f"caption {i}")
        row["concepts"] = [{"name": a, "description": b} for a, b in concepts]
        row["keep"] = bool(rng.random() > 0.1)
        row["error"] = str(rng.choice(["", "unparsable_response"])) if rng.random() < 0.15 else None
        rows.append(row)
    return schema.table(rows, schema.CONCEPTS)


def test_the_whitespace_set_is_pythons() -> None:
    assert set(PY_WHITESPACE) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}


@pytest.mark.parametrize("mode", ["description", "name", "both"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_columnar_concept_items_equal_the_row_by_row_reading(mode: str, seed: int) -> None:
    table = random_table(seed)
    got, want = concept_items(table, mode), reference_items(table, mode)
    for name in ("pairs", "pair_of", "pair_ids", "index", "names", "descriptions", "texts"):
        assert getattr(got, name) == want[name], name
    assert dict(got.counters) == want["counters"]
    assert [(r["item"], r["reason"], r["detail"]) for r in got.errors.rows] == want["errors"]
    assert got.errors.table().equals(
        schema.table([dict(zip(("item", "reason", "detail"), e, strict=True)) for e in want["errors"]], schema.ERRORS)
    )
    assert want["errors"] and want["counters"]  # the tables do reach the error branches


def test_distinct_texts_are_sorted_unique_and_cached(tmp_path: Path) -> None:
    write_concepts(tmp_path, "v-a", [random_table(3).to_pylist(), random_table(4).to_pylist()])
    write_concepts(tmp_path, "v-b", [random_table(5).to_pylist()])
    expected = sorted({t for s in (3, 4, 5) for t in reference_items(random_table(s), "both")["texts"]})
    assert distinct_texts(tmp_path, "both") == expected
    cached = list((retrieve_dir(tmp_path) / "plan").glob("texts-*.parquet"))
    assert len(cached) == 1
    assert distinct_texts(tmp_path, "both") == expected  # read back
    write_concepts(tmp_path, "v-b", [random_table(6).to_pylist()])  # new inputs: a new fingerprint
    assert distinct_texts(tmp_path, "both") == sorted(
        {t for s in (3, 4, 6) for t in reference_items(random_table(s), "both")["texts"]}
    )
    assert len(list((retrieve_dir(tmp_path) / "plan").glob("texts-*.parquet"))) == 2
