"""What a release says about where things were: names relative to the run's roots, never a local path.

A work directory records absolute paths for its own use (the image each concepts row came from, the
collection roots in `_stage.json`, a CLAP checkpoint given as a folder, the command line). None of
them means anything on another machine, and each tells the world how one machine is laid out. The
release keeps what they are relative to a named root (`images/cat.jpg`, `{workdir}/models/clap`), or
the last component of a path that lies under no recorded root.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from .runner import location_free
from .stage import unique_name

HF_PREFIX = "hf://"
_ROOTED = re.compile(r"^\{([^{}/]+)\}(?:/(.*))?$")


def release_roots(workdir: Path, stages: Mapping[str, Mapping[str, Any]]) -> dict[str, Path]:
    """The work directory and every input root its stages recorded (`_stage.json` "roots"), uniquely named."""
    roots: dict[str, Path] = {"workdir": Path(workdir)}
    for rel in sorted(stages):
        for name, path in sorted((stages[rel].get("roots") or {}).items()):
            if any(str(p) == str(path) for p in roots.values()):
                continue
            roots[unique_name(name, roots)] = Path(path)
    return roots


def _is_local_path(text: str) -> bool:
    return bool(text) and "\n" not in text and (text.startswith(("/", "~")) or PurePath(text).drive != "")


def _public_string(text: str) -> str:
    """An absolute path left after rooting -> its last component (`NAME=/abs/dir` -> `NAME=dir`)."""
    if _is_local_path(text):
        return PurePath(text).name or text
    name, sep, value = text.partition("=")
    if sep and name and "/" not in name and _is_local_path(value):
        return f"{name}={PurePath(value).name or value}"
    return text


def public_metadata(obj: Any, roots: Mapping[str, Path]) -> Any:
    """JSON-like metadata (stage manifests, the pool manifest) with no local absolute path left in it."""

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return _public_string(value)
        if isinstance(value, Mapping):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return fix(location_free(obj, roots))


def public_image_source(source: str | None, roots: Mapping[str, Path]) -> str | None:
    """A concepts `image_path` as the release's `image_source`: `root-name/relative/path` (tars keep
    `::member`, datasets keep `hf://`), or the file's own name when it lies under no recorded root."""
    if not source:
        return source
    prefix = HF_PREFIX if source.startswith(HF_PREFIX) else ""
    rest = source[len(prefix) :]
    rooted = location_free(rest, roots)
    match = _ROOTED.match(rooted) if isinstance(rooted, str) else None
    if match is not None:
        name, tail = match.group(1), match.group(2)
        return prefix + (f"{name}/{tail}" if tail else name)
    return prefix + _public_string(rest)
