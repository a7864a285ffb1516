"""Build the report folder: index.html, plots/ (shared with the card), thumbs/ and audio/.

Everything the page shows is copied under the output folder and referenced by relative paths, so
the folder can be zipped, moved or opened from file:// without a server or a CDN. The gallery is a
deterministic, evenly spaced sample of the pairs (every pair when there are few), read from the
row groups that hold them: the pairs are never all loaded.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import audio
from ..errors import InputError
from ..fileio import UnsafePathError, safe_join
from ..plots import TITLES, write_plots
from ..shards import STAGE_FILE
from ..soundtrack import render_source
from ..stats import RELEASE_MANIFEST, RunData, compute_stats, flat_params, iter_concepts, load_run
from .thumbs import find_image, write_thumbnail

MAX_GALLERY = 240
PLOT_CAPTIONS = {
    "concepts_per_pair": "Sound sources (concepts) per pair",
    "top_concepts": "Most frequent sounding concepts",
    "clip_reuse": "Clip reuse distribution",
    **{k: v[0] for k, v in TITLES.items()},
}


@dataclass
class ReportSummary:
    index: Path
    pairs_shown: int
    thumbnails: int
    mixes: int
    source_clips: int
    problems: dict[str, int]


def sample_rows(n: int, k: int) -> list[int]:
    """k evenly spaced row indices of n (deterministic, first row included)."""
    if n <= k:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k)})


def _image_refs(run: RunData, image_ids: list[str], image_roots: Sequence[Path]) -> dict[str, str]:
    """Where the gallery's images are: the concepts tables' paths, else a file under `--images`."""
    refs: dict[str, str] = {}
    wanted = pa.array(sorted(set(image_ids)), pa.string())
    for batch in iter_concepts(run, ["image_id", "image_path"]):  # streamed: never the whole concepts table
        found = batch.filter(pc.is_in(batch.column("image_id"), value_set=wanted))
        for image_id, path in zip(
            found.column("image_id").to_pylist(), found.column("image_path").to_pylist(), strict=True
        ):
            if path and image_id not in refs:
                refs[image_id] = path
    for image_id in wanted.to_pylist():
        if image_id not in refs and image_roots and (path := find_image(image_id, image_roots)):
            refs[image_id] = path
    return refs


def _mixes(run: RunData, pair_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The render index rows of the gallery's pairs only."""
    if run.rendered is None:
        return {}
    rows = run.rendered.filter(pc.is_in(run.rendered.column("pair_id"), value_set=pa.array(pair_ids, pa.string())))
    return {r["pair_id"]: r for r in rows.to_pylist()}


