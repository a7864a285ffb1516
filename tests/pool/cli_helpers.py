"""Running `sonify` in-process (typer's CliRunner) and reading what a pool run left behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from typer.testing import CliRunner, Result

from sonify_toolkit import schema
from sonify_toolkit.cli import app
from sonify_toolkit.pool_files import pool_dir
from sonify_toolkit.shards import StageDir


def sonify(*args: str, env: dict[str, str] | None = None, expect: int = 0) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == expect, result.output
    return result


def segments(work: Path) -> pa.Table:
    return StageDir(pool_dir(work)).read_table("segments", schema.POOL_SEGMENTS)


def errors(work: Path) -> pa.Table:
    return StageDir(pool_dir(work)).read_table("errors", schema.ERRORS)


def embeddings(work: Path) -> np.ndarray:
    return StageDir(pool_dir(work) / "clap").read_array("embeddings")


def manifest(work: Path) -> dict[str, Any]:
    return json.loads((pool_dir(work) / "manifest.json").read_text())


def shard_files(work: Path) -> dict[str, bytes]:
    """Every data file of a pool (parquet, npy, faiss) by relative path: what must be byte-identical."""
    root = pool_dir(work)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".parquet", ".npy", ".faiss")
    }


def pool_args(corpus: Path, work: Path, clap: Path | None = None, shard_size: int | str = 3) -> list[Any]:
    """`sonify pool syn=CORPUS` arguments: embedded with the tiny CLAP on CPU, or `--no-embed` without one."""
    args: list[Any] = ["pool", f"syn={corpus}", "--workdir", work, "--shard-size", str(shard_size)]
    return args + (["--clap", clap, "--device", "cpu", "--batch-size", "4"] if clap else ["--no-embed"])
