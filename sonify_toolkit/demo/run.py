"""`sonify demo`: the whole pipeline — pool, extract, retrieve, render, publish, report — on the bundled sample.

Small real checkpoints are used when the Hub answers. When it does not, the same pipeline runs with
tiny random models built on the spot, and the run is marked a *smoke run* in the pool manifest,
which the terminal, the dataset card and the report all read and show. Pool and retrieve run the
very chains of their commands (`pipeline.run_pool`, `pipeline.run_retrieve`: barrier and reuse pass
included), so the demo exercises what a user runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from ..concepts import render_prompt
from ..errors import ConcurrentRunError
from ..pipeline import run_pool, run_retrieve
from ..pool_files import update_manifest
from ..runner import RunOptions, RunSummary
from ..stage import Stage
from ..stages.extract import ExtractStage
from ..stages.pool import PoolEmbedStage, PoolSegmentsStage
from ..stages.publish import build_release
from ..stages.render import RenderStage
from ..stages.retrieve import RetrievePairsStage, RetrieveSearchStage, pool_clap
from . import DEMO_CLAP, DEMO_VLM
from .assets import write_demo_images, write_demo_sounds

SMOKE_BANNER = "SMOKE RUN: tiny random models made these pairs; they mean nothing."
# What the tiny VLM is taught to answer for every image, so that later stages have concepts to carry.
SMOKE_ANSWER = (
    '{"caption": "A smoke-run answer from a tiny random model.", "sounds": ['
    '{"name": "clock", "description": "a clock ticking"}, '
    '{"name": "birds", "description": "birds chirping in the morning"}, '
    '{"name": "engine", "description": "an engine humming"}]}'
)


@dataclass(frozen=True)
class DemoModels:
    vlm: str
    clap: str
    smoke_reason: str | None = None  # why the Hub models could not be used

    @property
    def smoke_run(self) -> bool:
        return self.smoke_reason is not None


@dataclass(frozen=True)
class DemoResult:
    workdir: Path
    release: Path
    audio: Path
    report: Path
    smoke_run: bool


def hub_unreachable(model_ids: list[str], timeout: float = 10.0) -> str | None:
    """Why the Hub models cannot be fetched (one line), or None when they can."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import model_info

    for model_id in model_ids:
        if Path(model_id).is_dir():
            continue
        try:
            model_info(model_id, timeout=timeout)
        except Exception as exc:  # any failure means: no usable Hub, whatever the transport says
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return f"cannot reach the Hub for {model_id} ({type(exc).__name__}: {first[:160]})"
    return None


def tiny_models(models_dir: Path, reason: str) -> DemoModels:
    """Build (once) the tiny random CLAP and VLM of a smoke run under `models_dir`."""
    from .tiny_models import build_tiny_clap, build_tiny_llava, teach_fixed_answer

    prompt = render_prompt()
    clap, vlm = models_dir / "clap", models_dir / "llava"
    if not (clap / "config.json").exists():
        build_tiny_clap(models_dir)
    if not (vlm / "config.json").exists() or not (models_dir / "taught").exists():
        build_tiny_llava(models_dir, corpus=[prompt, SMOKE_ANSWER])
        teach_fixed_answer(vlm, prompt, SMOKE_ANSWER)
        (models_dir / "taught").write_text(SMOKE_ANSWER)
    return DemoModels(vlm=str(vlm), clap=str(clap), smoke_reason=reason)


def choose_models(workdir: Path, vlm: str, clap: str, tiny: bool, console: Console) -> DemoModels:
    reason = "--tiny was given" if tiny else hub_unreachable([vlm, clap])
    if reason is None:
        return DemoModels(vlm=vlm, clap=clap)
    console.print(f"[bold yellow]demo:[/] {reason}; running with tiny random models instead (a smoke run)")
    with console.status("building tiny random models (the VLM learns one fixed answer, ~30 s)"):
        return tiny_models(workdir / "models", reason)


def run_demo(
    workdir: Path,
    *,
    vlm: str = DEMO_VLM,
    clap: str = DEMO_CLAP,
    tiny: bool = False,
    device: str = "auto",
    workers: int = 1,
    overwrite: bool = False,
    console: Console | None = None,
) -> DemoResult:
    console = console or Console()
    workdir = Path(workdir)
    images = write_demo_images(workdir / "inputs" / "images")
    sounds = workdir / "inputs" / "sounds"
    if not (sounds / "labels.csv").exists():
        write_demo_sounds(sounds)
    models = choose_models(workdir, vlm, clap, tiny, console)
    options = RunOptions(workers=workers, num_shards=1, shard_index=0, overwrite=overwrite)  # the whole run here

    def run(stage: Stage, where: Path = workdir) -> RunSummary:
        return options.run(stage, where, console)

    collections = {"demo": str(sounds)}
    segments = PoolSegmentsStage(collections, {"demo": [str(sounds / "labels.csv")]}, files_per_shard=16)
    embed = PoolEmbedStage(collections, model=models.clap, device=device, files_per_shard=16, workdir=str(workdir))
    run_pool(options, workdir, segments, embed, console)
    update_manifest(workdir, "demo", {"smoke_run": models.smoke_run, "reason": models.smoke_reason})

    run(ExtractStage(vlm=models.vlm, inputs=[str(images)], device=device, batch_size=4, images_per_shard=4))
    search = RetrieveSearchStage(workdir=str(workdir), clap=pool_clap(workdir, models.clap), device=device)
    if not run_retrieve(options, workdir, search, RetrievePairsStage(workdir=str(workdir), search=search), console):
        # the demo takes every shard itself, so only another run in the same work directory can hold some back
        raise ConcurrentRunError(f"the search shards in {workdir} are not all complete: rerun `sonify demo`")

    audio = workdir / "render"
    run(RenderStage(str(workdir / "pairs"), collections, out=str(audio)), audio)
    release = build_release(workdir, workdir / "release", rendered=audio, pretty_name="sonify demo")

    from ..report.build import build_report  # matplotlib and Pillow: only once there is something to show

    report = build_report(workdir, workdir / "report", rendered=audio, source_roots=collections, image_roots=[images])
    result = DemoResult(workdir, release.folder, audio, report.index, models.smoke_run)
    show_result(result, console)
    return result


def show_result(result: DemoResult, console: Console) -> None:
    lines = [
        f"release  {result.release}   (load with datasets.load_dataset('{result.release}'))",
        f"audio    {result.audio / 'audio'}",
        f"report   {result.report}   (open in a browser)",
    ]
    if result.smoke_run:
        lines.insert(0, f"[bold red]{SMOKE_BANNER}[/]")
    console.print(Panel("\n".join(lines), title="sonify demo: done", expand=False))