def _gallery(
    run: RunData,
    out: Path,
    rows: list[int],
    image_roots: Sequence[Path],
    source_roots: Mapping[str, str],
    problems: Counter[str],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    pairs = run.pairs.take(rows).to_pylist() if rows else []
    refs = _image_refs(run, [p["image_id"] for p in pairs], image_roots)
    mixes = _mixes(run, [p["pair_id"] for p in pairs])
    made = {"thumbnails": 0, "mixes": 0, "source_clips": 0}
    thumbs: dict[str, str | None] = {}
    items = []
    for n, pair in enumerate(pairs):
        item: dict[str, Any] = {
            "pair_id": pair["pair_id"],
            "image_id": pair["image_id"],
            "vlm": pair["vlm"],
            "caption": pair["caption"] or "",
            "thumb": None,
            "mix": None,
            "concepts": [
                {
                    "name": s["concept"] or "",
                    "description": s["description"] or "",
                    "clip_id": s["clip_id"] or "",
                    "similarity": float(s["similarity"] or 0.0),
                    "score": float(s["score"] or 0.0),
                    "threshold": float(s["threshold"] or 0.0),
                }
                for s in pair["sources"]
            ],
            "source_audio": [None] * len(pair["sources"]),
        }
        # thumbnail (one per image, shared by its pairs from several VLMs)
        image_id = pair["image_id"]
        if image_id not in thumbs:
            thumbs[image_id] = None
            ref = refs.get(image_id)
            if ref is None:
                problems["image_not_found"] += 1
            else:
                rel = f"thumbs/{len(thumbs):05d}.jpg"
                try:
                    write_thumbnail(ref, out / rel)
                    thumbs[image_id] = rel
                    made["thumbnails"] += 1
                except Exception as exc:  # any unreadable image is a placeholder card, never a failed report
                    problems[f"image_unreadable ({type(exc).__name__})"] += 1
        item["thumb"] = thumbs[image_id]
        if item["thumb"] is None:
            item["image_error"] = f"image {image_id} not available"
        # the rendered mix
        mix = mixes.get(pair["pair_id"])
        if mix is not None and run.rendered_dir is not None:
            if mix["status"] == "ok" and mix["path"]:
                try:
                    src = safe_join(run.rendered_dir, mix["path"])
                    rel = f"audio/mix/{n:05d}{src.suffix}"
                    (out / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, out / rel)
                    item["mix"] = rel
                    made["mixes"] += 1
                except (OSError, UnsafePathError) as exc:
                    item["mix_error"] = f"missing file: {exc}"
                    problems["mix_missing"] += 1
            else:
                item["mix_error"] = f"not rendered ({mix['status']})"
        # each source alone, when the collections are at hand
        if source_roots:
            for k, source in enumerate(pair["sources"]):
                try:
                    clip = render_source(source_roots, source, verify=True, cache=None)
                    rel = f"audio/sources/{n:05d}_{k}.flac"
                    (out / rel).parent.mkdir(parents=True, exist_ok=True)
                    (out / rel).write_bytes(audio.encode(np.clip(clip, -1.0, 1.0)))
                    item["source_audio"][k] = {"path": rel}
                    made["source_clips"] += 1
                except Exception as exc:  # a missing or changed recording shows on its card
                    reason = getattr(exc, "reason", type(exc).__name__)
                    item["source_audio"][k] = {"error": f"source unavailable: {reason}"}
                    problems[f"source_{reason}"] += 1
        items.append(item)
    return items, made


def _counts(stats: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in stats["counts"].items():
        if isinstance(value, dict):
            for k, v in value.items():
                rows.append((f"{key.replace('_', ' ')}: {k}", f"{v:,}"))
        else:
            rows.append((key.replace("_", " "), f"{value:,}"))
    return rows


def _json_for_html(obj: Any) -> str:
    """JSON that cannot close its <script> element."""
    return json.dumps(obj, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _refuse_foreign_output(out: Path, run: RunData) -> None:
    """The report replaces `out/{plots,thumbs,audio}`: never inside a stage folder, a release or its inputs."""
    taken = [Path(run.origin), *([Path(run.rendered_dir)] if run.rendered_dir else [])]
    if any(out.resolve() == p.resolve() for p in taken) or any(
        (out / name).exists() for name in (STAGE_FILE, RELEASE_MANIFEST)
    ):
        raise InputError(
            f"{out} holds a run's own files (its audio/ or plots/ would be replaced): choose another --out"
        )


def _card_href(run: Any) -> str | None:
    """The release card's Scores section (what the gallery's s, r, tau mean); None for a work directory."""
    card = Path(run.origin) / "README.md"
    return card.resolve().as_uri() + "#scores" if run.kind == "release" and card.is_file() else None


def build_report(
    source: str | Path,
    out: str | Path,
    *,
    rendered: str | Path | None = None,
    source_roots: Mapping[str, str] | None = None,
    image_roots: Sequence[str | Path] = (),
    max_pairs: int = MAX_GALLERY,
) -> ReportSummary:
    """Write `out/index.html` and everything it shows for a work directory or a release."""
    run = load_run(source, rendered)
    out = Path(out)
    _refuse_foreign_output(out, run)
    for sub in ("plots", "thumbs", "audio"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)  # a rebuilt report never points at a previous run's files
    out.mkdir(parents=True, exist_ok=True)
    stats = compute_stats(run)
    plot_files = write_plots(run, out / "plots", stats)
    problems: Counter[str] = Counter()
    rows = sample_rows(run.pairs.num_rows, max_pairs)
    gallery, made = _gallery(run, out, rows, [Path(p) for p in image_roots], dict(source_roots or {}), problems)
    package = resources.files(__package__)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = env.from_string(package.joinpath("page.html.jinja").read_text(encoding="utf-8"))
    stats_for_page = dict(stats)
    if problems:
        stats_for_page["errors"] = {**stats["errors"], "report preview": dict(sorted(problems.items()))}
    html = page.render(
        title=Path(run.origin).name,
        kind=run.kind,
        origin=str(run.origin),
        rendered_dir=str(run.rendered_dir) if run.rendered_dir else None,
        card_href=_card_href(run),
        smoke_run=stats["smoke_run"],
        stats=stats_for_page,
        key_parameters=stats["key_parameters"],
        all_parameters=flat_params(run.stages),
        counts=_counts(stats),
        plots=[(name, f"plots/{file}", PLOT_CAPTIONS.get(name, name)) for name, file in plot_files.items()],
        concept_names=[c for c, _ in stats["top_concepts"]],
        gallery_count=len(gallery),
        gallery_json=_json_for_html({"pairs": gallery}),
        gallery_js=package.joinpath("report.js").read_text(encoding="utf-8"),
        errors_js=package.joinpath("errors.js").read_text(encoding="utf-8"),
        css=package.joinpath("report.css").read_text(encoding="utf-8"),
    )
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return ReportSummary(index, len(gallery), made["thumbnails"], made["mixes"], made["source_clips"], dict(problems))
