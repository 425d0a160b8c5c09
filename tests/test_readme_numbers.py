"""README.md's quickstart table is what scenarios/quickstart.yaml gives with the shipped
weights (bench/readme_numbers.py formats it; about 35 s on 2 idle cores, the quickstart run)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

import unified_adv

REPO = Path(__file__).resolve().parents[1]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_numbers", REPO / "bench/readme_numbers.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quickstart") / "out"
    unified_adv.run(unified_adv.load_scenario(REPO / "scenarios/quickstart.yaml"), out)
    return out / "summary.json"


def test_the_readme_quickstart_table_is_what_the_quickstart_gives(quickstart: Path) -> None:
    gen = _generator()
    summary = json.loads(quickstart.read_text(encoding="utf-8"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    expected = gen.block("quickstart", summary)
    assert expected in readme, "README.md is stale: run `make readme-numbers`\n" + expected
    assert summary["model"]["fingerprint"][:16] in expected


def test_check_mode_reports_a_stale_table(quickstart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = _generator()
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- numbers:quickstart -->\nSTALE-TABLE\n<!-- /numbers:quickstart -->\n", encoding="utf-8")
    args = ["--readme", str(readme), "--only", "quickstart", "--summary", f"quickstart={quickstart}"]
    assert gen.main([*args, "--check"]) == 1
    assert "-STALE-TABLE" in capsys.readouterr().out
    assert readme.read_text(encoding="utf-8").count("STALE-TABLE") == 1  # --check writes nothing
    assert gen.main(args) == 0 and gen.main([*args, "--check"]) == 0
    readme.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="no <!-- numbers:quickstart -->"):
        gen.main(args)
