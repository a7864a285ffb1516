"""`sonify render` end to end through the Typer app."""

from __future__ import annotations

from typer.testing import CliRunner

from sonify_toolkit.cli import app
from sonify_toolkit.errors import EXIT_ITEM_ERRORS

from .conftest import pair, read_dir_bytes, table_of, write_pairs


def test_cli_end_to_end_with_workers_and_errors(good_pairs, make_source, roots, tmp_path):
    rows = [*good_pairs, pair("lost|v", [make_source("alpha", "tones/b1k.flac") | {"path": "gone.wav"}])]
    folder = write_pairs(tmp_path / "pairs", rows)
    src = ["--source", f"alpha={roots['alpha']}", "--source", f"beta={roots['beta']}"]
    runner = CliRunner()
    one = runner.invoke(app, ["render", str(folder), *src, "--out", str(tmp_path / "one"), "-q", "--shard-size", "4"])
    assert one.exit_code == EXIT_ITEM_ERRORS, one.output  # finished, with one error row
    assert "missing in alpha" in one.output and "1 file(s) (missing_file: 1)" in one.output
    assert "rendered" in one.output and "10 of 11 pairs" in one.output
    two = runner.invoke(
        app,
        ["render", str(folder), *src, "--out", str(tmp_path / "two"), "-q", "--shard-size", "4", "--workers", "2"],
    )
    assert two.exit_code == EXIT_ITEM_ERRORS, two.output
    assert read_dir_bytes(tmp_path / "one", "audio/**/*") == read_dir_bytes(tmp_path / "two", "audio/**/*")
    assert table_of(tmp_path / "one", "index").equals(table_of(tmp_path / "two", "index"))
    again = runner.invoke(app, ["render", str(folder), *src, "--out", str(tmp_path / "one"), "-q", "--shard-size", "4"])
    assert again.exit_code == EXIT_ITEM_ERRORS and "0 done now, 3 skipped" in again.output


def test_cli_refuses_bad_arguments_in_one_line(good_pairs, roots, tmp_path):
    folder = write_pairs(tmp_path / "pairs", good_pairs[:2])
    runner = CliRunner()
    cases = [
        (["render", str(tmp_path / "nope"), "--source", f"alpha={roots['alpha']}"], "neither a folder"),
        (["render", str(folder), "--source", "alpha"], "NAME=VALUE"),
        (["render", str(folder), "--source", f"alpha={tmp_path / 'no-root'}"], "is not a folder"),
        (["render", str(folder), "--source", f"alpha={roots['alpha']}", "--format", "mp3"], "--format"),
    ]
    (tmp_path / "w" / "pairs").mkdir(parents=True)
    (tmp_path / "w" / "pairs" / "_stage.json").write_text('{"stage": "retrieve"}')
    overwrite_pairs = ["render", str(folder), "--source", f"alpha={roots['alpha']}", "--overwrite"]
    cases.append(([*overwrite_pairs, "--out", str(tmp_path / "w" / "pairs")], "holds 'retrieve' output"))
    # a folder render did not make (here the work dir around the pairs): --overwrite would delete all of it
    cases.append(([*overwrite_pairs, "--out", str(tmp_path / "w")], "not empty and was not made by render"))
    for args, message in cases:
        out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
        result = runner.invoke(app, [*args, *out, "-q"])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert (tmp_path / "w" / "pairs" / "_stage.json").exists()
