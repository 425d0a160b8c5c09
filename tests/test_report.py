"""The HTML report: self-contained, escaped, complete, and rendered by a real browser.

The browser is Debian's Chromium, driven through Playwright (``executable_path``: Playwright
downloads nothing). The quickstart report is rendered and checked for console errors and
network requests, and its screenshot is the one in the README.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import unified_adv

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: Both of the issue's hostile strings: a script that would mark the page, and an attribute break.
HOSTILE = (
    '<script>window.PWNED=1;document.title="PWNED"</script>"><img src=x onerror="window.PWNED=2">'
)
SECTIONS = ("summary", "attacks", "crosscheck", "findings", "provenance")


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "section" and dict(attrs).get("id"):
            self.ids.append(str(dict(attrs)["id"]))


def _chromium() -> str:
    found = (
        os.environ.get("UNIFIED_ADV_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not found:
        pytest.fail(
            "the report tests need a real browser: apt-get install chromium "
            "(or set UNIFIED_ADV_CHROMIUM)"
        )
    return found


@dataclass
class Visit:
    """What the browser saw while loading one page."""

    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    title: str = ""
    pwned: Any = None
    broken_images: list[str] = field(default_factory=list)
    images: int = 0
    text: str = ""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=_chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def _visit(browser: Any, report: Path, screenshot: Path | None = None) -> Visit:
    seen = Visit()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: seen.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: seen.page_errors.append(str(e)))
    page.on("request", lambda r: seen.requests.append(r.url))

    def on_dialog(d: Any) -> None:
        seen.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.goto(report.as_uri(), wait_until="load")
    seen.title = page.title()
    seen.pwned = page.evaluate("window.PWNED === undefined ? null : window.PWNED")
    seen.images = page.evaluate("document.images.length")
    seen.broken_images = page.evaluate(
        "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.alt)"
    )
    seen.text = page.inner_text("body")
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=False)
    page.close()
    return seen


def _network(requests: list[str], page: Path) -> list[str]:
    """Anything but the report file itself and its inline data: URIs."""
    return [u for u in requests if u != page.as_uri() and not u.startswith("data:")]


# --------------------------------------------------------------------------- quickstart


@pytest.fixture(scope="module")
def quickstart(quickstart_run: unified_adv.RunResult) -> unified_adv.RunResult:
    return quickstart_run  # conftest: one quickstart run per session


def test_quickstart_report_in_chromium(quickstart: unified_adv.RunResult, browser: Any) -> None:
    """No console errors, no network requests, every image decodes; the screenshot is kept
    (tests/artifacts/report.png, copied into docs/ for the README)."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    seen = _visit(browser, quickstart.report, shot)
    assert seen.page_errors == []
    assert [c for c in seen.console if c[0] in ("error", "warning")] == []
    assert _network(seen.requests, quickstart.report) == []
    assert seen.images > 0 and seen.broken_images == []
    assert seen.title == "Robustness report: quickstart — unified-adv robustness report"
    assert "Worst robust accuracy" in seen.text
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 900)
        assert len(set(img.convert("L").getdata())) > 20  # text and figures, not a blank page


def test_report_prints_to_pdf(quickstart: unified_adv.RunResult, browser: Any) -> None:
    page = browser.new_page()
    page.goto(quickstart.report.as_uri(), wait_until="load")
    page.emulate_media(media="print")
    pdf = page.pdf(format="A4", print_background=True)
    page.close()
    assert pdf[:5] == b"%PDF-"
    assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") >= 3  # several pages


def test_report_structure(quickstart: unified_adv.RunResult) -> None:
    """Every section present and in the order a reviewer reads; every image a PNG that decodes;
    nothing refers outside the file."""
    from PIL import Image

    html = quickstart.report.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(html)
    order = [s for s in parser.ids if s in SECTIONS]
    assert order == list(SECTIONS)
    images = [a.get("src") for t, a in parser.tags if t == "img"]
    attacks = {a["attack_id"] for a in quickstart.summary["attacks"]}
    # Per attack: a distance distribution and a triptych at least.
    assert len(images) >= 2 * len(attacks)
    for src in images:
        assert src is not None and src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as img:
            img.verify()
    for tag, attrs in parser.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            assert value is None or value.startswith(("data:", "#")), f"<{tag} {key}={value}>"
        assert tag not in ("script", "link", "iframe", "object", "embed", "base"), tag
    assert "http://" not in html and "https://" not in html
    for attack_id in attacks:
        assert f'id="attack-{attack_id}"' in html
    for needle in ("adversarial-robustness-toolbox", "foolbox", "torchattacks", "torch"):
        assert needle in html
    assert quickstart.summary["scenario"]["sha256"] in html
    assert unified_adv.__version__ in html


# --------------------------------------------------------------------------- hostile strings


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> unified_adv.RunResult:
    """Scenario description, report title and class names all carry HTML and script."""
    from unified_adv.sources.builtin.digits import digits_split

    folder = tmp_path_factory.mktemp("hostile")
    _, _, x, y, _, _ = digits_split()
    names = np.array([f"{HOSTILE} {c}" for c in range(10)])
    np.savez(folder / "data.npz", x=x[:60], y=y[:60], class_names=names)
    (folder / "scenario.yaml").write_text(
        f"""
name: hostile
description: '{HOSTILE}'
model: {{builtin: digits-cnn}}
data: {{npz: data.npz}}
attacks:
  - {{name: fgsm, eps: [0.1, 0.2]}}
report: {{triptychs: 2, title: 'Title {HOSTILE}'}}
""",
        encoding="utf-8",
    )
    return unified_adv.run(unified_adv.load_scenario(folder / "scenario.yaml"), folder / "out")


def test_hostile_strings_render_as_text(hostile: unified_adv.RunResult, browser: Any) -> None:
    html = hostile.report.read_text(encoding="utf-8")
    assert "<script>" not in html and "onerror=" not in html.replace("onerror=&#34;", "")
    assert "&lt;script&gt;window.PWNED=1;" in html
    seen = _visit(browser, hostile.report)
    assert seen.pwned is None  # neither the script nor the onerror handler ran
    assert seen.dialogs == [] and seen.page_errors == []
    assert seen.title.startswith("Title <script>window.PWNED=1;")  # shown as text
    assert HOSTILE in seen.text  # the description, as the user wrote it
    assert _network(seen.requests, hostile.report) == []
    assert seen.broken_images == []


def test_epsilon_sweep_draws_a_security_curve(hostile: unified_adv.RunResult) -> None:
    html = hostile.report.read_text(encoding="utf-8")
    assert "Security curve: robust accuracy against ε per backend" in html
    assert 'alt="robust accuracy against epsilon for fgsm"' in html
