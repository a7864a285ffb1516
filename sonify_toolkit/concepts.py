"""From a VLM's free-form answer to a concepts row: prompt rendering, a tolerant parser, the non-sonic filter.

Pure functions only (no models, no I/O), so every engine and every test shares one behaviour.
VLMs answer in many shapes even when asked for JSON: strict JSON, JSON in a code fence or after a
sentence of prose, `name: description` lines, bullet or numbered lists. The parser accepts all of
them and says "unparsable" only when it finds no structure at all (the stage then retries once).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .choices import KeywordMatch
from .settings import EXTRACT_PROMPT, MAX_CONCEPTS, NON_SONIC_KEYWORDS

NO_CONCEPTS = "no_sounding_concepts"
NON_SONIC = "non_sonic"

# keys VLMs use for the list, the name and the description (first match wins)
_LIST_KEYS = ("sounds", "sound_sources", "sounding_concepts", "concepts", "sources", "sounding_objects", "objects")
_NAME_KEYS = ("name", "concept", "source", "sound_source", "object", "label", "item")
_DESC_KEYS = ("description", "sound", "desc", "sound_description", "details", "text")
_CAPTION_KEYS = ("caption", "image_caption", "description_of_image", "summary")
_NONE_NAMES = {"", "none", "n/a", "na", "nothing", "no sound", "no sounds", "null", "-"}
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u2023\u25e6+]|\(?\d{1,2}[.)]|[a-z][.)])\s+(.*)$")
_PAIR = re.compile(r"^(.{1,60}?)\s*(?::|\s[-\u2013\u2014]\s)\s*(.+)$")
_CAPTION_LINE = re.compile(r"^\s*\**\s*caption\s*\**\s*[:\-]\s*\**\s*(.+?)\s*$", re.IGNORECASE)
_READABLE = re.compile(r"^(?=.*[^\W\d_])[^\x00-\x1f\x7f\ufffd]+$")  # a letter, no control/replacement chars
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


class UnparsableResponse(ValueError):
    """The answer holds neither JSON nor list structure we can read."""


@dataclass
class ParsedAnswer:
    caption: str | None
    concepts: list[dict[str, str]] = field(default_factory=list)  # [{"name", "description"}]


def render_prompt(template: str = EXTRACT_PROMPT, max_concepts: int = MAX_CONCEPTS) -> str:
    """The prompt sent with every image; `{max_concepts}` is replaced (other braces are left alone)."""
    return template.replace("{max_concepts}", str(max_concepts))


def normalize_name(name: str) -> str:
    """Lower case, trimmed, single spaces, without markdown, quotes or trailing punctuation."""
    name = re.sub(r"[*_`\"]+", "", str(name))
    name = re.sub(r"\s+", " ", name).strip().strip(" '.,;:-").lower()
    return name


def _clean_text(text: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[*`]+", "", str(text))).strip().strip('"').strip()


def finalize_concepts(pairs: Iterable[tuple[Any, Any]], max_concepts: int) -> list[dict[str, str]]:
    """Normalised, deduplicated (first wins), at most `max_concepts`; 'none'-like names dropped."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for name, desc in pairs:
        n = normalize_name(name) if name is not None else ""
        if n in _NONE_NAMES or n in seen or len(n) > 80 or not _READABLE.match(n):
            continue
        seen.add(n)
        out.append({"name": n, "description": _clean_text(desc) if desc is not None else ""})
        if len(out) >= max_concepts:
            break
    return out


def _first(d: dict[str, Any], keys: Sequence[str]) -> Any:
    lower = {str(k).lower(): v for k, v in d.items()}
    for k in keys:
        if k in lower:
            return lower[k]
    return None


def _pairs_from_json_list(items: list[Any]) -> list[tuple[Any, Any]]:
    pairs: list[tuple[Any, Any]] = []
    for it in items:
        if isinstance(it, dict):
            name = _first(it, _NAME_KEYS)
            desc = _first(it, _DESC_KEYS)
            if name is None and len(it) == 1:  # {"dog": "barking"}
                ((name, desc),) = it.items()
            if isinstance(name, str):
                pairs.append((name, desc if isinstance(desc, str) else None))
        elif isinstance(it, str):
            m = _PAIR.match(it)
            pairs.append((m.group(1), m.group(2)) if m else (it, None))
    return pairs


def _from_json(obj: Any) -> tuple[str | None, list[tuple[Any, Any]]] | None:
    """A decoded JSON value -> (caption, pairs), or None when it is not a shape we know."""
    if isinstance(obj, list):  # "[]" means no sounds; a list with nothing we can read ("[1]" in prose) is no answer
        pairs = _pairs_from_json_list(obj)
        return (None, pairs) if pairs or not obj else None
    if not isinstance(obj, dict):
        return None
    caption = _first(obj, _CAPTION_KEYS)
    caption = caption if isinstance(caption, str) else None
    items = _first(obj, _LIST_KEYS)
    if isinstance(items, list):
        return caption, _pairs_from_json_list(items)
    if isinstance(items, dict):  # {"sounds": {"dog": "barking"}}
        return caption, [(k, v if isinstance(v, str) else None) for k, v in items.items()]
    if items is None and _first(obj, _NAME_KEYS) is not None:  # a single concept object
        return caption, _pairs_from_json_list([obj])
    rest = {k: v for k, v in obj.items() if str(k).lower() not in _CAPTION_KEYS}
    if rest and all(isinstance(v, str) for v in rest.values()):  # {"dog": "barking", ...}
        return caption, list(rest.items())
    if caption is not None and not rest:
        return caption, []
    return None


