"""`sonify demo`: the whole pipeline on the bundled sample (the README's main command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..demo import DEMO_CLAP, DEMO_VLM
from ..runner import collect_summaries
from .common import Device, Overwrite, Workers, exit_on_item_errors, one_line_errors


@one_line_errors("demo")
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Where the demo's inputs and outputs go.")] = Path(
        "sonify-demo"
    ),
    vlm: Annotated[str, typer.Option("--vlm", help="Vision-language model (Hub id or path).")] = DEMO_VLM,
    clap: Annotated[str, typer.Option("--clap", help="CLAP checkpoint (Hub id or path).")] = DEMO_CLAP,
    tiny: Annotated[
        bool, typer.Option("--tiny", help="Skip the Hub: tiny random models, a smoke run whose pairings mean nothing.")
    ] = False,
    device: Device = "auto",
    workers: Workers = 1,
    overwrite: Overwrite = False,
) -> None:
    """Run pool -> extract -> retrieve -> render -> publish -> report on a dozen images and a few dozen sounds.

    Exits 3 when a stage left error rows (smoke runs too: nothing in the bundled sample should fail)."""
    from ..demo.run import run_demo  # the whole pipeline's imports, only when the demo runs

    # The bundled inputs are all readable and a smoke run's VLM is taught a parsable answer, so an error
    # row is a real fault even in a smoke run: exit 3 after the result, like every stage command.
    with collect_summaries() as summaries:
        run_demo(workdir, vlm=vlm, clap=clap, tiny=tiny, device=device, workers=workers, overwrite=overwrite)
    exit_on_item_errors("demo", summaries)
