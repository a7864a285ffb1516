"""The fixed sets of values that options accept, as str enums (one small class per option)."""

from __future__ import annotations

from enum import Enum


class KeywordMatch(str, Enum):
    """How a non-sonic keyword is found in a caption: whole words (and plurals) or anywhere (the paper's "contains")."""

    word = "word"
    substring = "substring"
