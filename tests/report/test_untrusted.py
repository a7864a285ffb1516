"""A release is anyone's metadata: image ids never make the report read outside the `--images` roots."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from sonify_toolkit.report import build_report
from sonify_toolkit.stages.publish import build_release
from tests.publish.synthetic import make_workdir


def test_image_ids_cannot_reach_outside_the_image_roots(tmp_path: Path) -> None:
    w = make_workdir(tmp_path, n_images=4, with_render=False)
    release = build_release(w, tmp_path / "release")
    secret = tmp_path / "secret.png"  # an image outside the --images root
    Image.new("RGB", (8, 8), (255, 0, 0)).save(secret)
    shard = next((release.folder / "data").glob("*.parquet"))
    table = pq.read_table(shard)
    hostile = [str(secret), "../secret.png", "../secret"]
    ids = table.column("image_id").to_pylist()
    ids[: len(hostile)] = hostile
    pq.write_table(table.set_column(1, "image_id", pa.array(ids)), shard)
    roots = [tmp_path / "images"]
    summary = build_report(release.folder, tmp_path / "html", image_roots=roots, max_pairs=len(ids))
    assert summary.problems.get("image_not_found", 0) >= len(hostile)
    assert summary.thumbnails == pc.count_distinct(pa.array(ids)).as_py() - summary.problems["image_not_found"]
    for thumb in (tmp_path / "html" / "thumbs").glob("*.jpg"):
        with Image.open(thumb) as im:
            assert im.getpixel((0, 0)) != (255, 0, 0) or im.size != (8, 8)


def test_refuses_to_write_over_a_run_s_own_folders(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sonify_toolkit.cli import app

    w = make_workdir(tmp_path)
    before = sorted((w / "render" / "audio").rglob("*.flac"))
    for out in (w / "render", w, w / "pairs"):
        result = CliRunner().invoke(app, ["report", str(w), "--out", str(out)])
        assert result.exit_code == 2 and "sonify report: error:" in result.output, result.output
    assert sorted((w / "render" / "audio").rglob("*.flac")) == before and before
