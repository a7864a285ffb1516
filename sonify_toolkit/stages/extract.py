"""`sonify extract`: images -> sounding concepts per VLM (paper 3.2 and A.2), one row per image.

Plan: the image references of every input (folders, SA-1B tars, manifests, a Hugging Face
dataset), sorted inputs, `images_per_shard` per shard. Process: stream a shard's images, decode
them robustly, ask the VLM in batches, parse each answer tolerantly, retry an unparsable answer
once (sampling, since greedy would repeat it), filter non-sonic captions. Output:
`W/concepts/<vlm-slug>/NNNNN.parquet` (schema.CONCEPTS) and `.../errors/NNNNN.parquet`.

Errors are rows twice over, on purpose: the concepts table keeps exactly one row per image (with
`keep=false`, `drop_reason` = the error reason and `error` = the message, so counts always add
up and a retry run can select them), and `errors/` lists the same failures in the shape every
stage shares (per-reason counts in the stats and the closing summary).

Several VLMs per image (the paper's augmentation) are separate runs, one folder per model.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .. import concepts as cp
from .. import images as imgs
from .. import schema
from ..choices import KeywordMatch
from ..errors import InputError
from ..filter_captions import NO_FILTER_CAPTION, FilterCaptions
from ..models.device import DTYPES
from ..models.vlm_engine import ENGINES
from ..settings import (
    DEFAULT_VLM,
    EXTRACT_PROMPT,
    FILTER_CAPTION_OWN,
    IMAGES_PER_SHARD,
    MAX_CONCEPTS,
    NON_SONIC_KEYWORDS,
    NON_SONIC_MATCH,
    OPENAI_API_KEY_ENV,
    OPENAI_CONCURRENCY,
    OPENAI_MAX_RETRIES,
    OPENAI_TIMEOUT,
    SAMPLE_SEED,
    VLM_BATCH_SIZE,
    VLM_MAX_IMAGE_SIDE,
    VLM_MAX_NEW_TOKENS,
)
from ..shards import STAGE_FILE, StageDir
from ..stage import (
    ItemCallback,
    Resources,
    Shard,
    ShardContext,
    ShardResult,
    Stage,
    chunk,
    model_resources,
    named_roots,
)

MANIFEST_SUFFIXES = (".parquet", ".csv")


def concepts_dir(workdir: Path, vlm: str) -> Path:
    return Path(workdir) / "concepts" / vlm_slug(vlm)


def filter_caption_dir(source: str, vlm: str, workdir: Path) -> str | None:
    """`--filter-caption-from` -> the concepts folder whose captions filter `vlm`'s run (None: its own).

    `source` is `own`, a VLM (Hub id or path, as given to `--vlm`) extracted into the same work
    directory, or an extract folder itself. The source VLM's own run filters on its own captions."""
    if source == FILTER_CAPTION_OWN:
        return None
    given = Path(source)
    folder = given if (given / STAGE_FILE).is_file() else concepts_dir(workdir, source)
    if folder.resolve() == concepts_dir(workdir, vlm).resolve():
        return None
    return str(folder)


def _is_local_model(vlm: str) -> bool:
    v = vlm.rstrip("/")
    return v.startswith((".", "/", "~")) or Path(v).is_dir()


def vlm_name(vlm: str) -> str:
    """The VLM as rows and fingerprints name it: a Hub id as given, a local checkpoint by its folder's name.

    A local path would tie every row (and the pair ids built from them) to one machine's layout: the
    release would carry it and a checkpoint mounted elsewhere would refuse to resume.
    """
    return Path(vlm.rstrip("/")).expanduser().name if _is_local_model(vlm) else vlm


def vlm_slug(vlm: str) -> str:
    """A folder name for a model: Hub ids keep org and name ('llava-hf--llava-1.5-7b-hf'); local
    paths use their last folder name."""
    v = vlm.rstrip("/")
    if _is_local_model(vlm):
        v = Path(v).name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", v.replace("/", "--")).strip("-.")
    if not slug:
        raise InputError(f"cannot name a folder after VLM {vlm!r}")
    return slug


