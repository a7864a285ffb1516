"""The gallery's pairs are read from the row groups that hold them: the same rows as the loaded table's sample."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq

from sonify_toolkit.report import build_report
from sonify_toolkit.report.build import sample_rows
from sonify_toolkit.stages.publish import build_release
from tests.publish.synthetic import make_workdir, pairs_table


def _gallery_ids(index: Path) -> list[str]:
    html = index.read_text(encoding="utf-8")
    data = re.search(r'<script[^>]*id="gallery-data"[^>]*>(.*?)</script>', html, re.S)
    assert data, "no gallery data in the page"
    return [p["pair_id"] for p in json.loads(data.group(1))["pairs"]]


def test_gallery_is_the_deterministic_sample_of_a_workdir_and_its_release(tmp_path: Path) -> None:
    work = make_workdir(tmp_path, with_render=False)
    loaded = pairs_table(work)
    want = loaded.take(sample_rows(loaded.num_rows, 7)).column("pair_id").to_pylist()
    assert len(want) == 7 and want[0] == loaded.column("pair_id")[0].as_py()
    summary = build_report(work, tmp_path / "html", max_pairs=7)
    assert summary.pairs_shown == 7
    assert _gallery_ids(summary.index) == want
    release = build_release(work, tmp_path / "rel", max_shard_bytes=2_000)  # several data files
    assert len(list((tmp_path / "rel" / "data").glob("*.parquet"))) > 2
    released = [i for f in sorted((tmp_path / "rel" / "data").glob("*.parquet"))
                for i in pq.read_table(f).column("pair_id").to_pylist()]  # fmt: skip
    assert released == loaded.column("pair_id").to_pylist()
    again = build_report(release.folder, tmp_path / "html2", max_pairs=7)
    assert _gallery_ids(again.index) == want
