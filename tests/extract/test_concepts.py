"""The tolerant parser on realistic answers, name normalisation, and the non-sonic caption filter."""

from __future__ import annotations

import pytest

from sonify_toolkit import concepts as cp
from sonify_toolkit.settings import EXTRACT_PROMPT

DOG_RIVER = [("dog", "a dog barking"), ("river", "water flowing")]

ANSWERS = [
    # strict JSON, our requested shape
    (
        '{"caption": "A dog by a river.", "sounds": [{"name": "dog", "description": "a dog barking"}, '
        '{"name": "river", "description": "water flowing"}]}',
        "A dog by a river.",
        DOG_RIVER,
    ),
    # JSON in a code fence after prose (LLaVA's habit)
    (
        'Sure! Here is the answer:\n```json\n{"caption": "A dog by a river.", "sounds": [{"name": "Dog", '
        '"description": "a dog barking"}, {"name": " River ", "description": "water flowing"}]}\n```\nHope it helps.',
        "A dog by a river.",
        DOG_RIVER,
    ),
    # JSON embedded in prose without fences, other key names
    (
        'The image shows a street. {"image_caption": "A busy street.", "sound_sources": '
        '[{"source": "car", "sound": "engine humming"}, {"object": "people", "sound_description": "chatter"}]} done',
        "A busy street.",
        [("car", "engine humming"), ("people", "chatter")],
    ),
    # a bare JSON list of objects
    (
        '[{"name": "dog", "description": "a dog barking"}, {"name": "river", "description": "water flowing"}]',
        None,
        DOG_RIVER,
    ),
    # a mapping name -> description
    (
        '{"caption": "A dog by a river.", "dog": "a dog barking", "river": "water flowing"}',
        "A dog by a river.",
        DOG_RIVER,
    ),
    # list of "name: description" strings inside JSON
    ('{"caption": "x", "concepts": ["dog: a dog barking", "river: water flowing"]}', "x", DOG_RIVER),
    # name: description lines
    ("Caption: A dog by a river.\ndog: a dog barking\nriver: water flowing", "A dog by a river.", DOG_RIVER),
    # bullets with markdown bold
    ("Sound sources:\n- **Dog**: a dog barking\n- **River**: water flowing\n", None, DOG_RIVER),
    # numbered list with dashes and a caption line
    (
        "**Caption:** A dog by a river.\n1. Dog - a dog barking\n2) river \u2014 water flowing",
        "A dog by a river.",
        DOG_RIVER,
    ),
    # bullets without descriptions
    ("* dog\n* river\n* dog", None, [("dog", ""), ("river", "")]),
    # duplicates and none-like names are dropped, case folded
    (
        '{"caption": "c", "sounds": [{"name": "DOG", "description": "a"}, {"name": "dog", "description": "b"}, '
        '{"name": "none", "description": "-"}, {"name": "river", "description": "water flowing"}]}',
        "c",
        [("dog", "a"), ("river", "water flowing")],
    ),
    # an explicit empty list: parsed, no concepts
    ('{"caption": "A logo on a wall.", "sounds": []}', "A logo on a wall.", []),
    # a prose "nothing sounds" answer
    ("There are no sound sources visible in this image.", None, []),
    # a bracketed footnote is JSON but not an answer: the lines still count
    (
        "Caption: A dog by a river.\n- dog: a dog barking [1]\n- river: water flowing",
        "A dog by a river.",
        [("dog", "a dog barking [1]"), ("river", "water flowing")],
    ),
    ("Sounds [2]:\n1. dog - a dog barking\n2. river - water flowing", None, DOG_RIVER),
    # a bare empty JSON list: nothing sounds
    ("[]", None, []),
]


@pytest.mark.parametrize(("text", "caption", "pairs"), ANSWERS)
def test_parser_reads_realistic_answers(text: str, caption: str | None, pairs: list[tuple[str, str]]) -> None:
    ans = cp.parse_response(text, max_concepts=5)
    assert ans.caption == caption
    assert [(c["name"], c["description"]) for c in ans.concepts] == pairs


def test_parser_caps_concept_count() -> None:
    text = "\n".join(f"- thing {i}: sound {i}" for i in range(9))
    assert [c["name"] for c in cp.parse_response(text, max_concepts=3).concepts] == ["thing 0", "thing 1", "thing 2"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        None,
        "%%% ??? ###",
        "y\ufffd\ufffdark\ufffd\ufffd\x10 \ued1e",
        "I think this is a lovely picture of a day.",
    ],
)
def test_parser_refuses_noise(text: str | None) -> None:
    with pytest.raises(cp.UnparsableResponse):
        cp.parse_response(text)


def test_noise_names_are_dropped() -> None:
    ans = cp.parse_response('{"sounds": [{"name": "\\u0003\\ufffd", "description": "x"}, {"name": "dog"}]}')
    assert [c["name"] for c in ans.concepts] == ["dog"]


@pytest.mark.parametrize(
    ("caption", "word"),
    [
        ("The Nike logo on a shirt.", "logo"),
        ("A row of app icons.", "icon"),
        ("Road signs at a crossing.", "sign"),
        ("A SIGN above a shop.", "sign"),
        ("Symbols drawn on a wall.", "symbol"),
        ("An emblem and a trademark.", "emblem"),
        ("Trademarks of brands.", "trademark"),
        ("A traffic signal at night.", None),
        ("A modern interior design.", None),
        ("She signed the paper.", None),
        ("Dogs playing in a park.", None),
        (None, None),
    ],
)
def test_non_sonic_keywords_whole_words_and_plurals(caption: str | None, word: str | None) -> None:
    assert cp.non_sonic_keyword(caption) == word


def test_decide_order_and_configurable_keywords() -> None:
    dog = [{"name": "dog", "description": "barking"}]
    assert cp.decide("A dog.", dog) == (True, None)
    assert cp.decide("A dog.", []) == (False, cp.NO_CONCEPTS)
    assert cp.decide("A logo with a dog.", dog) == (False, "non_sonic:logo")
    assert cp.decide("A logo with a dog.", dog, keywords=()) == (True, None)
    assert cp.decide("A poster of a dog.", dog, keywords=("poster",)) == (False, "non_sonic:poster")


def test_prompt_renders_max_concepts_and_keeps_json_braces() -> None:
    p = cp.render_prompt(EXTRACT_PROMPT, 3)
    assert "at most 3 sound sources" in p and "visible and present" in p and '{"caption"' in p
    assert cp.render_prompt('custom {max_concepts} {"a": 1}', 2) == 'custom 2 {"a": 1}'
