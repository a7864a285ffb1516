"""Untrusted pair rows checked against the pairs schema and plausible ranges before anything uses them.

A release is anyone's metadata: a row read from a folder or the Hub may hold any type in any
field. Each row is checked as `schema.PAIRS` declares it (ids are non-empty strings, `seed` an
integer, `sources` a list of source records) and each source's numbers for what rendering will do
with them. A row that fails becomes an error row with a reason; the rest of the release renders.

Bounds (documented here and in the error text, so a user can see why a row was refused):
* `clip_lufs` and `target_lufs`: finite, within [LUFS_MIN, LUFS_MAX] = [-100, +10] LUFS. The pool
  drops windows quieter than -70 LUFS and a full-scale square wave measures about +3 LUFS, so
  values outside the range cannot come from a real pool or a sensible target.
* the gain `target_lufs - clip_lufs`: at most MAX_GAIN_DB = 60 dB either way. 60 dB turns the
  quietest window the pool keeps (-70 LUFS) into a -10 LUFS one; beyond it a row only amplifies
  noise or overflows, as a target of 1e4 LUFS once did.
* `segment`: an integer in [0, 2**31 - 1] (the schema's int32); a window past the file's end is
  found when the file is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

LUFS_MIN, LUFS_MAX = -100.0, 10.0
MAX_GAIN_DB = 60.0
MAX_SEGMENT = 2**31 - 1

PAIR_TEXT_FIELDS = ("pair_id", "image_id", "vlm")  # required non-empty strings
PAIR_OPTIONAL_TEXT = ("image_source", "caption")
SOURCE_TEXT_FIELDS = ("source", "path")  # required: they name the file
SOURCE_OPTIONAL_TEXT = ("concept", "description", "clip_id", "source_sha256")
SOURCE_OPTIONAL_NUMBERS = ("similarity", "score", "threshold")


class BadRow(Exception):
    """A pair row or one of its sources that does not conform; `reason` is the error row's reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _is_number(v: Any) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(v, Real) and not isinstance(v, bool)


def _is_integer(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _text(row: Mapping[str, Any], key: str, required: bool, reason: str) -> None:
    v = row.get(key)
    if v is None and not required:
        return
    if not isinstance(v, str) or (required and not v):
        what = "missing" if v is None else f"a {type(v).__name__}" if not isinstance(v, str) else "empty"
        raise BadRow(reason, f"'{key}' must be a non-empty string, is {what}")


def check_pair(row: Any) -> None:
    """The pair-level fields as `schema.PAIRS` declares them (sources are checked one by one later)."""
    if not isinstance(row, Mapping):
        raise BadRow("bad_pair_row", f"a pair row must be a record, is a {type(row).__name__}")
    for key in PAIR_TEXT_FIELDS:
        _text(row, key, True, "bad_pair_row")
    for key in PAIR_OPTIONAL_TEXT:
        _text(row, key, False, "bad_pair_row")
    seed = row.get("seed")
    if not _is_integer(seed) or not -(2**63) <= int(seed) < 2**63:
        raise BadRow("bad_pair_row", f"'seed' must be a 64-bit integer, is {type(seed).__name__}")
    sources = row.get("sources")
    if not isinstance(sources, list):
        raise BadRow("bad_pair_row", f"'sources' must be a list of source records, is a {type(sources).__name__}")


def check_source(src: Any) -> dict[str, Any]:
    """One source record, checked; returns it with `segment` an int and the loudness fields floats."""
    if not isinstance(src, Mapping):
        what = "null" if src is None else f"a {type(src).__name__}"
        raise BadRow("bad_source_row", f"a source entry must be a record, is {what}")
    for key in SOURCE_TEXT_FIELDS:
        _text(src, key, True, "bad_source_row")
    for key in SOURCE_OPTIONAL_TEXT:
        _text(src, key, False, "bad_source_row")
    for key in SOURCE_OPTIONAL_NUMBERS:
        if src.get(key) is not None and not _is_number(src[key]):
            raise BadRow("bad_source_row", f"'{key}' must be a number, is a {type(src[key]).__name__}")
    segment = src.get("segment")
    if not _is_integer(segment):
        raise BadRow("bad_source_row", f"'segment' must be an integer, is {type(segment).__name__}")
    segment = int(segment)
    if not 0 <= segment <= MAX_SEGMENT:
        raise BadRow("bad_source_row", f"'segment' {segment} outside [0, {MAX_SEGMENT}]")
    levels = {}
    for key in ("clip_lufs", "target_lufs"):
        v = src.get(key)
        if not _is_number(v):
            raise BadRow("bad_source_row", f"'{key}' must be a number, is {type(v).__name__}")
        v = float(v)
        if not math.isfinite(v) or not LUFS_MIN <= v <= LUFS_MAX:
            raise BadRow("bad_source_row", f"'{key}' {v:g} outside [{LUFS_MIN:g}, {LUFS_MAX:g}] LUFS")
        levels[key] = v
    gain = levels["target_lufs"] - levels["clip_lufs"]
    if abs(gain) > MAX_GAIN_DB:
        raise BadRow("bad_source_row", f"gain {gain:+.1f} dB beyond +/-{MAX_GAIN_DB:g} dB")
    return {**src, "segment": segment, **levels}


def row_label(pair_id: Any, part: int, row: int) -> str:
    """What names a row in error tables: its pair id when that is a usable string, else its place."""
    if isinstance(pair_id, str) and pair_id:
        return pair_id
    return f"<part {part} row {row}: pair_id {'null' if pair_id is None else type(pair_id).__name__}>"
