"""The CLI's one error policy: a SonifyError (or an OSError naming a file) is one line and exit 2; anything else
is a bug and keeps its traceback (exit 1), even a ValueError such as pyarrow's ArrowInvalid."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from sonify_toolkit.cli.common import CliError, one_line_errors, parse_assignments
from sonify_toolkit.errors import EXIT_BUG, EXIT_CANNOT_RUN, InputError, ModelLoadError, StageMismatchError


def app_raising(exc: BaseException) -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command("go")
    @one_line_errors("go")
    def go() -> None:
        raise exc

    @app.callback()
    def _root() -> None:  # keeps `go` a subcommand, as in the real `sonify` app
        pass

    return app


@pytest.mark.parametrize(
    "exc",
    [
        InputError("--thing 3 is not a thing\nsecond line, never shown"),
        StageMismatchError("--thing 3 is not a thing"),
        ModelLoadError("--thing 3 is not a thing"),
        CliError("--thing 3 is not a thing"),
    ],
)
def test_a_sonify_error_is_one_line_and_exit_2(exc: Exception) -> None:
    result = CliRunner().invoke(app_raising(exc), ["go"])
    assert result.exit_code == EXIT_CANNOT_RUN == 2
    assert result.output == "sonify go: error: --thing 3 is not a thing\n"


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    try:
        (tmp_path / "nope.csv").read_text()
    except FileNotFoundError as exc:
        result = CliRunner().invoke(app_raising(exc), ["go"])
    assert result.exit_code == 2
    assert result.output.startswith("sonify go: error: [Errno 2] No such file or directory:")
    assert "nope.csv" in result.output and result.output.count("\n") == 1


@pytest.mark.parametrize("exc", [pa.ArrowInvalid("column 3 has the wrong length"), ValueError("a bug"), KeyError("x")])
def test_any_other_exception_keeps_its_traceback(exc: Exception) -> None:
    result = CliRunner().invoke(app_raising(exc), ["go"])
    assert result.exit_code == EXIT_BUG == 1
    assert result.exception is exc  # raised as is, not turned into a message
    assert "error:" not in result.output


def test_a_value_error_in_a_real_process_prints_a_traceback(tmp_path: Path) -> None:
    script = tmp_path / "cli.py"
    script.write_text(
        textwrap.dedent(
            """
            import pyarrow as pa
            import typer

            from sonify_toolkit.cli.common import one_line_errors

            app = typer.Typer(pretty_exceptions_enable=False)

            @app.command()
            @one_line_errors("go")
            def go() -> None:
                pa.array([1, "x"])  # mixed types: ArrowInvalid, a ValueError subclass

            app()
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "pyarrow.lib.ArrowInvalid" in proc.stderr
    assert "sonify go: error:" not in proc.stderr


def test_cli_error_is_an_input_error() -> None:
    with pytest.raises(InputError, match="expected --label as NAME=VALUE, got 'oops'"):
        parse_assignments(["oops"], "--label")
