"""Point 1: every fixed set of values is listed in --help and refused in one line; flags read as flags; --version."""

from __future__ import annotations

import pytest

from sonify_toolkit import __version__

from .conftest import sonify

COMMANDS = ["pool", "extract", "retrieve", "render", "publish", "report", "status", "demo"]


@pytest.mark.parametrize(
    ("command", "listed"),
    [
        ("extract", ["<transformers|openai>", "<auto|fp32|bf16|fp16>", "<auto|cpu|cuda|cuda:N|mps>"]),
        ("retrieve", ["<exact|flat|ivf|hnsw>", "<description|name|both>", "<local|ray>"]),
        ("render", ["<flac|wav|hf>", "<local|ray>"]),
        ("pool", ["<auto|fp32|bf16|fp16>", "<auto|cpu|cuda|cuda:N|mps>"]),
    ],
)
def test_help_lists_the_choices(command: str, listed: list[str]) -> None:
    out = sonify(command, "--help")
    assert out.exit_code == 0
    for choices in listed:
        assert choices in out.output, (choices, out.output)


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_render_as_flags(command: str) -> None:
    out = sonify(command, "--help")
    assert out.exit_code == 0 and "<bool>" not in out.output, out.output
    flag_lines = [line for line in out.lines if line.strip().startswith(("--overwrite", "--quiet", "-q, --quiet"))]
    assert all("<" not in line.split("  ")[0] for line in flag_lines), flag_lines


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["retrieve", "--index", "annoy"], "sonify retrieve: error: Invalid value for '--index': 'annoy' is not one"),
        (["render", "x", "--source", "a=b", "--out", "o", "--format", "mp3"], "'mp3' is not one of 'flac', 'wav'"),
        (["extract", "--engine", "vllm"], "'vllm' is not one of 'transformers', 'openai'"),
        (["retrieve", "--executor", "slurm"], "'slurm' is not one of 'local', 'ray'"),
        (["retrieve", "--concept-text", "title"], "'title' is not one of 'description', 'name', 'both'"),
        (["pool", "a=b", "--dtype", "fp8"], "'fp8' is not one of 'auto', 'fp32', 'bf16', 'fp16'"),
        (["nosuchcommand"], "sonify: error: No such command 'nosuchcommand'"),
    ],
)
def test_other_values_are_refused_in_one_line(args: list[str], expected: str) -> None:
    out = sonify(*args)
    assert out.exit_code == 2
    assert expected in out.error_line and len(out.lines) == 1, out.output


def test_version() -> None:
    out = sonify("--version")
    assert out.exit_code == 0 and out.output.strip() == f"sonify {__version__}"
