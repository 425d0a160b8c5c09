"""The scenario schema: exact numbers, defaults, capabilities, the shipped scenarios."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

import unified_adv
from unified_adv.adapters import adapter_class, backend_names
from unified_adv.scenario.checks import backends_for
from unified_adv.scenario.schema import parse_exact

REPO = Path(__file__).resolve().parents[1]


def _scenario(attacks: str, model: str = "{builtin: digits-cnn}") -> unified_adv.Scenario:
    return unified_adv.scenario_from_text(
        f"name: t\nmodel: {model}\ndata: {{builtin: digits}}\nattacks:\n{attacks}"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8/255", 8 / 255),
        ("1/3", float(Fraction(1, 3))),
        ("0.1", 0.1),
        (" 2/4 ", 0.5),
        ("1e-3", 0.001),
        (3, 3.0),
    ],
)
def test_exact_fractions(text: object, value: float) -> None:
    assert parse_exact(text) == value


@pytest.mark.parametrize("bad", ["__import__('os')", "1/0", "eight", True, None, [1]])
def test_no_eval_and_clear_refusals(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a number"):
        parse_exact(bad)


def test_shipped_scenarios_validate() -> None:
    paths = sorted((REPO / "scenarios").glob("*.yaml"))
    assert paths, "no scenarios shipped"
    for path in paths:
        scenario = unified_adv.load_scenario(path)
        assert scenario.sha256 and scenario.text


def test_quickstart_covers_the_catalogue_core_on_every_capable_backend() -> None:
    from unified_adv.adapters import capable_backends

    s = unified_adv.load_scenario(REPO / "scenarios" / "quickstart.yaml")
    assert [(a.name, a.norm) for a in s.attacks] == [
        ("fgsm", "linf"),
        ("pgd", "linf"),
        ("pgd", "l2"),
        ("deepfool", "l2"),
        ("cw_l2", "l2"),
    ]
    for attack in s.attacks:
        if attack.name == "pgd":
            assert attack.resolved_params(attack.eps_values[0])["random_starts"] == 0
        able = {
            b
            for b in backend_names()
            if attack.norm in getattr(adapter_class(b).capabilities.get(attack.name), "norms", ())
        }
        assert set(backends_for(s, attack)) == able == set(capable_backends(attack, (0.0, 1.0)))
    # FGSM on ART, Foolbox, torchattacks; PGD L∞ also on adv-lib and secml-torch, PGD L2 on
    # secml-torch (adv-lib has L∞ only), DeepFool and C&W on adv-lib.
    assert [len(backends_for(s, a)) for a in s.attacks] == [3, 5, 4, 4, 4]


def test_all_means_every_capable_backend() -> None:
    s = _scenario("  - {name: fgsm, eps: 0.1, target: {class: 3}}\n")
    # Foolbox's FGSM refuses targets, so 'all' leaves it out rather than failing.
    assert backends_for(s, s.attacks[0]) == ("art", "torchattacks")
    s = _scenario("  - {name: fgsm, norm: l2, eps: 1}\n")
    assert backends_for(s, s.attacks[0]) == ("art", "foolbox")


def test_torchattacks_needs_unit_input_range() -> None:
    s = _scenario(
        "  - {name: fgsm, eps: 0.1}\n", model="{builtin: digits-cnn, input_range: [0, 255]}"
    )
    assert backends_for(s, s.attacks[0]) == ("art", "foolbox")
    with pytest.raises(
        unified_adv.InputError, match=r"attacks\[0\]\.backends: backend 'torchattacks' needs"
    ):
        _scenario(
            "  - {name: fgsm, eps: 0.1, backends: [torchattacks]}\n",
            model="{builtin: digits-cnn, input_range: [0, 255]}",
        )


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(unified_adv.InputError) as info:
        _scenario("  - {name: fgsm, eps: -1}\n  - {name: pgd, eps: 0.1, steps: 0}\n")
    paths = [p.path for p in info.value.problems]
    assert paths == ["attacks[0].eps", "attacks[1].steps"]


def test_defaults_are_resolved_and_explicit() -> None:
    s = _scenario("  - {name: pgd, eps: 8/255}\n")
    assert s.seed == 0 and s.data.only_correct is True
    assert s.attacks[0].resolved_params(8 / 255) == {
        "steps": 10,
        "step_size": pytest.approx(2.5 * (8 / 255) / 10),
        "random_starts": 0,
        "eot_samples": 1,
    }
    assert s.attacks[0].target.mode == "untargeted"


def test_scenario_is_frozen() -> None:
    s = _scenario("  - {name: fgsm, eps: 0.1}\n")
    with pytest.raises(Exception, match="frozen"):
        s.seed = 5  # type: ignore[misc]


def test_list_prints_the_declared_capabilities(cli) -> None:
    result = cli("list")
    assert result.code == 0
    for name in backend_names():
        for cap in adapter_class(name).capabilities.values():
            for cls in cap.classes.values():
                assert cls in result.out


def test_validate_reports_a_valid_scenario(cli) -> None:
    result = cli("validate", REPO / "scenarios" / "quickstart.yaml")
    assert result.code == 0, result.err
    assert "valid" in result.out and "clean accuracy" in result.out


def test_fastest_picks_the_quickest_equivalent_backend() -> None:
    from unified_adv.catalogue.speed import fastest_backend

    table = {
        "cw_l2": {
            "art": {"seconds_per_sample": 0.04, "success_rate": 1.0},
            "foolbox": {"seconds_per_sample": 0.004, "success_rate": 1.0},
            "torchattacks": {"seconds_per_sample": 0.001, "success_rate": 0.6},  # not equivalent
        }
    }
    assert fastest_backend("cw_l2", ("art", "foolbox", "torchattacks"), table) == "foolbox"
    assert fastest_backend("cw_l2", ("art",), table) == "art"
    assert fastest_backend("square", ("art", "torchattacks"), table) == "art"  # not measured


def test_fastest_in_a_scenario() -> None:
    s = _scenario("  - {name: deepfool, backends: fastest}\n")
    (chosen,) = backends_for(s, s.attacks[0])
    assert chosen in ("art", "foolbox", "torchattacks")
    with pytest.raises(unified_adv.InputError, match="'fastest' cannot be combined"):
        _scenario("  - {name: deepfool, backends: [fastest, art]}\n")


def _project_imports(path: Path) -> set[str]:
    """Every project module a source file imports, at any depth (late imports included)."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] in ("unified_adv", "art")}


def test_layers_import_only_downwards() -> None:
    """Issue 17's layers: the schema is pure (no adapters, no sources), and the core's
    defence layers never import ART (its preprocessors live in adapters/art_defences.py)."""
    pkg = REPO / "unified_adv"
    schema = _project_imports(pkg / "scenario" / "schema.py")
    assert schema and not {m for m in schema if m.startswith(("unified_adv.adapters", "unified_adv.sources"))}
    layers = _project_imports(pkg / "defences" / "layers.py")
    assert not {m for m in layers if m.split(".")[0] == "art" or m.startswith("unified_adv.adapters")}
    art_defences = _project_imports(REPO / "adapters" / "art_defences.py")
    assert "art.defences" in art_defences  # the check sees an ART import where there is one
