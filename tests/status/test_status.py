"""`sonify status`: shards done/total, rows, errors by reason, fingerprints, and the command that continues a run."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sonify_toolkit.cli import app
from sonify_toolkit.shards import StageDir
from sonify_toolkit.status import continue_command, workdir_status


def _run(workdir: Path) -> str:
    result = CliRunner().invoke(app, ["status", "--workdir", str(workdir)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


def record_argv(stage_dir: Path, argv: list[str]) -> None:
    """What every stage writes into its _stage.json: the command line that started it."""
    manifest = StageDir(stage_dir).manifest_path
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "argv": argv}))


def test_partial_workdir_shows_progress_errors_and_how_to_continue(partial_workdir: Path, tmp_path: Path) -> None:
    w = tmp_path / "work dir"
    shutil.copytree(partial_workdir, w)
    argv = ["sonify", "retrieve", "-w", str(w), "--top-k", "4", "--clap", "/models/my clap"]
    record_argv(w / "pairs", argv)
    states = {s.path: s for s in workdir_status(w)}
    assert [s.stage for s in states.values()][:2] == ["pool", "pool-embed"]  # pipeline order
    pairs = states["pairs"]
    assert (pairs.shards_done, pairs.shards_total, pairs.rows) == (1, 2, {"": 8})
    assert pairs.fingerprint == StageDir(w / "pairs").manifest()["fingerprint"]
    assert states["pool"].errors == {"corrupt_audio": 1}
    assert pairs.command == shlex.join(argv) and shlex.split(pairs.command) == argv  # quoted, then read back whole
    assert states["concepts/tiny-vlm-b"].command is None  # made before stages recorded their command
    out = _run(w)
    assert "1/2" in out and "2/2" in out and "corrupt_audio: 1" in out and "unparseable_response: 1" in out
    assert pairs.fingerprint in out
    assert f"pairs is unfinished (1/2 shards); to continue:\n  {pairs.command}\n" in out
    assert "concepts/tiny-vlm-b is unfinished" in out
    assert (
        "rerun `sonify extract` with the same inputs and options as the first run "
        "(stage extract: concepts/tiny-vlm-b/_stage.json records no command)"
    ) in out


def test_finished_workdir_points_to_publish(finished_workdir: Path) -> None:
    out = _run(finished_workdir)
    assert "every stage that has started is complete" in out and "next: sonify publish --workdir" in out
    assert "to continue" not in out


def test_unfinished_render_prints_its_recorded_command(finished_workdir: Path, tmp_path: Path) -> None:
    w = tmp_path / "w"
    shutil.copytree(finished_workdir, w)
    (w / "render" / "_stats" / "00000.json").unlink()
    argv = ["sonify", "render", "work/pairs", "--source", "bbc_sfx=/data/BBC SFX", "--out", "work/render"]
    record_argv(w / "render", argv)
    out = _run(w)
    assert "render is unfinished (0/1 shards); to continue:" in out
    assert "  sonify render work/pairs --source 'bbc_sfx=/data/BBC SFX' --out work/render\n" in out


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({"argv": ["sonify", "extract", "imgs/", "-w", "work"]}, "sonify extract imgs/ -w work"),
        ({"argv": ["sonify", "extract", "my imgs", "--vlm", "a <v2>"]}, "sonify extract 'my imgs' --vlm 'a <v2>'"),
        ({"stage": "extract", "params": {"vlm": "x"}}, None),  # an older run: nothing to print back
        ({"argv": "sonify extract imgs/"}, None),  # not a list of arguments: never guessed at
        ({"argv": ["sonify", 3]}, None),
        ({"argv": []}, None),
    ],
)
def test_the_recorded_argv_is_quoted_back(manifest: dict, expected: str | None) -> None:
    assert continue_command(manifest) == expected


def test_status_does_not_import_the_cli() -> None:
    code = (
        "import sys, sonify_toolkit.status; print(sorted(m for m in sys.modules if m.startswith('sonify_toolkit.cli')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_empty_and_missing_workdir(tmp_path: Path) -> None:
    empty = CliRunner().invoke(app, ["status", "--workdir", str(tmp_path)])  # no marker: not a work directory
    assert empty.exit_code == 2 and "is not a sonify work directory" in empty.output
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
    w = tmp_path / "w"
    shutil.copytree(finished_workdir, w)
    assert "SMOKE RUN" not in _run(w)
    manifest = w / "pool" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["clap"] = {**data.get("clap", {}), "smoke_run": True}  # where `sonify demo` records it
    manifest.write_text(json.dumps(data))
    assert "SMOKE RUN" in _run(w)