def _json_candidates(text: str) -> Iterable[Any]:
    """Every JSON object or array found in the text: fenced blocks first, then the whole, then scans."""
    blocks = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    dec = json.JSONDecoder()
    for block in blocks:
        block = block.strip()
        try:
            yield json.loads(block)
            continue
        except ValueError:
            pass
        for m in re.finditer(r"[\[{]", block):
            try:
                value, _ = dec.raw_decode(block, m.start())
            except ValueError:
                continue
            yield value


def _from_lines(text: str) -> tuple[str | None, list[tuple[Any, Any]], bool]:
    """`name: description` lines and bullet/numbered lists -> (caption, pairs, any_structure)."""
    caption = None
    pairs: list[tuple[Any, Any]] = []
    structured = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        cm = _CAPTION_LINE.match(line)
        if cm:
            caption = _clean_text(cm.group(1))
            structured = True
            continue
        bm = _BULLET.match(line)
        body = bm.group(1).strip() if bm else line
        body = re.sub(r"^\*\*(.+?)\*\*", r"\1", body)  # **dog**: barking
        pm = _PAIR.match(body)
        if pm and pm.group(2).strip():
            name, desc = pm.group(1), pm.group(2)
            if len(name.split()) <= 5 and not name.rstrip().endswith((".", "!", "?")):
                pairs.append((name, desc))
                structured = True
                continue
        if bm and len(body.split()) <= 5 and body.strip():  # "- dog"
            pairs.append((body, None))
            structured = True
    return caption, pairs, structured


_NOTHING = re.compile(
    r"\b(no (visible )?(sound|sounding|sound sources?|sources?)|nothing (in|that) .*makes? (a )?sound)\b"
)


def parse_response(text: str | None, max_concepts: int = MAX_CONCEPTS) -> ParsedAnswer:
    """Any of the formats above -> caption and concepts; raises UnparsableResponse when nothing fits."""
    if text is None or not text.strip():
        raise UnparsableResponse("empty answer")
    for value in _json_candidates(text):
        got = _from_json(value)
        if got is not None:
            caption, pairs = got
            return ParsedAnswer(_clean_text(caption) if caption else None, finalize_concepts(pairs, max_concepts))
    caption, pairs, structured = _from_lines(text)
    if structured:
        return ParsedAnswer(caption, finalize_concepts(pairs, max_concepts))
    if _NOTHING.search(text.lower()):  # "There are no sound sources visible in this image."
        return ParsedAnswer(None, [])
    raise UnparsableResponse(f"no JSON, list or 'name: description' lines in the answer ({len(text)} chars)")


@functools.lru_cache(maxsize=32)
def keyword_pattern(keywords: tuple[str, ...], match: str = KeywordMatch.word) -> re.Pattern[str] | None:
    """The filter's regular expression, by `match` (a `choices.KeywordMatch`):

    - `word`: whole words and their plurals ('sign', 'signs'), never inside others ('signal', 'design');
    - `substring`: anywhere, as the paper's "caption contains" (A.2): 'sign' also drops 'design', 'signal'.

    Cached: the filter runs once per image with the same few keyword lists."""
    words = sorted({k.strip().lower() for k in keywords if k.strip()}, key=len, reverse=True)
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in words)
    if KeywordMatch(match) is KeywordMatch.substring:
        return re.compile(f"({alternatives})", re.IGNORECASE)
    return re.compile(r"\b(" + alternatives + r")(?:s|es)?\b", re.IGNORECASE)


def non_sonic_keyword(
    caption: str | None, keywords: Sequence[str] = NON_SONIC_KEYWORDS, match: str = KeywordMatch.word
) -> str | None:
    """The first filter keyword found in the caption (paper A.2), or None."""
    pat = keyword_pattern(tuple(keywords), KeywordMatch(match).value)
    if pat is None or not caption:
        return None
    m = pat.search(caption)
    return m.group(1).lower() if m else None


def decide(
    caption: str | None,
    concepts: Sequence[dict[str, str]],
    keywords: Sequence[str] = NON_SONIC_KEYWORDS,
    match: str = KeywordMatch.word,
) -> tuple[bool, str | None]:
    """(keep, drop_reason): the non-sonic caption filter first (it is the paper's rule), then emptiness.

    `caption` is the one that decides the filter: this answer's own, or another VLM's for the same
    image (the paper filters every image on LLaVA's caption)."""
    word = non_sonic_keyword(caption, keywords, match)
    if word is not None:
        return False, f"{NON_SONIC}:{word}"
    if not concepts:
        return False, NO_CONCEPTS
    return True, None
