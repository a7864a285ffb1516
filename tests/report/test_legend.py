"""The report's legend in headless Chromium: s, r, τ and the other figures explained, linked to the card's Scores."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from typer.testing import CliRunner

from sonify_toolkit.cli import app
from tests.publish.synthetic import make_workdir
from tests.report.conftest import Browser, Dom


def _report(source: Path, out: Path) -> Path:
    result = CliRunner().invoke(app, ["report", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "index.html"


def _legend_terms(html: str) -> list[str]:
    legend = re.search(r'<section id="legend".*?</section>', html, re.S)
    assert legend is not None
    return [re.sub(r"<[^>]+>", "", t).strip() for t in re.findall(r"<dt>(.*?)</dt>", legend.group(0), re.S)]


def test_release_report_legend_links_to_the_cards_scores(tmp_path: Path, browser: Browser) -> None:
    w = make_workdir(tmp_path, with_render=False)
    release = tmp_path / "release"
    assert CliRunner().invoke(app, ["publish", "-w", str(w), "--out", str(release)]).exit_code == 0
    html, _ = browser.dump_dom(_report(release, tmp_path / "html").as_uri())
    dom = Dom(html)
    assert _legend_terms(html)[:3] == ["s", "r", "τ"]
    assert {"clip / target LUFS", "mix", "clip id"} <= set(_legend_terms(html))
    assert " s=" in html and " r=" in html and " τ=" in html  # the gallery shows the figures the legend explains
    link = dom.find("a", id="card-link")
    assert len(link) == 1 and link[0]["href"].endswith("/README.md#scores")
    card = Path(url2pathname(urlparse(link[0]["href"]).path))
    assert card == (release / "README.md").resolve()
    section = card.read_text().split("### Scores", 1)[1].split("\n## ", 1)[0]
    for term in ("**s**", "**r**", "**τ**", "clip LUFS", "mix LUFS"):
        assert term in section, term


def test_workdir_report_legend_names_the_card_to_come(tmp_path: Path, browser: Browser) -> None:
    w = make_workdir(tmp_path, with_render=False)
    html, _ = browser.dump_dom(_report(w, tmp_path / "html").as_uri())
    assert _legend_terms(html)[:3] == ["s", "r", "τ"]
    assert Dom(html).find("a", id="card-link") == [] and "sonify publish" in html
