"""Error text fit for an error row: the same failure gives the same bytes, run after run.

Libraries put things in their messages that change from run to run: object representations with
memory addresses (PIL: `cannot identify image file <_io.BytesIO object at 0x7f...>`), bare
addresses, and the random names of temporary files. Written into an error row they make two
identical runs write different tables, which breaks the byte-identical-output rule and every
comparison built on it. `describe` keeps the exception's type and message and replaces only those.
"""

from __future__ import annotations

import re

MAX_DETAIL = 2000  # characters of an error row's detail: a server or library can say a lot

_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
# tempfile's random names: "tmp" + 8 of [a-z0-9_] (mkstemp, mkdtemp, NamedTemporaryFile), and what follows
_TEMP_PATH = re.compile(r"(?:[A-Za-z]:)?[^\s'\"<>]*[/\\]tmp[a-z0-9_]{8}(?![A-Za-z0-9_])(?:[/\\][^\s'\"<>]*)?")


def scrub(text: str) -> str:
    """`text` without object representations, memory addresses or temporary file names."""
    text = _OBJECT_REPR.sub("<object>", text)
    text = _TEMP_PATH.sub("<temporary file>", text)
    return _ADDRESS.sub("<address>", text)


def describe(exc: BaseException, limit: int = MAX_DETAIL) -> str:
    """`Type: message` of an exception, scrubbed and cut to `limit` characters (the type alone if silent)."""
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return scrub(text)[:limit]
