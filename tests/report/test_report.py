"""`sonify report` in headless Chromium: loads from file:// without errors, shows plots and the gallery,
its audio elements point at files that exist, and the concept filter and paging work."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sonify_toolkit.cli import app
from sonify_toolkit.report import build_report
from sonify_toolkit.stages.publish import build_release
from tests.publish.synthetic import make_workdir
from tests.report.conftest import Browser, Dom, artifacts_dir


@pytest.fixture(scope="module")
def report_dir(run_root: Path, source_roots: dict[str, str]) -> Path:
    out = run_root / "html"
    args = ["report", str(run_root / "work"), "--out", str(out)]
    for name, root in source_roots.items():
        args += ["--source", f"{name}={root}"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "22 pairs previewed, 11 thumbnails, 21 mixes, 44 source clips" in result.output
    return out


def _no_errors(dom: Dom, log: str) -> None:
    assert dom.text_of("page-errors") == "", dom.text_of("page-errors")
    assert dom.find("html")[0].get("data-errors") is None
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []


def test_page_loads_cleanly_with_plots_gallery_and_audio(report_dir: Path, browser: Browser) -> None:
    index = report_dir / "index.html"
    html, log = browser.dump_dom(index.as_uri())
    dom = Dom(html)
    _no_errors(dom, log)
    plots = dom.with_class("img", "plot")
    assert len(plots) == 9  # concepts/pair, top concepts, 5 distributions, rendered LUFS, clip reuse
    for img in plots:
        assert (report_dir / img["src"]).is_file() and not Path(img["src"]).is_absolute()
    cards = dom.with_class("div", "card")
    assert len(cards) == 12  # one page
    assert "page 1 of 2 (22 of 22 pairs)" in dom.text_of("page-info")
    thumbs = dom.with_class("img", "thumb")
    assert len(thumbs) == 12 and all((report_dir / t["src"]).is_file() for t in thumbs)
    mixes, sources = dom.with_class("audio", "mix"), dom.with_class("audio", "source")
    assert len(mixes) == 11  # the fourth pair failed to render: its card says so instead
    assert "mix: not rendered (missing_file)" in html
    assert len(sources) == len(dom.with_class("button", "chip")) > 12  # a player for every source shown
    for a in mixes + sources:
        assert (report_dir / a["src"]).is_file(), a["src"]
    # captions are model output: shown as text, never as markup
    assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in html
    assert "Errors by reason" in html and "corrupt_audio" in html and "unparseable_response" in html
    shot = browser.screenshot(index.as_uri(), report_dir / "screenshot.png")
    kept = artifacts_dir() / "report-screenshot.png"
    shutil.copyfile(shot, kept)
    print(f"report screenshot: {kept}")
    assert shot.stat().st_size > 10_000


def test_filter_by_concept_and_paging_from_the_url(report_dir: Path, browser: Browser) -> None:
    html, log = browser.dump_dom(report_dir.joinpath("index.html").as_uri() + "#concept=rain")
    dom = Dom(html)
    _no_errors(dom, log)
    info = dom.text_of("page-info")
    n = int(re.search(r"\((\d+) of 22 pairs\)", info).group(1))
    assert 0 < n < 22 and len(dom.with_class("div", "card")) == min(n, 12)
    chips = re.findall(r'<div class="card" data-pair="([^"]+)">(.*?)<div class="meta">\1</div>', html, re.S)
    assert len(chips) == min(n, 12) and all(">rain</button>" in body for _, body in chips)
    html2, _ = browser.dump_dom(report_dir.joinpath("index.html").as_uri() + "#page=2")
    assert "page 2 of 2 (22 of 22 pairs)" in Dom(html2).text_of("page-info")
    assert len(Dom(html2).with_class("div", "card")) == 10


def test_a_missing_file_is_caught_by_the_page(report_dir: Path, browser: Browser, tmp_path: Path) -> None:
    """The error probe is real: break the copy and the same check fails."""
    broken = tmp_path / "broken"
    shutil.copytree(report_dir, broken)
    (broken / "plots" / "score.png").unlink()
    html, _ = browser.dump_dom((broken / "index.html").as_uri())
    assert "failed to load" in (Dom(html).text_of("page-errors") or "")
    assert "score.png" in Dom(html).text_of("page-errors")


def test_report_of_a_smoke_release_with_image_folder(tmp_path: Path, browser: Browser) -> None:
    w = make_workdir(tmp_path, smoke_run=True, with_render=False)
    release = build_release(w, tmp_path / "release")
    summary = build_report(release.folder, tmp_path / "html", image_roots=[tmp_path / "images"])
    assert summary.thumbnails == 9 and summary.problems == {"image_not_found": 2}  # the two tar images
    html, log = browser.dump_dom(summary.index.as_uri())
    dom = Dom(html)
    _no_errors(dom, log)
    assert "SMOKE RUN" in dom.text_of("smoke-banner") and "mean nothing" in dom.text_of("smoke-banner")
    assert "image_not_found" in html and "tiny-clap" in html
    assert dom.with_class("audio", "mix") == [] and len(dom.with_class("div", "card")) == 12
