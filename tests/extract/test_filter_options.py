"""The non-sonic filter as a choice: whole-word or substring matching, own caption or another VLM's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sonify_toolkit import concepts as cp
from sonify_toolkit import schema
from sonify_toolkit.cli.extract import extract
from sonify_toolkit.errors import EXIT_ITEM_ERRORS
from sonify_toolkit.shards import StageDir

from .conftest import FakeServer, answer_by_color, color_images

DOG = [{"name": "dog", "description": "a dog barking"}]


@pytest.mark.parametrize(
    ("caption", "word", "substring"),
    [
        ("A dog under a road sign.", "non_sonic:sign", "non_sonic:sign"),
        ("Two Signs by a road.", "non_sonic:sign", "non_sonic:sign"),
        ("A dog beside a modern design.", None, "non_sonic:sign"),  # 'design' contains 'sign'
        ("An iconic bridge with traffic signals.", None, "non_sonic:icon"),
        ("A dog in a field.", None, None),
    ],
)
def test_word_and_substring_matching(caption: str, word: str | None, substring: str | None) -> None:
    assert cp.decide(caption, DOG, match="word") == (word is None, word)
    assert cp.decide(caption, DOG, match="substring") == (substring is None, substring)


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("extract")(extract)

    @app.callback()
    def _root() -> None:
        pass

    return app


def two_vlms(body: dict[str, Any]) -> str:
    """'org/llava' answers by colour (blue: a logo caption; black: garbage); 'org/cog' sees sounds everywhere."""
    if body["model"] == "org/llava":
        return answer_by_color(body)
    return '{"caption": "A wall by a road.", "sounds": [{"name": "traffic", "description": "cars passing"}]}'


def manifest(workdir: Path, slug: str) -> dict[str, Any]:
    return json.loads((workdir / "concepts" / slug / "_stage.json").read_text())


def rows(workdir: Path, slug: str) -> dict[str, dict[str, Any]]:
    return {r["image_id"]: r for r in StageDir(workdir / "concepts" / slug).read_table("", schema.CONCEPTS).to_pylist()}


def test_the_papers_rule_llavas_caption_filters_every_vlm(
    app: typer.Typer, openai_server: FakeServer, tmp_path: Path
) -> None:
    openai_server.answer = two_vlms
    pics = color_images(tmp_path / "pics", ["red_1", "blue_1", "black_1"])
    w = tmp_path / "w"
    base = ["extract", str(pics), "-w", str(w), "--engine", "openai", "--base-url", openai_server.url, "--quiet"]
    res = CliRunner().invoke(
        app, [*base, "--vlm", "org/llava", "--vlm", "org/cog", "--filter-caption-from", "org/llava"]
    )
    assert res.exit_code == EXIT_ITEM_ERRORS, res.output  # llava's garbage answer for black_1 is an error row

    llava = {
        r["image_id"]: r for r in StageDir(w / "concepts" / "org--llava").read_table("", schema.CONCEPTS).to_pylist()
    }
    cog = {r["image_id"]: r for r in StageDir(w / "concepts" / "org--cog").read_table("", schema.CONCEPTS).to_pylist()}
    assert (
        llava["blue_1"]["drop_reason"] == "non_sonic:logo" and llava["black_1"]["drop_reason"] == "unparsable_response"
    )
    assert cog["red_1"]["keep"] and cog["red_1"]["caption"] == "A wall by a road."  # the row is still cog's own
    assert cog["blue_1"]["drop_reason"] == "non_sonic:logo"  # llava's caption named a logo
    assert cog["black_1"]["drop_reason"] == "no_filter_caption"  # llava has no caption: the rule cannot apply
    assert manifest(w, "org--llava")["params"]["filter_caption_from"] == "own"
    params = manifest(w, "org--cog")["params"]
    assert params["filter_caption_from"] == "org/llava" and params["keyword_match"] == "word"
    assert params["filter_caption_run"] == manifest(w, "org--llava")["fingerprint"]

    # the default, each VLM's own caption: cog keeps every image
    res = CliRunner().invoke(app, [*base, "-w", str(tmp_path / "own"), "--vlm", "org/cog"])
    assert res.exit_code == 0, res.output
    own = StageDir(tmp_path / "own" / "concepts" / "org--cog").read_table("", schema.CONCEPTS)
    assert own.column("keep").to_pylist() == [True, True, True]
    assert manifest(tmp_path / "own", "org--cog")["params"]["filter_caption_from"] == "own"


def test_a_source_that_cannot_serve_is_one_line(app: typer.Typer, openai_server: FakeServer, tmp_path: Path) -> None:
    pics = color_images(tmp_path / "pics", ["red_1", "green_1"])
    w = tmp_path / "w"
    base = ["extract", "-w", str(w), "--engine", "openai", "--base-url", openai_server.url, "--quiet"]
    res = CliRunner().invoke(app, [*base, str(pics), "--vlm", "org/cog", "--filter-caption-from", "org/llava"])
    assert res.exit_code == 2 and "no extract run at" in res.output and "Traceback" not in res.output

    assert CliRunner().invoke(app, [*base, str(pics), "--vlm", "org/llava"]).exit_code == 0
    (pics / "extra").mkdir()
    color_images(pics / "extra", ["blue_9"])  # an image llava never saw
    res = CliRunner().invoke(app, [*base, str(pics), "--vlm", "org/cog", "--filter-caption-from", "org/llava"])
    assert res.exit_code == 2 and "1 of 3 images have no row there" in res.output

    (w / "concepts" / "org--llava" / "_stats" / "00000.json").unlink()  # an unfinished source
    res = CliRunner().invoke(app, [*base, str(pics), "--vlm", "org/cog", "--filter-caption-from", "org/llava"])
    assert res.exit_code == 2 and "unfinished" in res.output


def test_substring_matching_through_the_cli(app: typer.Typer, openai_server: FakeServer, tmp_path: Path) -> None:
    openai_server.answer = lambda body: '{"caption": "A dog near a graphic design.", "sounds": [{"name": "dog"}]}'
    pics = color_images(tmp_path / "pics", ["red_1"])
    base = ["extract", str(pics), "--engine", "openai", "--base-url", openai_server.url, "--vlm", "org/v", "--quiet"]
    assert CliRunner().invoke(app, [*base, "-w", str(tmp_path / "a")]).exit_code == 0
    res = CliRunner().invoke(app, [*base, "-w", str(tmp_path / "b"), "--keyword-match", "substring"])
    assert res.exit_code == 0, res.output
    word = StageDir(tmp_path / "a" / "concepts" / "org--v").read_table("", schema.CONCEPTS).to_pylist()[0]
    sub = StageDir(tmp_path / "b" / "concepts" / "org--v").read_table("", schema.CONCEPTS).to_pylist()[0]
    assert word["keep"] and (sub["keep"], sub["drop_reason"]) == (False, "non_sonic:sign")
    assert manifest(tmp_path / "b", "org--v")["params"]["keyword_match"] == "substring"
    res = CliRunner().invoke(app, [*base, "-w", str(tmp_path / "c"), "--keyword-match", "fuzzy"])
    assert res.exit_code == 2 and "fuzzy" in res.output
