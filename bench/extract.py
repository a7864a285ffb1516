"""Benchmark the CPU side of `sonify extract`: answer parsing and image decoding per core.

The VLM dominates a real run (seconds per batch); this checks that what surrounds it never does.

* parse     `concepts.parse_response` + `decide` over a mix of realistic answer formats
* decode    SA-1B-sized JPEGs (2250x1500) to the VLM's input: full decode vs draft-mode decode
            (`images.decode_image`, which decodes at a reduced DCT scale when `max_side` allows)
* tar read  `ImageReader` over an SA-1B style tar (one seek + read per image)

    python bench/extract.py [--answers 20000] [--images 40] [--max-side 672]
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from PIL import Image

from sonify_toolkit import concepts as cp
from sonify_toolkit import images as imgs

ANSWERS = [
    '{"caption": "A dog by a river.", "sounds": [{"name": "dog", "description": "a dog barking"}, '
    '{"name": "river", "description": "water flowing"}]}',
    'Sure!\n```json\n{"caption": "A busy street with cars.", "sounds": [{"name": "Car", "description": "engine"}, '
    '{"name": "people", "description": "chatter"}, {"name": "bus", "description": "brakes hissing"}]}\n```',
    "Caption: A harbour at dusk.\n- boat: an engine idling\n- seagulls: birds calling\n- water: waves lapping",
    "1. **Train** - a train rumbling on tracks\n2. **Bell** - a crossing bell ringing",
    '{"caption": "The logo of a bank.", "sounds": []}',
    "There are no sound sources visible in this image.",
    "%%% noise ###",
]


def bench_parse(n: int) -> None:
    t0 = time.perf_counter()
    kept = 0
    for i in range(n):
        try:
            ans = cp.parse_response(ANSWERS[i % len(ANSWERS)])
        except cp.UnparsableResponse:
            continue
        kept += cp.decide(ans.caption, ans.concepts)[0]
    dt = time.perf_counter() - t0
    print(f"parse     {n / dt:>10,.0f} answers/s  ({dt / n * 1e6:.1f} us each, {kept} kept)")


def sa1b_like(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (150, 225, 3), dtype=np.uint8)  # smooth-ish content like a photo
    return imgs.encode_jpeg(Image.fromarray(small, "RGB").resize((2250, 1500), Image.Resampling.BICUBIC), quality=90)


def bench_decode(n: int, max_side: int) -> list[bytes]:
    data = [sa1b_like(i) for i in range(n)]
    t0 = time.perf_counter()
    for d in data:
        img = Image.open(io.BytesIO(d)).convert("RGB")
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    for d in data:
        imgs.decode_image(d, max_side)
    draft = time.perf_counter() - t0
    print(
        f"decode    full {n / full:>7,.1f} img/s   draft {n / draft:>7,.1f} img/s   (2250x1500 -> {max_side} px side)"
    )
    return data


def bench_tar(data: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sa_000000.tar"
        with tarfile.open(path, "w") as tf:
            for i, blob in enumerate(data):
                info = tarfile.TarInfo(f"sa_{i}.jpg")
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))
        t0 = time.perf_counter()
        items = imgs.plan_tar(path)
        plan = time.perf_counter() - t0
        reader = imgs.ImageReader()
        t0 = time.perf_counter()
        nbytes = sum(len(p) for _, p in reader.iter_payloads(items) if isinstance(p, bytes))
        read = time.perf_counter() - t0
        reader.close()
    mb = nbytes / 1e6
    print(f"tar read  plan {len(items) / plan:>7,.0f} members/s   read {mb / read:>7,.0f} MB/s ({len(items)} images)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--answers", type=int, default=20_000)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--max-side", type=int, default=672)
    args = ap.parse_args()
    bench_parse(args.answers)
    data = bench_decode(args.images, args.max_side)
    bench_tar(data)


if __name__ == "__main__":
    main()
