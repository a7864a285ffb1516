"""`sonify extract` through Typer's CliRunner: both engines, several VLMs, errors as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sonify_toolkit import schema
from sonify_toolkit.cli import app as sonify_app
from sonify_toolkit.errors import EXIT_ITEM_ERRORS
from sonify_toolkit.shards import StageDir

from .conftest import FakeServer, color_images


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return sonify_app  # the real `sonify` app: its usage errors are one line too


def test_transformers_engine_cli(app: typer.Typer, tiny_llava: Path, tmp_path: Path) -> None:
    pics = color_images(tmp_path / "pics", ["red_1", "green_1", "blue_1"])
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Name up to {max_concepts} sounds.")
    args = ["extract", str(pics), "-w", str(tmp_path / "w"), "--vlm", str(tiny_llava), "--device", "cpu"]
    args += ["--max-new-tokens", "6", "--batch-size", "2", "--prompt-file", str(prompt), "--quiet"]
    res = CliRunner().invoke(app, args)
    sd = StageDir(tmp_path / "w" / "concepts" / "llava")
    table = sd.read_table("", schema.CONCEPTS)
    errors = sum(e is not None for e in table.column("error").to_pylist())  # noise: unparsable answers are items
    assert res.exit_code == (EXIT_ITEM_ERRORS if errors else 0), res.output
    assert "images/s" in res.output and "tokens/s" in res.output
    assert table.num_rows == 3
    assert sd.manifest()["params"]["prompt"] == "Name up to 5 sounds."


def test_openai_engine_cli_two_vlms_key_from_env(app: typer.Typer, openai_server: FakeServer, tmp_path: Path) -> None:
    pics = color_images(tmp_path / "pics", ["red_1", "blue_1", "green_1"])
    args = ["extract", str(pics), "-w", str(tmp_path / "w"), "--engine", "openai", "--base-url", openai_server.url]
    args += ["--vlm", "org/vlm-a", "--vlm", "org/vlm-b", "--non-sonic", "logo,poster", "--quiet"]
    res = CliRunner().invoke(app, args, env={"OPENAI_API_KEY": "sk-env-secret"})
    assert res.exit_code == 0, res.output
    assert "sk-env-secret" not in res.output
    assert {h["Authorization"] for h in openai_server.headers} == {"Bearer sk-env-secret"}
    models = {b["model"] for b in openai_server.requests}
    assert models == {"org/vlm-a", "org/vlm-b"}
    for slug, vlm in (("org--vlm-a", "org/vlm-a"), ("org--vlm-b", "org/vlm-b")):
        t = StageDir(tmp_path / "w" / "concepts" / slug).read_table("", schema.CONCEPTS)
        assert set(t.column("vlm").to_pylist()) == {vlm}
        assert t.column("keep").to_pylist() == [False, False, True]  # blue (logo), green (nothing), red


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give image folders"),
        (["/no/such/folder"], "does not exist"),
        (["{pics}", "--engine", "openai"], "--base-url"),
        (["{pics}", "--engine", "nope"], "'nope' is not one of 'transformers', 'openai'"),
        (["{pics}", "--dtype", "fp8"], "'fp8' is not one of 'auto', 'fp32', 'bf16', 'fp16'"),
        (["{pics}", "--prompt-file", "/no/such/prompt.txt"], "No such file or directory: '/no/such/prompt.txt'"),
    ],
)
def test_user_errors_are_one_line(app: typer.Typer, tmp_path: Path, extra: list[str], message: str) -> None:
    pics = color_images(tmp_path / "pics", ["red_1"])
    args = ["extract", "-w", str(tmp_path / "w"), *[a.replace("{pics}", str(pics)) for a in extra]]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_a_server_refusing_every_request_stops_with_one_line_and_resumes(
    app: typer.Typer, openai_server: FakeServer, tmp_path: Path
) -> None:
    pics = color_images(tmp_path / "pics", ["red_1", "green_1"])
    args = ["extract", str(pics), "-w", str(tmp_path / "w"), "--engine", "openai", "--base-url", openai_server.url]
    args += ["--vlm", "org/typo", "--quiet"]
    openai_server.script = ["404"] * 2
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "HTTP 404" in res.output and "Traceback" not in res.output
    sd = StageDir(tmp_path / "w" / "concepts" / "org--typo")
    assert sd.complete_shards() == []  # no error rows standing in for the images
    assert CliRunner().invoke(app, args).exit_code == 0
    assert sd.read_table("", schema.CONCEPTS).column("keep").to_pylist() == [False, True]
