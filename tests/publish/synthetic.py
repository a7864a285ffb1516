"""A synthetic work directory built straight from the table schemas (no model, no other stage's code).

Shared by tests/publish, tests/status and tests/report: pool (segments + manifest), two VLMs'
concepts with real image files, pairs, and a render output folder with real FLAC mixes.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sonify_toolkit import audio, schema
from sonify_toolkit.fileio import sha256_file
from sonify_toolkit.shards import StageDir, atomic_write_json

CONCEPT_NAMES = ["dog", "rain", "car engine", "footsteps", "siren", "birds", "wind"]
VLMS = ["tiny-vlm-a", "tiny-vlm-b"]
COLLECTIONS = ["fsd50k", "bbc_sfx"]


def _stats(rows: dict[str, int], errors: dict[str, int] | None = None, items: int = 0) -> dict[str, Any]:
    return {"items": items, "rows": rows, "errors": errors or {}, "counters": {}, "seconds": 0.01}


def _image(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), color).save(path)


def make_workdir(
    root: Path,
    *,
    n_images: int = 12,
    smoke_run: bool = False,
    partial: bool = False,
    with_render: bool = True,
) -> Path:
    """Write a work directory under `root/work` (images under `root/images`, recordings under
    `root/sounds/<collection>`); returns the workdir.

    `partial`: the second pairs shard and the second VLM's last shard are missing (a run cut short).
    """
    rng = np.random.default_rng(0)
    w = root / "work"
    images = root / "images"

    # --- pool -------------------------------------------------------------------------------
    seg_rows = []
    t10 = np.arange(16_000 * 10) / 16_000
    for c, coll in enumerate(COLLECTIONS):
        for i in range(10):
            wav = root / "sounds" / coll / "clips" / f"c{i}.wav"  # real files: previews render from them
            wav.parent.mkdir(parents=True, exist_ok=True)
            wav.write_bytes(audio.encode((0.2 * np.sin(2 * np.pi * (300 + 50 * i + c) * t10)).astype(np.float32),
                                         fmt="wav"))  # fmt: skip
            seg_rows.append(
                {
                    "clip_id": f"{coll}/clips/c{i}.wav#{i % 2}",
                    "source": coll,
                    "path": f"clips/c{i}.wav",
                    "segment": i % 2,
                    "num_frames": 80_000,
                    "source_sha256": sha256_file(wav),
                    "lufs": float(-30 + rng.uniform(-5, 5)),
                    "peak": 0.5,
                    "labels": [CONCEPT_NAMES[i % len(CONCEPT_NAMES)]],
                }
            )
    pool = StageDir(w / "pool")
    pool.prepare("pool", {"sample_rate": 16000, "files_per_shard": 256, "sources": COLLECTIONS, "plan": "x"}, 1)
    errors = schema.table([{"item": "fsd50k/bad.wav", "reason": "corrupt_audio", "detail": "x"}], schema.ERRORS)
    pool.write_shard(
        0,
        {"segments": schema.table(seg_rows, schema.POOL_SEGMENTS), "errors": errors},
        _stats({"segments": len(seg_rows), "errors": 1}, {"corrupt_audio": 1}, 21),
    )
    atomic_write_json(
        w / "pool" / "manifest.json",
        {
            "segments": {
                "count": len(seg_rows),
                "per_source": {c: 10 for c in COLLECTIONS},
                "roots": {c: f"/data/{c}" for c in COLLECTIONS},
                "params": {"sample_rate": 16000},
            },
            "clap": {"model": "tiny-clap", "revision": "local", "dim": 16, "count": len(seg_rows)},
        },
    )
    clap = StageDir(w / "pool" / "clap")
    clap.prepare("pool-embed", {"model": "/tmp/tiny-clap", "clap_sample_rate": 48000, "plan": "x"}, 1)
    clap.write_shard(0, {"errors": schema.ERRORS.empty_table()}, _stats({"errors": 0}, {}, 21))

    # --- images + concepts --------------------------------------------------------------------
    tar_path = images / "batch.tar"
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w") as tar:
        for i in range(2):
            buf = io.BytesIO()
            Image.new("RGB", (40, 40), (200, 30 * i, 90)).save(buf, format="PNG")
            info = tarfile.TarInfo(f"t{i}.png")
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)
    image_refs = {}
    for i in range(n_images):
        if i < 2:
            image_refs[f"img{i:03d}"] = f"{tar_path}::t{i}.png"
        else:
            _image(images / f"img{i:03d}.png", (20 * i % 255, 100, 150))
            image_refs[f"img{i:03d}"] = str(images / f"img{i:03d}.png")

    pair_rows: list[dict[str, Any]] = []
    for v, vlm in enumerate(VLMS):
        sd = StageDir(w / "concepts" / vlm)
        params = {"vlm": f"/models/{vlm}", "prompt": "List the sounding concepts.", "plan": "x"}
        if smoke_run:
            params["smoke_run"] = True
        sd.prepare("extract", params, 2)
        half = n_images // 2
        for shard in range(2):
            if partial and v == 1 and shard == 1:
                continue
            rows = []
            drop = {}
            for i in range(shard * half, (shard + 1) * half):
                image_id = f"img{i:03d}"
                k = 1 + (i + v) % 3
                names = [CONCEPT_NAMES[(i + v + j) % len(CONCEPT_NAMES)] for j in range(k)]
                keep = i != 5
                if not keep:
                    drop["logo"] = drop.get("logo", 0) + 1
                rows.append(
                    {
                        "image_id": image_id,
                        "image_path": image_refs[image_id],
                        "vlm": vlm,
                        "caption": f"a scene with {' and '.join(names)} <b>&amp;</b>",
                        "concepts": [{"name": n, "description": f"sound of {n}"} for n in names],
                        "keep": keep,
                        "drop_reason": None if keep else "logo",
                        "raw_response": "{}",
                        "error": None,
                    }
                )
                if keep:
                    sources = []
                    for j, n in enumerate(names):
                        seg = seg_rows[(i * 3 + j * 7 + v) % len(seg_rows)]
                        s = float(rng.uniform(0.05, 0.6))
                        sources.append(
                            {
                                "concept": n,
                                "description": f"sound of {n}",
                                "clip_id": seg["clip_id"],
                                "source": seg["source"],
                                "path": seg["path"],
                                "segment": seg["segment"],
                                "source_sha256": seg["source_sha256"],
                                "similarity": s,
                                "score": float(np.sqrt(s)),
                                "threshold": 0.4,
                                "clip_lufs": seg["lufs"],
                                "target_lufs": float(rng.uniform(-24, -22)),
                            }
                        )
                    pair_rows.append(
                        {
                            "pair_id": f"{image_id}|{vlm}",
                            "image_id": image_id,
                            "image_source": "sa1b",
                            "vlm": vlm,
                            "caption": rows[-1]["caption"],
                            "seed": 0,
                            "sources": sources,
                        }
                    )
            sd.write_shard(
                shard,
                {"": schema.table(rows, schema.CONCEPTS)},
                _stats({"": len(rows)}, {"unparseable_response": 1} if shard == 0 else {}, len(rows)),
            )

    # --- pairs ----------------------------------------------------------------------------------
    pairs = StageDir(w / "pairs")
    rparams = {"top_k": 4, "lufs_min": -24.0, "lufs_max": -22.0, "seed": 0, "clap": "/tmp/tiny-clap", "plan": "x"}
    if smoke_run:
        rparams["smoke_run"] = True
    pairs.prepare("retrieve", rparams, 2)
    mid = len(pair_rows) // 2
    for shard, part in enumerate([pair_rows[:mid], pair_rows[mid:]]):
        if partial and shard == 1:
            continue
        pairs.write_shard(shard, {"": schema.table(part, schema.PAIRS)}, _stats({"": len(part)}, {}, len(part)))

    # --- rendered audio -----------------------------------------------------------------------
    if with_render and not partial:
        render = StageDir(w / "render")
        rparams = {"pairs": str(w / "pairs"), "sources": COLLECTIONS, "format": "flac", "verify": True, "plan": "x"}
        render.prepare("render", rparams, 1)
        index = []
        t = np.arange(16_000 * 5) / 16_000
        for k, row in enumerate(pair_rows):
            rel = f"audio/{k:05d}.flac"
            if k == 3:
                index.append({"pair_id": row["pair_id"], "path": None, "status": "missing_file", "error": "x"})
                continue
            x = (0.1 * np.sin(2 * np.pi * (220 + 20 * k) * t)).astype(np.float32)
            (w / "render" / "audio").mkdir(parents=True, exist_ok=True)
            (w / "render" / rel).write_bytes(audio.encode(x))
            index.append(
                {
                    "pair_id": row["pair_id"],
                    "path": rel,
                    "lufs": float(audio.loudness(x)),
                    "peak": float(audio.peak(x)),
                    "mix_gain_db": -1.5 if k == 4 else 0.0,
                    "status": "ok",
                }
            )
        render.write_shard(
            0, {"index": schema.table(index, schema.RENDERED)}, _stats({"index": len(index)}, {"missing_file": 1})
        )
    return w


def pairs_table(workdir: Path) -> Any:
    return StageDir(workdir / "pairs").read_table("", schema.PAIRS)
