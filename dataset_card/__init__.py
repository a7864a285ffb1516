"""The release's dataset card: Hub YAML metadata (via huggingface_hub) + a Jinja body from README.md.jinja."""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from typing import Any

import jinja2
from huggingface_hub import DatasetCardData

from sonify_toolkit.stats import RunData, flat_params, image_sources, size_category

from .licenses import licence_rows

TEMPLATE = "README.md.jinja"
CARD_LANGUAGE = "en"  # the language of the extraction prompt, hence of the concepts and captions
TAGS = ["audio", "image", "audio-to-image", "image-sonification", "sound-effects", "clap", "sonify"]


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#!])")


def _md(value: Any) -> str:
    """A value safe inside a markdown table cell: VLM text (concepts) never becomes HTML, a link or emphasis."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def card_data(
    *,
    pretty_name: str,
    num_rows: int,
    num_bytes: int,
    features_yaml: dict[str, Any],
    smoke_run: bool,
    rendered: dict[str, Any] | None = None,
    splits: dict[str, dict[str, int]] | None = None,
) -> DatasetCardData:
    """The YAML front matter: licence, task, size, configs with data files and the declared features.

    `splits` ({name: {"rows", "num_bytes"}}, a `--holdout` release): every config lists each split's files.
    """
    split_names = list(splits) if splits else ["train"]
    configs = [{"config_name": "default", "data_files": _data_files("data", split_names)}]
    infos = [{"config_name": "default", **features_yaml, "splits": _splits(splits, num_rows, num_bytes)}]
    if rendered:
        configs.append({"config_name": "rendered_audio", "data_files": _data_files("rendered", split_names)})
        infos.append(
            {
                "config_name": "rendered_audio",
                **rendered["features_yaml"],
                "splits": _splits(rendered.get("splits"), rendered["rows"], rendered["num_bytes"]),
            }
        )
    return DatasetCardData(
        language=[CARD_LANGUAGE],
        license="other",
        license_name="source-collections",
        license_link="LICENSE.md",
        pretty_name=pretty_name,
        task_categories=["any-to-any"],
        tags=TAGS + (["smoke-run"] if smoke_run else []),
        size_categories=[size_category(num_rows)],
        configs=configs,
        dataset_info=infos,
    )


def _data_files(folder: str, splits: list[str]) -> list[dict[str, str]]:
    return [{"split": name, "path": f"{folder}/{name}-*"} for name in splits]


def _split(rows: int, num_bytes: int, name: str = "train") -> dict[str, Any]:
    return {"name": name, "num_bytes": num_bytes, "num_examples": rows}


def _splits(splits: dict[str, dict[str, int]] | None, rows: int, num_bytes: int) -> list[dict[str, Any]]:
    """A config's split infos: each of `splits` ({name: {"rows", "num_bytes"}}), else one train split."""
    if splits:
        return [_split(n["rows"], n["num_bytes"], name) for name, n in splits.items()]
    return [_split(rows, num_bytes)]


def collections(run: RunData, stats: dict[str, Any]) -> list[str]:
    """Sound collections used (from the pairs and the pool manifest); image sources are `image_collections`."""
    names = set(stats["counts"]["sources_per_collection"]) | set(
        run.pool_manifest.get("segments", {}).get("per_source", {})
    )
    return sorted(names)


def image_collections(run: RunData) -> list[str]:
    """Named image sources of the pairs (a short name, not a path), for the licence table."""
    return [s for s in image_sources(run) if s and "/" not in s and len(s) < 40]


def render_card(
    run: RunData,
    stats: dict[str, Any],
    plots: dict[str, str],
    *,
    repo_id: str,
    pretty_name: str,
    features_yaml: dict[str, Any],
    num_bytes: int,
    rendered: dict[str, Any] | None = None,
    splits: dict[str, dict[str, int]] | None = None,
    holdout: float | None = None,
) -> str:
    """README.md text of a release (`splits`/`holdout`: a release with a held-out validation split)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["md"] = _md
    template = env.from_string(resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8"))
    sound = collections(run, stats)
    data = card_data(
        pretty_name=pretty_name,
        num_rows=run.pairs.num_rows,
        num_bytes=num_bytes,
        features_yaml=features_yaml,
        smoke_run=stats["smoke_run"],
        rendered=rendered,
        splits=splits,
    )
    return template.render(
        card_data=data.to_yaml(),
        smoke_run=stats["smoke_run"],
        pretty_name=pretty_name,
        repo_id=repo_id,
        stats=stats,
        plots=plots,
        key_parameters=stats["key_parameters"],
        all_parameters=flat_params({**run.stages, **_pool_params(run.pool_manifest)}),
        collections=sound,
        rendered=rendered,
        holdout=holdout,
        licences=licence_rows(sound + image_collections(run)),
    )


def render_license(run: RunData, stats: dict[str, Any]) -> str:
    """LICENSE.md (the card's `license_link`): the same per-collection table, standalone."""
    lines = [
        "# Licenses",
        "",
        "This repository holds metadata derived from the collections below; their images and recordings are",
        "not included and remain under their own terms.",
        "",
    ]
    for row in licence_rows(collections(run, stats) + image_collections(run)):
        lines += [f"## {row['name']}", "", row["licence"], ""] + ([row["link"], ""] if row["link"] else [])
    return "\n".join(lines)


def public_pool_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The pool manifest without local root folders (they describe the publisher's machine, not the data):
    what a release's card and its `sonify.json` show."""
    return {k: {n: x for n, x in v.items() if n != "roots"} if isinstance(v, dict) else v for k, v in manifest.items()}


def _pool_params(pool_manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """pool/manifest.json entries shown like stage manifests (the CLAP identity, segment parameters)."""
    out = {}
    for key, value in sorted(public_pool_manifest(pool_manifest).items()):
        if isinstance(value, dict):
            params = {k: v for k, v in value.items() if k != "params"} | value.get("params", {})
            out[f"pool/manifest.json:{key}"] = {"params": params}
    return out