def stable_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def plan_inputs(
    inputs: Sequence[str],
    hf_dataset: str | None = None,
    split: str = "train",
    image_column: str = "image",
    id_column: str | None = None,
) -> list[imgs.Item]:
    """Every image reference of every input (inputs sorted, so the command line order does not matter)."""
    items: list[imgs.Item] = []
    for raw in sorted(inputs):
        p = Path(raw)
        if p.is_dir():
            found = imgs.plan_folder(p)
            if not found:  # a folder of SA-1B tars
                for tar in sorted(p.rglob("*.tar")):
                    found.extend(imgs.plan_tar(tar))
            if not found:
                raise imgs.ImageSourceError(f"no images ({', '.join(imgs.IMAGE_EXTENSIONS)}) or tars under {p}")
            items.extend(found)
        elif p.is_file() and p.suffix.lower() == ".tar":
            items.extend(imgs.plan_tar(p))
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            items.extend(imgs.plan_manifest(p))
        elif not p.exists():
            raise imgs.ImageSourceError(f"input {p} does not exist")
        else:
            raise imgs.ImageSourceError(f"input {p}: expected a folder, a .tar or a .parquet/.csv manifest")
    if hf_dataset:
        items.extend(imgs.plan_hf(hf_dataset, split, image_column, id_column))
    if not items:
        raise imgs.ImageSourceError("no images to process: give folders, tars, manifests or --hf-dataset")
    imgs.check_unique(items)
    return items


