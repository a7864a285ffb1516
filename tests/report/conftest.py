"""Fixtures for the report tests: a synthetic run, and a headless Chromium to load the page in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.publish.synthetic import COLLECTIONS, make_workdir

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = ["apt-get", "install", "-y", "chromium"]
REPO = Path(__file__).resolve().parents[2]


def ensure_chromium() -> Path:
    """Debian's chromium, installed here when missing (the test set-up's job; CI runs the same command)."""
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True, timeout=600)
        subprocess.run(INSTALL, check=False, env=env, capture_output=True, timeout=900)
    if not CHROMIUM.exists():
        pytest.skip(f"chromium cannot be installed here (tried: {' '.join(INSTALL)})")
    return CHROMIUM


@dataclass
class Browser:
    binary: Path
    profile: Path

    def args(self) -> list[str]:
        return [
            str(self.binary), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={self.profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
        ]  # fmt: skip

    def dump_dom(self, url: str) -> tuple[str, str]:
        """The DOM after scripts ran, and the browser's log (console messages land there)."""
        proc = subprocess.run([*self.args(), "--dump-dom", url], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout, proc.stderr

    def screenshot(self, url: str, out: Path) -> Path:
        proc = subprocess.run(
            [*self.args(), f"--screenshot={out}", "--window-size=1280,5200", url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0 and out.exists(), proc.stderr[-2000:]
        return out


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Browser:
    return Browser(ensure_chromium(), tmp_path_factory.mktemp("chromium-profile"))


@pytest.fixture(scope="module")
def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    make_workdir(root)
    return root


@pytest.fixture(scope="module")
def source_roots(run_root: Path) -> dict[str, str]:
    return {c: str(run_root / "sounds" / c) for c in COLLECTIONS}


def artifacts_dir() -> Path:
    """Where screenshots are kept: $SONIFY_ARTIFACTS, else the repo's git-ignored artifacts/ folder."""
    out = Path(os.environ.get("SONIFY_ARTIFACTS") or REPO / "artifacts") / "report"
    out.mkdir(parents=True, exist_ok=True)
    return out


class Dom(HTMLParser):
    """Tags and attributes of a dumped DOM, and the text inside elements by id (regex: ids are unique)."""

    def __init__(self, html: str):
        super().__init__()
        self.html = html
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def text_of(self, element_id: str) -> str | None:
        m = re.search(rf'<(\w+)[^>]*\sid="{element_id}"[^>]*>(.*?)</\1>', self.html, re.S)
        return None if m is None else m.group(2)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def with_class(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and cls in a.get("class", "").split()]
