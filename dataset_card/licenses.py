"""What each source collection's licence says, spelled out in the card: the release holds only IDs,
numbers and text, but whoever rebuilds or trains on the audio and images is bound by these terms."""

from __future__ import annotations

# (match substrings of a collection name, display name, licence text, link)
KNOWN: list[tuple[tuple[str, ...], str, str, str]] = [
    (
        ("sa1b", "sa-1b", "sa_1b", "segment-anything"),
        "SA-1B (Segment Anything images)",
        "SA-1B Dataset Research License (Meta): images for research purposes only; not redistributed here, "
        "rows reference them by image id.",
        "https://ai.meta.com/datasets/segment-anything/",
    ),
    (
        ("audioset",),
        "AudioSet",
        "Annotations by Google under CC BY 4.0 (ontology CC BY-SA 4.0); the audio belongs to the uploaders of "
        "the YouTube videos under YouTube's terms. Not redistributed here.",
        "https://research.google.com/audioset/download.html",
    ),
    (
        ("fsd50k", "freesound"),
        "FSD50K",
        "Dataset under CC BY 4.0; every clip keeps its own Freesound licence (CC0, CC BY, CC BY-NC or "
        "CC Sampling+): attribution and non-commercial terms apply per clip. Not redistributed here.",
        "https://zenodo.org/record/4060432",
    ),
    (
        ("bbc",),
        "BBC Sound Effects",
        "RemArc Licence: personal, educational and research use only; no commercial use, no redistribution. "
        "Not redistributed here.",
        "https://sound-effects.bbcrewind.co.uk/licensing",
    ),
]


def licence_rows(collections: list[str]) -> list[dict[str, str]]:
    """The four collections of the paper always, then any other collection this run used."""
    rows = [{"name": name, "licence": text, "link": link, "used_as": ""} for _, name, text, link in KNOWN]
    for coll in sorted(collections):
        key = coll.lower()
        for i, (patterns, *_rest) in enumerate(KNOWN):
            if any(p in key for p in patterns):
                rows[i]["used_as"] = ", ".join(filter(None, [rows[i]["used_as"], f"`{coll}`"]))
                break
        else:
            rows.append(
                {
                    "name": coll,
                    "licence": "Not known to sonify: check the collection's own terms before using its audio.",
                    "link": "",
                    "used_as": f"`{coll}`",
                }
            )
    return rows