@dataclass
class ExtractStage(Stage):
    """Sounding concepts of every image from one VLM."""

    vlm: str = DEFAULT_VLM
    inputs: list[str] = field(default_factory=list)
    hf_dataset: str | None = None
    split: str = "train"
    image_column: str = "image"
    id_column: str | None = None
    engine: str = "transformers"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = VLM_BATCH_SIZE
    max_new_tokens: int = VLM_MAX_NEW_TOKENS
    trust_remote_code: bool = False
    prompt: str = EXTRACT_PROMPT
    max_concepts: int = MAX_CONCEPTS
    non_sonic_keywords: tuple[str, ...] = NON_SONIC_KEYWORDS
    keyword_match: str = NON_SONIC_MATCH  # a choices.KeywordMatch
    filter_caption_dir: str | None = None  # another VLM's concepts folder whose captions filter (None: own)
    sample: int | None = None  # a seeded uniform subset of this many images (images.sample_items)
    sample_seed: int = SAMPLE_SEED
    tokenizer: str | None = None  # transformers engine: a tokenizer apart from the checkpoint (CogVLM: Vicuna's)
    max_image_side: int = VLM_MAX_IMAGE_SIDE
    images_per_shard: int = IMAGES_PER_SHARD
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never in params(), repr or any file
    concurrency: int = OPENAI_CONCURRENCY
    timeout: float = OPENAI_TIMEOUT
    max_retries: int = OPENAI_MAX_RETRIES

    name = "extract"
    transient = ("_engine", "_reader", "_filter", "_plan")  # per worker; the plan is the driver's

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"unknown engine '{self.engine}' (choose: {', '.join(ENGINES)})")
        if self.engine == "openai" and not self.base_url:
            raise InputError("--engine openai needs --base-url (e.g. http://localhost:8000/v1)")
        if self.dtype not in DTYPES:
            raise InputError(f"unknown --dtype '{self.dtype}' (choose: {', '.join(DTYPES)})")
        if self.max_concepts < 1:
            raise InputError("--max-concepts must be at least 1")
        if self.sample is not None and self.sample < 1:
            raise InputError(f"--sample must be at least 1 (got {self.sample})")
        try:
            self.keyword_match = KeywordMatch(self.keyword_match).value
        except ValueError:
            choices = ", ".join(m.value for m in KeywordMatch)
            raise InputError(f"unknown --keyword-match '{self.keyword_match}' (choose: {choices})") from None
        self.non_sonic_keywords = tuple(self.non_sonic_keywords)
        vlm_slug(self.vlm)
        self._engine: Any = None
        self._reader: imgs.ImageReader | None = None
        self._filter: FilterCaptions | None = None
        self._plan: list[Shard] | None = None

    @property
    def vlm_name(self) -> str:
        return vlm_name(self.vlm)

    def location_roots(self) -> dict[str, Path]:
        """Where the images live, by name: plan items are fingerprinted relative to these, so the same
        images mounted elsewhere resume (and `_stage.json` records the roots for humans)."""
        roots = [Path(p) if not Path(p).is_file() or Path(p).suffix.lower() == ".tar" else Path(p).parent
                 for p in sorted(self.inputs)]  # fmt: skip
        if self.hf_dataset and Path(self.hf_dataset).exists():
            roots.append(Path(self.hf_dataset))
        return named_roots(roots)

    @property
    def filter_source(self) -> FilterCaptions | None:
        """The other VLM's captions that decide the non-sonic filter; None when each row's own does."""
        if self.filter_caption_dir is None:
            return None
        if self._filter is None:
            self._filter = FilterCaptions(self.filter_caption_dir)
        return self._filter

    @property  # type: ignore[override]
    def resources(self) -> Resources:
        """One GPU per worker for the in-process engine on CUDA; the openai engine only waits on HTTP."""
        return model_resources(self.device) if self.engine == "transformers" else Resources(num_cpus=1)

    def _resolved_dtype(self) -> str:
        if self.engine != "transformers":
            return "server"  # the server's precision; --dtype does not reach it
        from ..models.device import pick_device, torch_dtype

        return str(torch_dtype(self.dtype, pick_device(self.device))).removeprefix("torch.")

    @property
    def prompt_text(self) -> str:
        return cp.render_prompt(self.prompt, self.max_concepts)

    def output_dir(self, workdir: Path) -> Path:
        return concepts_dir(workdir, self.vlm)

    def plan(self) -> list[Shard]:
        if self._plan is None:
            items = plan_inputs(self.inputs, self.hf_dataset, self.split, self.image_column, self.id_column)
            if self.sample is not None:
                items = imgs.sample_items(items, self.sample, self.sample_seed)
            if self.filter_source is not None:
                self.filter_source.check_covers([str(it[1]) for it in items])
            self._plan = chunk(items, self.images_per_shard)
        return self._plan

    def params(self) -> dict[str, Any]:
        """What changes the answers. Left out on purpose: device, batch size, server URL, key,
        concurrency, timeouts (a run may resume on other hardware or another server). The precision
        is the resolved one: `auto` is fp32 on CPU and bf16 on GPU, answers that must not share a folder.
        A caption source is recorded by its VLM and its run's fingerprint: re-extracting that VLM with
        other parameters changes this run's drops, so this folder then refuses to mix."""
        source = self.filter_source
        return {
            "vlm": vlm_name(self.vlm),
            "engine": self.engine,
            "dtype": self._resolved_dtype(),
            "prompt": self.prompt_text,
            "max_concepts": self.max_concepts,
            "max_new_tokens": self.max_new_tokens,
            "non_sonic_keywords": sorted(self.non_sonic_keywords),
            "keyword_match": self.keyword_match,
            "filter_caption_from": source.vlm if source else FILTER_CAPTION_OWN,
            "filter_caption_run": source.fingerprint if source else None,
            "sample": self.sample,
            "sample_seed": self.sample_seed if self.sample is not None else None,
            "tokenizer": self.tokenizer,
            "max_image_side": self.max_image_side,
            "images_per_shard": self.images_per_shard,
            "trust_remote_code": self.trust_remote_code,
        }

    def setup(self) -> None:
        from ..models.vlm_factory import make_engine

        self._reader = imgs.ImageReader(self.image_column)
        self._engine = make_engine(
            self.engine,
            self.vlm,
            device=self.device,
            dtype=self.dtype,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            trust_remote_code=self.trust_remote_code,
            tokenizer=self.tokenizer,
            base_url=self.base_url,
            api_key=self.api_key or _env_key(),
            concurrency=self.concurrency,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

    def process(self, shard: Shard, on_item: ItemCallback | None = None) -> ShardResult:
        if self._engine is None or self._reader is None:
            self.setup()
        run = _ShardRun(self, shard, on_item)
        return run.result()

    def finalize(self, workdir: Path) -> dict[str, Any]:
        sd = StageDir(self.output_dir(workdir))
        c: Counter[str] = Counter()
        for st in sd.stats():
            c.update(st.get("counters", {}))
            c["items"] += st.get("items", 0)
        secs = c["generate_ms"] / 1000  # summed over shards: with N workers busy at once, N times the wall time
        return {
            "kept": f"{c['kept']:,} of {c['items']:,} images ({c['concepts']:,} concepts)",
            "dropped": (
                f"{c['dropped_non_sonic']:,} non-sonic ({self.keyword_match} match on "
                f"{self.filter_source.vlm if self.filter_source else 'its own'} captions), "
                f"{c['dropped_no_concepts']:,} without sounding concepts"
                + (f", {c['dropped_no_filter_caption']:,} without a filter caption" if self.filter_source else "")
            ),
            "throughput": (
                f"{c['images'] / secs:,.2f} images/s, {c['generated_tokens'] / secs:,.1f} generated tokens/s "
                f"per worker (over {secs:,.1f} s of generation)"
                if secs > 0
                else "n/a"
            ),
        }


def _env_key() -> str | None:
    return os.environ.get(OPENAI_API_KEY_ENV) or None


_DROP_COUNTERS = {
    cp.NON_SONIC: "dropped_non_sonic",
    cp.NO_CONCEPTS: "dropped_no_concepts",
    NO_FILTER_CAPTION: "dropped_no_filter_caption",
}


class _ShardRun:
    """One shard's loop: read -> decode -> batch -> generate -> parse (-> retry) -> rows.

    Counters: `images` answered by the VLM (whatever the answer; retries not counted twice),
    `generated_tokens` (retries included), `generate_ms` (wall time inside the engine), `retried`,
    `kept`, `dropped_no_concepts`, `dropped_non_sonic`, `dropped_no_filter_caption` (the caption source
    failed on the image), `concepts` (of kept images). The stats
    also hold `images_per_second` and `tokens_per_second` over the generation time.
    """

    def __init__(self, stage: ExtractStage, shard: Shard, on_item: ItemCallback | None):
        self.stage, self.shard = stage, shard
        self.ctx = ShardContext(shard, on_item)
        self.rows: list[dict[str, Any] | None] = [None] * len(shard.items)
        self.prompt = stage.prompt_text
        source = stage.filter_source
        self.filter_rows = source.lookup([str(it[1]) for it in shard.items]) if source else None

    def _row(self, pos: int, **values: Any) -> None:
        item = self.shard.items[pos]
        self.rows[pos] = {
            "image_id": item[1],
            "image_path": imgs.image_path(item),
            "vlm": self.stage.vlm_name,
            "concepts": [],
            "keep": False,
            **values,
        }
        self.ctx.advance()

    def _error(self, pos: int, reason: str, detail: str, raw: str | None = None) -> None:
        self.ctx.error(self.shard.items[pos][1], reason, detail)
        self._row(pos, drop_reason=reason, error=detail[:2000], raw_response=raw)

    def _generate(self, images: list[Image.Image], seeds: list[int] | None) -> list[Any]:
        with self.ctx.phase("generate"):
            out = self.stage._engine.generate(images, self.prompt, seeds)
        self.ctx.count("generated_tokens", sum(g.tokens for g in out))
        return out

    def _flush(self, batch: list[tuple[int, Image.Image]]) -> None:
        if not batch:
            return
        gens = self._generate([img for _, img in batch], None)
        retry: list[tuple[int, Image.Image]] = []
        for (pos, img), g in zip(batch, gens, strict=True):
            if g.error is not None:
                self._error(pos, "generation_failed", g.error)
                continue
            self.ctx.count("images")
            if not self._accept(pos, g.text, final=False):
                retry.append((pos, img))
            else:
                self._mark_cut(pos, g)
        if retry:
            self.ctx.count("retried", len(retry))
            seeds = [stable_seed(self.shard.items[pos][1]) for pos, _ in retry]  # the image's own, not its batch's
            gens = self._generate([img for _, img in retry], seeds)
            for (pos, _), g in zip(retry, gens, strict=True):
                if g.error is not None:
                    self._error(pos, "generation_failed", g.error)
                else:
                    self._accept(pos, g.text, final=True)
                    self._mark_cut(pos, g)

    def _mark_cut(self, pos: int, g: Any) -> None:
        """The row of an answered image says whether the engine cut the answer it stored."""
        row = self.rows[pos]
        if row is not None:
            row["raw_response_truncated"] = bool(g.truncated)

    def _accept(self, pos: int, text: str | None, final: bool) -> bool:
        """Parse and filter one answer into its row; False when unparsable and a retry remains."""
        with self.ctx.phase("parse"):
            try:
                ans = cp.parse_response(text, self.stage.max_concepts)
            except cp.UnparsableResponse as exc:
                if not final:
                    return False
                self._error(pos, "unparsable_response", f"{exc} (after one retry)", raw=text)
                return True
        keep, reason = self._decide(pos, ans)
        self.ctx.count("kept" if keep else _DROP_COUNTERS.get((reason or "").split(":")[0], "dropped_non_sonic"))
        self.ctx.count("concepts", len(ans.concepts) if keep else 0)
        self._row(pos, caption=ans.caption, concepts=ans.concepts, keep=keep, drop_reason=reason, raw_response=text)
        return True

    def _decide(self, pos: int, ans: cp.ParsedAnswer) -> tuple[bool, str | None]:
        """The filter on this answer's caption, or on the caption source's for the same image."""
        caption = ans.caption
        if self.filter_rows is not None:
            caption, source_error = self.filter_rows[str(self.shard.items[pos][1])]
            if source_error is not None:  # the source VLM has no caption for it: the paper's rule cannot be applied
                return False, NO_FILTER_CAPTION
        return cp.decide(caption, ans.concepts, self.stage.non_sonic_keywords, self.stage.keyword_match)

    def result(self) -> ShardResult:
        st = self.stage
        assert st._reader is not None
        batch: list[tuple[int, Image.Image]] = []
        size = st._engine.batch_size  # the openai engine asks for more than --batch-size: its concurrency x 4
        payloads = st._reader.iter_payloads(self.shard.items)
        for pos in range(len(self.shard.items)):
            with self.ctx.phase("read"):
                _, payload = next(payloads)
            if isinstance(payload, imgs.ImageDecodeError):
                self._error(pos, payload.reason, str(payload))
                continue
            try:
                with self.ctx.phase("decode"):
                    img = imgs.decode_image(payload, st.max_image_side or None)
            except imgs.ImageDecodeError as exc:
                self._error(pos, exc.reason, str(exc))
                continue
            batch.append((pos, img))
            if len(batch) >= size:
                self._flush(batch)
                batch = []
        self._flush(batch)
        secs = self.ctx.timer.seconds["generate"]
        counts = self.ctx.counters
        counts["generate_ms"] = round(secs * 1000)
        return self.ctx.result(
            {"": schema.table(self.rows, schema.CONCEPTS)},  # type: ignore[arg-type]
            extra={
                "images_per_second": round(counts["images"] / secs, 3) if secs else None,
                "tokens_per_second": round(counts["generated_tokens"] / secs, 2) if secs else None,
                "vlm": st.vlm_name,
                "engine": st.engine,
            },
        )
