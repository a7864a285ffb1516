"""The run's numbers: arrow-side counting agrees with a plain Python count, over several chunks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from sonify_toolkit import schema
from sonify_toolkit.plots import write_plots
from sonify_toolkit.stats import RunData, compute_stats, reuse_counts


def _pairs(names: list[list[str]], start: int) -> pa.Table:
    rows = []
    for i, concepts in enumerate(names, start):
        sources = [
            {"concept": c, "clip_id": f"{'bbc' if j else 'fsd'}/f{(i + j) % 3}.wav#0", "source": "bbc" if j else "fsd",
             "similarity": 0.1 * j, "score": None, "target_lufs": -20.0}
            for j, c in enumerate(concepts)
        ]  # fmt: skip
        rows.append({"pair_id": f"im{i % 4}|v{i % 2}", "image_id": f"im{i % 4}", "vlm": f"v{i % 2}", "seed": 0,
                     "sources": sources})  # fmt: skip
    return schema.table(rows, schema.PAIRS)


def test_counts_match_python_over_chunks(tmp_path: Path) -> None:
    a = _pairs([["Dog", " rain"], ["dog "], []], 0)
    b = _pairs([["RAIN", "dog", "wind"], ["wind"]], 3)
    pairs = pa.concat_tables([a, b])
    assert pairs.column("sources").num_chunks == 2
    stats = compute_stats(RunData(origin=tmp_path, kind="workdir", pairs=pairs))
    rows = pairs.to_pylist()
    sources = [s for r in rows for s in r["sources"]]
    c = stats["counts"]
    assert c["pairs"] == 5 and c["sources"] == len(sources) == 7
    assert c["images"] == len({r["image_id"] for r in rows})
    assert c["pairs_per_vlm"] == dict(sorted(Counter(r["vlm"] for r in rows).items()))
    assert c["sources_per_collection"] == {"bbc": 3, "fsd": 4}
    assert stats["top_concepts"] == [["dog", 3], ["rain", 2], ["wind", 2]]  # case and spaces merged
    assert c["distinct_concepts"] == 3
    assert stats["concepts_per_pair"]["histogram"] == {"0": 1, "1": 2, "2": 1, "3": 1}
    uses = Counter(s["clip_id"] for s in sources)
    assert stats["clip_usage"]["distinct_clips"] == len(uses)
    assert stats["clip_usage"]["max_reuse"] == max(uses.values())
    assert sorted(reuse_counts(pairs).tolist()) == sorted(uses.values())
    assert stats["distributions"]["score"] is None  # all null: no figure, no NaN
    assert np.isclose(stats["distributions"]["similarity"]["max"], 0.2)
    assert set(write_plots(RunData(origin=tmp_path, kind="workdir", pairs=pairs), tmp_path / "p", stats)) >= {
        "clip_reuse",
        "top_concepts",
    }


def test_empty_pairs_table(tmp_path: Path) -> None:
    stats = compute_stats(RunData(origin=tmp_path, kind="workdir", pairs=schema.PAIRS.empty_table()))
    assert stats["counts"]["sources"] == 0 and stats["top_concepts"] == []
    assert stats["clip_usage"]["distinct_clips"] == 0


def test_license_file_lists_the_image_collections_the_card_lists(tmp_path: Path) -> None:
    from dataset_card import render_license

    pairs = _pairs([["dog"]], 0)
    pairs = pairs.set_column(2, "image_source", pa.array(["my_photos"]))
    run = RunData(origin=tmp_path, kind="workdir", pairs=pairs)
    text = render_license(run, compute_stats(run))
    assert "## my_photos" in text and "## fsd" in text
