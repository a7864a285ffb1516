"""`sonify status`: shards done/total, rows, errors by reason, fingerprints, and the continuing command."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sonify_toolkit.cli import app
from sonify_toolkit.shards import StageDir
from sonify_toolkit.status import workdir_status


def _run(workdir: Path) -> str:
    result = CliRunner().invoke(app, ["status", "--workdir", str(workdir)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


def test_partial_workdir_shows_progress_errors_and_how_to_continue(partial_workdir: Path) -> None:
    states = {s.path: s for s in workdir_status(partial_workdir)}
    assert [s.stage for s in states.values()][:2] == ["pool", "pool-embed"]  # pipeline order
    pairs = states["pairs"]
    assert (pairs.shards_done, pairs.shards_total, pairs.rows) == (1, 2, {"": 8})
    assert pairs.fingerprint == StageDir(partial_workdir / "pairs").manifest()["fingerprint"]
    assert states["pool"].errors == {"corrupt_audio": 1}
    # the command is rebuilt from the recorded parameters through the CLI's own options
    assert pairs.command == f"sonify retrieve --workdir {partial_workdir} --clap /tmp/tiny-clap --top-k 4"
    out = _run(partial_workdir)
    assert "1/2" in out and "2/2" in out and "corrupt_audio: 1" in out and "unparseable_response: 1" in out
    assert pairs.fingerprint in out
    assert "pairs is unfinished (1/2 shards); to continue:" in out
    assert pairs.command in out
    assert "concepts/tiny-vlm-b is unfinished" in out


def test_pool_and_render_commands_use_what_is_recorded(finished_workdir: Path, tmp_path: Path) -> None:
    states = {s.path: s for s in workdir_status(finished_workdir)}
    assert states["pool"].command.startswith("sonify pool fsd50k=/data/fsd50k bbc_sfx=/data/bbc_sfx --workdir")
    assert "--clap /tmp/tiny-clap" in states["pool/clap"].command
    assert "--clap /tmp/tiny-clap" in states["pool"].command  # one command runs both pool stages
    render = states["render"]
    assert render.command.startswith(f"sonify render {finished_workdir / 'pairs'} --source fsd50k=<ROOT_OF_FSD50K>")
    assert f"--out {finished_workdir / 'render'}" in render.command
    assert any("root folder of collection fsd50k" in m for m in render.missing)
    out = _run(finished_workdir)
    assert "every stage that has started is complete" in out and "next: sonify publish --workdir" in out


def test_unfinished_render_says_what_it_cannot_know(finished_workdir: Path, tmp_path: Path) -> None:
    w = tmp_path / "w"
    shutil.copytree(finished_workdir, w)
    (w / "render" / "_stats" / "00000.json").unlink()
    out = _run(w)
    assert "render is unfinished (0/1 shards)" in out
    assert "fill in: the root folder of collection bbc_sfx (only its name is recorded)" in out


def test_empty_and_missing_workdir(tmp_path: Path) -> None:
    assert "no stage has run yet" in _run(tmp_path)
    result = CliRunner().invoke(app, ["status", "--workdir", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no work directory" in result.output


def test_stage_folders_are_found_without_walking_deep_trees(
    finished_workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from sonify_toolkit.stats import find_stage_dirs

    deep = finished_workdir / "render" / "audio" / "ab"
    deep.mkdir(parents=True, exist_ok=True)
    (deep / "cd").mkdir(exist_ok=True)  # a fourth level: never listed
    listed: list[str] = []
    real = os.scandir

    def spy(path):  # type: ignore[no-untyped-def]
        listed.append(Path(path).relative_to(finished_workdir).as_posix())
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    found = find_stage_dirs(finished_workdir)
    assert {"pool", "pool/clap", "pairs", "render"} <= set(found)
    assert listed and max(len(Path(p).parts) for p in listed) <= 2 and "render/audio/ab" not in listed


def test_smoke_run_recorded_only_in_the_pool_manifest_is_loud(finished_workdir: Path, tmp_path: Path) -> None:
    import json

    w = tmp_path / "w"
    shutil.copytree(finished_workdir, w)
    assert "SMOKE RUN" not in _run(w)
    manifest = w / "pool" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["clap"] = {**data.get("clap", {}), "smoke_run": True}  # where `sonify demo` records it
    manifest.write_text(json.dumps(data))
    assert "SMOKE RUN" in _run(w)


def test_recorded_values_with_angle_brackets_are_quoted(tmp_path: Path) -> None:
    import shlex

    from sonify_toolkit.status import continue_command

    manifest = {"stage": "extract", "num_shards": 2, "params": {"vlm": "my vlm <v2>", "images_per_shard": 4}}
    command, missing = continue_command(tmp_path / "w x", "concepts/v", manifest)
    assert command.startswith("sonify extract <IMAGES> --workdir")
    argv = shlex.split(command)
    assert argv[argv.index("--vlm") + 1] == "my vlm <v2>" and argv[argv.index("--workdir") + 1] == str(tmp_path / "w x")
    assert missing == ["images"]
