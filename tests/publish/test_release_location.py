"""No local absolute path reaches a release: the whole pipeline (`sonify demo`: pool, extract with a local
tiny VLM, retrieve, render, publish) under a temporary root, then every release file grepped for that root."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from sonify_toolkit.cli import app
from sonify_toolkit.demo.assets import IMAGES_DIR


def release_text(path: Path) -> bytes:
    """A file's bytes, and for parquet its decoded values and metadata too (compressed pages hide strings)."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        values = {c: table.column(c).to_pylist() for c in table.column_names if c != "audio"}
        data += json.dumps(values, default=str).encode() + str(table.schema.metadata).encode()
    return data


def test_a_release_names_no_local_path(tmp_path: Path) -> None:
    work = tmp_path / "w"
    result = CliRunner().invoke(app, ["demo", "--workdir", str(work), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    release = work / "release"
    files = sorted(p for p in release.rglob("*") if p.is_file() and ".cache" not in p.parts)
    assert {"README.md", "sonify.json", "LICENSE.md"} <= {p.name for p in files}
    local = [str(tmp_path).encode(), str(tmp_path.resolve()).encode(), str(IMAGES_DIR.parent).encode()]
    leaks = {p.relative_to(release).as_posix() for p in files for root in local if root in release_text(p)}
    assert leaks == set()

    pairs = pq.read_table(sorted((release / "data").glob("*.parquet"))).to_pylist()
    assert pairs and all(not p["image_source"].startswith("/") for p in pairs)
    assert all(p["image_source"].split("/")[0] == "images" for p in pairs)  # the extract input's name
    assert {p["vlm"] for p in pairs} == {"llava"}  # a local checkpoint is named by its folder
    card = (release / "README.md").read_text()
    assert "{workdir}/models/clap" in card  # a CLAP given as a folder of the work directory, named relative to it
