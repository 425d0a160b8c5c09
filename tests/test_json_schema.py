"""The shipped JSON schema of the scenario: equal to the one generated from the pydantic
models, printed by ``unified-adv schema``, and as permissive as the loader where the
loader takes shorthands (fractions, one eps, a target mode as a word)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from unified_adv.catalogue.attacks import ALL_PARAMS
from unified_adv.scenario.json_schema import FRACTION, SCHEMA_FILE, schema_text


def test_the_shipped_schema_is_the_generated_one() -> None:
    """Regenerate with `python -m unified_adv.scenario.json_schema` after a schema change."""
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text()


def test_unified_adv_schema_prints_it(cli: Callable[..., Any]) -> None:
    result = cli("schema")
    assert result.code == 0, result.err
    assert json.loads(result.out) == json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def test_the_schema_describes_every_section_and_attack_parameter() -> None:
    schema = json.loads(schema_text())
    assert set(schema["required"]) == {"name", "model", "data"}
    attack = schema["$defs"]["AttackSpec"]
    assert set(ALL_PARAMS) <= set(attack["properties"])
    assert attack["additionalProperties"] is False  # a typo is flagged in the editor too
    # eps: one value or a list, each a number or a fraction written as text
    kinds = [o.get("type") for o in attack["properties"]["eps"]["anyOf"]]
    assert "array" in kinds and None in kinds  # None: the number-or-fraction alternative
    target = {json.dumps(o, sort_keys=True) for o in attack["properties"]["target"]["anyOf"]}
    assert any('"random"' in t for t in target)


def test_fractions_match_the_number_pattern() -> None:
    accept = ["8/255", "0.1", "2 / 255", "1"]
    refuse = ["eight", "8//255", "1e", ""]
    assert [bool(re.match(FRACTION, s)) for s in accept + refuse] == [True] * 4 + [False] * 4
